/* test-conn - line reads, over-long lines, timeouts and deadlines, on a socketpair */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "tap.h"
#include "conn.h"
#include "../lib/peer.h"

static struct conn c;

int main(void)
{
	char line[16], big[64];
	unsigned char raw[4];
	int peer;
	double t0;

	peer = peer_pair(&c, 1000, 0);
	if (write(peer, "220 hi\r\nbare\nthis line is much too long\r\nafter\r\nabcd", 52) != 52)
		return 1;
	is_int(conn_read_line(&c, line, sizeof(line)), 6, "CRLF line length");
	is_str(line, "220 hi", "CRLF stripped");
	is_int(conn_read_line(&c, line, sizeof(line)), 4, "bare LF line");
	is_int(conn_read_line(&c, line, sizeof(line)), -1, "over-long line fails");
	is_int(c.err, CONN_TOOLONG, "... with CONN_TOOLONG");
	is_int(conn_read_line(&c, line, sizeof(line)), 5, "the next line is intact");
	is_str(line, "after", "after an over-long line");
	ok(conn_read(&c, raw, 4) == 0 && memcmp(raw, "abcd", 4) == 0, "conn_read exact bytes");

	t0 = conn_now();
	conn_set_timeout(&c, 200);
	is_int(conn_read_line(&c, line, sizeof(line)), -1, "silent peer: read fails");
	is_int(c.err, CONN_TIMEOUT, "... with a timeout");
	ok(conn_now() - t0 < 5, "... and does not hang");

	ok(conn_puts(&c, "QUIT\r\n") == 0 && conn_flush(&c) == 0, "write and flush");
	is_int(read(peer, big, sizeof(big)), 6, "peer got the bytes");
	ok(memchr(c.wbuf, 'Q', 6) == NULL, "sent bytes do not stay in the write buffer (a token may be among them)");
	close(peer);
	is_int(conn_read_line(&c, line, sizeof(line)), -1, "closed peer");
	is_int(c.err, CONN_CLOSED, "... with CONN_CLOSED");
	conn_close(&c);

	peer = peer_pair(&c, 10000, conn_now() + 0.2);
	is_int(conn_read(&c, raw, 1), -1, "the absolute deadline wins over a long timeout");
	has_str(c.errtext, "deadline", "... and says so");
	ok(conn_puts(&c, "AUTH PLAIN secret") == 0 && c.wlen > 0, "unsent bytes wait in the buffer");
	conn_close(&c);
	ok(memchr(c.wbuf, 'A', 17) == NULL, "conn_close wipes what was never sent");
	close(peer);

	conn_init(&c, 2000, 0);
	is_int(conn_connect(&c, "127.0.0.1", 1), -1, "connect to a closed port fails");
	is_int(c.err, CONN_REFUSED, "... refused");
	has_str(c.peer, "127.0.0.1[127.0.0.1]:1", "peer text host[addr]:port");
	is_int(conn_connect(&c, "no-such-host.invalid", 25), -1, "unknown host fails");
	is_int(c.err, CONN_RESOLVE, "... with CONN_RESOLVE");
	return tap_done();
}
