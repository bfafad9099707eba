/*
 * imap - the IMAP4rev1 client of btprelay-fetch (imap.h).
 *
 * One function sends a tagged command and reads until its tagged reply
 * (imap_command); untagged lines go to a per-command handler. The message
 * literal of UID FETCH is not read into memory: imap_fetch_read() hands
 * it out as the caller reads, so a message of any size streams on to the
 * MTA. Texts quote the server's reply verbatim but never what we sent
 * (LOGIN and AUTHENTICATE carry credentials).
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap.h"
#include "log.h"
#include "util.h"

#define IMAP_SEARCH_LINE_MAX (1024 * 1024)

typedef int (*imap_untagged_fn)(struct imap_session *s, const char *line, size_t len, void *arg);

/* imap_broken - the session cannot go on: defer naming the command and the reason */
static int imap_broken(struct imap_session *s, const char *what, struct outcome *o)
{
	s->broken = 1;
	dsn_defer(o, "4.4.2", "IMAP server %s: %s during %s", s->server,
		  s->conn->err ? conn_strerror(s->conn->err) : "unexpected response", what);
	return -1;
}

/* imap_parse_number - a decimal 1..2^32-1 at *p, advancing *p; 0 when none */
unsigned long imap_parse_number(const char **p)
{
	unsigned long n = 0;
	const char *q = *p;

	while (*q >= '0' && *q <= '9') {
		n = n * 10 + (unsigned long)(*q - '0');
		if (n > 0xffffffffUL)
			return 0;
		q++;
	}
	if (q == *p)
		return 0;
	*p = q;
	return n;
}

/* imap_parse_caps - the IMAP_CAP_* bits of a capability list */
unsigned imap_parse_caps(const char *list)
{
	static const struct { const char *name; unsigned bit; } caps[] = {
		{ "STARTTLS", IMAP_CAP_STARTTLS }, { "LOGINDISABLED", IMAP_CAP_LOGINDISABLED },
		{ "UIDPLUS", IMAP_CAP_UIDPLUS }, { "MOVE", IMAP_CAP_MOVE },
		{ "AUTH=XOAUTH2", IMAP_CAP_XOAUTH2 }, { "IMAP4rev1", IMAP_CAP_IMAP4REV1 },
		{ "IDLE", IMAP_CAP_IDLE },
	};
	unsigned bits = 0;
	size_t i, len;

	while (*list) {
		while (*list == ' ')
			list++;
		len = strcspn(list, " ]");
		for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
			if (len == strlen(caps[i].name) && strncasecmp(list, caps[i].name, len) == 0)
				bits |= caps[i].bit;
		list += len;
		if (*list == ']')
			break;
	}
	return bits;
}

/* imap_parse_code - the number after "[KEY " in a line, 0 when none */
unsigned long imap_parse_code(const char *line, const char *key)
{
	const char *p = line;
	size_t klen = strlen(key);

	while ((p = strchr(p, '[')) != NULL) {
		p++;
		if (strncasecmp(p, key, klen) == 0 && p[klen] == ' ') {
			p += klen + 1;
			return imap_parse_number(&p);
		}
	}
	return 0;
}

