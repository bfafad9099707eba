/*
 * routes - the routing table of Postfix's transport_maps and relay_domains,
 * from BTPRELAY_ROUTES, routes_file and the destinations of the cockpit
 * (routes.h says which wins and how each fails).
 *
 * The cockpit's routes are one cache entry ("routes"), keyed like a
 * destination by the Destination Service, its client and the tenant
 * choice: one process lists, the others read the list; an expired entry
 * stands in while the service fails. routemap.c writes the table.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "conn.h"
#include "dest_service.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
#include "routes.h"
#include "util.h"

#define ROUTES_LIST_PATH "/destination-configuration/v1/"
#define ROUTES_FILE_MAX (1024 * 1024)
#define ROUTES_NAME_MAX 200

/* routes_source_name - "env", "file", "cockpit" */
const char *routes_source_name(enum route_source source)
{
	static const char *const names[] = { "env", "file", "cockpit" };

	return source <= ROUTE_COCKPIT ? names[source] : "?";
}

/* routes_domain_norm - a domain as the map keys it */
int routes_domain_norm(const char *in, size_t len, char *out, size_t size, const char **why)
{
	size_t i, n = 0, label = 0;
	unsigned char ch;

	*why = "empty";
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || (len == 1 && in[0] == '.'))
		return -1;
	*why = "too long";
	if (len > ROUTES_DOMAIN_MAX + 1 || len + 1 > size)
		return -1;
	for (i = 0; i < len; i++) {
		ch = (unsigned char)in[i];
		if (ch == '.') {
			*why = "empty label";
			if (label == 0 && i > 0)
				return -1;
			label = 0;
		} else if (isalnum(ch) || ch == '-' || ch == '_') {
			*why = "label longer than 63";
			if (++label > 63 || ch >= 0x80)
				return -1;
		} else {
			*why = "not a domain name (letters, digits, '-', '.')";
			return -1;
		}
		out[n++] = (char)tolower(ch);
	}
	*why = "empty label";
	if (label == 0)
		return -1;
	out[n] = '\0';
	return 0;
}

/* routes_name_ok - a destination name usable in a map value */
int routes_name_ok(const char *name)
{
	size_t n = 0;

	for (; name[n] != '\0'; n++)
		if (!isalnum((unsigned char)name[n]) && strchr("._-", name[n]) == NULL)
			return 0;
	return n > 0 && n <= ROUTES_NAME_MAX;
}

