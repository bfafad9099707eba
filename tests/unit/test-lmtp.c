/*
 * test-lmtp - the LMTP server side: command parsing (paths with quoted '>',
 * parameters, XFORWARD IDENT), the message read back from its transparent
 * form in chunks of every size, the bytes after the lone dot left for the
 * next command, the replies made of outcomes, and the session's states:
 * commands out of order (RCPT before MAIL, DATA before RCPT, MAIL twice,
 * anything after QUIT) answered with the exact refusal, the state unchanged.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "tap.h"
#include "lmtp.h"
#include "smtp.h"
#include "../lib/peer.h"

static void parse(const char *text, struct lmtp_cmd *cmd, char *buf, size_t size)
{
	snprintf(buf, size, "%s", text);
	lmtp_parse(buf, cmd);
}

static void commands(void)
{
	struct lmtp_cmd cmd;
	char buf[LMTP_LINE_MAX];

	parse("LHLO mta.example", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_LHLO, "LHLO");
	is_str(cmd.arg, "mta.example", "LHLO's argument");
	parse("mail from:<a@b.example> SIZE=1234 BODY=8BITMIME", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_MAIL, "MAIL in lower case");
	is_str(cmd.arg, "a@b.example", "MAIL's address without <>");
	is_int(cmd.size, 1234, "SIZE=");
	parse("MAIL FROM:<>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_MAIL && strcmp(cmd.arg, "") == 0 && cmd.size == -1, "null sender, no SIZE");
	parse("MAIL FROM: <\"odd>name\"@b.example> SMTPUTF8", &cmd, buf, sizeof(buf));
	is_str(cmd.arg, "\"odd>name\"@b.example", "a '>' inside a quoted local part");
	is_int(cmd.verb, LMTP_MAIL, "SMTPUTF8 accepted");
	parse("MAIL FROM:<\"a\\\"b>c\"@x>", &cmd, buf, sizeof(buf));
	is_str(cmd.arg, "\"a\\\"b>c\"@x", "an escaped quote inside quotes");
	parse("MAIL FROM:<a@b.example", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "501 5.1.7", 9) == 0, "no closing '>': 501 5.1.7");
	parse("MAIL FROM:a@b.example", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_BAD, "no '<'");
	parse("MAIL TO:<a@b.example>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "501 5.5.4", 9) == 0, "MAIL TO: 501 5.5.4");
	parse("MAIL FROM:<a@b>x", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_BAD, "junk after the path");
	parse("MAIL FROM:<a@b> SIZE=12x", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strstr(cmd.reply, "SIZE") != NULL, "bad SIZE");
	parse("MAIL FROM:<a@b> SIZE=99999999999999999999999", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_BAD, "SIZE out of range");
	parse("MAIL FROM:<a@b> RET=FULL", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "555 5.5.4", 9) == 0, "unannounced parameter: 555");
	parse("RCPT TO:<u@corp.example>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_RCPT && strcmp(cmd.arg, "u@corp.example") == 0, "RCPT");
	/* issue 13: a backslash outside quotes opens a quote the relay does not see */
	parse("RCPT TO:<a\\\"b> NOTIFY=SUCCESS\"@corp.example>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "501 5.1.3", 9) == 0,
	   "RCPT with a backslash-quote that hides NOTIFY=: 501 5.1.3");
	parse("MAIL FROM:<s\\\"x> AUTH=<evil@x>\">", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "501 5.1.7", 9) == 0,
	   "MAIL with a backslash-quote that hides AUTH=: 501 5.1.7");
	parse("RCPT TO:<a b@corp.example>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "501 5.1.3", 9) == 0,
	   "RCPT with an unquoted space: 501 5.1.3");
	parse("RCPT TO:<user>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_BAD && strncmp(cmd.reply, "501 5.1.3", 9) == 0, "RCPT without a domain: 501 5.1.3");
	parse("RCPT TO:<\"a b\"@corp.example>", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_RCPT && strcmp(cmd.arg, "\"a b\"@corp.example") == 0,
	   "RCPT with a quoted space: accepted, quotes kept");
	parse("RCPT TO:<u@corp.example> NOTIFY=NEVER", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_BAD, "RCPT parameters are refused");
	parse("XFORWARD NAME=client.example ADDR=192.0.2.1 IDENT=4F66AA72333", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_XFORWARD && cmd.ident && strcmp(cmd.ident, "4F66AA72333") == 0,
	   "XFORWARD IDENT");
	parse("XFORWARD IDENT=4F66+0A:x", &cmd, buf, sizeof(buf));
	ok(cmd.verb == LMTP_XFORWARD && cmd.ident == NULL, "an IDENT that is no queue id is ignored");
	parse("DATA", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_DATA, "DATA");
	parse("quit", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_QUIT, "quit");
	parse("HELO x", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_UNKNOWN, "HELO is not LMTP");
	parse("", &cmd, buf, sizeof(buf));
	is_int(cmd.verb, LMTP_UNKNOWN, "an empty line");
}

