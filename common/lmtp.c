/*
 * lmtp - the server side of LMTP for btprelay-lmtp (RFC 2033, RFC 5321's
 * command syntax, RFC 2920 pipelining on the client's side).
 *
 * The session's state changes in lmtp_enter() only, called by
 * lmtp_session_step(), which decides on each command, and by
 * lmtp_session_done() at the end of a message.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "lmtp.h"
#include "util.h"

static const struct {
	const char *name;
	enum lmtp_verb verb;
} lmtp_verbs[] = {
	{ "LHLO", LMTP_LHLO }, { "MAIL", LMTP_MAIL }, { "RCPT", LMTP_RCPT },
	{ "DATA", LMTP_DATA }, { "RSET", LMTP_RSET }, { "NOOP", LMTP_NOOP },
	{ "QUIT", LMTP_QUIT }, { "XFORWARD", LMTP_XFORWARD },
};

static void lmtp_bad(struct lmtp_cmd *cmd, const char *reply)
{
	cmd->verb = LMTP_BAD;
	cmd->reply = reply;
}

/*
 * lmtp_path - "<address>" at *p: NUL-terminates the address in place and
 * returns it (without <>), with *p after the '>'. A '>' inside a quoted
 * local part ("a>b"@x) or escaped with a backslash does not end it. NULL
 * when there is no such path.
 */
static char *lmtp_path(char **p)
{
	char *s = *p, *addr;
	int quoted = 0;

	if (*s != '<')
		return NULL;
	addr = ++s;
	for (; *s != '\0'; s++) {
		if (quoted && *s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '"')
			quoted = !quoted;
		else if (*s == '>' && !quoted)
			break;
	}
	if (*s != '>')
		return NULL;
	*s++ = '\0';
	*p = s;
	return addr;
}

/* lmtp_mail_param - one MAIL FROM parameter; 0, or -1 with the reply set */
static int lmtp_mail_param(char *param, struct lmtp_cmd *cmd)
{
	char *value = strchr(param, '='), *end;

	if (value != NULL)
		*value++ = '\0';
	if (strcasecmp(param, "SIZE") == 0 && value != NULL) {
		errno = 0;
		cmd->size = strtol(value, &end, 10);
		if (!isdigit((unsigned char)*value) || *end != '\0' || errno == ERANGE) {
			lmtp_bad(cmd, "501 5.5.4 Bad SIZE parameter");
			return -1;
		}
		return 0;
	}
	if (strcasecmp(param, "BODY") == 0 && value != NULL
	    && (strcasecmp(value, "7BIT") == 0 || strcasecmp(value, "8BITMIME") == 0))
		return 0;	/* the transport declares 8BITMIME itself when the relay has it */
	/* the transport declares SMTPUTF8 itself when an address needs it */
	if (strcasecmp(param, "SMTPUTF8") == 0 && value == NULL)
		return 0;
	lmtp_bad(cmd, "555 5.5.4 Unsupported MAIL FROM parameter");
	return -1;
}