/* route_add - append one route; -1 when the table is full */
static int route_add(struct route_table *t, const char *domain, const char *destination,
		     enum route_source source, const char *origin)
{
	if (t->n >= ROUTES_MAX)
		return -1;
	/* capacity 16, then doubled whenever n reaches a power of two */
	if (t->n == 0 || (t->n >= 16 && (t->n & (t->n - 1)) == 0)) {
		size_t cap = t->n == 0 ? 16 : t->n * 2;
		struct route *v = realloc(t->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		t->v = v;
	}
	t->v[t->n].domain = xstrdup(domain);
	t->v[t->n].destination = xstrdup(destination);
	t->v[t->n].source = source;
	t->v[t->n].origin = xstrdup(origin);
	t->n++;
	return 0;
}

/* routes_parse_spec - the BTPRELAY_ROUTES or routes_file format */
int routes_parse_spec(struct route_table *t, const char *text, enum route_source source,
		      const char *where, struct outcome *o)
{
	const char *p = text, *end, *eq, *d0, *d1, *n0, *n1, *why;
	char domain[ROUTES_DOMAIN_MAX + 2], name[ROUTES_NAME_MAX + 1], origin[600], q[80];
	unsigned line = 1, entry = 0;

	while (*p != '\0') {
		end = p + strcspn(p, source == ROUTE_FILE ? "\n" : ",\n");
		if (source == ROUTE_FILE && memchr(p, '#', (size_t)(end - p)) != NULL)
			n1 = memchr(p, '#', (size_t)(end - p));
		else
			n1 = end;
		while (n1 > p && isspace((unsigned char)n1[-1]))
			n1--;
		d0 = p;
		while (d0 < n1 && isspace((unsigned char)*d0))
			d0++;
		if (d0 < n1) {
			entry++;
			str_printable(q, sizeof(q), d0, (size_t)(n1 - d0));
			if (source == ROUTE_FILE)
				snprintf(origin, sizeof(origin), "%s:%u", where, line);
			else
				snprintf(origin, sizeof(origin), "%s", where);
			eq = memchr(d0, '=', (size_t)(n1 - d0));
			d1 = eq != NULL ? eq : d0 + strcspn(d0, " \t");
			if (d1 > n1)
				d1 = n1;
			n0 = d1 + (eq != NULL);
			while (n0 < n1 && isspace((unsigned char)*n0))
				n0++;
			while (d1 > d0 && isspace((unsigned char)d1[-1]))
				d1--;
			if (n0 >= n1) {
				dsn_config(o, "%s: entry %u \"%s\": expected "
					   "domain=destination", origin, entry, q);
				return -1;
			}
			if (routes_domain_norm(d0, (size_t)(d1 - d0), domain, sizeof(domain),
					       &why) < 0) {
				dsn_config(o, "%s: entry %u \"%s\": bad domain: %s", origin,
					   entry, q, why);
				return -1;
			}
			if ((size_t)(n1 - n0) > ROUTES_NAME_MAX) {
				dsn_config(o, "%s: entry %u \"%s\": destination name too "
					   "long", origin, entry, q);
				return -1;
			}
			memcpy(name, n0, (size_t)(n1 - n0));
			name[n1 - n0] = '\0';
			if (!routes_name_ok(name)) {
				dsn_config(o, "%s: entry %u \"%s\": bad destination name "
					   "(letters, digits, '.', '_', '-')", origin, entry, q);
				return -1;
			}
			if (route_add(t, domain, name, source, origin) < 0) {
				dsn_config(o, "%s: more than %d routes", where, ROUTES_MAX);
				return -1;
			}
		}
		if (*end == '\n')
			line++;
		p = *end != '\0' ? end + 1 : end;
	}
	return 0;
}

/* routes_parse_list - one list answer into the cache's form */
int routes_parse_list(const char *body, size_t len, const char *level, json_t *acc,
		      struct outcome *o)
{
	json_t *root, *item, *have;
	const char *name, *type, *domains;
	size_t i, j;