/* read_with - the message of wire (transparent form) read by rd in chunks of n bytes; NULL on failure */
static char *read_with(ssize_t (*rd)(void *, char *, size_t), const char *wire, size_t wlen,
		       size_t n, char *rest, size_t rsize)
{
	struct conn c;
	struct lmtp_body b;
	char *out = calloc(1, wlen * 2 + 16), chunk[64];
	size_t len = 0;
	ssize_t k;
	int peer = peer_pair(&c, 500, 0);

	if (peer < 0 || write(peer, wire, wlen) != (ssize_t)wlen)
		abort();
	close(peer);
	lmtp_body_init(&b, &c);
	while ((k = rd(&b, chunk, n)) > 0) {
		memcpy(out + len, chunk, (size_t)k);
		len += (size_t)k;
	}
	if (k < 0) {
		free(out);
		out = NULL;
	} else if (rest != NULL) {	/* what follows the lone dot */
		k = conn_read_line(&c, rest, rsize);
		if (k < 0)
			rest[0] = '\0';
	}
	conn_close(&c);
	return out;
}

static char *body(const char *wire, size_t wlen, size_t n, char *rest, size_t rsize)
{
	return read_with(lmtp_body_read, wire, wlen, n, rest, rsize);
}

/* relayed - what goes to the relay for a message read with rd: smtp_body_convert */
static char *relayed(ssize_t (*rd)(void *, char *, size_t), const char *wire, size_t n, size_t limit)
{
	struct smtp_body_state st;
	char *in = read_with(rd, wire, strlen(wire), n, NULL, 0), *out;
	size_t k;

	if (in == NULL)
		return NULL;
	out = calloc(1, SMTP_BODY_OUT_MAX(strlen(in)) + 8);
	smtp_body_init(&st);
	st.line_limit = limit;
	st.stuffed = rd == lmtp_body_read_stuffed;
	k = smtp_body_convert(&st, in, strlen(in), out);
	smtp_body_finish(&st, out + k);
	free(in);
	return out;
}

/* unstuff - what the relay makes of what it got (RFC 5321 4.5.2: the first dot of a
 * line that starts with one is deleted), in place */
static void unstuff(char *s)
{
	char *r = s, *w = s;
	int bol = 1;

	while (*r) {
		if (bol && *r == '.')
			r++;
		bol = r[0] == '\n';
		if (*r)
			*w++ = *r++;
	}
	*w = '\0';
}

/* stuffed_bodies - the transparent form passed on gives the relay the message that
 * unstuffing and stuffing again gave it, whatever the chunks and with long lines broken
 * (a line the client left with a single leading dot now reaches the relay with it, and
 * the relay removes it) */
