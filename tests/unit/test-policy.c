/*
 * test-policy - btprelay-milter's decisions and destination cache, without
 * libmilter: a fake resolver answers by name (found, not found, unusable,
 * outage, slow) and counts its calls.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "destination.h"
#include "dsn.h"
#include "policy.h"
#include "tap.h"
#include "util.h"

static atomic_int calls;
static atomic_int slow_ms;	/* how long SLOW and BURST take */
static atomic_int flaky_down;	/* FLAKY: found while 0, outage while 1 */

/* fake_resolve - the answers of the lookup chain, by name */
static int fake_resolve(const struct config *cfg, const char *name, char **from,
			struct outcome *o, void *arg)
{
	(void)cfg;
	(void)arg;
	atomic_fetch_add(&calls, 1);
	if (strcmp(name, "SLOW") == 0 || strcmp(name, "BURST") == 0)
		usleep((useconds_t)atomic_load(&slow_ms) * 1000);
	if (strcmp(name, "OK") == 0 || strcmp(name, "SLOW") == 0 || strcmp(name, "BURST") == 0) {
		*from = xstrdup("noreply@corp.example");
		return 0;
	}
	if (strcmp(name, "NOFROM") == 0)
		return 0;
	if (strcmp(name, "FLAKY") == 0 && !atomic_load(&flaky_down)) {
		*from = xstrdup("flaky@corp.example");
		return 0;
	}
	if (strcmp(name, "FLAKY") == 0) {
		dsn_defer(o, "4.4.3", "Destination Service https://dest.example: HTTP 500");
		return -1;
	}
	if (strcmp(name, "BAD") == 0) {
		dsn_config(o, "destination BAD: Type is HTTP, not MAIL");
		return -1;
	}
	if (strcmp(name, "DOWN") == 0) {
		dsn_defer(o, "4.4.3", "Destination Service https://dest.example: connection refused");
		return -1;
	}
	if (strcmp(name, "DENIED") == 0) {
		dsn_auth(o, "Destination Service https://dest.example: find DENIED: HTTP 401");
		return -1;
	}
	if (strcmp(name, "LOOKALIKE") == 0) {
		/* the kind, not the text, says "not found" */
		dsn_config(o, "destination LOOKALIKE not found in the certificates[] it names");
		return -1;
	}
	if (strcmp(name, "NOTFOUND_TEXT") == 0) {
		dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "no such destination: NOTFOUND_TEXT");
		return -1;
	}
	dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found in the Destination Service",
		 name);
	return -1;
}

