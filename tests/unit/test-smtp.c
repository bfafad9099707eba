/*
 * test-smtp - the SMTP client: reply-line and EHLO keyword parsing, the
 * body conversion (CRLF, dot-stuffing, chunk boundaries, long lines broken
 * as Postfix does), and whole sessions against a scripted fake relay (a
 * thread on a loopback listener; the script is a list of expected client
 * bytes and replies), asserting the exact bytes the client sent and every
 * outcome: AUTH PLAIN, LOGIN and XOAUTH2, refused sessions, several
 * recipients. Also the TLS policy table of route_tls_policy() and the
 * fingerprint and trust-list helpers of tls.c (the handshakes themselves
 * are tested against the emulator: tests/integration/test-tls.sh).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "address.h"
#include "conf.h"
#include "conn.h"
#include "destination.h"
#include "dsn.h"
#include "log.h"
#include "route.h"
#include "smtp.h"
#include "tap.h"
#include "tls.h"
#include "util.h"
#include "../lib/files.h"
#include "../lib/peer.h"

/* ---- the fake relay: tests/lib/peer.c ---- */

#define EXPECT(p, s) peer_add((p), PEER_EXPECT, (s), 0)
#define SEND(p, s) peer_add((p), PEER_SEND, (s), 0)
#define ALONE(p) peer_add((p), PEER_ALONE, NULL, 0)
#define CLOSE(p) peer_add((p), PEER_CLOSE, NULL, 0)
#define PAUSE(p, ms) peer_add((p), PEER_PAUSE, NULL, (ms))
#define EOF_AT(p, fd) peer_add((p), PEER_EOF, NULL, (size_t)(fd))

/* ---- one session ---- */

struct run {
	struct smtp_options opt;
	const char *sender;
	const char *rcpt[4];
	size_t nrcpt;
	long size;
	const char *body;		/* the message, LF line ends */
	size_t bodylen;			/* 0 = strlen(body) */
	int body_fd;			/* >= 0: use this fd instead of body */
	int send;			/* run smtp_send_message after a successful open */
	int timeout_ms;			/* conn timeout, 0 = 3000 */

	int open_rc, send_rc;
	struct smtp_session s;
	struct outcome o, out[4];
};

/* run_init - the usual options: no TLS, no AUTH, one message to one recipient */
static void run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->opt.helo_name = "client.test";
	r->opt.relay_name = "relay.test[127.0.0.1]:25";
	r->opt.tls_level = TLS_LEVEL_NONE;
	r->opt.command_timeout_ms = 3000;
	r->opt.data_done_timeout_ms = 3000;
	r->sender = "a@x.test";
	r->rcpt[0] = "b@corp.example";
	r->nrcpt = 1;
	r->size = -1;
	r->body = "Subject: hi\n\n.dot\nbody\n";
	r->body_fd = -1;
	r->send = 1;
	r->open_rc = r->send_rc = 99;
}

/* body_file - a temporary file holding the body, positioned at its start */
static int body_file(const char *body, size_t len)
{
	char path[] = "/tmp/test-smtp.XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0) {
		perror("mkstemp");
		exit(99);
	}
	unlink(path);
	if (write(fd, body, len) != (ssize_t)len || lseek(fd, 0, SEEK_SET) != 0) {
		perror("body_file");
		exit(99);
	}
	return fd;
}

/* run_session - connect to p, open the session, send the message, QUIT */
static void run_session(struct peer *p, struct run *r)
{
	struct smtp_envelope env = { 0 };
	struct conn c;
	int fd;

	peer_start(p);
	conn_init(&c, r->timeout_ms ? r->timeout_ms : 3000, 0);
	if (conn_connect(&c, "127.0.0.1", p->port) < 0) {
		printf("# connect: %s\n", c.errtext);
		exit(99);
	}
	r->open_rc = smtp_session_open(&r->s, &c, &r->opt, &r->o);
	if (r->open_rc == 0 && r->send) {
		env.sender = r->sender;
		env.rcpt = r->rcpt;
		env.nrcpt = r->nrcpt;
		env.size = r->size;
		if (r->body_fd >= 0)
			fd = r->body_fd;
		else
			fd = body_file(r->body, r->bodylen ? r->bodylen : strlen(r->body));
		r->send_rc = smtp_send_message(&r->s, &env, fd, r->out, &r->o);
		close(fd);
	}
	smtp_quit(&r->s);
	conn_close(&c);
	peer_finish(p);
	r->s.conn = NULL;
}

/* ---- parsers ---- */

