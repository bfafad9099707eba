/*
 * test-oauth - common/oauth.c against a scripted token service
 * (tests/lib/peer.c): the request as it arrives (path, headers, the form
 * with its URL-encoding, the HTTP Basic retry after a 401, X-zid and the
 * subscriber's host), the response parsed (access_token checks, expires_in
 * as number, string or missing), the failures mapped to their status (400,
 * 401, 403 -> 4.7.0; 5xx, garbage, no connection -> 4.4.3; an unusable
 * binding or tenant -> 4.3.5) with the service's error text but never the
 * secret, the body cap, oauth_lifetime() and oauth_tenant_url().
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "dsn.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
#include "tap.h"
#include "../lib/files.h"
#include "../lib/peer.h"

#define SECRET "s3cret/with+chars&more"
#define SECRET_FORM "s3cret%2Fwith%2Bchars%26more"

static struct http_options opt = { 3, NULL, NULL, NULL, 0, 0 };
static char url[256], logfile[] = "/tmp/btprelay-test-oauth-XXXXXX";
static char *replies[64];
static size_t nreplies;

/* reply - an HTTP response with a JSON (or any) body, kept until the end of the test */
static const char *reply(const char *status, const char *body)
{
	size_t len = strlen(status) + strlen(body) + 128;
	char *r = malloc(len);

	if (r == NULL || nreplies == sizeof(replies) / sizeof(replies[0]))
		abort();
	snprintf(r, len, "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n%s", status, strlen(body), body);
	replies[nreplies++] = r;
	return r;
}

/* answer - one request, one response */
static void answer(struct peer *p, const char *status, const char *body)
{
	peer_add(p, PEER_REQUEST, NULL, 0);
	peer_add(p, PEER_SEND, reply(status, body), 0);
}

