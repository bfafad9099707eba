/*
 * dest_service - the Destination Service client of the lookup chain:
 * "Find Destination" ($skipTokenRetrieval=true unless the destination's
 * Authentication is an OAuth2 kind, whose token then comes along), for
 * the provider or a subscriber tenant per destination_selection, with the
 * destination token (oauth.c).
 *
 * Answers are cached (cache.c) under the name, the service URI, the
 * binding's token URL and client id, the tenant and the selection, as
 * {"properties", "subscriber", "auth_token", "certificates"}: for
 * destination_cache_ttl (shorter when an OAuth token inside expires
 * sooner) and, past that, for destination_stale_ttl while the service
 * cannot be reached, times out or fails with a 5xx (OUTCOME_TRANSIENT);
 * never after a 404, which is an answer (OUTCOME_NOT_FOUND). Tenants:
 * subscriberFirst asks with the subscriber's token and, on 404, with the
 * provider's; the tenant that answered is kept in tenant_is_subscriber, so
 * the Connectivity token is fetched for the same tenant and reaches that
 * tenant's Cloud Connector. Failures: 401 (after one new token) and 403
 * defer 4.7.0 (OUTCOME_AUTH), unreachable, timeout, 5xx 4.4.3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>

#include "cache.h"
#include "conn.h"
#include "dest_props.h"
#include "dest_service.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "oauth.h"
#include "redact.h"
#include "util.h"

#define DEST_FIND_PATH "/destination-configuration/v1/destinations/"

/* dest_urlencode - a path segment, percent-encoded; newly allocated */
static char *dest_urlencode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(3 * strlen(s) + 1), *q = out;
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
		    || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'
		    || *p == '~') {
			*q++ = (char)*p;
		} else {
			*q++ = '%';
			*q++ = hex[*p >> 4];
			*q++ = hex[*p & 15];
		}
	}
	*q = '\0';
	return out;
}

/* dest_service_error - " (ErrorMessage)" from a Destination Service error body, or "" */
static void dest_service_error(const struct http_response *resp, const struct oauth_token *tok,
			       char *buf, size_t size)
{
	const char *msg = NULL;
	char m[200];
	json_t *root;

	buf[0] = '\0';
	if (resp->body == NULL
	    || (root = json_loadb(resp->body, resp->len, 0, NULL)) == NULL)
		return;
	if (json_is_object(root))
		msg = json_string_value(json_object_get(root, "ErrorMessage"));
	if (msg != NULL) {
		str_printable(m, sizeof(m), msg, strlen(msg));
		redact_secret(m, sizeof(m), tok->access_token);	/* a service that echoes the token */
		snprintf(buf, size, " (%s)", m);
	}
	json_decref(root);
}

/* one Destination Service lookup: what the cache's fetch callback needs */
struct dest_lookup {
	const struct config *cfg;
	const struct bindings *b;
	const char *name;
	struct http_options http;
	char tenant[300];	/* "subdomain:x", "zid:y", "" = none configured */
};

/* dest_is_oauth - whether an Authentication value is one of the OAuth2* kinds */
static int dest_is_oauth(const json_t *conf)
{
	const char *auth = json_string_value(json_object_get(conf, "Authentication"));

	return auth != NULL && strncasecmp(auth, "OAuth2", 6) == 0;
}

/*
 * dest_get_once - one GET of the find URL with a token. Returns 0 with
 * *root (the 200 response), or -1 with the outcome: OUTCOME_NOT_FOUND on
 * 404, OUTCOME_TOKEN_REFUSED on 401.
 */
