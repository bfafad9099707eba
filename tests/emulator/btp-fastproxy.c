/*
 * btp-fastproxy - the BTP emulator's Connectivity proxy (SOCKS5 with authentication
 * method 0x80), as a small C program for the benchmarks (tests/bench/README.md).
 *
 * It does what the Python proxy of tests/emulator/btp-emulator.py does for one
 * connection — method choice (0x80 with a JWT, or the trusted modes), the 0x80
 * authentication request (JWT signed by the emulator's token service, HS256, not
 * expired, of a connectivity client; base64 location ID of the token's tenant), the
 * CONNECT request, the virtual host mapping, the REP codes and the fault switches
 * "proxy" and "proxy_rep" — and then relays bytes both ways with splice(2), so that
 * a benchmark measures the client and not its emulator. Python stays the reference:
 * the emulator starts this program only when asked (btp-emulator.py --proxy-program).
 *
 *   btp-fastproxy --listen-fd FD --events-fd FD --state FILE [--rusage FILE]
 *
 * FILE (written by the emulator, mode 0600, replaced atomically whenever a fault
 * switch changes; re-read when it changed, checked once per connection):
 *   {"key": HEX, "clients": [ID...], "tenants": {ZID: [LOCATION...]},
 *    "default_locations": [LOCATION...], "hosts": [{"host", "port", "backend"}...],
 *    "jwt_max", "handshake_timeout", "backend_connect_timeout", "slow_seconds",
 *    "fault": null|KIND, "proxy_rep": null|N, "proxy_auth": null|MODE}
 * Events (one JSON line each, one write(2) each, on the events descriptor): before
 * connecting a backend {"origin": PORT, "location", "zid"} (the relay learns where a
 * connection came from; the backend socket is bound to 127.0.0.2 so the relay knows to
 * wait for it), {"drop": PORT} when that connect failed, and at the end of every
 * handshake its record {"auth", "methods", "method", "jwt_length", "location_id",
 * "target", "rep", "result"} from which the emulator keeps its counters and GET /proxy.
 *
 * With --rusage, SIGUSR1 makes it write "USER_US SYS_US\n" (getrusage of the whole
 * process, exited threads included) to that file, replaced atomically: the benchmarks'
 * figure of what the proxy cost, finer than /proc's clock ticks.
 *
 * Exits 2 on a usage error, 1 when the state file cannot be read at start; otherwise
 * runs until killed. One thread per connection for its handshake; every read and write of a handshake
 * has the handshake deadline; a relayed connection lasts as long as its two ends (the
 * relay's idle timeout ends it), as with the Python proxy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HANG_IDLE_MS (600 * 1000)
#define SPLICE_CHUNK (1 << 16)
#define BACKEND_SOURCE "127.0.0.2"	/* the relay waits for the origin of these */

/* the emulator's settings, as read from the state file; shared by reference */
struct state {
	int refs;
	unsigned char key[64];
	size_t key_len;
	json_t *doc;		/* clients, tenants, default_locations, hosts */
	size_t jwt_max;
	int handshake_ms, backend_ms, slow_ms;
	char fault[32];		/* "" when healthy */
	int proxy_rep;		/* -1 when unset */
	char auth_mode[32];	/* "token", "trusted_0x80", "trusted_0x00", "refuse_auth" */
};

static const char *state_path, *rusage_path;
static int events_fd = -1;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct state *current;
static struct stat current_stat;

/* state_release - drop one reference */
static void state_release(struct state *st)
{
	bool last;

	pthread_mutex_lock(&state_lock);
	last = --st->refs == 0;
	pthread_mutex_unlock(&state_lock);
	if (last) {
		json_decref(st->doc);
		OPENSSL_cleanse(st->key, sizeof st->key);
		free(st);
	}
}

/* hex_decode - "00ff..." into out; the byte count, or 0 when malformed or too long */
static size_t hex_decode(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex), i;

	if (n % 2 || n / 2 > max)
		return 0;
	for (i = 0; i < n / 2; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return 0;
		out[i] = (unsigned char)b;
	}
	return n / 2;
}

