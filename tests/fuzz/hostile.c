/*
 * hostile - issue 6 point 6 at the parser level: input built to hurt,
 * each case refused cleanly with a clear status, no crash, bounded time
 * and memory. Built by build.sh with ASan and UBSan (leaks are errors at
 * exit); run by test-fuzz.sh, which counts its TAP lines.
 *
 *   deeply nested and oversized JSON: destinations file, bindings file,
 *   token and Destination Service answers (100k levels, over 1 MiB)
 *   a huge token; a token with control bytes
 *   CR/LF/NUL in destination properties (header injection via mail.smtp.from)
 *   relay replies of megabytes: one endless line, endless continuation
 *   lines, a drip of one byte at a time (the per-command timeout holds)
 *   a proxy with the wrong version, method, auth reply, address type,
 *   REP codes, a truncated reply, an HTTP answer
 *   addresses with CR/LF, over-long or 8-bit without SMTPUTF8
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "../unit/tap.h"
#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "fuzz.h"
#include "../lib/peer.h"
#include "http.h"
#include "oauth.h"
#include "smtp.h"
#include "socks5.h"
#include "util.h"

#define MB (1024 * 1024)
#define JWT "eyJhbGciOiJIUzI1NiJ9.eyJjaWQiOiJzYi1jbG9uZS1jb25uIWIyIn0.c2lnbmF0dXJl"

static struct conn conn;	/* 32 KiB of buffers: not on the stack */

/* max_rss_mb - the process's peak resident size */
static long max_rss_mb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss / 1024;
}

/* nested - n levels of open, a core, n levels of close; newly allocated */
static char *nested(size_t n, const char *open, const char *core, const char *close)
{
	size_t lo = strlen(open), lc = strlen(close), lk = strlen(core), i;
	char *s = xmalloc(n * (lo + lc) + lk + 1), *p = s;

	for (i = 0; i < n; i++, p += lo)
		memcpy(p, open, lo);
	memcpy(p, core, lk);
	p += lk;
	for (i = 0; i < n; i++, p += lc)
		memcpy(p, close, lc);
	*p = '\0';
	return s;
}

/* outcome_is - class, status and a piece of the text, with a diagnostic when not */
static int outcome_is(const struct outcome *o, enum dsn_class cls, const char *status,
		      const char *needle)
{
	int good = o->cls == cls && strcmp(o->status, status) == 0
		   && (needle == NULL || strstr(o->text, needle) != NULL);

	if (!good)
		printf("#   got %s %s (want %s%s%s)\n", o->status, o->text, status,
		       needle ? ", text with: " : "", needle ? needle : "");
	return good;
}

/* --- files ----------------------------------------------------------------- */

static struct config cfg;

/* resolve_file - MAIL_ONPREM from a destinations file holding text */
static int resolve_file(const char *text, size_t len, struct outcome *o)
{
	struct bindings b;
	struct mail_destination d;
	int rc;

	free(cfg.destinations_file);
	cfg.destinations_file = xstrdup(fuzz_tmpfile(".json", (const uint8_t *)text, len));
	memset(&b, 0, sizeof(b));
	rc = dest_resolve(&cfg, &b, "MAIL_ONPREM", &d, o);
	dest_free(&d);
	return rc;
}

static void test_json_files(void)
{
	struct bindings b;
	struct outcome o;
	double t0;
	char *s;
	int rc;

	t0 = conn_now();
	s = nested(100000, "[", "", "]");
	rc = resolve_file(s, strlen(s), &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.3.5", "bad JSON"),
	   "destinations file of 100k nested arrays: refused 4.3.5 (bad JSON) in %.2f s",
	   conn_now() - t0);
	free(s);

	s = nested(100000, "{\"a\":", "1", "}");
	rc = resolve_file(s, strlen(s), &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.3.5", "bad JSON"),
	   "destinations file of 100k nested objects: refused 4.3.5 (bad JSON)");
	free(s);

	/* deep, but within jansson's limit, in an unused member of a good entry */
	s = xmalloc(64 * 1024);
	{
		char *deep = nested(1000, "[", "", "]");

		snprintf(s, 64 * 1024, "[{\"Name\":\"MAIL_ONPREM\",\"Type\":\"MAIL\","
			 "\"mail.smtp.host\":\"mail.corp.internal\",\"mail.smtp.port\":\"25\","
			 "\"x\":%s}]", deep);
		free(deep);
	}
	rc = resolve_file(s, strlen(s), &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.3.5", "not a string"),
	   "destination with a 1000-level array as a value: refused 4.3.5 (not a string)");
	free(s);

	s = xmalloc(2 * MB + 1);
	memset(s, ' ', 2 * MB);
	s[0] = '[';
	s[2 * MB - 1] = ']';
	s[2 * MB] = '\0';
	rc = resolve_file(s, 2 * MB, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.3.5", "larger than"),
	   "destinations file of 2 MiB: refused 4.3.5 (larger than 1 MiB)");
	free(s);

	s = nested(100000, "[", "", "]");
	free(cfg.bindings_file);
	cfg.bindings_file = xstrdup(fuzz_tmpfile(".vcap", (const uint8_t *)s, strlen(s)));
	free(s);
	unsetenv("VCAP_SERVICES");
	unsetenv("SERVICE_BINDING_ROOT");
	rc = bindings_load(&cfg, &b, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.3.5", "bad JSON"),
	   "bindings file of 100k nested arrays: refused 4.3.5 (bad JSON)");
	bindings_free(&b);
	free(cfg.bindings_file);
	cfg.bindings_file = xstrdup("");
}

