/*
 * oauth - OAuth 2.0 client-credentials tokens (RFC 6749, section 4.4) from
 * the XSUAA token service (SAP BTP documentation, "Authorization and Trust
 * Management").
 *
 * One POST to <token_url>/oauth/token with a form body. A secret binding
 * sends client_id and client_secret in the form and, when the service
 * answers 401 to that, tries once more with HTTP Basic. An X.509 binding
 * sends only client_id and proves itself with its client certificate.
 * Returns 0 with the token, or -1 with a deferred outcome: 4.4.3 when the
 * service cannot be reached, times out, fails (5xx) or answers garbage,
 * 4.7.0 when it refuses the credentials (400, 401, 403). Texts name the
 * binding and the URL; the secret and the token never appear in a text or
 * a log line, and the request body is wiped after use.
 *
 * A subscriber's token comes from the same token service with the
 * subscriber's subdomain as the first label of the host, or from the
 * provider's URL with the header X-zid (SAP BTP documentation, "Multitenancy
 * in the Connectivity Service").
 * oauth_token_cached() keeps tokens in the shared cache under a key made
 * of the token URL actually used, the client id, the tenant and, for
 * X.509 clients, the certificate's digest; it hands a token out while
 * more than the refresh margin is left, so a token never expires in the
 * middle of a delivery.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

#include "cache.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "oauth.h"
#include "redact.h"
#include "util.h"

#define OAUTH_TOKEN_MAX (16 * 1024)
#define OAUTH_DEFAULT_EXPIRY 300	/* when the service does not say */
#define OAUTH_PATH "/oauth/token"

/* oauth_url - <base>/oauth/token without a double slash, newly allocated */
static char *oauth_url(const char *base)
{
	size_t len = strlen(base), plen = strlen(OAUTH_PATH);
	char *url;

	while (len > 0 && base[len - 1] == '/')
		len--;
	/* a binding that already names the endpoint is taken as is */
	if (len >= plen && strncmp(base + len - plen, OAUTH_PATH, plen) == 0)
		plen = 0;
	url = xmalloc(len + plen + 1);
	memcpy(url, base, len);
	memcpy(url + len, OAUTH_PATH, plen);
	url[len + plen] = '\0';
	return url;
}

/* oauth_form_append - append a form-urlencoded value (RFC 3986 unreserved kept) */
static size_t oauth_form_append(char *dst, size_t pos, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	for (p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
		    || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'
		    || *p == '~') {
			dst[pos++] = (char)*p;
		} else {
			dst[pos++] = '%';
			dst[pos++] = hex[*p >> 4];
			dst[pos++] = hex[*p & 15];
		}
	}
	dst[pos] = '\0';
	return pos;
}

/* oauth_form - the request body; secret may be NULL (X.509) */
static char *oauth_form(const char *client_id, const char *secret, size_t *size)
{
	static const char grant[] = "grant_type=client_credentials&client_id=";
	static const char sec[] = "&client_secret=";
	size_t cap = sizeof(grant) + sizeof(sec) + 3 * strlen(client_id)
		     + (secret ? 3 * strlen(secret) : 0) + 1;
	char *body = xmalloc(cap);
	size_t pos;

	memcpy(body, grant, sizeof(grant));
	pos = oauth_form_append(body, sizeof(grant) - 1, client_id);
	if (secret != NULL) {
		memcpy(body + pos, sec, sizeof(sec));
		oauth_form_append(body, pos + sizeof(sec) - 1, secret);
	}
	*size = cap;
	return body;
}

/*
 * oauth_error_text - " (error: description)" from an OAuth error response,
 * or "" when the body is not one. Only the two standard members are
 * quoted, cut short and made printable; anything that contains the client
 * secret is left out.
 */
static void oauth_error_text(const struct http_response *resp, const char *secret,
			     char *buf, size_t size)
{
	const char *err = NULL, *desc = NULL;
	char e[100] = "", d[200] = "";
	json_t *root;

	buf[0] = '\0';
	if (resp->body == NULL
	    || (root = json_loadb(resp->body, resp->len, 0, NULL)) == NULL)
		return;
	if (json_is_object(root)) {
		err = json_string_value(json_object_get(root, "error"));
		desc = json_string_value(json_object_get(root, "error_description"));
	}
	if (secret != NULL && *secret != '\0') {
		if (err != NULL && strstr(err, secret) != NULL)
			err = "(withheld)";
		if (desc != NULL && strstr(desc, secret) != NULL)
			desc = "(withheld)";
	}
	if (err != NULL)
		str_printable(e, sizeof(e), err, strlen(err));
	if (desc != NULL)
		str_printable(d, sizeof(d), desc, strlen(desc));
	/* the secret as the request carried it: URL-encoded in the form, base64 in Basic */
	redact_secret(e, sizeof(e), secret);
	redact_secret(d, sizeof(d), secret);
	if (err != NULL && desc != NULL)
		snprintf(buf, size, " (%s: %s)", e, d);
	else if (err != NULL || desc != NULL)
		snprintf(buf, size, " (%s)", err != NULL ? e : d);
	json_decref(root);
}

