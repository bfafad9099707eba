/*
 * pop3 - the POP3 client of btprelay-fetch (RFC 1939; CAPA, RFC 2449;
 * STLS, RFC 2595; AUTH XOAUTH2 as Google and Microsoft document it).
 *
 * Greeting, CAPA, STLS, USER/PASS or AUTH XOAUTH2, UIDL (the unique ids
 * that make "already fetched" survive renumbering), RETR streamed with the
 * dot-stuffing removed, DELE, QUIT (which commits the deletions). An -ERR
 * defers with the server's text verbatim; a lost connection, a timeout or
 * garbage breaks the session (s->broken).
 */
#ifndef BTPRELAY_POP3_H
#define BTPRELAY_POP3_H

#include <stddef.h>
#include <sys/types.h>
#include "conn.h"
#include "dsn.h"

#define POP3_LINE_MAX 1024
#define POP3_UIDL_MAX 70		/* RFC 1939 7: 1 to 70 characters 0x21..0x7E */
#define POP3_LIST_MAX 100000		/* messages taken from one UIDL */

enum {
	POP3_CAP_STLS = 1 << 0,
	POP3_CAP_UIDL = 1 << 1,
	POP3_CAP_XOAUTH2 = 1 << 2,
	POP3_CAP_USER = 1 << 3,
};

struct pop3_uidl {
	unsigned long number;
	char uid[POP3_UIDL_MAX + 1];
};

struct pop3_session {
	struct conn *conn;
	const char *server;
	unsigned caps;			/* POP3_CAP_*, 0 when CAPA was refused */
	int broken;
	/* RETR in progress */
	int body_open;
	int at_line_start;
	int body_done;
};

int pop3_open(struct pop3_session *s, struct conn *c, const char *server, struct outcome *o);
/* pop3_capa - CAPA (an -ERR leaves caps 0: RFC 2449 is optional) */
int pop3_capa(struct pop3_session *s, struct outcome *o);
/* pop3_stls_begin - STLS up to its +OK; the caller then does the TLS handshake */
int pop3_stls_begin(struct pop3_session *s, struct outcome *o);
int pop3_login(struct pop3_session *s, const char *user, const char *password, struct outcome *o);
int pop3_xoauth2(struct pop3_session *s, const char *user, const char *token, struct outcome *o);
/* pop3_uidl - UIDL: *list (malloc'ed), *n */
int pop3_uidl(struct pop3_session *s, struct pop3_uidl **list, size_t *n, struct outcome *o);
/* pop3_retr_begin - RETR n up to its +OK */
int pop3_retr_begin(struct pop3_session *s, unsigned long n, struct outcome *o);
/* pop3_retr_read - the message, dot-stuffing removed, CRLF kept; 0 at the end; -1 (EIO) when cut */
ssize_t pop3_retr_read(struct pop3_session *s, char *buf, size_t n);
int pop3_dele(struct pop3_session *s, unsigned long n, struct outcome *o);
/* pop3_quit - QUIT and its +OK: the deletions take effect (RFC 1939 6) */
int pop3_quit(struct pop3_session *s, struct outcome *o);

/* pop3_parse_uidl - "N UID" of a UIDL listing; 0, or -1 when not one */
int pop3_parse_uidl(const char *line, struct pop3_uidl *u);

#endif
