/*
 * oauth - OAuth 2.0 client-credentials tokens from the XSUAA token service.
 *
 * POST <token_url>/oauth/token with a form body (client secret, HTTP Basic
 * as fallback on 401) or mutual TLS (X.509 bindings), for the provider or
 * for a subscriber tenant (subdomain in the token URL host, or X-zid).
 * oauth_token_cached() shares tokens between processes through the cache
 * until shortly before they expire. The token is never logged; only its
 * expiry is.
 */
#ifndef BTPRELAY_OAUTH_H
#define BTPRELAY_OAUTH_H

#include <time.h>
#include "bindings.h"
#include "conf.h"
#include "dsn.h"
#include "http.h"

/* flags of oauth_token_cached() and oauth_token_reject() */
#define OAUTH_SUBSCRIBER 0x1	/* for the configured subscriber tenant, not the provider */
#define OAUTH_REFRESH 0x2	/* do not use a cached token: fetch one and replace it */

/* a subscriber tenant; both NULL = the provider */
struct oauth_tenant {
	const char *subdomain;	/* replaces the first DNS label of the token URL host */
	const char *zid;	/* tenant (zone) id, sent as the X-zid header */
};

struct oauth_token {
	char *access_token;	/* the JWT; wiped by oauth_token_free */
	time_t expires_at;	/* wall clock */
};

/*
 * oauth_token_get - fetch a token. what names the binding in texts
 * ("connectivity", "destination"). Failures defer: unreachable, timeout,
 * 5xx -> 4.4.3; 400/401/403 -> 4.7.0 with the service's error text;
 * malformed response -> 4.4.3.
 */
int oauth_token_get(const struct oauth_client *client, const struct http_options *http,
		    const char *what, struct oauth_token *tok, struct outcome *o);
/*
 * oauth_token_fetch - oauth_token_get for a tenant (NULL = the provider):
 * the token URL with the subdomain, or the X-zid header. A token URL whose
 * host has no label to replace (an IP address, one label) defers 4.3.5.
 */
int oauth_token_fetch(const struct oauth_client *client, const struct oauth_tenant *tenant,
		      const struct http_options *http, const char *what,
		      struct oauth_token *tok, struct outcome *o);

/*
 * oauth_token_cached - a token from the cache (cfg->cache_dir) while it
 * has more than token_refresh_margin (at most half its lifetime) left,
 * else fetched once for all processes that need it now, and stored.
 * flags: OAUTH_SUBSCRIBER for the tenant of tenant_subdomain / tenant_id
 * (4.3.5 when none is configured), OAUTH_REFRESH to skip the cached one.
 * Failures as oauth_token_get; a failed fetch is noted for at most
 * http_timeout seconds, and answers the processes that were waiting for
 * it, so a burst asks once (cache.h).
 */
int oauth_token_cached(const struct config *cfg, const struct oauth_client *client,
		       const struct http_options *http, const char *what, unsigned flags,
		       struct oauth_token *tok, struct outcome *o);

/*
 * oauth_token_reject - a service refused tok (HTTP 401, proxy REP 05):
 * drop it from the cache, unless another process has already replaced it,
 * so the next oauth_token_cached() fetches a new one exactly once.
 */
void oauth_token_reject(const struct config *cfg, const struct oauth_client *client,
			const struct http_options *http, const char *what, unsigned flags,
			const struct oauth_token *tok);

/*
 * oauth_token_missing - 1 when the cache is on and holds no token for
 * flags at all (a cold start, a cleared cache: a delivery may then fetch
 * it alongside other requests); 0 when it holds one, fresh or not (one
 * stat(), so that a delivery with warm caches pays nothing for asking),
 * or when there is no cache to share a fetch through.
 */
int oauth_token_missing(const struct config *cfg, const struct oauth_client *client,
			const char *what, unsigned flags);

/*
 * oauth_tenant_url - token_url with the first DNS label of its host
 * replaced by subdomain ("https://prov.authentication.eu10..." ->
 * "https://sub.authentication.eu10..."). Newly allocated, or NULL with
 * errbuf when the host is an IP address or a single label, or the
 * subdomain is not a DNS label.
 */
char *oauth_tenant_url(const char *token_url, const char *subdomain, char *errbuf,
		       size_t errlen);

void oauth_token_free(struct oauth_token *tok);

/*
 * oauth_lifetime - an expires_in (RFC 6749 section 5.1: seconds, a JSON
 * number, or a numeric string as some services send it) at most
 * OAUTH_LIFETIME_MAX, so that "now + lifetime" never overflows and a
 * token the service calls eternal is still fetched again; -1 when absent,
 * negative or not a number.
 */
#define OAUTH_LIFETIME_MAX (7 * 86400L)
struct json_t;
long oauth_lifetime(const struct json_t *v);

#endif
