/*
 * proxy - which Connectivity proxy a tunnel goes through and how the
 * client authenticates to it: with the connectivity binding's token
 * (method 0x80 + JWT), or without one, as Kyma's Connectivity Proxy
 * module expects in its default single-tenant trusted mode.
 *
 * proxy_authentication = auto picks token when a connectivity binding is
 * configured and none when only proxy_host/proxy_port (or Kyma's
 * connectivity-proxy-info values in the environment) say where the
 * proxy is. Returns 0 with the plan filled, or -1 with the outcome
 * deferred 4.3.5 and a text saying what is missing.
 */
#ifndef BTPRELAY_PROXY_H
#define BTPRELAY_PROXY_H

#include "bindings.h"
#include "conf.h"
#include "dsn.h"

struct proxy_plan {
	enum proxy_auth auth;		/* PROXY_AUTH_TOKEN or PROXY_AUTH_NONE, never AUTO */
	const char *host;		/* borrowed from the bindings or the configuration */
	unsigned port;
	char why[300];			/* for check, probe and logs: how auth and address were chosen */
};

/*
 * proxy_plan - the proxy's address and authentication for an OnPremise
 * destination (dest: its name for texts, NULL for none)
 */
int proxy_plan(const struct config *cfg, const struct bindings *b, const char *dest,
	       struct proxy_plan *p, struct outcome *o);

#endif
