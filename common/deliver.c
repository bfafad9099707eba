/*
 * deliver - one delivery request end to end.
 *
 * bindings -> destination -> (OnPremise: connectivity token, proxy, 0x80
 * handshake, CONNECT to the virtual host | Internet: direct TCP) -> SMTP.
 * Every step fills the same struct outcome on failure; recipients that
 * never reached RCPT share the request's outcome. One log line per
 * recipient, in Postfix's words.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bindings.h"
#include "conn.h"
#include "deliver.h"
#include "destination.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
#include "proxy.h"
#include "smtp.h"
#include "socks5.h"
#include "tls.h"
#include "util.h"

struct route {
	struct mail_destination dest;
	struct bindings bind;
	struct conn conn;
	SSL_CTX *tls_ctx;
	char relay[320];	/* for texts and logs: "mail.corp.internal:25" */
};

/*
 * open_tunnel - the proxy (proxy.h), with a token: connectivity token,
 * proxy connection, 0x80 handshake, CONNECT; without one (a proxy in
 * trusted mode): proxy connection, 0x80 or 0x00, CONNECT
 */
static int open_tunnel(const struct config *cfg, struct route *rt, struct outcome *o)
{
	struct http_options http;
	const struct bindings *b = &rt->bind;
	struct oauth_token tok = { 0 };
	struct proxy_plan plan;
	/* the tenant the destination was found for: its Cloud Connector */
	unsigned tenant = rt->dest.tenant_is_subscriber ? OAUTH_SUBSCRIBER : 0;
	int attempt, r = SOCKS5_FAIL;

	http_options_init(&http, cfg, rt->conn.deadline);

	if (proxy_plan(cfg, b, rt->dest.name, &plan, o) < 0)
		return -1;
	log_debug("proxy %s:%u, authentication %s (%s)", plan.host, plan.port,
		  config_proxy_auth_name(plan.auth), plan.why);
	/*
	 * A rejected token (auth reply, REP 05) is fetched again once: it may
	 * have been revoked or expired early. Nothing else is retried here:
	 * every other failure defers, and Postfix retries the delivery.
	 * Without a token, socks5_connect never answers SOCKS5_AUTH_REJECTED.
	 */
	for (attempt = 0; attempt < 2 && (attempt == 0 || r == SOCKS5_AUTH_REJECTED); attempt++) {
		if (plan.auth == PROXY_AUTH_TOKEN
		    && oauth_token_cached(cfg, &b->connectivity, &http, "connectivity", tenant, &tok, o) < 0)
			return -1;
		if (conn_connect(&rt->conn, plan.host, plan.port) < 0) {
			dsn_defer(o, "4.4.1", "connect to connectivity proxy %s: %s",
				  rt->conn.peer, rt->conn.errtext);
			oauth_token_free(&tok);
			return -1;
		}
		r = socks5_connect(&rt->conn, plan.auth == PROXY_AUTH_TOKEN ? tok.access_token : NULL,
				   rt->dest.location_id, rt->dest.host, rt->dest.port, o);
		if (r == SOCKS5_AUTH_REJECTED)
			oauth_token_reject(cfg, &b->connectivity, &http, "connectivity", tenant, &tok);
		oauth_token_free(&tok);
		if (r != SOCKS5_OK) {
			conn_close(&rt->conn);
			if (r == SOCKS5_AUTH_REJECTED && attempt == 0)
				log_info("proxy rejected the connectivity token; fetching a new one");
		}
	}
	return r == SOCKS5_OK ? 0 : -1;
}

/* deliver_tls_context - the TLS context for d, as every delivery to it makes it */
int deliver_tls_context(const struct config *cfg, const struct mail_destination *d,
			SSL_CTX **ctx, struct outcome *o)
{
	struct tls_trust trust = { cfg->smtp_tls_ca_file, cfg->smtp_tls_ca_path, 1 };
	struct tls_extra extra = { NULL, 0, cfg->smtp_tls_cert_file, cfg->smtp_tls_key_file };
	struct tls_cert_blob *blobs;
	struct tls_policy tp;
	char err[512];
	size_t i, n = 0;

	*ctx = NULL;
	tls_policy_resolve(cfg, d, &tp);
	if (tp.peer.fingerprints
	    && tls_fingerprints_check(tp.peer.fingerprints, err, sizeof(err)) < 0) {
		dsn_defer(o, "4.3.5", "TLS configuration: %s of destination %s: %s",
			  d->ssl_fingerprint ? "mail.smtp.ssl.fingerprint" : "smtp_tls_fingerprint",
			  d->name, err);
		return -1;
	}
	blobs = xcalloc(d->ncertificates + 1, sizeof(*blobs));
	for (i = 0; i < d->ncertificates; i++) {
		const struct dest_certificate *c = &d->certificates[i];

		if (c->content == NULL || (d->trust_store_location != NULL
		    && (c->name == NULL || strcmp(c->name, d->trust_store_location) != 0)))
			continue;
		blobs[n].name = c->name;
		blobs[n].base64 = c->content;
		blobs[n++].optional = d->trust_store_location == NULL;
	}
	if (d->trust_store_location != NULL && n == 0) {
		free(blobs);
		dsn_defer(o, "4.3.5", "TLS configuration: destination %s: TrustStoreLocation %s "
			  "names none of the certificates delivered with it", d->name,
			  d->trust_store_location);
		return -1;
	}
	extra.certs = blobs;
	extra.ncerts = n;
	*ctx = tls_ctx_new_extra(&trust, &extra, err, sizeof(err));
	free(blobs);
	if (*ctx == NULL) {
		dsn_defer(o, "4.7.5", "TLS configuration: %s", err);
		return -1;
	}
	return 0;
}

