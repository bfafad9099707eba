/*
 * deliver - one delivery request end to end: resolve the destination, get
 * the Connectivity token, tunnel through the proxy (OnPremise) or connect
 * directly (Internet), run the SMTP transaction, report one outcome per
 * recipient and one for the request.
 */
#ifndef BTPRELAY_DELIVER_H
#define BTPRELAY_DELIVER_H

#include <stddef.h>
#include "config.h"
#include "dsn.h"

struct delivery {
	const char *destination;	/* destination name (Postfix ${nexthop}) */
	const char *sender;		/* "" for the null sender */
	const char *const *rcpt;
	size_t nrcpt;
	long size;			/* -1 = unknown */
	int body_fd;			/* the message, LF line ends */
	const char *queue_id;		/* for logs, may be NULL */
};

/*
 * deliver - returns the request's outcome in o and each recipient's in
 * rcpt_out (nrcpt entries). Logs one Postfix-style line per recipient.
 */
void deliver(const struct config *cfg, const struct delivery *dl,
	     struct outcome *rcpt_out, struct outcome *o);

#endif
