/*
 * conn - one TCP connection with deadlines, buffered I/O and optional TLS.
 *
 * Every operation is bounded by the connection's per-operation timeout and
 * by its absolute deadline (the delivery's own), whichever comes first.
 * Between conn_op_begin() and conn_op_end() the operations share one
 * limit: one SMTP reply of many lines. conn_connect() begins such a span
 * that lasts until conn_set_timeout(): the TCP connection and what follows
 * before the caller sets its protocol's timeout (a SOCKS5 handshake of
 * three replies, implicit TLS) share one connect timeout.
 * Reads are buffered; a line is never longer than the caller's buffer
 * (the rest of an over-long line is read and dropped, CONN_TOOLONG).
 * Writes are buffered until conn_flush() or until a read needs the reply.
 * Failures return -1 and set c->err and c->errtext; making an outcome out
 * of them is the caller's job, because only it knows the protocol step.
 */
#ifndef BTPRELAY_CONN_H
#define BTPRELAY_CONN_H

#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>

enum conn_err {
	CONN_OK = 0,
	CONN_RESOLVE,		/* host name lookup failed */
	CONN_REFUSED,		/* connection refused / unreachable */
	CONN_TIMEOUT,		/* timeout or deadline reached */
	CONN_CLOSED,		/* peer closed the connection */
	CONN_IO,		/* other socket error (reset, ...) */
	CONN_TLS,		/* TLS handshake or verification failure */
	CONN_TOOLONG,		/* line longer than the buffer */
};

#define CONN_BUF_SIZE 16384

struct conn {
	int fd;
	SSL *ssl;
	int timeout_ms;			/* per read/write/connect step */
	double deadline;		/* absolute, conn_now() clock; 0 = none */
	double op_end;			/* conn_op_begin(): absolute end of the span; 0 = none */
	enum conn_err err;
	char errtext[256];
	char peer[320];			/* "host[addr]:port" for logs */
	int tls_cert_unmet;		/* the TLS peer asked for a client certificate we do not have */
	size_t rpos, rlen;
	size_t wlen;
	unsigned char rbuf[CONN_BUF_SIZE];
	unsigned char wbuf[CONN_BUF_SIZE];
};

/* conn_now - monotonic seconds */
double conn_now(void);
/* conn_init - an unconnected conn with a timeout and an absolute deadline (0 = none) */
void conn_init(struct conn *c, int timeout_ms, double deadline);
/*
 * conn_connect - resolve host (name or IPv4/IPv6 literal), connect,
 * TCP_NODELAY; everything until conn_set_timeout() within one timeout
 */
int conn_connect(struct conn *c, const char *host, unsigned port);
/* conn_read - exactly n bytes */
int conn_read(struct conn *c, void *buf, size_t n);
/*
 * conn_read_line - one line up to LF; stores it without CR LF, NUL-terminated.
 * Returns its length, or -1 (CONN_TOOLONG when longer than size - 1).
 */
ssize_t conn_read_line(struct conn *c, char *buf, size_t size);
/*
 * conn_peek - the bytes read and not consumed yet, reading when there are
 * none: their count (at least 1) with *p at the first, or -1
 */
ssize_t conn_peek(struct conn *c, const unsigned char **p);
/* conn_consume - drop the first n of the bytes conn_peek() showed */
void conn_consume(struct conn *c, size_t n);
/* conn_write - append to the write buffer, flushing as it fills */
int conn_write(struct conn *c, const void *buf, size_t n);
int conn_puts(struct conn *c, const char *s);
int conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conn_flush(struct conn *c);
/* conn_pending - bytes already read from the peer and not consumed */
size_t conn_pending(const struct conn *c);
/* conn_set_timeout - change the per-operation timeout (e.g. for the final dot); ends a span */
void conn_set_timeout(struct conn *c, int timeout_ms);
/*
 * conn_op_begin - from now until conn_op_end(), every read and write ends
 * by one time: the timeout, counted from now. A peer that answers each
 * step just inside the timeout cannot stretch the whole past it.
 */
void conn_op_begin(struct conn *c);
/* conn_op_end - back to one timeout per operation */
void conn_op_end(struct conn *c);
/*
 * conn_input - whether the peer has sent bytes not read yet, without
 * waiting: 1 when some are buffered or have arrived (a non-blocking read
 * puts them into the buffer, where conn_pending() counts them), else 0.
 * A closed connection or an error is 0 too: the next read reports it.
 */
int conn_input(struct conn *c);
/* conn_close - shut TLS down, close the socket; safe to call twice */
void conn_close(struct conn *c);
/* conn_strerror - short name of an error kind: "timeout", "connection closed", ... */
const char *conn_strerror(enum conn_err err);

#endif