	root = json_loadb(body, len, 0, NULL);
	if (!json_is_array(root)) {
		if (root != NULL)
			json_wipe(root);
		json_decref(root);
		dsn_defer(o, "4.4.3", "Destination Service: %sDestinations: the answer is not "
			  "a JSON array", level);
		return -1;
	}
	json_array_foreach(root, i, item) {
		name = json_string_value(json_object_get(item, "Name"));
		domains = json_string_value(json_object_get(item, ROUTES_PROPERTY));
		if (domains == NULL)
			domains = json_string_value(json_object_get(item, ROUTES_PROPERTY_MAIL));
		if (name == NULL || domains == NULL)
			continue;
		json_array_foreach(acc, j, have)
			if (strcmp(json_string_value(json_object_get(have, "name")), name) == 0)
				break;
		if (j < json_array_size(acc))
			continue;	/* the same name from an earlier list wins */
		type = json_string_value(json_object_get(item, "Type"));
		json_array_append_new(acc, json_pack("{s:s, s:s, s:s, s:s}", "name", name,
						     "type", type != NULL ? type : "", "level",
						     level, "domains", domains));
	}
	json_wipe(root);	/* every destination's password is in there */
	json_decref(root);
	return 0;
}

/* routes_add_cockpit - the routes of a cached list */
size_t routes_add_cockpit(struct route_table *t, const json_t *list)
{
	const json_t *item;
	const char *name, *type, *level, *p, *why;
	char domain[ROUTES_DOMAIN_MAX + 2], q[80], qn[80];
	size_t i, n, used = 0, added;

	json_array_foreach(list, i, item) {
		name = json_string_value(json_object_get(item, "name"));
		type = json_string_value(json_object_get(item, "type"));
		level = json_string_value(json_object_get(item, "level"));
		p = json_string_value(json_object_get(item, "domains"));
		if (name == NULL || type == NULL || level == NULL || p == NULL)
			continue;
		str_printable(qn, sizeof(qn), name, strlen(name));
		if (strcmp(type, "MAIL") != 0) {
			log_warn("routes: destination %s has %s but is not a MAIL destination; "
				 "ignored", qn, ROUTES_PROPERTY);
			continue;
		}
		if (!routes_name_ok(name)) {
			log_warn("routes: destination \"%s\": name not usable in a Postfix table "
				 "(letters, digits, '.', '_', '-'); ignored", qn);
			continue;
		}
		added = 0;
		for (;;) {
			p += strspn(p, ", \t\r\n");
			if (*p == '\0')
				break;
			n = strcspn(p, ", \t\r\n");
			if (routes_domain_norm(p, n, domain, sizeof(domain), &why) < 0) {
				str_printable(q, sizeof(q), p, n);
				log_warn("routes: destination %s: %s \"%s\": %s; left out", qn,
					 ROUTES_PROPERTY, q, why);
			} else if (route_add(t, domain, name, ROUTE_COCKPIT, level) == 0) {
				added++;
			} else {
				log_warn("routes: more than %d routes; the rest is left out",
					 ROUTES_MAX);
				return used;
			}
			p += n;
		}
		if (added > 0)
			used++;
		else
			log_warn("routes: destination %s: %s lists no usable domain", qn,
				 ROUTES_PROPERTY);
	}
	return used;
}

/* route_cmp - by domain, then precedence, then destination name, then origin */
static int route_cmp(const void *a, const void *b)
{
	const struct route *x = a, *y = b;
	int c;

	if ((c = strcmp(x->domain, y->domain)) != 0)
		return c;
	if (x->source != y->source)
		return x->source < y->source ? -1 : 1;
	if ((c = strcmp(x->destination, y->destination)) != 0)
		return c;
	return strcmp(x->origin, y->origin);
}

static void route_free_one(struct route *r)
{
	free(r->domain);
	free(r->destination);
	free(r->origin);
}

/* routes_resolve - one route per domain */
void routes_resolve(struct route_table *t)
{
	size_t i, keep = 0, j;
	struct route *w;
	int counted;

	if (t->n > 1)
		qsort(t->v, t->n, sizeof(t->v[0]), route_cmp);
	for (i = 0; i < t->n; i = j) {
		w = &t->v[i];
		counted = 0;
		for (j = i + 1; j < t->n && strcmp(t->v[j].domain, w->domain) == 0; j++) {
			if (strcmp(t->v[j].destination, w->destination) != 0) {
				t->conflicts += !counted;
				counted = 1;
				log_warn("routes: conflict: domain %s is claimed by %s (%s %s) and "
					 "%s (%s %s); using %s (%s)", w->domain, w->destination,
					 routes_source_name(w->source), w->origin,
					 t->v[j].destination, routes_source_name(t->v[j].source),
					 t->v[j].origin, w->destination,
					 w->source != t->v[j].source ? "the source that takes "
					 "precedence" : "first by name");
			}
			route_free_one(&t->v[j]);
		}
		t->v[keep++] = *w;
	}
	t->n = keep;
}

/* one listing of the cockpit's routes: what the cache's fetch callback needs */
struct routes_lookup {
	const struct config *cfg;
	const struct bindings *b;
	struct http_options http;
};

/* one list's request, as routes_get makes it with a token */
struct routes_list_call {
	struct routes_lookup *l;
	const char *url;
	const char *api;		/* "instanceDestinations", "subaccountDestinations" */
	const char *level;		/* for logs: "instance", "subaccount (subscriber)" */
	json_t *acc;			/* the routes found so far */
};

/*
 * routes_get - dest_service_get_fn: GET one list with a token. Returns 0
 * (acc extended), or -1 with the outcome set (OUTCOME_TOKEN_REFUSED on
 * 401: the token may be fetched anew).
 */
static int routes_get(void *arg, const struct oauth_token *tok, struct outcome *o)
{
	const struct routes_list_call *call = arg;
	const char *api = call->api, *level = call->level;
	struct http_response resp;
	int ret;

	if (http_get_bearer(&call->l->http, call->url, tok->access_token, &resp) < 0) {
		http_fail(o, &resp, "Destination Service: %s", api);
		ret = -1;
	} else if (resp.status == 200) {
		ret = routes_parse_list(resp.body != NULL ? resp.body : "", resp.len, level,
					call->acc, o);
	} else if (resp.status == 404) {
		log_debug("routes: Destination Service %s: HTTP 404: no %s destinations", api,
			  level);
		ret = 0;
	} else if (resp.status == 401) {
		dsn_fail(o, OUTCOME_TOKEN_REFUSED, "4.7.0", "Destination Service: %s: HTTP 401", api);
		ret = -1;
	} else {
		/* 5xx (after the retries) and 429 may go away; other 4xx will not */
		dsn_fail(o, resp.status == 403 ? OUTCOME_AUTH : resp.status >= 500
			 || resp.status == 429 ? OUTCOME_TRANSIENT : OUTCOME_REFUSED,
			 resp.status == 403 ? "4.7.0" : "4.4.3", "Destination Service: %s: HTTP %ld",
			 api, resp.status);
		ret = -1;
	}
	http_response_free(&resp);
	return ret;
}

/* routes_list - both lists of one tenant into acc, instance level first (Find's order) */
static int routes_list(struct routes_lookup *l, unsigned flags, json_t *acc, struct outcome *o)
{
	static const char *const levels[2][2] = { { "instance", "instanceDestinations" },
						  { "subaccount", "subaccountDestinations" } };
	const char *base = l->b->destination_uri;
	size_t blen = strlen(base);
	struct routes_list_call call = { l, NULL, NULL, NULL, acc };
	char url[2200], level[40];
	int i, rc = 0;

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	for (i = 0; i < 2 && rc == 0; i++) {
		snprintf(url, sizeof(url), "%.*s%s%s", (int)(blen < 2000 ? blen : 2000), base,
			 ROUTES_LIST_PATH, levels[i][1]);
		snprintf(level, sizeof(level), "%s%s", levels[i][0],
			 flags & OAUTH_SUBSCRIBER ? " (subscriber)" : "");
		call.url = url;
		call.api = levels[i][1];
		call.level = level;
		rc = dest_service_call(l->cfg, l->b, &l->http, flags, routes_get, &call, o);
	}
	return rc;
}

/* routes_fetch_cb - cache_fetch_fn: the lists of every tenant destination_selection asks */
static int routes_fetch_cb(void *arg, struct cache_entry *fresh, struct outcome *o)
{
	struct routes_lookup *l = arg;
	const struct config *cfg = l->cfg;
	unsigned order[2];
	size_t n = 0, i;
	json_t *acc;
	time_t now;
	int rc = 0;

	if (cfg->destination_selection != DEST_SELECT_ALWAYS_PROVIDER && config_has_tenant(cfg))
		order[n++] = OAUTH_SUBSCRIBER;
	if (cfg->destination_selection != DEST_SELECT_ALWAYS_SUBSCRIBER)
		order[n++] = 0;
	if (n == 0) {
		dsn_config(o, "destination_selection is alwaysSubscriber, but neither "
			   "tenant_subdomain nor tenant_id is configured");
		return -1;
	}
	acc = json_array();
	for (i = 0; i < n && rc == 0; i++)
		rc = routes_list(l, order[i], acc, o);
	if (rc != 0) {
		json_decref(acc);
		http_out_of_time(&l->http, o);
		return -1;
	}
	now = time(NULL);
	fresh->data = json_pack("{s:o}", "destinations", acc);
	fresh->expires_at = now + cfg->destination_cache_ttl;
	fresh->stale_until = fresh->expires_at + cfg->destination_stale_ttl;
	if (fresh->data == NULL) {
		dsn_local(o, "routes: out of memory");
		return -1;
	}
	return 0;
}

/* routes_from_cockpit - the cockpit's routes through the cache */
static int routes_from_cockpit(const struct config *cfg, const struct bindings *b,
			       struct route_table *t, struct outcome *o)
{
	struct routes_lookup l;
	struct cache cache;
	struct cache_request req;
	struct cache_entry e;
	const char *parts[5];
	char key[CACHE_KEY_SIZE], tenant[300], what[400];
	int rc;

