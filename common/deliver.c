/*
 * deliver - one delivery request end to end.
 *
 * The route (route.c: bindings, destination, tunnel or direct TCP,
 * implicit TLS) -> SMTP session -> transaction. Every step fills the same
 * struct outcome on failure; recipients that never reached RCPT share the
 * request's outcome. One log line per recipient, in Postfix's words.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "deliver.h"
#include "log.h"
#include "route.h"
#include "metrics.h"
#include "oauth.h"
#include "proxy.h"
#include "smtp.h"
#include "tls.h"
#include "util.h"

/* log_recipient - "to=<r>, relay=..., delay=..., dsn=..., status=... (text)" */
static void log_recipient(const struct delivery *dl, const char *relay, const char *rcpt,
			  const struct outcome *r, double start)
{
	static const char *const status[] = { "sent", "deferred", "bounced" };

	log_info("to=<%s>, relay=%s, destination=%s, delay=%.2f, dsn=%s, status=%s (%s)",
		 rcpt, relay[0] ? relay : "none", dl->destination,
		 conn_now() - start, r->status, status[r->cls], r->text);
}

/*
 * deliver_session - a route with an SMTP session open on it, kept for the
 * next transaction by a caller that has one (btprelay-lmtp).
 */
struct deliver_session {
	struct route rt;
	struct smtp_session s;
	char *name;			/* the destination it was opened for */
	double opened;			/* conn_now() when opened */
};

/* deliver_session_close - QUIT (not waited for), close, free; NULL is fine */
void deliver_session_close(struct deliver_session *ds)
{
	if (ds == NULL)
		return;
	smtp_quit(&ds->s);	/* sends nothing when the session is broken */
	route_close(&ds->rt);
	free(ds->name);
	free(ds);
}

/*
 * session_open - a new session for dl: resolve, connect, TLS, EHLO, AUTH.
 * NULL with o filled on failure; *relay gets the relay's name either way
 * (empty when it was never known).
 */
static struct deliver_session *session_open(const struct config *cfg, const char *name,
					    double start, char *relay, size_t relay_size,
					    struct outcome *o)
{
	struct deliver_session *ds = xcalloc(1, sizeof(*ds));
	struct route *rt = &ds->rt;
	int ok = 0;

	ds->name = xstrdup(name);
	route_init(rt, cfg->smtp_connect_timeout * 1000, start + cfg->delivery_deadline);
	if (route_open(cfg, name, rt, o) == 0)
		ok = smtp_session_open(&ds->s, &rt->conn, &rt->opt, o) == 0;
	str_copy(relay, rt->relay, relay_size);
	if (!ok) {
		deliver_session_close(ds);
		return NULL;
	}
	if (ds->s.tls_active) {
		char desc[128];

		tls_describe(&rt->conn, desc, sizeof(desc));
		log_info("TLS connection established to %s: %s", rt->relay, desc);
	}
	ds->opened = start;
	metrics_inc(METRIC_SESSIONS_OPENED);
	return ds;
}

/*
 * session_reusable - whether ds may carry another transaction to name:
 * between transactions, opened for the same destination less than
 * destination_cache_ttl ago (the destination may have changed since), and
 * the relay has said nothing unasked (a 421 or a closed connection waits
 * in the socket).
 */
static int session_reusable(const struct config *cfg, const struct deliver_session *ds,
			    const char *name)
{
	struct pollfd pfd = { ds->rt.conn.fd, POLLIN, 0 };

	return ds->s.state == SMTP_STATE_READY && strcmp(ds->name, name) == 0
		&& conn_now() - ds->opened < cfg->destination_cache_ttl
		&& conn_pending(&ds->rt.conn) == 0
		&& (ds->rt.conn.ssl == NULL || SSL_pending(ds->rt.conn.ssl) == 0)
		&& poll(&pfd, 1, 0) == 0;
}

/* deliver_transaction - one transaction, on *dsp when it can carry it */
void deliver_transaction(const struct config *cfg, struct deliver_session **dsp,
			 const struct delivery *dl, struct outcome *rcpt_out, struct outcome *o)
{
	double start = conn_now();
	struct smtp_envelope env = { dl->sender, dl->rcpt, dl->nrcpt, dl->size, dl->body };
	struct deliver_session *ds = *dsp;
	char relay[sizeof(ds->rt.relay)] = "";
	unsigned long replies;
	int attempt, reused, silent;
	size_t i;

	if (ds != NULL && !session_reusable(cfg, ds, dl->destination)) {
		deliver_session_close(ds);
		ds = NULL;
	}
	/*
	 * A reused session the relay dropped while it was idle fails before
	 * any reply to this transaction: nothing of it reached the relay, so a
	 * new session gets it once more.
	 */
	for (attempt = 0; attempt < 2; attempt++) {
		reused = ds != NULL;
		if (ds == NULL)
			ds = session_open(cfg, dl->destination, start, relay, sizeof(relay), o);
		if (ds == NULL) {
			for (i = 0; i < dl->nrcpt; i++)
				rcpt_out[i] = *o;
			break;
		}
		str_copy(relay, ds->rt.relay, sizeof(relay));
		if (reused)
			metrics_inc(METRIC_SESSIONS_REUSED);
		ds->rt.conn.deadline = start + cfg->delivery_deadline;
		replies = ds->s.replies;
		if (smtp_send_message(&ds->s, &env, dl->body_fd, rcpt_out, o) == 0
		    || ds->s.state != SMTP_STATE_BROKEN)
			break;
		silent = ds->s.replies == replies;
		deliver_session_close(ds);
		ds = NULL;
		if (!reused || !silent)
			break;
		log_info("relay %s dropped the idle session; opening a new one", relay);
	}
	*dsp = ds;
	for (i = 0; i < dl->nrcpt; i++)
		log_recipient(dl, relay, dl->rcpt[i], &rcpt_out[i], start);
}

/* deliver - one request on a session of its own */
void deliver(const struct config *cfg, const struct delivery *dl,
	     struct outcome *rcpt_out, struct outcome *o)
{
	struct deliver_session *ds = NULL;

	deliver_transaction(cfg, &ds, dl, rcpt_out, o);
	deliver_session_close(ds);
}
