/*
 * http - one bounded HTTP(S) request through libcurl.
 *
 * libcurl is not linked: it is loaded with dlopen() when the first request
 * is made (http_global_init). A delivery with the token and the destination
 * cached makes no request, and libcurl with its two dozen libraries (GnuTLS,
 * Kerberos, LDAP, SSH, RTMP, ...) would be most of the process's start-up
 * time and of its memory. The headers still give the types and constants;
 * the functions come from a table of pointers filled by dlsym() (libcurl
 * keeps its ABI within the soname libcurl.so.4). When libcurl cannot be
 * loaded, every request fails with a text that says so and resp->local set.
 *
 * Each try uses its own easy handle, so no request's options reach the
 * next; the handles share one connection cache (a curl share, locked for
 * the milter's threads), so a second request to a host of the process's
 * earlier requests needs no new TCP connection and TLS handshake: with
 * nothing cached a delivery asks the token service twice (destination and
 * connectivity token), and on BTP both bindings name the same host. The
 * timeout covers each whole try, only http and https
 * are spoken, redirects are not followed, TLS peer and host name are
 * verified, and a response body larger than HTTP_MAX_BODY aborts the
 * transfer. What may go away by itself (a timeout, a refused or reset
 * connection, a failed name lookup, a 5xx answer) is tried again after
 * 0.5 s, 1 s, 2 s, ... up to opt->retries times, never past opt->deadline;
 * a 4xx, a TLS verification failure or an oversized answer is final.
 * Returns 0 when a response arrived (any status), -1 with a short text in
 * resp->error otherwise ("connection refused", "timed out after 10 s",
 * "TLS: ..."). The body may hold a token: http_response_free() wipes it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

#include "conn.h"
#include "http.h"
#include "log.h"
#include "util.h"

#define HTTP_DEFAULT_TIMEOUT 10
#define HTTP_BACKOFF_FIRST 0.5		/* seconds before the second try, doubled after */
#define HTTP_MIN_TRY 1.0		/* a try with less time left is not started */
#ifdef PACKAGE_VERSION
#define HTTP_USER_AGENT "btprelay/" PACKAGE_VERSION
#else
#define HTTP_USER_AGENT "btprelay"
#endif

#ifndef HTTP_LIBCURL
#define HTTP_LIBCURL "libcurl.so.4"	/* the soname libcurl-dev's libcurl.so points to */
#endif

/* the libcurl functions http.c calls, from dlsym() */
static struct curl_api {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
	CURLcode (*easy_perform)(CURL *curl);
	CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode rc);
	void (*easy_cleanup)(CURL *curl);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
	CURLSH *(*share_init)(void);
	CURLSHcode (*share_setopt)(CURLSH *share, CURLSHoption option, ...);
	CURLSHcode (*share_cleanup)(CURLSH *share);
} curl_api;

static const struct {
	const char *name;
	size_t offset;
} curl_symbols[] = {
	{ "curl_global_init", offsetof(struct curl_api, global_init) },
	{ "curl_easy_init", offsetof(struct curl_api, easy_init) },
	{ "curl_easy_setopt", offsetof(struct curl_api, easy_setopt) },
	{ "curl_easy_perform", offsetof(struct curl_api, easy_perform) },
	{ "curl_easy_getinfo", offsetof(struct curl_api, easy_getinfo) },
	{ "curl_easy_strerror", offsetof(struct curl_api, easy_strerror) },
	{ "curl_easy_cleanup", offsetof(struct curl_api, easy_cleanup) },
	{ "curl_slist_append", offsetof(struct curl_api, slist_append) },
	{ "curl_slist_free_all", offsetof(struct curl_api, slist_free_all) },
	{ "curl_share_init", offsetof(struct curl_api, share_init) },
	{ "curl_share_setopt", offsetof(struct curl_api, share_setopt) },
	{ "curl_share_cleanup", offsetof(struct curl_api, share_cleanup) },
};

static int http_initialized;		/* 1 = loaded and initialized, -1 = failed */
static CURLSH *http_share;		/* the connection cache of every request, NULL = none */
static pthread_mutex_t http_share_locks[CURL_LOCK_DATA_LAST];