static void test_reply_line(void)
{
	static const struct {
		const char *line;
		int rc, code, last;
	} t[] = {
		{ "250 ok", 0, 250, 1 },
		{ "250-PIPELINING", 0, 250, 0 },
		{ "250", 0, 250, 1 },
		{ "554 5.7.1 no", 0, 554, 1 },
		{ "421-closing", 0, 421, 0 },
		{ "220 ", 0, 220, 1 },
		{ "25", -1, 0, 0 },
		{ "", -1, 0, 0 },
		{ "250x", -1, 0, 0 },
		{ "2a0 ok", -1, 0, 0 },
		{ "150 ok", -1, 0, 0 },
		{ "650 ok", -1, 0, 0 },
		{ "HTTP/1.1 400", -1, 0, 0 },
		{ " 250 ok", -1, 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int code = 0, last = 0, rc;

		rc = smtp_reply_line(t[i].line, strlen(t[i].line), &code, &last);
		is_int(rc, t[i].rc, "reply line \"%s\": %s", t[i].line, t[i].rc ? "garbage" : "valid");
		if (rc == 0)
			ok(code == t[i].code && last == t[i].last, "reply line \"%s\": code %d, last %d",
			   t[i].line, t[i].code, t[i].last);
	}
}

static void test_ehlo_keyword(void)
{
	static const struct {
		const char *line;
		unsigned bits;
		unsigned long size;
	} t[] = {
		{ "PIPELINING", SMTP_EXT_PIPELINING, 7 },
		{ "pipelining", SMTP_EXT_PIPELINING, 7 },
		{ "STARTTLS", SMTP_EXT_STARTTLS, 7 },
		{ "8BITMIME", SMTP_EXT_8BITMIME, 7 },
		{ "SMTPUTF8", SMTP_EXT_SMTPUTF8, 7 },
		{ "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES, 7 },
		{ "SIZE 10240000", SMTP_EXT_SIZE, 10240000 },
		{ "size 52428800", SMTP_EXT_SIZE, 52428800 },
		{ "SIZE", SMTP_EXT_SIZE, 0 },
		{ "SIZE 99999999999999999999999", SMTP_EXT_SIZE, (unsigned long)-1 },
		{ "AUTH PLAIN LOGIN", SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN, 7 },
		{ "AUTH LOGIN CRAM-MD5 PLAIN", SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN, 7 },
		{ "auth plain", SMTP_EXT_AUTH_PLAIN, 7 },
		{ "AUTH=LOGIN", SMTP_EXT_AUTH_LOGIN, 7 },
		{ "AUTH=PLAIN LOGIN", SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN, 7 },
		{ "AUTH CRAM-MD5 XOAUTH2", SMTP_EXT_AUTH_XOAUTH2, 7 },
		{ "AUTH CRAM-MD5", 0, 7 },
		{ "AUTH PLAINX", 0, 7 },
		{ "PIPELININGX", 0, 7 },
		{ "STARTTLSNOW", 0, 7 },
		{ "DSN", 0, 7 },
		{ "", 0, 7 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		unsigned long size = 7;
		unsigned bits = smtp_ehlo_keyword(t[i].line, &size);

		ok(bits == t[i].bits && size == t[i].size, "EHLO \"%s\" -> bits %#x, size %lu",
		   t[i].line, t[i].bits, t[i].size);
	}
	is_int(smtp_ehlo_keyword("SIZE 100", NULL), SMTP_EXT_SIZE, "EHLO SIZE without a size pointer");
	{
		unsigned long lim = 1;

		smtp_ehlo_keyword("SIZE 10x", &lim);
		is_int(lim, 0, "EHLO SIZE 10x is not a number: no limit (never a 5.3.4 bounce)");
	}
}

/* convert - run the body conversion over chunks separated by '|' in spec */
static void convert(const char *spec, char *out, size_t *outlen)
{
	struct smtp_body_state st;
	const char *p = spec, *bar;
	size_t n = 0;

	smtp_body_init(&st);
	for (;;) {
		bar = strchr(p, '|');
		n += smtp_body_convert(&st, p, bar ? (size_t)(bar - p) : strlen(p), out + n);
		if (!bar)
			break;
		p = bar + 1;
	}
	n += smtp_body_finish(&st, out + n);
	out[n] = 0;
	*outlen = n;
}

static void test_body_convert(void)
{
	static const struct {
		const char *in;		/* chunks separated by '|' */
		const char *out;	/* including the final dot */
		const char *name;
	} t[] = {
		{ "", ".\r\n", "empty message" },
		{ "a\n", "a\r\n.\r\n", "bare LF" },
		{ "a\r\n", "a\r\n.\r\n", "CRLF stays CRLF" },
		{ "a\nb\n", "a\r\nb\r\n.\r\n", "two lines" },
		{ ".\n", "..\r\n.\r\n", "a lone dot" },
		{ ".a\n..b\n", "..a\r\n...b\r\n.\r\n", "leading dots doubled" },
		{ "a.b\n", "a.b\r\n.\r\n", "dot inside a line" },
		{ "a\rb\n", "a\rb\r\n.\r\n", "bare CR passed through" },
		{ "a\r.b\n", "a\r.b\r\n.\r\n", "dot after a bare CR is not at a line start" },
		{ "a\r|\nb\n", "a\r\nb\r\n.\r\n", "CR | LF across chunks" },
		{ "a\n|.b\n", "a\r\n..b\r\n.\r\n", "line-start dot after a chunk boundary" },
		{ "a|.b\n", "a.b\r\n.\r\n", "dot after a boundary mid-line" },
		{ ".|.\n", "...\r\n.\r\n", "dot, boundary, dot" },
		{ "abc", "abc\r\n.\r\n", "no final newline" },
		{ "abc\r", "abc\r\n.\r\n", "final CR completes the line end" },
		{ "\n\n", "\r\n\r\n.\r\n", "empty lines" },
		{ "a\r\r\n", "a\r\r\n.\r\n", "CR CR LF" },
		{ "|||a\n||", "a\r\n.\r\n", "empty chunks" },
	};
	char out[256];
	size_t i, n;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		convert(t[i].in, out, &n);
		ok(n == strlen(t[i].out) && memcmp(out, t[i].out, n) == 0, "body: %s", t[i].name);
	}
	{
		/* The worst case fills exactly 2 * len bytes. */
		struct smtp_body_state st;
		char in[4] = { '\n', '\n', '\n', '\n' }, o2[10];

		smtp_body_init(&st);
		is_int(smtp_body_convert(&st, in, 4, o2), 8, "body: 4 LF -> 8 bytes");
		smtp_body_init(&st);
		is_int(smtp_body_convert(&st, ".\n.\n", 4, o2), 8, "body: 2 dot lines -> 8 bytes");
	}
}

/* ---- sessions ---- */

#define GREETING "220 relay.test ESMTP\r\n"
#define EHLO "EHLO client.test\r\n"
#define EHLO_PIPE "250-relay.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n" \
	"250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
#define BODY_OUT "Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n"

static void test_pipelined(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.size = 23;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, EHLO_PIPE);
	/* One write with MAIL, RCPT and DATA: the relay replies only once it has all three. */
	EXPECT(&p, "MAIL FROM:<a@x.test> SIZE=23 BODY=8BITMIME\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n");
	SEND(&p, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 2.0.0 Ok: queued as 4F2A\r\n");
	EXPECT(&p, "QUIT\r\n");
	SEND(&p, "221 2.0.0 Bye\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "pipelined: the relay saw the expected commands");
	is_int(r.open_rc, 0, "pipelined: session open");
	is_int(r.send_rc, 0, "pipelined: delivered");
	ok(r.s.ext == (SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME
		       | SMTP_EXT_ENHANCEDSTATUSCODES) && r.s.size_limit == 10240000,
	   "pipelined: EHLO capabilities");
	is_int(r.o.cls, DSN_OK, "pipelined: outcome ok");
	is_str(r.o.status, "2.0.0", "pipelined: status 2.0.0");
	has_str(r.o.text, "250 2.0.0 Ok: queued as 4F2A", "pipelined: the relay's reply verbatim");
	ok(r.out[0].cls == DSN_OK && strcmp(r.out[0].text, r.o.text) == 0, "pipelined: recipient ok");
	is_str(p.got, EHLO "MAIL FROM:<a@x.test> SIZE=23 BODY=8BITMIME\r\nRCPT TO:<b@corp.example>\r\n"
	       "DATA\r\n" BODY_OUT "QUIT\r\n", "pipelined: exact client bytes");
	peer_free(&p);
}

static void test_pipelined_two(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.rcpt[1] = "c@corp.example";
	r.nrcpt = 2;
	r.sender = "";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	/* Two recipients: DATA waits for the RCPT replies. */
	EXPECT(&p, "MAIL FROM:<>\r\nRCPT TO:<b@corp.example>\r\nRCPT TO:<c@corp.example>\r\n");
	ALONE(&p);
	SEND(&p, "250 ok\r\n250 ok\r\n250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 queued\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "pipelined, 2 rcpt: DATA after the RCPT replies; null sender <>");
	is_int(r.send_rc, 0, "pipelined, 2 rcpt: delivered");
	ok(r.out[0].cls == DSN_OK && r.out[1].cls == DSN_OK, "pipelined, 2 rcpt: both ok");
	is_str(r.o.status, "2.0.0", "pipelined, 2 rcpt: synthesized 2.0.0");
	peer_free(&p);
}

static void test_lockstep(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.rcpt[1] = "c@corp.example";
	r.nrcpt = 2;
	r.size = 23;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 SIZE\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test> SIZE=23\r\n");
	ALONE(&p);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	ALONE(&p);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<c@corp.example>\r\n");
	ALONE(&p);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	ALONE(&p);
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250-2.0.0 queued\r\n250 2.0.0 as ABC\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "lock-step: one command per reply, no BODY= without 8BITMIME");
	is_int(r.send_rc, 0, "lock-step: delivered");
	has_str(r.o.text, "250-2.0.0 queued 250 2.0.0 as ABC", "lock-step: multi-line reply joined");
	peer_free(&p);
}

static void test_helo_fallback(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "502 5.5.2 Error: command not recognized\r\n");
	EXPECT(&p, "HELO client.test\r\n");
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "HELO fallback after 502 to EHLO");
	ok(r.send_rc == 0 && r.s.helo_only && r.s.ext == 0, "HELO fallback: delivered, no extensions");
	peer_free(&p);
}

/* ---- a relay that quotes what AUTH sent (issue 13, defect 2) ---- */

#define ECHO_USER "relayuser"
#define ECHO_PASS "Pa55-w0rd!secret"
#define ECHO_TOKEN "eyJhbGciOiJ.tok-SECRET-123"
#define ECHO_PLAIN_B64 "AHJlbGF5dXNlcgBQYTU1LXcwcmQhc2VjcmV0"	/* \0relayuser\0Pa55-w0rd!secret */
#define ECHO_PASS_B64 "UGE1NS13MHJkIXNlY3JldA=="
#define ECHO_XOAUTH2_B64 "dXNlcj1yZWxheXVzZXIBYXV0aD1CZWFyZXIgZXlKaGJHY2lPaUoudG9rLVNFQ1JF" \
	"VC0xMjMBAQ=="
#define ECHO_TOKEN_B64 "ZXlKaGJHY2lPaUoudG9rLVNFQ1JFVC0xMjM="

/* leak - a window of 8 bytes of any secret form found in text, or NULL */
static const char *leak(const char *text)
{
	static const char *const forms[] = { ECHO_PASS, ECHO_TOKEN, &ECHO_PLAIN_B64[8],
		ECHO_PASS_B64, &ECHO_XOAUTH2_B64[20], ECHO_TOKEN_B64 };
	static char win[9];
	size_t i, k;

	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
		for (k = 0; k + 8 <= strlen(forms[i]); k++) {
			memcpy(win, forms[i] + k, 8);
			win[8] = 0;
			if (strstr(text, win) != NULL)
				return win;
		}
	return NULL;
}

static void test_auth_echo(void)
{
	static const struct {
		const char *name;
		int xoauth2, login;
		const char *steps[6];	/* relay: EHLO reply, then expect/send pairs */
		const char *want;	/* what of the relay's text must remain */
	} t[] = {
		{ "PLAIN, 535 quoting the argument", 0, 0,
		  { "250-relay.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN " ECHO_PLAIN_B64 "\r\n",
		    "535 5.7.8 authentication failed for " ECHO_PLAIN_B64 " (bad password)\r\n" },
		  "535 5.7.8 authentication failed for ******** (bad password)" },
		{ "PLAIN, 535 quoting the decoded argument", 0, 0,
		  { "250-relay.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN " ECHO_PLAIN_B64 "\r\n",
		    "535 5.7.8 user relayuser password " ECHO_PASS " refused\r\n" },
		  "535 5.7.8 user relayuser password ******** refused" },
		{ "PLAIN, 535 quoting the start of the argument", 0, 0,
		  { "250-relay.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN " ECHO_PLAIN_B64 "\r\n",
		    "535-5.7.8 bad: AHJlbGF5dXNlcgBQYTU1LXcw...\r\n535 5.7.8 see you\r\n" },
		  "535-5.7.8 bad: ********... 535 5.7.8 see you" },
		{ "PLAIN, garbage quoting the argument", 0, 0,
		  { "250-relay.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN " ECHO_PLAIN_B64 "\r\n",
		    "got " ECHO_PLAIN_B64 "\r\n" },
		  "relay sent garbage in reply to AUTH command: got ********" },
		{ "LOGIN, 535 quoting the password line", 0, 1,
		  { "250-relay.test\r\n250 AUTH LOGIN\r\n", "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n",
		    "cmVsYXl1c2Vy\r\n", "334 UGFzc3dvcmQ6\r\n", ECHO_PASS_B64 "\r\n" },
		  "535 5.7.8 bad password ******** for cmVsYXl1c2Vy" },
		{ "XOAUTH2, 535 quoting the argument and the token", 1, 0,
		  { "250-relay.test\r\n250 AUTH XOAUTH2\r\n", "AUTH XOAUTH2 " ECHO_XOAUTH2_B64 "\r\n",
		    "535-5.7.8 refused " ECHO_XOAUTH2_B64 "\r\n535 5.7.8 token " ECHO_TOKEN
		    " b64 " ECHO_TOKEN_B64 "\r\n" },
		  "535-5.7.8 refused ******** 535 5.7.8 token ******** b64 ********" },
		{ "XOAUTH2, the JSON error quoting the token", 1, 0,
		  { "250-relay.test\r\n250 AUTH XOAUTH2\r\n", "AUTH XOAUTH2 " ECHO_XOAUTH2_B64 "\r\n",
		    /* {"status":"401","token":"eyJhbGciOiJ.tok-SECRET-123"} */
		    "334 eyJzdGF0dXMiOiI0MDEiLCJ0b2tlbiI6ImV5SmhiR2NpT2lKLnRvay1TRUNSRVQtMTIzIn0=\r\n",
		    "\r\n", "535 5.7.8 no\r\n" },
		  "535 5.7.8 no" },
	};
	char logpath[] = "/tmp/test-smtp-log.XXXXXX";
	const char *l;
	struct peer p = { 0 };
	struct run r;
	size_t i, k;
	int fd;

	if ((fd = mkstemp(logpath)) < 0)
		exit(99);
	close(fd);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (truncate(logpath, 0) < 0 || log_open("test-smtp", logpath, LOG_LVL_DEBUG) < 0)
			exit(99);
		run_init(&r);
		r.send = 0;
		r.opt.auth_user = ECHO_USER;
		if (t[i].xoauth2)
			r.opt.auth_xoauth2_token = ECHO_TOKEN;
		else
			r.opt.auth_password = ECHO_PASS;
		SEND(&p, GREETING);
		EXPECT(&p, EHLO);
		for (k = 0; k < 6 && t[i].steps[k]; k++)
			peer_add(&p, k % 2 ? PEER_EXPECT : PEER_SEND, t[i].steps[k], 0);
		if (t[i].login)
			SEND(&p, "535 5.7.8 bad password " ECHO_PASS_B64 " for cmVsYXl1c2Vy\r\n");
		run_session(&p, &r);
		log_close();
		is_int(r.open_rc, -1, "%s: open fails", t[i].name);
		is_str(r.o.status, strstr(t[i].want, "garbage") ? "4.5.0" : "4.7.0", "%s: defers",
		       t[i].name);
		has_str(r.o.text, t[i].want, "%s: the relay's text, masked", t[i].name);
		l = leak(r.o.text);
		ok(l == NULL, "%s: no secret in the status text%s%s", t[i].name, l ? ": " : "",
		   l ? l : "");
		l = leak(file_text(logpath));
		ok(l == NULL, "%s: no secret in the debug log%s%s", t[i].name, l ? ": " : "",
		   l ? l : "");
		has_str(file_text(logpath), "********", "%s: the debug log shows the mask", t[i].name);
		peer_free(&p);
	}
	unlink(logpath);
}

