/*
 * dest_service - the Destination Service client of the lookup chain
 * (destination.h): "Find Destination" for the tenants destination_selection
 * names, through the shared cache (cache.h).
 */
#ifndef BTPRELAY_DEST_SERVICE_H
#define BTPRELAY_DEST_SERVICE_H

#include <stddef.h>

#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "dsn.h"
#include "http.h"
#include "oauth.h"

/*
 * dest_from_service - find name in the Destination Service, through the
 * cache, HTTP calls ending by deadline (conn_now() clock, 0 = only their
 * own timeouts). Returns 0 with d filled, or -1 with the outcome
 * (OUTCOME_NOT_FOUND when no tenant asked has it).
 */
int dest_from_service(const struct config *cfg, const struct bindings *b, const char *name,
		      double deadline, struct mail_destination *d, struct outcome *o);

/*
 * dest_service_get_fn - one request to the Destination Service with the
 * destination token tok: 0, or -1 with the outcome, OUTCOME_TOKEN_REFUSED
 * when the service answered HTTP 401
 */
typedef int (*dest_service_get_fn)(void *arg, const struct oauth_token *tok, struct outcome *o);

/*
 * dest_service_call - get() with the cached destination token of the
 * tenant flags names (OAUTH_SUBSCRIBER, or 0 for the provider). A 401
 * drops the token, and get() runs once more with a new one. Returns
 * get()'s 0 or -1, or -1 with the outcome when there is no token.
 */
int dest_service_call(const struct config *cfg, const struct bindings *b,
		      const struct http_options *http, unsigned flags, dest_service_get_fn get,
		      void *arg, struct outcome *o);

/* dest_service_tenant - "subdomain:x", "zid:y" or "" (none configured): a cache key's part */
void dest_service_tenant(const struct config *cfg, char *buf, size_t size);

#endif