static void http_share_lock(CURL *curl, curl_lock_data data, curl_lock_access access, void *arg)
{
	(void)curl;
	(void)access;
	(void)arg;
	pthread_mutex_lock(&http_share_locks[data]);
}

static void http_share_unlock(CURL *curl, curl_lock_data data, void *arg)
{
	(void)curl;
	(void)arg;
	pthread_mutex_unlock(&http_share_locks[data]);
}

/* http_share_new - connections, TLS sessions and DNS answers shared by all handles; NULL when libcurl will not */
static CURLSH *http_share_new(void)
{
	CURLSH *sh = curl_api.share_init();
	size_t i;

	if (sh == NULL)
		return NULL;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&http_share_locks[i], NULL);
	if (curl_api.share_setopt(sh, CURLSHOPT_LOCKFUNC, http_share_lock) != CURLSHE_OK
	    || curl_api.share_setopt(sh, CURLSHOPT_UNLOCKFUNC, http_share_unlock) != CURLSHE_OK
	    || curl_api.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK
	    || curl_api.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK
	    || curl_api.share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
		curl_api.share_cleanup(sh);	/* each request on its own, as without a share */
		return NULL;
	}
	return sh;
}
static char http_load_error[200];	/* why libcurl is not there */

/* http_load - dlopen libcurl and fill curl_api; -1 with http_load_error set */
static int http_load(void)
{
	void *lib = dlopen(HTTP_LIBCURL, RTLD_NOW | RTLD_LOCAL), *fn;
	const char *why;
	size_t i;

	if (lib == NULL) {
		why = dlerror();
		snprintf(http_load_error, sizeof(http_load_error),
			 "cannot load libcurl: %s (install libcurl4)", why ? why : HTTP_LIBCURL);
		return -1;
	}
	for (i = 0; i < sizeof(curl_symbols) / sizeof(curl_symbols[0]); i++) {
		if ((fn = dlsym(lib, curl_symbols[i].name)) == NULL) {
			snprintf(http_load_error, sizeof(http_load_error),
				 "cannot load libcurl: %s has no %s", HTTP_LIBCURL,
				 curl_symbols[i].name);
			dlclose(lib);
			return -1;
		}
		/* POSIX: a function's address from dlsym() fits a function pointer */
		memcpy((char *)&curl_api + curl_symbols[i].offset, &fn, sizeof(fn));
	}
	if (curl_api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(http_load_error, sizeof(http_load_error),
			 "cannot initialize libcurl (curl_global_init failed)");
		return -1;		/* lib stays loaded: libcurl may have started threads */
	}
	http_share = http_share_new();
	return 0;
}

/*
 * http_global_init - load and initialize libcurl, once per process; before
 * threads in a threaded program, by the first request otherwise. A failure
 * is remembered: every request then says why.
 */
void http_global_init(void)
{
	if (http_initialized == 0 && (http_initialized = http_load() == 0 ? 1 : -1) < 0)
		log_warn("%s", http_load_error);
}

/*
 * http_forget_connections - in a forked process that closed the descriptors
 * it inherited: the connections in the shared cache were its parent's, and
 * their numbers may now be other files; its requests open their own
 */
void http_forget_connections(void)
{
	http_share = NULL;	/* the parent's to clean up, not this process's */
}

struct http_sink {
	struct http_response *resp;
	size_t cap;
	int too_large;
};

/* http_options_init - the configured timeout, CA file and retries, and a deadline */
void http_options_init(struct http_options *opt, const struct config *cfg, double deadline)
{
	memset(opt, 0, sizeof(*opt));
	opt->timeout = cfg->http_timeout;
	opt->ca_file = cfg->http_ca_file;
	opt->retries = cfg->http_retries;
	opt->deadline = deadline;
}

/* http_write - libcurl write callback: append to the body, refuse beyond the cap */
static size_t http_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_sink *sink = arg;
	struct http_response *resp = sink->resp;
	size_t n = size * nmemb;
	char *grown;

	if (n > HTTP_MAX_BODY - resp->len) {
		sink->too_large = 1;
		return 0;		/* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (resp->len + n + 1 > sink->cap) {
		size_t cap = sink->cap ? sink->cap : 4096;

		while (cap < resp->len + n + 1)
			cap *= 2;
		/* not realloc: the old block may hold a token and must be wiped */
		grown = xmalloc(cap);
		if (resp->body != NULL) {
			memcpy(grown, resp->body, resp->len);
			explicit_bzero(resp->body, sink->cap);
			free(resp->body);
		}
		resp->body = grown;
		sink->cap = cap;
	}
	memcpy(resp->body + resp->len, data, n);
	resp->len += n;
	resp->body[resp->len] = '\0';
	return n;
}