static void test_auth(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.send = 0;
	r.opt.auth_user = "user";
	r.opt.auth_password = "pass";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n");
	EXPECT(&p, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
	SEND(&p, "235 2.7.0 Authentication successful\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "AUTH PLAIN: initial response base64(\\0user\\0pass)");
	is_int(r.open_rc, 0, "AUTH PLAIN: session open");
	peer_free(&p);

	run_init(&r);
	r.send = 0;
	r.opt.auth_user = "user";
	r.opt.auth_password = "pass";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH=LOGIN\r\n");
	EXPECT(&p, "AUTH LOGIN\r\n");
	SEND(&p, "334 VXNlcm5hbWU6\r\n");
	EXPECT(&p, "dXNlcg==\r\n");
	SEND(&p, "334 UGFzc3dvcmQ6\r\n");
	EXPECT(&p, "cGFzcw==\r\n");
	SEND(&p, "235 2.7.0 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "AUTH LOGIN (legacy AUTH=LOGIN): user and password after 334");
	is_int(r.open_rc, 0, "AUTH LOGIN: session open");
	peer_free(&p);

	run_init(&r);
	r.opt.auth_user = "user";
	r.opt.auth_password = "pass";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH PLAIN\r\n");
	EXPECT(&p, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
	SEND(&p, "535 5.7.8 Error: authentication failed: bad credentials\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "AUTH 535: QUIT follows");
	is_int(r.open_rc, -1, "AUTH 535: open fails");
	ok(r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.0") == 0, "AUTH 535: defer 4.7.0");
	has_str(r.o.text, "535 5.7.8 Error: authentication failed: bad credentials",
		"AUTH 535: the relay's reply");
	ok(!strstr(r.o.text, "pass") && !strstr(r.o.text, "AHVzZXIAcGFzcw"),
	   "AUTH 535: no credentials in the text");
	peer_free(&p);

	run_init(&r);
	r.opt.auth_user = "user";
	r.opt.auth_password = "pass";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH CRAM-MD5\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.0") == 0,
	   "AUTH without PLAIN/LOGIN: defer 4.7.0");
	is_str(r.o.text, "relay offers no AUTH mechanism we support (PLAIN, LOGIN)",
	       "AUTH without PLAIN/LOGIN: text");
	is_str(p.why, "", "AUTH without PLAIN/LOGIN: no AUTH sent");
	peer_free(&p);
}

static void test_rcpt_rejected(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, EHLO_PIPE);
	EXPECT(&p, "MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n");
	SEND(&p, "250 2.1.0 Ok\r\n550-5.1.1 <b@corp.example>: Recipient address rejected:\r\n"
	     "550 5.1.1 User unknown in local recipient table\r\n554 5.5.1 Error: no valid recipients\r\n");
	EXPECT(&p, "RSET\r\n");
	SEND(&p, "250 2.0.0 Ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "RCPT 550: pipelined DATA's 554 ignored, RSET, QUIT");
	is_int(r.send_rc, -1, "RCPT 550: not delivered");
	ok(r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.1") == 0, "RCPT 550: bounce 5.1.1");
	has_str(r.o.text, "550-5.1.1 <b@corp.example>: Recipient address rejected: 550 5.1.1 User "
		"unknown in local recipient table", "RCPT 550: the reply, lines joined");
	ok(r.out[0].cls == DSN_BOUNCE && strcmp(r.out[0].text, r.o.text) == 0,
	   "RCPT 550: the recipient's outcome");
	peer_free(&p);

	/* A relay that says 354 to DATA with no valid recipient gets no body: hang up. */
	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n");
	SEND(&p, "250 ok\r\n550 5.1.1 unknown\r\n354 go ahead anyway\r\n");
	run_session(&p, &r);
	is_str(p.got, EHLO "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n",
	       "354 after a rejected RCPT: nothing more sent, connection closed");
	ok(r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.1") == 0, "354 after a rejected RCPT: "
	   "the RCPT's outcome");
	peer_free(&p);

	/* DATA refused after every RCPT was accepted: RSET, the DATA reply for all. */
	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "554 5.7.1 not now\r\n");
	EXPECT(&p, "RSET\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "DATA 554: RSET, QUIT");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.7.1") == 0
	   && r.out[0].cls == DSN_BOUNCE, "DATA 554: bounce per the reply");
	has_str(r.o.text, "554 5.7.1 not now", "DATA 554: text");
	peer_free(&p);
}

static void test_one_of_two_rejected(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.rcpt[0] = "gone@corp.example";
	r.rcpt[1] = "c@corp.example";
	r.nrcpt = 2;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\nRCPT TO:<gone@corp.example>\r\nRCPT TO:<c@corp.example>\r\n");
	SEND(&p, "250 ok\r\n550 5.1.1 no such user\r\n250 ok\r\n");
	EXPECT(&p, "RSET\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "1 of 2 rejected: RSET, no DATA");
	ok(strstr(p.got, "DATA") == NULL, "1 of 2 rejected: DATA never sent");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.1") == 0,
	   "1 of 2 rejected: request bounces 5.1.1");
	has_str(r.o.text, "<gone@corp.example>: ", "1 of 2 rejected: text names the recipient");
	has_str(r.o.text, "550 5.1.1 no such user", "1 of 2 rejected: text has the reply");
	ok(r.out[0].cls == DSN_BOUNCE, "1 of 2 rejected: the rejected one bounces");
	ok(r.out[1].cls == DSN_DEFER && strcmp(r.out[1].status, "4.0.0") == 0,
	   "1 of 2 rejected: the accepted one defers 4.0.0");
	has_str(r.out[1].text, "delivery not attempted: another recipient of this request was "
		"rejected (<gone@corp.example>)", "1 of 2 rejected: why the other was not attempted");
	peer_free(&p);

	/* Both rejected, differently: the worst wins, both replies in the text. */
	run_init(&r);
	r.rcpt[0] = "b@corp.example";
	r.rcpt[1] = "c@corp.example";
	r.nrcpt = 2;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "451 4.3.0 try later\r\n");
	EXPECT(&p, "RCPT TO:<c@corp.example>\r\n");
	SEND(&p, "550 5.1.1 unknown\r\n");
	EXPECT(&p, "RSET\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "2 of 2 rejected, lock-step: RSET");
	ok(r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.1") == 0, "2 of 2 rejected: worst wins");
	has_str(r.o.text, "<b@corp.example>: ", "2 of 2 rejected: first recipient named");
	has_str(r.o.text, "451 4.3.0 try later", "2 of 2 rejected: first reply");
	has_str(r.o.text, "; <c@corp.example>: ", "2 of 2 rejected: second recipient named");
	has_str(r.o.text, "550 5.1.1 unknown", "2 of 2 rejected: second reply");
	ok(r.out[0].cls == DSN_DEFER && r.out[1].cls == DSN_BOUNCE, "2 of 2 rejected: each its own");
	peer_free(&p);
}

static void test_mail_rejected(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.rcpt[1] = "c@corp.example";
	r.nrcpt = 2;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@corp.example>\r\nRCPT TO:<c@corp.example>\r\n");
	SEND(&p, "553 5.7.1 <a@x.test>: Sender address rejected\r\n503 5.5.1 need MAIL\r\n"
	     "503 5.5.1 need MAIL\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "MAIL 553: no DATA, no RSET");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.7.1") == 0,
	   "MAIL 553: bounce 5.7.1");
	has_str(r.o.text, "553 5.7.1 <a@x.test>: Sender address rejected", "MAIL 553: reply text");
	ok(strcmp(r.out[0].text, r.o.text) == 0 && strcmp(r.out[1].text, r.o.text) == 0,
	   "MAIL 553: every recipient gets MAIL's outcome");
	peer_free(&p);
}

static void test_eod(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "451 4.3.0 Error: queue file write error\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "451 at end of data: QUIT follows");
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.3.0") == 0,
	   "451 at end of data: defer 4.3.0");
	has_str(r.o.text, "451 4.3.0 Error: queue file write error", "451 at end of data: text");
	ok(r.out[0].cls == DSN_DEFER, "451 at end of data: the recipient defers");
	peer_free(&p);

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	CLOSE(&p);
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.4.2") == 0,
	   "closed after the dot: defer 4.4.2");
	has_str(r.o.text, "lost connection with relay after end of data", "closed after the dot: text");
	peer_free(&p);

	run_init(&r);
	r.opt.data_done_timeout_ms = 200;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.4.2") == 0,
	   "no reply to the dot within data_done_timeout: defer 4.4.2");
	has_str(r.o.text, "timeout reading reply to", "timeout after the dot: text");
	ok(strstr(p.got, "QUIT") == NULL, "timeout after the dot: no QUIT on a broken session");
	peer_free(&p);
}

static void test_connection_problems(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	CLOSE(&p);
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.4.2") == 0,
	   "closed before the greeting: defer 4.4.2");
	has_str(r.o.text, "lost connection with relay while receiving the greeting",
		"closed before the greeting: text");
	peer_free(&p);

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n");
	SEND(&p, "250 ok\r\n");
	CLOSE(&p);
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.4.2") == 0,
	   "closed after MAIL's reply: defer 4.4.2");
	has_str(r.o.text, "lost connection with relay while sending RCPT TO",
		"closed after MAIL's reply: text names RCPT TO");
	peer_free(&p);

	run_init(&r);
	r.opt.command_timeout_ms = 200;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.4.2") == 0,
	   "no reply to MAIL: defer 4.4.2");
	has_str(r.o.text, "timeout reading reply to MAIL FROM", "no reply to MAIL: text");
	peer_free(&p);

	run_init(&r);
	SEND(&p, "554 5.7.1 go away\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "greeting 554: QUIT follows");
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.1") == 0,
	   "greeting 554: defer, the relay's status in class 4 (a session refusal)");
	has_str(r.o.text, "554 5.7.1 go away", "greeting 554: text");
	peer_free(&p);

	run_init(&r);
	SEND(&p, "421 4.3.2 shutting down\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.3.2") == 0,
	   "greeting 421: defer");
	ok(strstr(p.got, "QUIT") == NULL, "greeting 421: no QUIT to a relay that is closing");
	peer_free(&p);
}

