/*
 * fuzz-socks5 - the Connectivity proxy's replies (RFC 1928 framing, method 0x80): the
 * input is everything the proxy sends, played through a socketpair while
 * socks5_connect() runs the whole 0x80 handshake on the other end, once
 * with a token and once without (a proxy in trusted mode: 0x80 with a
 * JWT length of 0, or 0x00); and socks5_reply_length() on the input's
 * first 5 bytes.
 *
 * Properties: every failure defers (never bounces) with a valid outcome;
 * success means the proxy said 05 80, 01 00 and 05 00 .. with a valid
 * ATYP (without a token also 05 00 then 05 00 ..), and the conn stands
 * exactly at the first byte after the CONNECT reply (what follows belongs
 * to the relay). Without a token there is none to renew: never
 * SOCKS5_AUTH_REJECTED.
 */
#include <string.h>

#include "fuzz.h"
#include "socks5.h"

#define JWT "eyJhbGciOiJIUzI1NiJ9.eyJjbGllbnRfaWQiOiJzYi1jbG9uZS1jb25uIWIyIn0.c2lnbmF0dXJl"

FUZZ_TARGET_PEER

/* one_handshake - the input as the proxy's bytes, with the token jwt (NULL: none) */
static void one_handshake(const uint8_t *data, size_t size, const char *jwt)
{
	static struct conn c;
	struct fuzz_peer p;
	struct outcome o;
	size_t rlen, pending, head;
	int rc;

	if (fuzz_peer_start(&p, &c, 2000, data, size, 0) < 0)
		return;
	memset(&o, 0, sizeof(o));
	rc = socks5_connect(&c, jwt, "LOC1", "mail.corp.internal", 25, &o);
	if (rc == SOCKS5_OK) {
		fuzz_assert(size >= 7 && data[0] == 0x05);
		/* 05 80 01 00, or without a token also 05 00 (no auth sub-negotiation) */
		if (data[1] == 0x80) {
			fuzz_assert(data[2] == 0x01 && data[3] == 0x00);
			head = 4;
		} else {
			fuzz_assert(jwt == NULL && data[1] == 0x00);
			head = 2;
		}
		fuzz_assert(size >= head + 5);
		fuzz_assert(data[head] == 0x05 && data[head + 1] == 0x00);
		rlen = socks5_reply_length(data + head);
		fuzz_assert(rlen > 0 && size >= head + rlen);
		pending = conn_pending(&c);
		fuzz_assert(pending <= size - head - rlen);
		fuzz_assert(memcmp(c.rbuf + c.rpos, data + head + rlen, pending) == 0);
	} else {
		fuzz_assert(rc == SOCKS5_FAIL || (rc == SOCKS5_AUTH_REJECTED && jwt != NULL));
		fuzz_check_outcome(&o, 0);
		fuzz_assert(o.cls == DSN_DEFER);
		if (rc == SOCKS5_AUTH_REJECTED)
			fuzz_assert(strcmp(o.status, "4.7.0") == 0);
		fuzz_assert(strstr(o.text, JWT) == NULL);
	}
	conn_close(&c);
	fuzz_peer_end(&p);
	fuzz_peer_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t rlen;

	if (size >= 5) {
		rlen = socks5_reply_length(data);
		fuzz_assert(rlen == 0 || data[0] == 0x05);
		fuzz_assert(rlen == 0 || rlen == 10 || rlen == 22 || (rlen >= 7 && rlen <= 262));
	}
	one_handshake(data, size, JWT);
	one_handshake(data, size, NULL);
	return 0;
}