static void stuffed_bodies(void)
{
	static const char *const wires[] = {
		"Subject: x\r\n\r\n..leading dot\r\n...two\r\n..\r\nbare\rCR\r\n.\rodd\r\n\r\nlast\r\n.\r\n",
		".\r\n", "a\n.\n", "a\r\n.x\r\n.\r\n", "..\r\n.\r\n",
		"..........................................................................................x\r\n.\r\n",
		"long line xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n.\r\n",
	};
	char rest[32], *got;
	size_t w, n, limit;
	int same = 1;

	for (w = 0; w < sizeof(wires) / sizeof(wires[0]); w++)
		for (limit = 0; limit <= 80; limit += 80)
			for (n = 2; n <= 40; n++) {
				char *a = relayed(lmtp_body_read, wires[w], n, limit);
				char *b = relayed(lmtp_body_read_stuffed, wires[w], n, limit);
				if (a != NULL && b != NULL) {
					unstuff(a);
					unstuff(b);
				}
				if (a == NULL || b == NULL || strcmp(a, b) != 0) {
					same = 0;
					printf("#   wire %zu, chunk %zu, limit %zu: \"%s\" != \"%s\"\n", w, n, limit,
					       a ? a : "(failed)", b ? b : "(failed)");
				}
				free(a);
				free(b);
			}
	ok(same, "stuffed reader: the relay gets the same message as through unstuffing and stuffing again");
	got = read_with(lmtp_body_read_stuffed, "..a\r\nb\r\n.\r\nRSET\r\n", 17, 3, rest, sizeof(rest));
	is_str(got, "..a\r\nb\r\n", "stuffed reader: the bytes as they came, the lone dot taken off");
	is_str(rest, "RSET", "stuffed reader: the command after the lone dot is left for the next read");
	free(got);
	got = read_with(lmtp_body_read_stuffed, "no end\r\n", 8, 16, NULL, 0);
	ok(got == NULL, "stuffed reader: a connection that ends before the lone dot is a failure");
	free(got);
}

static void bodies(void)
{
	static const char wire[] =
		"Subject: x\r\n\r\n..leading dot\r\n...two\r\n..\r\nbare\rCR\r\n.\rodd\r\n"
		"\r\nlast\r\n.\r\nRSET\r\n";
	static const char want[] =
		"Subject: x\n\n.leading dot\n..two\n.\nbare\rCR\n\rodd\n\nlast\n";
	char rest[32], *got;
	size_t n;
	int same = 1, kept = 1;

	for (n = 2; n <= 64; n++) {
		got = body(wire, sizeof(wire) - 1, n, rest, sizeof(rest));
		if (got == NULL || strcmp(got, want) != 0)
			same = 0;
		if (strcmp(rest, "RSET") != 0)
			kept = 0;
		if (got == NULL || strcmp(got, want) != 0 || strcmp(rest, "RSET") != 0)
			printf("#   chunk %zu: got \"%s\", rest \"%s\"\n", n, got ? got : "(failed)", rest);
		free(got);
	}
	ok(same, "unstuffed, CRLF -> LF, bare CR kept, the same in chunks of 2 to 64 bytes");
	ok(kept, "the command after the lone dot is left for the next read");

	got = body(".\r\n", 3, 16, NULL, 0);
	is_str(got, "", "an empty message");
	free(got);
	got = body("a\n.\n", 4, 16, NULL, 0);
	is_str(got, "a\n", "bare LF line ends, a lone dot ended by LF");
	free(got);
	got = body("no end\r\n", 8, 16, NULL, 0);
	ok(got == NULL, "a connection that ends before the lone dot is a failure, never an end");
	free(got);
	got = body("a\r\n.x\r\n.\r\n", 11, 16, NULL, 0);
	is_str(got, "a\nx\n", "a leading dot before other text is removed");
	free(got);
}

static void replies(void)
{
	struct outcome o;
	char buf[1100], big[DSN_TEXT_SIZE];

	dsn_ok(&o, "2.0.0", "250 2.0.0 Ok: queued as 7");
	lmtp_reply(&o, buf, sizeof(buf));
	is_str(buf, "250 2.0.0 relayed: 250 2.0.0 Ok: queued as 7", "success: the relay's reply");
	dsn_defer(&o, "4.4.1", "connect to proxy: connection refused");
	lmtp_reply(&o, buf, sizeof(buf));
	is_str(buf, "451 4.4.1 connect to proxy: connection refused", "temporary failure: 451");
	dsn_bounce(&o, "5.1.1", "host said: 550 5.1.1 unknown");
	lmtp_reply(&o, buf, sizeof(buf));
	is_str(buf, "550 5.1.1 host said: 550 5.1.1 unknown", "permanent failure: 550");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	dsn_defer(&o, "4.0.0", "%s", big);
	lmtp_reply(&o, buf, sizeof(buf));
	ok(strlen(buf) <= 998, "a long text is cut to fit a reply line (%zu bytes)", strlen(buf));
}

