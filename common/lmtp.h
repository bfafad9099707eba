/*
 * lmtp - the server side of LMTP (RFC 2033), as Postfix's lmtp(8) client
 * speaks it to btprelay-lmtp: command lines parsed into a struct lmtp_cmd,
 * the message read back from its transparent form (dot-unstuffed, up to
 * the lone dot) as an smtp_body_reader, and outcomes written as replies.
 *
 * Nothing here trusts the client: a line is parsed in place and bounded by
 * the caller's buffer, paths with quoted '>' are understood, an address
 * that is no RFC 5321 mailbox (address_check) is refused, unknown
 * parameters are refused, and a message never ends but at its lone dot.
 *
 * The session is a state machine (enum lmtp_state): lmtp_session_step()
 * is the only place that changes state. It checks each command against
 * the state and returns the reply, the refusal (503, 554, 452) when the
 * command is out of order.
 */
#ifndef BTPRELAY_LMTP_H
#define BTPRELAY_LMTP_H

#include <stddef.h>
#include <sys/types.h>
#include "conn.h"
#include "dsn.h"

#define LMTP_LINE_MAX 2048	/* a command line, CR LF excluded (RFC 5321: 512, with parameters more) */
#define LMTP_RCPT_MAX 1000	/* recipients per transaction (RFC 5321 4.5.3.1.8: at least 100) */
#define LMTP_IDENT_SIZE 33	/* XFORWARD IDENT: a queue id of up to 32 letters and digits */

enum lmtp_verb {
	LMTP_BAD = 0,		/* a command we know, with a syntax error: reply is set */
	LMTP_UNKNOWN,		/* not a command we know */
	LMTP_LHLO, LMTP_MAIL, LMTP_RCPT, LMTP_DATA, LMTP_RSET, LMTP_NOOP, LMTP_QUIT,
	LMTP_XFORWARD,
};

struct lmtp_cmd {
	enum lmtp_verb verb;
	const char *arg;	/* MAIL, RCPT: the address without <> (quotes kept); others: the rest of the line */
	long size;		/* MAIL SIZE=, -1 when not given */
	const char *ident;	/* XFORWARD IDENT= (Postfix's queue id), NULL when not given */
	const char *reply;	/* LMTP_BAD: the reply to send, "501 5.5.4 ..." */
};

/*
 * lmtp_parse - parse one command line (without CR LF) in place: line is
 * modified, and cmd's strings point into it.
 */
void lmtp_parse(char *line, struct lmtp_cmd *cmd);

/*
 * Session states, in protocol order (RFC 2033 4, RFC 5321 4.1.4).
 */
enum lmtp_state {
	LMTP_STATE_GREETING = 0,	/* 220 sent, no LHLO yet (MAIL is taken all the same) */
	LMTP_STATE_READY,		/* between transactions: MAIL may follow */
	LMTP_STATE_MAIL,		/* sender given: RCPT may follow */
	LMTP_STATE_RCPT,		/* recipients given: RCPT or DATA */
	LMTP_STATE_DATA,		/* 354 sent: the caller reads the message, then lmtp_session_done() */
	LMTP_STATE_QUIT,		/* 221 sent: the caller closes, nothing more is read */
};

/* the session with one client, and the transaction it is building */
struct lmtp_session {
	enum lmtp_state state;
	const char *name;		/* the server's name in LHLO's reply */
	char *sender;			/* MAIL's address, NULL before MAIL */
	char *rcpt[LMTP_RCPT_MAX];
	size_t nrcpt;
	long size;			/* MAIL SIZE=, -1 when not given */
	char ident[LMTP_IDENT_SIZE];	/* XFORWARD IDENT: Postfix's queue id, "" when none */
	char lhlo[512];			/* LHLO's reply */
};

/* lmtp_session_init - a session in LMTP_STATE_GREETING; name is kept, not copied */
void lmtp_session_init(struct lmtp_session *s, const char *name);
/*
 * lmtp_session_step - the one place where the state changes: cmd (from
 * lmtp_parse) checked against the state, the transaction updated. Returns
 * the reply, its lines without the last CR LF; NULL in LMTP_STATE_DATA and
 * LMTP_STATE_QUIT, which take no command. After the step, the state says
 * what the caller does: LMTP_STATE_DATA reads the message, LMTP_STATE_QUIT
 * closes.
 */
const char *lmtp_session_step(struct lmtp_session *s, const struct lmtp_cmd *cmd);
/* lmtp_session_done - the message's replies are given: LMTP_STATE_READY, the transaction reset */
void lmtp_session_done(struct lmtp_session *s);
/* lmtp_session_free - the transaction's memory */
void lmtp_session_free(struct lmtp_session *s);
/* lmtp_state_name - "GREETING", "READY", ... for logs */
const char *lmtp_state_name(enum lmtp_state state);

/*
 * lmtp_body - reads the message after DATA's 354 from the client's
 * connection: CR LF to LF, a leading dot removed, the end at the line
 * that is a lone dot. Bytes after the lone dot stay in the connection for
 * the next command. Use it through lmtp_body_read as an smtp_body_reader;
 * lmtp_body_drain reads what the relay did not take, for the replies to
 * follow in step.
 */
struct lmtp_body {
	struct conn *c;
	int state;		/* where in a line the next byte is (lmtp.c) */
	int done;		/* the lone dot was read */
	int failed;		/* the client's connection failed: c->err says how */
};
void lmtp_body_init(struct lmtp_body *b, struct conn *c);
/* lmtp_body_read - up to n bytes (n >= 2) of the message, 0 at its end, -1 with errno when the connection failed */
ssize_t lmtp_body_read(void *arg, char *buf, size_t n);
/*
 * lmtp_body_read_stuffed - the same, but the message stays in its
 * transparent form (RFC 5321 4.5.2: dot-stuffed, line ends as they came),
 * only the lone dot taken off: for an smtp_body_reader with .stuffed set,
 * so that the relay gets the bytes as they arrived instead of unstuffed
 * here and stuffed again there. Runs of a line are copied whole.
 */
ssize_t lmtp_body_read_stuffed(void *arg, char *buf, size_t n);
/* lmtp_body_drain - read to the lone dot; 0, or -1 when the connection failed */
int lmtp_body_drain(struct lmtp_body *b);

/*
 * lmtp_reply - one reply line for an outcome: 250 for delivered, 451 for a
 * temporary failure, 550 for a permanent one, then the enhanced status
 * code and the text ("relayed: " and the relay's reply on success), made
 * printable and cut to fit a reply line.
 */
void lmtp_reply(const struct outcome *o, char *buf, size_t size);

#endif