/* set - replace a string key */
static void set(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

/* make - a policy with the fake resolver; NULL values keep the defaults */
static struct policy *make_ttl(const char *not_found, const char *unusable, const char *error,
			       int lookup_timeout, int cache_ttl, int stale_ttl)
{
	struct config cfg;
	struct policy *p;
	char err[512];

	config_defaults(&cfg);
	set(&cfg.bindings_file, "");
	if (not_found)
		set(&cfg.milter_on_not_found, not_found);
	if (unusable)
		set(&cfg.milter_on_unusable, unusable);
	if (error)
		set(&cfg.milter_on_error, error);
	if (lookup_timeout)
		cfg.milter_lookup_timeout = lookup_timeout;
	if (cache_ttl)
		cfg.milter_cache_ttl = cache_ttl;
	if (stale_ttl >= 0)
		cfg.destination_stale_ttl = stale_ttl;
	p = policy_new(&cfg, err, sizeof(err));
	if (p == NULL) {
		printf("# policy_new: %s\n", err);
		exit(1);
	}
	policy_set_resolver(p, fake_resolve, NULL);
	return p;
}

/* make - a policy with the fake resolver and the default TTLs */
static struct policy *make(const char *not_found, const char *unusable, const char *error,
			   int lookup_timeout)
{
	return make_ttl(not_found, unusable, error, lookup_timeout, 0, -1);
}

struct burst {
	struct policy *p;
	struct policy_decision d;
};

static void *burst_one(void *arg)
{
	struct burst *b = arg;

	policy_decide(b->p, "btprelay", "BURST", &b->d);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
	struct policy_decision d;
	struct policy *p;
	struct config cfg;
	char err[512];
	int before, i, all;
	double t;

	unsetenv("VCAP_SERVICES");
	p = make(NULL, NULL, NULL, 1);

	/* not ours: nothing looked up */
	policy_decide(p, "smtp", "MISSING", &d);
	ok(d.kind == POLICY_NOT_OURS && d.action == POLICY_CONTINUE, "other mailer: not ours, continue");
	policy_decide(p, NULL, NULL, &d);
	ok(d.kind == POLICY_NOT_OURS && d.action == POLICY_CONTINUE, "no routing macros: not ours");
	is_int(atomic_load(&calls), 0, "no lookup for recipients of other transports");

	/* found, then cached */
	policy_decide(p, "btprelay", "OK", &d);
	ok(d.kind == POLICY_FOUND && d.action == POLICY_CONTINUE && !d.cached, "found: continue");
	is_str(d.from, "noreply@corp.example", "found: the destination's sender");
	is_str(d.code, "", "found: no reply");
	policy_decision_free(&d);
	policy_decide(p, "btprelay", "OK", &d);
	ok(d.kind == POLICY_FOUND && d.cached, "found again: from the cache");
	is_int(atomic_load(&calls), 1, "one lookup for two recipients");
	policy_decision_free(&d);
	policy_decide(p, "btprelay", "NOFROM", &d);
	ok(d.kind == POLICY_FOUND && d.from == NULL, "found without a sender");

	/* not found: reject, negative cache */
	policy_decide(p, "btprelay", "MISSING", &d);
	ok(d.kind == POLICY_NOT_FOUND && d.action == POLICY_REJECT, "not found: reject");
	is_str(d.code, "550", "not found: 550");
	is_str(d.status, "5.1.2", "not found: 5.1.2");
	is_str(d.reply, "destination <MISSING> does not exist: not found in the Destination Service",
	       "not found: the reply names the destination");
	before = atomic_load(&calls);
	policy_decide(p, "btprelay", "MISSING", &d);
	ok(d.cached && d.action == POLICY_REJECT, "not found again: from the negative cache");
	is_int(atomic_load(&calls), before, "no second lookup for a missing destination");

	/* btprelay-lmtp routes: lmtp to the socket of service btprelay-lmtp-NAME */
	policy_decide(p, "lmtp", "unix:private/btprelay-lmtp-MISSING", &d);
	ok(d.kind == POLICY_NOT_FOUND && d.action == POLICY_REJECT && d.dest != NULL
	   && strcmp(d.dest, "MISSING") == 0, "lmtp route to btprelay-lmtp-MISSING: looked up as MISSING");
	is_str(d.reply, "destination <MISSING> does not exist: not found in the Destination Service",
	       "lmtp route: the reply names the destination");
	policy_decision_free(&d);
	policy_decide(p, "lmtp", "unix:private/btprelay-lmtp-OK", &d);
	ok(d.kind == POLICY_FOUND && d.cached && strcmp(d.dest, "OK") == 0,
	   "lmtp route to btprelay-lmtp-OK: found, the same cache entry as btprelay:OK");
	policy_decision_free(&d);
	before = atomic_load(&calls);
	policy_decide(p, "lmtp", "unix:private/dovecot-lmtp", &d);
	ok(d.kind == POLICY_NOT_OURS && d.dest == NULL, "another LMTP server: not ours");
	policy_decide(p, "lmtp", "unix:private/btprelay-lmtp-", &d);
	ok(d.kind == POLICY_UNUSABLE && d.action == POLICY_TEMPFAIL
	   && strstr(d.detail, "names no destination") != NULL,
	   "lmtp route to the prefix alone: unusable, the text says so");
	policy_decision_free(&d);
	policy_decide(p, "btprelay-lmtp-OK", "unix:private/btprelay-lmtp-OK", &d);
	ok(d.kind == POLICY_NOT_OURS, "the prefix counts only for mailer lmtp");
	is_int(atomic_load(&calls), before, "no lookup for them");

	/* unusable, outage, refused token */
	policy_decide(p, "btprelay", "BAD", &d);
	ok(d.kind == POLICY_UNUSABLE && d.action == POLICY_TEMPFAIL, "unusable: tempfail");
	is_str(d.status, "4.3.5", "unusable: 4.3.5");
	is_str(d.reply, "destination <BAD> cannot be used: Type is HTTP, not MAIL", "unusable: reply");
	policy_decide(p, "btprelay", "DOWN", &d);
	ok(d.kind == POLICY_ERROR && d.action == POLICY_TEMPFAIL, "outage: tempfail");
	is_str(d.code, "451", "outage: 451");
	is_str(d.status, "4.4.3", "outage: 4.4.3");
	ok(strstr(d.reply, "https://") == NULL, "outage: no internal URL in the reply");
	has_str(d.detail, "connection refused", "outage: the details are kept for the log");
	policy_decide(p, "btprelay", "DENIED", &d);
	ok(d.kind == POLICY_ERROR && d.action == POLICY_TEMPFAIL, "token refused (4.7.0): error, tempfail");
	policy_decide(p, "btprelay", "", &d);
	ok(d.kind == POLICY_UNUSABLE && d.action == POLICY_TEMPFAIL, "empty next hop: unusable");

	/* the resolver's answer decides, never the text */
	policy_decide(p, "btprelay", "LOOKALIKE", &d);
	ok(d.kind == POLICY_UNUSABLE && d.action == POLICY_TEMPFAIL,
	   "-1 with a \"not found\" text: unusable");
	policy_decide(p, "btprelay", "NOTFOUND_TEXT", &d);
	ok(d.kind == POLICY_NOT_FOUND && d.action == POLICY_REJECT,
	   "OUTCOME_NOT_FOUND with any text: not found");
	is_str(d.reply, "destination <NOTFOUND_TEXT> does not exist: no such destination: "
	       "NOTFOUND_TEXT", "OUTCOME_NOT_FOUND: the text in the reply");

	/* the deadline: a slow lookup does not hold the caller */
	atomic_store(&slow_ms, 2500);
	t = now();
	policy_decide(p, "btprelay", "SLOW", &d);
	ok(d.kind == POLICY_ERROR && d.action == POLICY_TEMPFAIL, "slow lookup: tempfail at the deadline");
	ok(now() - t < 2.4, "slow lookup: the caller did not wait for the lookup (2.5 s)");
	has_str(d.detail, "did not finish within 1 s", "slow lookup: says so");
	sleep(2);
	policy_decide(p, "btprelay", "SLOW", &d);
	ok(d.kind == POLICY_FOUND && d.cached, "the late answer filled the cache");
	policy_decision_free(&d);
	policy_unref(p);

	/* a burst makes one lookup */
	p = make(NULL, NULL, NULL, 5);
	atomic_store(&slow_ms, 300);
	before = atomic_load(&calls);
	{
		enum { N = 64 };
		struct burst b[N];
		pthread_t tid[N];

		for (i = 0; i < N; i++) {
			b[i].p = p;
			pthread_create(&tid[i], NULL, burst_one, &b[i]);
		}
		all = 1;
		for (i = 0; i < N; i++) {
			pthread_join(tid[i], NULL);
			all &= b[i].d.kind == POLICY_FOUND && b[i].d.action == POLICY_CONTINUE;
			policy_decision_free(&b[i].d);
		}
		ok(all, "burst: %d concurrent recipients all found", N);
	}
	is_int(atomic_load(&calls) - before, 1, "burst: one lookup");
	policy_unref(p);

	/* actions are configuration */
	p = make("accept", "reject", "reject", 1);
	policy_decide(p, "btprelay", "MISSING", &d);
	ok(d.action == POLICY_ACCEPT && d.code[0] == '\0', "milter_on_not_found = accept");
	policy_decide(p, "btprelay", "BAD", &d);
	ok(d.action == POLICY_REJECT && strcmp(d.status, "5.3.5") == 0, "milter_on_unusable = reject: 5.3.5");
	policy_decide(p, "btprelay", "DOWN", &d);
	ok(d.action == POLICY_REJECT && strcmp(d.code, "550") == 0 && strcmp(d.status, "5.4.3") == 0,
	   "milter_on_error = reject: 550 5.4.3");
	policy_decide(p, "btprelay", "MISSING", &d);
	policy_unref(p);
	p = make("tempfail", NULL, NULL, 1);
	policy_decide(p, "btprelay", "MISSING", &d);
	ok(d.action == POLICY_TEMPFAIL && strcmp(d.status, "4.1.2") == 0, "milter_on_not_found = tempfail: 4.1.2");
	policy_unref(p);

	/* stale entries while the service fails */
	p = make_ttl(NULL, NULL, NULL, 1, 1, 60);
	atomic_store(&flaky_down, 0);
	policy_decide(p, "btprelay", "FLAKY", &d);
	ok(d.kind == POLICY_FOUND && !d.stale, "flaky: found while the service works");
	policy_decision_free(&d);
	atomic_store(&flaky_down, 1);
	sleep(2);
	policy_decide(p, "btprelay", "FLAKY", &d);
	ok(d.kind == POLICY_FOUND && d.stale && d.action == POLICY_CONTINUE,
	   "flaky: the expired entry is served while the service fails");
	is_str(d.from, "flaky@corp.example", "flaky: with its sender");
	policy_decision_free(&d);
	policy_unref(p);
	p = make_ttl(NULL, NULL, NULL, 1, 1, 0);
	atomic_store(&flaky_down, 0);
	policy_decide(p, "btprelay", "FLAKY", &d);
	policy_decision_free(&d);
	atomic_store(&flaky_down, 1);
	sleep(2);
	policy_decide(p, "btprelay", "FLAKY", &d);
	ok(d.kind == POLICY_ERROR && d.action == POLICY_TEMPFAIL,
	   "flaky: destination_stale_ttl = 0 serves nothing stale");
	policy_decision_free(&d);
	policy_unref(p);

	/* the configuration check */
	config_defaults(&cfg);
	ok(policy_check_config(&cfg, err, sizeof(err)) == 0, "defaults pass");
	cfg.milter_lookup_timeout = 25;
	ok(policy_check_config(&cfg, err, sizeof(err)) < 0, "lookup timeout 25 s refused");
	has_str(err, "below 25 s", "the message says why");
	cfg.milter_lookup_timeout = 24;
	set(&cfg.milter_on_error, "bounce");
	ok(policy_check_config(&cfg, err, sizeof(err)) < 0, "unknown action refused");
	set(&cfg.milter_on_error, "TempFail");
	set(&cfg.milter_sender_policy, "sometimes");
	ok(policy_check_config(&cfg, err, sizeof(err)) < 0, "unknown sender policy refused");
	set(&cfg.milter_sender_policy, "rewrite");
	set(&cfg.milter_socket, "tcp:8894");
	ok(policy_check_config(&cfg, err, sizeof(err)) < 0, "unknown socket kind refused");
	config_free(&cfg);

	/* a reference outlives the swap */
	p = make(NULL, NULL, NULL, 1);
	policy_ref(p);
	policy_unref(p);
	policy_decide(p, "btprelay", "OK", &d);
	ok(d.kind == POLICY_FOUND, "still usable while a reference is held");
	policy_decision_free(&d);
	policy_unref(p);
	return tap_done();
}
