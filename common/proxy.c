/*
 * proxy - the Connectivity proxy's address and the way to authenticate to
 * it, decided once from the configuration and the bindings.
 *
 * token: the connectivity binding's client gets a JWT and the SOCKS5
 * handshake offers method 0x80 alone. none: no token at all; the
 * handshake offers 0x80 (with a JWT length of 0, so the proxy still learns
 * the Cloud Connector location ID) and 0x00, and follows the proxy's
 * choice. The address: proxy_host/proxy_port from btprelay.conf (or the
 * environment, conf.h), else the connectivity binding's
 * onpremise_proxy_host/onpremise_socks5_proxy_port.
 */
#include <stdio.h>
#include <string.h>

#include "proxy.h"

/* proxy_address_source - where proxy_host/proxy_port came from, for texts */
static const char *proxy_address_source(const struct config *cfg)
{
	if (cfg->proxy_from_env == (CONFIG_PROXY_HOST_ENV | CONFIG_PROXY_PORT_ENV))
		return "environment " CONFIG_ENV_PROXY_HOST "/" CONFIG_ENV_PROXY_PORT;
	if (cfg->proxy_from_env != 0)
		return "proxy_host/proxy_port and the environment";
	return "proxy_host/proxy_port";
}

/* proxy_plan - the proxy's address and authentication for an OnPremise destination */
int proxy_plan(const struct config *cfg, const struct bindings *b, const char *dest,
	       struct proxy_plan *p, struct outcome *o)
{
	const char *src = b->source ? b->source : "no bindings file, no VCAP_SERVICES";
	int have_address = cfg->proxy_host[0] != '\0' && cfg->proxy_port != 0;
	char who[240] = "";

	if (dest != NULL)
		snprintf(who, sizeof(who), "destination %s is OnPremise, but ", dest);

	memset(p, 0, sizeof(*p));
	switch (cfg->proxy_authentication) {
	case PROXY_AUTH_TOKEN:
		if (!b->have_connectivity) {
			dsn_config(o, "%sproxy_authentication = token and no connectivity "
				   "service binding is configured (%s)", who, src);
			return -1;
		}
		p->auth = PROXY_AUTH_TOKEN;
		snprintf(p->why, sizeof(p->why), "proxy_authentication = token");
		break;
	case PROXY_AUTH_NONE:
		p->auth = PROXY_AUTH_NONE;
		snprintf(p->why, sizeof(p->why), "proxy_authentication = none");
		break;
	case PROXY_AUTH_AUTO:
	default:
		if (b->have_connectivity) {
			p->auth = PROXY_AUTH_TOKEN;
			snprintf(p->why, sizeof(p->why), "proxy_authentication = auto, and a "
				 "connectivity binding is configured (%s)", src);
		} else if (have_address) {
			p->auth = PROXY_AUTH_NONE;
			snprintf(p->why, sizeof(p->why), "proxy_authentication = auto, no "
				 "connectivity binding, the proxy from %s",
				 proxy_address_source(cfg));
		} else {
			dsn_config(o, "%sneither a connectivity service binding (%s) nor "
				   "proxy_host and proxy_port (a proxy without a token, e.g. Kyma's) "
				   "are configured", who, src);
			return -1;
		}
		break;
	}
	/* bindings_load has already put proxy_host/proxy_port over the binding's values */
	if (b->have_connectivity) {
		p->host = b->proxy_host;
		p->port = b->proxy_port;
	} else if (have_address) {
		p->host = cfg->proxy_host;
		p->port = cfg->proxy_port;
	} else {
		dsn_config(o, "%sproxy_authentication = none and %s not set (the "
			   "Connectivity proxy's address; in Kyma connectivity-proxy.kyma-system"
			   ".svc.cluster.local and 20004)", who, cfg->proxy_host[0] == '\0'
			   ? (cfg->proxy_port == 0 ? "proxy_host and proxy_port are" : "proxy_host is")
			   : "proxy_port is");
		return -1;
	}
	return 0;
}