/* state_load - parse the state file; NULL (with a message) when unusable */
static struct state *state_load(void)
{
	json_error_t err;
	json_t *doc = json_load_file(state_path, 0, &err), *v;
	struct state *st;

	if (!json_is_object(doc)) {
		fprintf(stderr, "btp-fastproxy: %s: %s\n", state_path, doc ? "not an object" : err.text);
		json_decref(doc);
		return NULL;
	}
	st = calloc(1, sizeof *st);
	if (!st)
		abort();
	st->refs = 1;
	st->doc = doc;
	v = json_object_get(doc, "key");
	st->key_len = json_is_string(v) ? hex_decode(json_string_value(v), st->key, sizeof st->key) : 0;
	st->jwt_max = (size_t)json_integer_value(json_object_get(doc, "jwt_max"));
	st->handshake_ms = (int)(1000 * json_number_value(json_object_get(doc, "handshake_timeout")));
	st->backend_ms = (int)(1000 * json_number_value(json_object_get(doc, "backend_connect_timeout")));
	st->slow_ms = (int)(1000 * json_number_value(json_object_get(doc, "slow_seconds")));
	v = json_object_get(doc, "fault");
	snprintf(st->fault, sizeof st->fault, "%s", json_is_string(v) ? json_string_value(v) : "");
	v = json_object_get(doc, "proxy_rep");
	st->proxy_rep = json_is_integer(v) ? (int)json_integer_value(v) : -1;
	v = json_object_get(doc, "proxy_auth");
	snprintf(st->auth_mode, sizeof st->auth_mode, "%s", json_is_string(v) ? json_string_value(v) : "token");
	if (st->key_len == 0 || st->jwt_max == 0 || st->handshake_ms <= 0 || st->backend_ms <= 0) {
		fprintf(stderr, "btp-fastproxy: %s: key, jwt_max or a timeout missing\n", state_path);
		json_decref(doc);
		free(st);
		return NULL;
	}
	return st;
}

/* state_get - the current state, re-read when the file changed; a reference */
static struct state *state_get(void)
{
	struct stat sb;
	struct state *st;

	pthread_mutex_lock(&state_lock);
	if (stat(state_path, &sb) == 0 &&
	    (sb.st_ino != current_stat.st_ino || sb.st_mtim.tv_sec != current_stat.st_mtim.tv_sec ||
	     sb.st_mtim.tv_nsec != current_stat.st_mtim.tv_nsec || sb.st_size != current_stat.st_size)) {
		pthread_mutex_unlock(&state_lock);
		st = state_load();	/* outside the lock: file I/O */
		pthread_mutex_lock(&state_lock);
		if (st) {
			if (--current->refs == 0) {
				json_decref(current->doc);
				free(current);
			}
			current = st;
			current_stat = sb;
		}
	}
	st = current;
	st->refs++;
	pthread_mutex_unlock(&state_lock);
	return st;
}

/* one connection and its handshake record */
struct tunnel {
	int fd;
	struct state *st;
	long long deadline;	/* ms, CLOCK_MONOTONIC */
	json_t *record;
	int send_delay_ms;	/* fault "slow" */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_fd - poll one descriptor until EVENTS or the deadline; false on timeout/error */
static bool wait_fd(int fd, short events, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	long long left = deadline - now_ms();

	if (left <= 0)
		return false;
	return poll(&p, 1, left > 60000 ? 60000 : (int)left) > 0 || (errno == EINTR);
}

/* read_exact - N bytes of the handshake (never more: nothing of the tunnel is taken) */
static bool read_exact(struct tunnel *t, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(t->fd, (char *)buf + got, n - got);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			return false;
		else if (errno == EAGAIN || errno == EINTR) {
			if (!wait_fd(t->fd, POLLIN, t->deadline))
				return false;
		} else
			return false;
	}
	return true;
}

/* send_all - a handshake reply, late by the "slow" fault's delay */
static bool send_all(struct tunnel *t, const void *buf, size_t n)
{
	size_t done = 0;

	if (t->send_delay_ms) {
		struct timespec d = { t->send_delay_ms / 1000, (long)(t->send_delay_ms % 1000) * 1000000 };
		nanosleep(&d, NULL);
	}
	while (done < n) {
		ssize_t w = send(t->fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
		if (w > 0)
			done += (size_t)w;
		else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (!wait_fd(t->fd, POLLOUT, t->deadline))
				return false;
		} else
			return false;
	}
	return true;
}

