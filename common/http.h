/*
 * http - one bounded HTTPS request through libcurl, for the token service
 * and the Destination Service. A timeout covers each try, the response
 * body is capped, TLS is verified (system store or a CA file). Timeouts,
 * failed connections and 5xx answers are tried again (retries, backoff
 * 0.5 s, 1 s, 2 s, ...), never a 4xx; every try ends by the deadline.
 * libcurl is loaded when the first request is made, not linked: a process
 * that makes no request never maps it.
 */
#ifndef BTPRELAY_HTTP_H
#define BTPRELAY_HTTP_H

#include <stddef.h>

#define HTTP_MAX_BODY (1024 * 1024)

#include "conf.h"
#include "dsn.h"

struct http_options {
	int timeout;			/* seconds for each try */
	const char *ca_file;		/* NULL or "" = system store */
	const char *client_cert_pem;	/* mutual TLS (X.509 bindings), NULL = none */
	const char *client_key_pem;
	int retries;			/* tries after the first one, 0 = none */
	double deadline;		/* absolute, conn_now() clock; 0 = none */
};

struct http_response {
	long status;			/* HTTP status, 0 when no response */
	char *body;			/* NUL-terminated, NULL when none */
	size_t len;
	char error[256];		/* transport error text when status == 0 */
	int timed_out;
	int retryable;			/* the failure may go away: timeout, connection, 5xx */
	int tries;			/* requests made */
	int local;			/* the failure is this host's: libcurl cannot be loaded */
};

/*
 * http_options_init - timeout, CA file and retries from the configuration,
 * and the caller's deadline (conn_now() clock, 0 = none)
 */
void http_options_init(struct http_options *opt, const struct config *cfg, double deadline);

/*
 * http_request - method "GET" or "POST"; headers is a NULL-terminated list
 * of "Name: value" (may be NULL); body may be NULL. Basic authentication
 * when basic_user is not NULL. Returns 0 when an HTTP response arrived
 * (any status; a 5xx only after the last try), -1 on transport failure
 * (resp->error says why, with "after N tries" when there were several).
 */
int http_request(const struct http_options *opt, const char *method, const char *url,
		 const char *const *headers, const char *body,
		 const char *basic_user, const char *basic_password,
		 struct http_response *resp);
void http_response_free(struct http_response *resp);
/*
 * http_get_bearer - GET url as JSON with "Authorization: Bearer token";
 * the header is wiped after the request. As http_request.
 */
int http_get_bearer(const struct http_options *opt, const char *url, const char *token,
		    struct http_response *resp);
/*
 * http_fail - the outcome of a request that got no response: "TEXT:
 * resp->error", 4.3.0 (OUTCOME_LOCAL) when this host is the problem (no
 * libcurl), else 4.4.3 (OUTCOME_TRANSIENT)
 */
void http_fail(struct outcome *o, const struct http_response *resp, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* http_budget - the longest one http_request() can take with opt: every try and pause, in seconds */
double http_budget(const struct http_options *opt);
/*
 * http_out_of_time - a transient failure once opt's deadline has come
 * (within a second) becomes OUTCOME_OUT_OF_TIME: it proves nothing about
 * the service, only that this process ran out of time
 */
void http_out_of_time(const struct http_options *opt, struct outcome *o);
/*
 * http_global_init - load and initialize libcurl. A threaded program calls
 * it before its threads start; otherwise the first request does.
 */
void http_global_init(void);
/*
 * http_forget_connections - a forked child that closed its inherited
 * descriptors: requests from now on do not use the parent's connections
 */
void http_forget_connections(void);

#endif
