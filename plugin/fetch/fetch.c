/*
 * fetch - one pass over one inbound source (fetch.h).
 *
 * The order of the steps for each message is what makes it exactly once
 * but for the message in flight:
 *   1. skip (and mark done again) what the state file lists as done;
 *   2. stream the message from the mailbox into an SMTP transaction with
 *      the MTA: a message cut short (the mailbox connection broke) is
 *      never ended with a dot, so the MTA drops it;
 *   3. just before the final dot, count the hand-over in the state file
 *      ("sent"); after the MTA's 250, record it as done (fsync, rename);
 *   4. only then delete, move or flag it on the server.
 * A crash before the dot leaves nothing at the MTA. A crash between the
 * dot and the record of the 250 leaves the message counted: the next pass
 * hands it over again (the one duplicate, announced in the log); after
 * two such interruptions it is held on the server instead, so no message
 * arrives more than twice. A crash after 3 leaves it done: the next pass
 * only finishes step 4.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bindings.h"
#include "route.h"
#include "destination.h"
#include "fetch.h"
#include "imap.h"
#include "log.h"
#include "pop3.h"
#include "state.h"
#include "tls.h"
#include "util.h"

enum done_action { DONE_DELETE, DONE_MOVE, DONE_KEEP };
enum uv_policy { UV_AUTO, UV_REFETCH, UV_SKIP, UV_STOP };

/* one source's pass */
struct pass {
	const struct config *cfg;
	const char *name;
	struct fetch_mta *mta;
	volatile sig_atomic_t *stop;
	struct mail_destination d;	/* as resolved */
	struct mail_destination view;	/* d with the mailbox's host, port and TLS hints */
	struct bindings bind;
	struct conn conn;
	SSL_CTX *ctx;
	struct tls_policy tp;
	struct fetch_state st;
	char server[320];		/* "mail.corp.internal:993" */
	char tls_keys[16];		/* "mail.imaps": the view's TLS hints, as texts name them */
	const char *sender;
	enum done_action done;
	int probe;			/* log in and look, fetch nothing, change nothing */
	struct imap_session imap;	/* kept open after the pass for IDLE */
	int more;			/* fetch_max_messages left messages for the next pass */
	unsigned long fetched, skipped, kept, held, again;
};

static enum done_action done_action(const char *s)
{
	return strcmp(s, "keep") == 0 ? DONE_KEEP : strcmp(s, "move") == 0 ? DONE_MOVE
		: DONE_DELETE;
}

/* uv_policy - fetch_uidvalidity_change, auto resolved by fetch_done */
static enum uv_policy uv_policy(const struct config *cfg, enum done_action done)
{
	const char *s = cfg->fetch_uidvalidity_change;

	if (strcmp(s, "refetch") == 0)
		return UV_REFETCH;
	if (strcmp(s, "skip") == 0)
		return UV_SKIP;
	if (strcmp(s, "stop") == 0)
		return UV_STOP;
	/* auto: a mailbox we empty holds only what was not handed over yet */
	return done == DONE_KEEP ? UV_STOP : UV_REFETCH;
}

/* fetch_mta_close - QUIT and close */
void fetch_mta_close(struct fetch_mta *mta)
{
	if (!mta->open)
		return;
	smtp_quit(&mta->s);
	conn_close(&mta->conn);
	mta->open = 0;
}