static void test_garbage(void)
{
	struct peer p = { 0 };
	struct run r;
	char *big;
	size_t i;

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "HTTP/1.1 400 Bad Request\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER, "garbage reply: defer");
	has_str(r.o.text, "protocol error: relay sent garbage in reply to EHLO",
		"garbage reply: text names the stage");
	has_str(r.o.text, ": HTTP/1.1 400 Bad Request", "garbage reply: excerpt");
	ok(strstr(p.got, "QUIT") == NULL, "garbage reply: no QUIT when out of step");
	peer_free(&p);

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n550 oops\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER, "mixed codes in one reply: defer");
	has_str(r.o.text, "mixed codes", "mixed codes: text");
	peer_free(&p);

	run_init(&r);
	SEND(&p, "220 \x01\x7f" "bell\r\n");
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay\rx\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "550 5.1.0 bad\x1b[31m sender\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "control bytes in replies: session goes on");
	has_str(r.o.text, "550 5.1.0 bad?[31m sender", "control bytes replaced in texts");

	/* Over-long reply: the text is cut, the rest read and dropped, keywords still seen. */
	peer_free(&p);
	big = malloc(200 * 60 + 64);
	big[0] = 0;
	strcat(big, "250-relay.test\r\n");
	for (i = 0; i < 200; i++)
		strcat(big, "250-XEXTENSION-WITH-A-LONG-NAME-TO-FILL-THE-BUFFER-QUICKLY\r\n");
	strcat(big, "250 PIPELINING\r\n");
	run_init(&r);
	r.send = 0;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, big);
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "EHLO reply of 12 KB: session goes on");
	ok(r.open_rc == 0 && (r.s.ext & SMTP_EXT_PIPELINING), "EHLO reply of 12 KB: last keyword seen");
	peer_free(&p);
	free(big);

	/* A line longer than SMTP_LINE_MAX. */
	big = malloc(3000);
	memset(big, 'x', 2997);
	memcpy(big, "250 ", 4);
	memcpy(big + 2995, "\r\n", 3);
	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, big);
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER, "reply line of 3000 bytes: defer");
	has_str(r.o.text, "longer than", "reply line of 3000 bytes: text");
	peer_free(&p);
	free(big);

	/* More than 1000 lines. */
	big = malloc(1002 * 8 + 16);
	big[0] = 0;
	for (i = 0; i < 1001; i++)
		strcat(big, "250-xx\r\n");
	strcat(big, "250 end\r\n");
	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, big);
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER, "reply of 1002 lines: defer");
	has_str(r.o.text, "more than 1000 lines", "reply of 1002 lines: text");
	peer_free(&p);
	free(big);
}

static void test_envelope_refused(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.size = 5000;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 SIZE 1000\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "SIZE over the limit: QUIT");
	ok(strstr(p.got, "MAIL") == NULL, "SIZE over the limit: no MAIL");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.3.4") == 0,
	   "SIZE over the limit: bounce 5.3.4");
	is_str(r.o.text, "message size 5000 exceeds size limit 1000 of relay", "SIZE: text");
	ok(r.out[0].cls == DSN_BOUNCE, "SIZE: the recipient bounces");
	peer_free(&p);

	run_init(&r);
	r.rcpt[0] = "j\xc3\xb6rg@corp.example";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 8BITMIME\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	ok(strstr(p.got, "MAIL") == NULL, "SMTPUTF8 missing: no MAIL");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.6.7") == 0,
	   "SMTPUTF8 missing: bounce 5.6.7");
	is_str(r.o.text, "relay does not support SMTPUTF8, required by address "
	       "<j\xc3\xb6rg@corp.example>", "SMTPUTF8 missing: text");
	peer_free(&p);

	run_init(&r);
	r.rcpt[0] = "j\xc3\xb6rg@corp.example";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<j\xc3\xb6rg@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "SMTPUTF8 offered: MAIL ... SMTPUTF8");
	is_int(r.send_rc, 0, "SMTPUTF8 offered: delivered");
	peer_free(&p);

	run_init(&r);
	r.rcpt[0] = "b@corp.example\r\nRCPT TO:<evil@x>";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "CR/LF in a recipient: nothing but QUIT");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.3") == 0,
	   "CR/LF in a recipient: bounce 5.1.3");
	has_str(r.o.text, "invalid address <b@corp.example??RCPT TO:<evil@x>>", "CR/LF: text");
	peer_free(&p);

	run_init(&r);
	r.sender = "a@x.test\n";
	r.rcpt[1] = "c@corp.example";
	r.nrcpt = 2;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.7") == 0
	   && r.out[0].cls == DSN_BOUNCE && r.out[1].cls == DSN_BOUNCE,
	   "LF in the sender: every recipient bounces 5.1.7 (bad sender address syntax)");
	has_str(r.o.text, "invalid address", "LF in the sender: text");
	peer_free(&p);

	{
		static char longaddr[1000];

		memset(longaddr, 'l', 987);
		memcpy(longaddr + 980, "@x.test", 8);
		run_init(&r);
		r.rcpt[0] = longaddr;
		SEND(&p, GREETING);
		EXPECT(&p, EHLO);
		SEND(&p, "250 relay.test\r\n");
		EXPECT(&p, "QUIT\r\n");
		run_session(&p, &r);
		ok(r.send_rc == -1 && strcmp(r.o.status, "5.1.3") == 0, "address of 987 bytes: 5.1.3");
		has_str(r.o.text, "longer than 986 bytes", "address of 987 bytes: text");
		peer_free(&p);
	}
}

/* test_address_check - RFC 5321 4.1.2 Mailbox syntax, one table for every front end */
static void test_address_check(void)
{
	static const struct {
		const char *a;
		enum address_role role;
		const char *why;	/* NULL = valid; else a piece of the reason */
	} t[] = {
		{ "user@corp.example", ADDRESS_RECIPIENT, NULL },
		{ "first.last+tag@sub.corp.example", ADDRESS_RECIPIENT, NULL },
		{ "!#$%&'*+-/=?^_`{|}~@x-y.example", ADDRESS_RECIPIENT, NULL },
		{ "\"a b\"@corp.example", ADDRESS_RECIPIENT, NULL },
		{ "\"odd>name\"@corp.example", ADDRESS_RECIPIENT, NULL },
		{ "\"a\\\"b\\\\c\"@corp.example", ADDRESS_RECIPIENT, NULL },
		{ "\"\"@corp.example", ADDRESS_RECIPIENT, NULL },
		{ "j\xc3\xb6rg@m\xc3\xbcller.example", ADDRESS_RECIPIENT, NULL },
		{ "user@t_token.dest.test", ADDRESS_RECIPIENT, NULL },	/* underscores, as Postfix takes them */
		{ "user@_x.corp.example", ADDRESS_RECIPIENT, NULL },
		{ "user@[192.0.2.1]", ADDRESS_RECIPIENT, NULL },
		{ "user@[IPv6:2001:db8::1]", ADDRESS_RECIPIENT, NULL },
		{ "user@[x-tag:some.thing]", ADDRESS_RECIPIENT, NULL },
		{ "Postmaster", ADDRESS_RECIPIENT, NULL },
		{ "", ADDRESS_SENDER, NULL },
		{ "", ADDRESS_RECIPIENT, "empty" },
		{ "Postmaster", ADDRESS_SENDER, "no @domain" },
		{ "user", ADDRESS_RECIPIENT, "no @domain" },
		/* the injections: an unbalanced quote, a backslash outside quotes, unquoted > and spaces */
		{ "\"x> NOTIFY=SUCCESS ORCPT=rfc822;x@corp.example", ADDRESS_RECIPIENT,
		  "unbalanced double quote" },
		{ "\"s> AUTH=<evil@x>", ADDRESS_SENDER, "unbalanced double quote" },
		{ "a\\\"b> NOTIFY=X\"@corp.example", ADDRESS_RECIPIENT, "must be quoted" },
		{ "a> NOTIFY=SUCCESS@corp.example", ADDRESS_RECIPIENT, "must be quoted" },
		{ "a b@corp.example", ADDRESS_RECIPIENT, "must be quoted" },
		{ "\"a\\\"@corp.example", ADDRESS_RECIPIENT, "unbalanced double quote" },
		{ "\"ab\"c@corp.example", ADDRESS_RECIPIENT, "text after the quoted local part" },
		{ "a\"b\"@corp.example", ADDRESS_RECIPIENT, "double quote inside" },
		{ ".a@corp.example", ADDRESS_RECIPIENT, "empty part" },
		{ "a..b@corp.example", ADDRESS_RECIPIENT, "empty part" },
		{ "a.@corp.example", ADDRESS_RECIPIENT, "empty part" },
		{ "@corp.example", ADDRESS_RECIPIENT, "empty part" },
		{ "a@", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@corp..example", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@corp.example.", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@-corp.example", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@corp-.example", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@corp.example> NOTIFY=NEVER", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@b@corp.example", ADDRESS_RECIPIENT, "invalid domain" },
		{ "a@[192.0.2.1", ADDRESS_RECIPIENT, "invalid address literal" },
		{ "a@[IPv6:nonsense]", ADDRESS_RECIPIENT, "invalid address literal" },
		{ "a@[1.2.3.4] NOTIFY=x]", ADDRESS_RECIPIENT, "invalid address literal" },
		{ "a@corp.example\r\nRSET", ADDRESS_RECIPIENT, "CR or LF" },
		{ "a\tb@corp.example", ADDRESS_RECIPIENT, "control character" },
	};
	char longest[ADDRESS_MAX + 2];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *why = address_check(t[i].a, t[i].role);
		char shown[200];

		str_printable(shown, sizeof(shown), t[i].a, strlen(t[i].a));
		if (t[i].why == NULL)
			ok(why == NULL, "address <%s> (%s): valid%s%s", shown,
			   t[i].role == ADDRESS_SENDER ? "sender" : "recipient", why ? ", got: " : "",
			   why ? why : "");
		else
			ok(why != NULL && strstr(why, t[i].why) != NULL, "address <%s> (%s): %s (got %s)",
			   shown, t[i].role == ADDRESS_SENDER ? "sender" : "recipient", t[i].why,
			   why ? why : "valid");
	}
	memset(longest, 'l', ADDRESS_MAX);
	memcpy(longest + ADDRESS_MAX - 10, "@x.example", 11);
	ok(address_check(longest, ADDRESS_RECIPIENT) == NULL, "address of 986 bytes: valid");
	memset(longest, 'l', ADDRESS_MAX + 1);
	memcpy(longest + ADDRESS_MAX - 9, "@x.example", 11);
	ok(address_check(longest, ADDRESS_RECIPIENT) != NULL, "address of 987 bytes: refused");
}

