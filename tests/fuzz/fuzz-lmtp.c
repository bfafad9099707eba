/*
 * fuzz-lmtp - the LMTP server side of btprelay-lmtp, which reads what
 * Postfix's lmtp(8) client sends: every input line through lmtp_parse(),
 * the input as the message's transparent form through lmtp_body_read(),
 * and the input as a message stuffed by smtp_body_convert() and read back.
 * The first byte picks the reader's chunk size.
 *
 * Every command also steps one session (lmtp_session_step), a message
 * taken as delivered after each DATA.
 *
 * Properties: a parsed command's strings lie inside the line; a refusal is
 * a 5xx reply with an enhanced status code; the session answers every
 * command with a reply code until QUIT and none after, and has a sender
 * exactly while a transaction is open; IDENT is a queue id (letters
 * and digits) or absent; the reader never returns more bytes than it read
 * and always ends (at the lone dot or with the connection); a message
 * stuffed by the transport's own converter reads back as itself, with
 * CR LF as LF, and the bytes after its lone dot stay in the connection.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "lmtp.h"
#include "smtp.h"

FUZZ_TARGET_QUIET

static int inside(const char *s, const char *buf, size_t len)
{
	return s >= buf && s <= buf + len && strlen(s) <= len - (size_t)(s - buf);
}

/* step - the command through the session: a reply but after QUIT, the state consistent */
static void step(struct lmtp_session *s, const struct lmtp_cmd *cmd)
{
	enum lmtp_state was = s->state;
	const char *r = lmtp_session_step(s, cmd);

	if (was == LMTP_STATE_QUIT) {
		fuzz_assert(r == NULL && s->state == LMTP_STATE_QUIT);
		return;
	}
	fuzz_assert(r != NULL && r[0] >= '2' && r[0] <= '5' && isdigit((unsigned char)r[1])
		    && isdigit((unsigned char)r[2]) && (r[3] == ' ' || r[3] == '-'));
	fuzz_assert((s->sender != NULL) == (s->state == LMTP_STATE_MAIL || s->state == LMTP_STATE_RCPT
					     || s->state == LMTP_STATE_DATA));
	fuzz_assert((s->nrcpt > 0) == (s->state == LMTP_STATE_RCPT || s->state == LMTP_STATE_DATA));
	fuzz_assert(s->nrcpt <= LMTP_RCPT_MAX);
	if (s->state == LMTP_STATE_DATA) {
		fuzz_assert(strncmp(r, "354 ", 4) == 0);
		lmtp_session_done(s);	/* as if delivered */
	}
}

/* one_line - lmtp_parse on one line, from an exact-size copy, and a session's step */
static void one_line(struct lmtp_session *s, const char *line, size_t len)
{
	char *buf = malloc(len + 1);
	struct lmtp_cmd cmd;
	size_t i;

	memcpy(buf, line, len);
	buf[len] = '\0';
	lmtp_parse(buf, &cmd);
	if (cmd.verb == LMTP_BAD) {
		fuzz_assert(cmd.reply != NULL && cmd.reply[0] == '5' && isdigit((unsigned char)cmd.reply[1])
			    && isdigit((unsigned char)cmd.reply[2]) && cmd.reply[3] == ' ');
		fuzz_assert(dsn_valid(cmd.reply + 4) > 0);
	} else {
		fuzz_assert(cmd.arg != NULL && inside(cmd.arg, buf, len));
	}
	if (cmd.ident != NULL) {
		fuzz_assert(inside(cmd.ident, buf, len) && strlen(cmd.ident) <= 32);
		for (i = 0; cmd.ident[i]; i++)
			fuzz_assert(isalnum((unsigned char)cmd.ident[i]));
	}
	if (cmd.verb == LMTP_MAIL)
		fuzz_assert(cmd.size >= -1);
	step(s, &cmd);
	free(buf);
}

/* read_back - wire through lmtp_body_read in chunks of n; the message, its length in *got_len, and the next line in rest */
static char *read_back(const uint8_t *wire, size_t wlen, size_t n, size_t *got_len, int *done,
		       char *rest, size_t rsize)
{
	struct fuzz_peer p;
	struct conn c;
	struct lmtp_body b;
	char *out = malloc(wlen + 1), *chunk = malloc(n);
	size_t len = 0;
	ssize_t k;

	conn_init(&c, 2000, 0);
	if (fuzz_peer_start(&p, &c, 2000, wire, wlen, 0) < 0)
		abort();
	lmtp_body_init(&b, &c);
	while ((k = lmtp_body_read(&b, chunk, n)) > 0) {
		fuzz_assert((size_t)k <= n && len + (size_t)k <= wlen);
		memcpy(out + len, chunk, (size_t)k);
		len += (size_t)k;
	}
	fuzz_assert(k == 0 ? b.done : b.failed);
	*done = b.done;
	rest[0] = '\0';
	if (b.done && conn_read_line(&c, rest, rsize) < 0)
		rest[0] = '\0';
	conn_close(&c);
	fuzz_peer_end(&p);
	fuzz_peer_free(&p);
	free(chunk);
	*got_len = len;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + (size > 0), *p, *end, *lf;
	size_t len = size > 0 ? size - 1 : 0, n = size > 0 ? 2 + data[0] % 64 : 2, got_len, wlen, k, i;
	struct smtp_body_state st;
	struct lmtp_session s;
	char *wire, *want, *got, rest[64];
	int done;

	lmtp_session_init(&s, "lmtp.example");
	for (p = in, end = in + len; p < end; p += k + (lf != NULL)) {
		lf = memchr(p, '\n', (size_t)(end - p));
		k = lf ? (size_t)(lf - p) : (size_t)(end - p);
		one_line(&s, p, k > 0 && p[k - 1] == '\r' ? k - 1 : k);
	}
	lmtp_session_free(&s);

	/* the input as it comes after DATA */
	got = read_back((const uint8_t *)in, len, n, &got_len, &done, rest, sizeof(rest));
	free(got);

	/* a message stuffed by the transport's converter, then a command */
	wire = malloc(SMTP_BODY_OUT_MAX(len) + 5 + 6);
	smtp_body_init(&st);
	wlen = smtp_body_convert(&st, in, len, wire);
	wlen += smtp_body_finish(&st, wire + wlen);
	memcpy(wire + wlen, "QUIT\r\n", 6);
	wlen += 6;
	/* what it must read back as: CR LF as LF, a last line ended by LF */
	want = malloc(len + 2);
	for (i = 0, k = 0; i < len; i++) {
		if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
			continue;
		want[k++] = in[i];
	}
	if (k > 0 && want[k - 1] == '\r')	/* a trailing CR becomes the CR of the line end */
		want[k - 1] = '\n';
	else if (k > 0 && want[k - 1] != '\n')
		want[k++] = '\n';
	got = read_back((const uint8_t *)wire, wlen, n, &got_len, &done, rest, sizeof(rest));
	fuzz_assert(done);
	fuzz_assert(got_len == k && memcmp(got, want, k) == 0);
	fuzz_assert(strcmp(rest, "QUIT") == 0);
	free(got);
	free(want);
	free(wire);
	return 0;
}
