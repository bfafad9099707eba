/*
 * policy - what btprelay-milter answers to one recipient, without libmilter.
 *
 * The MTA has already routed the recipient: {rcpt_mailer} is the transport,
 * {rcpt_host} its next hop. When the mailer is btprelay's transport, the
 * next hop is a destination name; policy_decide() resolves it through the
 * library (bindings_load + dest_resolve), behind an in-memory cache that is
 * shared by every milter thread: one lookup per name at a time (the others
 * wait for it), found destinations kept for milter_cache_ttl, "not found"
 * and "unusable" for milter_negative_ttl, failures for a few seconds. No
 * caller waits longer than milter_lookup_timeout, whatever the lookup does.
 *
 * A struct policy holds one configuration and its cache. It is reference
 * counted: a reload builds a new one and swaps it in, and messages in
 * flight keep the one they started with until they release it.
 */
#ifndef BTPRELAY_MILTER_POLICY_H
#define BTPRELAY_MILTER_POLICY_H

#include <stddef.h>

#include "conf.h"
#include "dsn.h"

/* Postfix's milter_command_timeout is 30 s: the lookup deadline stays well below it */
#define POLICY_LOOKUP_TIMEOUT_LIMIT 25

enum policy_action {
	POLICY_CONTINUE = 0,	/* not ours, or found and usable: nothing to say */
	POLICY_ACCEPT,		/* a failure the configuration lets through */
	POLICY_REJECT,		/* 5XX reply */
	POLICY_TEMPFAIL,	/* 4XX reply */
};

enum policy_kind {
	POLICY_NOT_OURS = 0,	/* {rcpt_mailer} is another transport */
	POLICY_FOUND,		/* destination found and usable */
	POLICY_NOT_FOUND,	/* the lookup chain answered: no such destination */
	POLICY_UNUSABLE,	/* found, but wrong (not MAIL, no host or port, ...) */
	POLICY_ERROR,		/* Destination Service unreachable, failing or too slow */
};

#define POLICY_REPLY_SIZE 512

struct policy_decision {
	enum policy_action action;
	enum policy_kind kind;
	char code[4];			/* SMTP reply code, "550"; "" when none */
	char status[DSN_STATUS_SIZE];	/* enhanced status code, "5.1.2"; "" when none */
	char reply[POLICY_REPLY_SIZE];	/* reply text (no CR/LF); "" when none */
	char detail[DSN_TEXT_SIZE];	/* what the lookup said, for the log */
	const char *dest;		/* the destination the recipient is routed to (in host), NULL when not ours */
	char *from;			/* the destination's sender (mail.smtp.from), NULL = none */
	int cached;			/* answered from the cache */
	int stale;			/* an expired entry served while the service fails */
};

struct policy;

/*
 * policy_check_config - the milter keys of a loaded configuration: actions,
 * sender policy, lookup timeout. Returns 0, or -1 with "FILE: text".
 */
int policy_check_config(const struct config *cfg, char *errbuf, size_t errlen);

/*
 * policy_new - a policy for cfg, which it takes over (the caller must not
 * free it). Bindings are read here, once. Returns NULL with errbuf set
 * (and cfg freed) when the configuration or the bindings are wrong.
 */
struct policy *policy_new(struct config *cfg, char *errbuf, size_t errlen);
/* policy_ref - one more user */
struct policy *policy_ref(struct policy *p);
/* policy_unref - one user less; the last one frees (after running lookups finish) */
void policy_unref(struct policy *p);
/* policy_config - the configuration the policy was built from */
const struct config *policy_config(const struct policy *p);

/*
 * policy_decide - the answer for one recipient. mailer and host are the
 * {rcpt_mailer} and {rcpt_host} macros (NULL when the MTA did not send
 * them: not ours). Ours are the recipients routed to btprelay-transport
 * (mailer milter_transport_name, host the destination name) and to
 * btprelay-lmtp (mailer "lmtp", host milter_lmtp_prefix followed by the
 * destination name: the spawn(8) service btprelay-lmtp-NAME); d->dest
 * points into host at the name. Thread-safe; blocks at most
 * milter_lookup_timeout. The caller releases d->from with
 * policy_decision_free().
 */
void policy_decide(struct policy *p, const char *mailer, const char *host,
		   struct policy_decision *d);
void policy_decision_free(struct policy_decision *d);

/* policy_action_name, policy_kind_name - for log lines */
const char *policy_action_name(enum policy_action a);
const char *policy_kind_name(enum policy_kind k);

/*
 * policy_set_resolver - replace the lookup (bindings + dest_resolve) by fn,
 * for tests. fn answers as dest_resolve does: 0 with *from set (malloc'ed
 * or NULL) when found, -1 with the outcome otherwise (of kind
 * OUTCOME_NOT_FOUND when there is no such destination).
 */
typedef int (*policy_resolver)(const struct config *cfg, const char *name, char **from,
			       struct outcome *o, void *arg);
void policy_set_resolver(struct policy *p, policy_resolver fn, void *arg);

#endif