/* test_address_injection - the unbalanced quote of issue 13 never reaches the relay */
static void test_address_injection(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.rcpt[0] = "\"x> NOTIFY=SUCCESS ORCPT=rfc822;x@corp.example";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "recipient with an unbalanced quote: nothing but QUIT");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.3") == 0,
	   "recipient with an unbalanced quote: bounce 5.1.3");
	has_str(r.o.text, "an unbalanced double quote", "unbalanced quote: text");
	ok(strstr(p.got, "NOTIFY") == NULL, "unbalanced quote: no NOTIFY at the relay");
	peer_free(&p);

	run_init(&r);
	r.sender = "\"s> AUTH=<evil@x>";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH PLAIN\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "sender with an unbalanced quote: nothing but QUIT");
	ok(r.send_rc == -1 && r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.7") == 0
	   && r.out[0].cls == DSN_BOUNCE, "sender with an unbalanced quote: bounce 5.1.7");
	has_str(r.o.text, "(envelope sender): an unbalanced double quote", "sender: text");
	peer_free(&p);

	/* a quoted local part with '>' and a space is valid, and sent as it is */
	run_init(&r);
	r.rcpt[0] = "\"odd> name\"@corp.example";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<\"odd> name\"@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "quoted local part with '>' and a space: sent verbatim");
	is_int(r.send_rc, 0, "quoted local part: delivered");
	peer_free(&p);
}

/*
 * test_early_reply - a relay (or a box in the middle) that replies between
 * its 354 and our final dot: the reply would be read as the one to the
 * dot, and mail the relay never had reported delivered. Every variant
 * defers 4.5.0, and the dot is never sent.
 */
static void test_early_reply(void)
{
	struct peer p = { 0 };
	struct run r;
	int pfd[2];

	/* 354 and 250 in one segment, pipelined: seen before the body is sent */
	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@corp.example>\r\nDATA\r\n");
	SEND(&p, "250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 Ok: queued as EARLY\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "354 + 250 at once: the relay saw MAIL, RCPT, DATA");
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.5.0") == 0,
	   "354 + 250 at once: defer 4.5.0, never delivered");
	has_str(r.o.text, "relay sent \"250 2.0.0 Ok: queued as EARLY\" before the end of the "
		"message data", "354 + 250 at once: text");
	ok(r.out[0].cls == DSN_DEFER, "354 + 250 at once: the recipient defers");
	ok(strstr(p.got, "Subject") == NULL && strstr(p.got, "\r\n.\r\n") == NULL,
	   "354 + 250 at once: neither body nor final dot sent");
	peer_free(&p);

	/*
	 * 354 alone, then 250 while the body is still being read (the message
	 * comes from a pipe that ends only after the 250 was sent): seen by the
	 * non-blocking look before the dot.
	 */
	run_init(&r);
	if (pipe(pfd) < 0 || write(pfd[1], "Subject: hi\n\nbody\n", 18) != 18)
		exit(99);
	r.body_fd = pfd[0];
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	PAUSE(&p, 200);
	SEND(&p, "250 2.0.0 Ok: queued as LATE\r\n");
	PAUSE(&p, 50);
	EOF_AT(&p, pfd[1]);
	run_session(&p, &r);
	is_str(p.why, "", "250 during the body: script played");
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.5.0") == 0,
	   "250 during the body: defer 4.5.0, never delivered");
	has_str(r.o.text, "queued as LATE\" before the end of the message data",
		"250 during the body: text");
	ok(strstr(p.got, "\r\n.\r\n") == NULL, "250 during the body: the final dot is not sent");
	peer_free(&p);

	/* 250 then 550 right behind it after the dot: two replies to one dot */
	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 2.0.0 Ok\r\n550 5.7.1 Message rejected\r\n");
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.5.0") == 0,
	   "250 then 550 after the dot: defer 4.5.0, never delivered");
	has_str(r.o.text, "more than one reply to end of DATA command: \"250 2.0.0 Ok\", then "
		"\"550 5.7.1 Message rejected\"", "250 then 550: text");
	ok(strstr(p.got, "QUIT") == NULL, "250 then 550: the session is dropped, no QUIT");
	peer_free(&p);
}

/*
 * test_reply_deadline - smtp_command_timeout holds for a whole reply, not
 * per line: four greeting lines 150 ms apart (450 ms) against 300 ms; and
 * the final dot has its own, longer smtp_data_done_timeout.
 */
static void test_reply_deadline(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.opt.command_timeout_ms = 300;
	r.timeout_ms = 300;
	SEND(&p, "220-relay.test ESMTP\r\n");
	PAUSE(&p, 150);
	SEND(&p, "220-please\r\n");
	PAUSE(&p, 150);
	SEND(&p, "220-wait\r\n");
	PAUSE(&p, 150);
	SEND(&p, "220 ready\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.4.2") == 0,
	   "greeting of 4 lines 150 ms apart, command timeout 300 ms: defer 4.4.2");
	has_str(r.o.text, "timeout waiting for the greeting", "slow multi-line greeting: text");
	ok(strstr(p.got, "EHLO") == NULL, "slow multi-line greeting: no EHLO");
	peer_free(&p);

	/* the same lines within the timeout: one reply */
	run_init(&r);
	r.send = 0;
	SEND(&p, "220-relay.test ESMTP\r\n220-please\r\n220 ready\r\n");
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_int(r.open_rc, 0, "multi-line greeting and EHLO in time: session open");
	is_str(p.why, "", "multi-line greeting in time: EHLO, QUIT");
	peer_free(&p);

	/* The reply to the dot may take smtp_data_done_timeout, longer than the command timeout. */
	run_init(&r);
	r.opt.command_timeout_ms = 200;
	r.opt.data_done_timeout_ms = 5000;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	PAUSE(&p, 600);
	SEND(&p, "250 2.0.0 Ok: queued after a while\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "reply to the dot after 600 ms: QUIT follows");
	ok(r.send_rc == 0 && r.o.cls == DSN_OK,
	   "reply to the dot after 600 ms, command timeout 200 ms, data-done 5 s: delivered");
	peer_free(&p);

	/* ...and the command timeout is back for the next reply (RSET of the next message) */
	run_init(&r);
	r.opt.command_timeout_ms = 200;
	r.opt.data_done_timeout_ms = 5000;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	PAUSE(&p, 50);
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	PAUSE(&p, 600);
	SEND(&p, "250 ok\r\n");
	run_session(&p, &r);
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strstr(r.o.text, "timeout reading reply to MAIL")
	   != NULL, "MAIL answered after 600 ms with command timeout 200 ms: timeout");
	peer_free(&p);
}

/* test_size_limit - SIZE is a maximum: a message of exactly that size goes (RFC 1870 4) */
static void test_size_limit(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.size = 1000;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 SIZE 1000\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test> SIZE=1000\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 2.0.0 Ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "size exactly at the relay's SIZE: MAIL ... SIZE=1000");
	ok(r.send_rc == 0 && r.o.cls == DSN_OK, "size exactly at the relay's SIZE: delivered");
	peer_free(&p);

	run_init(&r);
	r.size = 1001;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 SIZE 1000\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	ok(r.send_rc == -1 && strcmp(r.o.status, "5.3.4") == 0 && strstr(p.got, "MAIL") == NULL,
	   "one byte over the relay's SIZE: bounce 5.3.4, no MAIL");
	peer_free(&p);
}

static void test_tls_policy(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.opt.tls_level = TLS_LEVEL_ENCRYPT;
	r.opt.tls_ctx = ctx;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.4") == 0,
	   "encrypt, STARTTLS not offered: defer 4.7.4");
	is_str(r.o.text, "relay does not offer STARTTLS, but TLS is required "
	       "(smtp_tls_security_level=encrypt)", "encrypt, STARTTLS not offered: text");
	peer_free(&p);

	run_init(&r);
	r.opt.tls_level = TLS_LEVEL_MAY;
	r.opt.tls_ctx = ctx;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 STARTTLS\r\n");
	EXPECT(&p, "STARTTLS\r\n");
	SEND(&p, "220 2.0.0 Ready to start TLS\r\n250 injected\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER, "bytes after 220 to STARTTLS: defer");
	has_str(r.o.text, "after its reply to STARTTLS", "bytes after 220 to STARTTLS: text");
	ok(r.s.tls_active == 0, "bytes after 220 to STARTTLS: no TLS started");
	peer_free(&p);

	run_init(&r);
	r.opt.tls_level = TLS_LEVEL_MAY;
	r.opt.tls_ctx = ctx;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 STARTTLS\r\n");
	EXPECT(&p, "STARTTLS\r\n");
	SEND(&p, "454 4.7.0 TLS not available\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "may, STARTTLS refused: goes on in plaintext");
	is_int(r.send_rc, 0, "may, STARTTLS refused: delivered");
	peer_free(&p);

	run_init(&r);
	r.opt.tls_level = TLS_LEVEL_ENCRYPT;
	r.opt.tls_ctx = ctx;
	r.opt.tls_required_by = "mail.smtp.starttls.required";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 STARTTLS\r\n");
	EXPECT(&p, "STARTTLS\r\n");
	SEND(&p, "554 5.7.0 no TLS for you\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.4") == 0,
	   "encrypt, STARTTLS refused with 554: defer 4.7.4, not bounce");
	has_str(r.o.text, "(mail.smtp.starttls.required): 554 5.7.0 no TLS for you",
		"encrypt, STARTTLS refused: why and the reply");
	peer_free(&p);

	run_init(&r);
	r.opt.tls_level = TLS_LEVEL_MAY;
	r.opt.tls_ctx = ctx;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 STARTTLS\r\n");
	EXPECT(&p, "STARTTLS\r\n");
	SEND(&p, "220 go ahead\r\n");
	CLOSE(&p);
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.5") == 0,
	   "TLS handshake fails: defer 4.7.5");
	has_str(r.o.text, "TLS handshake with relay failed: ", "TLS handshake fails: text");
	peer_free(&p);

	run_init(&r);
	r.opt.tls_level = TLS_LEVEL_NONE;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 STARTTLS\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, BODY_OUT);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "tls none: STARTTLS offered but never sent");
	peer_free(&p);
	SSL_CTX_free(ctx);
}