/*
 * route_tls - the TLS context, made once per delivery and only when TLS
 * may be used (deliver_tls_context); what weakens verification
 * (tls_policy_resolve) is logged once, as a warning. For implicit TLS
 * (smtps, mail.smtp.ssl.enable=true) also the handshake, once.
 */
static int route_tls(const struct config *cfg, struct route *rt, struct outcome *o)
{
	const struct mail_destination *d = &rt->dest;
	struct tls_policy tp;

	tls_policy_resolve(cfg, d, &tp);
	if (rt->tls_ctx == NULL) {
		if (deliver_tls_context(cfg, d, &rt->tls_ctx, o) < 0)
			return -1;
		if (tp.warnings[0])
			log_warn("destination %s: %s", d->name, tp.warnings);
	}
	if (tp.implicit && rt->conn.ssl == NULL
	    && tls_handshake_peer(&rt->conn, rt->tls_ctx, &tp.peer) < 0) {
		dsn_defer(o, "4.7.5", "TLS handshake with %s failed: %s", rt->relay, rt->conn.errtext);
		return -1;
	}
	return 0;
}

/*
 * prefetch_token - with nothing cached, a delivery through the proxy would
 * wait for the destination token, the Find and then the connectivity token,
 * one after the other. When the cache has no connectivity token at all
 * (oauth_token_missing), a child process fetches it into the cache while this one resolves
 * the destination; open_tunnel's oauth_token_cached() then finds it there,
 * or waits for that very fetch (the cache's single flight), so the token
 * costs no round trip of its own. Only for the provider's token (a
 * destination found for a subscriber needs the subscriber's) and only when
 * the proxy wants one; a destination that turns out not to be OnPremise
 * leaves it cached for its lifetime, one request as before. The fetch runs
 * in a grandchild, which init reaps: no process is left for anyone to wait
 * for, in btprelay-lmtp neither.
 */
static void prefetch_token(const struct config *cfg, const struct route *rt)
{
	struct proxy_plan plan;
	struct http_options http;
	struct oauth_token tok = { 0 };
	struct outcome o;
	pid_t pid;
	int fd;

	if (!rt->bind.have_connectivity || proxy_plan(cfg, &rt->bind, NULL, &plan, &o) < 0
	    || plan.auth != PROXY_AUTH_TOKEN
	    || (cfg->tenant_subdomain != NULL && cfg->tenant_subdomain[0] != '\0')
	    || (cfg->tenant_id != NULL && cfg->tenant_id[0] != '\0')
	    || !oauth_token_missing(cfg, &rt->bind.connectivity, "connectivity", 0))
		return;
	pid = fork();
	if (pid < 0)
		return;
	if (pid > 0) {		/* the child only forks again: at once */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return;
	}
	if (fork() != 0)
		_exit(0);
	/* the grandchild holds none of the caller's standard streams: pipe(8) reads to their end */
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	log_debug("fetching the connectivity token while the destination is resolved");
	http_options_init(&http, cfg, rt->conn.deadline);
	oauth_token_cached(cfg, &rt->bind.connectivity, &http, "connectivity", 0, &tok, &o);
	oauth_token_free(&tok);
	_exit(0);
}

/* open_route - resolve, connect (tunnel or direct), implicit TLS when smtps */
static int open_route(const struct config *cfg, const char *name, struct route *rt,
		      struct outcome *o)
{
	struct mail_destination *d = &rt->dest;

	if (bindings_load(cfg, &rt->bind, o) < 0)
		return -1;
	prefetch_token(cfg, rt);
	/* not found (DEST_NOT_FOUND) defers as any other failure: the milter refuses */
	if (dest_resolve_until(cfg, &rt->bind, name, rt->conn.deadline, d, o) != 0)
		return -1;
	snprintf(rt->relay, sizeof(rt->relay), "%s:%u", d->host, d->port);
	if (d->onpremise) {
		if (open_tunnel(cfg, rt, o) < 0)
			return -1;
	} else if (conn_connect(&rt->conn, d->host, d->port) < 0) {
		dsn_defer(o, "4.4.1", "connect to %s: %s", rt->conn.peer, rt->conn.errtext);
		return -1;
	} else {
		snprintf(rt->relay, sizeof(rt->relay), "%s", rt->conn.peer);
	}
	/* implicit TLS (smtps, mail.smtp.ssl.enable=true): the handshake comes first */
	if ((d->smtps || d->ssl_enable == 1) && route_tls(cfg, rt, o) < 0)
		return -1;
	return 0;
}