/* mta_open - an SMTP session with fetch_smtp_server (no TLS, no AUTH: a local MTA) */
static int mta_open(const struct config *cfg, struct fetch_mta *mta, struct outcome *o)
{
	char host[256];
	const char *colon = strrchr(cfg->fetch_smtp_server, ':');
	size_t hl = (size_t)(colon - cfg->fetch_smtp_server);
	unsigned long port = strtoul(colon + 1, NULL, 10);

	if (mta->open && mta->s.state == SMTP_STATE_READY)
		return 0;
	fetch_mta_close(mta);
	if (hl >= sizeof(host))
		hl = sizeof(host) - 1;
	memcpy(host, cfg->fetch_smtp_server, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	route_helo_name(cfg, mta->helo, sizeof(mta->helo));
	memset(&mta->opt, 0, sizeof(mta->opt));
	snprintf(mta->name, sizeof(mta->name), "%s", cfg->fetch_smtp_server);
	mta->opt.helo_name = mta->helo;
	mta->opt.relay_name = mta->name;
	mta->opt.tls_level = TLS_LEVEL_NONE;
	mta->opt.command_timeout_ms = cfg->smtp_command_timeout * 1000;
	mta->opt.data_done_timeout_ms = cfg->smtp_data_done_timeout * 1000;
	conn_init(&mta->conn, cfg->smtp_connect_timeout * 1000, 0);
	if (conn_connect(&mta->conn, host, (unsigned)port) < 0) {
		dsn_defer(o, "4.4.1", "connect to the MTA %s: %s", mta->conn.peer, mta->conn.errtext);
		return -1;
	}
	conn_set_timeout(&mta->conn, mta->opt.command_timeout_ms);
	mta->open = 1;
	if (smtp_session_open(&mta->s, &mta->conn, &mta->opt, o) < 0) {
		fetch_mta_close(mta);
		return -1;
	}
	return 0;
}

/*
 * counted_reader - the message as the MTA gets it; at its end, before the
 * final dot goes out, the hand-over is counted in the state file ("sent"):
 * from then on the MTA may hold a copy even if its 250 never arrives.
 */
struct counted_reader {
	struct pass *p;
	const char *id;
	const struct smtp_body_reader *inner;
	int recorded;
};

static ssize_t counted_read(void *arg, char *buf, size_t n)
{
	struct counted_reader *cr = arg;
	struct fetch_state *st = &cr->p->st;
	ssize_t k = cr->inner->read(cr->inner->arg, buf, n);
	char err[512];

	if (k == 0 && !cr->recorded) {
		state_sent_set(st, cr->id, state_sent_count(st, cr->id) + 1);
		if (state_save(st, err, sizeof(err)) < 0) {
			log_error("%s: %s", cr->p->name, err);
			errno = EIO;
			return -1;	/* no final dot: the MTA drops the message */
		}
		cr->recorded = 1;
	}
	return k;
}

/*
 * hand_over - one message from rd to the MTA. 0 when the MTA accepted it
 * and the state file says so (o holds the MTA's reply), -1 otherwise (o
 * says why; DSN_BOUNCE when the MTA refused it for good).
 */
static int hand_over(struct pass *p, const char *id, const struct smtp_body_reader *rd, long size,
		     struct outcome *o)
{
	const char *rcpt[1] = { p->cfg->fetch_recipient };
	struct counted_reader cr = { p, id, rd, 0 };
	struct smtp_body_reader crd = { counted_read, &cr, 0 };
	struct smtp_envelope env = { p->sender, rcpt, 1, size, &crd };
	struct outcome ro;
	char err[512];
	int rc, answered;

	if (mta_open(p->cfg, p->mta, o) < 0)
		return -1;
	rc = smtp_send_message(&p->mta->s, &env, -1, &ro, o);
	answered = p->mta->s.state == SMTP_STATE_READY;
	if (!answered)
		fetch_mta_close(p->mta);
	if (rc == 0) {
		state_add(&p->st, id);
		state_sent_set(&p->st, id, 0);
	} else if (cr.recorded && answered) {	/* the MTA said no: that copy is not there */
		state_sent_set(&p->st, id, state_sent_count(&p->st, id) - 1);
	} else {
		return rc;	/* no dot sent, or no answer to it: the count stands */
	}
	if (state_save(&p->st, err, sizeof(err)) < 0) {
		log_error("%s: %s", p->name, err);
		if (rc == 0)	/* accepted, and counted as sent: at most one more copy */
			dsn_defer(o, "4.3.0", "%s", err);
		return -1;
	}
	return rc;
}

/*
 * may_hand_over - whether the message id may go to the MTA once more: not
 * after two interrupted hand-overs (the MTA may hold two copies already).
 * Such a message stays on the server, untouched, and is named each pass.
 */
static int may_hand_over(struct pass *p, const char *id)
{
	unsigned sent = state_sent_count(&p->st, id);

	if (sent >= 2) {
		log_warn("%s: uid=%s: handed over %u times without the MTA's answer (interrupted); "
			 "not handed over again and left on the server: find it in the MTA's log, "
			 "then delete it there, or remove its \"sent\" line from %s to have it handed "
			 "over once more", p->name, id, sent, p->st.path);
		p->held++;
		return 0;
	}
	if (sent == 1) {
		log_info("%s: uid=%s: handed over before without the MTA's answer (interrupted); "
			 "handing it over again: the MTA may get it twice", p->name, id);
		p->again++;
	}
	return 1;
}

/* save - the state file; a failure after the MTA accepted is loud: the message may come twice */
static int save(struct pass *p, struct outcome *o)
{
	char err[512];

	if (state_save(&p->st, err, sizeof(err)) == 0)
		return 0;
	log_error("%s: %s", p->name, err);
	dsn_defer(o, "4.3.0", "%s", err);
	return -1;
}

/* log_message - one line per message handed over or refused */
static void log_message(const struct pass *p, const char *id, long size, const struct outcome *o,
			const char *done)
{
	static const char *const status[] = { "sent", "deferred", "bounced" };

	log_msg(o->cls == DSN_OK ? LOG_LVL_INFO : LOG_LVL_WARN,
		"%s: uid=%s, size=%ld, from=<%s>, to=<%s>, mta=%s, dsn=%s, status=%s (%s)%s%s",
		p->name, id, size, p->sender, p->cfg->fetch_recipient, p->mta->name, o->status,
		status[o->cls], o->text, done ? ", done=" : "", done ? done : "");
}

/* ---- TLS and login, both protocols ---- */

/* open_route - resolve, store view, connect (tunnel or direct), implicit TLS */
static int open_route(struct pass *p, struct outcome *o)
{
	const struct config *cfg = p->cfg;
	struct dest_store *s;

	if (bindings_load(cfg, &p->bind, o) < 0)
		return -1;
	if (dest_resolve(cfg, &p->bind, p->name, &p->d, o) != 0)
		return -1;
	s = &p->d.store;
	if (s->protocol == DEST_STORE_NONE) {
		dsn_defer(o, "4.3.5", "destination %s has no mail.store.protocol (imap, imaps, pop3, "
			  "pop3s): not a mailbox", p->name);
		return -1;
	}
	/* the mailbox seen through the SMTP-shaped fields tls.c and the tunnel read */
	p->view = p->d;
	p->view.host = s->host;
	p->view.port = s->port;
	p->view.smtps = s->protocol == DEST_STORE_IMAPS || s->protocol == DEST_STORE_POP3S;
	p->view.ssl_enable = s->ssl_enable;
	p->view.starttls_enable = s->starttls_enable;
	p->view.starttls_required = s->starttls_required;
	p->view.ssl_checkserveridentity = s->ssl_checkserveridentity;
	p->view.ssl_trust = s->ssl_trust;
	p->view.ssl_fingerprint = s->ssl_fingerprint;
	p->view.ssl_verifyname = s->ssl_verifyname;
	snprintf(p->tls_keys, sizeof(p->tls_keys), "mail.%s", dest_store_name(s->protocol));
	p->view.tls_keys = p->tls_keys;
	snprintf(p->server, sizeof(p->server), "%s:%u", s->host, s->port);

	route_tls_policy(cfg, &p->view, &p->tp);
	if (p->tp.level != TLS_LEVEL_NONE || p->tp.implicit) {
		if (route_tls_context(cfg, &p->view, &p->tp, &p->ctx, o) < 0)
			return -1;
		if (p->tp.warnings[0])
			log_warn("destination %s: %s", p->name, p->tp.warnings);
	}
	conn_init(&p->conn, cfg->smtp_connect_timeout * 1000, 0);
	if (p->view.onpremise) {
		if (route_open_tunnel(cfg, &p->bind, &p->view, &p->conn, o) < 0)
			return -1;
	} else if (conn_connect(&p->conn, p->view.host, p->view.port) < 0) {
		dsn_defer(o, "4.4.1", "connect to %s: %s", p->conn.peer, p->conn.errtext);
		return -1;
	}
	if (p->tp.implicit && tls_handshake_peer(&p->conn, p->ctx, &p->tp.peer) < 0) {
		dsn_defer(o, "4.7.5", "TLS handshake with %s failed: %s", p->server, p->conn.errtext);
		return -1;
	}
	conn_set_timeout(&p->conn, cfg->fetch_timeout * 1000);
	return 0;
}

/*
 * want_starttls - 1 to start TLS (offered and wanted), 0 to go on in
 * clear, -1 when TLS is required and not offered
 */
static int want_starttls(struct pass *p, int offered, struct outcome *o)
{
	if (p->tp.implicit || p->tp.level == TLS_LEVEL_NONE)
		return 0;
	if (offered)
		return 1;
	if (p->tp.level >= TLS_LEVEL_ENCRYPT) {
		dsn_defer(o, "4.7.4", "TLS is required (%s), but %s does not offer STARTTLS",
			  p->tp.required_by ? p->tp.required_by : "smtp_tls_security_level",
			  p->server);
		return -1;
	}
	return 0;
}

/* starttls_handshake - the TLS handshake after STARTTLS/STLS */
static int starttls_handshake(struct pass *p, struct outcome *o)
{
	if (tls_handshake_peer(&p->conn, p->ctx, &p->tp.peer) < 0) {
		dsn_defer(o, "4.7.5", "TLS handshake with %s failed: %s", p->server, p->conn.errtext);
		return -1;
	}
	return 0;
}

/*
 * credentials - which login: 1 XOAUTH2 (token in *secret), 0 user and
 * password, -1 none possible (o set). Credentials travel in clear only
 * through the proxy tunnel with smtp_auth_plaintext_onpremise=yes.
 */
static int credentials(struct pass *p, const char **secret, struct outcome *o)
{
	const struct mail_destination *d = &p->d;
	int oauth = d->authentication && strncasecmp(d->authentication, "OAuth2", 6) == 0;

	if (p->conn.ssl == NULL && !(d->onpremise && p->cfg->smtp_auth_plaintext_onpremise)) {
		dsn_defer(o, "4.7.0", "%s: credentials are never sent in clear text here; the "
			  "mailbox %s offered no TLS", p->name, p->server);
		return -1;
	}
	if (d->user == NULL) {
		dsn_defer(o, "4.3.5", "destination %s has no mail.user", p->name);
		return -1;
	}
	if (oauth) {
		if (d->oauth_token.value == NULL) {
			dsn_defer(o, "4.7.0", "destination %s: %s", p->name, d->oauth_token.error
				  ? d->oauth_token.error : "no OAuth2 token (authTokens)");
			return -1;
		}
		*secret = d->oauth_token.value;
		return 1;
	}
	if (d->password == NULL) {
		dsn_defer(o, "4.3.5", "destination %s has no mail.password", p->name);
		return -1;
	}
	*secret = d->password;
	return 0;
}

/* ---- what the server lists, both protocols ---- */

/* the messages in the mailbox as the state file names them: IMAP UIDs (ascending), POP3 UIDLs */
struct listing {
	const unsigned long *uids;	/* IMAP, else NULL */
	const struct pop3_uidl *uidl;	/* POP3 */
	size_t n;
};

/* listing_id - the state file's id of message i */
static const char *listing_id(const struct listing *l, size_t i, char *buf, size_t size)
{
	if (l->uids == NULL)
		return l->uidl[i].uid;
	snprintf(buf, size, "%lu", l->uids[i]);
	return buf;
}

/* listed - state_keep's question: whether the server still lists id */
static int listed(const char *id, void *arg)
{
	const struct listing *l = arg;
	unsigned long uid;
	size_t lo = 0, hi = l->n, i;

	if (l->uids == NULL) {
		for (i = 0; i < l->n; i++)
			if (strcmp(l->uidl[i].uid, id) == 0)
				return 1;
		return 0;
	}
	uid = strtoul(id, NULL, 10);
	while (lo < hi) {		/* UIDs in ascending order */
		size_t mid = lo + (hi - lo) / 2;

		if (l->uids[mid] == uid)
			return 1;
		if (l->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/*
 * forget_gone - the state file forgets what the server no longer lists
 * (deleted or moved meanwhile), and is saved when that changed it
 */
static int forget_gone(struct pass *p, const struct listing *l, struct outcome *o)
{
	size_t before = p->st.n;

	state_keep(&p->st, listed, (void *)l);
	return p->st.n != before ? save(p, o) : 0;
}

/*
 * probe_summary - what --probe found, in o: the login, what (the IMAP
 * folder and UIDVALIDITY, or ""), how many messages and how many of them
 * were not handed over yet (all of them when all_new: UIDVALIDITY changed)
 */
static void probe_summary(struct pass *p, const struct listing *l, const char *what, int all_new,
			  struct outcome *o)
{
	char buf[24];
	size_t i, fresh = 0;

	for (i = 0; i < l->n; i++)
		fresh += !state_has(&p->st, listing_id(l, i, buf, sizeof(buf)));
	dsn_ok(o, "2.0.0", "login as %s ok; %s%zu messages, %zu not handed over yet", p->d.user,
	       what, l->n, all_new ? l->n : fresh);
}

/* ---- IMAP ---- */

struct imap_reader {
	struct imap_session *s;
};

static ssize_t imap_body_read(void *arg, char *buf, size_t n)
{
	return imap_fetch_read(((struct imap_reader *)arg)->s, buf, n);
}

static int cmp_ulong(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

/* imap_uidvalidity - the documented policy when UIDVALIDITY changed (btprelay-fetch(8)) */
static int imap_uidvalidity(struct pass *p, unsigned long now, const unsigned long *uids, size_t n,
			    struct outcome *o)
{
	static const char *const names[] = { "auto", "refetch", "skip", "stop" };
	unsigned long was = p->st.uidvalidity;
	enum uv_policy pol;
	char id[24];
	size_t i;

	if (now == 0) {
		dsn_defer(o, "4.4.2", "IMAP server %s: SELECT gave no UIDVALIDITY", p->server);
		return -1;
	}
	if (was == now)
		return 0;
	if (was == 0) {
		p->st.uidvalidity = now;
		return save(p, o);
	}
	pol = uv_policy(p->cfg, p->done);
	if (pol == UV_STOP) {
		dsn_defer(o, "4.3.0", "%s: UIDVALIDITY of %s changed from %lu to %lu: the UIDs in "
			  "%s mean nothing now; nothing fetched (fetch_uidvalidity_change=%s: set "
			  "refetch or skip, or move the state file away)", p->name,
			  p->cfg->fetch_mailbox, was, now, p->st.path, p->cfg->fetch_uidvalidity_change);
		log_error("%s", o->text);
		return -1;
	}
	log_warn("%s: UIDVALIDITY of %s changed from %lu to %lu: %s (fetch_uidvalidity_change=%s%s%s)",
		 p->name, p->cfg->fetch_mailbox, was, now,
		 pol == UV_SKIP ? "the messages there now are taken as fetched and NOT handed over"
		 : "every message there now is handed over again", p->cfg->fetch_uidvalidity_change,
		 strcmp(p->cfg->fetch_uidvalidity_change, names[pol]) ? ": " : "",
		 strcmp(p->cfg->fetch_uidvalidity_change, names[pol]) ? names[pol] : "");
	state_clear(&p->st);
	p->st.uidvalidity = now;
	if (pol == UV_SKIP)
		for (i = 0; i < n; i++) {
			snprintf(id, sizeof(id), "%lu", uids[i]);
			state_add(&p->st, id);
		}
	return save(p, o);
}

/* imap_mark_done - delete (flag now, expunge at the end), move or flag \Seen */
static int imap_mark_done(struct pass *p, struct imap_session *s, unsigned long uid,
			  unsigned long *expunge, size_t *nexpunge, struct outcome *o)
{
	switch (p->done) {
	case DONE_DELETE:
		if (imap_uid_store(s, uid, "\\Deleted", o) < 0)
			return -1;
		expunge[(*nexpunge)++] = uid;
		return 0;
	case DONE_MOVE:
		if (imap_uid_move(s, uid, p->cfg->fetch_move_folder, o) < 0)
			return -1;
		if (!(s->caps & IMAP_CAP_MOVE))
			expunge[(*nexpunge)++] = uid;
		return 0;
	case DONE_KEEP:
		return imap_uid_store(s, uid, "\\Seen", o);
	}
	return 0;
}

/* imap_pass - log in, select, hand over each new message, mark done, expunge */
static int imap_pass(struct pass *p, struct outcome *o)
{
	static const char *const done_names[] = { "deleted", "moved", "kept" };
	struct imap_session *s = &p->imap;
	struct imap_reader ir = { s };
	struct smtp_body_reader rd = { imap_body_read, &ir, 0 };
	unsigned long *uids = NULL, *expunge = NULL, size;
	size_t n = 0, nexpunge = 0, i;
	struct listing l = { NULL, NULL, 0 };
	const char *secret = NULL;
	int rc = -1, r, how;
	char id[24];

	if (imap_open(s, &p->conn, p->server, o) < 0)
		goto out;
	if ((r = want_starttls(p, s->caps & IMAP_CAP_STARTTLS, o)) < 0)
		goto out;
	if (r == 1 && (imap_starttls_begin(s, o) < 0 || starttls_handshake(p, o) < 0
		       || imap_capability(s, o) < 0))
		goto out;
	if ((how = credentials(p, &secret, o)) < 0)
		goto out;
	if ((how == 1 ? imap_xoauth2(s, p->d.user, secret, o)
	     : imap_login(s, p->d.user, secret, o)) < 0) {
		log_error("%s: login to %s as %s failed: %s", p->name, p->server, p->d.user, o->text);
		goto out;
	}
	if (imap_select(s, p->cfg->fetch_mailbox, o) < 0 || imap_uid_search(s, &uids, &n, o) < 0)
		goto out;
	qsort(uids, n, sizeof(*uids), cmp_ulong);
	l.uids = uids;
	l.n = n;
	if (p->probe) {
		char what[300];

		snprintf(what, sizeof(what), "%s: UIDVALIDITY %lu (state file: %lu), ",
			 p->cfg->fetch_mailbox, s->uidvalidity, p->st.uidvalidity);
		probe_summary(p, &l, what, p->st.uidvalidity != 0
			      && p->st.uidvalidity != s->uidvalidity, o);
		rc = 0;
		goto out;
	}
	if (imap_uidvalidity(p, s->uidvalidity, uids, n, o) < 0 || forget_gone(p, &l, o) < 0)
		goto out;
	expunge = xcalloc(n + 1, sizeof(*expunge));
	for (i = 0; i < n && !*p->stop; i++) {
		snprintf(id, sizeof(id), "%lu", uids[i]);
		if (state_has(&p->st, id)) {	/* handed over before: only mark it done */
			if (imap_mark_done(p, s, uids[i], expunge, &nexpunge, o) < 0)
				goto out;
			p->skipped++;
			continue;
		}
		if (p->cfg->fetch_max_messages > 0 && p->fetched >= (unsigned long)p->cfg->fetch_max_messages) {
			p->more = 1;
			break;
		}
		if (!may_hand_over(p, id))
			continue;
		if ((r = imap_fetch_begin(s, uids[i], &size, o)) < 0)
			goto out;
		if (r == 1)
			continue;		/* expunged meanwhile */
		if (hand_over(p, id, &rd, (long)size, o) < 0) {
			struct outcome fo;

			if (s->broken)	/* the mailbox side broke: say so, not "read error" */
				dsn_defer(o, "4.4.2", "IMAP server %s: connection lost after %lu of %lu "
					  "bytes of the message; the MTA did not take it (%s)", p->server,
					  size - s->literal_left, size, conn_strerror(p->conn.err));
			log_message(p, id, (long)size, o, NULL);
			if (!s->broken && imap_fetch_end(s, &fo) < 0)
				*o = fo;
			if (s->broken || o->cls != DSN_BOUNCE)
				goto out;	/* the MTA defers, or the mailbox broke: next pass */
			p->kept++;		/* refused for good: it stays on the server */
			continue;
		}
		p->fetched++;
		log_message(p, id, (long)size, o, done_names[p->done]);
		if (imap_fetch_end(s, o) < 0
		    || imap_mark_done(p, s, uids[i], expunge, &nexpunge, o) < 0)
			goto out;
	}
	if (imap_expunge(s, expunge, nexpunge, o) < 0)
		goto out;
	rc = 0;
out:				/* fetch_source logs out, after IDLE */
	free(uids);
	free(expunge);
	return rc;
}

/* ---- POP3 ---- */

static ssize_t pop3_body_read(void *arg, char *buf, size_t n)
{
	return pop3_retr_read(arg, buf, n);
}

/* pop3_pass - log in, UIDL, hand over each new message, DELE, QUIT */
static int pop3_pass(struct pass *p, struct outcome *o)
{
	struct pop3_session s;
	struct smtp_body_reader rd = { pop3_body_read, &s, 0 };
	struct pop3_uidl *list = NULL;
	struct listing l = { NULL, NULL, 0 };
	const char *secret = NULL;
	size_t n = 0, i;
	int rc = -1, r, how;

	memset(&s, 0, sizeof(s));
	if (p->done == DONE_MOVE) {
		dsn_defer(o, "4.3.5", "%s: POP3 has no folders: fetch_done = move is for IMAP",
			  p->name);
		return -1;
	}
	if (pop3_open(&s, &p->conn, p->server, o) < 0 || pop3_capa(&s, o) < 0)
		goto out;
	if ((r = want_starttls(p, s.caps & POP3_CAP_STLS, o)) < 0)
		goto out;
	if (r == 1 && (pop3_stls_begin(&s, o) < 0 || starttls_handshake(p, o) < 0))
		goto out;
	if ((how = credentials(p, &secret, o)) < 0)
		goto out;
	if ((how == 1 ? pop3_xoauth2(&s, p->d.user, secret, o)
	     : pop3_login(&s, p->d.user, secret, o)) < 0) {
		log_error("%s: login to %s as %s failed: %s", p->name, p->server, p->d.user, o->text);
		goto out;
	}
	if (pop3_uidl(&s, &list, &n, o) < 0)
		goto out;
	l.uidl = list;
	l.n = n;
	if (p->probe) {
		probe_summary(p, &l, "", 0, o);
		rc = pop3_quit(&s, o) < 0 ? -1 : 0;
		goto out;
	}
	if (forget_gone(p, &l, o) < 0)
		goto out;
	for (i = 0; i < n && !*p->stop; i++) {
		const char *id = list[i].uid;

		if (state_has(&p->st, id)) {
			if (p->done == DONE_DELETE && pop3_dele(&s, list[i].number, o) < 0)
				goto out;
			p->skipped++;
			continue;
		}
		if (p->cfg->fetch_max_messages > 0 && p->fetched >= (unsigned long)p->cfg->fetch_max_messages)
			break;
		if (!may_hand_over(p, id))
			continue;
		if (pop3_retr_begin(&s, list[i].number, o) < 0)
			goto out;
		if (hand_over(p, id, &rd, -1, o) < 0) {
			if (s.broken)
				dsn_defer(o, "4.4.2", "POP3 server %s: connection lost in the message; the "
					  "MTA did not take it (%s)", p->server, conn_strerror(p->conn.err));
			log_message(p, id, -1, o, NULL);
			/* the rest of the message is read and dropped, or the session is lost */
			char drop[4096];

			while (!s.broken && pop3_retr_read(&s, drop, sizeof(drop)) > 0)
				;
			if (s.broken || o->cls != DSN_BOUNCE)
				goto out;
			p->kept++;
			continue;
		}
		p->fetched++;
		log_message(p, id, -1, o, p->done == DONE_DELETE ? "deleted" : "kept");
		if (p->done == DONE_DELETE && pop3_dele(&s, list[i].number, o) < 0)
			goto out;
	}
	rc = pop3_quit(&s, o);		/* the deletions take effect */
out:
	/* without QUIT the server forgets our DELEs (RFC 1939 6); the state file does not */
	free(list);
	return rc;
}

/* ---- one source ---- */

/*
 * idle - after a complete IMAP pass, wait in IDLE (RFC 2177) for new mail
 * instead of polling; IDLE is ended and sent again every fetch_idle
 * seconds, under the 29 minutes after which a server may log us out.
 * 1 when new mail came (or a stop was asked), 0 when the server offers no
 * IDLE (poll), -1 when the session failed.
 */
static int idle(struct pass *p, struct outcome *o)
{
	int r;

	if (!(p->imap.caps & IMAP_CAP_IDLE)) {
		log_info("%s: %s offers no IMAP IDLE: next pass in fetch_interval (%d s)", p->name,
			 p->server, p->cfg->fetch_interval);
		return 0;
	}
	fetch_mta_close(p->mta);	/* no SMTP session left idle at the MTA meanwhile */
	log_info("%s: waiting for new mail in %s (IMAP IDLE, renewed every %d s)", p->name,
		 p->cfg->fetch_mailbox, p->cfg->fetch_idle);
	while (!*p->stop) {
		if ((r = imap_idle(&p->imap, p->cfg->fetch_idle, p->stop, o)) < 0) {
			log_warn("%s: IMAP IDLE ended: %s", p->name, o->text);
			return -1;
		}
		if (r == 1) {
			log_info("%s: new mail in %s (IMAP IDLE: EXISTS)", p->name, p->cfg->fetch_mailbox);
			return 1;
		}
		log_debug("%s: IMAP IDLE renewed after %d s", p->name, p->cfg->fetch_idle);
	}
	return 1;
}

/* lock_source - an exclusive lock beside the state file: one pass per source at a time */
static int lock_source(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return -2;
	}
	return fd;
}

/* fetch_source - one pass over one source */
int fetch_source(const struct config *cfg, const char *name, struct fetch_mta *mta,
		 volatile sig_atomic_t *stop, unsigned flags, struct outcome *o)
{
	struct pass p;
	char path[4096], lock[4200], safe[256], err[512];
	int lockfd, rc = -1;
	size_t i;

	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.name = name;
	p.mta = mta;
	p.stop = stop;
	p.probe = (flags & FETCH_PROBE) != 0;
	p.done = done_action(cfg->fetch_done);
	str_copy(safe, name, sizeof(safe));
	for (i = 0; safe[i]; i++)
		if (!isalnum((unsigned char)safe[i]) && safe[i] != '-' && safe[i] != '_' && safe[i] != '.')
			safe[i] = '_';
	if (safe[0] == '.')
		safe[0] = '_';
	if (mkdir(cfg->fetch_state_dir, 0700) < 0 && errno != EEXIST) {
		dsn_defer(o, "4.3.0", "fetch_state_dir %s: %s", cfg->fetch_state_dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s.state", cfg->fetch_state_dir, safe);
	snprintf(lock, sizeof(lock), "%s.lock", path);
	if (p.probe) {		/* reads the state file, takes no lock, writes nothing */
		lockfd = -1;
		if (state_load(&p.st, path, err, sizeof(err)) < 0)
			dsn_defer(o, "4.3.0", "%s", err);
		else if ((rc = open_route(&p, o)) == 0)
			rc = p.d.store.protocol == DEST_STORE_POP3
				|| p.d.store.protocol == DEST_STORE_POP3S ? pop3_pass(&p, o)
				: imap_pass(&p, o);
		if (rc == 0 || o->cls == DSN_OK)
			rc = 0;
		goto out;
	}
	if ((lockfd = lock_source(lock)) < 0) {
		if (lockfd == -2) {
			log_info("%s: another btprelay-fetch is fetching it; skipped", name);
			dsn_ok(o, "2.0.0", "skipped: another btprelay-fetch holds %s", lock);
			return 0;
		}
		dsn_defer(o, "4.3.0", "lock file %s: %s", lock, strerror(errno));
		return -1;
	}
	if (state_load(&p.st, path, err, sizeof(err)) < 0) {
		dsn_defer(o, "4.3.0", "%s", err);
		goto out;
	}
	if (open_route(&p, o) < 0)
		goto out;
	p.sender = cfg->fetch_sender[0] ? cfg->fetch_sender : p.d.from ? p.d.from
		: p.d.user && strchr(p.d.user, '@') ? p.d.user : "";
	log_info("%s: %s %s%s, %s", name, dest_store_name(p.d.store.protocol), p.server,
		 p.d.onpremise ? " through the proxy" : "", p.tp.implicit ? "implicit TLS"
		 : p.tp.level == TLS_LEVEL_NONE ? "no TLS" : "STARTTLS when offered");
	if (p.d.store.protocol == DEST_STORE_IMAP || p.d.store.protocol == DEST_STORE_IMAPS)
		rc = imap_pass(&p, o);
	else
		rc = pop3_pass(&p, o);
	if (rc == 0) {
		dsn_ok(o, "2.0.0", "%lu handed over (%lu of them maybe twice), %lu done earlier, "
		       "%lu refused by the MTA, %lu held", p.fetched, p.again, p.skipped, p.kept,
		       p.held);
		log_info("%s: pass complete: %s", name, o->text);
		if ((flags & FETCH_IDLE) && p.imap.conn != NULL && !p.more && !*stop)
			rc = idle(&p, o);
	} else {
		log_warn("%s: pass ended early after %lu handed over: %s", name, p.fetched, o->text);
	}
out:
	imap_logout(&p.imap);
	conn_close(&p.conn);
	if (p.ctx)
		SSL_CTX_free(p.ctx);
	dest_free(&p.d);
	bindings_free(&p.bind);
	state_free(&p.st);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}