static void test_body_stream(void)
{
	struct peer p = { 0 };
	struct run r;
	char *in, *want, *expect;
	size_t i, j, inlen = 0, wantlen = 0;
	int fd;

	/* ~300 KB of lines, every seventh with a leading dot: crosses many 64 KiB chunks. */
	in = malloc(400000);
	want = malloc(500000);
	for (i = 0; inlen < 300000; i++) {
		if (i % 7 == 0) {
			in[inlen++] = '.';
			want[wantlen++] = '.';
			want[wantlen++] = '.';
		}
		for (j = 0; j < 60 + i % 41; j++) {
			in[inlen++] = (char)('a' + (i + j) % 26);
			want[wantlen++] = (char)('a' + (i + j) % 26);
		}
		in[inlen++] = '\n';
		want[wantlen++] = '\r';
		want[wantlen++] = '\n';
	}
	memcpy(want + wantlen, ".\r\n", 4);
	wantlen += 3;
	expect = malloc(wantlen + 1);
	memcpy(expect, want, wantlen + 1);

	run_init(&r);
	r.body = in;
	r.bodylen = inlen;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	peer_add(&p, PEER_EXPECT, expect, wantlen);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "300 KB body: converted exactly across chunk boundaries");
	is_int(r.send_rc, 0, "300 KB body: delivered");
	peer_free(&p);
	free(in);
	free(want);
	free(expect);

	/* A read error on the message: no final dot, ever. */
	fd = open("/", O_RDONLY | O_DIRECTORY);
	run_init(&r);
	r.body_fd = fd;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "read error: the relay got DATA");
	ok(r.send_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.3.0") == 0,
	   "read error on the message: defer 4.3.0");
	has_str(r.o.text, "error reading the message", "read error: text");
	ok(strstr(p.got, "DATA\r\n") && !strstr(strstr(p.got, "DATA\r\n"), ".\r\n")
	   && !strstr(p.got, "QUIT"), "read error: no final dot, no QUIT, connection closed");
	peer_free(&p);
}

/* convert_limit - the body conversion with a line limit, one chunk per '|' */
static size_t convert_limit(const char *spec, size_t limit, char *out)
{
	struct smtp_body_state st;
	const char *p = spec, *bar;
	size_t n = 0;

	smtp_body_init(&st);
	st.line_limit = limit;
	for (;;) {
		bar = strchr(p, '|');
		n += smtp_body_convert(&st, p, bar ? (size_t)(bar - p) : strlen(p), out + n);
		if (!bar)
			break;
		p = bar + 1;
	}
	n += smtp_body_finish(&st, out + n);
	out[n] = 0;
	return n;
}

/* repeat - n copies of ch followed by tail, in a static buffer slot */
static const char *repeat(int slot, char ch, size_t n, const char *tail)
{
	static char buf[6][4096];

	memset(buf[slot], ch, n);
	strcpy(buf[slot] + n, tail);
	return buf[slot];
}

static void test_line_limit(void)
{
	static char out[16384], want[16384];
	size_t n, i;

	/* Postfix's smtp_line_length_limit: a line of exactly the limit stays whole. */
	n = convert_limit(repeat(0, 'a', 80, "\n"), 80, out);
	snprintf(want, sizeof(want), "%s", repeat(1, 'a', 80, "\r\n.\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: a line of 80 stays whole");

	/* One byte more: 80, CRLF SPACE, the rest. */
	n = convert_limit(repeat(0, 'a', 81, "\n"), 80, out);
	snprintf(want, sizeof(want), "%s \x61\r\n.\r\n", repeat(1, 'a', 80, "\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: 81 bytes -> 80 CRLF SP 1");

	/* The space counts: 80 + (1 + 79) + (1 + 1). */
	n = convert_limit(repeat(0, 'b', 160, "\n"), 80, out);
	snprintf(want, sizeof(want), "%s %s \x62\r\n.\r\n", repeat(1, 'b', 80, "\r\n"),
		 repeat(2, 'b', 79, "\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: 160 bytes -> 80, SP+79, SP+1");

	/* The stuffed dot does not count; continuation lines start with a space, not a dot. */
	n = convert_limit(repeat(0, '.', 81, "\n"), 80, out);
	snprintf(want, sizeof(want), ".%s .\r\n.\r\n", repeat(1, '.', 80, "\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: dots stuffed once, not counted");

	/* Chunk boundaries and CRLF input: the CR of CRLF is not content. */
	n = convert_limit("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx|xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r|\nnext\n",
			  80, out);
	snprintf(want, sizeof(want), "%snext\r\n.\r\n", repeat(1, 'x', 80, "\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: CRLF at exactly 80 across chunks");

	/* A bare CR is content and counts. */
	n = convert_limit(repeat(0, 'c', 80, "\rd\n"), 80, out);
	snprintf(want, sizeof(want), "%s \rd\r\n.\r\n", repeat(1, 'c', 80, "\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: a bare CR counts as content");

	/* No final newline: the last piece is ended. */
	n = convert_limit(repeat(0, 'e', 85, ""), 80, out);
	snprintf(want, sizeof(want), "%s eeeee\r\n.\r\n", repeat(1, 'e', 80, "\r\n"));
	ok(n == strlen(want) && strcmp(out, want) == 0, "limit 80: unterminated last line");

	/* 998 (the default) on a 3000-byte line; no limit leaves it alone. */
	n = convert_limit(repeat(0, 'f', 3000, "\n"), 998, out);
	for (i = 0; i < n && out[i] != '\n'; i++)
		;
	ok(i == 999 && out[997] == 'f' && out[998] == '\r' && out[1000] == ' ',
	   "limit 998: first line 998 bytes + CRLF, then a space");
	ok(n == 3000 + 3 * 3 + 2 + 3, "limit 998: 3000 bytes -> 4 lines (998, 1+997, 1+997, 1+8)");
	n = convert_limit(repeat(0, 'f', 3000, "\n"), 0, out);
	is_int(n, 3000 + 2 + 3, "no limit: 3000-byte line untouched");

	/* Values below the minimum count as the minimum. */
	n = convert_limit(repeat(0, 'g', 81, "\n"), 5, out);
	ok(n == 80 + 3 + 1 + 2 + 3, "limit 5 counts as 80");

	/* The output bound holds in the worst case. */
	{
		struct smtp_body_state st;
		static char in[1000], big[SMTP_BODY_OUT_MAX(1000)];

		for (i = 0; i < sizeof(in); i++)
			in[i] = i % 2 ? 'x' : '\r';
		smtp_body_init(&st);
		st.line_limit = 80;
		n = smtp_body_convert(&st, in, sizeof(in), big);
		ok(n <= SMTP_BODY_OUT_MAX(sizeof(in)), "worst case within SMTP_BODY_OUT_MAX (%zu)", n);
	}
}

/*
 * ref_put / ref_convert - the conversion one byte at a time, as smtp.c did
 * before it copied whole runs: the reference the fast version must match
 */
static size_t ref_put(struct smtp_body_state *st, char ch, char *out)
{
	size_t n = 0, limit = st->line_limit;

	if (limit > 0 && limit < SMTP_LINE_LIMIT_MIN)
		limit = SMTP_LINE_LIMIT_MIN;
	if (limit > 0 && st->col >= limit) {
		memcpy(out, "\r\n ", 3);
		n = 3;
		st->col = 1;
		st->at_line_start = 0;
	}
	if (ch == '.' && st->at_line_start)
		out[n++] = '.';
	out[n++] = ch;
	st->col++;
	st->at_line_start = 0;
	return n;
}

static size_t ref_convert(struct smtp_body_state *st, const char *in, size_t len, char *out)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '\n') {
			out[n++] = '\r';
			out[n++] = '\n';
			st->at_line_start = 1;
			st->cr_pending = 0;
			st->col = 0;
			continue;
		}
		if (st->cr_pending) {
			n += ref_put(st, '\r', out + n);
			st->cr_pending = 0;
		}
		if (in[i] == '\r')
			st->cr_pending = 1;
		else
			n += ref_put(st, in[i], out + n);
	}
	return n;
}

/* test_body_random - random bodies, chunkings and limits: the same bytes as the reference */
static void test_body_random(void)
{
	static const char alphabet[] = "ab.\r\n";
	static const size_t limits[] = { 0, 5, 80, 81, 998 };
	static char in[4096], got[SMTP_BODY_OUT_MAX(4096) + 8], want[SMTP_BODY_OUT_MAX(4096) + 8];
	struct smtp_body_state a, b;
	unsigned long seed = 12345;
	size_t len, off, chunk, ng, nw, i;
	int iter, bad = -1, skew;

	for (iter = 0; iter < 3000 && bad < 0; iter++) {
		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		len = (seed >> 33) % sizeof(in);
		/* mostly long runs of 'a' (lines near the limits), sometimes every kind of byte */
		skew = (int)((seed >> 20) % 4);
		for (i = 0; i < len; i++) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			in[i] = skew == 0 || (seed >> 33) % 97 < 4 ? alphabet[(seed >> 40) % 5] : 'a';
		}
		smtp_body_init(&a);
		smtp_body_init(&b);
		a.line_limit = b.line_limit = limits[iter % 5];
		ng = nw = 0;
		for (off = 0; off < len; off += chunk) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			chunk = 1 + (seed >> 33) % (iter % 3 == 0 ? 7 : 700);
			if (chunk > len - off)
				chunk = len - off;
			ng += smtp_body_convert(&a, in + off, chunk, got + ng);
			nw += ref_convert(&b, in + off, chunk, want + nw);
		}
		if (a.col != b.col || a.at_line_start != b.at_line_start
		    || a.cr_pending != b.cr_pending)
			bad = iter;
		ng += smtp_body_finish(&a, got + ng);
		nw += smtp_body_finish(&b, want + nw);
		if (ng != nw || memcmp(got, want, ng) != 0)
			bad = iter;
	}
	ok(bad < 0, "body: 3000 random bodies converted as byte by byte (first difference: %d)", bad);
}

static void test_long_lines_session(void)
{
	struct peer p = { 0 };
	struct run r;
	static char body[8192], want[10240];

	snprintf(body, sizeof(body), "Subject: long\n\n%s", repeat(3, 'z', 1000, "\n"));
	snprintf(want, sizeof(want), "Subject: long\r\n\r\n%s zz\r\n.\r\n", repeat(4, 'z', 998, "\r\n"));
	run_init(&r);
	r.body = body;
	r.opt.line_length_limit = 998;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250 relay.test\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "RCPT TO:<b@corp.example>\r\n");
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "DATA\r\n");
	SEND(&p, "354 go\r\n");
	EXPECT(&p, want);
	SEND(&p, "250 ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "session: a 1000-byte line goes out as 998 CRLF SP 2");
	is_int(r.send_rc, 0, "session with a long line: delivered");
	peer_free(&p);
}