static int dest_get_once(struct dest_lookup *l, const char *url, size_t blen,
			 const struct oauth_token *tok, json_t **root, struct outcome *o)
{
	struct http_response resp;
	char why[256];
	int ret = -1;

	*root = NULL;
	/* texts name the service without path and query */
	metrics_inc(METRIC_DEST_FETCHES);
	if (http_get_bearer(&l->http, url, tok->access_token, &resp) < 0) {
		http_fail(o, &resp, "Destination Service %.*s", (int)blen, url);
	} else if (resp.status == 200) {
		*root = json_loadb(resp.body, resp.len, 0, NULL);
		if (json_is_object(json_object_get(*root, "destinationConfiguration"))) {
			ret = 0;
		} else {
			dest_json_free(*root);
			*root = NULL;
			dsn_defer(o, "4.4.3", "Destination Service %.*s: find %s: response has no "
				  "destinationConfiguration object", (int)blen, url, l->name);
		}
	} else if (resp.status == 404) {
		dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found in the "
			 "Destination Service", l->name);
	} else if (resp.status == 401) {
		dest_service_error(&resp, tok, why, sizeof(why));
		dsn_fail(o, OUTCOME_TOKEN_REFUSED, "4.7.0", "Destination Service %.*s: find %s: "
			 "HTTP 401%s", (int)blen, url, l->name, why);
	} else if (resp.status == 403) {
		dest_service_error(&resp, tok, why, sizeof(why));
		dsn_auth(o, "Destination Service %.*s: find %s: HTTP 403%s", (int)blen,
			 url, l->name, why);
	} else {
		/* 5xx (after the retries) and 429 may go away; 4xx we cannot act on will not */
		dest_service_error(&resp, tok, why, sizeof(why));
		dsn_fail(o, resp.status < 500 && resp.status != 429 ? OUTCOME_REFUSED
			 : OUTCOME_TRANSIENT, "4.4.3", "Destination Service %.*s: find %s: HTTP %ld%s",
			 (int)blen, url, l->name, resp.status, why);
	}
	http_response_free(&resp);
	return ret;
}

/* the Find request that dest_service_call() makes with a token */
struct dest_find_call {
	struct dest_lookup *l;
	char *url;			/* with ?$skipTokenRetrieval=true until an OAuth2* answer */
	size_t blen;			/* the length of the service's base URL in url */
	json_t **root;
};

/*
 * dest_find_get - dest_service_get_fn: Find; an OAuth2* destination is
 * fetched again with its tokens, without $skipTokenRetrieval (for good:
 * a second try after a 401 asks for the tokens at once)
 */
static int dest_find_get(void *arg, const struct oauth_token *tok, struct outcome *o)
{
	struct dest_find_call *f = arg;
	char *query = strchr(f->url + f->blen, '?');
	int rc = dest_get_once(f->l, f->url, f->blen, tok, f->root, o);

	if (rc == 0 && query != NULL
	    && dest_is_oauth(json_object_get(*f->root, "destinationConfiguration"))) {
		dest_json_free(*f->root);
		*query = '\0';
		rc = dest_get_once(f->l, f->url, f->blen, tok, f->root, o);
	}
	return rc;
}

/*
 * dest_find - Find for one tenant (flags: OAUTH_SUBSCRIBER or 0), a 401
 * tried once more with a new token (dest_service_call). Returns 0 with
 * *root, or -1 with the outcome (OUTCOME_NOT_FOUND on 404).
 */
static int dest_find(struct dest_lookup *l, unsigned flags, json_t **root, struct outcome *o)
{
	const char *base = l->b->destination_uri;
	struct dest_find_call f = { l, NULL, strlen(base), root };
	char *enc;
	int rc;

	*root = NULL;
	while (f.blen > 0 && base[f.blen - 1] == '/')
		f.blen--;
	enc = dest_urlencode(l->name);
	f.url = xmalloc(f.blen + strlen(DEST_FIND_PATH) + strlen(enc) + 32);
	sprintf(f.url, "%.*s%s%s?$skipTokenRetrieval=true", (int)f.blen, base, DEST_FIND_PATH, enc);
	free(enc);
	rc = dest_service_call(l->cfg, l->b, &l->http, flags, dest_find_get, &f, o);
	free(f.url);
	return rc;
}

