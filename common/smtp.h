/*
 * smtp - the SMTP client session to the relay (RFC 5321, 3207, 4954, 2920).
 *
 * smtp_session_open: greeting, EHLO (HELO fallback), STARTTLS per policy,
 * EHLO again, AUTH XOAUTH2 (with a bearer token), else PLAIN or LOGIN,
 * when credentials are given.
 * smtp_send_message: MAIL FROM (SIZE=, BODY=8BITMIME when offered, SMTPUTF8
 * when an address needs it), RCPT TO per recipient (pipelined when
 * PIPELINING is offered), DATA only when every RCPT was accepted
 * (otherwise RSET), the body streamed from an fd with LF -> CRLF and
 * dot-stuffing, lines over line_length_limit broken as Postfix does, the
 * final reply. smtp_quit: QUIT without waiting.
 *
 * Every relay reply becomes an outcome through dsn_from_reply(); connection
 * loss, timeouts and garbage defer with a text naming the stage. Success
 * only after the 2xx reply to the final dot.
 */
#ifndef BTPRELAY_SMTP_H
#define BTPRELAY_SMTP_H

#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>
#include "conf.h"
#include "conn.h"
#include "dsn.h"
#include "redact.h"

#define SMTP_REPLY_MAX 4096	/* a reply (all lines) longer than this is cut */
#define SMTP_LINE_MAX 1024	/* one reply line */

/* EHLO extensions */
enum {
	SMTP_EXT_PIPELINING = 1 << 0,
	SMTP_EXT_STARTTLS = 1 << 1,
	SMTP_EXT_SIZE = 1 << 2,
	SMTP_EXT_8BITMIME = 1 << 3,
	SMTP_EXT_SMTPUTF8 = 1 << 4,
	SMTP_EXT_AUTH_PLAIN = 1 << 5,
	SMTP_EXT_AUTH_LOGIN = 1 << 6,
	SMTP_EXT_ENHANCEDSTATUSCODES = 1 << 7,
	SMTP_EXT_AUTH_XOAUTH2 = 1 << 8,
};

struct smtp_options {
	const char *helo_name;
	const char *relay_name;		/* for texts: "mail.corp.internal[via proxy]:25" */
	enum tls_level tls_level;
	const char *tls_required_by;	/* why ENCRYPT, for the 4.7.4 text; NULL = "smtp_tls_security_level=encrypt" */
	SSL_CTX *tls_ctx;		/* NULL when tls_level is NONE */
	const char *tls_sni;		/* NULL for none */
	const char *tls_verify_name;	/* the name the relay's certificate must carry */
	int implicit_tls;		/* smtps: TLS already started by the caller */
	const char *auth_user;		/* NULL = no AUTH */
	const char *auth_password;
	int command_timeout_ms;
	int data_done_timeout_ms;

	/* all zero: chain and tls_verify_name verified, AUTH where the caller says, no line limit */
	int tls_no_chain_check;		/* mail.smtp.ssl.trust: the chain is not verified */
	int tls_no_name_check;		/* the certificate's name is not checked */
	const char *tls_fingerprints;	/* SHA-256 pins that replace both checks, NULL = none */
	int auth_require_tls;		/* credentials only inside TLS: defer 4.7.0 otherwise */
	const char *auth_xoauth2_token;	/* AUTH XOAUTH2 for auth_user with this bearer token */
	const char *auth_error;		/* AUTH is wanted but impossible: why (defer 4.7.0) */
	int line_length_limit;		/* message lines longer than this are broken with
					   CRLF SPACE (Postfix's smtp_line_length_limit); 0 = never */
};

/*
 * Session states, in protocol order. Every transition goes through one
 * function in smtp.c, and failure texts and debug logs name the state.
 */
enum smtp_state {
	SMTP_STATE_NEW = 0,		/* connected, nothing read yet */
	SMTP_STATE_GREETING,		/* waiting for 220 */
	SMTP_STATE_EHLO,
	SMTP_STATE_HELO,		/* EHLO refused, trying HELO */
	SMTP_STATE_STARTTLS,
	SMTP_STATE_AUTH,
	SMTP_STATE_READY,		/* between transactions: MAIL may follow */
	SMTP_STATE_MAIL,
	SMTP_STATE_RCPT,
	SMTP_STATE_DATA,
	SMTP_STATE_BODY,		/* streaming the message */
	SMTP_STATE_EOD,			/* final dot sent, waiting for the reply */
	SMTP_STATE_RSET,
	SMTP_STATE_QUIT,		/* QUIT sent: only conn_close() remains */
	SMTP_STATE_BROKEN,		/* lost, timed out, out of sync: only conn_close() */
};

