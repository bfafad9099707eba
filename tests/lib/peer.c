/*
 * peer - the other end of a connection for the tests (see peer.h): a
 * scripted TCP server in a thread, socketpair connections, loopback
 * listeners, whole sends.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "peer.h"

/* peer_ms - a monotonic clock in milliseconds */
static long long peer_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* the end of the script being played (one script per struct peer, one thread each) */
struct peer_run {
	struct peer *p;
	long long until;	/* peer_ms() when the whole script must be over */
};

/* peer_wait - wait_ms, or what is left of the script's time when that is less */
static int peer_wait(const struct peer_run *run, int wait_ms)
{
	long long left = run->until - peer_ms();

	return left <= 0 ? 0 : left < wait_ms ? (int)left : wait_ms;
}

/* peer_read - one read of at most max bytes within wait_ms, kept in p->got; 0 at EOF or timeout */
static size_t peer_read(struct peer_run *run, int fd, size_t max, int wait_ms)
{
	struct peer *p = run->p;
	struct pollfd pfd = { fd, POLLIN, 0 };
	ssize_t r;

	if (p->gotlen >= PEER_GOT_MAX) {
		if (p->why[0] == '\0')
			snprintf(p->why, sizeof(p->why), "the client sent more than %u bytes",
				 PEER_GOT_MAX);
		return 0;
	}
	if (max > PEER_GOT_MAX - p->gotlen)
		max = PEER_GOT_MAX - p->gotlen;
	if (max > 65536)
		max = 65536;
	if (p->gotcap - p->gotlen < max + 1) {
		p->gotcap = p->gotlen + max + 1 > p->gotcap * 2 ? p->gotlen + max + 1 : p->gotcap * 2;
		p->got = realloc(p->got, p->gotcap);
		if (p->got == NULL)
			abort();
	}
	if (poll(&pfd, 1, peer_wait(run, wait_ms)) <= 0)
		return 0;
	do
		r = recv(fd, p->got + p->gotlen, max, 0);
	while (r < 0 && errno == EINTR);
	if (r <= 0)
		return 0;
	p->gotlen += (size_t)r;
	p->got[p->gotlen] = '\0';
	return (size_t)r;
}

/* peer_recv - up to n bytes within wait_ms each; returns bytes read (short on EOF or timeout) */
static size_t peer_recv(struct peer_run *run, int fd, size_t n, int wait_ms)
{
	size_t have = 0, r;

	while (have < n && (r = peer_read(run, fd, n - have, wait_ms)) > 0)
		have += r;
	return have;
}

/* peer_show - at most 150 bytes of s as printable text (\r, \n, \xNN) */
static void peer_show(char *dst, size_t size, const void *s, size_t len)
{
	const unsigned char *c = s;
	size_t i, n = 0;

	dst[0] = '\0';
	for (i = 0; i < len && i < 150 && n + 5 < size; i++) {
		if (c[i] == '\r' || c[i] == '\n')
			n += (size_t)snprintf(dst + n, size - n, "\\%c", c[i] == '\r' ? 'r' : 'n');
		else if (c[i] < 0x20 || c[i] >= 0x7f || c[i] == '"' || c[i] == '\\')
			n += (size_t)snprintf(dst + n, size - n, "\\x%02x", c[i]);
		else
			dst[n++] = (char)c[i];
		dst[n] = '\0';
	}
}

/* peer_mismatch - note the first difference between what came and what was expected */
static void peer_mismatch(struct peer *p, size_t step, const void *want, size_t wlen,
			  size_t start)
{
	char w[200], g[200];

	peer_show(w, sizeof(w), want, wlen);
	peer_show(g, sizeof(g), p->got + start, p->gotlen - start);
	snprintf(p->why, sizeof(p->why), "step %zu: want \"%s\", got \"%s\"", step, w, g);
}

/* peer_request - one HTTP request: the head up to the empty line, then its Content-Length */
static int peer_request(struct peer_run *run, int fd)
{
	struct peer *p = run->p;
	size_t start = p->gotlen, need;

	while ((need = peer_http_length(p->got + start)) == 0)
		if (peer_read(run, fd, 65536, PEER_WAIT_MS) == 0)
			return -1;
	if (p->gotlen - start < need
	    && peer_recv(run, fd, need - (p->gotlen - start), PEER_WAIT_MS) < need - (p->gotlen - start))
		return -1;
	return 0;
}

/* peer_accept - the next client within PEER_WAIT_MS; its fd, or -1 with p->why */
static int peer_accept(struct peer *p)
{
	struct pollfd pfd = { p->lfd, POLLIN, 0 };
	int fd;

	if (poll(&pfd, 1, PEER_WAIT_MS) <= 0 || (fd = accept(p->lfd, NULL, NULL)) < 0) {
		snprintf(p->why, sizeof(p->why), "no client connected");
		return -1;
	}
	return fd;
}

