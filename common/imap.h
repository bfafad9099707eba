/*
 * imap - the IMAP4rev1 client of btprelay-fetch (RFC 3501; STARTTLS;
 * UIDPLUS's UID EXPUNGE, RFC 4315; MOVE, RFC 6851; IDLE, RFC 2177;
 * XOAUTH2 as Google and Microsoft document it).
 *
 * Only what fetching needs: greeting, CAPABILITY, STARTTLS, LOGIN or
 * AUTHENTICATE XOAUTH2, SELECT (UIDVALIDITY), UID SEARCH ALL, UID FETCH
 * of one message's BODY.PEEK[] streamed out of the literal, UID STORE,
 * UID MOVE/COPY, EXPUNGE, IDLE, LOGOUT. Every command waits for its tagged
 * reply; a NO or BAD defers with the server's text verbatim; a lost
 * connection, a timeout or garbage breaks the session (s->broken) and
 * defers naming the command.
 */
#ifndef BTPRELAY_IMAP_H
#define BTPRELAY_IMAP_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include "conn.h"
#include "dsn.h"

#define IMAP_LINE_MAX 8192		/* one response line; longer ones are an error */
#define IMAP_SEARCH_MAX 100000		/* UIDs taken from one UID SEARCH */

enum {
	IMAP_CAP_STARTTLS = 1 << 0,
	IMAP_CAP_LOGINDISABLED = 1 << 1,
	IMAP_CAP_UIDPLUS = 1 << 2,
	IMAP_CAP_MOVE = 1 << 3,
	IMAP_CAP_XOAUTH2 = 1 << 4,
	IMAP_CAP_IMAP4REV1 = 1 << 5,
	IMAP_CAP_IDLE = 1 << 6,
};

struct imap_session {
	struct conn *conn;
	const char *server;		/* for texts: "mail.corp.internal:993" */
	unsigned caps;			/* IMAP_CAP_* */
	unsigned long tag;
	unsigned long uidvalidity;	/* from SELECT, 0 = not said */
	int broken;			/* the connection is unusable: only conn_close() */
	int news;			/* "* N EXISTS" came after the last UID SEARCH */
	/* UID FETCH in progress */
	unsigned long literal_left;	/* bytes of the message literal not read yet */
	int literal_open;
};

/* imap_open - read the greeting (PREAUTH is refused), then CAPABILITY when it had none */
int imap_open(struct imap_session *s, struct conn *c, const char *server, struct outcome *o);
/* imap_starttls_begin - STARTTLS up to its OK; the caller then does the TLS handshake */
int imap_starttls_begin(struct imap_session *s, struct outcome *o);
/* imap_capability - CAPABILITY (after TLS) */
int imap_capability(struct imap_session *s, struct outcome *o);
/* imap_login - LOGIN user password (quoted; no CR, LF or NUL) */
int imap_login(struct imap_session *s, const char *user, const char *password,
	       struct outcome *o);
/* imap_xoauth2 - AUTHENTICATE XOAUTH2 for user with the bearer token */
int imap_xoauth2(struct imap_session *s, const char *user, const char *token,
		 struct outcome *o);
/* imap_select - SELECT mailbox; s->uidvalidity gets its UIDVALIDITY (0: none said) */
int imap_select(struct imap_session *s, const char *mailbox, struct outcome *o);
/* imap_uid_search - UID SEARCH ALL: *uids (malloc'ed, ascending as sent), *n */
int imap_uid_search(struct imap_session *s, unsigned long **uids, size_t *n, struct outcome *o);
/*
 * imap_fetch_begin - UID FETCH uid (BODY.PEEK[]) up to the start of the
 * message literal: 0 with *size, 1 when the server has no such message
 * (it answered OK without a body), -1 on failure
 */
int imap_fetch_begin(struct imap_session *s, unsigned long uid, unsigned long *size,
		     struct outcome *o);
/* imap_fetch_read - up to n bytes of the literal; 0 at its end; -1 (errno EIO) when cut */
ssize_t imap_fetch_read(struct imap_session *s, char *buf, size_t n);
/* imap_fetch_end - the rest of the FETCH response and its tagged OK */
int imap_fetch_end(struct imap_session *s, struct outcome *o);
/* imap_uid_store - UID STORE uid +FLAGS.SILENT (flag) */
int imap_uid_store(struct imap_session *s, unsigned long uid, const char *flag,
		   struct outcome *o);
/* imap_uid_move - UID MOVE when offered, else UID COPY + \Deleted */
int imap_uid_move(struct imap_session *s, unsigned long uid, const char *folder,
		  struct outcome *o);
/* imap_expunge - UID EXPUNGE of the given UIDs with UIDPLUS, else EXPUNGE */
int imap_expunge(struct imap_session *s, const unsigned long *uids, size_t n, struct outcome *o);
/*
 * imap_idle - IDLE (RFC 2177) for at most seconds, then DONE: 1 when the
 * server announced new mail (EXISTS; at once, without IDLE, when it did so
 * during the pass after UID SEARCH), 0 when the time ran out or *stop was
 * set, -1 on failure. Every read has the connection's timeout; the
 * wait between reads is cut into one-second polls that watch *stop.
 */
int imap_idle(struct imap_session *s, int seconds, volatile sig_atomic_t *stop, struct outcome *o);
/* imap_logout - LOGOUT, its reply not waited for when broken */
void imap_logout(struct imap_session *s);

/* The pure pieces, for unit tests and fuzzing. */
/* imap_parse_caps - IMAP_CAP_* named in a CAPABILITY list (text after "CAPABILITY ") */
unsigned imap_parse_caps(const char *list);
/*
 * imap_parse_literal - whether a FETCH response line ends with "{N}" (a
 * literal follows): 1 with *size, 0 when not, -1 when N is not a number
 * below 2^40
 */
int imap_parse_literal(const char *line, size_t len, unsigned long *size);
/* imap_parse_code - the number after "[KEY " in a response line ("UIDVALIDITY"); 0 = none */
unsigned long imap_parse_code(const char *line, const char *key);
/* imap_parse_number - a decimal 1..2^32-1 at *p, advancing *p; 0 when none */
unsigned long imap_parse_number(const char **p);

#endif
