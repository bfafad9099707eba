/*
 * fuzz-smtp-envelope - addresses (issue 6: CR, LF, over-long, 8-bit)
 * against a well-behaved relay. The input is the envelope: NUL-separated
 * fields, the sender first, then up to 5 recipients; the relay's replies
 * are fixed (its extensions chosen by a hash of the input: PIPELINING,
 * SMTPUTF8, a SIZE limit).
 *
 * Properties: what the client writes is CRLF-terminated lines without a
 * bare CR, LF or NUL, every command line before DATA is a command we
 * send (EHLO, MAIL, RCPT, RSET, DATA, QUIT), at most one MAIL and no more
 * RCPT lines than recipients; an address with CR or LF or over 986 bytes
 * is never sent and bounces 5.1.3 (5.1.7 for the sender; nothing else the
 * relay is not asked about may bounce but SMTPUTF8 5.6.7 and SIZE 5.3.4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "smtp.h"

#define NRCPT_MAX 5
#define BODY "Subject: envelope\n\nbody\n"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_peer_hold_354 = 1;	/* the relay is silent between its 354 and the dot */
	fuzz_peer_quiet();
	return 0;
}

static int addr_bad(const char *a)
{
	return strpbrk(a, "\r\n") != NULL || strlen(a) > 986;
}

/* check_wire - the client's bytes: CRLF lines, known commands until DATA */
static void check_wire(const char *sent, size_t nsent, size_t nrcpt)
{
	const char *p = sent, *end = sent + nsent, *eol;
	size_t nmail = 0, nrcpt_lines = 0;
	int in_body = 0;

	fuzz_assert(strlen(sent) == nsent);	/* no NUL on the wire */
	while (p < end) {
		eol = strstr(p, "\r\n");
		if (eol == NULL)
			break;	/* the peer kept only the first part */
		size_t len = (size_t)(eol - p);

		fuzz_assert(memchr(p, '\r', len) == NULL && memchr(p, '\n', len) == NULL);
		if (in_body) {
			if (len == 1 && p[0] == '.')
				in_body = 0;
		} else if (strncmp(p, "MAIL FROM:<", 11) == 0) {
			nmail++;
		} else if (strncmp(p, "RCPT TO:<", 9) == 0) {
			nrcpt_lines++;
			fuzz_assert(p[len - 1] == '>');
		} else if (len == 4 && strncmp(p, "DATA", 4) == 0) {
			in_body = 1;
		} else {
			fuzz_assert(strncmp(p, "EHLO ", 5) == 0 || strncmp(p, "HELO ", 5) == 0
				    || (len == 4 && (strncmp(p, "RSET", 4) == 0
						     || strncmp(p, "QUIT", 4) == 0)));
		}
		p = eol + 2;
	}
	fuzz_assert(nmail <= 1);
	fuzz_assert(nrcpt_lines <= nrcpt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct conn c;
	char *copy, *field[1 + NRCPT_MAX], relay[1024];
	const char *rcpt[NRCPT_MAX];
	struct smtp_options opt;
	struct smtp_session s;
	struct smtp_envelope env;
	struct outcome o, rout[NRCPT_MAX];
	struct fuzz_peer p;
	size_t nf = 0, i, off = 0, len;
	unsigned h = 2166136261u;
	int rc, fd, any_bad = 0;

	copy = malloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = '\0';
	field[nf++] = copy;
	for (i = 0; i < size && nf < 1 + NRCPT_MAX; i++) {
		if (copy[i] == '\0')
			field[nf++] = copy + i + 1;
	}
	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	memset(&env, 0, sizeof(env));
	env.sender = field[0];
	for (i = 1; i < nf; i++)
		rcpt[i - 1] = field[i];
	if (nf == 1)
		rcpt[nf++ - 1] = "user@corp.example";
	env.rcpt = rcpt;
	env.nrcpt = nf - 1;
	env.size = (long)strlen(BODY) + (long)(h >> 8 & 0xffff);
	for (i = 0; i < nf; i++)
		any_bad |= addr_bad(i == 0 ? env.sender : rcpt[i - 1]);

	len = (size_t)snprintf(relay, sizeof(relay), "220 relay ESMTP\r\n250-relay\r\n%s%s"
			       "250-8BITMIME\r\n250 SIZE %s\r\n",
			       h & 1 ? "250-PIPELINING\r\n" : "", h & 2 ? "250-SMTPUTF8\r\n" : "",
			       h & 4 ? "30000" : "");
	for (i = 0; i < 1 + env.nrcpt; i++)
		off += (size_t)snprintf(relay + len + off, sizeof(relay) - len - off,
					"250 2.1.0 Ok\r\n");
	snprintf(relay + len + off, sizeof(relay) - len - off,
		 "354 go ahead\r\n250 2.0.0 Ok: queued\r\n221 2.0.0 Bye\r\n");

	memset(&opt, 0, sizeof(opt));
	opt.helo_name = "mta.client.test";
	opt.relay_name = "relay[test]:25";
	opt.tls_level = TLS_LEVEL_NONE;
	opt.command_timeout_ms = 2000;
	opt.data_done_timeout_ms = 2000;
	if (fuzz_peer_start(&p, &c, 2000, (const uint8_t *)relay, strlen(relay), 1 << 16) < 0) {
		free(copy);
		return 0;
	}
	rc = smtp_session_open(&s, &c, &opt, &o);
	fuzz_assert(rc == 0);
	fd = fuzz_body_fd(BODY);
	rc = smtp_send_message(&s, &env, fd, rout, &o);
	close(fd);
	fuzz_check_outcome(&o, 1);
	for (i = 0; i < env.nrcpt; i++)
		fuzz_check_outcome(&rout[i], 1);
	if (any_bad) {
		fuzz_assert(rc < 0 && o.cls == DSN_BOUNCE);
		fuzz_assert(strcmp(o.status, "5.1.3") == 0 || strcmp(o.status, "5.1.7") == 0
			    || strcmp(o.status, "5.6.7") == 0 || strcmp(o.status, "5.3.4") == 0);
	}
	if (o.cls == DSN_BOUNCE)
		fuzz_assert(strcmp(o.status, "5.1.3") == 0 || strcmp(o.status, "5.1.7") == 0
			    || strcmp(o.status, "5.6.7") == 0 || strcmp(o.status, "5.3.4") == 0);
	smtp_quit(&s);
	conn_close(&c);
	fuzz_peer_end(&p);
	check_wire(p.sent, p.nsent, env.nrcpt);
	if (any_bad)
		fuzz_assert(strstr(p.sent, "MAIL FROM:") == NULL);
	fuzz_peer_free(&p);
	free(copy);
	return 0;
}