/* one destination object through dest_from_properties */
static int props(const char *json, struct outcome *o)
{
	struct mail_destination d;
	json_error_t err;
	json_t *v = json_loads(json, JSON_ALLOW_NUL, &err);
	int rc;

	if (v == NULL) {
		printf("#   test JSON does not parse: %s\n", err.text);
		return 99;
	}
	rc = dest_from_properties(v, "test", &d, o);
	dest_free(&d);
	json_decref(v);
	return rc;
}

static void test_injection(void)
{
	static const struct {
		const char *what, *prop;
	} cases[] = {
		{ "CR LF in mail.smtp.from (header injection)",
		  "\"mail.smtp.from\":\"a@corp.example\\r\\nRCPT TO:<evil@x>\"" },
		{ "LF in mail.user", "\"mail.user\":\"relayuser\\nAUTH\"" },
		{ "NUL in mail.password", "\"mail.password\":\"abc\\u0000def\"" },
		{ "CR LF in mail.smtp.host", "\"mail.smtp.host\":\"mail\\r\\nQUIT\"" },
		{ "CR in CloudConnectorLocationId", "\"CloudConnectorLocationId\":\"LOC1\\r\"" },
	};
	char json[512];
	struct outcome o;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(json, sizeof(json), "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\","
			 "\"mail.smtp.port\":\"25\",\"mail.smtp.host\":\"h\",%s}", cases[i].prop);
		/* the later duplicate key wins in jansson: the hostile value is the one kept */
		ok(props(json, &o) == -1 && outcome_is(&o, DSN_DEFER, "4.3.5", "CR, LF or NUL"),
		   "destination with %s: refused 4.3.5", cases[i].what);
	}
}

/* --- HTTP: token service and Destination Service --------------------------- */

static char *token_body, *find_body;	/* NULL: a good token; the Find's answer */
static size_t token_len, find_len;
static char base[64];

/* handler - the token service (/oauth/token) and the Destination Service (the rest) */
static void handler(const char *method, const char *path, struct fuzz_http_reply *r, void *arg)
{
	static const char good[] = "{\"access_token\":\"" JWT "\",\"expires_in\":3600}";

	(void)method;
	(void)arg;
	r->status = 200;
	if (strncmp(path, "/oauth/token", 12) == 0) {
		r->body = token_body != NULL ? token_body : good;
		r->len = token_body != NULL ? token_len : strlen(good);
	} else {
		r->body = find_body != NULL ? find_body : "{}";
		r->len = find_body != NULL ? find_len : 2;
	}
}

/* token - oauth_token_get against a token service that answers body */
static int token(char *body, size_t len, struct outcome *o)
{
	struct oauth_client client;
	struct http_options http;
	struct oauth_token tok;
	int rc;

	memset(&client, 0, sizeof(client));
	client.token_url = base;
	client.client_id = "sb-clone-conn!b2";
	client.client_secret = "secret";
	client.instance = "conn";
	memset(&http, 0, sizeof(http));
	http.timeout = 5;

	token_body = body;
	token_len = len;
	rc = oauth_token_get(&client, &http, "connectivity", &tok, o);
	oauth_token_free(&tok);
	token_body = NULL;
	return rc;
}