/* peer_step - play one step on *fd; 0 to go on, 1 when the script ends here, -1 on a mismatch */
static int peer_step(struct peer_run *run, int *pfd, size_t i)
{
	int fd = *pfd;
	struct peer *p = run->p;
	const struct peer_step *st = &p->steps[i];
	size_t start = p->gotlen;
	char g[200];

	switch (st->op) {
	case PEER_EXPECT:
		if (peer_recv(run, fd, st->len, PEER_WAIT_MS) != st->len
		    || memcmp(p->got + start, st->data, st->len) != 0) {
			peer_mismatch(p, i, st->data, st->len, start);
			return -1;
		}
		return 0;
	case PEER_ALONE:
		if (peer_read(run, fd, 1, 150) > 0) {
			peer_show(g, sizeof(g), p->got + start, p->gotlen - start);
			snprintf(p->why, sizeof(p->why), "step %zu: client sent \"%s\" before the reply",
				 i, g);
			return -1;
		}
		return 0;
	case PEER_SEND:
		if (peer_send_all(fd, st->data, st->len) < 0) {
			snprintf(p->why, sizeof(p->why), "step %zu: send failed", i);
			return -1;
		}
		return 0;
	case PEER_CLOSE:
		return 1;
	case PEER_PAUSE:
		poll(NULL, 0, (int)st->len);
		return 0;
	case PEER_EOF:
		close((int)st->len);
		return 0;
	case PEER_ACCEPT:
		close(fd);
		*pfd = peer_accept(p);
		if (*pfd < 0) {
			snprintf(p->why, sizeof(p->why), "step %zu: no second connection", i);
			return 1;
		}
		return 0;
	case PEER_REQUEST:
		if (peer_request(run, fd) < 0) {
			peer_show(g, sizeof(g), p->got + start, p->gotlen - start);
			snprintf(p->why, sizeof(p->why), "step %zu: no whole HTTP request, got \"%s\"",
				 i, g);
			return -1;
		}
		return 0;
	}
	return -1;
}

/* peer_main - accept one client and play the script */
static void *peer_main(void *arg)
{
	struct peer_run run = { arg, peer_ms() + PEER_SCRIPT_MS };
	struct peer *p = run.p;
	size_t i;
	int fd, rc = 0;

	if ((fd = peer_accept(p)) < 0)
		return NULL;
	for (i = 0; i < p->nsteps && rc == 0; i++)
		rc = peer_step(&run, &fd, i);
	/* Whatever else the client sends, until it hangs up. */
	if (rc <= 0)
		while (peer_read(&run, fd, 65536, PEER_WAIT_MS) > 0)
			;
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* peer_add - append a step */
void peer_add(struct peer *p, enum peer_op op, const void *data, size_t len)
{
	if (p->nsteps == PEER_STEPS_MAX)
		abort();
	p->steps[p->nsteps].op = op;
	p->steps[p->nsteps].data = data;
	p->steps[p->nsteps].len = len || !data ? len : strlen(data);
	p->nsteps++;
}

/* peer_listen - 127.0.0.1, an ephemeral port */
int peer_listen(int backlog, unsigned *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
	    || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0
	    || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* peer_free_port - bound for a moment, never listened on */
unsigned peer_free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned port = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0
	    && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* peer_start - the listener and the thread */
void peer_start(struct peer *p)
{
	p->lfd = peer_listen(1, &p->port);
	if (p->lfd < 0) {
		perror("peer_start");
		exit(99);
	}
	if (p->got == NULL) {
		p->gotcap = 65536 + 1;
		p->got = calloc(1, p->gotcap);
		if (p->got == NULL)
			abort();
	}
	if (pthread_create(&p->th, NULL, peer_main, p) != 0) {
		perror("peer_start: thread");
		exit(99);
	}
}

/* peer_finish - the script is over */
void peer_finish(struct peer *p)
{
	pthread_join(p->th, NULL);
	close(p->lfd);
	p->lfd = -1;
}

/* peer_free - the transcript */
void peer_free(struct peer *p)
{
	free(p->got);
	memset(p, 0, sizeof(*p));
}

/* peer_count - occurrences of text in the transcript */
int peer_count(const struct peer *p, const char *text)
{
	const char *s = p->got;
	int n = 0;

	for (; s != NULL && (s = strstr(s, text)) != NULL; s++)
		n++;
	return n;
}

/* peer_pair - a socketpair, the client end non-blocking into c */
int peer_pair(struct conn *c, int timeout_ms, double deadline)
{
	int sv[2];

	conn_init(c, timeout_ms, deadline);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if (fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	c->fd = sv[0];
	return sv[1];
}

/* peer_send_all - the whole buffer, or until the other side goes away */
int peer_send_all(int fd, const void *data, size_t len)
{
	const char *s = data;
	ssize_t n;

	while (len > 0) {
		n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* peer_http_length - head and body of the request, once the head is there */
size_t peer_http_length(const char *req)
{
	const char *end = strstr(req, "\r\n\r\n"), *line;
	size_t need;

	if (end == NULL)
		return 0;
	need = (size_t)(end - req) + 4;
	for (line = req; (line = strstr(line, "\r\n")) != NULL && line < end; ) {
		line += 2;
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			need += strtoul(line + 15, NULL, 10);
	}
	return need;
}

/* peer_http_read - read until peer_http_length() says the request is whole */
long peer_http_read(int fd, char *buf, size_t size)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	size_t have = 0, need = 0;
	ssize_t n;

	buf[0] = '\0';
	while (need == 0 || have < need) {
		if (have + 1 >= size || poll(&pfd, 1, PEER_WAIT_MS) <= 0)
			return -1;
		n = recv(fd, buf + have, size - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		need = peer_http_length(buf);
	}
	return (long)have;
}
