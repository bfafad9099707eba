/*
 * test-proxy - proxy_plan(): which proxy and which authentication, for
 * every combination of proxy_authentication, a connectivity binding and
 * proxy_host/proxy_port, with the texts check, probe and the transport show.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "tap.h"

struct plan_case {
	const char *name;
	enum proxy_auth mode;
	int binding;			/* a connectivity binding with proxy 10.0.0.1:20004 */
	const char *host;		/* proxy_host, "" = unset */
	unsigned port;			/* proxy_port, 0 = unset */
	int want_rc;
	enum proxy_auth want_auth;
	const char *want_host;
	unsigned want_port;
	const char *want_text;		/* in why (rc 0) or in the outcome (rc -1) */
};

static const struct plan_case cases[] = {
	{ "auto, binding", PROXY_AUTH_AUTO, 1, "", 0, 0, PROXY_AUTH_TOKEN, "10.0.0.1", 20004,
	  "proxy_authentication = auto, and a connectivity binding is configured (bindings.json)" },
	{ "auto, proxy_host/port only", PROXY_AUTH_AUTO, 0, "cp.kyma-system", 20004, 0,
	  PROXY_AUTH_NONE, "cp.kyma-system", 20004,
	  "proxy_authentication = auto, no connectivity binding, the proxy from proxy_host/proxy_port" },
	{ "auto, nothing", PROXY_AUTH_AUTO, 0, "", 0, -1, 0, NULL, 0,
	  "destination D is OnPremise, but neither a connectivity service binding (bindings.json) "
	  "nor proxy_host and proxy_port" },
	{ "auto, proxy_host without port", PROXY_AUTH_AUTO, 0, "cp", 0, -1, 0, NULL, 0,
	  "neither a connectivity service binding" },
	{ "token, binding", PROXY_AUTH_TOKEN, 1, "", 0, 0, PROXY_AUTH_TOKEN, "10.0.0.1", 20004,
	  "proxy_authentication = token" },
	{ "token, no binding", PROXY_AUTH_TOKEN, 0, "cp", 20004, -1, 0, NULL, 0,
	  "destination D is OnPremise, but proxy_authentication = token and no connectivity "
	  "service binding is configured" },
	{ "none, proxy_host/port", PROXY_AUTH_NONE, 0, "cp", 1080, 0, PROXY_AUTH_NONE, "cp", 1080,
	  "proxy_authentication = none" },
	{ "none, binding: its proxy", PROXY_AUTH_NONE, 1, "", 0, 0, PROXY_AUTH_NONE, "10.0.0.1",
	  20004, "proxy_authentication = none" },
	{ "none, no port", PROXY_AUTH_NONE, 0, "cp", 0, -1, 0, NULL, 0,
	  "proxy_authentication = none and proxy_port is not set" },
	{ "none, nothing", PROXY_AUTH_NONE, 0, "", 0, -1, 0, NULL, 0,
	  "proxy_authentication = none and proxy_host and proxy_port are not set" },
};

int main(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct plan_case *t = &cases[i];
		struct config cfg;
		struct bindings b;
		struct proxy_plan p;
		struct outcome o;
		char host[64], bhost[] = "10.0.0.1", src[] = "bindings.json";
		int rc;

		config_defaults(&cfg);
		memset(&b, 0, sizeof(b));
		cfg.proxy_authentication = t->mode;
		snprintf(host, sizeof(host), "%s", t->host);
		free(cfg.proxy_host);
		cfg.proxy_host = host;
		cfg.proxy_port = t->port;
		b.source = src;
		if (t->binding) {
			b.have_connectivity = 1;
			b.proxy_host = bhost;
			b.proxy_port = 20004;
		}
		memset(&o, 0, sizeof(o));
		rc = proxy_plan(&cfg, &b, "D", &p, &o);
		is_int(rc, t->want_rc, "%s: return value", t->name);
		if (t->want_rc == 0) {
			is_int(p.auth, t->want_auth, "%s: %s", t->name,
			       config_proxy_auth_name(t->want_auth));
			ok(p.host != NULL && strcmp(p.host, t->want_host) == 0 && p.port == t->want_port,
			   "%s: proxy %s:%u", t->name, t->want_host, t->want_port);
			has_str(p.why, t->want_text, "%s: why", t->name);
		} else {
			ok(o.cls == DSN_DEFER && strcmp(o.status, "4.3.5") == 0, "%s: defers 4.3.5",
			   t->name);
			has_str(o.text, t->want_text, "%s: text", t->name);
		}
		cfg.proxy_host = NULL;
		config_free(&cfg);
	}
	return tap_done();
}
