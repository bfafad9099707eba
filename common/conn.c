/*
 * conn - a TCP connection with deadlines, buffered reads and writes, and
 * optional TLS (tls.c starts it; from then on every byte goes through SSL).
 *
 * The socket is non-blocking; every wait is a poll() bounded by the nearer
 * of two limits: the per-operation timeout, counted from the start of the
 * operation (so a peer that drips one byte a second cannot stretch a reply
 * forever), and the absolute deadline of the whole delivery. A caller
 * that needs one limit for several operations (a reply of many lines, a
 * handshake of many steps) brackets them with conn_op_begin/conn_op_end.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <openssl/err.h>

#include "conn.h"

/* conn_now - monotonic clock in seconds */
double conn_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* conn_init - no socket yet */
void conn_init(struct conn *c, int timeout_ms, double deadline)
{
	memset(c, 0, offsetof(struct conn, rbuf));
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	c->deadline = deadline;
}

void conn_set_timeout(struct conn *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
	c->op_end = 0;		/* the connect phase, or any span, is over */
}

/* conn_fail - record an error; returns -1 for the caller to pass on */
static int __attribute__((format(printf, 3, 4)))
conn_fail(struct conn *c, enum conn_err err, const char *fmt, ...)
{
	va_list ap;

	c->err = err;
	va_start(ap, fmt);
	vsnprintf(c->errtext, sizeof(c->errtext), fmt, ap);
	va_end(ap);
	return -1;
}

const char *conn_strerror(enum conn_err err)
{
	static const char *const names[] = {
		[CONN_OK] = "no error",
		[CONN_RESOLVE] = "host not found",
		[CONN_REFUSED] = "connection refused",
		[CONN_TIMEOUT] = "timeout",
		[CONN_CLOSED] = "connection closed",
		[CONN_IO] = "I/O error",
		[CONN_TLS] = "TLS failure",
		[CONN_TOOLONG] = "line too long",
	};

	return names[err];
}

/* op_deadline - when the operation starting now must end */
static double op_deadline(const struct conn *c)
{
	double end = conn_now() + c->timeout_ms / 1000.0;

	if (c->op_end > 0 && c->op_end < end)
		end = c->op_end;
	return c->deadline > 0 && c->deadline < end ? c->deadline : end;
}

/* conn_op_begin - one limit for every operation until conn_op_end() */
void conn_op_begin(struct conn *c)
{
	c->op_end = 0;
	c->op_end = op_deadline(c);
}

void conn_op_end(struct conn *c)
{
	c->op_end = 0;
}

/* conn_wait - poll for events until the operation's end; 0 when ready */
static int conn_wait(struct conn *c, short events, double end)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };

	for (;;) {
		double left = end - conn_now();
		int r;

		if (left <= 0)
			return conn_fail(c, CONN_TIMEOUT, "%s",
					 c->deadline > 0 && end >= c->deadline
					 ? "delivery deadline reached" : "timeout");
		r = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return conn_fail(c, CONN_IO, "poll: %s", strerror(errno));
	}
}

/* connect_one - non-blocking connect to one address */
static int connect_one(struct conn *c, const struct addrinfo *ai, double end)
{
	int fd, one = 1, soerr = 0;
	socklen_t len = sizeof(soerr);

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return conn_fail(c, CONN_IO, "socket: %s", strerror(errno));
	c->fd = fd;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			soerr = errno;
		else if (conn_wait(c, POLLOUT, end) < 0)
			goto fail;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			soerr = errno;
	}
	if (soerr) {
		conn_fail(c, soerr == ECONNREFUSED || soerr == EHOSTUNREACH || soerr == ENETUNREACH
			  ? CONN_REFUSED : CONN_IO, "%s", strerror(soerr));
		goto fail;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
fail:
	close(fd);
	c->fd = -1;
	return -1;
}

/* conn_connect - resolve, connect to the first address that answers; the connect phase begins */
int conn_connect(struct conn *c, const char *host, unsigned port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res, *ai;
	char service[8], addr[INET6_ADDRSTRLEN] = "?";
	double end;
	int r;

	/*
	 * The connect phase: this connect and whatever follows on the conn
	 * before conn_set_timeout() (a SOCKS5 handshake of several replies,
	 * implicit TLS) end within one timeout, however the peer paces them.
	 */
	conn_op_begin(c);
	end = c->op_end;

	snprintf(service, sizeof(service), "%u", port);
	snprintf(c->peer, sizeof(c->peer), "%s[?]:%u", host, port);
	r = getaddrinfo(host, service, &hints, &res);
	if (r != 0)
		return conn_fail(c, CONN_RESOLVE, "%s: %s", host, gai_strerror(r));
	r = -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, addr, sizeof(addr));
		else if (ai->ai_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, addr, sizeof(addr));
		snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", host, addr, port);
		if ((r = connect_one(c, ai, end)) == 0 || c->err == CONN_TIMEOUT)
			break;
	}
	freeaddrinfo(res);
	if (r == 0) {
		c->err = CONN_OK;
		c->errtext[0] = 0;
	}
	return r;
}

