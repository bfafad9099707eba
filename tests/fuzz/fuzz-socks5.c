/*
 * fuzz-socks5 - the Connectivity proxy's replies (REFERENCE.md §1): the
 * input is everything the proxy sends, played through a socketpair while
 * socks5_connect() runs the whole 0x80 handshake on the other end; and
 * socks5_reply_length() on the input's first 5 bytes.
 *
 * Properties: every failure defers (never bounces) with a valid outcome;
 * success means the proxy said 05 80, 01 00 and 05 00 .. with a valid
 * ATYP, and the conn stands exactly at the first byte after the CONNECT
 * reply (what follows belongs to the relay).
 */
#include <signal.h>
#include <string.h>

#include "fuzz.h"
#include "socks5.h"

#define JWT "eyJhbGciOiJIUzI1NiJ9.eyJjbGllbnRfaWQiOiJzYi1jbG9uZS1jb25uIWIyIn0.c2lnbmF0dXJl"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct conn c;
	struct fuzz_peer p;
	struct outcome o;
	size_t rlen, pending;
	int rc;

	if (size >= 5) {
		rlen = socks5_reply_length(data);
		fuzz_assert(rlen == 0 || data[0] == 0x05);
		fuzz_assert(rlen == 0 || rlen == 10 || rlen == 22 || (rlen >= 7 && rlen <= 262));
	}

	if (fuzz_peer_start(&p, &c, 2000, data, size, 0) < 0)
		return 0;
	memset(&o, 0, sizeof(o));
	rc = socks5_connect(&c, JWT, "LOC1", "mail.corp.internal", 25, &o);
	if (rc == SOCKS5_OK) {
		fuzz_assert(size >= 9);
		fuzz_assert(data[0] == 0x05 && data[1] == 0x80);
		fuzz_assert(data[2] == 0x01 && data[3] == 0x00);
		fuzz_assert(data[4] == 0x05 && data[5] == 0x00);
		rlen = socks5_reply_length(data + 4);
		fuzz_assert(rlen > 0 && size >= 4 + rlen);
		pending = conn_pending(&c);
		fuzz_assert(pending <= size - 4 - rlen);
		fuzz_assert(memcmp(c.rbuf + c.rpos, data + 4 + rlen, pending) == 0);
	} else {
		fuzz_assert(rc == SOCKS5_FAIL || rc == SOCKS5_AUTH_REJECTED);
		fuzz_check_outcome(&o, 0);
		fuzz_assert(o.cls == DSN_DEFER);
		if (rc == SOCKS5_AUTH_REJECTED)
			fuzz_assert(strcmp(o.status, "4.7.0") == 0);
		fuzz_assert(strstr(o.text, JWT) == NULL);
	}
	conn_close(&c);
	fuzz_peer_end(&p);
	fuzz_peer_free(&p);
	return 0;
}