/* imap_parse_literal - "{N}" at the end of a line */
int imap_parse_literal(const char *line, size_t len, unsigned long *size)
{
	size_t i;
	unsigned long long n = 0;

	if (len < 3 || line[len - 1] != '}')
		return 0;
	for (i = len - 1; i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9'; i--)
		;
	if (i == 0 || line[i - 1] != '{')
		return 0;
	if (i == len - 1 || len - 1 - i > 13)
		return -1;
	for (; i < len - 1; i++)
		n = n * 10 + (unsigned long long)(line[i] - '0');
	if (n >= (1ULL << 40))
		return -1;
	*size = (unsigned long)n;
	return 1;
}

/* imap_news - whether an untagged line announces new mail: "* N EXISTS" */
static int imap_news(const char *line)
{
	const char *p = line + 2;

	return strncmp(line, "* ", 2) == 0 && imap_parse_number(&p) != 0
		&& strcasecmp(p, " EXISTS") == 0;
}

/* imap_read_line - one response line without CRLF; -1 when the session broke */
static ssize_t imap_read_line(struct imap_session *s, char *buf, size_t size, const char *what,
			      struct outcome *o)
{
	ssize_t n = conn_read_line(s->conn, buf, size);

	if (n < 0) {
		imap_broken(s, what, o);
		if (s->conn->err == CONN_TOOLONG)
			dsn_defer(o, "4.4.2", "IMAP server %s: response line over %zu bytes during %s",
				  s->server, size - 1, what);
	}
	return n;
}

/* imap_skip_literal - read and drop n bytes (a literal we did not ask for) */
static int imap_skip_literal(struct imap_session *s, unsigned long n)
{
	const unsigned char *p;
	ssize_t k;

	while (n > 0) {
		if ((k = conn_peek(s->conn, &p)) < 0)
			return -1;
		if ((unsigned long)k > n)
			k = (ssize_t)n;
		conn_consume(s->conn, (size_t)k);
		n -= (unsigned long)k;
	}
	return 0;
}

/* imap_tagged - whether line is the reply to tag: 0 OK, -1 NO/BAD (o set), 1 not ours */
static int imap_tagged(struct imap_session *s, const char *line, const char *what,
		       struct outcome *o)
{
	char tag[32], text[600];
	size_t tl = (size_t)snprintf(tag, sizeof(tag), "a%lu ", s->tag);

	if (strncmp(line, tag, tl) != 0)
		return 1;
	line += tl;
	if (strncasecmp(line, "OK", 2) == 0 && (line[2] == ' ' || line[2] == '\0'))
		return 0;
	str_printable(text, sizeof(text), line, strlen(line));
	dsn_defer(o, "4.4.2", "IMAP server %s refused %s: %s", s->server, what, text);
	if (strncasecmp(line, "NO", 2) != 0 && strncasecmp(line, "BAD", 3) != 0)
		s->broken = 1;		/* neither OK, NO nor BAD: out of sync */
	return -1;
}

/*
 * imap_command - send a tagged command (what names it in texts; fmt is the
 * command line without tag and CRLF) and read up to its tagged reply.
 * Untagged lines go to fn. A continuation request gets cont the first
 * time (a SASL response), an empty line after that (RFC 3501 6.2.2: the
 * client cancels). Returns 0 on OK, -1 with o set.
 */
static int imap_command(struct imap_session *s, const char *what, imap_untagged_fn fn, void *arg,
			const char *cont, char *buf, size_t size, struct outcome *o,
			const char *fmt, ...) __attribute__((format(printf, 9, 10)));
static int imap_command(struct imap_session *s, const char *what, imap_untagged_fn fn, void *arg,
			const char *cont, char *buf, size_t size, struct outcome *o,
			const char *fmt, ...)
{
	va_list ap;
	ssize_t n;
	int r, rc;
	unsigned long lit;

	if (s->broken)
		return imap_broken(s, what, o);
	s->tag++;
	va_start(ap, fmt);
	r = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= size - 2)
		return dsn_defer(o, "4.3.5", "IMAP %s: command too long", what), -1;
	if (conn_printf(s->conn, "a%lu ", s->tag) < 0 || conn_puts(s->conn, buf) < 0
	    || conn_puts(s->conn, "\r\n") < 0 || conn_flush(s->conn) < 0)
		return imap_broken(s, what, o);
	for (;;) {
		if ((n = imap_read_line(s, buf, size, what, o)) < 0)
			return -1;
		if ((rc = imap_tagged(s, buf, what, o)) <= 0)
			return rc;
		if (buf[0] == '+') {
			if (conn_puts(s->conn, cont ? cont : "") < 0 || conn_puts(s->conn, "\r\n") < 0
			    || conn_flush(s->conn) < 0)
				return imap_broken(s, what, o);
			cont = NULL;
			continue;
		}
		if (strncmp(buf, "* ", 2) != 0)
			return imap_broken(s, what, o);
		if (strncasecmp(buf + 2, "BYE", 3) == 0) {
			char text[400];

			str_printable(text, sizeof(text), buf, (size_t)n);
			s->broken = 1;
			dsn_defer(o, "4.4.2", "IMAP server %s closed the session during %s: %s",
				  s->server, what, text);
			return -1;
		}
		/* an untagged response with a literal we did not ask for: skip it */
		if (imap_parse_literal(buf, (size_t)n, &lit) == 1) {
			if (imap_skip_literal(s, lit) < 0)
				return imap_broken(s, what, o);
			continue;
		}
		s->news |= imap_news(buf);
		if (fn != NULL && fn(s, buf, (size_t)n, arg) < 0)
			return imap_broken(s, what, o);
	}
}