/* deliver_smtp_options - the SMTP options of a session with d's relay */
void deliver_smtp_options(const struct config *cfg, const struct mail_destination *d,
			  const char *relay_name, const char *helo, SSL_CTX *ctx,
			  struct smtp_options *opt)
{
	int oauth = d->authentication != NULL && strncasecmp(d->authentication, "OAuth2", 6) == 0;
	int plaintext_ok = d->onpremise && cfg->smtp_auth_plaintext_onpremise;
	struct tls_policy tp;

	memset(opt, 0, sizeof(*opt));
	opt->helo_name = helo;
	opt->relay_name = relay_name;
	tls_policy_resolve(cfg, d, &tp);
	opt->tls_level = tp.level;
	opt->tls_required_by = tp.required_by;
	opt->tls_ctx = ctx;
	opt->implicit_tls = tp.implicit;
	opt->tls_sni = tp.peer.sni;
	opt->tls_verify_name = tp.peer.name ? tp.peer.name : d->host;
	opt->tls_no_name_check = tp.peer.name == NULL;
	opt->tls_no_chain_check = tp.peer.no_chain;
	opt->tls_fingerprints = tp.peer.fingerprints;
	opt->command_timeout_ms = cfg->smtp_command_timeout * 1000;
	opt->data_done_timeout_ms = cfg->smtp_data_done_timeout * 1000;
	opt->line_length_limit = cfg->smtp_line_length_limit;

	if (d->auth == 0 || (d->authentication != NULL
			     && strcasecmp(d->authentication, "NoAuthentication") == 0))
		return;
	if (oauth) {
		opt->auth_user = d->user ? d->user : "";
		if (d->user == NULL)
			opt->auth_error = "an OAuth2 destination needs mail.user, the mailbox the token "
				"is for (AUTH XOAUTH2)";
		else if (d->oauth_token.value == NULL)
			opt->auth_error = d->oauth_token.error ? d->oauth_token.error
				: "the Destination Service returned no OAuth2 token (authTokens)";
		else if (d->oauth_token.expires_at > 0 && d->oauth_token.expires_at <= time(NULL))
			opt->auth_error = "the OAuth2 token from the Destination Service has expired";
		else
			opt->auth_xoauth2_token = d->oauth_token.value;
	} else if (d->user != NULL && d->password != NULL) {
		opt->auth_user = d->user;
		opt->auth_password = d->password;
	} else {
		return;
	}
	opt->auth_require_tls = !plaintext_ok;
	if (!plaintext_ok && !tp.implicit && opt->tls_level < TLS_LEVEL_ENCRYPT) {
		opt->tls_level = TLS_LEVEL_ENCRYPT;
		opt->tls_required_by = d->onpremise
			? "smtp_auth_plaintext_onpremise=no: credentials only inside TLS"
			: "credentials are never sent in clear text over the Internet";
	}
}

/* deliver_helo_name - smtp_helo_name, else the host name, else "localhost" */
void deliver_helo_name(const struct config *cfg, char *buf, size_t size)
{
	if (cfg->smtp_helo_name[0] != '\0')
		str_copy(buf, cfg->smtp_helo_name, size);
	else if (gethostname(buf, size) < 0 || buf[0] == '\0')
		str_copy(buf, "localhost", size);
	buf[size - 1] = '\0';
}

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
	struct smtp_options opt;
	struct smtp_session s;
	char *name;			/* the destination it was opened for */
	char helo[256];
	double opened;			/* conn_now() when opened */
};

/* deliver_session_close - QUIT (not waited for), close, free; NULL is fine */
void deliver_session_close(struct deliver_session *ds)
{
	if (ds == NULL)
		return;
	smtp_quit(&ds->s);	/* sends nothing when the session is broken */
	conn_close(&ds->rt.conn);
	if (ds->rt.tls_ctx)
		SSL_CTX_free(ds->rt.tls_ctx);
	dest_free(&ds->rt.dest);
	bindings_free(&ds->rt.bind);
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
	conn_init(&rt->conn, cfg->smtp_connect_timeout * 1000, start + cfg->delivery_deadline);
	if (open_route(cfg, name, rt, o) == 0) {
		deliver_helo_name(cfg, ds->helo, sizeof(ds->helo));
		deliver_smtp_options(cfg, &rt->dest, rt->relay, ds->helo, rt->tls_ctx, &ds->opt);
		if (ds->opt.tls_level == TLS_LEVEL_NONE || route_tls(cfg, rt, o) == 0) {
			ds->opt.tls_ctx = rt->tls_ctx;
			conn_set_timeout(&rt->conn, ds->opt.command_timeout_ms);
			ok = smtp_session_open(&ds->s, &rt->conn, &ds->opt, o) == 0;
		}
	}
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