#define DONE NULL		/* a script's line: the message's replies are given (lmtp_session_done) */

/* one line of a session: the command, the exact reply (NULL: none), the state after it */
struct step {
	const char *line;
	const char *reply;
	enum lmtp_state state;
};

/* play - the script through lmtp_session_step; one test a line */
static void play(struct lmtp_session *s, const struct step *script, size_t n)
{
	struct lmtp_cmd cmd;
	char buf[LMTP_LINE_MAX];
	const char *r;
	enum lmtp_state was;
	size_t i;

	for (i = 0; i < n; i++) {
		if (script[i].line == DONE) {
			lmtp_session_done(s);
			is_int(s->state, script[i].state, "message done: %s",
			       lmtp_state_name(script[i].state));
			continue;
		}
		parse(script[i].line, &cmd, buf, sizeof(buf));
		was = s->state;
		r = lmtp_session_step(s, &cmd);
		ok((r == NULL && script[i].reply == NULL)
		   || (r != NULL && script[i].reply != NULL && strcmp(r, script[i].reply) == 0)
		   , "%s in %s: %s", script[i].line, lmtp_state_name(was),
		   script[i].reply ? script[i].reply : "no reply");
		if (r != NULL && (script[i].reply == NULL || strcmp(r, script[i].reply) != 0))
			printf("#   got \"%s\"\n", r);
		is_int(s->state, script[i].state, "%s: state %s", script[i].line,
		       lmtp_state_name(script[i].state));
	}
}

#define LHLO_REPLY "250-lmtp.example\r\n250-PIPELINING\r\n250-SIZE\r\n250-8BITMIME\r\n" \
	"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 XFORWARD IDENT"
#define NEED_MAIL "503 5.5.1 Error: need MAIL command"