int dest_service_call(const struct config *cfg, const struct bindings *b,
		      const struct http_options *http, unsigned flags, dest_service_get_fn get,
		      void *arg, struct outcome *o)
{
	struct oauth_token tok;
	int attempt, rc = -1;

	for (attempt = 0; attempt < 2; attempt++) {
		if (oauth_token_cached(cfg, &b->destination, http, "destination", flags, &tok, o) < 0)
			return -1;
		rc = get(arg, &tok, o);
		if (rc < 0 && o->kind == OUTCOME_TOKEN_REFUSED && attempt == 0) {
			log_info("Destination Service refused the destination token (HTTP 401); "
				 "fetching a new one");
			oauth_token_reject(cfg, &b->destination, http, "destination", flags, &tok);
		}
		oauth_token_free(&tok);
		if (rc == 0 || o->kind != OUTCOME_TOKEN_REFUSED)
			break;
	}
	return rc;
}

void dest_service_tenant(const struct config *cfg, char *buf, size_t size)
{
	if (cfg->tenant_subdomain != NULL && cfg->tenant_subdomain[0] != '\0')
		snprintf(buf, size, "subdomain:%s", cfg->tenant_subdomain);
	else if (cfg->tenant_id != NULL && cfg->tenant_id[0] != '\0')
		snprintf(buf, size, "zid:%s", cfg->tenant_id);
	else if (size > 0)
		buf[0] = '\0';
}

/*
 * dest_auth_token - authTokens[0] of a Find response as the cache keeps
 * it: {"type","value","expires_at"} or {"error"}; NULL when there is none
 */
static json_t *dest_auth_token(const json_t *root, const char *name)
{
	const json_t *t = json_array_get(json_object_get(root, "authTokens"), 0);
	const char *type = json_string_value(json_object_get(t, "type"));
	const char *value = json_string_value(json_object_get(t, "value"));
	const char *error = json_string_value(json_object_get(t, "error"));
	long in = oauth_lifetime(json_object_get(t, "expires_in"));
	char text[300];
	const char *p;

	if (!json_is_object(t))
		return NULL;
	if (error != NULL) {
		str_printable(text, sizeof(text), error, strlen(error));
		log_warn("destination %s: the Destination Service could not get its token: %s",
			 name, text);
		return json_pack("{s:s}", "error", text);
	}
	for (p = value; p != NULL && *p > 0x20 && *p < 0x7f; p++)
		;
	if (value == NULL || *value == '\0' || *p != '\0' || type == NULL
	    || strpbrk(type, "\r\n") != NULL)
		return json_pack("{s:s}", "error", "malformed authTokens entry");
	return json_pack("{s:s, s:s, s:I}", "type", type, "value", value, "expires_at",
			 (json_int_t)(in >= 0 ? time(NULL) + in : 0));
}

/*
 * dest_find_tenants - Find for the tenants destination_selection names, in
 * its order, until one has the destination. Returns 0 with *root (the
 * response) and *subscriber (whether the subscriber's tenant answered),
 * or -1 with the outcome: OUTCOME_NOT_FOUND when every tenant said 404.
 */
static int dest_find_tenants(struct dest_lookup *l, json_t **root, int *subscriber,
			     struct outcome *o)
{
	const struct config *cfg = l->cfg;
	unsigned order[2];
	size_t n = 0, i;
	int rc = -1, missing = 1;

