/*
 * smtp - the SMTP client session to the relay (RFC 5321, 3207, 4954, 2920,
 * 6152, 6531, 1870).
 *
 * The session is a state machine (enum smtp_state in smtp.h); smtp_enter()
 * is the only place that changes state. Every reply goes through one
 * reader, smtp_read_reply(), which reads the whole reply (all lines, with
 * bounded memory) and refuses anything that is not "DDD[ -]text".
 *
 * smtp_session_open() returns 0 when the relay is ready for MAIL, and
 * smtp_send_message() 0 when the relay answered 2xx to the final dot for
 * every recipient. Both return -1 with an outcome: the relay's own reply
 * through dsn_from_reply() (5xx bounces, 4xx defers), or a deferral that
 * names the stage for everything else (connection lost, timeout, garbage,
 * TLS, AUTH refused, an unreadable message). A 5xx to the greeting or to
 * EHLO/HELO refuses the session, not the message: it defers too (as
 * Postfix's smtp_skip_5xx_greeting does), with the relay's status in class
 * 4. A session whose connection can no longer be trusted is
 * SMTP_STATE_BROKEN: smtp_quit() sends nothing.
 * btprelay-transport.8 has the whole table (tests/integration/status-table.txt).
 *
 * AUTH is XOAUTH2 when the caller gives a bearer token, else PLAIN, else
 * LOGIN; with auth_require_tls nothing is sent outside TLS. The body is
 * streamed: LF -> CRLF, dot-stuffing, and lines over line_length_limit
 * broken with CRLF SPACE exactly as Postfix's smtp_line_length_limit does.
 * Several recipients: DATA only when every RCPT was accepted, otherwise
 * RSET and one outcome with every recipient's reply (smtp_summarize).
 *
 * Credentials never reach a log line or a text, and the buffers that held
 * their base64 form are wiped. A relay that quotes them back is masked:
 * each AUTH method tells s->redact what it sent, and every reply line is
 * checked against it (redact.h) before it is logged or becomes a text.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "redact.h"
#include "smtp.h"
#include "tls.h"
#include "util.h"

#define SMTP_REPLY_LINES_MAX	1000	/* lines in one reply */
#define SMTP_CMD_MAX		1200	/* MAIL FROM:<986 bytes> and its parameters */
#define SMTP_BODY_CHUNK		65536	/* read from the message fd at a time */
#define SMTP_CRED_MAX		4096	/* user + password for AUTH PLAIN */
#define SMTP_TOKEN_MAX		16384	/* an OAuth2 bearer token for AUTH XOAUTH2 */
/* the longest SASL response: XOAUTH2's "user=" U ^A "auth=Bearer " T ^A ^A */
#define SMTP_SASL_MAX		(SMTP_CRED_MAX + SMTP_TOKEN_MAX + 32)
#define SMTP_EXCERPT_MAX	120	/* of garbage, in texts */

static const char *const smtp_state_names[] = {
	"NEW", "GREETING", "EHLO", "HELO", "STARTTLS", "AUTH", "READY", "MAIL", "RCPT",
	"DATA", "BODY", "EOD", "RSET", "QUIT", "BROKEN",
};

/* smtp_enter - the one place where the session changes state */
static void smtp_enter(struct smtp_session *s, enum smtp_state state)
{
	s->state = state;
}

/* smtp_relay - the relay's name for texts */
static const char *smtp_relay(const struct smtp_session *s)
{
	return s->opt->relay_name && *s->opt->relay_name ? s->opt->relay_name : "relay";
}

/* smtp_timeout - set the per-operation timeout, when one is configured */
static void smtp_timeout(struct smtp_session *s, int ms)
{
	if (ms > 0)
		conn_set_timeout(s->conn, ms);
}

/*
 * smtp_conn_fail - defer 4.4.2 for a connection failure (closed, reset,
 * timeout) while writing a command or reading the reply to stage. The
 * session is broken from here on.
 */
static int smtp_conn_fail(struct smtp_session *s, enum dsn_stage stage, int writing,
			  struct outcome *o)
{
	struct conn *c = s->conn;
	const char *what = dsn_stage_name(stage);
	char detail[sizeof(c->errtext) + 4] = "";
	int timeout = c->err == CONN_TIMEOUT;

	/* A relay that closes a TLS session without close_notify has just closed it. */
	if ((c->err == CONN_IO || c->err == CONN_TLS) && c->errtext[0]
	    && strstr(c->errtext, "unexpected eof") == NULL)
		snprintf(detail, sizeof(detail), " (%s)", c->errtext);
	if (((c->err == CONN_TLS && strstr(c->errtext, "alert") != NULL) || c->tls_cert_unmet)
	    && s->state != SMTP_STATE_BODY && stage != DSN_STAGE_EOD) {
		/* The relay ended TLS: with TLS 1.3, a refused client certificate shows only now. */
		dsn_fail(o, OUTCOME_TLS, "4.7.5", "TLS failure with relay at %s: %s%s", what,
			 c->errtext[0] ? c->errtext : conn_strerror(c->err),
			 c->tls_cert_unmet || strstr(c->errtext, "certificate required") != NULL
			 ? " (the relay wants a client certificate: smtp_tls_cert_file)" : "");
	} else if (s->state == SMTP_STATE_BODY) {
		if (timeout)
			dsn_defer(o, "4.4.2", "timeout sending the message body to relay");
		else
			dsn_defer(o, "4.4.2", "lost connection with relay while sending the message body%s",
				  detail);
	} else if (stage == DSN_STAGE_GREETING) {
		if (timeout)
			dsn_defer(o, "4.4.2", "timeout waiting for the greeting from relay");
		else
			dsn_defer(o, "4.4.2", "lost connection with relay while receiving the greeting%s",
				  detail);
	} else if (stage == DSN_STAGE_EOD) {
		/*
		 * The relay may have taken the message and failed to say so:
		 * deferring can deliver it twice. That is unavoidable (RFC 1047);
		 * losing it would be worse.
		 */
		if (timeout)
			dsn_defer(o, "4.4.2", "timeout reading reply to %s from relay "
				  "(the message may be delivered twice)", what);
		else
			dsn_defer(o, "4.4.2", "lost connection with relay after end of data%s "
				  "(the message may be delivered twice)", detail);
	} else if (timeout) {
		dsn_defer(o, "4.4.2", "timeout %s %s", writing ? "sending" : "reading reply to", what);
	} else {
		dsn_defer(o, "4.4.2", "lost connection with relay while sending %s%s", what, detail);
	}
	log_debug("smtp %s: %s", smtp_state_names[s->state], o->text);
	smtp_enter(s, SMTP_STATE_BROKEN);
	return -1;
}

/* smtp_garbage - defer 4.5.0 for a reply that is not SMTP; the session is broken */
static int smtp_garbage(struct smtp_session *s, enum dsn_stage stage, const char *why,
			const char *line, size_t len, struct outcome *o)
{
	char excerpt[SMTP_EXCERPT_MAX + 1];

	if (line == NULL) {
		dsn_defer(o, "4.5.0", "protocol error: relay sent %s in reply to %s", why,
			  dsn_stage_name(stage));
	} else {
		str_printable(excerpt, sizeof(excerpt), line, len);
		redact_text(&s->redact, excerpt, sizeof(excerpt));
		dsn_defer(o, "4.5.0", "protocol error: relay sent %s in reply to %s: %s%s", why,
			  dsn_stage_name(stage), len ? excerpt : "(empty line)",
			  len > SMTP_EXCERPT_MAX ? "..." : "");
	}
	log_debug("smtp %s: %s", smtp_state_names[s->state], o->text);
	smtp_enter(s, SMTP_STATE_BROKEN);
	return -1;
}