/* http_describe - a short text for a transport failure */
static void http_describe(CURL *curl, CURLcode rc, const char *errbuf, int timeout,
			  struct http_response *resp)
{
	long os_errno = 0;
	const char *detail = errbuf[0] ? errbuf : curl_api.easy_strerror(rc);

	curl_api.easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		resp->timed_out = 1;
		resp->retryable = 1;
		snprintf(resp->error, sizeof(resp->error), "timed out after %d s", timeout);
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		resp->retryable = 1;
		snprintf(resp->error, sizeof(resp->error), "host name lookup failed (%s)", detail);
		break;
	case CURLE_COULDNT_CONNECT:
		resp->retryable = 1;
		if (os_errno == ECONNREFUSED)
			snprintf(resp->error, sizeof(resp->error), "connection refused");
		else if (os_errno != 0)
			snprintf(resp->error, sizeof(resp->error), "cannot connect: %s",
				 strerror((int)os_errno));
		else
			snprintf(resp->error, sizeof(resp->error), "cannot connect (%s)", detail);
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_USE_SSL_FAILED:
		snprintf(resp->error, sizeof(resp->error), "TLS: %s", detail);
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		snprintf(resp->error, sizeof(resp->error), "bad URL (%s)", detail);
		break;
	case CURLE_GOT_NOTHING:
		resp->retryable = 1;
		snprintf(resp->error, sizeof(resp->error), "connection closed without a response");
		break;
	case CURLE_PARTIAL_FILE:
		resp->retryable = 1;
		snprintf(resp->error, sizeof(resp->error), "connection closed in the response");
		break;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		resp->retryable = 1;
		if (os_errno == ECONNRESET)
			snprintf(resp->error, sizeof(resp->error), "connection reset");
		else
			snprintf(resp->error, sizeof(resp->error), "%s", detail);
		break;
	default:
		snprintf(resp->error, sizeof(resp->error), "%s", detail);
		break;
	}
}

/* http_set_client_cert - mutual TLS from PEM blobs; -1 when libcurl cannot */
static int http_set_client_cert(CURL *curl, const struct http_options *opt,
				struct http_response *resp)
{
#if LIBCURL_VERSION_NUM >= 0x074700
	struct curl_blob cert, key;

	cert.data = (void *)opt->client_cert_pem;
	cert.len = strlen(opt->client_cert_pem);
	cert.flags = CURL_BLOB_COPY;
	key.data = (void *)opt->client_key_pem;
	key.len = strlen(opt->client_key_pem);
	key.flags = CURL_BLOB_COPY;
	if (curl_api.easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert) != CURLE_OK
	    || curl_api.easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK
	    || curl_api.easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key) != CURLE_OK
	    || curl_api.easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK) {
		snprintf(resp->error, sizeof(resp->error),
			 "libcurl cannot use a client certificate from memory");
		return -1;
	}
	return 0;
#else
	(void)curl;
	(void)opt;
	snprintf(resp->error, sizeof(resp->error),
		 "X.509 bindings need libcurl 7.71 or later (client certificate from memory)");
	return -1;
#endif
}

/*
 * http_setopt - what every request sets: URL, shared DNS and TLS state,
 * timeouts, http(s) only, no redirects, verified TLS, a size limit, the
 * headers and where the body goes
 */
