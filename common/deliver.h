/*
 * deliver - one delivery request end to end: resolve the destination, get
 * the Connectivity token, tunnel through the proxy (OnPremise) or connect
 * directly (Internet), run the SMTP transaction, report one outcome per
 * recipient and one for the request.
 *
 * The way to the relay (destination, proxy, TLS context, SMTP options)
 * is route.h's, shared with `btprelay probe`; this module is about the
 * SMTP session and its transactions.
 */
#ifndef BTPRELAY_DELIVER_H
#define BTPRELAY_DELIVER_H

#include <stddef.h>
#include "conf.h"
#include "dsn.h"
#include "smtp.h"

struct delivery {
	const char *destination;	/* destination name (Postfix ${nexthop}) */
	const char *sender;		/* "" for the null sender */
	const char *const *rcpt;
	size_t nrcpt;
	long size;			/* -1 = unknown */
	int body_fd;			/* the message, LF line ends */
	const struct smtp_body_reader *body;	/* instead of body_fd when not NULL */
	const char *queue_id;		/* for logs, may be NULL */
};

/*
 * deliver - returns the request's outcome in o and each recipient's in
 * rcpt_out (nrcpt entries). Logs one Postfix-style line per recipient.
 */
void deliver(const struct config *cfg, const struct delivery *dl,
	     struct outcome *rcpt_out, struct outcome *o);

/*
 * deliver_session - an SMTP session with a destination's relay (route,
 * tunnel, TLS, AUTH done) that a resident front end keeps between
 * transactions, as Postfix's smtp(8) keeps its connections.
 */
struct deliver_session;
/*
 * deliver_transaction - deliver() on the session *dsp: it is used when it
 * can carry the transaction (opened for the same destination less than
 * destination_cache_ttl ago, between transactions, nothing unasked from
 * the relay), else closed and replaced by a new one. A reused session that
 * the relay dropped while idle (the transaction got no reply at all) is
 * replaced and the transaction sent once more. On return *dsp is the
 * session for the next transaction, or NULL when it broke.
 */
void deliver_transaction(const struct config *cfg, struct deliver_session **dsp,
			 const struct delivery *dl, struct outcome *rcpt_out, struct outcome *o);
/* deliver_session_close - QUIT without waiting, close, free; NULL is fine */
void deliver_session_close(struct deliver_session *ds);

#endif