static void test_http(void)
{
	struct outcome o;
	char *s;
	size_t n;
	int rc;

	s = xmalloc(2 * MB + 64);
	n = (size_t)snprintf(s, 64, "{\"access_token\":\"");
	memset(s + n, 'A', 2 * MB);
	n += 2 * MB;
	n += (size_t)snprintf(s + n, 64, "\",\"expires_in\":3600}");
	rc = token(s, n, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.3", "larger than"),
	   "token response of 2 MiB: deferred 4.4.3 (response larger than 1 MiB)");

	n = (size_t)snprintf(s, 64, "{\"access_token\":\"");
	memset(s + n, 'A', 100000);
	n += 100000;
	n += (size_t)snprintf(s + n, 64, "\",\"expires_in\":3600}");
	rc = token(s, n, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.3", "token too large"),
	   "access_token of 100 kB: deferred 4.4.3 (token too large)");

	n = (size_t)snprintf(s, 64, "{\"access_token\":\"");
	memset(s + n, 'A', 16 * 1024);
	n += 16 * 1024;
	n += (size_t)snprintf(s + n, 64, "\",\"expires_in\":3600}");
	rc = token(s, n, &o);
	ok(rc == 0, "access_token of exactly 16 KiB: accepted");

	n = (size_t)snprintf(s, 128, "{\"access_token\":\"abc\\r\\nX-Injected: 1\",\"expires_in\":1}");
	rc = token(s, n, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.3", "malformed access_token"),
	   "access_token with CR LF: deferred 4.4.3 (malformed)");

	free(s);
	s = nested(100000, "[", "", "]");
	rc = token(s, strlen(s), &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.3", "not a JSON object"),
	   "token response of 100k nested arrays: deferred 4.4.3");

	free(s);
}

static int find(char *body, size_t len, struct outcome *o)
{
	struct bindings b;
	struct mail_destination d;
	int rc;

	memset(&b, 0, sizeof(b));
	b.have_destination = 1;
	b.destination.token_url = base;
	b.destination.client_id = "sb-clone-dest!b1";
	b.destination.client_secret = "secret";
	b.destination.instance = "dest";
	b.destination_uri = base;
	free(cfg.destinations_file);
	cfg.destinations_file = xstrdup("");
	find_body = body;
	find_len = len;
	rc = dest_resolve(&cfg, &b, "MAIL_ONPREM", &d, o);
	dest_free(&d);
	find_body = NULL;
	return rc;
}

static void test_find(void)
{
	struct outcome o;
	char *s;
	size_t n;
	int rc;

	/* 30k levels: under the 1 MiB body cap, far over jansson's depth limit */
	s = nested(30000, "{\"destinationConfiguration\":", "{}", "}");
	rc = find(s, strlen(s), &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.3", "destinationConfiguration"),
	   "Find answer of 30k nested objects (%zu bytes): deferred 4.4.3", strlen(s));
	free(s);

	s = xmalloc(2 * MB + 128);
	n = (size_t)snprintf(s, 128, "{\"destinationConfiguration\":{\"Name\":\"");
	memset(s + n, 'N', 2 * MB);
	n += 2 * MB;
	n += (size_t)snprintf(s + n, 64, "\"}}");
	rc = find(s, n, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.3", "larger than"),
	   "Find answer of 2 MiB: deferred 4.4.3 (response larger than 1 MiB)");
	free(s);

	s = xmalloc(1024);
	n = (size_t)snprintf(s, 1024, "{\"destinationConfiguration\":{\"Name\":\"MAIL_ONPREM\","
			     "\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\","
			     "\"mail.smtp.from\":\"a@b\\r\\nRCPT TO:<evil@x>\"}}");
	rc = find(s, n, &o);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.3.5", "CR, LF or NUL"),
	   "Find answer with CR LF in mail.smtp.from: deferred 4.3.5");
	free(s);
}

/* --- streams: relay and proxy ---------------------------------------------- */

/* a peer that sends head, then unit repeated until total bytes, then tail */
struct stream {
	int fd;
	const char *head, *unit, *tail;
	size_t total;
	int drip_ms;		/* >0: one byte at a time, this far apart */
	pthread_t thread;
};