/* event - one JSON line to the emulator (a single write: atomic below PIPE_BUF) */
static void event(json_t *ev)
{
	char *text = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
	size_t n;

	json_decref(ev);
	if (!text)
		return;
	n = strlen(text);
	if (n < 4000) {
		text[n] = '\n';	/* json_dumps leaves room for its NUL */
		while (write(events_fd, text, n + 1) < 0 && errno == EINTR)
			;
	}
	free(text);
}

static void reset_connection(int fd)
{
	struct linger l = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

/* socks_reply - VER REP RSV ATYP(1) 127.0.0.1 PORT */
static bool socks_reply(struct tunnel *t, int rep, unsigned port, size_t len)
{
	unsigned char r[10] = { 5, (unsigned char)rep, 0, 1, 127, 0, 0, 1,
				(unsigned char)(port >> 8), (unsigned char)port };

	json_object_set_new(t->record, "rep", json_integer(rep));
	return send_all(t, r, len);
}

/* choose_method - the method for this greeting, 0xff for none (as the Python proxy) */
static int choose_method(const char *mode, int version, const unsigned char *m, size_t n)
{
	static const struct { const char *mode; int prefer[2]; } table[] = {
		{ "token", { 0x80, -1 } }, { "trusted_0x80", { 0x80, 0x00 } },
		{ "trusted_0x00", { 0x00, -1 } }, { "refuse_auth", { -1, -1 } },
	};
	size_t i, j, k;

	if (version != 5)
		return 0xff;
	for (i = 0; i < sizeof table / sizeof table[0]; i++) {
		if (strcmp(table[i].mode, mode) != 0)
			continue;
		for (j = 0; j < 2 && table[i].prefer[j] >= 0; j++)
			for (k = 0; k < n; k++)
				if (m[k] == table[i].prefer[j])
					return table[i].prefer[j];
	}
	return 0xff;
}

/* b64_decode - base64 (standard or URL alphabet); -1 when malformed. STRICT: the
 * standard alphabet with correct padding (Python's b64decode(validate=True)). */
static long b64_decode(const char *in, size_t n, unsigned char *out, bool url, bool strict)
{
	const char *alpha = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
				: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned long acc = 0;
	size_t i, bits = 0, pad = 0;
	long len = 0;

	if (strict && n % 4)
		return -1;
	for (i = 0; i < n; i++) {
		const char *p;
		if (in[i] == '=') {
			pad++;
			continue;
		}
		p = in[i] ? strchr(alpha, in[i]) : NULL;
		if (!p || pad)
			return -1;
		acc = (acc << 6) | (unsigned long)(p - alpha);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[len++] = (unsigned char)(acc >> bits);
		}
	}
	if (pad > 2 || (strict && bits >= 6))
		return -1;
	return len;
}

