/*
 * fuzz-smtp-body - smtp_body_convert() and smtp_body_finish(), the LF ->
 * CRLF and dot-stuffing of the message stream. The input is the message;
 * its first byte picks the chunk sizes the stream is cut into (state must
 * carry across chunks).
 *
 * Properties: each chunk's output fits 2 * len (+ 2) bytes (the caller's
 * buffer), chunking does not change the result, every LF on the wire
 * follows a CR, every line that starts with '.' starts with "..", the
 * stream ends with CRLF "." CRLF and has no earlier lone-dot line, and
 * removing the stuffing gives back the input with each LF that had no CR
 * before it turned into CRLF.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* convert - the whole stream in chunks of the given sizes (cycled); returns its length */
static size_t convert(const char *in, size_t len, const uint8_t *sizes, size_t nsizes,
		      char *out)
{
	struct smtp_body_state st;
	size_t off = 0, n = 0, k = 0, chunk, w;
	char *buf;

	smtp_body_init(&st);
	while (off < len) {
		chunk = nsizes ? (size_t)sizes[k++ % nsizes] % 17 + 1 : len;
		if (chunk > len - off)
			chunk = len - off;
		/* exactly the documented buffer: 2 * len + 2 bytes */
		buf = malloc(2 * chunk + 2);
		w = smtp_body_convert(&st, in + off, chunk, buf);
		fuzz_assert(w <= 2 * chunk);
		memcpy(out + n, buf, w);
		free(buf);
		n += w;
		off += chunk;
	}
	buf = malloc(5);
	w = smtp_body_finish(&st, buf);
	fuzz_assert(w == 3 || w == 4 || w == 5);
	memcpy(out + n, buf, w);
	free(buf);
	return n + w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + (size > 0);
	size_t len = size > 0 ? size - 1 : 0, n1, n2, i, k;
	uint8_t sizes[4];
	char *out1, *out2, *want, *got;
	int line_start = 1, prev_cr = 0;

	sizes[0] = size ? data[0] : 0;
	sizes[1] = (uint8_t)(sizes[0] * 7 + 3);
	sizes[2] = (uint8_t)(sizes[0] >> 3);
	sizes[3] = 1;
	out1 = malloc(2 * len + 8);
	out2 = malloc(2 * len + 8);
	n1 = convert(in, len, NULL, 0, out1);
	n2 = convert(in, len, sizes, 4, out2);
	fuzz_assert(n1 == n2 && memcmp(out1, out2, n1) == 0);

	/* the end: CRLF . CRLF (or just . CRLF for an empty message) */
	fuzz_assert(n1 >= 3 && memcmp(out1 + n1 - 3, ".\r\n", 3) == 0);
	fuzz_assert(n1 == 3 || (n1 >= 5 && memcmp(out1 + n1 - 5, "\r\n.\r\n", 5) == 0));
	/* no lone dot before it; every LF after a CR */
	for (i = 0; i + 5 <= n1 - 3; i++)
		fuzz_assert(memcmp(out1 + i, "\r\n.\r\n", 5) != 0);
	fuzz_assert(!(n1 > 3 && memcmp(out1, ".\r\n", 3) == 0));
	for (i = 0; i < n1; i++)
		if (out1[i] == '\n')
			fuzz_assert(i > 0 && out1[i - 1] == '\r');

	/* unstuff (without the terminator) and compare with the expected conversion */
	want = malloc(2 * len + 1);
	for (i = 0, k = 0; i < len; i++) {
		if (in[i] == '\n' && !prev_cr)
			want[k++] = '\r';
		want[k++] = in[i];
		prev_cr = in[i] == '\r';
	}
	got = malloc(n1);
	n2 = 0;
	for (i = 0; i < n1 - 3; i++) {
		if (line_start && out1[i] == '.') {
			fuzz_assert(i + 1 < n1 && out1[i + 1] == '.');
			i++;
		}
		got[n2++] = out1[i];
		line_start = out1[i] == '\n';
	}
	/* smtp_body_finish ended an unterminated last line: not part of the input */
	if (k > 0 && want[k - 1] != '\n') {
		fuzz_assert(n2 >= 1 && got[n2 - 1] == '\n');
		n2--;
		if (n2 > 0 && got[n2 - 1] == '\r' && !(k > 0 && want[k - 1] == '\r'))
			n2--;
	}
	fuzz_assert(n2 == k && memcmp(got, want, k) == 0);
	free(got);
	free(want);
	free(out1);
	free(out2);
	return 0;
}