static void *stream_main(void *arg)
{
	struct stream *st = arg;
	char buf[65536];
	size_t ul = strlen(st->unit), fill = 0, sent = 0;
	struct timespec ts = { 0, (long)st->drip_ms * 1000000L };

	if (st->drip_ms > 0) {
		for (sent = 0; sent < st->total; sent++) {
			if (peer_send_all(st->fd, st->unit + sent % ul, 1) < 0)
				goto done;
			nanosleep(&ts, NULL);
		}
		goto done;
	}
	if (peer_send_all(st->fd, st->head, strlen(st->head)) < 0)
		goto done;
	while (ul > 0 && fill + ul <= sizeof(buf)) {
		memcpy(buf + fill, st->unit, ul);
		fill += ul;
	}
	while (ul > 0 && sent < st->total) {
		size_t n = st->total - sent < fill ? st->total - sent : fill;

		if (peer_send_all(st->fd, buf, n) < 0)
			goto done;
		sent += n;
	}
	peer_send_all(st->fd, st->tail, strlen(st->tail));
done:
	shutdown(st->fd, SHUT_WR);
	while (recv(st->fd, buf, sizeof(buf), 0) > 0)
		;
	close(st->fd);
	return NULL;
}

/* stream_start - conn connected to a streaming peer */
static void stream_start(struct stream *st, int timeout_ms)
{
	st->fd = peer_pair(&conn, timeout_ms, 0);
	if (st->fd < 0)
		abort();
	if (pthread_create(&st->thread, NULL, stream_main, st) != 0)
		abort();
}

/* relay - smtp_session_open against a streaming relay; returns the outcome */
static int relay(struct stream *st, int timeout_ms, struct outcome *o, double *secs,
		 long *rss_growth)
{
	struct smtp_options opt;
	struct smtp_session s;
	long rss0 = max_rss_mb();
	double t0 = conn_now();
	int rc;

	memset(&opt, 0, sizeof(opt));
	opt.helo_name = "mta.client.test";
	opt.relay_name = "relay[test]:25";
	opt.command_timeout_ms = timeout_ms;
	opt.data_done_timeout_ms = timeout_ms;
	stream_start(st, timeout_ms);
	rc = smtp_session_open(&s, &conn, &opt, o);
	smtp_quit(&s);
	conn_close(&conn);
	pthread_join(st->thread, NULL);
	*secs = conn_now() - t0;
	*rss_growth = max_rss_mb() - rss0;
	return rc;
}

static void test_relay(void)
{
	struct outcome o;
	double secs;
	long grow;
	int rc;
	char x[1024];
	struct stream st;

	memset(x, 'x', sizeof(x) - 1);
	x[sizeof(x) - 1] = '\0';

	memset(&st, 0, sizeof(st));
	st.head = "220 ";
	st.unit = x;
	st.total = 64 * MB;
	st.tail = "\r\n";
	rc = relay(&st, 5000, &o, &secs, &grow);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.5.0", "longer than 1023"),
	   "greeting of one 64 MiB line: deferred 4.5.0 in %.2f s, peak memory +%ld MiB",
	   secs, grow);
	ok(grow < 16, "greeting of one 64 MiB line: memory stays bounded (+%ld MiB)", grow);

	memset(&st, 0, sizeof(st));
	st.head = "";
	st.unit = "220-mail.corp.internal ESMTP and on and on and on and on and on and on\r\n";
	st.total = 32 * MB;
	st.tail = "220 done\r\n";
	rc = relay(&st, 5000, &o, &secs, &grow);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.5.0", "more than 1000 lines"),
	   "greeting of 32 MiB continuation lines: deferred 4.5.0 in %.2f s, +%ld MiB",
	   secs, grow);

	memset(&st, 0, sizeof(st));
	st.head = "220 relay ESMTP\r\n";
	st.unit = "250-PIPELINING PIPELINING PIPELINING PIPELINING PIPELINING\r\n";
	st.total = 16 * MB;
	st.tail = "250 OK\r\n";
	rc = relay(&st, 5000, &o, &secs, &grow);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.5.0", "more than 1000 lines"),
	   "EHLO reply of 16 MiB: deferred 4.5.0 in %.2f s, +%ld MiB", secs, grow);

	memset(&st, 0, sizeof(st));
	st.head = "";
	st.unit = x;
	st.total = 16 * MB;
	st.tail = "";
	rc = relay(&st, 5000, &o, &secs, &grow);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.2", "lost connection"),
	   "16 MiB without a line end, then close: deferred 4.4.2 in %.2f s, +%ld MiB",
	   secs, grow);

	memset(&st, 0, sizeof(st));
	st.unit = "220 relay ESMTP\r\n";
	st.total = 1000;
	st.drip_ms = 50;
	rc = relay(&st, 400, &o, &secs, &grow);
	ok(rc < 0 && outcome_is(&o, DSN_DEFER, "4.4.2", "timeout") && secs < 3,
	   "relay dripping one byte per 50 ms, 400 ms command timeout: deferred 4.4.2 "
	   "after %.2f s", secs);

	memset(&st, 0, sizeof(st));
	st.head = "220 relay ESMTP\r\n250 relay\r\n";
	st.unit = "";
	st.tail = "";
	rc = relay(&st, 1000, &o, &secs, &grow);
	ok(rc == 0, "a relay that answers the greeting and EHLO: ready (control case)");
}

