/*
 * fuzz - support for the libFuzzer targets (see fuzz.h): socketpair peer
 * (its socket chores in tests/lib/peer.c), private temporary files,
 * loopback HTTP server, outcome checks.
 *
 * Nothing here is fuzzed; it only has to be correct and cheap, because
 * it runs for every one of millions of inputs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dsn.h"
#include "fuzz.h"
#include "http.h"
#include "log.h"
#include "../lib/peer.h"

/* fuzz_fail - a property does not hold: say which, and crash for libFuzzer */
void fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: property violated: %s\n", file, line, what);
	abort();
}

/* fuzz_quiet - every log line formatted, none shown */
void fuzz_quiet(void)
{
	log_open("btprelay-fuzz", "/dev/null", LOG_LVL_DEBUG);
}

/* fuzz_peer_quiet - a peer that goes away is an input like any: no SIGPIPE */
void fuzz_peer_quiet(void)
{
	signal(SIGPIPE, SIG_IGN);
	fuzz_quiet();
}

/* fuzz_has_ctl - CR, LF, NUL-free C string check: any byte below 0x20 or DEL */
int fuzz_has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* check - fuzz_assert that shows the outcome first */
#define check(cond) \
	((cond) ? (void)0 : (fprintf(stderr, "outcome: class %d, status \"%.16s\", text \"%.1024s\"\n", \
				     (int)o->cls, o->status, o->text), fuzz_fail(__FILE__, __LINE__, #cond)))

/* fuzz_check_outcome - status valid and of the class, text one printable line */
void fuzz_check_outcome(const struct outcome *o, int bounce_ok)
{
	size_t n = dsn_valid(o->status);

	check(n > 0 && o->status[n] == '\0');
	switch (o->cls) {
	case DSN_OK:
		check(o->status[0] == '2');
		break;
	case DSN_DEFER:
		check(o->status[0] == '4');
		check(o->text[0] != '\0');
		break;
	case DSN_BOUNCE:
		check(bounce_ok);
		check(o->status[0] == '5');
		check(o->text[0] != '\0');
		break;
	default:
		check(!"outcome class out of range");
	}
	check(memchr(o->text, '\0', sizeof(o->text)) != NULL);
	check(!fuzz_has_ctl(o->text));
}

/* --- socketpair peer ------------------------------------------------------ */

int fuzz_peer_hold_354;

/* peer_send - data[from..to) to the client; -1 when it went away */
static int peer_send(struct fuzz_peer *p, size_t from, size_t to)
{
	if (peer_send_all(p->fd, p->data + from, to - from) < 0) {
		p->write_error = 1;
		return -1;
	}
	return 0;
}

/* peer_recv - one read of what the client says, kept in p->sent; its length, 0 at the end */
static ssize_t peer_recv(struct fuzz_peer *p, char *buf, size_t size)
{
	ssize_t n;

	do
		n = recv(p->fd, buf, size, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return 0;
	if (p->sent != NULL && p->nsent < p->keep) {
		size_t take = (size_t)n < p->keep - p->nsent ? (size_t)n : p->keep - p->nsent;

		memcpy(p->sent + p->nsent, buf, take);
		p->nsent += take;
		p->sent[p->nsent] = '\0';
	}
	return n;
}

/*
 * peer_hold_at - with fuzz_peer_hold_354, where the input stops until the
 * client's final dot: after its first line that is the last line of a 354
 * reply. A relay
 * says nothing between its 354 and the dot (the client defers when it
 * does), so an input that goes on after the 354 is played as a relay
 * would play it.
 */
static size_t peer_hold_at(const struct fuzz_peer *p)
{
	const uint8_t *lf;
	size_t i;

	if (!fuzz_peer_hold_354)
		return p->len;
	for (i = 0; i + 3 <= p->len; i++) {
		if ((i == 0 || p->data[i - 1] == '\n') && memcmp(p->data + i, "354", 3) == 0
		    && (i + 3 == p->len || (p->data[i + 3] != 0 && strchr(" \r\n", p->data[i + 3]) != NULL))) {
			lf = memchr(p->data + i, '\n', p->len - i);
			return lf != NULL ? (size_t)(lf - p->data) + 1 : p->len;
		}
	}
	return p->len;
}

/* peer_main - send the input, half-close, collect what the client says until it closes */
static void *peer_main(void *arg)
{
	struct fuzz_peer *p = arg;
	size_t hold = peer_hold_at(p);
	char buf[16384];
	ssize_t n;

	if (peer_send(p, 0, hold) == 0 && hold < p->len) {
		/* wait for CR LF . CR LF (or the end), then the rest of the input */
		static const char dot[] = "\r\n.\r\n";
		size_t m = 0, i;

		struct pollfd pfd = { .fd = p->fd, .events = POLLIN };

		/*
		 * A client that says nothing for 100 ms is not sending a body (the
		 * 354 answered something else, and it waits for more replies): the
		 * rest goes out then, as before, instead of both sides waiting for
		 * the client's timeout.
		 */
		n = 1;
		while (m < 5 && poll(&pfd, 1, 100) > 0 && (n = peer_recv(p, buf, sizeof(buf))) > 0)
			for (i = 0; i < (size_t)n && m < 5; i++)
				m = buf[i] == dot[m] ? m + 1 : buf[i] == '\r' ? 1 : 0;
		if (n > 0)
			peer_send(p, hold, p->len);
	}
	shutdown(p->fd, SHUT_WR);
	while (peer_recv(p, buf, sizeof(buf)) > 0)
		;
	close(p->fd);
	p->fd = -1;
	return NULL;
}

/* fuzz_peer_start - socketpair, client end non-blocking into c, peer thread on the other */
int fuzz_peer_start(struct fuzz_peer *p, struct conn *c, int timeout_ms, const uint8_t *data,
		    size_t len, size_t keep)
{
	memset(p, 0, sizeof(*p));
	p->fd = peer_pair(c, timeout_ms, 0);
	if (p->fd < 0)
		return -1;
	snprintf(c->peer, sizeof(c->peer), "fuzz-peer[socketpair]:0");
	p->data = data;
	p->len = len;
	p->keep = keep;
	if (keep > 0) {
		p->sent = malloc(keep + 1);
		if (p->sent == NULL)
			abort();
		p->sent[0] = '\0';
	}
	if (pthread_create(&p->thread, NULL, peer_main, p) != 0) {
		conn_close(c);
		close(p->fd);
		free(p->sent);
		p->sent = NULL;
		return -1;
	}
	return 0;
}

/* fuzz_peer_end - the client has closed its end: the peer thread ends */
void fuzz_peer_end(struct fuzz_peer *p)
{
	pthread_join(p->thread, NULL);
}

void fuzz_peer_free(struct fuzz_peer *p)
{
	free(p->sent);
	p->sent = NULL;
}

/* --- files ------------------------------------------------------------------ */

static char tmp_path[4][64];
static char tmp_suffix[4][16];

static void tmp_cleanup(void)
{
	size_t i;

	for (i = 0; i < 4; i++)
		if (tmp_path[i][0] != '\0')
			unlink(tmp_path[i]);
}

/* fuzz_tmpfile - the process's private file for suffix, holding exactly data */
const char *fuzz_tmpfile(const char *suffix, const uint8_t *data, size_t len)
{
	size_t i, off = 0;
	ssize_t n;
	int fd;

	for (i = 0; i < 4 && tmp_path[i][0] != '\0' && strcmp(tmp_suffix[i], suffix) != 0; i++)
		;
	if (i == 4)
		abort();
	if (tmp_path[i][0] == '\0') {
		snprintf(tmp_path[i], sizeof(tmp_path[i]), "/tmp/btprelay-fuzz-XXXXXX%s", suffix);
		snprintf(tmp_suffix[i], sizeof(tmp_suffix[i]), "%s", suffix);
		fd = mkstemps(tmp_path[i], (int)strlen(suffix));
		if (fd < 0) {
			perror("mkstemps");
			abort();
		}
		close(fd);
		if (i == 0)
			atexit(tmp_cleanup);
	}
	fd = open(tmp_path[i], O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		perror(tmp_path[i]);
		abort();
	}
	while (off < len) {
		n = write(fd, data + off, len - off);
		if (n <= 0) {
			perror(tmp_path[i]);
			abort();
		}
		off += (size_t)n;
	}
	close(fd);
	return tmp_path[i];
}

/* fuzz_body_fd - a pipe that yields text, then EOF */
int fuzz_body_fd(const char *text)
{
	int pfd[2];
	size_t len = strlen(text);

	if (pipe(pfd) < 0)
		abort();
	if (write(pfd[1], text, len) != (ssize_t)len)
		abort();
	close(pfd[1]);
	return pfd[0];
}

/* --- loopback HTTP server ------------------------------------------------- */

static fuzz_http_handler http_handler;
static void *http_arg;
static int http_fd = -1;
static unsigned long http_count;

/* http_serve - read one request (headers and Content-Length body), answer, close */
static void http_serve(int fd)
{
	static const char *const reasons[] = { "OK", "Error" };
	char req[65536], head[256], method[16] = "", path[4096] = "", *body;
	struct fuzz_http_reply r = { 200, "", 0 };
	int len;

	if (peer_http_read(fd, req, sizeof(req)) < 0)
		return;
	sscanf(req, "%15s %4095s", method, path);
	http_handler(method, path, &r, http_arg);
	/*
	 * The client may give up before the body is sent (a body over its cap)
	 * and its caller free the data: send a copy.
	 */
	body = malloc(r.len ? r.len : 1);
	if (body == NULL)
		abort();
	memcpy(body, r.body, r.len);
	__atomic_add_fetch(&http_count, 1, __ATOMIC_SEQ_CST);
	len = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		       "Content-Length: %zu\r\nConnection: close\r\n\r\n", r.status,
		       reasons[r.status != 200], r.len);
	if (peer_send_all(fd, head, (size_t)len) == 0)
		peer_send_all(fd, body, r.len);
	free(body);
}

static void *http_main(void *arg)
{
	int fd;

	(void)arg;
	for (;;) {
		fd = accept4(http_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("accept");
			abort();
		}
		http_serve(fd);
		close(fd);
	}
	return NULL;
}

/* fuzz_http_start - the server thread on an ephemeral loopback port */
unsigned fuzz_http_start(fuzz_http_handler handler, void *arg)
{
	pthread_t t;
	unsigned port;

	http_handler = handler;
	http_arg = arg;
	if ((http_fd = peer_listen(64, &port)) < 0 || pthread_create(&t, NULL, http_main, NULL) != 0)
		return 0;
	pthread_detach(t);
	return port;
}

int fuzz_http_setup(fuzz_http_handler handler, void *arg, const char *path, char *url,
		    size_t size)
{
	unsigned port;

	fuzz_peer_quiet();
	http_global_init();
	if ((port = fuzz_http_start(handler, arg)) == 0) {
		perror("fuzz_http_start");
		return -1;
	}
	snprintf(url, size, "http://127.0.0.1:%u%s", port, path);
	return 0;
}

void fuzz_http_input(const char *method, const char *path, struct fuzz_http_reply *r, void *arg)
{
	const struct fuzz_http_input *in = arg;

	(void)method;
	if (in->token != NULL && strncmp(path, "/oauth/token", 12) == 0) {
		r->status = 200;
		r->body = in->token;
		r->len = strlen(in->token);
	} else {
		r->status = in->status;
		r->body = (const char *)in->data;
		r->len = in->len;
	}
}

void fuzz_config(struct config *cfg)
{
	config_defaults(cfg);
	free(cfg->cache_dir);
	cfg->cache_dir = strdup("");
	free(cfg->service_binding_root);
	cfg->service_binding_root = strdup("");
	cfg->http_timeout = 5;
	cfg->http_retries = 0;
}

void fuzz_dest_bindings(struct bindings *b, char *base)
{
	memset(b, 0, sizeof(*b));
	b->have_destination = 1;
	b->destination.token_url = base;
	b->destination.client_id = "sb-clone-dest!b1";
	b->destination.client_secret = "fuzz-dest-secret";
	b->destination.instance = "dest-lite";
	b->destination_uri = base;
}

unsigned long fuzz_http_requests(void)
{
	return __atomic_load_n(&http_count, __ATOMIC_SEQ_CST);
}