/* on_capability - "* CAPABILITY ..." */
static int on_capability(struct imap_session *s, const char *line, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	if (strncasecmp(line, "* CAPABILITY ", 13) == 0)
		s->caps = imap_parse_caps(line + 13);
	return 0;
}

/* imap_open - greeting, capabilities */
int imap_open(struct imap_session *s, struct conn *c, const char *server, struct outcome *o)
{
	char line[IMAP_LINE_MAX], text[400];
	const char *cap;
	ssize_t n;

	memset(s, 0, sizeof(*s));
	s->conn = c;
	s->server = server;
	if ((n = imap_read_line(s, line, sizeof(line), "greeting", o)) < 0)
		return -1;
	if (strncasecmp(line, "* OK", 4) != 0) {
		str_printable(text, sizeof(text), line, (size_t)n);
		s->broken = 1;
		dsn_defer(o, "4.4.2", "IMAP server %s greeted with: %s", s->server, text);
		return -1;
	}
	if ((cap = strstr(line, "[CAPABILITY ")) != NULL) {
		s->caps = imap_parse_caps(cap + 12);
		return 0;
	}
	return imap_capability(s, o);
}

/* imap_capability - CAPABILITY */
int imap_capability(struct imap_session *s, struct outcome *o)
{
	char line[IMAP_LINE_MAX];

	s->caps = 0;
	return imap_command(s, "CAPABILITY", on_capability, NULL, NULL, line, sizeof(line), o,
			    "CAPABILITY");
}

/* imap_starttls_begin - STARTTLS up to its OK (RFC 3501 6.2.1) */
int imap_starttls_begin(struct imap_session *s, struct outcome *o)
{
	char line[IMAP_LINE_MAX];

	if (imap_command(s, "STARTTLS", NULL, NULL, NULL, line, sizeof(line), o, "STARTTLS") < 0)
		return -1;
	if (conn_pending(s->conn) > 0) {	/* plaintext after the OK: an injection attempt */
		s->broken = 1;
		dsn_defer(o, "4.7.5", "IMAP server %s sent data after its STARTTLS reply", s->server);
		return -1;
	}
	return 0;
}

/* imap_quote - "s" with \ and " escaped; -1 when s has CR, LF, NUL or 8-bit bytes */
static int imap_quote(char *out, size_t size, const char *s)
{
	size_t j = 0;

	out[j++] = '"';
	for (; *s; s++) {
		if (*s == '\r' || *s == '\n' || (unsigned char)*s >= 0x80 || j + 4 >= size)
			return -1;
		if (*s == '"' || *s == '\\')
			out[j++] = '\\';
		out[j++] = *s;
	}
	out[j++] = '"';
	out[j] = '\0';
	return 0;
}

/* imap_login - LOGIN */
int imap_login(struct imap_session *s, const char *user, const char *password, struct outcome *o)
{
	char line[IMAP_LINE_MAX], qu[600], qp[600];
	int rc;

	if (s->caps & IMAP_CAP_LOGINDISABLED) {
		dsn_defer(o, "4.7.0", "IMAP server %s does not allow LOGIN here (LOGINDISABLED)",
			  s->server);
		return -1;
	}
	if (imap_quote(qu, sizeof(qu), user) < 0 || imap_quote(qp, sizeof(qp), password) < 0) {
		dsn_defer(o, "4.3.5", "IMAP server %s: mail.user or mail.password has a character "
			  "LOGIN cannot carry (CR, LF, 8-bit) or is too long", s->server);
		return -1;
	}
	rc = imap_command(s, "LOGIN", on_capability, NULL, NULL, line, sizeof(line), o,
			  "LOGIN %s %s", qu, qp);
	explicit_bzero(qp, sizeof(qp));
	explicit_bzero(line, sizeof(line));
	if (rc < 0 && !s->broken)
		o->status[2] = '7';		/* 4.7.0: authentication */
	return rc;
}

