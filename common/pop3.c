/*
 * pop3 - the POP3 client of btprelay-fetch (pop3.h).
 *
 * Commands are sent one at a time (no PIPELINING): fetching is bound by
 * the MTA, not by round trips. The RETR body is unstuffed byte by byte as
 * the caller reads it (a small state machine, so a line of any length
 * streams), and the end is only "CRLF . CRLF": a connection that closes
 * before it is a cut message, never a short one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pop3.h"
#include "util.h"

enum { BODY_MID = 0, BODY_LINE_START, BODY_DOT, BODY_DOT_CR };

/* pop3_broken - the session cannot go on */
static int pop3_broken(struct pop3_session *s, const char *what, struct outcome *o)
{
	s->broken = 1;
	dsn_defer(o, "4.4.2", "POP3 server %s: %s during %s", s->server,
		  s->conn->err ? conn_strerror(s->conn->err) : "unexpected response", what);
	return -1;
}

/* pop3_reply - read one status line: 0 for +OK, -1 with o set for -ERR or worse */
static int pop3_reply(struct pop3_session *s, const char *what, struct outcome *o)
{
	char line[POP3_LINE_MAX], text[600];
	ssize_t n;

	if ((n = conn_read_line(s->conn, line, sizeof(line))) < 0)
		return pop3_broken(s, what, o);
	if (strncmp(line, "+OK", 3) == 0)
		return 0;
	if (strncmp(line, "-ERR", 4) != 0)
		return pop3_broken(s, what, o);
	str_printable(text, sizeof(text), line, (size_t)n);
	dsn_defer(o, "4.4.2", "POP3 server %s refused %s: %s", s->server, what, text);
	return -1;
}

/* pop3_send - one command line (not logged: PASS and AUTH carry secrets), then its reply */
static int pop3_send(struct pop3_session *s, const char *what, const char *arg, struct outcome *o)
{
	if (s->broken)
		return pop3_broken(s, what, o);
	if (conn_puts(s->conn, what) < 0 || (arg && (conn_puts(s->conn, " ") < 0
						     || conn_puts(s->conn, arg) < 0))
	    || conn_puts(s->conn, "\r\n") < 0 || conn_flush(s->conn) < 0)
		return pop3_broken(s, what, o);
	return pop3_reply(s, what, o);
}

/* pop3_open - greeting */
int pop3_open(struct pop3_session *s, struct conn *c, const char *server, struct outcome *o)
{
	memset(s, 0, sizeof(*s));
	s->conn = c;
	s->server = server;
	return pop3_reply(s, "greeting", o);
}

/* pop3_multiline - the lines of a multi-line answer up to ".", each to fn */
static int pop3_multiline(struct pop3_session *s, const char *what,
			  int (*fn)(const char *line, void *arg), void *arg, struct outcome *o)
{
	char line[POP3_LINE_MAX];
	ssize_t n;

	for (;;) {
		if ((n = conn_read_line(s->conn, line, sizeof(line))) < 0)
			return pop3_broken(s, what, o);
		if (n == 1 && line[0] == '.')
			return 0;
		if (fn(line[0] == '.' ? line + 1 : line, arg) < 0)
			return pop3_broken(s, what, o);
	}
}

/* on_capa - one CAPA line */
static int on_capa(const char *line, void *arg)
{
	struct pop3_session *s = arg;

	if (strcasecmp(line, "STLS") == 0)
		s->caps |= POP3_CAP_STLS;
	else if (strcasecmp(line, "UIDL") == 0)
		s->caps |= POP3_CAP_UIDL;
	else if (strcasecmp(line, "USER") == 0)
		s->caps |= POP3_CAP_USER;
	else if (strncasecmp(line, "SASL ", 5) == 0 && strstr(line, "XOAUTH2") != NULL)
		s->caps |= POP3_CAP_XOAUTH2;
	return 0;
}

/* pop3_capa - CAPA */
int pop3_capa(struct pop3_session *s, struct outcome *o)
{
	struct outcome ignored;

	s->caps = 0;
	if (pop3_send(s, "CAPA", NULL, &ignored) < 0)
		return s->broken ? (*o = ignored, -1) : 0;
	return pop3_multiline(s, "CAPA", on_capa, s, o);
}

/* pop3_stls_begin - STLS */
int pop3_stls_begin(struct pop3_session *s, struct outcome *o)
{
	if (pop3_send(s, "STLS", NULL, o) < 0)
		return -1;
	if (conn_pending(s->conn) > 0) {
		s->broken = 1;
		dsn_defer(o, "4.7.5", "POP3 server %s sent data after its STLS reply", s->server);
		return -1;
	}
	return 0;
}

/* pop3_login - USER and PASS */
int pop3_login(struct pop3_session *s, const char *user, const char *password, struct outcome *o)
{
	int rc;

	if (strpbrk(user, "\r\n") || strpbrk(password, "\r\n")) {
		dsn_defer(o, "4.3.5", "POP3 server %s: mail.user or mail.password has CR or LF",
			  s->server);
		return -1;
	}
	rc = pop3_send(s, "USER", user, o);
	if (rc == 0)
		rc = pop3_send(s, "PASS", password, o);
	if (rc < 0 && !s->broken)
		o->status[2] = '7';
	return rc;
}