/* proxy - socks5_connect against a proxy that sends bytes, then closes */
static int proxy(const char *bytes, size_t len, struct outcome *o)
{
	struct fuzz_peer p;
	int rc;

	if (fuzz_peer_start(&p, &conn, 2000, (const uint8_t *)bytes, len, 0) < 0)
		abort();
	rc = socks5_connect(&conn, JWT, "LOC1", "mail.corp.internal", 25, o);
	conn_close(&conn);
	fuzz_peer_end(&p);
	fuzz_peer_free(&p);
	return rc;
}

static void test_proxy(void)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
		int rc;
		const char *status, *needle;
	} cases[] = {
		{ "SOCKS4 version in the method reply (04 80)", "\x04\x80", 2, SOCKS5_FAIL,
		  "4.3.5", "not a SOCKS5 reply" },
		{ "no acceptable method (05 ff)", "\x05\xff", 2, SOCKS5_FAIL, "4.7.0",
		  "refused authentication method 0x80" },
		{ "method 00 instead of 80", "\x05\x00", 2, SOCKS5_FAIL, "4.7.0",
		  "refused authentication method 0x80" },
		{ "an HTTP answer", "HTTP/1.1 400 Bad Request\r\n\r\n", 28, SOCKS5_FAIL, "4.3.5",
		  "not a SOCKS5 reply" },
		{ "auth reply 01 01", "\x05\x80\x01\x01", 4, SOCKS5_AUTH_REJECTED, "4.7.0",
		  "proxy authentication rejected" },
		{ "auth reply with version 05", "\x05\x80\x05\x00", 4, SOCKS5_AUTH_REJECTED,
		  "4.7.0", "proxy authentication rejected" },
		{ "CONNECT reply with version 04", "\x05\x80\x01\x00\x04\x00\x00\x01\x7f\x00\x00\x01"
		  "\x00\x19", 14, SOCKS5_FAIL, "4.3.5", "not a SOCKS5 reply" },
		{ "CONNECT reply with ATYP 09", "\x05\x80\x01\x00\x05\x00\x00\x09\x00\x00", 10,
		  SOCKS5_FAIL, "4.3.5", "bad address type" },
		{ "REP 04 with ATYP 09", "\x05\x80\x01\x00\x05\x04\x00\x09\x00\x00", 10,
		  SOCKS5_FAIL, "4.4.1", "REP 04 (backend host unreachable)" },
		{ "REP 02", "\x05\x80\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x00", 14,
		  SOCKS5_FAIL, "4.3.5", "REP 02 (no matching host mapping" },
		{ "REP 05", "\x05\x80\x01\x00\x05\x05\x00\x01\x7f\x00\x00\x01\x00\x00", 14,
		  SOCKS5_AUTH_REJECTED, "4.7.0", "REP 05 (authentication failure)" },
		{ "REP ff", "\x05\x80\x01\x00\x05\xff\x00\x01\x7f\x00\x00\x01\x00\x00", 14,
		  SOCKS5_FAIL, "4.4.1", "REP ff (unknown reply code" },
		{ "CONNECT reply cut after 5 of 10 bytes", "\x05\x80\x01\x00\x05\x00\x00\x01\x7f",
		  9, SOCKS5_FAIL, "4.4.1", "connection closed" },
		{ "ATYP 03 reply whose name is cut short",
		  "\x05\x80\x01\x00\x05\x00\x00\x03\xff" "abc", 12, SOCKS5_FAIL, "4.4.1",
		  "connection closed" },
		{ "nothing at all", "", 0, SOCKS5_FAIL, "4.4.1", "proxy greeting: connection closed" },
	};
	struct outcome o;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&o, 0, sizeof(o));
		rc = proxy(cases[i].bytes, cases[i].len, &o);
		ok(rc == cases[i].rc && outcome_is(&o, DSN_DEFER, cases[i].status, cases[i].needle),
		   "proxy sends %s: %s %s", cases[i].what, cases[i].status,
		   cases[i].rc == SOCKS5_AUTH_REJECTED ? "(new token, one retry)" : "deferred");
	}
	rc = proxy("\x05\x80\x01\x00\x05\x00\x00\x04" "0123456789abcdef\x00\x19" "220 ", 26, &o);
	ok(rc == SOCKS5_OK && conn_pending(&conn) == 0,
	   "CONNECT reply with ATYP 04 (IPv6 BND.ADDR): read whole, tunnel open");
}

