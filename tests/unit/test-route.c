/*
 * test-route - route_open() (route.h), the one way a delivery and
 * `btprelay probe` open the way to a relay: the steps its observer sees,
 * in order, for an Internet destination declared in the configuration
 * (a listening socket on 127.0.0.1 is the relay); the step that fails and
 * the outcome's kind when the relay does not listen, when the destination
 * does not exist, and when its TLS configuration is wrong (found before
 * any connection is made).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tap.h"
#include "log.h"
#include "route.h"
#include "../lib/files.h"
#include "../lib/peer.h"

#define MAX_STEPS 16

/* what the observer saw */
struct seen {
	enum route_step step[MAX_STEPS];
	int failed[MAX_STEPS];
	size_t n;
};

/* record - route_observer: every step and whether it failed */
static void record(void *arg, const struct route *rt, enum route_step step,
		   const struct outcome *failed)
{
	struct seen *s = arg;

	(void)rt;
	if (s->n < MAX_STEPS) {
		s->step[s->n] = step;
		s->failed[s->n++] = failed != NULL;
	}
}

/* steps_are - the observer saw exactly these steps; the last one failed when fail */
static int steps_are(const struct seen *s, const enum route_step *want, size_t n, int fail)
{
	size_t i;

	if (s->n != n)
		return 0;
	for (i = 0; i < n; i++)
		if (s->step[i] != want[i] || s->failed[i] != (fail && i == n - 1))
			return 0;
	return 1;
}

/* open_one - route_open for name with a fresh observer; the route is closed after */
static int open_one(const struct config *cfg, const char *name, struct seen *s,
		    struct outcome *o, char *relay, size_t size)
{
	struct route_observer ob = { record, s };
	struct route rt;
	int rc;

	memset(s, 0, sizeof(*s));
	route_init(&rt, 2000, conn_now() + 10);
	rt.observer = &ob;
	rc = route_open(cfg, name, &rt, o);
	snprintf(relay, size, "%s", rt.relay);
	if (rc == 0 && rt.opt.tls_level != TLS_LEVEL_NONE)
		rc = 99;	/* the destination asked for no TLS */
	route_close(&rt);
	return rc;
}

int main(void)
{
	static const enum route_step direct[] = {
		ROUTE_BINDINGS, ROUTE_RESOLVE, ROUTE_TLS_POLICY, ROUTE_CONNECT,
	};
	static const enum route_step tls_config[] = {
		ROUTE_BINDINGS, ROUTE_RESOLVE, ROUTE_TLS_POLICY, ROUTE_TLS_CONFIG,
	};
	char dir[] = "/tmp/btprelay-test-route-XXXXXX", conf[600], err[512], relay[320], text[800];
	struct config cfg;
	struct outcome o;
	struct seen s;
	unsigned port;
	int lfd;

	unsetenv("SERVICE_BINDING_ROOT");
	unsetenv("VCAP_SERVICES");
	log_open("test-route", "stderr", LOG_LVL_ERROR);
	if (mkdtemp(dir) == NULL)
		return 99;
	if ((lfd = peer_listen(4, &port)) < 0)
		return 99;

	snprintf(conf, sizeof(conf), "%s/btprelay.conf", dir);
	snprintf(text, sizeof(text), "cache_dir =\n"
		"destination.T.ProxyType = Internet\n"
		"destination.T.mail.smtp.host = 127.0.0.1\n"
		"destination.T.mail.smtp.port = %u\n"
		"destination.T.mail.smtp.starttls.enable = false\n"
		"destination.PIN.ProxyType = Internet\n"
		"destination.PIN.mail.smtp.host = 127.0.0.1\n"
		"destination.PIN.mail.smtp.port = %u\n"
		"destination.PIN.mail.smtp.starttls.required = true\n"
		"destination.PIN.mail.smtp.ssl.fingerprint = 12:34\n",
		port, port);
	write_file(conf, text, 0600);
	if (!ok(config_load(&cfg, conf, err, sizeof(err)) == 0, "configuration"))
		printf("# %s\n", err);

	is_int(open_one(&cfg, "T", &s, &o, relay, sizeof(relay)), 0, "route to T: open, no TLS");
	ok(steps_are(&s, direct, 4, 0), "steps: bindings, resolve, TLS policy, connect");
	has_str(relay, "127.0.0.1", "the relay is named by its address");

	is_int(open_one(&cfg, "PIN", &s, &o, relay, sizeof(relay)), -1,
	       "a malformed pin: the route fails");
	ok(steps_are(&s, tls_config, 4, 1), "... at the TLS configuration, before any connection");
	ok(o.kind == OUTCOME_CONFIG && strcmp(o.status, "4.3.5") == 0, "... 4.3.5, configuration");

	is_int(open_one(&cfg, "NOPE", &s, &o, relay, sizeof(relay)), -1, "no such destination");
	ok(s.n == 2 && s.step[1] == ROUTE_RESOLVE && s.failed[1], "... the resolve step failed");
	is_int(o.kind, OUTCOME_NOT_FOUND, "... of kind not found");

	close(lfd);
	is_int(open_one(&cfg, "T", &s, &o, relay, sizeof(relay)), -1, "the relay does not listen");
	ok(steps_are(&s, direct, 4, 1), "... the connect step failed");
	ok(o.kind == OUTCOME_TRANSIENT && strcmp(o.status, "4.4.1") == 0, "... 4.4.1, transient");

	config_free(&cfg);
	unlink(conf);
	rmdir(dir);
	return tap_done();
}
