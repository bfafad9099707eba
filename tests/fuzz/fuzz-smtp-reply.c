/*
 * fuzz-smtp-reply - the pure pieces of SMTP reply parsing: every line of
 * the input through smtp_reply_line() (from an exact-size heap copy, so a
 * read past len is caught), the text after "250-" through
 * smtp_ehlo_keyword(), and whole replies through dsn_from_reply() and
 * dsn_valid() (the enhanced status code of a reply).
 *
 * Properties: smtp_reply_line() accepts exactly "[2-5]DD", "[2-5]DD " and
 * "[2-5]DD-" prefixes and returns their code; a keyword yields only known
 * bits (one per keyword but AUTH) and touches *size only for SIZE; an outcome from a reply has the
 * reply's class (2xx ok, 5xx bounce, else defer) and a valid status.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsn.h"
#include "fuzz.h"
#include "smtp.h"


FUZZ_TARGET_QUIET

/* one_line - every parser on one line (without its LF) */
static void one_line(const char *line, size_t len, unsigned stage)
{
	char *exact = malloc(len ? len : 1), *text;
	int code = -1, last = -1, rc, want;
	unsigned long size = 4242;
	unsigned bits;
	struct outcome o;
	size_t tlen;

	memcpy(exact, line, len);
	rc = smtp_reply_line(exact, len, &code, &last);
	want = len >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9'
	       && line[2] >= '0' && line[2] <= '9' && (len == 3 || line[3] == ' ' || line[3] == '-');
	fuzz_assert((rc == 0) == want);
	if (rc == 0) {
		fuzz_assert(code == (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
		fuzz_assert(last == (len == 3 || line[3] == ' '));
	}
	free(exact);

	/* the keyword parser gets a C string: what follows "250-" */
	tlen = len > 4 ? strnlen(line + 4, len - 4) : 0;
	text = malloc(tlen + 1);
	memcpy(text, line + 4 * (len > 4), tlen);
	text[tlen] = '\0';
	bits = smtp_ehlo_keyword(text, &size);
	/* one bit per keyword; AUTH may name several mechanisms */
	fuzz_assert(bits < (1u << 16));
	if (strncasecmp(text, "AUTH", 4) != 0)
		fuzz_assert((bits & (bits - 1)) == 0);
	if (!(bits & SMTP_EXT_SIZE))
		fuzz_assert(size == 4242);
	smtp_ehlo_keyword(text, NULL);
	free(text);

	if (rc == 0) {
		tlen = strnlen(line, len);
		text = malloc(tlen + 1);
		memcpy(text, line, tlen);
		text[tlen] = '\0';
		dsn_from_reply(&o, "relay.example[via proxy]:25", code, text,
			       (enum dsn_stage)(stage % (DSN_STAGE_QUIT + 1)));
		fuzz_check_outcome(&o, 1);
		fuzz_assert(o.cls == (code / 100 == 2 ? DSN_OK : code / 100 == 5 ? DSN_BOUNCE
				       : DSN_DEFER));
		free(text);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *lf;
	unsigned stage = 0;
	char *s;

	while (p < end) {
		lf = memchr(p, '\n', (size_t)(end - p));
		size_t len = lf ? (size_t)(lf - p) : (size_t)(end - p);

		/* conn_read_line drops the CR of CR LF; keep both forms */
		one_line(p, len, stage++);
		if (len > 0 && p[len - 1] == '\r')
			one_line(p, len - 1, stage++);
		p += len + (lf != NULL);
	}
	/* dsn_valid on the input as a C string */
	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	size_t n = dsn_valid(s);
	fuzz_assert(n <= strlen(s));
	if (n > 0)
		fuzz_assert(s[0] == '2' || s[0] == '4' || s[0] == '5');
	free(s);
	return 0;
}
