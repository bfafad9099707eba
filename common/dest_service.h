/*
 * dest_service - the Destination Service client of the lookup chain
 * (destination.h): "Find Destination" for the tenants destination_selection
 * names, through the shared cache (cache.h).
 */
#ifndef BTPRELAY_DEST_SERVICE_H
#define BTPRELAY_DEST_SERVICE_H

#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "dsn.h"

/*
 * dest_from_service - find name in the Destination Service, through the
 * cache, HTTP calls ending by deadline (conn_now() clock, 0 = only their
 * own timeouts). Returns 0 with d filled, or -1 with the outcome
 * (OUTCOME_NOT_FOUND when no tenant asked has it).
 */
int dest_from_service(const struct config *cfg, const struct bindings *b, const char *name,
		      double deadline, struct mail_destination *d, struct outcome *o);

#endif