static void http_setopt(CURL *curl, const struct http_options *opt, long timeout_ms,
			const char *url, struct curl_slist *list, struct http_sink *sink,
			char *errbuf)
{
	curl_api.easy_setopt(curl, CURLOPT_URL, url);
	if (http_share != NULL)
		curl_api.easy_setopt(curl, CURLOPT_SHARE, http_share);
	curl_api.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_api.easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_api.easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_api.easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_api.easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_api.easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_api.easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_api.easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (opt->ca_file != NULL && opt->ca_file[0] != '\0')
		curl_api.easy_setopt(curl, CURLOPT_CAINFO, opt->ca_file);
	curl_api.easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_MAX_BODY);
	curl_api.easy_setopt(curl, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_api.easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_api.easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_write);
	curl_api.easy_setopt(curl, CURLOPT_WRITEDATA, sink);
	if (list != NULL)
		curl_api.easy_setopt(curl, CURLOPT_HTTPHEADER, list);
}

/* http_setopt_method - GET, or POST (or another method) with its body; Basic authentication */
static void http_setopt_method(CURL *curl, const char *method, const char *body,
			       const char *basic_user, const char *basic_password)
{
	if (strcmp(method, "GET") == 0) {
		curl_api.easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(method, "POST") != 0)
			curl_api.easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
		curl_api.easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_api.easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
	}
	if (basic_user != NULL) {
		curl_api.easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_api.easy_setopt(curl, CURLOPT_USERNAME, basic_user);
		curl_api.easy_setopt(curl, CURLOPT_PASSWORD, basic_password ? basic_password : "");
	}
}

/* http_try - one request within timeout_ms; 0 when a response arrived, -1 on transport failure */
static int http_try(const struct http_options *opt, long timeout_ms, const char *method,
		    const char *url, const char *const *headers, const char *body,
		    const char *basic_user, const char *basic_password,
		    struct http_response *resp)
{
	struct curl_slist *list = NULL, *next;
	struct http_sink sink;
	char errbuf[CURL_ERROR_SIZE];
	int timeout = (int)((timeout_ms + 999) / 1000);
	CURLcode rc;
	CURL *curl;
	int ret = -1;

	memset(resp, 0, sizeof(*resp));
	memset(&sink, 0, sizeof(sink));
	sink.resp = resp;
	errbuf[0] = '\0';

	http_global_init();
	if (http_initialized < 0) {
		snprintf(resp->error, sizeof(resp->error), "%s", http_load_error);
		resp->local = 1;
		return -1;
	}
	if ((curl = curl_api.easy_init()) == NULL) {
		snprintf(resp->error, sizeof(resp->error), "cannot initialize libcurl");
		return -1;
	}
	for (; headers != NULL && *headers != NULL; headers++) {
		if ((next = curl_api.slist_append(list, *headers)) == NULL)
			goto out;
		list = next;
	}
	/* no "Expect: 100-continue" round trip for larger form bodies */
	if (body != NULL && (next = curl_api.slist_append(list, "Expect:")) != NULL)
		list = next;

	http_setopt(curl, opt, timeout_ms, url, list, &sink, errbuf);
	http_setopt_method(curl, method, body, basic_user, basic_password);
	if (opt->client_cert_pem != NULL && opt->client_key_pem != NULL
	    && http_set_client_cert(curl, opt, resp) < 0)
		goto out;

	rc = curl_api.easy_perform(curl);
	if (rc == CURLE_OK) {
		curl_api.easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
		if (resp->body == NULL) {
			resp->body = xmalloc(1);
			resp->body[0] = '\0';
			sink.cap = 1;
		}
		ret = 0;
	} else if (sink.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		snprintf(resp->error, sizeof(resp->error),
			 "response larger than %d bytes", HTTP_MAX_BODY);
	} else {
		http_describe(curl, rc, errbuf, timeout, resp);
	}
out:
	if (ret != 0) {
		resp->status = 0;
		http_response_free(resp);
		if (resp->error[0] == '\0')
			snprintf(resp->error, sizeof(resp->error), "out of memory in libcurl");
	}
	/* header copies may hold a bearer token */
	for (next = list; next != NULL; next = next->next)
		explicit_bzero(next->data, strlen(next->data));
	curl_api.slist_free_all(list);
	curl_api.easy_cleanup(curl);
	return ret;
}