/* --- addresses --------------------------------------------------------------- */

static void test_addresses(void)
{
	static const char relay_ok[] = "220 relay ESMTP\r\n250-relay\r\n250-PIPELINING\r\n"
				       "250 8BITMIME\r\n250 Ok\r\n250 Ok\r\n354 go\r\n250 Ok\r\n";
	char longaddr[2100];
	const struct {
		const char *what, *sender, *rcpt, *status;
	} cases[] = {
		{ "recipient with CR LF and a second command", "s@client.test",
		  "a@corp.example>\r\nRCPT TO:<evil@attacker.example", "5.1.3" },
		{ "sender with LF", "s@client.test\nDATA", "a@corp.example", "5.1.7" },
		{ "recipient with an unbalanced quote (NOTIFY= injection)", "s@client.test",
		  "\"x> NOTIFY=SUCCESS@corp.example", "5.1.3" },
		{ "sender with an unbalanced quote (AUTH= injection)", "\"s> AUTH=<evil@x>",
		  "a@corp.example", "5.1.7" },
		{ "recipient of 2000 bytes", "s@client.test", longaddr, "5.1.3" },
		{ "8-bit recipient, relay without SMTPUTF8", "s@client.test",
		  "j\xc3\xbcrgen@corp.example", "5.6.7" },
	};
	struct smtp_options opt;
	struct smtp_session s;
	struct smtp_envelope env = { 0 };
	struct outcome o, rout[1];
	struct fuzz_peer p;
	const char *rcpt[1];
	size_t i;
	int rc;

	memset(longaddr, 'a', 2000);
	strcpy(longaddr + 2000, "@corp.example");
	memset(&opt, 0, sizeof(opt));
	opt.helo_name = "mta.client.test";
	opt.relay_name = "relay[test]:25";
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (fuzz_peer_start(&p, &conn, 2000, (const uint8_t *)relay_ok, strlen(relay_ok),
				    65536) < 0)
			abort();
		rc = smtp_session_open(&s, &conn, &opt, &o);
		rcpt[0] = cases[i].rcpt;
		env.sender = cases[i].sender;
		env.rcpt = rcpt;
		env.nrcpt = 1;
		env.size = -1;
		if (rc == 0)
			rc = smtp_send_message(&s, &env, -1, rout, &o);
		smtp_quit(&s);
		conn_close(&conn);
		fuzz_peer_end(&p);
		ok(rc < 0 && outcome_is(&o, DSN_BOUNCE, cases[i].status, NULL)
		   && strstr(p.sent, "MAIL FROM") == NULL && strstr(p.sent, "evil") == NULL
		   && strstr(p.sent, "NOTIFY") == NULL,
		   "%s: bounced %s, nothing of it sent", cases[i].what, cases[i].status);
		fuzz_peer_free(&p);
	}
	ok(1, "NUL in an address: cannot occur (argv strings end at NUL; pipe(8) passes argv)");
}

int main(void)
{
	unsigned port;

	signal(SIGPIPE, SIG_IGN);
	fuzz_quiet();
	http_global_init();
	config_defaults(&cfg);
	free(cfg.cache_dir);
	cfg.cache_dir = xstrdup("");
	free(cfg.bindings_file);
	cfg.bindings_file = xstrdup("");
	cfg.http_timeout = 5;
	cfg.http_retries = 0;
	port = fuzz_http_start(handler, NULL);
	if (port == 0) {
		printf("Bail out! no loopback HTTP server\n");
		return 1;
	}
	snprintf(base, sizeof(base), "http://127.0.0.1:%u", port);

	test_json_files();
	test_injection();
	test_http();
	test_find();
	test_relay();
	test_proxy();
	test_addresses();
	config_free(&cfg);
	return tap_done();
}