/* ends - whether s ends with suffix */
static int ends(const char *s, const char *suffix)
{
	size_t n = s ? strlen(s) : 0, k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/*
 * fetch - oauth_token_fetch for c (the token URL http://HOST:PORT/PATH
 * of the peer) against the script in p
 */
static int fetch(struct peer *p, struct oauth_client *c, const char *host, const char *path,
		 const struct oauth_tenant *tenant, struct oauth_token *tok, struct outcome *o)
{
	int rc;

	peer_start(p);
	snprintf(url, sizeof(url), "http://%s:%u%s", host, p->port, path);
	c->token_url = url;
	memset(o, 0, sizeof(*o));
	rc = oauth_token_fetch(c, tenant, &opt, "connectivity", tok, o);
	peer_finish(p);
	return rc;
}

/* client - a secret binding */
static void client(struct oauth_client *c, const char *id, const char *secret)
{
	memset(c, 0, sizeof(*c));
	c->client_id = (char *)id;
	c->client_secret = (char *)secret;
}

static void test_request(void)
{
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	struct peer p = { 0 };
	time_t t0 = time(NULL);
	int rc;

	client(&c, "sb-x!b1|conn!b2", SECRET);
	answer(&p, "200 OK", "{\"access_token\":\"tok123\",\"token_type\":\"bearer\",\"expires_in\":43199}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth/", NULL, &tok, &o);
	is_str(p.why, "", "one whole request arrived");
	is_int(rc, 0, "a token");
	is_str(tok.access_token, "tok123", "the access_token");
	ok(tok.expires_at >= t0 + 43199 && tok.expires_at <= time(NULL) + 43199,
	   "expires_at is now + expires_in");
	ok(strncmp(p.got, "POST /auth/oauth/token HTTP/1.1\r\n", 33) == 0,
	   "POST to <token_url>/oauth/token, one slash");
	has_str(p.got, "\r\nContent-Type: application/x-www-form-urlencoded\r\n", "a form");
	has_str(p.got, "\r\nAccept: application/json\r\n", "Accept: application/json");
	ok(ends(p.got, "\r\n\r\ngrant_type=client_credentials&client_id=sb-x%21b1%7Cconn%21b2"
		"&client_secret=" SECRET_FORM), "the form: client_credentials, id and secret URL-encoded");
	ok(strstr(p.got, "Authorization:") == NULL && strstr(p.got, "X-zid:") == NULL,
	   "no Authorization, no X-zid for the provider");
	ok(log_has(logfile, "connectivity token from http://127.0.0.1:")
	   && log_has(logfile, "/auth/oauth/token: expires in 43199 s"), "the expiry is logged");
	ok(!log_has(logfile, "tok123") && !log_has(logfile, "s3cret"), "the token and the secret are not");
	oauth_token_free(&tok);
	ok(tok.access_token == NULL && tok.expires_at == 0, "oauth_token_free");
	oauth_token_free(&tok);
	ok(tok.access_token == NULL, "oauth_token_free twice is safe");
	peer_free(&p);

	answer(&p, "200 OK", "{\"access_token\":\"t\",\"expires_in\":60}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth/oauth/token/", NULL, &tok, &o);
	ok(rc == 0 && strncmp(p.got, "POST /auth/oauth/token HTTP/1.1\r\n", 33) == 0,
	   "a token URL that already names /oauth/token is taken as is");
	oauth_token_free(&tok);
	peer_free(&p);
}

static void test_basic(void)
{
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	struct peer p = { 0 };
	char want[400];
	int rc;

	client(&c, "basic-id", "basic-secret");
	answer(&p, "401 Unauthorized", "{\"error\":\"unauthorized\"}");
	peer_add(&p, PEER_ACCEPT, NULL, 0);
	answer(&p, "200 OK", "{\"access_token\":\"tok-basic\",\"expires_in\":60}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
	is_str(p.why, "", "401 to the form: a second request");
	ok(rc == 0 && tok.access_token && strcmp(tok.access_token, "tok-basic") == 0,
	   "401 to the form, HTTP Basic works: the token");
	is_int(peer_count(&p, "POST /auth/oauth/token "), 2, "two requests");
	has_str(p.got, "\r\nAuthorization: Basic YmFzaWMtaWQ6YmFzaWMtc2VjcmV0\r\n",
		"the second in HTTP Basic: id and secret");
	ok(ends(p.got, "\r\n\r\ngrant_type=client_credentials"), "... with only the grant type in the form");
	is_int(peer_count(&p, "client_secret="), 1, "the secret in the form only once");
	oauth_token_free(&tok);
	peer_free(&p);

	answer(&p, "401 Unauthorized", "{\"error\":\"unauthorized\"}");
	peer_add(&p, PEER_ACCEPT, NULL, 0);
	answer(&p, "401 Unauthorized", "{\"error\":\"unauthorized\",\"error_description\":\"Bad credentials\"}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
	is_int(rc, -1, "401 to both: refused");
	snprintf(want, sizeof(want), "connectivity token service %s/oauth/token: HTTP 401 "
		 "(unauthorized: Bad credentials)", url);
	is_str(o.text, want, "401: the service's error and description");
	ok(o.cls == DSN_DEFER && strcmp(o.status, "4.7.0") == 0, "401 defers 4.7.0");
	ok(tok.access_token == NULL, "no token on failure");
	peer_free(&p);

	/* a service that quotes the credentials as they came: form, then Basic */
	client(&c, "echo", SECRET);
	answer(&p, "401 Unauthorized", "{\"error\":\"unauthorized\",\"error_description\":"
	       "\"bad client client_secret=" SECRET_FORM "\"}");
	peer_add(&p, PEER_ACCEPT, NULL, 0);
	answer(&p, "401 Unauthorized", "{\"error\":\"unauthorized\",\"error_description\":"
	       "\"bad client Basic ZWNobzpzM2NyZXQvd2l0aCtjaGFycyZtb3Jl\"}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
	is_int(rc, -1, "an echoing service: refused");
	has_str(o.text, "(unauthorized: bad client", "... its text");
	ok(strstr(o.text, "s3cret") == NULL && strstr(o.text, "ZWNobzpzM2NyZXQ") == NULL
	   && strstr(o.text, "with+chars") == NULL,
	   "... neither the secret nor the Basic credentials: %s", o.text);
	peer_free(&p);
}

static void test_errors(void)
{
	static const struct {
		const char *status, *body, *dsn, *tail;
	} t[] = {
		{ "400 Bad Request", "{\"error\":\"invalid_client\"}", "4.7.0", ": HTTP 400 (invalid_client)" },
		{ "403 Forbidden", "<html>no</html>", "4.7.0", ": HTTP 403" },
		{ "500 Internal Server Error", "{\"error_description\":\"down\"}", "4.4.3", ": HTTP 500 (down)" },
		{ "404 Not Found", "{}", "4.4.3", ": HTTP 404" },
		{ "400 Bad Request", "{\"error\":\"x\",\"error_description\":\"the secret is " SECRET "\"}",
		  "4.7.0", ": HTTP 400 (x: (withheld))" },
		{ "200 OK", "<html>hello</html>", "4.4.3", ": response is not a JSON object" },
		{ "200 OK", "[1]", "4.4.3", ": response is not a JSON object" },
		{ "200 OK", "{\"token_type\":\"bearer\"}", "4.4.3", ": no access_token in the response" },
		{ "200 OK", "{\"access_token\":\"\"}", "4.4.3", ": no access_token in the response" },
		{ "200 OK", "{\"access_token\":42}", "4.4.3", ": no access_token in the response" },
		{ "200 OK", "{\"access_token\":\"a b\"}", "4.4.3",
		  ": malformed access_token (control, space or non-ASCII byte)" },
		{ "200 OK", "{\"access_token\":\"caf\\u00e9\"}", "4.4.3",
		  ": malformed access_token (control, space or non-ASCII byte)" },
	};
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	size_t i;
	int rc;

	client(&c, "sb-err", SECRET);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct peer p = { 0 };

		answer(&p, t[i].status, t[i].body);
		rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
		ok(rc == -1 && tok.access_token == NULL, "%s %s: no token", t[i].status, t[i].body);
		ok(o.cls == DSN_DEFER && strcmp(o.status, t[i].dsn) == 0, "... defers %s (%s)", t[i].dsn,
		   o.status);
		ok(ends(o.text, t[i].tail) && strncmp(o.text, "connectivity token service http://", 34) == 0,
		   "... text names the binding, the URL and ends in \"%s\"", t[i].tail);
		if (!ends(o.text, t[i].tail))
			printf("#   got \"%s\"\n", o.text);
		is_int(peer_count(&p, "POST "), 1, "... one request (HTTP Basic is tried only after a 401)");
		ok(strstr(o.text, "s3cret") == NULL, "... no secret in the text");
		peer_free(&p);
	}
}

static void test_token_limits(void)
{
	static char big[17 + 16385 + 3];	/* {"access_token":"AAA...A"} */
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	struct peer p = { 0 };
	int rc;

	client(&c, "sb-big", SECRET);
	memcpy(big, "{\"access_token\":\"", 17);
	memset(big + 17, 'A', 16384);
	memcpy(big + 17 + 16384, "\"}", 3);
	answer(&p, "200 OK", big);
	rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
	ok(rc == 0 && tok.access_token && strlen(tok.access_token) == 16384,
	   "a token of 16384 bytes is taken");
	oauth_token_free(&tok);
	peer_free(&p);

	memset(big + 17, 'A', 16385);
	memcpy(big + 17 + 16385, "\"}", 3);
	answer(&p, "200 OK", big);
	rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.4.3") == 0, "a token of 16385 bytes: 4.4.3");
	has_str(o.text, ": token too large (16385 bytes, at most 16384)", "... says so");
	peer_free(&p);
}

static void test_body_cap(void)
{
	static char big[1536 * 1024];
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	size_t n;
	int i, rc;

	client(&c, "sb-cap", SECRET);
	for (i = 0; i < 2; i++) {
		struct peer p = { 0 };

		/* 1.5 MiB, announced or not: the client must stop reading */
		n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\n%sConnection: close\r\n\r\n",
				     i ? "Content-Length: 1572864\r\n" : "");
		memset(big + n, ' ', sizeof(big) - n);
		peer_add(&p, PEER_REQUEST, NULL, 0);
		peer_add(&p, PEER_SEND, big, sizeof(big));
		rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
		ok(rc == -1 && strcmp(o.status, "4.4.3") == 0, "a body of 1.5 MiB%s: 4.4.3",
		   i ? ", announced" : "");
		has_str(o.text, "response larger than 1048576 bytes", "... the cap %s",
			i ? "from Content-Length" : "while reading");
		peer_free(&p);
	}
	snprintf(url, sizeof(url), "ftp://127.0.0.1:%u", peer_free_port());
	c.token_url = url;
	rc = oauth_token_get(&c, &opt, "connectivity", &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.4.3") == 0, "an ftp token URL: refused, 4.4.3");
	has_str(o.text, "bad URL", "... as a bad URL");
}

static void test_expiry(void)
{
	static const struct {
		const char *expires;	/* the member, "" for none */
		long life;
		int warned;
	} t[] = {
		{ ",\"expires_in\":\"120\"", 120, 0 },
		{ ",\"expires_in\":3.9", 3, 0 },
		{ ",\"expires_in\":0", 0, 0 },
		{ "", 300, 1 },
		{ ",\"expires_in\":-5", 300, 1 },
		{ ",\"expires_in\":\"soon\"", 300, 1 },
		{ ",\"expires_in\":1e12", OAUTH_LIFETIME_MAX, 0 },
		{ ",\"expires_in\":99999999999999", OAUTH_LIFETIME_MAX, 0 },
	};
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	char body[128];
	size_t i;

	client(&c, "sb-exp", SECRET);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct peer p = { 0 };
		time_t t0 = time(NULL);
		int rc;

		if (truncate(logfile, 0) < 0)
			perror(logfile);
		snprintf(body, sizeof(body), "{\"access_token\":\"tok\"%s}", t[i].expires);
		answer(&p, "200 OK", body);
		rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
		ok(rc == 0 && tok.expires_at >= t0 + t[i].life && tok.expires_at <= time(NULL) + t[i].life,
		   "expires_in \"%s\": the token lives %ld s", t[i].expires, t[i].life);
		is_int(log_has(logfile, "no valid expires_in; assuming 300 s"), t[i].warned,
		       "... %s", t[i].warned ? "a warning says 300 s are assumed" : "no warning");
		oauth_token_free(&tok);
		peer_free(&p);
	}
}

static void test_lifetime(void)
{
	static const struct {
		const char *json;
		long want;
	} t[] = {
		{ "60", 60 }, { "0", 0 }, { "59.9", 59 }, { "\"90\"", 90 }, { "\"9x\"", -1 },
		{ "\"\"", -1 }, { "-1", -1 }, { "-0.5", -1 }, { "\"-3\"", -1 }, { "null", -1 },
		{ "true", -1 }, { "{}", -1 }, { "604800", 604800 }, { "604801", OAUTH_LIFETIME_MAX },
		{ "\"99999999999999999999999\"", OAUTH_LIFETIME_MAX },
		{ "\"-99999999999999999999999\"", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		json_t *v = json_loads(t[i].json, JSON_DECODE_ANY, NULL);

		is_int(oauth_lifetime(v), t[i].want, "oauth_lifetime(%s)", t[i].json);
		json_decref(v);
	}
	is_int(oauth_lifetime(NULL), -1, "oauth_lifetime(absent)");
}

static void test_tenants(void)
{
	struct oauth_tenant sub = { "cust-1", NULL }, zid = { NULL, "zone-1" };
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	struct peer p = { 0 };
	char want[128];
	int rc;

	client(&c, "sb-t", SECRET);
	answer(&p, "200 OK", "{\"access_token\":\"tok-sub\",\"expires_in\":60}");
	rc = fetch(&p, &c, "prov.localhost", "/auth", &sub, &tok, &o);
	is_int(rc, 0, "subscriber by subdomain: a token");
	snprintf(want, sizeof(want), "\r\nHost: cust-1.localhost:%u\r\n", p.port);
	has_str(p.got, want, "... asked at the subdomain's host");
	ok(strstr(p.got, "X-zid") == NULL, "... without X-zid");
	oauth_token_free(&tok);
	peer_free(&p);

	answer(&p, "200 OK", "{\"access_token\":\"tok-zid\",\"expires_in\":60}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth", &zid, &tok, &o);
	is_int(rc, 0, "subscriber by tenant id: a token");
	has_str(p.got, "\r\nX-zid: zone-1\r\n", "... the header X-zid");
	oauth_token_free(&tok);
	peer_free(&p);

	sub.subdomain = "a.b";
	snprintf(url, sizeof(url), "http://prov.localhost:%u/auth", peer_free_port());
	c.token_url = url;
	rc = oauth_token_fetch(&c, &sub, &opt, "connectivity", &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.3.5") == 0, "a subdomain that is no DNS label: 4.3.5");
	is_str(o.text, "connectivity token for tenant a.b: tenant subdomain is not a DNS label",
	       "... says so");
	zid.zid = "zone 1";
	rc = oauth_token_fetch(&c, &zid, &opt, "connectivity", &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.3.5") == 0, "a tenant id with a space: 4.3.5");
	is_str(o.text, "connectivity token: the tenant id is not a valid header value", "... says so");
}

static void test_bindings(void)
{
	struct oauth_client c;
	struct oauth_token tok;
	struct outcome o;
	struct peer p = { 0 };
	int rc;

	/* an X.509 binding: client_id only in the form, and no Basic retry */
	client(&c, "sb-x509", NULL);
	c.cert_pem = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
	c.key_pem = "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n";
	answer(&p, "401 Unauthorized", "{\"error\":\"unauthorized\"}");
	rc = fetch(&p, &c, "127.0.0.1", "/auth", NULL, &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.7.0") == 0, "X.509 binding, 401: 4.7.0");
	ok(ends(p.got, "\r\n\r\ngrant_type=client_credentials&client_id=sb-x509"),
	   "... the form has no client_secret");
	is_int(peer_count(&p, "POST "), 1, "... and no HTTP Basic retry");
	peer_free(&p);

	client(&c, "sb-none", NULL);
	c.token_url = url;
	rc = oauth_token_fetch(&c, NULL, &opt, "connectivity", &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.3.5") == 0, "neither secret nor certificate: 4.3.5");
	is_str(o.text, "connectivity binding has neither a client secret nor a client certificate",
	       "... says so");

	client(&c, "sb-x", SECRET);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", peer_free_port());
	c.token_url = url;
	rc = oauth_token_get(&c, &opt, "destination", &tok, &o);
	ok(rc == -1 && strcmp(o.status, "4.4.3") == 0, "nobody listening: 4.4.3");
	has_str(o.text, "destination token service http://127.0.0.1:", "... names the binding");
	ok(ends(o.text, "/oauth/token: connection refused"), "... connection refused");
}

static void test_tenant_url(void)
{
	static const struct {
		const char *url, *sub, *want;
	} cases[] = {
		{ "https://prov.authentication.eu10.hana.ondemand.com", "cust",
		  "https://cust.authentication.eu10.hana.ondemand.com" },
		{ "https://prov.authentication.cert.eu10.hana.ondemand.com/oauth/token", "c-1",
		  "https://c-1.authentication.cert.eu10.hana.ondemand.com/oauth/token" },
		{ "http://prov.localhost:8443/auth", "x", "http://x.localhost:8443/auth" },
		{ "https://user@prov.example/p?q", "x", "https://user@x.example/p?q" },
		{ "http://127.0.0.1:8080/auth", "x", NULL },
		{ "https://localhost/auth", "x", NULL },
		{ "https://[::1]:80/auth", "x", NULL },
		{ "prov.example/auth", "x", NULL },
		{ "https://prov.example", "a.b", NULL },
		{ "https://prov.example", "-a", NULL },
		{ "https://prov.example", "", NULL },
	};
	char err[256], *got;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		got = oauth_tenant_url(cases[i].url, cases[i].sub, err, sizeof(err));
		is_str(got, cases[i].want, "tenant URL %s + %s", cases[i].url, cases[i].sub);
		if (got == NULL)
			ok(err[0] != '\0', "... with a reason: %s", err);
		free(got);
	}
}

int main(void)
{
	int fd;
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	if ((fd = mkstemp(logfile)) < 0 || log_open("test-oauth", logfile, LOG_LVL_DEBUG) < 0) {
		perror("log file");
		return 99;
	}
	close(fd);
	http_global_init();
	test_request();
	test_basic();
	test_errors();
	test_token_limits();
	test_body_cap();
	test_expiry();
	test_lifetime();
	test_tenants();
	test_bindings();
	test_tenant_url();
	log_close();
	unlink(logfile);
	for (i = 0; i < nreplies; i++)
		free(replies[i]);
	return tap_done();
}
