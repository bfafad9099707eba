/*
 * policy - the milter's decision for one recipient, and the destination
 * cache behind it.
 *
 * Only recipients whose {rcpt_mailer} is btprelay's transport are looked
 * at; their {rcpt_host} is the destination name, as ${nexthop} is for the
 * transport (for btprelay-lmtp: the socket's name after milter_lmtp_prefix).
 * The lookup itself runs in a thread of its own, one per name at a time:
 * callers for that name wait on a condition variable with a deadline
 * (milter_lookup_timeout), so no SMTP session waits longer than
 * that even when the Destination Service hangs, and a burst of sessions
 * for one destination makes one Destination Service request. A late
 * lookup still fills the cache for the next caller.
 *
 * What the library's answer means here, by the outcome's kind:
 * OUTCOME_NOT_FOUND -> not found; OUTCOME_CONFIG (not MAIL, no host, no
 * port, bad certificates, a broken destinations file) -> unusable;
 * everything else (unreachable, 5xx, timeout; token refused) -> error. Found entries
 * live milter_cache_ttl; "not found" and "unusable" milter_negative_ttl;
 * errors POLICY_ERROR_HOLD seconds, so an outage does not turn every
 * session into a request. While the service fails, a found entry that
 * expired less than destination_stale_ttl ago is still served (as the
 * transport's cache does), and logged by the caller.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bindings.h"
#include "destination.h"
#include "log.h"
#include "policy.h"
#include "util.h"

#define POLICY_ERROR_HOLD 5		/* seconds a failed lookup is remembered */
#define POLICY_MAX_ENTRIES 1024		/* names kept; the oldest idle ones go first */

struct policy_entry {
	struct policy_entry *next;
	char *name;
	unsigned users;			/* waiters and the running lookup: never evicted while > 0 */
	int pending;			/* a lookup for this name is running */
	unsigned long gen;		/* lookups completed */
	int have;			/* a result is stored */
	enum policy_kind kind;
	struct outcome out;
	char *from;
	time_t expires;
	int have_good;			/* the last found answer, for when the service fails */
	char *good_from;
	time_t good_until;
};

struct policy {
	atomic_uint refs;
	struct config cfg;
	struct config lookup_cfg;	/* shallow copy of cfg with a bounded http_timeout */
	struct bindings bind;
	enum policy_action on_not_found, on_unusable, on_error;
	policy_resolver resolver;
	void *resolver_arg;
	pthread_mutex_t lock;
	pthread_cond_t changed;		/* broadcast when any lookup completes */
	struct policy_entry *entries;
	size_t nentries;
};

struct policy_job {
	struct policy *p;
	struct policy_entry *e;
};

/* policy_action_name - for log lines */
const char *policy_action_name(enum policy_action a)
{
	static const char *const names[] = { "continue", "accept", "reject", "tempfail" };

	return (unsigned)a < sizeof(names) / sizeof(names[0]) ? names[a] : "?";
}