/* utf8_valid - well-formed UTF-8 (what Python's decode("utf-8") accepts) */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t k, more = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
		unsigned long cp = more == 0 ? c : more == 1 ? (c & 0x1fu) : more == 2 ? (c & 0x0fu) : (c & 0x07u);
		if (more == 9 || i + more >= n + (more ? 0 : 1))
			return false;
		for (k = 1; k <= more; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if ((more == 1 && cp < 0x80) || (more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += more + 1;
	}
	return true;
}

/* b64url_json - the JSON object in one base64url part of a JWT, or NULL */
static json_t *b64url_json(const char *part, size_t n)
{
	unsigned char *buf = malloc(n + 1);
	long len = buf ? b64_decode(part, n, buf, true, false) : -1;
	json_t *j = len >= 0 ? json_loadb((const char *)buf, (size_t)len, 0, NULL) : NULL;

	free(buf);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* jwt_verify - the claims of a valid token of the emulator's connectivity clients, or
 * NULL with *why set (as TokenIssuer.verify and ConnectivityProxy.read_auth) */
static json_t *jwt_verify(const struct state *st, const char *jwt, size_t n, const char **why)
{
	const char *d1 = memchr(jwt, '.', n), *d2, *alg;
	unsigned char sig[64], mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	json_t *header, *claims, *exp, *client;
	long sig_len;
	size_t i;

	d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - jwt)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - jwt))) {
		*why = "not a JWT";
		return NULL;
	}
	header = b64url_json(jwt, (size_t)(d1 - jwt));
	claims = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1));
	sig_len = (size_t)(jwt + n - d2 - 1) <= 4 * sizeof sig / 3 ?
		b64_decode(d2 + 1, (size_t)(jwt + n - d2 - 1), sig, true, false) : -1;
	if (!header || !claims || sig_len < 0) {
		*why = "undecodable";
		goto bad;
	}
	alg = json_string_value(json_object_get(header, "alg"));
	if (!alg || strcmp(alg, "HS256") != 0) {
		*why = "wrong algorithm";
		goto bad;
	}
	HMAC(EVP_sha256(), st->key, (int)st->key_len, (const unsigned char *)jwt, (size_t)(d2 - jwt),
	     mac, &mac_len);
	if ((size_t)sig_len != mac_len || CRYPTO_memcmp(sig, mac, mac_len) != 0) {
		*why = "bad signature";
		goto bad;
	}
	exp = json_object_get(claims, "exp");
	if (!json_is_integer(exp)) {
		*why = "no expiry";
		goto bad;
	}
	if ((json_int_t)time(NULL) >= json_integer_value(exp)) {
		*why = "expired";
		goto bad;
	}
	client = json_object_get(claims, "client_id");
	for (i = 0; i < json_array_size(json_object_get(st->doc, "clients")); i++)
		if (json_equal(client, json_array_get(json_object_get(st->doc, "clients"), i))) {
			json_decref(header);
			return claims;
		}
	*why = "token not of the connectivity client";
bad:
	json_decref(header);
	json_decref(claims);
	return NULL;
}

/* authenticate - the 0x80 auth request: 01 00 and true with *location, *zid set (zid
 * NULL when trusted), or 01 01 and false; false without a reply when the peer left */
static bool authenticate(struct tunnel *t, bool trusted, char **location, char **zid, bool *replied)
{
	unsigned char ver, len4[4], loc_len, loc[256], *jwt = NULL;
	char encoded[256];
	const char *why = NULL;
	json_t *claims = NULL;
	uint32_t length;
	long n;

	*replied = false;
	if (!read_exact(t, &ver, 1))
		return false;
	if (ver != 1) {
		why = "auth sub-version is not 1";
		goto refuse;
	}
	if (!read_exact(t, len4, 4))
		return false;
	length = (uint32_t)len4[0] << 24 | (uint32_t)len4[1] << 16 | (uint32_t)len4[2] << 8 | len4[3];
	json_object_set_new(t->record, "jwt_length", json_integer(length));
	if ((length == 0 && !trusted) || length > t->st->jwt_max) {
		why = "absurd JWT length";
		goto refuse;
	}
	jwt = malloc(length + 1);
	if (!jwt || !read_exact(t, jwt, length) || !read_exact(t, &loc_len, 1) ||
	    !read_exact(t, encoded, loc_len)) {
		free(jwt);
		return false;
	}
	n = b64_decode(encoded, loc_len, loc, false, true);
	if (n < 0 || !utf8_valid(loc, (size_t)n) || memchr(loc, 0, (size_t)n)) {
		why = "location ID is not base64 of UTF-8";
		goto refuse;
	}
	loc[n] = 0;
	json_object_set_new(t->record, "location_id", json_string((char *)loc));
	if (!trusted) {
		claims = jwt_verify(t->st, (char *)jwt, length, &why);
		if (!claims)
			goto refuse;
	}
	if (strcmp(t->st->fault, "auth_fail") == 0) {
		why = "fault auth_fail";
		goto refuse;
	}
	free(jwt);
	*location = strdup((char *)loc);
	*zid = claims && json_is_string(json_object_get(claims, "zid")) ?
		strdup(json_string_value(json_object_get(claims, "zid"))) : NULL;
	json_decref(claims);
	json_object_set_new(t->record, "result", json_string("auth_ok"));
	*replied = true;
	return send_all(t, "\x01\x00", 2);
refuse:
	free(jwt);
	json_decref(claims);
	json_object_set_new(t->record, "result", json_string("auth_failed"));
	json_object_set_new(t->record, "why", json_string(why));
	*replied = true;
	send_all(t, "\x01\x01", 2);
	return false;
}