/*
 * test_xoauth2_long - a 10 KB bearer token (Entra ID tokens with many
 * groups are that long) reaches the relay whole: the AUTH line is what
 * OpenSSL's encoder makes of it, and decodes back to it; one over
 * SMTP_TOKEN_MAX is a configuration error before anything is sent
 */
static void test_xoauth2_long(void)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
	static char token[17 * 1024], raw[sizeof(token) + 64], line[sizeof(raw) * 2];
	static unsigned char decoded[sizeof(raw) + 4];
	struct peer p = { 0 };
	struct run r;
	const char *b64;
	size_t i, rawlen;
	int n;

	for (i = 0; i < 10 * 1024; i++)
		token[i] = alphabet[i % (sizeof(alphabet) - 1)];
	token[i] = '\0';
	rawlen = (size_t)snprintf(raw, sizeof(raw), "user=oauthuser\001auth=Bearer %s\001\001", token);
	n = snprintf(line, sizeof(line), "AUTH XOAUTH2 ");
	n += EVP_EncodeBlock((unsigned char *)line + n, (const unsigned char *)raw, (int)rawlen);
	snprintf(line + n, sizeof(line) - (size_t)n, "\r\n");

	run_init(&r);
	r.send = 0;
	r.opt.auth_user = "oauthuser";
	r.opt.auth_xoauth2_token = token;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH XOAUTH2\r\n");
	EXPECT(&p, line);
	SEND(&p, "235 2.7.0 Authentication successful\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "XOAUTH2 with a 10 KB token: the AUTH line as OpenSSL encodes it");
	is_int(r.open_rc, 0, "XOAUTH2 with a 10 KB token: session open");
	b64 = p.got != NULL ? strstr(p.got, "AUTH XOAUTH2 ") : NULL;
	n = b64 != NULL ? EVP_DecodeBlock(decoded, (const unsigned char *)b64 + 13,
					  (int)strcspn(b64 + 13, "\r")) : -1;
	/* EVP_DecodeBlock counts the padding's bytes too */
	ok(n >= (int)rawlen && memcmp(decoded, raw, rawlen) == 0,
	   "XOAUTH2 with a 10 KB token: the relay decodes user=U^Aauth=Bearer T^A^A, the token whole");
	peer_free(&p);

	memset(token, 'x', sizeof(token) - 1);
	token[sizeof(token) - 1] = '\0';
	run_init(&r);
	r.opt.auth_user = "oauthuser";
	r.opt.auth_xoauth2_token = token;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH XOAUTH2\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "XOAUTH2 with a 17 KB token: no AUTH sent, QUIT");
	ok(r.open_rc == -1 && r.o.kind == OUTCOME_CONFIG && strstr(r.o.text, "too long") != NULL,
	   "XOAUTH2 with a 17 KB token: a configuration error (%s)", r.o.text);
	peer_free(&p);
}

static void test_xoauth2(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.send = 0;
	r.opt.auth_user = "oauthuser";
	r.opt.auth_xoauth2_token = "tok.en-1";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n");
	EXPECT(&p, "AUTH XOAUTH2 dXNlcj1vYXV0aHVzZXIBYXV0aD1CZWFyZXIgdG9rLmVuLTEBAQ==\r\n");
	SEND(&p, "235 2.7.0 Authentication successful\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "XOAUTH2: user=U^Aauth=Bearer T^A^A, preferred over PLAIN");
	is_int(r.open_rc, 0, "XOAUTH2: session open");
	peer_free(&p);

	/* The error challenge: an empty line, then the final reply; the JSON in the text. */
	run_init(&r);
	r.send = 0;
	r.opt.auth_user = "oauthuser";
	r.opt.auth_xoauth2_token = "tok.en-1";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH XOAUTH2\r\n");
	EXPECT(&p, "AUTH XOAUTH2 dXNlcj1vYXV0aHVzZXIBYXV0aD1CZWFyZXIgdG9rLmVuLTEBAQ==\r\n");
	SEND(&p, "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n");
	EXPECT(&p, "\r\n");
	SEND(&p, "535 5.7.8 Username and Password not accepted\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "XOAUTH2 refused: empty line after the 334 challenge, then QUIT");
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.0") == 0,
	   "XOAUTH2 refused: defer 4.7.0");
	has_str(r.o.text, "535 5.7.8 Username and Password not accepted", "XOAUTH2 refused: reply");
	has_str(r.o.text, "XOAUTH2 error: {\"status\":\"401\",\"schemes\":\"bearer\"}",
		"XOAUTH2 refused: the decoded error");
	ok(strstr(r.o.text, "tok.en-1") == NULL && strstr(r.o.text, "dXNlcj1") == NULL,
	   "XOAUTH2 refused: no token in the text");
	peer_free(&p);

	run_init(&r);
	r.opt.auth_user = "oauthuser";
	r.opt.auth_xoauth2_token = "tok.en-1";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH PLAIN LOGIN\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "XOAUTH2 not offered: no AUTH, QUIT");
	ok(r.open_rc == -1 && strcmp(r.o.status, "4.7.0") == 0, "XOAUTH2 not offered: defer 4.7.0");
	has_str(r.o.text, "relay does not offer AUTH XOAUTH2", "XOAUTH2 not offered: text");
	peer_free(&p);

	run_init(&r);
	r.opt.auth_user = "oauthuser";
	r.opt.auth_error = "the Destination Service returned no OAuth2 token (authTokens)";
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH XOAUTH2\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "no token: no AUTH sent");
	ok(r.open_rc == -1 && strcmp(r.o.status, "4.7.0") == 0, "no token: defer 4.7.0");
	has_str(r.o.text, "SMTP AUTH impossible: the Destination Service returned no OAuth2 token",
		"no token: text");
	peer_free(&p);

	/* Credentials that must not travel in clear text: no AUTH without TLS. */
	run_init(&r);
	r.opt.auth_user = "user";
	r.opt.auth_password = "pass";
	r.opt.auth_require_tls = 1;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 AUTH PLAIN\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "AUTH needs TLS, none: no credentials sent");
	ok(r.open_rc == -1 && strcmp(r.o.status, "4.7.0") == 0, "AUTH needs TLS: defer 4.7.0");
	has_str(r.o.text, "not sent in clear text", "AUTH needs TLS: text");
	peer_free(&p);
}

static void test_session_refused(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "550 5.7.1 you are not welcome\r\n");
	EXPECT(&p, "HELO client.test\r\n");
	SEND(&p, "550 5.7.1 not with HELO either\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "EHLO and HELO 550: QUIT");
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.7.1") == 0,
	   "EHLO and HELO 550: defer 4.7.1 (the session, not the message, was refused)");
	has_str(r.o.text, "550 5.7.1 not with HELO either (in reply to HELO command)",
		"EHLO and HELO 550: the HELO reply");
	peer_free(&p);

	run_init(&r);
	SEND(&p, "554 no SMTP service here\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	ok(r.open_rc == -1 && r.o.cls == DSN_DEFER && strcmp(r.o.status, "4.0.0") == 0,
	   "greeting 554 without enhanced code: defer 4.0.0");
	peer_free(&p);
}

static void test_three_recipients(void)
{
	struct peer p = { 0 };
	struct run r;

	run_init(&r);
	r.rcpt[0] = "a@corp.example";
	r.rcpt[1] = "nobody@corp.example";
	r.rcpt[2] = "c@corp.example";
	r.nrcpt = 3;
	SEND(&p, GREETING);
	EXPECT(&p, EHLO);
	SEND(&p, "250-relay.test\r\n250 PIPELINING\r\n");
	EXPECT(&p, "MAIL FROM:<a@x.test>\r\nRCPT TO:<a@corp.example>\r\nRCPT TO:<nobody@corp.example>\r\n"
	       "RCPT TO:<c@corp.example>\r\n");
	SEND(&p, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <nobody@corp.example>: User unknown\r\n"
	     "250 2.1.5 Ok\r\n");
	EXPECT(&p, "RSET\r\n");
	SEND(&p, "250 2.0.0 Ok\r\n");
	EXPECT(&p, "QUIT\r\n");
	run_session(&p, &r);
	is_str(p.why, "", "3 recipients, 1 refused: RSET, no DATA");
	ok(r.o.cls == DSN_BOUNCE && strcmp(r.o.status, "5.1.1") == 0, "3 recipients: worst 5.1.1");
	has_str(r.o.text, "1 of 3 recipients refused, message not sent: <nobody@corp.example>: host "
		"relay.test[127.0.0.1]:25 said: 550 5.1.1 <nobody@corp.example>: User unknown (in "
		"reply to RCPT TO command); accepted: <a@corp.example> (250 2.1.5 Ok), "
		"<c@corp.example> (250 2.1.5 Ok)", "3 recipients: every reply in the text");
	ok(r.out[0].cls == DSN_DEFER && r.out[1].cls == DSN_BOUNCE && r.out[2].cls == DSN_DEFER,
	   "3 recipients: each its own outcome");
	peer_free(&p);
}

/* ---- TLS policy ---- */

struct policy_case {
	const char *name;
	enum tls_level cfg_level;
	const char *cfg_pin;
	int starttls_enable, starttls_required, smtps, ssl_enable, checkid;
	const char *trust, *pin, *verifyname;
	/* expected */
	enum tls_level level;
	int implicit, no_chain;
	const char *peer_name, *sni, *fingerprints, *warning;
};