/* policy_kind_name - for log lines */
const char *policy_kind_name(enum policy_kind k)
{
	static const char *const names[] = { "not-ours", "found", "not-found", "unusable",
					     "error" };

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* policy_parse_action - reject, tempfail, accept -> action; -1 if invalid */
static int policy_parse_action(const char *s)
{
	if (strcasecmp(s, "reject") == 0)
		return POLICY_REJECT;
	if (strcasecmp(s, "tempfail") == 0)
		return POLICY_TEMPFAIL;
	if (strcasecmp(s, "accept") == 0)
		return POLICY_ACCEPT;
	return -1;
}

/* policy_check_config - the milter keys of a loaded configuration */
int policy_check_config(const struct config *cfg, char *errbuf, size_t errlen)
{
	const struct { const char *key; const char *value; } actions[] = {
		{ "milter_on_not_found", cfg->milter_on_not_found },
		{ "milter_on_unusable", cfg->milter_on_unusable },
		{ "milter_on_error", cfg->milter_on_error },
	};
	const char *path = cfg->path ? cfg->path : "(defaults)";
	const char *sock = cfg->milter_socket;
	char q[64];
	size_t i;

	for (i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		if (policy_parse_action(actions[i].value) < 0) {
			str_printable(q, sizeof(q), actions[i].value, strlen(actions[i].value));
			snprintf(errbuf, errlen, "%s: bad value for %s: \"%s\" (reject, tempfail "
				 "or accept)", path, actions[i].key, q);
			return -1;
		}
	}
	if (strcasecmp(cfg->milter_sender_policy, "keep") != 0
	    && strcasecmp(cfg->milter_sender_policy, "rewrite") != 0) {
		str_printable(q, sizeof(q), cfg->milter_sender_policy,
			      strlen(cfg->milter_sender_policy));
		snprintf(errbuf, errlen, "%s: bad value for milter_sender_policy: \"%s\" (keep or "
			 "rewrite)", path, q);
		return -1;
	}
	if (cfg->milter_lookup_timeout >= POLICY_LOOKUP_TIMEOUT_LIMIT) {
		snprintf(errbuf, errlen, "%s: milter_lookup_timeout is %d s: it must stay below "
			 "%d s (Postfix gives a milter 30 s per command, then applies "
			 "milter_default_action)", path, cfg->milter_lookup_timeout,
			 POLICY_LOOKUP_TIMEOUT_LIMIT);
		return -1;
	}
	if (cfg->milter_transport_name[0] == '\0') {
		snprintf(errbuf, errlen, "%s: milter_transport_name is empty", path);
		return -1;
	}
	if (strncmp(sock, "unix:", 5) != 0 && strncmp(sock, "local:", 6) != 0
	    && strncmp(sock, "inet:", 5) != 0 && strncmp(sock, "inet6:", 6) != 0
	    && sock[0] != '/') {
		str_printable(q, sizeof(q), sock, strlen(sock));
		snprintf(errbuf, errlen, "%s: bad value for milter_socket: \"%s\" (unix:/path or "
			 "inet:PORT@HOST)", path, q);
		return -1;
	}
	return 0;
}

/* policy_new - a policy for cfg, which it takes over */
struct policy *policy_new(struct config *cfg, char *errbuf, size_t errlen)
{
	struct policy *p;
	pthread_condattr_t ca;
	struct outcome o;

	if (policy_check_config(cfg, errbuf, errlen) < 0) {
		config_free(cfg);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	if (bindings_load(&p->cfg, &p->bind, &o) < 0) {
		snprintf(errbuf, errlen, "%s", o.text);
		config_free(&p->cfg);
		free(p);
		return NULL;
	}
	p->lookup_cfg = p->cfg;
	if (p->lookup_cfg.http_timeout > p->cfg.milter_lookup_timeout)
		p->lookup_cfg.http_timeout = p->cfg.milter_lookup_timeout;
	p->on_not_found = (enum policy_action)policy_parse_action(p->cfg.milter_on_not_found);
	p->on_unusable = (enum policy_action)policy_parse_action(p->cfg.milter_on_unusable);
	p->on_error = (enum policy_action)policy_parse_action(p->cfg.milter_on_error);
	atomic_init(&p->refs, 1);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->changed, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

/* policy_ref - one more user */
struct policy *policy_ref(struct policy *p)
{
	atomic_fetch_add(&p->refs, 1);
	return p;
}

/* policy_entry_free - one cache entry */
static void policy_entry_free(struct policy_entry *e)
{
	free(e->name);
	free(e->from);
	free(e->good_from);
	free(e);
}

/* policy_unref - one user less; the last one frees */
void policy_unref(struct policy *p)
{
	struct policy_entry *e, *next;

	if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	/* running lookups hold a reference: nobody else can be here now */
	for (e = p->entries; e != NULL; e = next) {
		next = e->next;
		policy_entry_free(e);
	}
	pthread_cond_destroy(&p->changed);
	pthread_mutex_destroy(&p->lock);
	bindings_free(&p->bind);
	config_free(&p->cfg);
	free(p);
}

/* policy_config - the configuration the policy was built from */
const struct config *policy_config(const struct policy *p)
{
	return &p->cfg;
}

/* policy_set_resolver - replace the lookup, for tests */
void policy_set_resolver(struct policy *p, policy_resolver fn, void *arg)
{
	p->resolver = fn;
	p->resolver_arg = arg;
}

/* policy_resolve - the library's lookup chain: 0 with *from, or -1 with the outcome */
static int policy_resolve(struct policy *p, const char *name, char **from, struct outcome *o)
{
	struct mail_destination d;
	int rc;

	*from = NULL;
	if (p->resolver != NULL)
		return p->resolver(&p->lookup_cfg, name, from, o, p->resolver_arg);
	if ((rc = dest_resolve(&p->lookup_cfg, &p->bind, name, &d, o)) != 0)
		return -1;
	if (d.from != NULL)
		*from = xstrdup(d.from);
	dest_free(&d);
	return 0;
}

/* policy_classify - what policy_resolve's answer rc means (see the top of this file) */
static enum policy_kind policy_classify(int rc, const struct outcome *o)
{
	if (rc == 0)
		return POLICY_FOUND;
	if (o->kind == OUTCOME_NOT_FOUND)
		return POLICY_NOT_FOUND;
	return o->kind == OUTCOME_CONFIG ? POLICY_UNUSABLE : POLICY_ERROR;
}

/* policy_ttl - how long a result of this kind is kept */
static int policy_ttl(const struct policy *p, enum policy_kind kind)
{
	switch (kind) {
	case POLICY_FOUND:
		return p->cfg.milter_cache_ttl;
	case POLICY_NOT_FOUND:
	case POLICY_UNUSABLE:
		return p->cfg.milter_negative_ttl;
	default:
		return p->cfg.milter_negative_ttl < POLICY_ERROR_HOLD
			? p->cfg.milter_negative_ttl : POLICY_ERROR_HOLD;
	}
}

/* policy_worker - one lookup, in its own thread; stores the result and wakes the waiters */
static void *policy_worker(void *arg)
{
	struct policy_job *job = arg;
	struct policy *p = job->p;
	struct policy_entry *e = job->e;
	struct outcome o;
	char *from = NULL;
	enum policy_kind kind;
	time_t now;
	double start = (double)time(NULL);

	free(job);
	memset(&o, 0, sizeof(o));
	kind = policy_classify(policy_resolve(p, e->name, &from, &o), &o);
	log_debug("milter: lookup of destination %s: %s in %.0f s%s%s", e->name,
		  policy_kind_name(kind), (double)time(NULL) - start,
		  kind == POLICY_FOUND ? "" : ": ", kind == POLICY_FOUND ? "" : o.text);

	pthread_mutex_lock(&p->lock);
	now = time(NULL);
	e->have = 1;
	e->kind = kind;
	e->out = o;
	free(e->from);
	e->from = from;
	e->expires = now + policy_ttl(p, kind);
	if (kind == POLICY_FOUND) {
		free(e->good_from);
		e->good_from = from != NULL ? xstrdup(from) : NULL;
		e->have_good = 1;
		e->good_until = e->expires + p->cfg.destination_stale_ttl;
	} else if (kind != POLICY_ERROR) {
		/* an answer replaces what was known before */
		free(e->good_from);
		e->good_from = NULL;
		e->have_good = 0;
	}
	e->pending = 0;
	e->gen++;
	e->users--;
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
	policy_unref(p);
	return NULL;
}

/* policy_evict - make room: expired idle entries first, then the oldest idle one */
static void policy_evict(struct policy *p, time_t now)
{
	struct policy_entry **pp, *e, **oldest = NULL;

	for (pp = &p->entries; (e = *pp) != NULL;) {
		if (e->users == 0 && !e->pending && e->expires <= now
		    && (!e->have_good || e->good_until <= now)) {
			*pp = e->next;
			policy_entry_free(e);
			p->nentries--;
			continue;
		}
		if (e->users == 0 && !e->pending && (oldest == NULL || e->expires < (*oldest)->expires))
			oldest = pp;
		pp = &e->next;
	}
	if (p->nentries >= POLICY_MAX_ENTRIES && oldest != NULL) {
		e = *oldest;
		*oldest = e->next;
		policy_entry_free(e);
		p->nentries--;
	}
}

/* policy_entry_get - the entry for name, created when missing; under the lock */
static struct policy_entry *policy_entry_get(struct policy *p, const char *name)
{
	struct policy_entry *e;

	for (e = p->entries; e != NULL; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	if (p->nentries >= POLICY_MAX_ENTRIES)
		policy_evict(p, time(NULL));
	e = xcalloc(1, sizeof(*e));
	e->name = xstrdup(name);
	e->next = p->entries;
	p->entries = e;
	p->nentries++;
	return e;
}

/* policy_start - a lookup thread for e; under the lock. Returns 0, or -1 with o set */
static int policy_start(struct policy *p, struct policy_entry *e, struct outcome *o)
{
	struct policy_job *job = xmalloc(sizeof(*job));
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	job->p = policy_ref(p);
	job->e = e;
	e->pending = 1;
	e->users++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&tid, &attr, policy_worker, job);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		e->pending = 0;
		e->users--;
		free(job);
		/* not policy_unref: the caller holds a reference, so this is never the last */
		atomic_fetch_sub(&p->refs, 1);
		dsn_local(o, "cannot start a lookup thread: %s", strerror(rc));
		return -1;
	}
	return 0;
}

/* policy_deadline - now + seconds on the monotonic clock */
static struct timespec policy_deadline(int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += seconds;
	return ts;
}

/*
 * policy_lookup - the cached or fresh result for name, waiting at most the
 * lookup timeout. Fills kind, the outcome and *from (malloc'ed or NULL).
 */
static void policy_lookup(struct policy *p, const char *name, enum policy_kind *kind,
			  struct outcome *o, char **from, int *cached, int *stale)
{
	struct timespec deadline = policy_deadline(p->cfg.milter_lookup_timeout);
	struct policy_entry *e;
	unsigned long gen;
	int rc = 0, done;

	*from = NULL;
	*cached = *stale = 0;
	pthread_mutex_lock(&p->lock);
	e = policy_entry_get(p, name);
	if (e->have && time(NULL) < e->expires) {
		*cached = 1;
		done = 1;
	} else {
		e->users++;
		gen = e->gen;
		if (!e->pending && policy_start(p, e, o) < 0) {
			e->users--;
			pthread_mutex_unlock(&p->lock);
			*kind = POLICY_ERROR;
			return;
		}
		while (e->gen == gen && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&p->changed, &p->lock, &deadline);
		e->users--;
		done = e->gen != gen;
	}
	if (done) {
		*kind = e->kind;
		*o = e->out;
		*from = e->from != NULL ? xstrdup(e->from) : NULL;
	} else {
		*kind = POLICY_ERROR;
		dsn_defer(o, "4.4.3", "lookup of destination %s did not finish within %d s "
			  "(milter_lookup_timeout)", name, p->cfg.milter_lookup_timeout);
	}
	if (*kind == POLICY_ERROR && e->have_good && time(NULL) < e->good_until) {
		*kind = POLICY_FOUND;
		*stale = 1;
		free(*from);
		*from = e->good_from != NULL ? xstrdup(e->good_from) : NULL;
	}
	pthread_mutex_unlock(&p->lock);
}

/* policy_reply - fill code, status and reply text for a refusing action */
static void policy_reply(struct policy_decision *d, const char *temp, const char *perm,
			 const char *name, const char *what, const char *why)
{
	const char *status = d->action == POLICY_REJECT ? perm : temp;
	char text[POLICY_REPLY_SIZE];
	size_t n = strlen(name);

	snprintf(d->code, sizeof(d->code), "%s", d->action == POLICY_REJECT ? "550" : "451");
	snprintf(d->status, sizeof(d->status), "%s", status);
	/* the library's texts start with "destination NAME": say it once */
	if (strncmp(why, "destination ", 12) == 0 && strncmp(why + 12, name, n) == 0
	    && (why[12 + n] == ' ' || why[12 + n] == ':')) {
		why += 12 + n;
		why += why[0] == ':' ? 2 : 1;
	}
	snprintf(text, sizeof(text), "destination <%s> %s: %s", name, what, why);
	str_printable(d->reply, sizeof(d->reply), text, strlen(text));
}

/*
 * policy_route - the destination name of a recipient routed to btprelay
 * (a pointer into host), or NULL when the route is another's
 */
static const char *policy_route(const struct config *cfg, const char *mailer, const char *host)
{
	size_t n = strlen(cfg->milter_lmtp_prefix);

	if (mailer == NULL || host == NULL)
		return NULL;
	if (strcmp(mailer, cfg->milter_transport_name) == 0)
		return host;
	if (strcmp(mailer, "lmtp") == 0 && n > 0 && strncmp(host, cfg->milter_lmtp_prefix, n) == 0)
		return host + n;
	return NULL;
}

/* policy_decide - the answer for one recipient */
void policy_decide(struct policy *p, const char *mailer, const char *host,
		   struct policy_decision *d)
{
	struct outcome o;
	enum policy_action action;
	char name[256];

	memset(d, 0, sizeof(*d));
	d->action = POLICY_CONTINUE;
	d->kind = POLICY_NOT_OURS;
	if ((d->dest = policy_route(&p->cfg, mailer, host)) == NULL)
		return;

	str_printable(name, sizeof(name), d->dest, strlen(d->dest));
	memset(&o, 0, sizeof(o));
	if (*d->dest == '\0') {
		d->kind = POLICY_UNUSABLE;
		if (d->dest == host)
			dsn_config(&o, "the MTA routed the recipient to %s without a "
				   "destination name (transport_maps: %s:NAME)",
				   p->cfg.milter_transport_name, p->cfg.milter_transport_name);
		else
			dsn_config(&o, "the MTA routed the recipient to the socket %s, "
				   "which names no destination after %s", host, p->cfg.milter_lmtp_prefix);
	} else {
		policy_lookup(p, d->dest, &d->kind, &o, &d->from, &d->cached, &d->stale);
	}
	snprintf(d->detail, sizeof(d->detail), "%s", d->kind == POLICY_FOUND ? "" : o.text);

	switch (d->kind) {
	case POLICY_NOT_FOUND:
		action = p->on_not_found;
		break;
	case POLICY_UNUSABLE:
		action = p->on_unusable;
		break;
	case POLICY_ERROR:
		action = p->on_error;
		break;
	default:
		return;
	}
	d->action = action;
	if (action == POLICY_ACCEPT)
		return;
	switch (d->kind) {
	case POLICY_NOT_FOUND:
		policy_reply(d, "4.1.2", "5.1.2", name, "does not exist", o.text);
		break;
	case POLICY_UNUSABLE:
		policy_reply(d, "4.3.5", "5.3.5", name, "cannot be used", o.text);
		break;
	default:
		/* the details name internal URLs: they go to the log, not to the client */
		policy_reply(d, "4.4.3", "5.4.3", name, "cannot be looked up now",
			     "the Destination Service is unreachable or too slow");
		break;
	}
}

/* policy_decision_free - release what a decision holds */
void policy_decision_free(struct policy_decision *d)
{
	free(d->from);
	d->from = NULL;
}