/* oauth_lifetime - expires_in in seconds, clamped to OAUTH_LIFETIME_MAX; -1 if absent or invalid */
long oauth_lifetime(const json_t *v)
{
	const char *s;
	char *end;
	long long n;
	double d;

	if (json_is_integer(v)) {
		n = (long long)json_integer_value(v);
	} else if (json_is_real(v)) {
		d = json_real_value(v);
		if (!(d >= 0))		/* negative or NaN */
			return -1;
		n = d > (double)OAUTH_LIFETIME_MAX ? OAUTH_LIFETIME_MAX : (long long)d;
	} else if (json_is_string(v)) {
		s = json_string_value(v);
		errno = 0;
		n = strtoll(s, &end, 10);
		if (end == s || *end != '\0' || (errno == ERANGE && n < 0))
			return -1;
	} else {
		return -1;
	}
	if (n < 0)
		return -1;
	return n > OAUTH_LIFETIME_MAX ? OAUTH_LIFETIME_MAX : (long)n;
}

/* oauth_parse - access_token and expires_in from a 200 response */
static int oauth_parse(const struct http_response *resp, const char *what, const char *url,
		       struct oauth_token *tok, struct outcome *o)
{
	const char *token, *p;
	json_t *root;
	long expires;
	size_t len;

	root = json_loadb(resp->body, resp->len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		dsn_defer(o, "4.4.3", "%s token service %s: response is not a JSON object",
			  what, url);
		return -1;
	}
	token = json_string_value(json_object_get(root, "access_token"));
	if (token == NULL || *token == '\0') {
		json_decref(root);
		dsn_defer(o, "4.4.3", "%s token service %s: no access_token in the response",
			  what, url);
		return -1;
	}
	len = json_string_length(json_object_get(root, "access_token"));
	if (len > OAUTH_TOKEN_MAX) {
		json_decref(root);
		dsn_defer(o, "4.4.3", "%s token service %s: token too large (%zu bytes, "
			  "at most %d)", what, url, len, OAUTH_TOKEN_MAX);
		return -1;
	}
	/* it goes into an HTTP header and the proxy handshake: visible ASCII only */
	for (p = token; (size_t)(p - token) < len; p++) {
		if (*p < 0x21 || *p > 0x7e) {
			json_decref(root);
			dsn_defer(o, "4.4.3", "%s token service %s: malformed access_token "
				  "(control, space or non-ASCII byte)", what, url);
			return -1;
		}
	}
	expires = oauth_lifetime(json_object_get(root, "expires_in"));
	if (expires < 0) {
		log_warn("%s token service %s: no valid expires_in; assuming %d s",
			 what, url, OAUTH_DEFAULT_EXPIRY);
		expires = OAUTH_DEFAULT_EXPIRY;
	}
	tok->access_token = xstrdup(token);
	tok->expires_at = time(NULL) + (time_t)expires;
	json_decref(root);
	log_debug("%s token from %s: expires in %ld s", what, url, expires);
	return 0;
}