/* pop3_xoauth2 - AUTH XOAUTH2 with the initial response (RFC 5034) */
int pop3_xoauth2(struct pop3_session *s, const char *user, const char *token, struct outcome *o)
{
	char raw[4096], b64[5600];
	int n, rc;

	n = snprintf(raw, sizeof(raw), "user=%s\001auth=Bearer %s\001\001", user, token);
	if (n < 0 || (size_t)n >= sizeof(raw) - 8
	    || base64_encode(raw, (size_t)n, b64 + 8, sizeof(b64) - 8) == 0) {
		explicit_bzero(raw, sizeof(raw));
		dsn_defer(o, "4.3.5", "POP3 server %s: the OAuth2 token is too long", s->server);
		return -1;
	}
	memcpy(b64, "XOAUTH2 ", 8);
	rc = pop3_send(s, "AUTH", b64, o);
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(b64, sizeof(b64));
	return rc;
}

/* pop3_parse_uidl - "N UID" */
int pop3_parse_uidl(const char *line, struct pop3_uidl *u)
{
	unsigned long n = 0;
	const char *p = line;
	size_t len;

	if (*p < '1' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		n = n * 10 + (unsigned long)(*p++ - '0');
		if (n > 0xffffffffUL)
			return -1;
	}
	if (*p++ != ' ')
		return -1;
	len = strlen(p);
	if (len == 0 || len > POP3_UIDL_MAX)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return -1;
	u->number = n;
	memcpy(u->uid, p, len + 1);
	return 0;
}

struct uidl_list {
	struct pop3_uidl *v;
	size_t n, cap;
};

/* on_uidl - one UIDL line */
static int on_uidl(const char *line, void *arg)
{
	struct uidl_list *l = arg;

	if (l->n == POP3_LIST_MAX)
		return 0;
	if (l->n == l->cap) {
		struct pop3_uidl *v = realloc(l->v, (l->cap = l->cap ? 2 * l->cap : 64) * sizeof(*v));

		if (v == NULL)
			return -1;
		l->v = v;
	}
	if (pop3_parse_uidl(line, &l->v[l->n]) < 0)
		return -1;
	l->n++;
	return 0;
}

/* pop3_uidl - UIDL */
int pop3_uidl(struct pop3_session *s, struct pop3_uidl **list, size_t *n, struct outcome *o)
{
	struct uidl_list l = { NULL, 0, 0 };
	int rc = pop3_send(s, "UIDL", NULL, o);

	if (rc == 0)
		rc = pop3_multiline(s, "UIDL", on_uidl, &l, o);
	if (rc < 0) {
		free(l.v);
		l.v = NULL;
		l.n = 0;
	}
	*list = l.v;
	*n = l.n;
	return rc;
}

/* pop3_retr_begin - RETR */
int pop3_retr_begin(struct pop3_session *s, unsigned long n, struct outcome *o)
{
	char arg[24];

	snprintf(arg, sizeof(arg), "%lu", n);
	if (pop3_send(s, "RETR", arg, o) < 0)
		return -1;
	s->body_open = 1;
	s->body_done = 0;
	s->at_line_start = BODY_LINE_START;
	return 0;
}

/* pop3_retr_read - the body, unstuffed, up to CRLF.CRLF */
ssize_t pop3_retr_read(struct pop3_session *s, char *buf, size_t n)
{
	const unsigned char *p;
	ssize_t k, i;
	size_t out = 0;

	if (n < 2)
		return errno = EINVAL, -1;
	while (out == 0 && s->body_open && !s->body_done) {
		if ((k = conn_peek(s->conn, &p)) < 0) {
			s->broken = 1;
			errno = EIO;
			return -1;
		}
		for (i = 0; i < k && out + 2 <= n && !s->body_done; i++) {
			unsigned char c = p[i];

			switch (s->at_line_start) {
			case BODY_LINE_START:
				if (c == '.') {
					s->at_line_start = BODY_DOT;
					continue;
				}
				break;
			case BODY_DOT:
				if (c == '\r') {
					s->at_line_start = BODY_DOT_CR;
					continue;
				}
				break;		/* "..x": the stuffed dot is gone, c follows */
			case BODY_DOT_CR:
				if (c == '\n') {
					s->body_done = 1;
					s->body_open = 0;
					continue;
				}
				buf[out++] = '\r';	/* ".\rx": not the end; keep the CR */
				break;
			}
			buf[out++] = (char)c;
			s->at_line_start = c == '\n' ? BODY_LINE_START : BODY_MID;
		}
		conn_consume(s->conn, (size_t)i);
	}
	return (ssize_t)out;
}

/* pop3_dele - DELE */
int pop3_dele(struct pop3_session *s, unsigned long n, struct outcome *o)
{
	char arg[24];

	snprintf(arg, sizeof(arg), "%lu", n);
	return pop3_send(s, "DELE", arg, o);
}

/* pop3_quit - QUIT, and its +OK (the deletions are done) */
int pop3_quit(struct pop3_session *s, struct outcome *o)
{
	if (s->broken)
		return pop3_broken(s, "QUIT", o);
	return pop3_send(s, "QUIT", NULL, o);
}
