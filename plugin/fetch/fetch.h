/*
 * fetch - one pass over one inbound source: resolve its MAIL destination,
 * open the route to its mailbox (proxy tunnel or direct), TLS and login,
 * hand each message not handed over before to the MTA by SMTP, remember
 * it (state.h) once the MTA accepted it, then mark it done on the server
 * (delete, move or keep) per fetch_done.
 *
 * Returns 0 when the pass completed, -1 with a deferred outcome naming
 * the step (the messages not accepted stay on the server for the next
 * pass). A crash at any point loses nothing: a message leaves the server
 * only after the MTA's 250 and the state file's fsync; the one message
 * between its final dot and that fsync is handed over again by the next
 * pass (once: a second interruption holds it on the server).
 */
#ifndef BTPRELAY_FETCH_H
#define BTPRELAY_FETCH_H

#include <signal.h>
#include "conf.h"
#include "conn.h"
#include "dsn.h"
#include "smtp.h"

/* the MTA: one SMTP session kept across messages and sources */
struct fetch_mta {
	struct conn conn;
	struct smtp_session s;
	struct smtp_options opt;
	int open;
	char helo[256];
	char name[300];
};

enum {
	FETCH_PROBE = 1 << 0,	/* only connect, log in and count (o says what was found) */
	FETCH_IDLE = 1 << 1,	/* after the pass, wait in IMAP IDLE where the server offers it */
};

/*
 * fetch_source - one pass over the source name. Returns 0 when it
 * completed, 1 when it completed and then IMAP IDLE (FETCH_IDLE, RFC 2177)
 * saw new mail arrive or *stop end the wait: pass again now; -1 on failure
 * (o says why).
 */
int fetch_source(const struct config *cfg, const char *name, struct fetch_mta *mta,
		 volatile sig_atomic_t *stop, unsigned flags, struct outcome *o);
void fetch_mta_close(struct fetch_mta *mta);

#endif
