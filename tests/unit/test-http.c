/*
 * test-http - common/http.c against a scripted HTTP server (tests/lib/peer.c):
 * the request as it arrives (method, path, the caller's headers, the body
 * and its length, HTTP Basic), the response handed back (status, body with
 * its length), what is tried again (a 5xx, a connection closed without an
 * answer) and what is not (a 4xx), the body cap, the timeout of a try,
 * refused connections, the deadline, http_budget() and http_options_init().
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "tap.h"
#include "../lib/peer.h"

#define OK_HEAD "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"

static char url[256];

/* starts - whether s begins with prefix */
static int starts(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* request - one http_request() against the script in p, at path */
static int request(struct peer *p, const struct http_options *opt, const char *method,
		   const char *path, const char *const *headers, const char *body,
		   const char *user, const char *password, struct http_response *resp)
{
	int rc;

	peer_start(p);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", p->port, path);
	rc = http_request(opt, method, url, headers, body, user, password, resp);
	peer_finish(p);
	return rc;
}

static void test_get(void)
{
	static const char *const headers[] = { "Accept: application/json", "X-Test: one", NULL };
	struct http_options opt = { 3, NULL, NULL, NULL, 0, 0 };
	struct http_response resp;
	struct peer p = { 0 };
	int rc;

	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, OK_HEAD "Content-Length: 9\r\n\r\n{\"a\":\"b\"}", 0);
	rc = request(&p, &opt, "GET", "/dest/v1/x?y=1", headers, NULL, NULL, NULL, &resp);
	is_str(p.why, "", "GET: one whole request arrived");
	is_int(rc, 0, "GET: a response");
	is_int(resp.status, 200, "GET: status 200");
	is_str(resp.body, "{\"a\":\"b\"}", "GET: the body");
	is_int(resp.len, 9, "GET: its length");
	is_int(resp.tries, 1, "GET: one try");
	ok(starts(p.got, "GET /dest/v1/x?y=1 HTTP/1.1\r\n"), "GET: the request line");
	has_str(p.got, "\r\nAccept: application/json\r\n", "GET: the caller's Accept header");
	has_str(p.got, "\r\nX-Test: one\r\n", "GET: the caller's own header");
	has_str(p.got, "\r\nUser-Agent: btprelay", "GET: User-Agent btprelay");
	ok(strstr(p.got, "Authorization:") == NULL, "GET: no Authorization without a user");
	http_response_free(&resp);
	ok(resp.body == NULL && resp.len == 0, "http_response_free: body gone");
	http_response_free(&resp);
	ok(resp.body == NULL, "http_response_free twice is safe");
	peer_free(&p);
}

static void test_post_basic(void)
{
	static const char form[] = "grant_type=client_credentials&client_id=a%21b";
	struct http_options opt = { 3, NULL, NULL, NULL, 0, 0 };
	struct http_response resp;
	struct peer p = { 0 };
	char want[128];
	size_t n;
	int rc;

	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, OK_HEAD "Content-Length: 3\r\n\r\na\0b", sizeof(OK_HEAD) - 1 + 24);
	rc = request(&p, &opt, "POST", "/auth/oauth/token", NULL, form, "id", "p:w", &resp);
	is_str(p.why, "", "POST: one whole request arrived");
	ok(rc == 0 && resp.status == 200, "POST: 200");
	ok(resp.len == 3 && memcmp(resp.body, "a\0b", 3) == 0, "POST: a body with a NUL byte, whole");
	ok(starts(p.got, "POST /auth/oauth/token HTTP/1.1\r\n"), "POST: the request line");
	snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n", strlen(form));
	has_str(p.got, want, "POST: Content-Length of the body");
	n = strlen(p.got);
	ok(n > strlen(form) + 4 && strncmp(p.got + n - strlen(form) - 4, "\r\n\r\n", 4) == 0
	   && strcmp(p.got + n - strlen(form), form) == 0, "POST: the body, byte for byte, last");
	/* base64("id:p:w") */
	has_str(p.got, "\r\nAuthorization: Basic aWQ6cDp3\r\n", "POST: HTTP Basic of user and password");
	ok(strstr(p.got, "Expect:") == NULL, "POST: no Expect: 100-continue round trip");
	http_response_free(&resp);
	peer_free(&p);
}

static void test_retries(void)
{
	struct http_options opt = { 3, NULL, NULL, NULL, 2, 0 };
	struct http_response resp;
	struct peer p = { 0 };
	int rc;

	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 0);
	rc = request(&p, &opt, "GET", "/x", NULL, NULL, NULL, NULL, &resp);
	ok(rc == 0 && resp.status == 404, "404: a response, status 404");
	ok(resp.tries == 1 && peer_count(&p, "GET /x ") == 1, "404: never tried again (retries 2)");
	is_int(resp.retryable, 0, "404: not retryable");
	http_response_free(&resp);
	peer_free(&p);

	opt.retries = 1;
	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, "HTTP/1.1 503 Busy\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 0);
	peer_add(&p, PEER_ACCEPT, NULL, 0);
	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, OK_HEAD "Content-Length: 2\r\n\r\nok", 0);
	rc = request(&p, &opt, "GET", "/x", NULL, NULL, NULL, NULL, &resp);
	is_str(p.why, "", "503, then 200: two requests arrived");
	ok(rc == 0 && resp.status == 200, "503, then 200: the second answer");
	ok(resp.tries == 2 && peer_count(&p, "GET /x ") == 2, "503, then 200: two tries");
	is_str(resp.body, "ok", "503, then 200: the second body");
	http_response_free(&resp);
	peer_free(&p);

	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, "HTTP/1.1 503 Busy\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 0);
	peer_add(&p, PEER_ACCEPT, NULL, 0);
	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, "HTTP/1.1 502 Bad\r\nContent-Length: 4\r\nConnection: close\r\n\r\ngone", 0);
	rc = request(&p, &opt, "GET", "/x", NULL, NULL, NULL, NULL, &resp);
	ok(rc == 0 && resp.status == 502, "5xx twice, retries 1: the last answer stands");
	ok(resp.tries == 2 && resp.retryable, "... after two tries, retryable");
	http_response_free(&resp);
	peer_free(&p);

	opt.retries = 0;
	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_CLOSE, NULL, 0);
	rc = request(&p, &opt, "GET", "/x", NULL, NULL, NULL, NULL, &resp);
	is_int(rc, -1, "closed without an answer: a transport failure");
	is_str(resp.error, "connection closed without a response", "... says so");
	ok(resp.retryable && resp.status == 0 && resp.body == NULL, "... retryable, no status, no body");
	peer_free(&p);
}