static void sessions(void)
{
	static const struct step before[] = {
		{ "RSET", "250 2.0.0 Ok", LMTP_STATE_GREETING },
		{ "RCPT TO:<u@x.example>", NEED_MAIL, LMTP_STATE_GREETING },
		{ "DATA", NEED_MAIL, LMTP_STATE_GREETING },
		{ "LHLO mta.example", LHLO_REPLY, LMTP_STATE_READY },
		{ "RCPT TO:<u@x.example>", NEED_MAIL, LMTP_STATE_READY },
		{ "DATA", NEED_MAIL, LMTP_STATE_READY },
		{ "XFORWARD IDENT=4F66AA72333", "250 2.0.0 Ok", LMTP_STATE_READY },
		{ "MAIL FROM:<a@b.example> SIZE=10", "250 2.1.0 Ok", LMTP_STATE_MAIL },
		{ "MAIL FROM:<c@d.example>", "503 5.5.1 Error: nested MAIL command", LMTP_STATE_MAIL },
		{ "DATA", "554 5.5.1 Error: no valid recipients", LMTP_STATE_MAIL },
		{ "RCPT TO:<no domain>", "501 5.1.3 Bad recipient address syntax", LMTP_STATE_MAIL },
		{ "RCPT TO:<u@x.example>", "250 2.1.5 Ok", LMTP_STATE_RCPT },
		{ "MAIL FROM:<c@d.example>", "503 5.5.1 Error: nested MAIL command", LMTP_STATE_RCPT },
		{ "LMTP", "500 5.5.2 Error: command not recognized", LMTP_STATE_RCPT },
		{ "RCPT TO:<v@x.example>", "250 2.1.5 Ok", LMTP_STATE_RCPT },
		{ "DATA", "354 End data with <CR><LF>.<CR><LF>", LMTP_STATE_DATA },
		{ "RSET", NULL, LMTP_STATE_DATA },
	};
	static const struct step after[] = {
		{ DONE, NULL, LMTP_STATE_READY },
		{ "RCPT TO:<u@x.example>", NEED_MAIL, LMTP_STATE_READY },
		{ "MAIL FROM:<>", "250 2.1.0 Ok", LMTP_STATE_MAIL },
		{ "RSET", "250 2.0.0 Ok", LMTP_STATE_READY },
		{ "DATA", NEED_MAIL, LMTP_STATE_READY },
		{ "MAIL FROM:<a@b.example>", "250 2.1.0 Ok", LMTP_STATE_MAIL },
		{ "RCPT TO:<u@x.example>", "250 2.1.5 Ok", LMTP_STATE_RCPT },
		{ "LHLO again.example", LHLO_REPLY, LMTP_STATE_READY },
		{ "RCPT TO:<u@x.example>", NEED_MAIL, LMTP_STATE_READY },
		{ "NOOP", "250 2.0.0 Ok", LMTP_STATE_READY },
		{ "QUIT", "221 2.0.0 Bye", LMTP_STATE_QUIT },
		{ "NOOP", NULL, LMTP_STATE_QUIT },
		{ "MAIL FROM:<a@b.example>", NULL, LMTP_STATE_QUIT },
		{ "LHLO mta.example", NULL, LMTP_STATE_QUIT },
		{ "QUIT", NULL, LMTP_STATE_QUIT },
	};
	static const struct step early[] = {
		{ "MAIL FROM:<a@b.example>", "250 2.1.0 Ok", LMTP_STATE_MAIL },
		{ "RCPT TO:<u@x.example>", "250 2.1.5 Ok", LMTP_STATE_RCPT },
	};
	struct lmtp_session s;
	struct lmtp_cmd cmd;
	char buf[64];
	const char *r = NULL;
	size_t i;

	lmtp_session_init(&s, "lmtp.example");
	is_int(s.state, LMTP_STATE_GREETING, "a new session waits for LHLO");
	play(&s, before, sizeof(before) / sizeof(before[0]));
	ok(s.sender != NULL && strcmp(s.sender, "a@b.example") == 0 && s.size == 10,
	   "the first MAIL's sender and SIZE, not the nested one's");
	ok(s.nrcpt == 2 && strcmp(s.rcpt[0], "u@x.example") == 0 && strcmp(s.rcpt[1], "v@x.example") == 0,
	   "the two accepted recipients, not the refused one");
	is_str(s.ident, "4F66AA72333", "XFORWARD's IDENT kept for the message");
	play(&s, after, sizeof(after) / sizeof(after[0]));
	ok(s.sender == NULL && s.nrcpt == 0 && s.ident[0] == '\0', "after QUIT nothing is kept");
	lmtp_session_free(&s);

	/* as before the state machine: a client that skips LHLO is served */
	lmtp_session_init(&s, "lmtp.example");
	play(&s, early, sizeof(early) / sizeof(early[0]));
	lmtp_session_free(&s);

	lmtp_session_init(&s, "lmtp.example");
	parse("MAIL FROM:<a@b.example>", &cmd, buf, sizeof(buf));
	lmtp_session_step(&s, &cmd);
	for (i = 0; i <= LMTP_RCPT_MAX; i++) {
		parse("RCPT TO:<u@x.example>", &cmd, buf, sizeof(buf));
		r = lmtp_session_step(&s, &cmd);
	}
	is_str(r, "452 4.5.3 Error: too many recipients", "recipient %d: 452 4.5.3", LMTP_RCPT_MAX + 1);
	ok(s.nrcpt == LMTP_RCPT_MAX && s.state == LMTP_STATE_RCPT, "the first %d kept, DATA may follow",
	   LMTP_RCPT_MAX);
	lmtp_session_free(&s);
}

int main(void)
{
	commands();
	sessions();
	bodies();
	stuffed_bodies();
	replies();
	return tap_done();
}