/* imap_xoauth2 - AUTHENTICATE XOAUTH2 */
int imap_xoauth2(struct imap_session *s, const char *user, const char *token, struct outcome *o)
{
	char line[IMAP_LINE_MAX], raw[4096], b64[5600];
	int n, rc;

	n = snprintf(raw, sizeof(raw), "user=%s\001auth=Bearer %s\001\001", user, token);
	if (n < 0 || (size_t)n >= sizeof(raw)
	    || base64_encode(raw, (size_t)n, b64, sizeof(b64)) == 0) {
		explicit_bzero(raw, sizeof(raw));
		dsn_defer(o, "4.3.5", "IMAP server %s: the OAuth2 token is too long", s->server);
		return -1;
	}
	rc = imap_command(s, "AUTHENTICATE XOAUTH2", on_capability, NULL, b64, line, sizeof(line),
			  o, "AUTHENTICATE XOAUTH2");
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(b64, sizeof(b64));
	return rc;
}

/* on_select - "* OK [UIDVALIDITY n]" */
static int on_select(struct imap_session *s, const char *line, size_t len, void *arg)
{
	unsigned long v;

	(void)len;
	(void)arg;
	if ((v = imap_parse_code(line, "UIDVALIDITY")) != 0)
		s->uidvalidity = v;
	return 0;
}

/* imap_select - SELECT */
int imap_select(struct imap_session *s, const char *mailbox, struct outcome *o)
{
	char line[IMAP_LINE_MAX], q[600];

	if (imap_quote(q, sizeof(q), mailbox) < 0) {
		dsn_defer(o, "4.3.5", "IMAP mailbox name not usable (CR, LF, 8-bit or too long)");
		return -1;
	}
	s->uidvalidity = 0;
	return imap_command(s, "SELECT", on_select, NULL, NULL, line, sizeof(line), o,
			    "SELECT %s", q);
}

struct search_result {
	unsigned long *uids;
	size_t n, cap;
};

/* on_search - "* SEARCH 1 2 3" */
static int on_search(struct imap_session *s, const char *line, size_t len, void *arg)
{
	struct search_result *r = arg;
	const char *p = line + 8;
	unsigned long uid;

	(void)s;
	(void)len;
	if (strncasecmp(line, "* SEARCH", 8) != 0)
		return 0;
	while (*p == ' ') {
		p++;
		if ((uid = imap_parse_number(&p)) == 0)
			return -1;
		if (r->n == IMAP_SEARCH_MAX)
			return 0;
		if (r->n == r->cap) {
			unsigned long *u = realloc(r->uids, (r->cap = r->cap ? 2 * r->cap : 256)
						   * sizeof(*u));
			if (u == NULL)
				return -1;
			r->uids = u;
		}
		r->uids[r->n++] = uid;
	}
	return *p == '\0' ? 0 : -1;
}

/* imap_uid_search - UID SEARCH ALL */
int imap_uid_search(struct imap_session *s, unsigned long **uids, size_t *n, struct outcome *o)
{
	struct search_result r = { NULL, 0, 0 };
	char *line = xmalloc(IMAP_SEARCH_LINE_MAX);
	int rc;

	s->news = 0;			/* what is there now, the search lists */
	rc = imap_command(s, "UID SEARCH", on_search, &r, NULL, line, IMAP_SEARCH_LINE_MAX, o,
			  "UID SEARCH ALL");
	free(line);
	if (rc < 0) {
		free(r.uids);
		r.uids = NULL;
		r.n = 0;
	}
	*uids = r.uids;
	*n = r.n;
	return rc;
}

/* imap_fetch_begin - UID FETCH up to the message literal */
int imap_fetch_begin(struct imap_session *s, unsigned long uid, unsigned long *size,
		     struct outcome *o)
{
	char line[IMAP_LINE_MAX];
	unsigned long lit;
	ssize_t n;
	int rc;

	if (s->broken)
		return imap_broken(s, "UID FETCH", o);
	s->tag++;
	if (conn_printf(s->conn, "a%lu UID FETCH %lu (BODY.PEEK[])\r\n", s->tag, uid) < 0
	    || conn_flush(s->conn) < 0)
		return imap_broken(s, "UID FETCH", o);
	for (;;) {
		if ((n = imap_read_line(s, line, sizeof(line), "UID FETCH", o)) < 0)
			return -1;
		if ((rc = imap_tagged(s, line, "UID FETCH", o)) <= 0)
			return rc == 0 ? 1 : -1;	/* OK without a body: no such UID */
		if (strncmp(line, "* ", 2) != 0)
			return imap_broken(s, "UID FETCH", o);
		if ((rc = imap_parse_literal(line, (size_t)n, &lit)) < 0)
			return imap_broken(s, "UID FETCH", o);
		if (rc == 0) {			/* a flag update or other news */
			s->news |= imap_news(line);
			continue;
		}
		if (strstr(line, " FETCH (") != NULL && strstr(line, "BODY[] {") != NULL) {
			s->literal_left = lit;
			s->literal_open = 1;
			*size = lit;
			return 0;
		}
		if (imap_skip_literal(s, lit) < 0)
			return imap_broken(s, "UID FETCH", o);
	}
}