	switch (cfg->destination_selection) {
	case DEST_SELECT_ALWAYS_PROVIDER:
		order[n++] = 0;
		break;
	case DEST_SELECT_ALWAYS_SUBSCRIBER:
		if (!config_has_tenant(cfg)) {
			dsn_config(o, "destination_selection is alwaysSubscriber, but neither "
				   "tenant_subdomain nor tenant_id is configured");
			return -1;
		}
		order[n++] = OAUTH_SUBSCRIBER;
		break;
	case DEST_SELECT_SUBSCRIBER_FIRST:
	default:
		if (config_has_tenant(cfg))
			order[n++] = OAUTH_SUBSCRIBER;
		order[n++] = 0;
		break;
	}
	for (i = 0; i < n && missing; i++) {
		rc = dest_find(l, order[i], root, o);
		*subscriber = order[i] == OAUTH_SUBSCRIBER;
		missing = rc < 0 && o->kind == OUTCOME_NOT_FOUND;
		if (missing && i + 1 < n)
			log_debug("destination %s: not found for the subscriber tenant; asking for "
				  "the provider's", l->name);
	}
	if (missing) {
		if (n == 2 || order[0] == OAUTH_SUBSCRIBER)
			dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found in the "
				 "Destination Service (%s)", l->name, n == 2
				 ? "subscriber tenant nor provider" : "subscriber tenant");
		else
			dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found in the "
				 "Destination Service", l->name);
		return -1;
	}
	if (rc < 0)
		http_out_of_time(&l->http, o);
	return rc;
}

/*
 * dest_entry_expiry - fresh for destination_cache_ttl, standing in for
 * destination_stale_ttl more; an OAuth token inside shortens both to its
 * own life less token_refresh_margin (the Find answer carries the token
 * with its expires_in), and a token the service could not get means
 * "ask again next time"
 */
static void dest_entry_expiry(const struct config *cfg, const json_t *token,
			      struct cache_entry *fresh)
{
	time_t now = time(NULL), tok_exp, margin;

	fresh->expires_at = now + cfg->destination_cache_ttl;
	fresh->stale_until = fresh->expires_at + cfg->destination_stale_ttl;
	if (token != NULL && json_object_get(token, "error") != NULL) {
		fresh->expires_at = fresh->stale_until = 0;
		return;
	}
	tok_exp = (time_t)json_integer_value(json_object_get(token, "expires_at"));
	if (token == NULL || tok_exp <= 0)
		return;
	margin = cfg->token_refresh_margin;
	if (margin > (tok_exp - now) / 2)
		margin = (tok_exp - now) / 2;
	if (tok_exp - margin < fresh->expires_at)
		fresh->expires_at = tok_exp - margin;
	if (tok_exp - margin < fresh->stale_until)
		fresh->stale_until = tok_exp - margin;
}

/*
 * dest_fetch_cb - cache_fetch_fn: Find for the tenants of
 * destination_selection; only what passes the checks is cached, as
 * {"properties", "subscriber", "auth_token", "certificates"}
 */
static int dest_fetch_cb(void *arg, struct cache_entry *fresh, struct outcome *o)
{
	struct dest_lookup *l = arg;
	struct mail_destination check;
	json_t *root = NULL, *conf, *token, *certs;
	int subscriber = 0;

	if (dest_find_tenants(l, &root, &subscriber, o) < 0)
		return -1;
	conf = json_object_get(root, "destinationConfiguration");
	if (dest_from_properties(conf, "Destination Service", &check, o) < 0) {
		dest_json_free(root);
		return -1;
	}
	if (dest_certificates(json_object_get(root, "certificates"), &check, o) < 0) {
		dest_free(&check);
		dest_json_free(root);
		return -1;
	}
	certs = dest_certificates_json(&check);	/* without white space */
	dest_free(&check);
	token = dest_is_oauth(conf) ? dest_auth_token(root, l->name) : NULL;
	dest_entry_expiry(l->cfg, token, fresh);
	/* a copy: the response is wiped */
	fresh->data = json_pack("{s:o, s:b}", "properties", json_deep_copy(conf), "subscriber",
				subscriber);
	dest_json_free(root);
	if (fresh->data == NULL) {
		dest_json_free(token);
		dest_json_free(certs);
		dsn_local(o, "destination %s: out of memory", l->name);
		return -1;
	}
	if (token != NULL)
		json_object_set_new(fresh->data, "auth_token", token);
	if (certs != NULL)
		json_object_set_new(fresh->data, "certificates", certs);
	return 0;
}