static void test_limits(void)
{
	static char big[HTTP_MAX_BODY + 4096];
	struct http_options opt = { 3, NULL, NULL, NULL, 0, 0 };
	struct http_response resp;
	struct peer p = { 0 };
	size_t n;
	int rc;

	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, OK_HEAD "Content-Length: 1048577\r\n\r\n", 0);
	rc = request(&p, &opt, "GET", "/big", NULL, NULL, NULL, NULL, &resp);
	is_int(rc, -1, "Content-Length over the cap: refused");
	is_str(resp.error, "response larger than 1048576 bytes", "... with the cap in the text");
	peer_free(&p);

	n = (size_t)snprintf(big, sizeof(big), "%s\r\n", OK_HEAD);
	memset(big + n, 'x', sizeof(big) - n);
	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_SEND, big, sizeof(big));
	rc = request(&p, &opt, "GET", "/big", NULL, NULL, NULL, NULL, &resp);
	is_int(rc, -1, "an unannounced body over the cap: refused while reading");
	is_str(resp.error, "response larger than 1048576 bytes", "... with the cap in the text");
	ok(resp.body == NULL && resp.len == 0, "... nothing kept");
	peer_free(&p);

	opt.timeout = 1;
	peer_add(&p, PEER_REQUEST, NULL, 0);
	peer_add(&p, PEER_PAUSE, NULL, 2500);
	rc = request(&p, &opt, "GET", "/slow", NULL, NULL, NULL, NULL, &resp);
	is_int(rc, -1, "no answer within the timeout: a failure");
	is_str(resp.error, "timed out after 1 s", "... timed out after 1 s");
	ok(resp.timed_out && resp.retryable, "... a timeout, retryable");
	peer_free(&p);
}

static void test_no_server(void)
{
	struct http_options opt = { 2, NULL, NULL, NULL, 0, 0 };
	struct http_response resp;
	char dead[128];

	snprintf(dead, sizeof(dead), "http://127.0.0.1:%u/x", peer_free_port());
	is_int(http_request(&opt, "GET", dead, NULL, NULL, NULL, NULL, &resp), -1,
	       "nobody listening: a failure");
	is_str(resp.error, "connection refused", "... connection refused");
	ok(resp.retryable && resp.tries == 1, "... retryable, one try");
	opt.retries = 1;
	http_request(&opt, "GET", dead, NULL, NULL, NULL, NULL, &resp);
	is_str(resp.error, "connection refused (after 2 tries)", "retries 1: the text counts the tries");
	is_int(resp.tries, 2, "... two tries");

	opt.retries = 0;
	opt.deadline = conn_now() + 0.5;
	is_int(http_request(&opt, "GET", dead, NULL, NULL, NULL, NULL, &resp), -1,
	       "less than a second before the deadline: a failure");
	is_str(resp.error, "no time left before the delivery deadline", "... says so");
	ok(resp.timed_out && resp.tries == 0, "... a timeout, and no try made");

	opt.deadline = 0;
	is_int(http_request(&opt, "GET", "ftp://127.0.0.1:21/x", NULL, NULL, NULL, NULL, &resp), -1,
	       "an ftp URL is refused");
	has_str(resp.error, "bad URL", "... as a bad URL");
	is_int(resp.retryable, 0, "... never tried again");
}

static void test_options(void)
{
	struct http_options opt = { 10, NULL, NULL, NULL, 2, 0 };
	struct config cfg;

	ok(http_budget(&opt) > 31.49 && http_budget(&opt) < 31.51, "budget: 3 x 10 s + 0.5 s + 1 s");
	opt.timeout = 0;
	opt.retries = 0;
	ok(http_budget(&opt) > 9.99 && http_budget(&opt) < 10.01, "budget: no timeout set is 10 s");
	opt.timeout = 2;
	opt.retries = 3;
	ok(http_budget(&opt) > 11.49 && http_budget(&opt) < 11.51,
	   "budget: 4 x 2 s + 0.5 s + 1 s + 2 s");

	config_defaults(&cfg);
	cfg.http_timeout = 7;
	cfg.http_retries = 3;
	free(cfg.http_ca_file);
	cfg.http_ca_file = strdup("/etc/x/ca.pem");
	http_options_init(&opt, &cfg, 123.5);
	ok(opt.timeout == 7 && opt.retries == 3 && opt.deadline == 123.5,
	   "http_options_init: timeout, retries and the caller's deadline");
	is_str(opt.ca_file, "/etc/x/ca.pem", "http_options_init: the CA file");
	ok(opt.client_cert_pem == NULL && opt.client_key_pem == NULL,
	   "http_options_init: no client certificate");
	config_free(&cfg);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_open("test-http", "/dev/null", LOG_LVL_DEBUG);
	http_global_init();
	test_get();
	test_post_basic();
	test_retries();
	test_limits();
	test_no_server();
	test_options();
	log_close();
	return tap_done();
}
