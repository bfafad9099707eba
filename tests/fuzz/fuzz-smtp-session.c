/*
 * fuzz-smtp-session - the relay's whole byte stream: the input is what
 * the relay sends, played through a socketpair, while smtp_session_open()
 * and smtp_send_message() run a session on the other end (the reply
 * reader, EHLO parsing, STARTTLS and AUTH decisions, pipelined replies,
 * the final reply). Session options come from a hash of the input, so one
 * input always takes the same path: TLS none / may / encrypt (with a real
 * OpenSSL context: the handshake reads the input too), AUTH or not, 1 to 3
 * recipients, the null sender.
 *
 * Properties: every outcome is valid; a bounce needs a 5xx line in the
 * input (or is 5.3.4, the relay's SIZE limit); the final dot is sent only after a 354, success only after one;
 * every recipient's outcome agrees with the request's on success; the AUTH
 * password never appears in a text unless the relay's bytes hold it.
 */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "smtp.h"
#include "tls.h"

#define BODY "Subject: fuzz\nFrom: a@client.test\n\n.leading dot\nbody line\n"

static SSL_CTX *ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct tls_trust trust;
	char err[256];

	(void)argc;
	(void)argv;
	fuzz_peer_hold_354 = 1;	/* the relay is silent between its 354 and the dot */
	memset(&trust, 0, sizeof(trust));
	trust.verify = 1;
	fuzz_peer_quiet();
	ctx = tls_ctx_new(&trust, err, sizeof(err));
	return 0;
}

/* hash - FNV-1a: the session options of an input */
static unsigned hash(const uint8_t *data, size_t size)
{
	unsigned h = 2166136261u;
	size_t i;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	return h;
}

/* has_5xx - whether some line of the input starts with a 5xx code */
static int has_5xx(const uint8_t *data, size_t size)
{
	size_t i;

	for (i = 0; i + 2 < size; i++)
		if ((i == 0 || data[i - 1] == '\n') && data[i] == '5' && data[i + 1] >= '0'
		    && data[i + 1] <= '9' && data[i + 2] >= '0' && data[i + 2] <= '9')
			return 1;
	return 0;
}

/* bounce_ok - a bounce needs the relay's 5xx, or its SIZE limit (5.3.4) */
static int bounce_ok(const struct outcome *o, const uint8_t *data, size_t size)
{
	return o->cls != DSN_BOUNCE || has_5xx(data, size) || strcmp(o->status, "5.3.4") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const rcpts[] = { "user@corp.example", "b@corp.example",
					     "c@corp.example" };
	static struct conn c;
	struct smtp_options opt;
	struct smtp_session s;
	struct smtp_envelope env;
	struct outcome o, rout[3];
	struct fuzz_peer p;
	unsigned h = hash(data, size);
	int rc, fd;
	size_t i;

	memset(&opt, 0, sizeof(opt));
	opt.helo_name = "mta.client.test";
	opt.relay_name = "mail.corp.internal[via proxy]:25";
	opt.tls_level = (enum tls_level)(h % 3);
	opt.tls_ctx = (h >> 2) & 1 ? ctx : NULL;
	opt.tls_sni = "mail.corp.internal";
	opt.tls_verify_name = "mail.corp.internal";
	if ((h >> 3) & 1) {
		opt.auth_user = "relayuser";
		opt.auth_password = "s3cret-relay-password";
	}
	opt.implicit_tls = ((h >> 4) & 7) == 0;
	opt.command_timeout_ms = 2000;
	opt.data_done_timeout_ms = 2000;
	memset(&env, 0, sizeof(env));
	env.sender = (h >> 7) & 1 ? "" : "sender@client.test";
	env.rcpt = rcpts;
	env.nrcpt = 1 + (h >> 8) % 3;
	env.size = (h >> 10) & 1 ? -1 : (long)strlen(BODY);

	if (fuzz_peer_start(&p, &c, 2000, data, size, 65536) < 0)
		return 0;
	memset(&o, 0, sizeof(o));
	rc = smtp_session_open(&s, &c, &opt, &o);
	if (rc == 0) {
		fuzz_assert(s.state == SMTP_STATE_READY);
		fd = fuzz_body_fd(BODY);
		rc = smtp_send_message(&s, &env, fd, rout, &o);
		close(fd);
		fuzz_check_outcome(&o, 1);
		fuzz_assert(bounce_ok(&o, data, size));
		for (i = 0; i < env.nrcpt; i++) {
			fuzz_check_outcome(&rout[i], 1);
			fuzz_assert(bounce_ok(&rout[i], data, size));
		}
		if (rc == 0) {
			fuzz_assert(o.cls == DSN_OK);
			for (i = 0; i < env.nrcpt; i++)
				fuzz_assert(rout[i].cls == DSN_OK);
			fuzz_assert(memmem(data, size, "354", 3) != NULL);
		} else {
			fuzz_assert(o.cls != DSN_OK);
		}
	} else {
		fuzz_check_outcome(&o, has_5xx(data, size));
		fuzz_assert(o.cls != DSN_OK);
	}
	/* the password never reaches a text, unless the relay itself echoes it */
	if (memmem(data, size, "s3cret-relay-password", 21) == NULL)
		fuzz_assert(strstr(o.text, "s3cret-relay-password") == NULL);
	smtp_quit(&s);
	conn_close(&c);
	fuzz_peer_end(&p);
	/* the end of data went out only after the relay said 354 */
	if (p.sent != NULL && strstr(p.sent, "\r\nbody line\r\n.\r\n") != NULL)
		fuzz_assert(memmem(data, size, "354", 3) != NULL);
	fuzz_peer_free(&p);
	return 0;
}
