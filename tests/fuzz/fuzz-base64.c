/*
 * fuzz-base64 - base64_decode() (AUTH LOGIN prompts, the location ID) and
 * base64_encode(). The input is decoded into exact-size heap buffers of
 * several sizes, so a write past dstsize is caught, and encoded back.
 *
 * Properties: decoding succeeds only for a length that is a multiple of 4
 * and never writes more than dstsize; a larger buffer gives the same
 * bytes; encode(decode(x)) decodes to the same bytes and has x's length;
 * decode(encode(y)) == y for the input as raw bytes; encode refuses a
 * buffer one byte too small.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t need = size / 4 * 3, sizes[4], i, elen, cap;
	char *src = malloc(size ? size : 1), *enc, *full;
	unsigned char *dst, *back;
	ssize_t r, rfull;

	memcpy(src, data, size);
	full = malloc(need + 1);
	rfull = base64_decode(src, size, full, need);
	if (size % 4 != 0)
		fuzz_assert(rfull < 0);
	if (rfull >= 0) {
		fuzz_assert((size_t)rfull <= need && (size_t)rfull + 2 >= need);
		/* smaller buffers: the same bytes when it fits, else a refusal */
		sizes[0] = (size_t)rfull;
		sizes[1] = rfull > 0 ? (size_t)rfull - 1 : 0;
		sizes[2] = 0;
		sizes[3] = need + 3;
		for (i = 0; i < 4; i++) {
			dst = malloc(sizes[i] ? sizes[i] : 1);
			r = base64_decode(src, size, dst, sizes[i]);
			if (sizes[i] >= (size_t)rfull)
				fuzz_assert(r == rfull && memcmp(dst, full, (size_t)r) == 0);
			else
				fuzz_assert(r < 0);
			free(dst);
		}
		/* encode back: same length, decodes to the same bytes */
		cap = ((size_t)rfull + 2) / 3 * 4 + 1;
		enc = malloc(cap);
		elen = base64_encode(full, (size_t)rfull, enc, cap);
		fuzz_assert(elen == size && strlen(enc) == elen);
		back = malloc(need + 1);
		r = base64_decode(enc, elen, back, need);
		fuzz_assert(r == rfull && memcmp(back, full, (size_t)r) == 0);
		free(back);
		free(enc);
	}
	free(full);

	/* the input as raw bytes: encode, refuse a short buffer, decode back */
	cap = (size + 2) / 3 * 4 + 1;
	enc = malloc(cap);
	elen = base64_encode(data, size, enc, cap);
	fuzz_assert(elen == cap - 1 && enc[elen] == '\0');
	fuzz_assert(base64_encode(data, size, enc, cap - 1) == 0);
	back = malloc(size ? size : 1);
	r = base64_decode(enc, elen, back, size);
	fuzz_assert(r == (ssize_t)size && memcmp(back, data, size) == 0);
	free(back);
	free(enc);
	free(src);
	return 0;
}