/* location_allowed - LOCATION is one of the Cloud Connectors of ZID's tenant */
static bool location_allowed(const struct state *st, const char *location, const char *zid)
{
	json_t *list = zid ? json_object_get(json_object_get(st->doc, "tenants"), zid) : NULL;
	size_t i;

	if (!list)
		list = json_object_get(st->doc, "default_locations");
	for (i = 0; i < json_array_size(list); i++)
		if (strcmp(json_string_value(json_array_get(list, i)) ? json_string_value(json_array_get(list, i)) : "", location) == 0)
			return true;
	return false;
}

/* backend_port - the emulator port behind virtual host HOST:PORT, 0 when unmapped */
static int backend_port(const struct state *st, const char *host, unsigned port)
{
	json_t *hosts = json_object_get(st->doc, "hosts"), *h;
	size_t i;

	json_array_foreach(hosts, i, h) {
		const char *name = json_string_value(json_object_get(h, "host"));
		if (name && strcasecmp(name, host) == 0 &&
		    json_integer_value(json_object_get(h, "port")) == (json_int_t)port)
			return (int)json_integer_value(json_object_get(h, "backend"));
	}
	return 0;
}

/* backend_open - a connected socket from BACKEND_SOURCE, or -1 (REP 04) */
static int backend_open(struct tunnel *t, int port, const char *location, const char *zid)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	socklen_t sl = sizeof src;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1, err = 0;
	socklen_t el = sizeof err;

	if (fd < 0)
		return -1;
	inet_pton(AF_INET, BACKEND_SOURCE, &src.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
	dst.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
	    getsockname(fd, (struct sockaddr *)&src, &sl) != 0) {
		close(fd);
		return -1;
	}
	json_t *origin = json_pack("{s:i, s:s, s:s?}", "origin", ntohs(src.sin_port), "location",
				   location, "zid", zid);
	event(origin);
	if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
		long long deadline = now_ms() + t->st->backend_ms;
		if (errno != EINPROGRESS || !wait_fd(fd, POLLOUT, deadline) ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
			event(json_pack("{s:i}", "drop", ntohs(src.sin_port)));
			close(fd);
			return -1;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return fd;
}

/*
 * The relay: one thread and one epoll set for every open tunnel. Each direction
 * ("half") has a pipe; bytes go socket -> pipe -> socket with splice(2), never
 * through this process's memory. A socket is watched for input while its half has
 * nothing queued, for output while the other half has bytes it could not yet write.
 * A half-close is passed on with shutdown(SHUT_WR); the tunnel ends when both halves
 * ended and nothing is queued, or at the first error.
 */
struct tunnel_link;
struct tunnel_end {
	struct tunnel_link *link;
	int i;			/* the half that reads this end's socket */
};
struct tunnel_link {
	int fd[2];		/* client, backend */
	int pipe[2][2];		/* half i: fd[i] -> pipe[i] -> fd[1 - i] */
	size_t queued[2];
	bool eof[2];
	uint32_t watching[2];	/* what epoll watches on fd[i] */
	struct tunnel_end end[2];
};

static int relay_ep = -1;

/* link_free - both sockets and pipes closed (which takes them out of the epoll set) */
static void link_free(struct tunnel_link *l)
{
	int i;

	for (i = 0; i < 2; i++) {
		close(l->fd[i]);
		if (l->pipe[i][0] >= 0) {
			close(l->pipe[i][0]);
			close(l->pipe[i][1]);
		}
	}
	free(l);
}

/* link_watch - what fd[i] must be watched for now; epoll told only of a change */
static int link_watch(struct tunnel_link *l, int i)
{
	uint32_t want = (!l->eof[i] && !l->queued[i] ? EPOLLIN : 0) | (l->queued[1 - i] ? EPOLLOUT : 0);
	struct epoll_event ev = { .events = want, .data.ptr = &l->end[i] };

	if (want == l->watching[i])
		return 0;
	l->watching[i] = want;
	return epoll_ctl(relay_ep, EPOLL_CTL_MOD, l->fd[i], &ev);
}