struct smtp_session {
	struct conn *conn;
	const struct smtp_options *opt;
	enum smtp_state state;
	unsigned ext;			/* SMTP_EXT_* offered by the relay */
	unsigned long size_limit;	/* SIZE parameter, 0 = none */
	int tls_active;
	int helo_only;			/* EHLO refused, HELO used */
	unsigned long replies;		/* complete replies read so far */
	struct redact redact;		/* what AUTH sent: masked in every reply text */
};

/*
 * smtp_body_reader - where the message comes from when it is not an fd:
 * read() returns up to n bytes of the message (LF or CRLF line ends, not
 * dot-stuffed), 0 at its end, -1 with errno on failure. stuffed: the
 * bytes come dot-stuffed already (an LMTP client's transparent form, the
 * lone dot taken off), and a dot that starts a line is passed on as it is.
 */
struct smtp_body_reader {
	ssize_t (*read)(void *arg, char *buf, size_t n);
	void *arg;
	int stuffed;
};

struct smtp_envelope {
	const char *sender;		/* "" for the null sender */
	const char *const *rcpt;
	size_t nrcpt;
	long size;			/* message size in bytes, -1 = unknown */
	const struct smtp_body_reader *body;	/* NULL: the body_fd of smtp_send_message */
};

/* smtp_reply - one parsed reply */
struct smtp_reply {
	int code;			/* 3-digit code, 0 if garbage */
	char text[SMTP_REPLY_MAX];	/* all lines verbatim, joined by a space */
};

/*
 * smtp_session_open - up to and including AUTH; -1 with o filled on failure.
 * Whatever it returns, end with smtp_quit() (which sends nothing when the
 * connection is no longer usable) and conn_close().
 */
int smtp_session_open(struct smtp_session *s, struct conn *c,
		      const struct smtp_options *opt, struct outcome *o);
/*
 * smtp_send_message - one transaction. rcpt_out[i] gets recipient i's
 * outcome; o gets the transaction's (the worst, with every recipient's
 * reply when they differ). Returns 0 when delivered to all recipients.
 * The body (env->body, else body_fd) is read to its end only when DATA is
 * sent.
 */
int smtp_send_message(struct smtp_session *s, const struct smtp_envelope *env,
		      int body_fd, struct outcome *rcpt_out, struct outcome *o);
/* smtp_quit - send QUIT, do not wait for the reply */
void smtp_quit(struct smtp_session *s);

/*
 * smtp_reply_line - parse one reply line: "250-text" / "250 text".
 * Returns 0 and sets *code and *last, or -1 when the line is not a reply.
 */
int smtp_reply_line(const char *line, size_t len, int *code, int *last);
/* smtp_ehlo_keyword - the SMTP_EXT_* bit for one EHLO line (after "250-"), and SIZE's value */
unsigned smtp_ehlo_keyword(const char *line, unsigned long *size);
/*
 * smtp_body_state / smtp_body_convert - LF -> CRLF, dot-stuffing, and lines
 * longer than st->line_limit broken with CRLF SPACE, over a stream of
 * chunks. smtp_body_init sets no limit; set st->line_limit after it (values
 * below SMTP_LINE_LIMIT_MIN count as that). out must hold
 * SMTP_BODY_OUT_MAX(len) bytes (2 * len + 1 without a limit). Returns bytes
 * written.
 */
#define SMTP_LINE_LIMIT_MIN 80
#define SMTP_BODY_OUT_MAX(len) (4 * (len) + 4)
struct smtp_body_state {
	int at_line_start;		/* the next byte starts a line */
	int cr_pending;			/* a CR was read: CRLF, or a bare CR, depending on the next byte */
	size_t col;			/* bytes on the current output line (stuffed dots not counted) */
	size_t line_limit;		/* 0 = no limit */
	int stuffed;			/* the input is dot-stuffed already */
};
void smtp_body_init(struct smtp_body_state *st);
size_t smtp_body_convert(struct smtp_body_state *st, const char *in, size_t len, char *out);
/* smtp_body_finish - the end: CRLF if the last line was not terminated, then ".\r\n"; out holds 5 bytes */
size_t smtp_body_finish(struct smtp_body_state *st, char *out);

#endif