/* smtp_reply_line - parse one reply line: "250-text", "250 text" or "250" */
int smtp_reply_line(const char *line, size_t len, int *code, int *last)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9'
	    || line[2] < '0' || line[2] > '9')
		return -1;
	if (len == 3 || line[3] == ' ')
		*last = 1;
	else if (line[3] == '-')
		*last = 0;
	else
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	return 0;
}

/* smtp_ehlo_word - whether the word at p (n bytes) is name, ignoring case */
static int smtp_ehlo_word(const char *p, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* smtp_ehlo_keyword - the SMTP_EXT_* bit for one EHLO line (after "250-"), and SIZE's value */
unsigned smtp_ehlo_keyword(const char *line, unsigned long *size)
{
	static const struct {
		const char *name;
		unsigned bit;
	} words[] = {
		{ "PIPELINING", SMTP_EXT_PIPELINING },
		{ "STARTTLS", SMTP_EXT_STARTTLS },
		{ "8BITMIME", SMTP_EXT_8BITMIME },
		{ "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
		{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES },
	};
	const char *p;
	size_t kl, i, n;
	unsigned bits = 0;

	kl = strcspn(line, " =\t");
	p = line + kl;
	p += strspn(p, " =\t");

	if (smtp_ehlo_word(line, kl, "AUTH")) {
		/* "AUTH PLAIN LOGIN", or the pre-RFC 4954 form "AUTH=LOGIN" */
		while (*p) {
			n = strcspn(p, " =\t");
			if (smtp_ehlo_word(p, n, "PLAIN"))
				bits |= SMTP_EXT_AUTH_PLAIN;
			else if (smtp_ehlo_word(p, n, "LOGIN"))
				bits |= SMTP_EXT_AUTH_LOGIN;
			else if (smtp_ehlo_word(p, n, "XOAUTH2"))
				bits |= SMTP_EXT_AUTH_XOAUTH2;
			p += n;
			p += strspn(p, " =\t");
		}
		return bits;
	}
	if (smtp_ehlo_word(line, kl, "SIZE")) {
		unsigned long v = 0;

		/* No value, or not a number: the relay announces no limit. */
		for (; *p >= '0' && *p <= '9'; p++) {
			if (v > (ULONG_MAX - (unsigned long)(*p - '0')) / 10) {
				v = ULONG_MAX;
				break;
			}
			v = v * 10 + (unsigned long)(*p - '0');
		}
		if (*p != '\0' && *p != ' ' && *p != '\t' && !(*p >= '0' && *p <= '9'))
			v = 0;	/* "SIZE 10x": not a number */
		if (size)
			*size = v;
		return SMTP_EXT_SIZE;
	}
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (smtp_ehlo_word(line, kl, words[i].name))
			return words[i].bit;
	return 0;
}

/*
 * smtp_read_lines - read one whole reply to stage into r: every line
 * checked, the code the same on every line, the text joined by spaces and
 * cut at SMTP_REPLY_MAX (the rest is read and dropped). When ext is not
 * NULL, the lines after the first are EHLO keywords. -1 with o deferred
 * on connection failure or garbage (the session is then broken).
 */
static int smtp_read_lines(struct smtp_session *s, enum dsn_stage stage, struct smtp_reply *r,
			   unsigned *ext, unsigned long *size, struct outcome *o)
{
	struct conn *c = s->conn;
	char line[SMTP_LINE_MAX];
	size_t tlen = 0, nlines = 0;
	int code, last = 0;
	ssize_t n;

	r->code = 0;
	r->text[0] = 0;
	do {
		n = conn_read_line(c, line, sizeof(line));
		if (n < 0) {
			if (c->err == CONN_TOOLONG)
				return smtp_garbage(s, stage, "a reply line longer than 1023 bytes",
						    NULL, 0, o);
			return smtp_conn_fail(s, stage, 0, o);
		}
		if (smtp_reply_line(line, (size_t)n, &code, &last) < 0)
			return smtp_garbage(s, stage, "garbage", line, (size_t)n, o);
		if (nlines > 0 && code != r->code)
			return smtp_garbage(s, stage, "a reply with mixed codes", line, (size_t)n, o);
		if (++nlines > SMTP_REPLY_LINES_MAX)
			return smtp_garbage(s, stage, "a reply of more than 1000 lines", line,
					    (size_t)n, o);
		r->code = code;
		if (ext && nlines > 1)
			*ext |= smtp_ehlo_keyword(n > 4 ? line + 4 : "", size);
		/* Verbatim but printable; lines joined by one space. */
		if (tlen + 1 < sizeof(r->text)) {
			if (tlen > 0)
				r->text[tlen++] = ' ';
			str_printable(r->text + tlen, sizeof(r->text) - tlen, line, (size_t)n);
			/* a relay that quotes what AUTH sent: before it is logged or becomes a text */
			redact_text(&s->redact, r->text + tlen, sizeof(r->text) - tlen);
			tlen += strlen(r->text + tlen);
		}
	} while (!last);
	s->replies++;
	log_debug("smtp %s: < %s", smtp_state_names[s->state], r->text);
	return 0;
}

/*
 * smtp_read_reply - smtp_read_lines() within one timeout for the whole
 * reply, however many lines it has, as Postfix's smtp(8) does with
 * smtp_per_request_deadline = yes (its default is one limit per read
 * call, which a relay stretches by sending a line just inside it).
 */
static int smtp_read_reply(struct smtp_session *s, enum dsn_stage stage, struct smtp_reply *r,
			   unsigned *ext, unsigned long *size, struct outcome *o)
{
	int rc;

	conn_op_begin(s->conn);
	rc = smtp_read_lines(s, stage, r, ext, size, o);
	conn_op_end(s->conn);
	return rc;
}

/* smtp_reply_fail - the outcome of an unwanted reply to stage */
static int smtp_reply_fail(struct smtp_session *s, enum dsn_stage stage,
			   const struct smtp_reply *r, struct outcome *o)
{
	if (r->code / 100 == 4 || r->code / 100 == 5) {
		dsn_from_reply(o, smtp_relay(s), r->code, r->text, stage);
		/*
		 * A relay that refuses the session (greeting, EHLO and HELO) says
		 * nothing about this message: our address, our HELO name, its
		 * access rules. An operator fixes that; the mail waits (Postfix
		 * skips 5xx greetings too).
		 */
		if (r->code / 100 == 5 && (stage == DSN_STAGE_GREETING || stage == DSN_STAGE_EHLO
					   || stage == DSN_STAGE_HELO)) {
			o->cls = DSN_DEFER;
			o->status[0] = '4';
		}
		/* 421: the relay is closing the connection. */
		if (r->code == 421)
			smtp_enter(s, SMTP_STATE_BROKEN);
	} else {
		dsn_defer(o, "4.5.0", "protocol error: unexpected reply from %s in reply to %s: %s",
			  smtp_relay(s), dsn_stage_name(stage), r->text);
	}
	return -1;
}

/*
 * smtp_cmd - queue one command line (CRLF added), without flushing. logas
 * replaces the line in the debug log when it carries a secret.
 */
static int smtp_cmd(struct smtp_session *s, enum dsn_stage stage, const char *line,
		    const char *logas, struct outcome *o)
{
	log_debug("smtp %s: > %s", smtp_state_names[s->state], logas ? logas : line);
	if (conn_puts(s->conn, line) < 0 || conn_write(s->conn, "\r\n", 2) < 0)
		return smtp_conn_fail(s, stage, 1, o);
	return 0;
}

/* smtp_flush - send what is queued */
static int smtp_flush(struct smtp_session *s, enum dsn_stage stage, struct outcome *o)
{
	if (conn_flush(s->conn) < 0)
		return smtp_conn_fail(s, stage, 1, o);
	return 0;
}

/* smtp_chat - one command in lock-step: send, flush, read the whole reply */
static int smtp_chat(struct smtp_session *s, enum dsn_stage stage, const char *line,
		     const char *logas, struct smtp_reply *r, struct outcome *o)
{
	if (smtp_cmd(s, stage, line, logas, o) < 0 || smtp_flush(s, stage, o) < 0)
		return -1;
	return smtp_read_reply(s, stage, r, NULL, NULL, o);
}

/*
 * smtp_ehlo - EHLO, and HELO when EHLO is refused with 5xx (but not after
 * STARTTLS: a relay that spoke ESMTP before TLS must do so after it).
 * Capabilities learned earlier are discarded.
 */
static int smtp_ehlo(struct smtp_session *s, int after_tls, struct smtp_reply *r,
		     struct outcome *o)
{
	char line[SMTP_CMD_MAX];
	const char *name = s->opt->helo_name && *s->opt->helo_name ? s->opt->helo_name : "localhost";
	unsigned ext = 0;
	unsigned long size = 0;
	size_t i;

	for (i = 0; name[i]; i++) {
		if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f || i >= 255) {
			dsn_config(o, "invalid HELO name: control characters, spaces, "
				   "or longer than 255 bytes");
			return -1;
		}
	}
	s->ext = 0;
	s->size_limit = 0;
	smtp_enter(s, SMTP_STATE_EHLO);
	snprintf(line, sizeof(line), "EHLO %s", name);
	if (smtp_cmd(s, DSN_STAGE_EHLO, line, NULL, o) < 0
	    || smtp_flush(s, DSN_STAGE_EHLO, o) < 0
	    || smtp_read_reply(s, DSN_STAGE_EHLO, r, &ext, &size, o) < 0)
		return -1;
	if (r->code == 250) {
		s->ext = ext;
		s->size_limit = ext & SMTP_EXT_SIZE ? size : 0;
		s->helo_only = 0;
		return 0;
	}
	if (r->code / 100 != 5 || after_tls)
		return smtp_reply_fail(s, DSN_STAGE_EHLO, r, o);

	smtp_enter(s, SMTP_STATE_HELO);
	snprintf(line, sizeof(line), "HELO %s", name);
	if (smtp_chat(s, DSN_STAGE_HELO, line, NULL, r, o) < 0)
		return -1;
	if (r->code != 250)
		return smtp_reply_fail(s, DSN_STAGE_HELO, r, o);
	s->helo_only = 1;
	return 0;
}

/* smtp_tls_required - whether TLS is mandatory, and why (for 4.7.4 texts) */
static const char *smtp_tls_required(const struct smtp_options *opt)
{
	if (opt->tls_level < TLS_LEVEL_ENCRYPT)
		return NULL;
	if (opt->tls_required_by)
		return opt->tls_required_by;
	return opt->tls_level == TLS_LEVEL_VERIFY ? "smtp_tls_security_level=verify"
		: "smtp_tls_security_level=encrypt";
}

/* smtp_starttls - STARTTLS, the handshake with the certificate checks, EHLO again */
static int smtp_starttls(struct smtp_session *s, struct smtp_reply *r, struct outcome *o)
{
	const struct smtp_options *opt = s->opt;
	const char *why = smtp_tls_required(opt);
	struct tls_peer peer = { opt->tls_sni, opt->tls_no_name_check ? NULL : opt->tls_verify_name,
				 opt->tls_no_chain_check, opt->tls_fingerprints };
	struct conn *c = s->conn;
	char desc[200];

	smtp_enter(s, SMTP_STATE_STARTTLS);
	if (smtp_chat(s, DSN_STAGE_STARTTLS, "STARTTLS", NULL, r, o) < 0)
		return -1;
	if (r->code != 220) {
		if (why) {
			dsn_fail(o, OUTCOME_TLS_REQUIRED, "4.7.4", "relay refused STARTTLS, but TLS is "
				 "required (%s): %s", why, r->text);
			return -1;
		}
		if (r->code == 421 || r->code / 100 < 4)
			return smtp_reply_fail(s, DSN_STAGE_STARTTLS, r, o);
		/* Opportunistic TLS: the session goes on in plaintext (RFC 3207 §4.1). */
		log_info("relay %s refused STARTTLS, continuing without TLS: %s", smtp_relay(s),
			 r->text);
		return 0;
	}
	/*
	 * Bytes after the 220 were sent before TLS but would be read as if they
	 * came through it: a man in the middle injecting replies (CVE-2011-0411).
	 */
	if (conn_pending(c) > 0) {
		dsn_defer(o, "4.5.0", "protocol error: relay sent %zu bytes after its reply to "
			  "STARTTLS (possible command injection); not starting TLS", conn_pending(c));
		smtp_enter(s, SMTP_STATE_BROKEN);
		return -1;
	}
	if (tls_handshake_peer(c, opt->tls_ctx, &peer) < 0) {
		dsn_fail(o, OUTCOME_TLS, "4.7.5", "TLS handshake with relay failed: %s", c->errtext);
		smtp_enter(s, SMTP_STATE_BROKEN);
		return -1;
	}
	s->tls_active = 1;
	tls_describe(c, desc, sizeof(desc));
	log_debug("smtp STARTTLS: %s", desc);
	return smtp_ehlo(s, 1, r, o);
}

/* smtp_tls - STARTTLS when the policy wants it and the relay offers it */
static int smtp_tls(struct smtp_session *s, struct smtp_reply *r, struct outcome *o)
{
	const struct smtp_options *opt = s->opt;
	const char *why = smtp_tls_required(opt);

	if (s->tls_active || opt->tls_level == TLS_LEVEL_NONE)
		return 0;
	if (!(s->ext & SMTP_EXT_STARTTLS)) {
		if (why) {
			dsn_fail(o, OUTCOME_TLS_REQUIRED, "4.7.4", "relay does not offer STARTTLS, but "
				 "TLS is required (%s)", why);
			return -1;
		}
		log_debug("smtp: relay does not offer STARTTLS, continuing without TLS");
		return 0;
	}
	if (opt->tls_ctx == NULL) {
		if (why) {
			dsn_fail(o, OUTCOME_TLS_REQUIRED, "4.3.5", "TLS is required (%s), but no TLS "
				 "context is configured", why);
			return -1;
		}
		return 0;
	}
	return smtp_starttls(s, r, o);
}

/* smtp_auth_fail - a refused AUTH is an operator's fix: defer, never bounce */
static int smtp_auth_fail(struct smtp_session *s, const struct smtp_reply *r, struct outcome *o)
{
	if (r->code / 100 == 4)
		smtp_reply_fail(s, DSN_STAGE_AUTH, r, o);
	else
		dsn_auth(o, "SMTP authentication failed: %s said: %s (in reply to %s)",
			 smtp_relay(s), r->text, dsn_stage_name(DSN_STAGE_AUTH));
	/* r->text is masked already (smtp_read_reply); this catches a piece the cut joined */
	redact_text(&s->redact, o->text, sizeof(o->text));
	if (r->code / 100 == 4)
		return -1;
	/* A relay still waiting for a continuation line is out of step with us. */
	if (r->code / 100 == 3)
		smtp_enter(s, SMTP_STATE_BROKEN);
	return -1;
}

/*
 * smtp_b64_line - prefix + base64(data) as one allocated line; NULL if too
 * long. Each AUTH method checks its own limits first; this one only bounds
 * the allocation, so it is the largest of them (SMTP_SASL_MAX).
 */
static char *smtp_b64_line(const char *prefix, const char *data, size_t len, size_t *size)
{
	size_t plen = strlen(prefix);
	char *line;

	if (len > SMTP_SASL_MAX)
		return NULL;
	*size = plen + (len + 2) / 3 * 4 + 1;
	line = xmalloc(*size);
	memcpy(line, prefix, plen);
	if (len > 0 && base64_encode(data, len, line + plen, *size - plen) == 0) {
		free(line);
		return NULL;
	}
	line[plen + (len + 2) / 3 * 4] = 0;
	return line;
}

/* smtp_wipe - wipe and free a buffer that held credentials */
static void smtp_wipe(void *p, size_t size)
{
	if (p) {
		explicit_bzero(p, size);
		free(p);
	}
}

/*
 * smtp_auth_initial - AUTH with an initial response (RFC 4954 4): the
 * command prefix and base64(raw) in one line, logged as logas. raw (from
 * redact_sasl_*) and the line are wiped and freed; a line too long is the
 * configuration error toolong.
 */
static int smtp_auth_initial(struct smtp_session *s, const char *prefix, char *raw, size_t rawlen,
			     const char *logas, const char *toolong, struct smtp_reply *r,
			     struct outcome *o)
{
	size_t lsize = 0;
	char *line = smtp_b64_line(prefix, raw, rawlen, &lsize);
	int rc;

	smtp_wipe(raw, rawlen + 1);
	if (line == NULL) {
		dsn_config(o, "%s", toolong);
		return -1;
	}
	rc = smtp_chat(s, DSN_STAGE_AUTH, line, logas, r, o);
	smtp_wipe(line, lsize);
	return rc;
}

/* smtp_auth_plain - AUTH PLAIN with the initial response: base64("\0user\0password") */
static int smtp_auth_plain(struct smtp_session *s, struct smtp_reply *r, struct outcome *o)
{
	static const char toolong[] = "SMTP AUTH user name or password too long";
	const char *user = s->opt->auth_user;
	const char *pass = s->opt->auth_password ? s->opt->auth_password : "";
	size_t rawlen = 0;
	char *raw;

	if (strlen(user) > SMTP_CRED_MAX || strlen(pass) > SMTP_CRED_MAX) {
		dsn_config(o, "%s", toolong);
		return -1;
	}
	redact_sent_plain(&s->redact, user, pass);
	raw = redact_sasl_plain(user, pass, &rawlen);
	if (smtp_auth_initial(s, "AUTH PLAIN ", raw, rawlen, "AUTH PLAIN (credentials not logged)",
			      toolong, r, o) < 0)
		return -1;
	if (r->code != 235)
		return smtp_auth_fail(s, r, o);
	return 0;
}

/* smtp_auth_login - AUTH LOGIN: user name and password, each after a 334 prompt */
static int smtp_auth_login(struct smtp_session *s, struct smtp_reply *r, struct outcome *o)
{
	const char *secret[2] = { s->opt->auth_user,
		s->opt->auth_password ? s->opt->auth_password : "" };
	static const char *const logas[2] = { "(user name not logged)", "(password not logged)" };
	size_t i, lsize = 0;
	char *line;
	int rc;

	if (smtp_chat(s, DSN_STAGE_AUTH, "AUTH LOGIN", NULL, r, o) < 0)
		return -1;
	for (i = 0; i < 2; i++) {
		if (r->code != 334)
			return smtp_auth_fail(s, r, o);
		line = smtp_b64_line("", secret[i], strlen(secret[i]), &lsize);
		if (line == NULL) {
			dsn_config(o, "SMTP AUTH user name or password too long");
			smtp_enter(s, SMTP_STATE_BROKEN);
			return -1;
		}
		if (i == 1)
			redact_sent_login(&s->redact, secret[1]);
		rc = smtp_chat(s, DSN_STAGE_AUTH, line, logas[i], r, o);
		smtp_wipe(line, lsize);
		if (rc < 0)
			return -1;
	}
	if (r->code != 235)
		return smtp_auth_fail(s, r, o);
	return 0;
}

/*
 * smtp_auth_xoauth2 - AUTH XOAUTH2 with the initial response
 * base64("user=" user ^A "auth=Bearer " token ^A ^A). A refused token comes
 * back as 334 with a base64 JSON error: answer it with an empty line, then
 * the relay sends its final reply; the JSON goes into the text (it holds
 * no secret: status, schemes, scope).
 */
static int smtp_auth_xoauth2(struct smtp_session *s, struct smtp_reply *r, struct outcome *o)
{
	static const char toolong[] = "SMTP AUTH user name or OAuth2 token too long";
	const char *user = s->opt->auth_user, *token = s->opt->auth_xoauth2_token;
	size_t rawlen = 0;
	char *raw, detail[300] = "";
	unsigned char json[256];
	ssize_t n;

	if (strlen(user) > SMTP_CRED_MAX || strlen(token) > SMTP_TOKEN_MAX) {
		dsn_config(o, "%s", toolong);
		return -1;
	}
	redact_sent_xoauth2(&s->redact, user, token);
	raw = redact_sasl_xoauth2(user, token, &rawlen);
	if (smtp_auth_initial(s, "AUTH XOAUTH2 ", raw, rawlen, "AUTH XOAUTH2 (token not logged)",
			      toolong, r, o) < 0)
		return -1;
	if (r->code == 334) {
		const char *b64 = strlen(r->text) > 4 ? r->text + 4 : "";

		n = base64_decode(b64, strlen(b64), json, sizeof(json) - 1);
		if (n > 0) {
			str_printable(detail, sizeof(detail), (const char *)json, (size_t)n);
			redact_text(&s->redact, detail, sizeof(detail));
			log_info("relay %s refused the OAuth2 token: %s", smtp_relay(s), detail);
		}
		if (smtp_chat(s, DSN_STAGE_AUTH, "", "(empty line after the XOAUTH2 error)", r, o) < 0)
			return -1;
	}
	if (r->code != 235) {
		smtp_auth_fail(s, r, o);
		if (detail[0] && o->cls == DSN_DEFER && strlen(o->text) + strlen(detail) + 20
		    < sizeof(o->text))
			snprintf(o->text + strlen(o->text), sizeof(o->text) - strlen(o->text),
				 "; XOAUTH2 error: %s", detail);
		return -1;
	}
	return 0;
}

/*
 * smtp_auth - AUTH XOAUTH2 when a bearer token is given, else PLAIN, else
 * LOGIN. Whether credentials may travel on this connection (TLS, or the
 * proxy tunnel) is the caller's decision (auth_require_tls); a missing
 * mechanism is an operator's fix: defer.
 */
static int smtp_auth(struct smtp_session *s, struct smtp_reply *r, struct outcome *o)
{
	smtp_enter(s, SMTP_STATE_AUTH);
	if (s->opt->auth_require_tls && !s->tls_active) {
		dsn_auth(o, "SMTP AUTH needs TLS here, and the session with the relay is "
			 "not encrypted: credentials are not sent in clear text");
		return -1;
	}
	if (s->opt->auth_xoauth2_token) {
		if (s->ext & SMTP_EXT_AUTH_XOAUTH2)
			return smtp_auth_xoauth2(s, r, o);
		dsn_auth(o, "relay does not offer AUTH XOAUTH2, needed for the OAuth2 "
			 "destination%s", s->ext & (SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN)
			 ? " (it offers PLAIN or LOGIN: use BasicAuthentication)" : "");
		return -1;
	}
	if (s->ext & SMTP_EXT_AUTH_PLAIN)
		return smtp_auth_plain(s, r, o);
	if (s->ext & SMTP_EXT_AUTH_LOGIN)
		return smtp_auth_login(s, r, o);
	dsn_auth(o, "relay offers no AUTH mechanism we support (PLAIN, LOGIN)%s",
		 s->tls_active || !(s->ext & SMTP_EXT_STARTTLS) ? ""
		 : "; it offers STARTTLS, which was not used: AUTH may need TLS");
	return -1;
}

/* smtp_session_open - greeting, EHLO (HELO), STARTTLS, AUTH */
int smtp_session_open(struct smtp_session *s, struct conn *c,
		      const struct smtp_options *opt, struct outcome *o)
{
	struct smtp_reply r;

	memset(s, 0, sizeof(*s));
	s->conn = c;
	s->opt = opt;
	s->tls_active = opt->implicit_tls != 0;
	conn_op_end(c);		/* reaching the relay is over: one timeout per reply from here */
	smtp_timeout(s, opt->command_timeout_ms);

	smtp_enter(s, SMTP_STATE_GREETING);
	if (smtp_read_reply(s, DSN_STAGE_GREETING, &r, NULL, NULL, o) < 0)
		return -1;
	if (r.code != 220)
		return smtp_reply_fail(s, DSN_STAGE_GREETING, &r, o);
	if (smtp_ehlo(s, 0, &r, o) < 0 || smtp_tls(s, &r, o) < 0)
		return -1;
	if (opt->auth_error) {
		smtp_enter(s, SMTP_STATE_AUTH);
		dsn_auth(o, "SMTP AUTH impossible: %s", opt->auth_error);
		return -1;
	}
	if (opt->auth_user && smtp_auth(s, &r, o) < 0)
		return -1;
	smtp_enter(s, SMTP_STATE_READY);
	return 0;
}

/* smtp_all - every recipient gets the same outcome, and so does the request */
static int smtp_all(const struct smtp_envelope *env, struct outcome *rcpt_out,
		    const struct outcome *o)
{
	size_t i;

	for (i = 0; i < env->nrcpt; i++)
		rcpt_out[i] = *o;
	return -1;
}

/*
 * smtp_summarize - some recipients failed (rcpt_out[i].cls != DSN_OK):
 * nothing was sent. o gets the worst outcome with every recipient's
 * reply, the failed ones first (they matter most when the text is cut):
 * "2 of 3 recipients refused, message not sent: <b>: ...; <c>: ...;
 * accepted: <a> (250 2.1.5 Ok)". The accepted recipients get "not
 * attempted" (4.0.0).
 */
static void smtp_summarize(const struct smtp_envelope *env, struct outcome *rcpt_out,
			   struct outcome *o)
{
	struct strbuf text;
	char addr[120];
	size_t i, nfail = 0, first = 0, worst = 0, nok = 0;

	for (i = 0; i < env->nrcpt; i++) {
		if (rcpt_out[i].cls == DSN_OK)
			continue;
		if (nfail == 0 || dsn_worse(&rcpt_out[i], &rcpt_out[worst]))
			worst = i;
		if (nfail++ == 0)
			first = i;
	}
	if (nfail == 0)
		return;
	if (env->nrcpt == 1) {
		*o = rcpt_out[0];
		return;
	}
	/* an outcome's text: cut with "..." where it would be cut anyway */
	strbuf_init(&text, DSN_TEXT_SIZE - 1);
	strbuf_printf(&text, "%zu of %zu recipients refused, message not sent: ", nfail,
		      env->nrcpt);
	for (i = 0, nfail = 0; i < env->nrcpt; i++) {
		if (rcpt_out[i].cls == DSN_OK)
			continue;
		str_printable(addr, sizeof(addr), env->rcpt[i], strlen(env->rcpt[i]));
		strbuf_printf(&text, "%s<%s>: %s", nfail++ ? "; " : "", addr, rcpt_out[i].text);
	}
	for (i = 0; i < env->nrcpt; i++) {
		if (rcpt_out[i].cls != DSN_OK)
			continue;
		str_printable(addr, sizeof(addr), env->rcpt[i], strlen(env->rcpt[i]));
		strbuf_printf(&text, "%s<%s> (%s)", nok++ ? ", " : "; accepted: ", addr,
			      rcpt_out[i].text);
	}
	dsn_set(o, rcpt_out[worst].cls, rcpt_out[worst].status, "%s", text.str);
	strbuf_free(&text);
	o->kind = rcpt_out[worst].kind;

	str_printable(addr, sizeof(addr), env->rcpt[first], strlen(env->rcpt[first]));
	for (i = 0; i < env->nrcpt; i++) {
		if (rcpt_out[i].cls != DSN_OK)
			continue;
		if (nfail > 1)
			dsn_defer(&rcpt_out[i], "4.0.0", "delivery not attempted: another recipient "
				  "of this request was rejected (<%s> and %zu more)", addr, nfail - 1);
		else
			dsn_defer(&rcpt_out[i], "4.0.0", "delivery not attempted: another recipient "
				  "of this request was rejected (<%s>)", addr);
	}
}

/* smtp_needs_utf8 - whether an address has a byte >= 0x80 */
static int smtp_needs_utf8(const char *a)
{
	for (; *a; a++)
		if ((unsigned char)*a >= 0x80)
			return 1;
	return 0;
}

/*
 * smtp_addr_fail - bounce for one address that the relay can never be
 * given: why (address_check), or SMTPUTF8 missing when why is NULL.
 * RFC 3463: 5.1.7 for a bad sender address, 5.1.3 for a recipient's.
 */
static void smtp_addr_fail(struct outcome *out, const char *a, enum address_role role,
			   const char *why)
{
	const char *who = role == ADDRESS_SENDER ? " (envelope sender)" : "";
	char addr[120];
	size_t len = strlen(a);

	str_printable(addr, sizeof(addr), a, len);
	if (why == NULL)
		dsn_bounce(out, "5.6.7", "relay does not support SMTPUTF8, required by address "
			   "<%s>%s", addr, who);
	else
		dsn_bounce(out, role == ADDRESS_SENDER ? "5.1.7" : "5.1.3",
			   "invalid address <%s%s>%s: %s", addr, len >= sizeof(addr) ? "..." : "",
			   who, why);
}

/*
 * smtp_check_envelope - refuse, before MAIL, what the relay can never be
 * given: addresses that are no RFC 5321 mailbox (address_check: CR/LF,
 * over-long, an unbalanced quote...), SMTPUTF8 addresses when the relay
 * lacks SMTPUTF8, a message over the relay's SIZE. Sets *utf8 when
 * SMTPUTF8 is needed. -1 with every outcome filled.
 */
static int smtp_check_envelope(struct smtp_session *s, const struct smtp_envelope *env,
			       int *utf8, struct outcome *rcpt_out, struct outcome *o)
{
	int have_utf8 = (s->ext & SMTP_EXT_SMTPUTF8) != 0, bad = 0;
	const char *why;
	size_t i;

	*utf8 = smtp_needs_utf8(env->sender);
	why = address_check(env->sender, ADDRESS_SENDER);
	if (why != NULL || (*utf8 && !have_utf8)) {
		smtp_addr_fail(o, env->sender, ADDRESS_SENDER, why);
		return smtp_all(env, rcpt_out, o);
	}
	if ((s->ext & SMTP_EXT_SIZE) && s->size_limit > 0 && env->size >= 0
	    && (unsigned long)env->size > s->size_limit) {
		dsn_bounce(o, "5.3.4", "message size %ld exceeds size limit %lu of relay",
			   env->size, s->size_limit);
		return smtp_all(env, rcpt_out, o);
	}
	for (i = 0; i < env->nrcpt; i++) {
		int u = smtp_needs_utf8(env->rcpt[i]);

		dsn_ok(&rcpt_out[i], "2.0.0", "address valid, not sent");
		*utf8 |= u;
		why = address_check(env->rcpt[i], ADDRESS_RECIPIENT);
		if (why != NULL || (u && !have_utf8)) {
			smtp_addr_fail(&rcpt_out[i], env->rcpt[i], ADDRESS_RECIPIENT, why);
			bad = 1;
		}
	}
	if (!bad)
		return 0;
	smtp_summarize(env, rcpt_out, o);
	return -1;
}

/* smtp_rset - abandon the transaction; the reply does not change any outcome */
static void smtp_rset(struct smtp_session *s)
{
	struct smtp_reply r;
	struct outcome ignored;

	if (s->state == SMTP_STATE_BROKEN)
		return;
	smtp_enter(s, SMTP_STATE_RSET);
	if (smtp_chat(s, DSN_STAGE_RSET, "RSET", NULL, &r, &ignored) < 0)
		return;
	smtp_enter(s, SMTP_STATE_READY);
}

/* smtp_abort - a transaction that must not complete: close without the final dot */
static void smtp_abort(struct smtp_session *s)
{
	conn_close(s->conn);
	smtp_enter(s, SMTP_STATE_BROKEN);
}

/* smtp_excerpt - the first line of the bytes the relay sent unasked, printable, for texts */
static void smtp_excerpt(struct smtp_session *s, char *buf, size_t size)
{
	const unsigned char *p;
	ssize_t n = conn_peek(s->conn, &p);
	size_t len = 0;

	buf[0] = 0;
	if (n <= 0)
		return;
	while (len < (size_t)n && p[len] != '\r' && p[len] != '\n')
		len++;
	str_printable(buf, size, (const char *)p, len);
	if (len >= size)
		memcpy(buf + size - 4, "...", 4);
}

/*
 * smtp_early_reply - after its 354 the relay reads the message, and its
 * reply comes after the final dot (RFC 5321 4.1.1.4, 3.3). Bytes from it
 * before the dot is sent (buffered with the 354, or there now: conn_input
 * does not wait) would be read as the reply to the dot: a relay, or a box
 * in the middle, that says 250 without reading the message would have us
 * report mail delivered that it never had. Postfix's smtp(8) takes such a
 * reply as the reply to the dot; this defers 4.5.0 and closes the
 * connection without the dot. 0 when nothing came.
 */
static int smtp_early_reply(struct smtp_session *s, struct outcome *o)
{
	char excerpt[SMTP_EXCERPT_MAX + 1];

	if (conn_input(s->conn) == 0)
		return 0;
	smtp_excerpt(s, excerpt, sizeof(excerpt));
	dsn_defer(o, "4.5.0", "protocol error: relay sent \"%s\" before the end of the message "
		  "data; the message was not sent", excerpt);
	log_debug("smtp %s: %s", smtp_state_names[s->state], o->text);
	smtp_abort(s);
	return -1;
}

/* smtp_body_read - the next chunk of the message: from the reader, else from fd */
static ssize_t smtp_body_read(const struct smtp_body_reader *rd, int fd, char *buf, size_t n)
{
	ssize_t k;

	do
		k = rd ? rd->read(rd->arg, buf, n) : read(fd, buf, n);
	while (k < 0 && errno == EINTR);
	return k;
}

/*
 * smtp_body - stream the message from rd or fd: LF -> CRLF, dot-stuffing,
 * the final dot. Memory is two fixed buffers whatever the message size. A
 * read error aborts the connection: a truncated message is never ended
 * with a dot.
 */
static int smtp_body(struct smtp_session *s, const struct smtp_body_reader *rd, int fd,
		     struct outcome *o)
{
	struct smtp_body_state st;
	char *in = xmalloc(SMTP_BODY_CHUNK), *out = xmalloc(SMTP_BODY_OUT_MAX(SMTP_BODY_CHUNK));
	size_t k;
	ssize_t n;
	int rc = -1;

	smtp_enter(s, SMTP_STATE_BODY);
	smtp_body_init(&st);
	st.line_limit = s->opt->line_length_limit > 0 ? (size_t)s->opt->line_length_limit : 0;
	st.stuffed = rd != NULL && rd->stuffed;
	for (;;) {
		n = smtp_body_read(rd, fd, in, SMTP_BODY_CHUNK);
		if (n < 0) {
			dsn_local(o, "error reading the message: %s", strerror(errno));
			smtp_abort(s);
			goto done;
		}
		if (n == 0)
			break;
		k = smtp_body_convert(&st, in, (size_t)n, out);
		if (conn_write(s->conn, out, k) < 0) {
			smtp_conn_fail(s, DSN_STAGE_DATA, 1, o);
			goto done;
		}
	}
	/* The last moment to notice a reply that is not one to our dot. */
	if (smtp_early_reply(s, o) < 0)
		goto done;
	k = smtp_body_finish(&st, out);
	if (conn_write(s->conn, out, k) < 0 || conn_flush(s->conn) < 0) {
		smtp_conn_fail(s, DSN_STAGE_EOD, 1, o);
		goto done;
	}
	rc = 0;
done:
	free(in);
	free(out);
	return rc;
}

/* smtp_mail_line - "MAIL FROM:<sender>" with SIZE=, BODY=8BITMIME, SMTPUTF8 */
static void smtp_mail_line(const struct smtp_session *s, const struct smtp_envelope *env,
			   int utf8, char *line, size_t size)
{
	size_t off;

	off = (size_t)snprintf(line, size, "MAIL FROM:<%s>", env->sender);
	if ((s->ext & SMTP_EXT_SIZE) && env->size >= 0)
		off += (size_t)snprintf(line + off, size - off, " SIZE=%ld", env->size);
	/* Declaring 8BITMIME for 7-bit content is valid (RFC 6152); a pipe cannot be pre-scanned. */
	if (s->ext & SMTP_EXT_8BITMIME)
		off += (size_t)snprintf(line + off, size - off, " BODY=8BITMIME");
	if (utf8)
		snprintf(line + off, size - off, " SMTPUTF8");
}

/*
 * smtp_rcpt_reply - the reply to RCPT i into rcpt_out[i]: the one place a
 * recipient's answer is taken, lock-step or pipelined. -1 with every
 * outcome filled when the connection failed or the relay said 421.
 */
static int smtp_rcpt_reply(struct smtp_session *s, const struct smtp_envelope *env, size_t i,
			   struct smtp_reply *r, struct outcome *rcpt_out, struct outcome *o)
{
	smtp_enter(s, SMTP_STATE_RCPT);
	if (smtp_read_reply(s, DSN_STAGE_RCPT, r, NULL, NULL, o) < 0)
		return smtp_all(env, rcpt_out, o);
	if (r->code / 100 == 2) {
		dsn_from_reply(&rcpt_out[i], smtp_relay(s), r->code, r->text, DSN_STAGE_RCPT);
	} else if (smtp_reply_fail(s, DSN_STAGE_RCPT, r, &rcpt_out[i]) < 0
		   && s->state == SMTP_STATE_BROKEN) {
		*o = rcpt_out[i];	/* 421: the relay is going away */
		return smtp_all(env, rcpt_out, o);
	}
	return 0;
}

/*
 * smtp_pipeline_replies - with PIPELINING, MAIL and the RCPTs are queued:
 * add DATA when there is one recipient, send it all in one write, then
 * read every reply in order. rcpt_out[i] gets each RCPT's outcome; *r ends
 * as DATA's reply when *data_sent. -1 with every outcome filled when MAIL
 * failed, the connection failed, or the relay said 421.
 */
static int smtp_pipeline_replies(struct smtp_session *s, const struct smtp_envelope *env,
				 int *data_sent, struct smtp_reply *r, struct outcome *rcpt_out,
				 struct outcome *o)
{
	struct outcome lost;
	size_t i;
	int mail_ok;

	if (env->nrcpt == 1) {
		smtp_enter(s, SMTP_STATE_DATA);
		if (smtp_cmd(s, DSN_STAGE_DATA, "DATA", NULL, o) < 0)
			return smtp_all(env, rcpt_out, o);
		*data_sent = 1;
	}
	if (smtp_flush(s, DSN_STAGE_MAIL, o) < 0)
		return smtp_all(env, rcpt_out, o);

	smtp_enter(s, SMTP_STATE_MAIL);
	if (smtp_read_reply(s, DSN_STAGE_MAIL, r, NULL, NULL, o) < 0)
		return smtp_all(env, rcpt_out, o);
	mail_ok = r->code / 100 == 2;
	if (!mail_ok) {
		/*
		 * Every recipient shares MAIL's outcome. The other replies (503)
		 * are read to keep the session in step; if the relay hangs up
		 * instead, MAIL's reply still says best what happened.
		 */
		smtp_reply_fail(s, DSN_STAGE_MAIL, r, o);
		for (i = 0; i < env->nrcpt + (size_t)*data_sent && s->state != SMTP_STATE_BROKEN; i++)
			smtp_read_reply(s, i < env->nrcpt ? DSN_STAGE_RCPT : DSN_STAGE_DATA, r,
					NULL, NULL, &lost);
		/* A 354 would leave the relay waiting for a body: hang up. */
		if (s->state != SMTP_STATE_BROKEN && *data_sent && r->code == 354)
			smtp_abort(s);
		if (s->state != SMTP_STATE_BROKEN)
			smtp_enter(s, SMTP_STATE_READY);
		return smtp_all(env, rcpt_out, o);
	}
	for (i = 0; i < env->nrcpt; i++)
		if (smtp_rcpt_reply(s, env, i, r, rcpt_out, o) < 0)
			return -1;
	if (*data_sent) {
		smtp_enter(s, SMTP_STATE_DATA);
		if (smtp_read_reply(s, DSN_STAGE_DATA, r, NULL, NULL, o) < 0)
			return smtp_all(env, rcpt_out, o);
	}
	return 0;
}

/*
 * smtp_send_data - every recipient accepted: DATA (unless pipelined, r is
 * then its reply), the body, the final reply; rcpt_out and o as
 * smtp_send_message
 */
static int smtp_send_data(struct smtp_session *s, const struct smtp_envelope *env,
			  int body_fd, int data_sent, struct smtp_reply *r,
			  struct outcome *rcpt_out, struct outcome *o)
{
	if (!data_sent) {
		smtp_enter(s, SMTP_STATE_DATA);
		if (smtp_chat(s, DSN_STAGE_DATA, "DATA", NULL, r, o) < 0)
			return smtp_all(env, rcpt_out, o);
	}
	if (r->code != 354) {
		smtp_reply_fail(s, DSN_STAGE_DATA, r, o);
		smtp_rset(s);
		return smtp_all(env, rcpt_out, o);
	}
	/* More than the 354 in the buffer: a reply before the message (smtp_early_reply). */
	if (conn_pending(s->conn) > 0 && smtp_early_reply(s, o) < 0)
		return smtp_all(env, rcpt_out, o);

	if (smtp_body(s, env->body, body_fd, o) < 0)
		return smtp_all(env, rcpt_out, o);
	smtp_enter(s, SMTP_STATE_EOD);
	smtp_timeout(s, s->opt->data_done_timeout_ms);
	if (smtp_read_reply(s, DSN_STAGE_EOD, r, NULL, NULL, o) < 0)
		return smtp_all(env, rcpt_out, o);
	smtp_timeout(s, s->opt->command_timeout_ms);
	/*
	 * A second reply right behind it: the first was not the reply to our
	 * dot (one that came early and slipped past smtp_early_reply). Which of
	 * the two is the relay's verdict cannot be known: defer.
	 */
	if (conn_input(s->conn) > 0) {
		char excerpt[SMTP_EXCERPT_MAX + 1];

		smtp_excerpt(s, excerpt, sizeof(excerpt));
		dsn_defer(o, "4.5.0", "protocol error: relay sent more than one reply to %s: "
			  "\"%s\", then \"%s\" (the message may be delivered twice)",
			  dsn_stage_name(DSN_STAGE_EOD), r->text, excerpt);
		log_debug("smtp %s: %s", smtp_state_names[s->state], o->text);
		smtp_abort(s);
		return smtp_all(env, rcpt_out, o);
	}
	smtp_enter(s, SMTP_STATE_READY);
	if (r->code / 100 != 2) {
		smtp_reply_fail(s, DSN_STAGE_EOD, r, o);
		return smtp_all(env, rcpt_out, o);
	}
	dsn_from_reply(o, smtp_relay(s), r->code, r->text, DSN_STAGE_EOD);
	smtp_all(env, rcpt_out, o);
	return 0;
}

/* smtp_send_message - MAIL, RCPT..., DATA, body, final reply */
int smtp_send_message(struct smtp_session *s, const struct smtp_envelope *env,
		      int body_fd, struct outcome *rcpt_out, struct outcome *o)
{
	struct smtp_reply r;
	char line[SMTP_CMD_MAX];
	size_t i, nok = 0;
	int utf8, pipelined = (s->ext & SMTP_EXT_PIPELINING) != 0, data_sent = 0;

	if (s->state != SMTP_STATE_READY) {
		dsn_local(o, "SMTP session not ready for a message (state %s)",
			  smtp_state_names[s->state]);
		return smtp_all(env, rcpt_out, o);
	}
	if (env->nrcpt == 0) {
		dsn_local(o, "no recipients");
		return -1;
	}
	if (smtp_check_envelope(s, env, &utf8, rcpt_out, o) < 0)
		return -1;

	/*
	 * MAIL and every RCPT (and DATA with a single recipient) go out in one
	 * write when the relay pipelines; otherwise each waits for its reply.
	 */
	smtp_enter(s, SMTP_STATE_MAIL);
	smtp_mail_line(s, env, utf8, line, sizeof(line));
	if (smtp_cmd(s, DSN_STAGE_MAIL, line, NULL, o) < 0)
		return smtp_all(env, rcpt_out, o);
	if (!pipelined) {
		if (smtp_flush(s, DSN_STAGE_MAIL, o) < 0
		    || smtp_read_reply(s, DSN_STAGE_MAIL, &r, NULL, NULL, o) < 0)
			return smtp_all(env, rcpt_out, o);
		if (r.code / 100 != 2) {
			smtp_reply_fail(s, DSN_STAGE_MAIL, &r, o);
			return smtp_all(env, rcpt_out, o);
		}
	}
	for (i = 0; i < env->nrcpt; i++) {
		smtp_enter(s, SMTP_STATE_RCPT);
		snprintf(line, sizeof(line), "RCPT TO:<%s>", env->rcpt[i]);
		if (smtp_cmd(s, DSN_STAGE_RCPT, line, NULL, o) < 0)
			return smtp_all(env, rcpt_out, o);
		if (pipelined)
			continue;
		if (smtp_flush(s, DSN_STAGE_RCPT, o) < 0)
			return smtp_all(env, rcpt_out, o);
		if (smtp_rcpt_reply(s, env, i, &r, rcpt_out, o) < 0)
			return -1;
	}
	if (pipelined && smtp_pipeline_replies(s, env, &data_sent, &r, rcpt_out, o) < 0)
		return -1;

	for (i = 0; i < env->nrcpt; i++)
		nok += rcpt_out[i].cls == DSN_OK;
	if (nok < env->nrcpt) {
		/* DATA only when every RCPT was accepted; a pipelined DATA's reply is ignored. */
		if (data_sent && r.code == 354)
			smtp_abort(s);
		else
			smtp_rset(s);
		smtp_summarize(env, rcpt_out, o);
		return -1;
	}

	return smtp_send_data(s, env, body_fd, data_sent, &r, rcpt_out, o);
}

/* smtp_quit - send QUIT without waiting for the reply */
void smtp_quit(struct smtp_session *s)
{
	if (s->conn == NULL || s->state == SMTP_STATE_BROKEN || s->state == SMTP_STATE_QUIT
	    || s->state == SMTP_STATE_NEW)
		return;
	smtp_enter(s, SMTP_STATE_QUIT);
	log_debug("smtp QUIT: > QUIT");
	if (conn_puts(s->conn, "QUIT\r\n") == 0)
		conn_flush(s->conn);
}

/* smtp_body_init - the state at the start of a message, no line limit */
void smtp_body_init(struct smtp_body_state *st)
{
	st->at_line_start = 1;
	st->cr_pending = 0;
	st->col = 0;
	st->line_limit = 0;
	st->stuffed = 0;
}

/*
 * smtp_body_run - len bytes of line content that hold no LF (a bare CR may
 * be among them), copied whole. A line that already holds line_limit bytes
 * is broken first with CRLF SPACE, as Postfix's smtp client does
 * (smtp_line_length_limit): the space keeps the break harmless in headers
 * (folding) and in MIME; a line of exactly line_limit bytes is not
 * touched. A '.' that starts a line is doubled, or with st->stuffed
 * passed on as the stuffing it already is; the stuffed dot is
 * transparency, not content, so it does not count. Returns the end of the
 * output.
 */
static char *smtp_body_run(struct smtp_body_state *st, const char *in, size_t len, char *out)
{
	size_t limit = st->line_limit, take;

	if (limit > 0 && limit < SMTP_LINE_LIMIT_MIN)
		limit = SMTP_LINE_LIMIT_MIN;
	while (len > 0) {
		if (limit > 0 && st->col >= limit) {
			memcpy(out, "\r\n ", 3);
			out += 3;
			st->col = 1;
			st->at_line_start = 0;
		}
		if (st->at_line_start && *in == '.') {
			*out++ = '.';
			if (st->stuffed) {
				st->at_line_start = 0;
				in++;
				len--;
				continue;
			}
		}
		st->at_line_start = 0;
		take = limit > 0 && limit - st->col < len ? limit - st->col : len;
		memcpy(out, in, take);
		out += take;
		in += take;
		len -= take;
		st->col += take;
	}
	return out;
}

/*
 * smtp_body_convert - LF -> CRLF (an existing CR before LF stays single),
 * a bare CR passes through as Postfix's smtp does, a '.' at the start of
 * a line is doubled, long lines are broken. A CR is held until the next
 * byte says whether it ends the line. State carries across chunks.
 * Line ends and CRs are found with memchr() and the bytes between them
 * copied whole: the common case, a line without CR, is one memchr() for
 * its end, one for a CR and one memcpy().
 */
size_t smtp_body_convert(struct smtp_body_state *st, const char *in, size_t len, char *out)
{
	const char *p = in, *end = in + len, *nl, *stop, *cr;
	char *o = out;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		stop = nl != NULL ? nl : end;
		while (p < stop) {
			if (st->cr_pending) {	/* not followed by LF: a bare CR, content */
				st->cr_pending = 0;
				o = smtp_body_run(st, "\r", 1, o);
			}
			cr = memchr(p, '\r', (size_t)(stop - p));
			o = smtp_body_run(st, p, (size_t)((cr != NULL ? cr : stop) - p), o);
			if (cr == NULL) {
				p = stop;
			} else {
				st->cr_pending = 1;
				p = cr + 1;
			}
		}
		if (nl != NULL) {
			*o++ = '\r';
			*o++ = '\n';
			st->at_line_start = 1;
			st->cr_pending = 0;
			st->col = 0;
			p = nl + 1;
		}
	}
	return (size_t)(o - out);
}

/* smtp_body_finish - end an unterminated last line, then ".\r\n" */
size_t smtp_body_finish(struct smtp_body_state *st, char *out)
{
	size_t n = 0;

	/* A trailing CR becomes the CR of the line end. */
	if (!st->at_line_start || st->cr_pending) {
		out[n++] = '\r';
		out[n++] = '\n';
	}
	memcpy(out + n, ".\r\n", 3);
	n += 3;
	st->at_line_start = 1;
	st->cr_pending = 0;
	st->col = 0;
	return n;
}