/* lmtp_address_cmd - "FROM:<a> params" or "TO:<a>" */
static void lmtp_address_cmd(char *rest, const char *keyword, struct lmtp_cmd *cmd)
{
	size_t klen = strlen(keyword);
	char *p = rest, *addr, *param;

	if (strncasecmp(p, keyword, klen) != 0) {
		lmtp_bad(cmd, cmd->verb == LMTP_MAIL ? "501 5.5.4 Syntax: MAIL FROM:<address>"
			 : "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	p += klen;
	while (*p == ' ')
		p++;
	addr = lmtp_path(&p);
	/* one grammar for every front end: nothing the relay is given can end its path early */
	if (addr == NULL || (*p != '\0' && *p != ' ')
	    || address_check(addr, cmd->verb == LMTP_MAIL ? ADDRESS_SENDER : ADDRESS_RECIPIENT)) {
		lmtp_bad(cmd, cmd->verb == LMTP_MAIL ? "501 5.1.7 Bad sender address syntax"
			 : "501 5.1.3 Bad recipient address syntax");
		return;
	}
	cmd->arg = addr;
	while ((param = strsep(&p, " ")) != NULL) {
		if (*param == '\0')
			continue;
		if (cmd->verb == LMTP_RCPT) {
			lmtp_bad(cmd, "555 5.5.4 Unsupported RCPT TO parameter");
			return;
		}
		if (lmtp_mail_param(param, cmd) < 0)
			return;
	}
}

/*
 * lmtp_xforward - IDENT=, Postfix's queue id, when it is one: letters and
 * digits only, so that it is safe as a log prefix. Other attributes are
 * not used.
 */
static void lmtp_xforward(char *rest, struct lmtp_cmd *cmd)
{
	char *attr;

	while ((attr = strsep(&rest, " ")) != NULL) {
		const char *v = attr + 6;
		size_t n = 0;

		if (strncasecmp(attr, "IDENT=", 6) != 0)
			continue;
		while (isalnum((unsigned char)v[n]))
			n++;
		if (n > 0 && n <= 32 && v[n] == '\0')
			cmd->ident = v;
	}
}

void lmtp_parse(char *line, struct lmtp_cmd *cmd)
{
	char *rest = line;
	size_t i, vlen;

	memset(cmd, 0, sizeof(*cmd));
	cmd->verb = LMTP_UNKNOWN;
	cmd->size = -1;
	vlen = strcspn(line, " ");
	rest = line + vlen;
	if (*rest == ' ')
		*rest++ = '\0';
	cmd->arg = rest;
	for (i = 0; i < sizeof(lmtp_verbs) / sizeof(lmtp_verbs[0]); i++)
		if (strcasecmp(line, lmtp_verbs[i].name) == 0)
			cmd->verb = lmtp_verbs[i].verb;
	switch (cmd->verb) {
	case LMTP_MAIL:
		lmtp_address_cmd(rest, "FROM:", cmd);
		break;
	case LMTP_RCPT:
		lmtp_address_cmd(rest, "TO:", cmd);
		break;
	case LMTP_XFORWARD:
		lmtp_xforward(rest, cmd);
		break;
	default:
		break;
	}
}

/* --- the session's state -------------------------------------------------- */

static const char *const lmtp_state_names[] = {
	"GREETING", "READY", "MAIL", "RCPT", "DATA", "QUIT",
};

const char *lmtp_state_name(enum lmtp_state state)
{
	size_t i = (size_t)state;

	return i < sizeof(lmtp_state_names) / sizeof(lmtp_state_names[0]) ? lmtp_state_names[i] : "?";
}

/* lmtp_enter - the one place where the session changes state */
static void lmtp_enter(struct lmtp_session *s, enum lmtp_state state)
{
	s->state = state;
}

/* lmtp_transaction_reset - sender, recipients, SIZE and IDENT forgotten */
static void lmtp_transaction_reset(struct lmtp_session *s)
{
	size_t i;

	free(s->sender);
	s->sender = NULL;
	for (i = 0; i < s->nrcpt; i++) {
		free(s->rcpt[i]);
		s->rcpt[i] = NULL;
	}
	s->nrcpt = 0;
	s->size = -1;
	s->ident[0] = '\0';
}

void lmtp_session_init(struct lmtp_session *s, const char *name)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->size = -1;
	/* the extensions Postfix's lmtp(8) uses; RFC 2033 4.1: PIPELINING and ENHANCEDSTATUSCODES */
	snprintf(s->lhlo, sizeof(s->lhlo), "250-%s\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 XFORWARD IDENT", name);
	lmtp_enter(s, LMTP_STATE_GREETING);
}

/*
 * lmtp_session_step - the command against the state. MAIL before LHLO is
 * taken, as Postfix's smtpd does without smtpd_helo_required; RSET and
 * LHLO end a transaction in any state.
 */
const char *lmtp_session_step(struct lmtp_session *s, const struct lmtp_cmd *cmd)
{
	int in_transaction = s->state == LMTP_STATE_MAIL || s->state == LMTP_STATE_RCPT;

	if (s->state == LMTP_STATE_DATA || s->state == LMTP_STATE_QUIT)
		return NULL;
	switch (cmd->verb) {
	case LMTP_LHLO:
		lmtp_transaction_reset(s);
		lmtp_enter(s, LMTP_STATE_READY);
		return s->lhlo;
	case LMTP_XFORWARD:
		if (cmd->ident != NULL)
			str_copy(s->ident, cmd->ident, sizeof(s->ident));
		return "250 2.0.0 Ok";
	case LMTP_MAIL:
		if (in_transaction)
			return "503 5.5.1 Error: nested MAIL command";
		s->sender = xstrdup(cmd->arg);
		s->size = cmd->size;
		lmtp_enter(s, LMTP_STATE_MAIL);
		return "250 2.1.0 Ok";
	case LMTP_RCPT:
		if (!in_transaction)
			return "503 5.5.1 Error: need MAIL command";
		if (s->nrcpt == LMTP_RCPT_MAX)
			return "452 4.5.3 Error: too many recipients";
		s->rcpt[s->nrcpt++] = xstrdup(cmd->arg);
		lmtp_enter(s, LMTP_STATE_RCPT);
		return "250 2.1.5 Ok";
	case LMTP_DATA:
		if (!in_transaction)
			return "503 5.5.1 Error: need MAIL command";
		if (s->state != LMTP_STATE_RCPT)
			return "554 5.5.1 Error: no valid recipients";
		lmtp_enter(s, LMTP_STATE_DATA);
		return "354 End data with <CR><LF>.<CR><LF>";
	case LMTP_RSET:
		lmtp_transaction_reset(s);
		if (in_transaction)
			lmtp_enter(s, LMTP_STATE_READY);
		return "250 2.0.0 Ok";
	case LMTP_NOOP:
		return "250 2.0.0 Ok";
	case LMTP_QUIT:
		lmtp_enter(s, LMTP_STATE_QUIT);
		return "221 2.0.0 Bye";
	case LMTP_BAD:
		return cmd->reply;
	case LMTP_UNKNOWN:
		break;
	}
	return "500 5.5.2 Error: command not recognized";
}

void lmtp_session_done(struct lmtp_session *s)
{
	lmtp_transaction_reset(s);
	lmtp_enter(s, LMTP_STATE_READY);
}

void lmtp_session_free(struct lmtp_session *s)
{
	lmtp_transaction_reset(s);
}

/* --- the message ---------------------------------------------------------- */

/* where the next byte of the message falls */
enum {
	BODY_BOL = 0,		/* at the start of a line */
	BODY_DOT,		/* after a dot that starts a line */
	BODY_DOTCR,		/* after a dot and a CR that start a line */
	BODY_MID,		/* inside a line */
	BODY_CR,		/* after a CR inside a line */
};

void lmtp_body_init(struct lmtp_body *b, struct conn *c)
{
	memset(b, 0, sizeof(*b));
	b->c = c;
	b->state = BODY_BOL;
}

/* body_byte - one byte of the transparent form; writes 0 to 2 bytes of the message at out */
static size_t body_byte(struct lmtp_body *b, unsigned char ch, char *out)
{
	size_t k = 0;

	switch (b->state) {
	case BODY_BOL:
		if (ch == '.') {
			b->state = BODY_DOT;
			return 0;
		}
		break;
	case BODY_DOT:
		if (ch == '\r') {
			b->state = BODY_DOTCR;
			return 0;
		}
		if (ch == '\n') {		/* a lone dot ended by a bare LF */
			b->done = 1;
			return 0;
		}
		break;				/* the dot was stuffing: dropped */
	case BODY_DOTCR:
		if (ch == '\n') {
			b->done = 1;
			return 0;
		}
		out[k++] = '\r';		/* ".\r" and more: the dot was stuffing */
		break;
	case BODY_CR:
		if (ch == '\n')
			break;			/* CR LF -> LF, below */
		out[k++] = '\r';		/* a bare CR stays in the message */
		break;
	default:
		break;
	}
	if (ch == '\r') {
		b->state = BODY_CR;
		return k;
	}
	out[k++] = (char)ch;
	b->state = ch == '\n' ? BODY_BOL : BODY_MID;
	return k;
}

ssize_t lmtp_body_read(void *arg, char *buf, size_t n)
{
	struct lmtp_body *b = arg;
	size_t out = 0;

	while (out == 0 && !b->done) {
		const unsigned char *p;
		ssize_t avail = conn_peek(b->c, &p);
		size_t i;

		if (avail < 0) {
			b->failed = 1;
			errno = b->c->err == CONN_TIMEOUT ? ETIMEDOUT : ECONNRESET;
			return -1;
		}
		for (i = 0; i < (size_t)avail && !b->done && out + 2 <= n; i++)
			out += body_byte(b, p[i], buf + out);
		conn_consume(b->c, i);
	}
	return (ssize_t)out;
}

ssize_t lmtp_body_read_stuffed(void *arg, char *buf, size_t n)
{
	struct lmtp_body *b = arg;
	size_t out = 0;

	while (out == 0 && !b->done) {
		const unsigned char *p, *nl;
		ssize_t avail = conn_peek(b->c, &p);
		size_t i = 0, take;

		if (avail < 0) {
			b->failed = 1;
			errno = b->c->err == CONN_TIMEOUT ? ETIMEDOUT : ECONNRESET;
			return -1;
		}
		while (i < (size_t)avail && !b->done && out + 2 <= n) {
			switch (b->state) {
			case BODY_BOL:		/* a dot here is stuffing, or the end */
				if (p[i] == '.') {
					b->state = BODY_DOT;
					i++;
				} else {
					b->state = BODY_MID;
				}
				break;
			case BODY_DOT:
				if (p[i] == '\r' || p[i] == '\n') {
					b->done = p[i] == '\n';
					b->state = BODY_DOTCR;
					i++;
					break;
				}
				buf[out++] = '.';
				b->state = BODY_MID;
				break;
			case BODY_DOTCR:
				if (p[i] == '\n') {
					b->done = 1;
					i++;
					break;
				}
				buf[out++] = '.';	/* ".\r" and more: a line like any */
				buf[out++] = '\r';
				b->state = BODY_MID;
				break;
			default:		/* the rest of the line, or what has come of it */
				take = (size_t)avail - i < n - out ? (size_t)avail - i : n - out;
				nl = memchr(p + i, '\n', take);
				if (nl != NULL)
					take = (size_t)(nl - (p + i)) + 1;
				memcpy(buf + out, p + i, take);
				out += take;
				i += take;
				b->state = nl != NULL ? BODY_BOL : BODY_MID;
				break;
			}
		}
		conn_consume(b->c, i);
	}
	return (ssize_t)out;
}

int lmtp_body_drain(struct lmtp_body *b)
{
	char buf[4096];
	ssize_t n;

	while ((n = lmtp_body_read(b, buf, sizeof(buf))) > 0)
		;
	return n < 0 ? -1 : 0;
}

void lmtp_reply(const struct outcome *o, char *buf, size_t size)
{
	static const int code[] = { 250, 451, 550 };
	/* a reply line of at most 1000 bytes with CR LF (RFC 5321 4.5.3.1.5) */
	char text[1000 - 4 - DSN_STATUS_SIZE - 2];

	str_printable(text, sizeof(text), o->text, strlen(o->text));
	/* success: the relay's own reply, which starts with its code */
	snprintf(buf, size, "%d %s %s%s", code[o->cls], o->status,
		 o->cls == DSN_OK ? "relayed: " : "", text);
}