/* tls_error_text - the OpenSSL error queue as one short text */
static void tls_error_text(struct conn *c, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[200] = "unknown error";

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	conn_fail(c, CONN_TLS, "%s: %s", what, buf);
}

/* conn_fill - read what is available into rbuf (at least one byte) */
static int conn_fill(struct conn *c, double end)
{
	ssize_t n;
	int flushed = c->wlen > 0;

	if (flushed && conn_flush(c) < 0)
		return -1;
	/*
	 * What was just written needs the peer's round trip before an answer
	 * can be there: a plain socket is waited for first, not read in vain
	 * (a recv() that says EAGAIN for every reply of a session).
	 */
	if (flushed && c->ssl == NULL && conn_wait(c, POLLIN, end) < 0)
		return -1;
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	for (;;) {
		short ev = POLLIN;

		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof(c->rbuf) - c->rlen));

			if (r > 0) {
				c->rlen += (size_t)r;
				return 0;
			}
			switch (SSL_get_error(c->ssl, r)) {
			case SSL_ERROR_WANT_READ:
				break;
			case SSL_ERROR_WANT_WRITE:
				ev = POLLOUT;
				break;
			case SSL_ERROR_ZERO_RETURN:
				return conn_fail(c, CONN_CLOSED, "connection closed");
			case SSL_ERROR_SYSCALL:
				ERR_clear_error();
				return conn_fail(c, r == 0 || errno == 0 ? CONN_CLOSED : CONN_IO, "%s",
						 r == 0 || errno == 0 ? "connection closed" : strerror(errno));
			default:
				tls_error_text(c, "TLS read");
				return -1;
			}
		} else {
			n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
			if (n > 0) {
				c->rlen += (size_t)n;
				return 0;
			}
			if (n == 0)
				return conn_fail(c, CONN_CLOSED, "connection closed");
			if (errno == ECONNRESET)
				return conn_fail(c, CONN_CLOSED, "connection reset by peer");
			if (errno != EAGAIN && errno != EINTR)
				return conn_fail(c, CONN_IO, "read: %s", strerror(errno));
		}
		if (conn_wait(c, ev, end) < 0)
			return -1;
	}
}

/* conn_read - exactly n bytes */
int conn_read(struct conn *c, void *buf, size_t n)
{
	unsigned char *out = buf;
	double end = op_deadline(c);

	while (n > 0) {
		size_t avail = c->rlen - c->rpos, take;

		if (avail == 0) {
			if (conn_fill(c, end) < 0)
				return -1;
			continue;
		}
		take = avail < n ? avail : n;
		memcpy(out, c->rbuf + c->rpos, take);
		c->rpos += take;
		out += take;
		n -= take;
	}
	return 0;
}

/* conn_peek - the buffered bytes, reading when there are none */
ssize_t conn_peek(struct conn *c, const unsigned char **p)
{
	if (c->rpos == c->rlen && conn_fill(c, op_deadline(c)) < 0)
		return -1;
	*p = c->rbuf + c->rpos;
	return (ssize_t)(c->rlen - c->rpos);
}

/* conn_consume - drop n of the bytes conn_peek() returned */
void conn_consume(struct conn *c, size_t n)
{
	c->rpos += n < c->rlen - c->rpos ? n : c->rlen - c->rpos;
}

/* conn_read_line - one line, without its CR LF */
ssize_t conn_read_line(struct conn *c, char *buf, size_t size)
{
	double end = op_deadline(c);
	size_t len = 0;
	int toolong = 0;

	for (;;) {
		unsigned char *start = c->rbuf + c->rpos;
		size_t avail = c->rlen - c->rpos;
		unsigned char *lf = memchr(start, '\n', avail);
		size_t take = lf ? (size_t)(lf - start) : avail;

		if (!toolong) {
			if (len + take >= size) {
				toolong = 1;
			} else {
				memcpy(buf + len, start, take);
				len += take;
			}
		}
		c->rpos += take;
		if (lf) {
			c->rpos++;
			if (toolong)
				return conn_fail(c, CONN_TOOLONG, "line longer than %zu bytes", size - 1);
			if (len > 0 && buf[len - 1] == '\r')
				len--;
			buf[len] = 0;
			return (ssize_t)len;
		}
		if (conn_fill(c, end) < 0)
			return -1;
	}
}