/* http_sleep - wait seconds, whatever signals arrive */
static void http_sleep(double seconds)
{
	struct timespec ts;

	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* http_request - the request, tried again on failures that may go away */
int http_request(const struct http_options *opt, const char *method, const char *url,
		 const char *const *headers, const char *body,
		 const char *basic_user, const char *basic_password,
		 struct http_response *resp)
{
	double backoff = HTTP_BACKOFF_FIRST, left;
	int timeout = opt->timeout > 0 ? opt->timeout : HTTP_DEFAULT_TIMEOUT;
	int tries = 1 + (opt->retries > 0 ? opt->retries : 0), n, rc;
	long timeout_ms;
	char why[64];

	for (n = 1;; n++) {
		timeout_ms = timeout * 1000L;
		if (opt->deadline > 0) {
			left = opt->deadline - conn_now();
			if (left < HTTP_MIN_TRY && n == 1) {
				memset(resp, 0, sizeof(*resp));
				resp->timed_out = 1;
				snprintf(resp->error, sizeof(resp->error),
					 "no time left before the delivery deadline");
				return -1;
			}
			if (left * 1000 < (double)timeout_ms)
				timeout_ms = (long)(left * 1000);
		}
		rc = http_try(opt, timeout_ms, method, url, headers, body, basic_user,
			      basic_password, resp);
		resp->tries = n;
		if (rc == 0 && resp->status >= 500) {
			resp->retryable = 1;
			snprintf(why, sizeof(why), "HTTP %ld", resp->status);
		} else if (rc < 0 && resp->retryable) {
			snprintf(why, sizeof(why), "%.60s", resp->error);
		} else {
			break;
		}
		if (n >= tries || (opt->deadline > 0
				   && conn_now() + backoff + HTTP_MIN_TRY > opt->deadline))
			break;
		log_debug("%s %s: %s; trying again in %.1f s (try %d of %d)", method, url, why,
			  backoff, n + 1, tries);
		http_response_free(resp);
		http_sleep(backoff);
		backoff *= 2;
	}
	if (rc < 0 && n > 1) {
		size_t len = strlen(resp->error);

		snprintf(resp->error + len, sizeof(resp->error) - len, " (after %d tries)", n);
	}
	return rc;
}

/* http_budget - every try at its full timeout plus every pause */
double http_budget(const struct http_options *opt)
{
	int timeout = opt->timeout > 0 ? opt->timeout : HTTP_DEFAULT_TIMEOUT;
	int retries = opt->retries > 0 ? opt->retries : 0, i;
	double total = timeout, backoff = HTTP_BACKOFF_FIRST;

	for (i = 0; i < retries; i++, backoff *= 2)
		total += backoff + timeout;
	return total;
}

/* http_get_bearer - GET with a bearer token, the header wiped after */
int http_get_bearer(const struct http_options *opt, const char *url, const char *token,
		    struct http_response *resp)
{
	size_t alen = strlen("Authorization: Bearer ") + strlen(token) + 1;
	char *auth = xmalloc(alen);
	const char *headers[3];
	int rc;

	snprintf(auth, alen, "Authorization: Bearer %s", token);
	headers[0] = auth;
	headers[1] = "Accept: application/json";
	headers[2] = NULL;
	rc = http_request(opt, "GET", url, headers, NULL, NULL, NULL, resp);
	explicit_bzero(auth, alen);
	free(auth);
	return rc;
}

/* http_fail - no response: this host's failure (4.3.0), or the service's (4.4.3) */
void http_fail(struct outcome *o, const struct http_response *resp, const char *fmt, ...)
{
	char what[DSN_TEXT_SIZE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	/* 4.3.0: a problem of this host (no libcurl), not of the service */
	dsn_fail(o, resp->local ? OUTCOME_LOCAL : OUTCOME_TRANSIENT, resp->local ? "4.3.0" : "4.4.3",
		 "%s: %s", what, resp->error);
}

/* http_out_of_time - a transient failure at this process's deadline is its own */
void http_out_of_time(const struct http_options *opt, struct outcome *o)
{
	if (o->kind == OUTCOME_TRANSIENT && opt->deadline > 0 && conn_now() + 1 >= opt->deadline)
		o->kind = OUTCOME_OUT_OF_TIME;
}

/* http_response_free - wipe and release the body (it may hold a token) */
void http_response_free(struct http_response *resp)
{
	if (resp->body != NULL) {
		explicit_bzero(resp->body, resp->len);
		free(resp->body);
	}
	resp->body = NULL;
	resp->len = 0;
}