/* half_drain - half i's queued bytes to fd[1 - i]; -1 on an error */
static int half_drain(struct tunnel_link *l, int i)
{
	while (l->queued[i]) {
		ssize_t n = splice(l->pipe[i][0], NULL, l->fd[1 - i], NULL, l->queued[i],
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			l->queued[i] -= (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			return 0;	/* the socket is full: wait for EPOLLOUT */
		else if (n < 0 && errno != EINTR)
			return -1;
	}
	if (l->eof[i])
		shutdown(l->fd[1 - i], SHUT_WR);
	return 0;
}

/* half_fill - what fd[i] has, into half i's pipe, and on; -1 on an error */
static int half_fill(struct tunnel_link *l, int i)
{
	ssize_t n = splice(l->fd[i], NULL, l->pipe[i][1], NULL, SPLICE_CHUNK,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		l->eof[i] = true;
	l->queued[i] += (size_t)n;
	return half_drain(l, i);
}

static int relay_queue[2] = { -1, -1 };	/* new tunnels, as pointers, to the relay thread */

/* link_add - start watching a new tunnel's sockets (on the relay thread) */
static void link_add(struct tunnel_link *l)
{
	int i;

	for (i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &l->end[i] };
		l->watching[i] = EPOLLIN;
		if (epoll_ctl(relay_ep, EPOLL_CTL_ADD, l->fd[i], &ev) != 0) {
			link_free(l);
			return;
		}
	}
}

/* link_event - what epoll reported on end e; 0, or -1 when the tunnel is over */
static int link_event(struct tunnel_end *e, uint32_t got)
{
	struct tunnel_link *l = e->link;
	int i = e->i;

	if (got & EPOLLERR)
		return -1;
	if ((got & (EPOLLOUT | EPOLLHUP)) && half_drain(l, 1 - i) < 0)
		return -1;
	if ((got & (EPOLLIN | EPOLLHUP)) && !l->eof[i] && !l->queued[i] && half_fill(l, i) < 0)
		return -1;
	if (l->eof[0] && l->eof[1] && !l->queued[0] && !l->queued[1])
		return -1;
	/* a hang-up (both ways) leaves nothing to wait for on this socket */
	if (got & EPOLLHUP)
		return -1;
	link_watch(l, 0);
	link_watch(l, 1);
	return 0;
}

/* relay_loop - the relay thread */
static void *relay_loop(void *arg)
{
	struct epoll_event ev[64];

	(void)arg;
	for (;;) {
		int n = epoll_wait(relay_ep, ev, 64, -1), k, j;

		for (k = 0; k < n; k++) {
			struct tunnel_end *e = ev[k].data.ptr;
			struct tunnel_link *l;

			if (e == NULL) {	/* new tunnels */
				while (read(relay_queue[0], &l, sizeof l) == (ssize_t)sizeof l)
					link_add(l);
				continue;
			}
			if (e == (void *)relay_queue || link_event(e, ev[k].events) == 0)
				continue;
			l = e->link;
			/* close() took both sockets out of the set; forget their events of this batch */
			for (j = k + 1; j < n; j++)
				if (ev[j].data.ptr == &l->end[0] || ev[j].data.ptr == &l->end[1])
					ev[j].data.ptr = (void *)relay_queue;
			link_free(l);
		}
	}
	return NULL;
}

/* relay - hand the tunnel's two sockets to the relay thread */
static void relay(int client, int backend)
{
	struct tunnel_link *l = calloc(1, sizeof *l);
	int i;

	if (!l) {
		close(client);
		close(backend);
		return;
	}
	l->fd[0] = client;
	l->fd[1] = backend;
	l->pipe[0][0] = l->pipe[1][0] = -1;
	for (i = 0; i < 2; i++) {
		l->end[i].link = l;
		l->end[i].i = i;
		if (pipe2(l->pipe[i], O_CLOEXEC | O_NONBLOCK) != 0) {
			l->pipe[i][0] = -1;
			link_free(l);
			return;
		}
	}
	/* a pointer is written whole: far below PIPE_BUF */
	if (write(relay_queue[1], &l, sizeof l) != (ssize_t)sizeof l)
		link_free(l);
}

/* relay_start - the epoll set, its queue and the relay thread */
static int relay_start(const pthread_attr_t *attr)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	pthread_t th;

	relay_ep = epoll_create1(EPOLL_CLOEXEC);
	if (relay_ep < 0 || pipe2(relay_queue, O_CLOEXEC) != 0 ||
	    fcntl(relay_queue[0], F_SETFL, O_NONBLOCK) != 0 ||
	    epoll_ctl(relay_ep, EPOLL_CTL_ADD, relay_queue[0], &ev) != 0)
		return -1;
	return pthread_create(&th, attr, relay_loop, NULL);
}

/* hang - fault "timeout": read and ignore everything until the peer closes */
static void hang(int fd)
{
	char buf[4096];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return;
		if (r < 0 && !wait_fd(fd, POLLIN, now_ms() + HANG_IDLE_MS))
			return;
	}
}