/* imap_fetch_read - the literal, as the caller reads it */
ssize_t imap_fetch_read(struct imap_session *s, char *buf, size_t n)
{
	const unsigned char *p;
	ssize_t k;

	if (!s->literal_open || s->literal_left == 0)
		return 0;
	if ((k = conn_peek(s->conn, &p)) < 0) {
		s->broken = 1;
		errno = EIO;
		return -1;
	}
	if ((unsigned long)k > s->literal_left)
		k = (ssize_t)s->literal_left;
	if ((size_t)k > n)
		k = (ssize_t)n;
	memcpy(buf, p, (size_t)k);
	conn_consume(s->conn, (size_t)k);
	s->literal_left -= (unsigned long)k;
	return k;
}

/* imap_fetch_end - the rest of the response: ")" or more items, then the tagged OK */
int imap_fetch_end(struct imap_session *s, struct outcome *o)
{
	char line[IMAP_LINE_MAX];
	unsigned long lit;
	ssize_t n;
	int rc;

	if (s->literal_left > 0 && imap_skip_literal(s, s->literal_left) < 0)
		return imap_broken(s, "UID FETCH", o);
	s->literal_left = 0;
	s->literal_open = 0;
	for (;;) {
		if ((n = imap_read_line(s, line, sizeof(line), "UID FETCH", o)) < 0)
			return -1;
		if ((rc = imap_tagged(s, line, "UID FETCH", o)) <= 0)
			return rc;
		s->news |= imap_news(line);
		if ((rc = imap_parse_literal(line, (size_t)n, &lit)) < 0
		    || (rc == 1 && imap_skip_literal(s, lit) < 0))
			return imap_broken(s, "UID FETCH", o);
	}
}

/* imap_uid_store - UID STORE +FLAGS.SILENT */
int imap_uid_store(struct imap_session *s, unsigned long uid, const char *flag, struct outcome *o)
{
	char line[IMAP_LINE_MAX];

	return imap_command(s, "UID STORE", NULL, NULL, NULL, line, sizeof(line), o,
			    "UID STORE %lu +FLAGS.SILENT (%s)", uid, flag);
}

/* imap_uid_move - UID MOVE, else UID COPY and \Deleted (expunged later) */
int imap_uid_move(struct imap_session *s, unsigned long uid, const char *folder, struct outcome *o)
{
	char line[IMAP_LINE_MAX], q[600];

	if (imap_quote(q, sizeof(q), folder) < 0) {
		dsn_defer(o, "4.3.5", "fetch_move_folder not usable (CR, LF, 8-bit or too long)");
		return -1;
	}
	if (s->caps & IMAP_CAP_MOVE)
		return imap_command(s, "UID MOVE", NULL, NULL, NULL, line, sizeof(line), o,
				    "UID MOVE %lu %s", uid, q);
	if (imap_command(s, "UID COPY", NULL, NULL, NULL, line, sizeof(line), o,
			 "UID COPY %lu %s", uid, q) < 0)
		return -1;
	return imap_uid_store(s, uid, "\\Deleted", o);
}

/* imap_expunge - UID EXPUNGE (UIDPLUS) of uids, else EXPUNGE */
int imap_expunge(struct imap_session *s, const unsigned long *uids, size_t n, struct outcome *o)
{
	char line[IMAP_LINE_MAX];
	size_t i, len;
	int rc = 0;

	if (n == 0)
		return 0;
	if (!(s->caps & IMAP_CAP_UIDPLUS))
		return imap_command(s, "EXPUNGE", NULL, NULL, NULL, line, sizeof(line), o, "EXPUNGE");
	/* in batches that keep the command line short */
	for (i = 0; i < n && rc == 0;) {
		char set[4000];

		len = 0;
		for (; i < n && len + 12 < sizeof(set); i++)
			len += (size_t)snprintf(set + len, sizeof(set) - len, "%s%lu",
						len ? "," : "", uids[i]);
		rc = imap_command(s, "UID EXPUNGE", NULL, NULL, NULL, line, sizeof(line), o,
				  "UID EXPUNGE %s", set);
	}
	return rc;
}