/* dest_take_entry - fill d from a cached or fetched entry; -1 when the data is unusable */
static int dest_take_entry(const struct cache_entry *e, struct mail_destination *d,
			   struct outcome *o)
{
	const json_t *props = json_object_get(e->data, "properties");
	const json_t *tok = json_object_get(e->data, "auth_token");
	const char *s;

	if (!json_is_object(props) || dest_from_properties(props, "Destination Service", d, o) < 0)
		return -1;
	if (dest_certificates(json_object_get(e->data, "certificates"), d, o) < 0) {
		dest_free(d);
		return -1;
	}
	d->tenant_is_subscriber = json_is_true(json_object_get(e->data, "subscriber"));
	d->cache_age = e->hit ? (long)(time(NULL) - e->stored_at) : -1;
	if (e->hit)
		metrics_inc(METRIC_DEST_CACHE_HITS);
	d->stale = e->stale;
	if (json_is_object(tok)) {
		if ((s = json_string_value(json_object_get(tok, "type"))) != NULL)
			d->oauth_token.type = xstrdup(s);
		if ((s = json_string_value(json_object_get(tok, "value"))) != NULL)
			d->oauth_token.value = xstrdup(s);
		if ((s = json_string_value(json_object_get(tok, "error"))) != NULL)
			d->oauth_token.error = xstrdup(s);
		if (json_is_integer(json_object_get(tok, "expires_at")))
			d->oauth_token.expires_at =
				(time_t)json_integer_value(json_object_get(tok, "expires_at"));
	}
	return 0;
}

/* dest_from_service - name in the Destination Service, through the cache */
int dest_from_service(const struct config *cfg, const struct bindings *b, const char *name,
		      double deadline, struct mail_destination *d, struct outcome *o)
{
	struct dest_lookup l;
	struct cache cache;
	struct cache_request req;
	struct cache_entry e;
	const char *parts[6];
	char key[CACHE_KEY_SIZE], what[600], about[1200];
	double until;
	int attempt, rc = -1;

	memset(&l, 0, sizeof(l));
	l.cfg = cfg;
	l.b = b;
	l.name = name;
	http_options_init(&l.http, cfg, deadline);
	dest_service_tenant(cfg, l.tenant, sizeof(l.tenant));

	parts[0] = name;
	parts[1] = b->destination_uri;
	parts[2] = b->destination.token_url;
	parts[3] = b->destination.client_id;
	parts[4] = l.tenant;
	parts[5] = config_selection_name(cfg->destination_selection);
	cache_key(key, "destination", parts, 6);
	snprintf(what, sizeof(what), "%s (%s%s%s)", name, parts[5], l.tenant[0] ? ", " : "",
		 l.tenant);
	/* for `btprelay cache list`: bindings change, and a new entry appears beside the old */
	snprintf(about, sizeof(about), "Destination Service %s, client %s",
		 b->destination_uri ? b->destination_uri : "(none)",
		 b->destination.client_id ? b->destination.client_id : "(none)");
	memset(&req, 0, sizeof(req));
	req.key = key;
	req.kind = "destination";
	req.what = what;
	req.about = about;
	req.fail_ttl = cfg->http_timeout;
	cache_open(&cache, cfg->cache_dir);
	for (attempt = 0; attempt < 2 && rc < 0; attempt++) {
		/* a token and a Find, each with its retries */
		until = conn_now() + 2 * http_budget(&l.http);
		req.lock_deadline = deadline > 0 && deadline < until ? deadline : until;
		if ((rc = cache_get(&cache, &req, dest_fetch_cb, &l, &e, o)) < 0)
			break;
		rc = dest_take_entry(&e, d, o);
		if (rc < 0 && e.hit) {
			log_warn("destination cache: %s: cached entry unusable; asking the "
				 "Destination Service", what);
			req.refresh = 1;
		}
		cache_entry_free(&e);
		if (rc < 0 && !req.refresh)
			break;
	}
	cache_close(&cache);
	return rc;
}