/* handshake - the whole SOCKS5 exchange of one connection; the backend descriptor when
 * the tunnel is open (REP 00 sent), else -1 */
static int handshake(struct tunnel *t)
{
	const char *fault = t->st->fault;
	unsigned char vc[2], methods[255], req[4], alen, addr[256], pb[2];
	char host[INET6_ADDRSTRLEN > 256 ? INET6_ADDRSTRLEN : 256], hex[511], target[300];
	char *location = NULL, *zid = NULL;
	int method, backend = -1, port_back;
	unsigned port;
	bool replied;
	size_t i;

	if (strcmp(fault, "reset") == 0 || strcmp(fault, "refuse") == 0) {
		reset_connection(t->fd);	/* "refuse" too: the emulator keeps listening */
		return -1;
	}
	if (strcmp(fault, "timeout") == 0) {
		hang(t->fd);
		return -1;
	}
	if (strcmp(fault, "slow") == 0)
		t->send_delay_ms = t->st->slow_ms;
	if (!read_exact(t, vc, 2) || !read_exact(t, methods, vc[1]))
		return -1;
	for (i = 0; i < vc[1]; i++)
		sprintf(hex + 2 * i, "%02x", methods[i]);
	hex[2 * vc[1]] = 0;
	json_object_set_new(t->record, "methods", json_string(hex));
	if (strcmp(fault, "method_ff") == 0)
		return send_all(t, "\x05\xff", 2), -1;
	if (strcmp(fault, "wrong_version") == 0)
		return send_all(t, "\x04\x80", 2), -1;
	if (strcmp(fault, "garbage") == 0)
		return send_all(t, "HTTP/1.1 400 Bad Request\r\n\r\n", 28), -1;
	method = choose_method(t->st->auth_mode, vc[0], methods, vc[1]);
	snprintf(hex, sizeof hex, "%02x", method);
	json_object_set_new(t->record, "method", json_string(hex));
	if (!send_all(t, (unsigned char[]){ 5, (unsigned char)method }, 2) || method == 0xff)
		return -1;
	if (method == 0x80) {
		if (!authenticate(t, strcmp(t->st->auth_mode, "token") != 0, &location, &zid, &replied))
			return -1;
	} else {
		location = strdup("");
	}
	if (!read_exact(t, req, 4))
		goto out;
	if (req[0] != 5) {
		socks_reply(t, 1, 0, 10);
		goto out;
	}
	if (req[3] == 1 && read_exact(t, addr, 4))
		inet_ntop(AF_INET, addr, host, sizeof host);
	else if (req[3] == 3 && read_exact(t, &alen, 1) && read_exact(t, addr, alen))
		snprintf(host, sizeof host, "%.*s", (int)alen, (char *)addr);
	else if (req[3] == 4 && read_exact(t, addr, 16))
		inet_ntop(AF_INET6, addr, host, sizeof host);
	else {
		if (req[3] != 1 && req[3] != 3 && req[3] != 4)
			socks_reply(t, 8, 0, 10);
		goto out;
	}
	if (!read_exact(t, pb, 2))
		goto out;
	port = (unsigned)pb[0] << 8 | pb[1];
	snprintf(target, sizeof target, "%.100s:%u", host, port);
	json_object_set_new(t->record, "target", json_string(target));
	if (t->st->proxy_rep >= 0) {
		socks_reply(t, t->st->proxy_rep, 0, 10);
		goto out;
	}
	if (strcmp(fault, "truncated") == 0) {
		socks_reply(t, 0, 0, 5);
		goto out;
	}
	if (req[1] != 1) {
		socks_reply(t, 7, 0, 10);
		goto out;
	}
	if (req[3] != 1 && req[3] != 3) {
		socks_reply(t, 8, 0, 10);
		goto out;
	}
	if (!location_allowed(t->st, location, zid)) {
		socks_reply(t, 3, 0, 10);
		goto out;
	}
	port_back = backend_port(t->st, host, port);
	if (port_back == 0) {
		socks_reply(t, 2, 0, 10);
		goto out;
	}
	backend = backend_open(t, port_back, location, zid);
	if (backend < 0) {
		socks_reply(t, 4, 0, 10);
		goto out;
	}
	{
		struct sockaddr_in sa;
		socklen_t sl = sizeof sa;
		getsockname(backend, (struct sockaddr *)&sa, &sl);
		if (!socks_reply(t, 0, ntohs(sa.sin_port), 10)) {
			close(backend);
			backend = -1;
		}
	}
out:
	free(location);
	free(zid);
	return backend;
}