/* imap_idle_line - one line while idling: 1 new mail, 0 other news, -1 (o set) failure */
static int imap_idle_line(struct imap_session *s, struct outcome *o)
{
	char line[IMAP_LINE_MAX], text[400];
	unsigned long lit;
	ssize_t n;
	int rc;

	if ((n = imap_read_line(s, line, sizeof(line), "IDLE", o)) < 0)
		return -1;
	if ((rc = imap_tagged(s, line, "IDLE", o)) <= 0) {	/* the server ended IDLE itself */
		if (rc == 0)
			dsn_defer(o, "4.4.2", "IMAP server %s ended IDLE unasked", s->server);
		s->broken = 1;
		return -1;
	}
	if (strncmp(line, "* ", 2) != 0)
		return imap_broken(s, "IDLE", o);
	if (strncasecmp(line + 2, "BYE", 3) == 0) {
		str_printable(text, sizeof(text), line, (size_t)n);
		s->broken = 1;
		dsn_defer(o, "4.4.2", "IMAP server %s closed the session during IDLE: %s",
			  s->server, text);
		return -1;
	}
	if (imap_parse_literal(line, (size_t)n, &lit) == 1 && imap_skip_literal(s, lit) < 0)
		return imap_broken(s, "IDLE", o);
	return imap_news(line);
}

/* imap_idle - IDLE until new mail, the time or *stop, then DONE (RFC 2177) */
int imap_idle(struct imap_session *s, int seconds, volatile sig_atomic_t *stop, struct outcome *o)
{
	char line[IMAP_LINE_MAX];
	double end = conn_now() + seconds;
	ssize_t n;
	int news = 0, rc;

	if (s->news)			/* announced during the pass, after its search */
		return 1;
	if (s->broken)
		return imap_broken(s, "IDLE", o);
	s->tag++;
	if (conn_printf(s->conn, "a%lu IDLE\r\n", s->tag) < 0 || conn_flush(s->conn) < 0)
		return imap_broken(s, "IDLE", o);
	for (;;) {		/* up to the continuation request; news before it counts too */
		if ((n = imap_read_line(s, line, sizeof(line), "IDLE", o)) < 0)
			return -1;
		if ((rc = imap_tagged(s, line, "IDLE", o)) <= 0)
			return rc == 0 ? imap_broken(s, "IDLE", o) : -1;
		if (line[0] == '+')
			break;
		if (strncmp(line, "* ", 2) != 0)
			return imap_broken(s, "IDLE", o);
		news |= imap_news(line);
	}
	while (!news && !*stop && conn_now() < end) {
		struct pollfd pfd = { .fd = s->conn->fd, .events = POLLIN };
		double left = end - conn_now();

		if (!conn_input(s->conn) && poll(&pfd, 1, left > 1 ? 1000 : (int)(left * 1000) + 1) <= 0)
			continue;	/* nothing yet, or a signal: look at *stop and the time */
		if ((rc = imap_idle_line(s, o)) < 0)
			return -1;
		news = rc;
	}
	if (conn_puts(s->conn, "DONE\r\n") < 0 || conn_flush(s->conn) < 0)
		return imap_broken(s, "IDLE", o);
	for (;;) {		/* up to the tagged OK of IDLE */
		if ((n = imap_read_line(s, line, sizeof(line), "IDLE", o)) < 0)
			return -1;
		if ((rc = imap_tagged(s, line, "IDLE", o)) <= 0)
			return rc < 0 ? -1 : news;
		if (strncmp(line, "* ", 2) != 0)
			return imap_broken(s, "IDLE", o);
		news |= imap_news(line);
	}
}

/* imap_logout - LOGOUT without waiting */
void imap_logout(struct imap_session *s)
{
	if (s->broken || s->conn == NULL)
		return;
	s->tag++;
	if (conn_printf(s->conn, "a%lu LOGOUT\r\n", s->tag) == 0)
		conn_flush(s->conn);
}