/* oauth_tenant_url - the token URL of a subscriber, by subdomain */
char *oauth_tenant_url(const char *token_url, const char *subdomain, char *errbuf,
		       size_t errlen)
{
	const char *host, *end, *dot, *p;
	size_t len = strlen(subdomain);
	int numeric = 1;
	char *url;

	for (p = subdomain; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			break;
	if (len == 0 || len > 63 || *p != '\0' || subdomain[0] == '-' || subdomain[len - 1] == '-') {
		snprintf(errbuf, errlen, "tenant subdomain is not a DNS label");
		return NULL;
	}
	if ((host = strstr(token_url, "://")) == NULL) {
		snprintf(errbuf, errlen, "token URL %s is not an absolute URL", token_url);
		return NULL;
	}
	host += 3;
	end = host + strcspn(host, "/?#");
	if ((p = memchr(host, '@', (size_t)(end - host))) != NULL)
		host = p + 1;
	end = host + strcspn(host, ":/?#");
	for (p = host; p < end; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			numeric = 0;
	dot = memchr(host, '.', (size_t)(end - host));
	if (host[0] == '[' || numeric || dot == NULL || dot == host) {
		snprintf(errbuf, errlen, "token URL %s: the host has no first label to replace "
			 "with the tenant subdomain (an IP address or a single label)", token_url);
		return NULL;
	}
	url = xmalloc(strlen(token_url) + len + 1);
	memcpy(url, token_url, (size_t)(host - token_url));
	memcpy(url + (host - token_url), subdomain, len);
	strcpy(url + (host - token_url) + len, dot);
	return url;
}

/* oauth_token_get - fetch a token for the provider */
int oauth_token_get(const struct oauth_client *client, const struct http_options *http,
		    const char *what, struct oauth_token *tok, struct outcome *o)
{
	return oauth_token_fetch(client, NULL, http, what, tok, o);
}

/*
 * oauth_tenant_request - the token URL for a tenant (NULL = the provider)
 * and its X-zid header in zid ("" when none); NULL with the outcome when
 * the tenant's subdomain or id cannot be used
 */
static char *oauth_tenant_request(const struct oauth_client *client,
				  const struct oauth_tenant *tenant, const char *what, char *zid,
				  size_t zsize, struct outcome *o)
{
	const char *p;
	char *url, *base, why[320];

	if (tenant != NULL && tenant->subdomain != NULL && tenant->subdomain[0] != '\0') {
		base = oauth_tenant_url(client->token_url, tenant->subdomain, why, sizeof(why));
		if (base == NULL) {
			dsn_config(o, "%s token for tenant %s: %s", what, tenant->subdomain, why);
			return NULL;
		}
		url = oauth_url(base);
		free(base);
	} else {
		url = oauth_url(client->token_url);
	}
	zid[0] = '\0';
	if (tenant != NULL && tenant->zid != NULL && tenant->zid[0] != '\0') {
		for (p = tenant->zid; *p > 0x20 && *p < 0x7f; p++)
			;
		if (*p != '\0' || strlen(tenant->zid) > 200) {
			dsn_config(o, "%s token: the tenant id is not a valid header value", what);
			free(url);
			return NULL;
		}
		snprintf(zid, zsize, "X-zid: %s", tenant->zid);
	}
	return url;
}

/* oauth_token_fetch - fetch a token for a tenant (NULL = the provider) */
int oauth_token_fetch(const struct oauth_client *client, const struct oauth_tenant *tenant,
		      const struct http_options *http, const char *what,
		      struct oauth_token *tok, struct outcome *o)
{
	const char *headers[4] = {
		"Content-Type: application/x-www-form-urlencoded",
		"Accept: application/json",
		NULL,
		NULL,
	};
	struct http_options opt = *http;
	struct http_response resp;
	int x509 = client->cert_pem != NULL && client->key_pem != NULL;
	const char *secret = x509 ? NULL : client->client_secret;
	char *url, *body, why[320], zid[256];
	size_t body_size;
	int rc, ret = -1;

	tok->access_token = NULL;
	tok->expires_at = 0;
	if (!x509 && secret == NULL) {
		dsn_config(o, "%s binding has neither a client secret nor a client "
			   "certificate", what);
		return -1;
	}
	if ((url = oauth_tenant_request(client, tenant, what, zid, sizeof(zid), o)) == NULL)
		return -1;
	if (zid[0] != '\0')
		headers[2] = zid;
	if (x509) {
		opt.client_cert_pem = client->cert_pem;
		opt.client_key_pem = client->key_pem;
	} else {
		opt.client_cert_pem = NULL;
		opt.client_key_pem = NULL;
	}
	body = oauth_form(client->client_id, secret, &body_size);
	rc = http_request(&opt, "POST", url, headers, body, NULL, NULL, &resp);
	explicit_bzero(body, body_size);
	free(body);
	if (rc == 0 && resp.status == 401 && secret != NULL) {
		/* some token services want the client in HTTP Basic, not in the form */
		log_debug("%s token service %s: 401 to the form, trying HTTP Basic", what, url);
		http_response_free(&resp);
		rc = http_request(&opt, "POST", url, headers, "grant_type=client_credentials",
				  client->client_id, secret, &resp);
	}

	if (rc < 0) {
		http_fail(o, &resp, "%s token service %s", what, url);
	} else if (resp.status == 200) {
		ret = oauth_parse(&resp, what, url, tok, o);
	} else if (resp.status == 400 || resp.status == 401 || resp.status == 403) {
		oauth_error_text(&resp, secret, why, sizeof(why));
		dsn_auth(o, "%s token service %s: HTTP %ld%s", what, url,
			 resp.status, why);
	} else {
		oauth_error_text(&resp, secret, why, sizeof(why));
		dsn_defer(o, "4.4.3", "%s token service %s: HTTP %ld%s", what, url,
			  resp.status, why);
	}
	metrics_inc_label(ret == 0 ? METRIC_TOKEN_FETCHES : METRIC_TOKEN_FETCH_ERRORS, what);
	http_response_free(&resp);
	free(url);
	return ret;
}

/* the token being fetched under the cache's lock */
struct oauth_fetch {
	const struct oauth_client *client;
	const struct oauth_tenant *tenant;
	const struct http_options *http;
	const char *what;
	int margin;		/* token_refresh_margin */
};

/* oauth_fetch_cb - cache_fetch_fn: a new token as {"access_token","expires_at"} */
static int oauth_fetch_cb(void *arg, struct cache_entry *fresh, struct outcome *o)
{
	struct oauth_fetch *f = arg;
	struct oauth_token tok;
	time_t now = time(NULL), life, margin;

	if (oauth_token_fetch(f->client, f->tenant, f->http, f->what, &tok, o) < 0) {
		http_out_of_time(f->http, o);
		return -1;
	}
	life = tok.expires_at - now;
	margin = f->margin < life / 2 ? f->margin : life / 2;
	fresh->data = json_pack("{s:s, s:I}", "access_token", tok.access_token, "expires_at",
				(json_int_t)tok.expires_at);
	fresh->expires_at = tok.expires_at - margin;
	fresh->stale_until = 0;		/* an expired token never stands in */
	oauth_token_free(&tok);
	if (fresh->data == NULL) {
		dsn_local(o, "%s token: out of memory", f->what);
		return -1;
	}
	return 0;
}

/* the cache coordinates of one client's token for one tenant */
struct oauth_slot {
	struct oauth_tenant tenant;
	char key[CACHE_KEY_SIZE];
	char what[300];
	char about[700];	/* the key's facts, for `btprelay cache list` */
	struct cache cache;
};

/*
 * oauth_slot_open - tenant, cache key and description for flags; -1 with
 * the outcome set when a subscriber is wanted and none is configured
 */
static int oauth_slot_open(const struct config *cfg, const struct oauth_client *client,
			   const char *what, unsigned flags, struct oauth_slot *s,
			   struct outcome *o)
{
	const char *parts[4];
	char cert[CACHE_KEY_SIZE], tenant[300];

	memset(s, 0, sizeof(*s));
	tenant[0] = '\0';
	if (flags & OAUTH_SUBSCRIBER) {
		if (cfg->tenant_subdomain != NULL && cfg->tenant_subdomain[0] != '\0') {
			s->tenant.subdomain = cfg->tenant_subdomain;
			snprintf(tenant, sizeof(tenant), "subdomain:%s", cfg->tenant_subdomain);
		} else if (cfg->tenant_id != NULL && cfg->tenant_id[0] != '\0') {
			s->tenant.zid = cfg->tenant_id;
			snprintf(tenant, sizeof(tenant), "zid:%s", cfg->tenant_id);
		} else {
			dsn_config(o, "%s token for a subscriber tenant, but neither "
				   "tenant_subdomain nor tenant_id is configured", what);
			return -1;
		}
	}
	snprintf(s->what, sizeof(s->what), "%s (%s%s)", what,
		 tenant[0] ? "subscriber " : "provider", tenant[0] ? tenant : "");
	cert[0] = '\0';
	if (client->cert_pem != NULL)
		cache_key(cert, "cert", (const char *const *)&client->cert_pem, 1);
	parts[0] = client->token_url;
	parts[1] = client->client_id;
	parts[2] = tenant;
	parts[3] = cert;
	cache_key(s->key, "token", parts, 4);
	snprintf(s->about, sizeof(s->about), "token URL %s, client %s%s",
		 client->token_url ? client->token_url : "(none)",
		 client->client_id ? client->client_id : "(none)",
		 client->cert_pem != NULL ? ", X.509 certificate" : "");
	cache_open(&s->cache, cfg->cache_dir);
	return 0;
}

/* oauth_lock_deadline - wait for another process's fetch as long as one fetch can take */
static double oauth_lock_deadline(const struct http_options *http)
{
	double until = conn_now() + http_budget(http);

	return http->deadline > 0 && http->deadline < until ? http->deadline : until;
}

/* oauth_visible - a non-empty string of visible ASCII, as a token must be */
static int oauth_visible(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

/* oauth_token_cached - from the cache, else fetched once for every process */
int oauth_token_cached(const struct config *cfg, const struct oauth_client *client,
		       const struct http_options *http, const char *what, unsigned flags,
		       struct oauth_token *tok, struct outcome *o)
{
	struct oauth_fetch f;
	struct oauth_slot s;
	struct cache_request req;
	struct cache_entry e;
	const char *value;
	time_t expires;
	int attempt, rc = -1;

	tok->access_token = NULL;
	tok->expires_at = 0;
	if (oauth_slot_open(cfg, client, what, flags, &s, o) < 0)
		return -1;
	f.client = client;
	f.tenant = (flags & OAUTH_SUBSCRIBER) ? &s.tenant : NULL;
	f.http = http;
	f.what = what;
	f.margin = cfg->token_refresh_margin;
	memset(&req, 0, sizeof(req));
	req.key = s.key;
	req.kind = "token";
	req.what = s.what;
	req.about = s.about;
	req.refresh = (flags & OAUTH_REFRESH) != 0;
	req.fail_ttl = cfg->http_timeout;
	for (attempt = 0; attempt < 2 && rc < 0; attempt++) {
		req.lock_deadline = oauth_lock_deadline(http);
		if (cache_get(&s.cache, &req, oauth_fetch_cb, &f, &e, o) < 0)
			break;
		if (e.hit)
			metrics_inc_label(METRIC_TOKEN_CACHE_HITS, what);
		value = json_string_value(json_object_get(e.data, "access_token"));
		expires = json_is_integer(json_object_get(e.data, "expires_at"))
			  ? (time_t)json_integer_value(json_object_get(e.data, "expires_at")) : 0;
		/* a token just fetched is handed out even when it lives for 0 s */
		if (oauth_visible(value) && (expires > time(NULL) || !e.hit)) {
			tok->access_token = xstrdup(value);
			tok->expires_at = expires;
			rc = 0;
		} else if (attempt == 0) {
			/* a well-formed file with a useless token: replace it */
			log_warn("token cache: %s: cached entry has no usable token; fetching one",
				 s.what);
			req.refresh = 1;
		} else {
			dsn_defer(o, "4.4.3", "%s token: no usable token from the cache or the "
				  "token service", what);
		}
		cache_entry_free(&e);
	}
	cache_close(&s.cache);
	return rc;
}

/* oauth_same_token - cache_drop_if match: the entry holds the refused token */
static int oauth_same_token(void *arg, const json_t *data)
{
	const char *value = json_string_value(json_object_get(data, "access_token"));

	return value != NULL && strcmp(value, (const char *)arg) == 0;
}

/* oauth_token_reject - drop a refused token from the cache */
void oauth_token_reject(const struct config *cfg, const struct oauth_client *client,
			const struct http_options *http, const char *what, unsigned flags,
			const struct oauth_token *tok)
{
	struct oauth_slot s;
	struct outcome o;

	if (tok->access_token == NULL || oauth_slot_open(cfg, client, what, flags, &s, &o) < 0)
		return;
	if (cache_drop_if(&s.cache, s.key, oauth_same_token, tok->access_token,
			  oauth_lock_deadline(http)))
		log_debug("token cache drop: %s: the refused token", s.what);
	cache_close(&s.cache);
}

/* oauth_token_missing - no token in the cache at all, and a cache to put one in */
int oauth_token_missing(const struct config *cfg, const struct oauth_client *client,
			const char *what, unsigned flags)
{
	struct oauth_slot s;
	struct outcome o;
	int missing;

	if (oauth_slot_open(cfg, client, what, flags, &s, &o) < 0)
		return 0;
	missing = s.cache.dir != NULL && !cache_exists(&s.cache, s.key);
	cache_close(&s.cache);
	return missing;
}

/* oauth_token_free - wipe and release the token; safe twice */
void oauth_token_free(struct oauth_token *tok)
{
	if (tok->access_token != NULL) {
		explicit_bzero(tok->access_token, strlen(tok->access_token));
		free(tok->access_token);
	}
	tok->access_token = NULL;
	tok->expires_at = 0;
}