/* serve - one connection: handshake, its record to the emulator, then the relay */
static void *serve(void *arg)
{
	struct tunnel *t = arg;
	int backend;

	t->st = state_get();
	t->deadline = now_ms() + t->st->handshake_ms;
	t->record = json_pack("{s:s, s:n, s:n, s:n, s:n, s:n, s:n}", "auth", t->st->auth_mode,
			      "methods", "method", "jwt_length", "location_id", "target", "rep");
	backend = handshake(t);
	event(t->record);
	state_release(t->st);
	if (backend >= 0)
		relay(t->fd, backend);	/* the relay thread closes both */
	else
		close(t->fd);
	free(t);
	return NULL;
}

/* rusage_writer - on each SIGUSR1, the process's CPU time to rusage_path */
static void *rusage_writer(void *arg)
{
	sigset_t *set = arg;
	char tmp[4096];
	int sig;

	snprintf(tmp, sizeof tmp, "%s.tmp", rusage_path);
	while (sigwait(set, &sig) == 0) {
		struct rusage ru;
		FILE *f;
		getrusage(RUSAGE_SELF, &ru);
		f = fopen(tmp, "w");
		if (!f)
			continue;
		fprintf(f, "%lld %lld\n", (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
			(long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec);
		if (fclose(f) == 0)
			rename(tmp, rusage_path);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static sigset_t usr1;
	int listen_fd = -1, i;
	pthread_attr_t attr;

	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--listen-fd") == 0)
			listen_fd = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--events-fd") == 0)
			events_fd = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--state") == 0)
			state_path = argv[i + 1];
		else if (strcmp(argv[i], "--rusage") == 0)
			rusage_path = argv[i + 1];
		else
			break;
	}
	if (i != argc || listen_fd < 0 || events_fd < 0 || !state_path) {
		fprintf(stderr, "usage: btp-fastproxy --listen-fd FD --events-fd FD --state FILE [--rusage FILE]\n");
		return 2;
	}
	current = state_load();
	if (!current)
		return 1;
	stat(state_path, &current_stat);
	signal(SIGPIPE, SIG_IGN);
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) & ~O_NONBLOCK);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);	/* every thread inherits the mask */
	if (relay_start(&attr) != 0) {
		fprintf(stderr, "btp-fastproxy: cannot start the relay: %s\n", strerror(errno));
		return 1;
	}
	if (rusage_path) {
		pthread_t th;
		if (pthread_create(&th, &attr, rusage_writer, &usr1) != 0)
			return 1;
	}
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), one = 1;
		struct tunnel *t;
		pthread_t th;
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(50000);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		t = calloc(1, sizeof *t);
		if (t)
			t->fd = fd;
		if (!t || pthread_create(&th, &attr, serve, t) != 0) {
			free(t);
			close(fd);
		}
	}
}