/* send_some - one write attempt of plain or TLS bytes; bytes written, 0 = wait, -1 = error */
static ssize_t send_some(struct conn *c, const unsigned char *p, size_t n, short *ev)
{
	*ev = POLLOUT;
	if (c->ssl != NULL) {
		int r = SSL_write(c->ssl, p, (int)n);

		if (r > 0)
			return r;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
			return 0;
		case SSL_ERROR_WANT_READ:
			*ev = POLLIN;
			return 0;
		case SSL_ERROR_SYSCALL:
			ERR_clear_error();
			return conn_fail(c, CONN_CLOSED, "connection closed while writing");
		default:
			tls_error_text(c, "TLS write");
			return -1;
		}
	} else {
		ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);

		if (r >= 0)
			return r;
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		if (errno == EPIPE || errno == ECONNRESET)
			return conn_fail(c, CONN_CLOSED, "connection closed while writing");
		return conn_fail(c, CONN_IO, "write: %s", strerror(errno));
	}
}

/*
 * conn_flush - write the whole buffer, then wipe what was in it: it may
 * have held a token (the proxy's auth request) or AUTH credentials, which
 * must not stay behind in memory once sent
 */
int conn_flush(struct conn *c)
{
	double end = op_deadline(c);
	size_t done = 0;

	if (c->fd < 0)
		return conn_fail(c, CONN_CLOSED, "not connected");
	while (done < c->wlen) {
		short ev;
		ssize_t n = send_some(c, c->wbuf + done, c->wlen - done, &ev);

		if (n < 0)
			return -1;
		if (n > 0)
			done += (size_t)n;
		else if (conn_wait(c, ev, end) < 0)
			return -1;
	}
	explicit_bzero(c->wbuf, c->wlen);
	c->wlen = 0;
	return 0;
}

/* conn_write - buffered write */
int conn_write(struct conn *c, const void *buf, size_t n)
{
	const unsigned char *p = buf;

	while (n > 0) {
		size_t room = sizeof(c->wbuf) - c->wlen, take = n < room ? n : room;

		memcpy(c->wbuf + c->wlen, p, take);
		c->wlen += take;
		p += take;
		n -= take;
		if (c->wlen == sizeof(c->wbuf) && conn_flush(c) < 0)
			return -1;
	}
	return 0;
}

int conn_puts(struct conn *c, const char *s)
{
	return conn_write(c, s, strlen(s));
}

int conn_printf(struct conn *c, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return conn_fail(c, CONN_TOOLONG, "command longer than %zu bytes", sizeof(buf) - 1);
	return conn_write(c, buf, (size_t)n);
}

size_t conn_pending(const struct conn *c)
{
	return c->rlen - c->rpos;
}

/*
 * conn_input - bytes from the peer, without waiting. Plain: one poll(),
 * then a read only when it says so. TLS: a record that carries no data (a
 * session ticket, a key update) is no input; SSL_read() without data
 * returns WANT_READ, and nothing is lost by asking.
 */
int conn_input(struct conn *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	ssize_t n;

	if (c->rlen > c->rpos)
		return 1;
	if (c->fd < 0)
		return 0;
	c->rpos = c->rlen = 0;
	if (c->ssl != NULL) {
		int r;

		if (SSL_pending(c->ssl) == 0 && poll(&pfd, 1, 0) <= 0)
			return 0;
		r = SSL_read(c->ssl, c->rbuf, (int)sizeof(c->rbuf));
		if (r > 0) {
			c->rlen = (size_t)r;
			return 1;
		}
		if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
			ERR_clear_error();
		return 0;
	}
	if (poll(&pfd, 1, 0) <= 0)
		return 0;
	n = recv(c->fd, c->rbuf, sizeof(c->rbuf), MSG_DONTWAIT);
	if (n > 0) {
		c->rlen = (size_t)n;
		return 1;
	}
	return 0;
}

/* conn_close - TLS close_notify without waiting, then close */
void conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	explicit_bzero(c->wbuf, c->wlen);	/* unsent: it may hold a secret too */
	c->rpos = c->rlen = c->wlen = 0;
	c->op_end = 0;
}