static void test_route_tls_policy(void)
{
	static const struct policy_case t[] = {
		{ "may, no hints", TLS_LEVEL_MAY, "", -1, -1, 0, -1, -1, NULL, NULL, NULL,
		  TLS_LEVEL_MAY, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "starttls.enable=false lowers may", TLS_LEVEL_MAY, "", 0, -1, 0, -1, -1, NULL, NULL,
		  NULL, TLS_LEVEL_NONE, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "starttls.enable=false lowers encrypt", TLS_LEVEL_ENCRYPT, "", 0, -1, 0, -1, -1, NULL,
		  NULL, NULL, TLS_LEVEL_NONE, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "starttls.enable=true raises none", TLS_LEVEL_NONE, "", 1, -1, 0, -1, -1, NULL, NULL,
		  NULL, TLS_LEVEL_MAY, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "starttls.required=true", TLS_LEVEL_MAY, "", 0, 1, 0, -1, -1, NULL, NULL, NULL,
		  TLS_LEVEL_ENCRYPT, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "verify ignores starttls.enable=false", TLS_LEVEL_VERIFY, "", 0, -1, 0, -1, -1, NULL,
		  NULL, NULL, TLS_LEVEL_VERIFY, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL,
		  "mail.smtp.starttls.enable=false ignored" },
		{ "smtps", TLS_LEVEL_MAY, "", -1, -1, 1, -1, -1, NULL, NULL, NULL,
		  TLS_LEVEL_MAY, 1, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "ssl.enable=true", TLS_LEVEL_NONE, "", -1, -1, 0, 1, -1, NULL, NULL, NULL,
		  TLS_LEVEL_NONE, 1, 0, "mail.corp.internal", "mail.corp.internal", NULL, "" },
		{ "trust *", TLS_LEVEL_MAY, "", -1, -1, 0, -1, -1, "*", NULL, NULL,
		  TLS_LEVEL_MAY, 0, 1, NULL, "mail.corp.internal", NULL, "mail.smtp.ssl.trust=*" },
		{ "trust * with checkserveridentity=true", TLS_LEVEL_MAY, "", -1, -1, 0, -1, 1, "*", NULL,
		  NULL, TLS_LEVEL_MAY, 0, 1, "mail.corp.internal", "mail.corp.internal", NULL,
		  "only its name" },
		{ "trust lists the host", TLS_LEVEL_MAY, "", -1, -1, 0, -1, -1,
		  "other.example, MAIL.corp.internal", NULL, NULL, TLS_LEVEL_MAY, 0, 1,
		  "mail.corp.internal", "mail.corp.internal", NULL, "chain is NOT verified" },
		{ "trust lists other hosts", TLS_LEVEL_MAY, "", -1, -1, 0, -1, -1,
		  "other.example mail.corp", NULL, NULL, TLS_LEVEL_MAY, 0, 0, "mail.corp.internal",
		  "mail.corp.internal", NULL, "" },
		{ "checkserveridentity=false", TLS_LEVEL_ENCRYPT, "", -1, -1, 0, -1, 0, NULL, NULL, NULL,
		  TLS_LEVEL_ENCRYPT, 0, 0, NULL, "mail.corp.internal", NULL, "NOT checked" },
		{ "verify ignores trust *", TLS_LEVEL_VERIFY, "", -1, -1, 0, -1, -1, "*", NULL, NULL,
		  TLS_LEVEL_VERIFY, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL,
		  "mail.smtp.ssl.trust=* ignored" },
		{ "verify ignores checkserveridentity=false", TLS_LEVEL_VERIFY, "", -1, -1, 0, -1, 0, NULL,
		  NULL, NULL, TLS_LEVEL_VERIFY, 0, 0, "mail.corp.internal", "mail.corp.internal", NULL,
		  "checkserveridentity=false ignored" },
		{ "verifyname", TLS_LEVEL_MAY, "", -1, -1, 0, -1, -1, NULL, NULL, "relay.corp.example",
		  TLS_LEVEL_MAY, 0, 0, "relay.corp.example", "relay.corp.example", NULL, "" },
		{ "destination pin", TLS_LEVEL_MAY, "", -1, -1, 0, -1, -1, "*", "AB:CD", NULL,
		  TLS_LEVEL_MAY, 0, 0, "mail.corp.internal", "mail.corp.internal", "AB:CD", "" },
		{ "configured pin", TLS_LEVEL_MAY, "11:22", -1, -1, 0, -1, -1, NULL, NULL, NULL,
		  TLS_LEVEL_MAY, 0, 0, "mail.corp.internal", "mail.corp.internal", "11:22", "" },
		{ "destination pin over configured", TLS_LEVEL_MAY, "11:22", -1, -1, 0, -1, -1, NULL,
		  "AB:CD", NULL, TLS_LEVEL_MAY, 0, 0, "mail.corp.internal", "mail.corp.internal",
		  "AB:CD", "" },
	};
	struct config cfg;
	size_t i;

	config_defaults(&cfg);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct mail_destination d;
		struct tls_policy pol;
		char pin[16];

		memset(&d, 0, sizeof(d));
		d.host = "mail.corp.internal";
		d.starttls_enable = t[i].starttls_enable;
		d.starttls_required = t[i].starttls_required;
		d.smtps = t[i].smtps;
		d.ssl_enable = t[i].ssl_enable;
		d.ssl_checkserveridentity = t[i].checkid;
		d.ssl_trust = (char *)t[i].trust;
		d.ssl_fingerprint = (char *)t[i].pin;
		d.ssl_verifyname = (char *)t[i].verifyname;
		cfg.smtp_tls_level = t[i].cfg_level;
		str_copy(pin, t[i].cfg_pin, sizeof(pin));
		free(cfg.smtp_tls_fingerprint);
		cfg.smtp_tls_fingerprint = strdup(pin);
		route_tls_policy(&cfg, &d, &pol);
		ok(pol.level == t[i].level && pol.implicit == t[i].implicit
		   && pol.peer.no_chain == t[i].no_chain, "policy %s: level %d, implicit %d, chain %s",
		   t[i].name, t[i].level, t[i].implicit, t[i].no_chain ? "not verified" : "verified");
		is_str(pol.peer.name, t[i].peer_name, "policy %s: name checked", t[i].name);
		is_str(pol.peer.sni, t[i].sni, "policy %s: SNI", t[i].name);
		is_str(pol.peer.fingerprints, t[i].fingerprints, "policy %s: pins", t[i].name);
		if (t[i].warning[0])
			has_str(pol.warnings, t[i].warning, "policy %s: warning", t[i].name);
		else
			is_str(pol.warnings, "", "policy %s: no warning", t[i].name);
	}
	config_free(&cfg);
}

/* a mailbox's hints (btprelay-fetch): the texts name its keys, mail.imaps.* or mail.pop3.* */
static void test_route_tls_policy_mailbox(void)
{
	struct mail_destination d;
	struct tls_policy pol;
	struct config cfg;

	config_defaults(&cfg);
	memset(&d, 0, sizeof(d));
	d.host = "mail.corp.internal";
	d.starttls_enable = d.starttls_required = d.ssl_enable = d.ssl_checkserveridentity = -1;
	d.ssl_trust = "*";
	d.tls_keys = "mail.imaps";
	route_tls_policy(&cfg, &d, &pol);
	is_str(pol.warnings, "mail.imaps.ssl.trust=*: the server's certificate is NOT verified",
	       "mailbox: the trust warning names mail.imaps.ssl.trust");
	d.ssl_trust = NULL;
	d.ssl_checkserveridentity = 0;
	d.starttls_required = 1;
	d.tls_keys = "mail.pop3";
	route_tls_policy(&cfg, &d, &pol);
	is_str(pol.warnings, "mail.pop3.ssl.checkserveridentity=false: the name in the server's "
	       "certificate is NOT checked", "mailbox: the name warning names mail.pop3.ssl.*");
	is_str(pol.required_by, "mail.pop3.starttls.required=true",
	       "mailbox: TLS required by mail.pop3.starttls.required");
	cfg.smtp_tls_level = TLS_LEVEL_VERIFY;
	route_tls_policy(&cfg, &d, &pol);
	is_str(pol.warnings, "mail.pop3.ssl.checkserveridentity=false ignored: "
	       "smtp_tls_security_level=verify", "mailbox: an ignored hint named mail.pop3.ssl.*");
	d.tls_keys = NULL;
	route_tls_policy(&cfg, &d, &pol);
	has_str(pol.warnings, "mail.smtp.ssl.checkserveridentity=false ignored",
		"the relay's hints stay mail.smtp.*");
	config_free(&cfg);
}

static void test_tls_helpers(void)
{
	static const struct {
		const char *list;
		int rc;
	} fp[] = {
		{ "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89", 0 },
		{ "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 0 },
		{ "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789, "
		  "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF", 0 },
		{ "abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345678", -1 },
		{ "abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567890", -1 },
		{ "SHA1:AB:CD", -1 },
		{ "zz", -1 },
		{ " , ", -1 },
	};
	char err[300], out[96];
	unsigned char d[32];
	size_t i;

	for (i = 0; i < sizeof(fp) / sizeof(fp[0]); i++)
		is_int(tls_fingerprints_check(fp[i].list, err, sizeof(err)), fp[i].rc,
		       "fingerprint list \"%.40s...\": %s", fp[i].list, fp[i].rc ? "refused" : "valid");
	for (i = 0; i < 32; i++)
		d[i] = (unsigned char)(i * 8);
	tls_fingerprint_format(d, out);
	is_str(out, "00:08:10:18:20:28:30:38:40:48:50:58:60:68:70:78:80:88:90:98:A0:A8:B0:B8:C0:C8:"
	       "D0:D8:E0:E8:F0:F8", "fingerprint format");
	ok(tls_host_listed("a.example  MAIL.corp.internal", "mail.corp.internal"),
	   "trust list: host found, case ignored");
	ok(tls_host_listed("a.example,mail.corp.internal", "mail.corp.internal"),
	   "trust list: commas");
	ok(!tls_host_listed("mail.corp.internal.evil", "mail.corp.internal"),
	   "trust list: no prefix match");
	ok(!tls_host_listed("", "mail.corp.internal"), "trust list: empty");
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_reply_line();
	test_ehlo_keyword();
	test_body_convert();
	test_pipelined();
	test_pipelined_two();
	test_lockstep();
	test_helo_fallback();
	test_auth();
	test_auth_echo();
	test_rcpt_rejected();
	test_one_of_two_rejected();
	test_mail_rejected();
	test_eod();
	test_connection_problems();
	test_garbage();
	test_envelope_refused();
	test_address_check();
	test_address_injection();
	test_early_reply();
	test_reply_deadline();
	test_size_limit();
	test_tls_policy();
	test_body_stream();
	test_line_limit();
	test_body_random();
	test_long_lines_session();
	test_xoauth2();
	test_xoauth2_long();
	test_session_refused();
	test_three_recipients();
	test_route_tls_policy();
	test_route_tls_policy_mailbox();
	test_tls_helpers();
	return tap_done();
}
