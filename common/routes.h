/*
 * routes - which recipient domains go to which MAIL destination: the
 * routing table that Postfix's transport_maps and relay_domains read, so
 * that no transport map is edited by hand.
 *
 * Three sources, in this order of precedence: the environment variable
 * BTPRELAY_ROUTES ("corp.example=MAIL_ONPREM,.corp.example=MAIL_ONPREM"),
 * the file named by routes_file (one "domain destination" or
 * "domain=destination" per line, '#' comments), and the cockpit: every MAIL
 * destination whose additional property btprelay.domains (or
 * mail.btprelay.domains) lists domains, read with the Destination Service's
 * list calls (instanceDestinations, subaccountDestinations; per tenant in
 * the order of destination_selection) through the shared cache: fresh for
 * destination_cache_ttl, and standing in for destination_stale_ttl more
 * while the service fails. A domain "corp.example" routes that domain, a
 * domain ".corp.example" its subdomains (Postfix's transport(5) and
 * relay_domains conventions, parent_domain_matches_subdomains unset).
 *
 * Two sources or destinations claiming one domain: a warning naming both,
 * and a deterministic winner: the source of higher precedence, then the
 * destination name first in byte order. Bad entries of the environment or
 * the file are errors (4.3.5: the operator wrote them); a bad domain in a
 * cockpit property is a warning and is left out. The cockpit failing with
 * no cached list to stand in is an error (4.4.3, or 4.7.0 when the
 * credentials are refused): the caller keeps the routes it had.
 *
 * Nothing secret is kept: the list answers hold every destination's
 * password, so only names, types and the domains property are cached, and
 * the answer is wiped.
 */
#ifndef BTPRELAY_ROUTES_H
#define BTPRELAY_ROUTES_H

#include <stddef.h>
#include <jansson.h>

#include "bindings.h"
#include "conf.h"
#include "dsn.h"

#define ROUTES_PROPERTY "btprelay.domains"
#define ROUTES_PROPERTY_MAIL "mail.btprelay.domains"	/* for a cockpit that wants mail.* */
#define ROUTES_ENV "BTPRELAY_ROUTES"
#define ROUTES_MAX 10000		/* routes in one table */
#define ROUTES_DOMAIN_MAX 253

enum route_source { ROUTE_ENV = 0, ROUTE_FILE, ROUTE_COCKPIT };	/* precedence order */

struct route {
	char *domain;		/* lower case; ".corp.example" = its subdomains */
	char *destination;	/* the MAIL destination's name */
	enum route_source source;
	char *origin;		/* "BTPRELAY_ROUTES", "FILE:LINE", "subaccount", "instance (subscriber)" */
};

struct route_table {
	struct route *v;	/* sorted by domain after routes_collect */
	size_t n;
	unsigned conflicts;	/* domains claimed by more than one destination */
	/* the cockpit */
	int cockpit;		/* 1 = asked (routes_cockpit and a destination binding) */
	int cockpit_stale;	/* from a cache entry past its TTL: the service failed */
	long cockpit_age;	/* seconds since the service said it; -1 = just now */
	size_t cockpit_destinations;	/* destinations carrying the property */
};

/*
 * routes_domain_norm - a domain as the map keys it: lower case, one
 * trailing dot dropped, labels of letters, digits, '-' and '_' (at most
 * 63), ROUTES_DOMAIN_MAX at most, an optional leading '.'. 0, or -1 with
 * why set to a short reason.
 */
int routes_domain_norm(const char *in, size_t len, char *out, size_t size, const char **why);
/* routes_name_ok - a destination name usable in a map value: 1..200 of [A-Za-z0-9._-] */
int routes_name_ok(const char *name);

/*
 * routes_parse_spec - add the routes of text (the BTPRELAY_ROUTES or
 * routes_file format: entries separated by ',' or newlines, each
 * "domain=destination" or "domain destination"; '#' starts a comment in a
 * file). where names the source in texts ("BTPRELAY_ROUTES" or the file's
 * path). 0, or -1 with a 4.3.5 outcome naming the entry.
 */
int routes_parse_spec(struct route_table *t, const char *text, enum route_source source,
		      const char *where, struct outcome *o);
/*
 * routes_parse_list - one list answer of the Destination Service (a JSON
 * array of flat destination configurations) into acc, the cache's form:
 * [{"name","type","level","domains"}] for entries carrying the property
 * whose name is not in acc yet (an earlier list wins, as the Find call's
 * order does). 0, or -1 with a 4.4.3 outcome when body is not an array.
 */
int routes_parse_list(const char *body, size_t len, const char *level, json_t *acc,
		      struct outcome *o);
/*
 * routes_add_cockpit - add the routes of a cached list (routes_parse_list's
 * form): domains split at ',' and white space; a non-MAIL destination or a
 * bad domain or name is a warning. Returns the destinations that gave routes.
 */
size_t routes_add_cockpit(struct route_table *t, const json_t *list);
/*
 * routes_resolve - sort by domain, keep one route per domain (precedence,
 * then destination name), warn about each conflict; t->conflicts counts them
 */
void routes_resolve(struct route_table *t);

/*
 * routes_collect - the table from every source, resolved. Returns 0, or
 * -1 with the outcome set (a bad environment or file entry: 4.3.5; the
 * cockpit failing with nothing to stand in); t holds what was read before
 * the failure either way, freed with routes_free.
 */
int routes_collect(const struct config *cfg, const struct bindings *b, struct route_table *t,
		   struct outcome *o);
/*
 * routes_collect_local - the part of routes_collect() that needs no
 * service: BTPRELAY_ROUTES and routes_file, not resolved (`btprelay check`)
 */
int routes_collect_local(const struct config *cfg, struct route_table *t, struct outcome *o);

/* routes_source_name - "env", "file", "cockpit" */
const char *routes_source_name(enum route_source source);
void routes_free(struct route_table *t);

#endif
