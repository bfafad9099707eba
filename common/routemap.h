/*
 * routemap - the route table (routes.h) as a Postfix lookup table, for
 * transport_maps and relay_domains, and the Postfix commands that go with
 * it. Failures are outcomes: 4.3.5 for what the operator configured (table
 * name, routes_transport), 4.3.0 for this host (write, postmap, rename);
 * the table in place is never touched by a failure.
 */
#ifndef BTPRELAY_ROUTEMAP_H
#define BTPRELAY_ROUTEMAP_H

#include <stddef.h>
#include "dsn.h"
#include "routes.h"

/*
 * routemap_value - the transport_maps value of a destination: tmpl with
 * every $destination or ${destination} replaced by name. 0, or -1 when
 * it does not fit or would hold white space.
 */
int routemap_value(const char *tmpl, const char *name, char *buf, size_t size);

/*
 * routemap_write - the table as a Postfix lookup table: map is
 * [TYPE:]PATH, TYPE hash (default), btree or cdb (the types whose
 * postmap output is one file). PATH gets "domain value" lines; postmap(1)
 * builds the indexed file beside a temporary copy, and both are renamed
 * into place, so Postfix sees the old table or the new one, never half of
 * one. Nothing is written when PATH already holds the same lines and its
 * indexed file exists (*changed = 0). Returns 0, or -1 with the outcome
 * (nothing replaced).
 */
int routemap_write(const struct route_table *t, const char *tmpl, const char *map,
		   int *changed, struct outcome *o);

/*
 * routemap_run - run a Postfix command such as {"postfix", "reload", NULL}
 * (argv[0] from PATH, else /usr/sbin), killed after seconds. 0 when it
 * exits 0, else -1 with why.
 */
int routemap_run(const char *const argv[], int seconds, char *why, size_t size);

#endif