	memset(&l, 0, sizeof(l));
	l.cfg = cfg;
	l.b = b;
	http_options_init(&l.http, cfg, 0);
	dest_service_tenant(cfg, tenant, sizeof(tenant));
	parts[0] = b->destination_uri;
	parts[1] = b->destination.token_url;
	parts[2] = b->destination.client_id;
	parts[3] = tenant;
	parts[4] = config_selection_name(cfg->destination_selection);
	cache_key(key, "routes", parts, 5);
	snprintf(what, sizeof(what), "routes of the destinations (%s%s%s)", parts[4],
		 tenant[0] ? ", " : "", tenant);
	memset(&req, 0, sizeof(req));
	req.key = key;
	req.kind = "routes";
	req.what = what;
	req.fail_ttl = cfg->http_timeout;
	req.lock_deadline = conn_now() + 4 * http_budget(&l.http);
	t->cockpit = 1;
	cache_open(&cache, cfg->cache_dir);
	rc = cache_get(&cache, &req, routes_fetch_cb, &l, &e, o);
	cache_close(&cache);
	if (rc < 0)
		return -1;
	t->cockpit_stale = e.stale;
	t->cockpit_age = e.hit ? (long)(time(NULL) - e.stored_at) : -1;
	if (e.stale)
		log_warn("routes: the Destination Service failed (%s); using the routes listed "
			 "%ld s ago", o->text, t->cockpit_age);
	t->cockpit_destinations = routes_add_cockpit(t, json_object_get(e.data, "destinations"));
	cache_entry_free(&e);
	return 0;
}

/* routes_collect_local - the routes of the environment and routes_file, unresolved */
int routes_collect_local(const struct config *cfg, struct route_table *t, struct outcome *o)
{
	const char *env = getenv(ROUTES_ENV);
	char err[512], *text;
	size_t len;
	int rc;

	memset(t, 0, sizeof(*t));
	t->cockpit_age = -1;
	if (env != NULL && *env != '\0' && routes_parse_spec(t, env, ROUTE_ENV, ROUTES_ENV, o) < 0)
		return -1;
	if (cfg->routes_file == NULL || cfg->routes_file[0] == '\0')
		return 0;
	text = file_read_all(cfg->routes_file, ROUTES_FILE_MAX, &len, err, sizeof(err));
	if (text == NULL) {
		dsn_config(o, "routes_file %s", err);
		return -1;
	}
	rc = routes_parse_spec(t, text, ROUTE_FILE, cfg->routes_file, o);
	free(text);
	return rc;
}

/* routes_collect - the table from every source, resolved */
int routes_collect(const struct config *cfg, const struct bindings *b, struct route_table *t,
		   struct outcome *o)
{
	if (routes_collect_local(cfg, t, o) < 0)
		return -1;
	if (cfg->routes_cockpit && b != NULL && b->have_destination
	    && routes_from_cockpit(cfg, b, t, o) < 0)
		return -1;
	routes_resolve(t);
	return 0;
}

/* routes_free - release the table; safe twice */
void routes_free(struct route_table *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		route_free_one(&t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}
