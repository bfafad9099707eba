/*
 * route - the way to a destination's relay, for a delivery and for
 * `btprelay probe` alike.
 *
 * bindings -> destination -> TLS policy and SMTP options -> TLS context ->
 * (OnPremise: connectivity token, proxy, 0x80 handshake, CONNECT to the
 * virtual host | Internet: direct TCP) -> implicit TLS. Each step reports
 * to the observer; a failed one fills the outcome and ends the route.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
#include "route.h"
#include "socks5.h"
#include "util.h"

/* route_log_step - the observer of a route without one: what a delivery logs */
static void route_log_step(void *arg, const struct route *rt, enum route_step step,
			   const struct outcome *failed)
{
	(void)arg;
	if (step == ROUTE_TLS_CONFIG && failed == NULL && rt->tls.warnings[0] != '\0')
		log_warn("destination %s: %s", rt->dest.name, rt->tls.warnings);
	else if (step == ROUTE_TOKEN_REJECTED)
		log_info("proxy rejected the connectivity token; fetching a new one");
}

static const struct route_observer route_log = { route_log_step, NULL };

/* route_report - tell the observer; returns -1 when failed, for "return route_report(...)" */
static int route_report(const struct route *rt, enum route_step step, const struct outcome *failed)
{
	const struct route_observer *ob = rt->observer ? rt->observer : &route_log;

	ob->step(ob->arg, rt, step, failed);
	return failed ? -1 : 0;
}

/* route_init - nothing opened yet */
void route_init(struct route *rt, int connect_timeout_ms, double deadline)
{
	memset(rt, 0, sizeof(*rt));
	rt->proxy_method = -1;
	conn_init(&rt->conn, connect_timeout_ms, deadline);
}

/*
 * route_tunnel_once - one attempt through the proxy: the token (unless
 * the proxy is trusted), the proxy connection, the handshake and CONNECT.
 * Returns 0 with the tunnel open, -1 with o filled, or 1 when the proxy
 * rejected the token and this was not the last attempt (the connection
 * closed, the token dropped from the cache).
 */
static int route_tunnel_once(const struct config *cfg, struct route *rt,
			     const struct http_options *http, int last, struct outcome *o)
{
	const struct bindings *b = &rt->bind;
	/* the tenant the destination was found for: its Cloud Connector */
	unsigned tenant = rt->dest.tenant_is_subscriber ? OAUTH_SUBSCRIBER : 0;
	struct oauth_token tok = { 0 };
	int r;

	if (rt->plan.auth == PROXY_AUTH_TOKEN
	    && oauth_token_cached(cfg, &b->connectivity, http, "connectivity", tenant, &tok, o) < 0)
		return route_report(rt, ROUTE_TOKEN, o);
	rt->token_expires = tok.expires_at;
	route_report(rt, ROUTE_TOKEN, NULL);
	if (conn_connect(&rt->conn, rt->plan.host, rt->plan.port) < 0) {
		dsn_defer(o, "4.4.1", "connect to connectivity proxy %s: %s",
			  rt->conn.peer, rt->conn.errtext);
		oauth_token_free(&tok);
		return route_report(rt, ROUTE_PROXY_CONNECT, o);
	}
	route_report(rt, ROUTE_PROXY_CONNECT, NULL);
	r = socks5_connect_method(&rt->conn, tok.access_token, rt->dest.location_id,
				  rt->dest.host, rt->dest.port, &rt->proxy_method, o);
	if (r == SOCKS5_AUTH_REJECTED)
		oauth_token_reject(cfg, &b->connectivity, http, "connectivity", tenant, &tok);
	oauth_token_free(&tok);
	if (r == SOCKS5_OK)
		return route_report(rt, ROUTE_PROXY_HANDSHAKE, NULL);
	conn_close(&rt->conn);
	if (r == SOCKS5_AUTH_REJECTED && !last) {
		route_report(rt, ROUTE_TOKEN_REJECTED, o);
		return 1;
	}
	return route_report(rt, ROUTE_PROXY_HANDSHAKE, o);
}

/*
 * route_tunnel - the proxy (proxy.h), with a token or without one (a
 * proxy in trusted mode). A rejected token (auth reply, REP 05) is fetched
 * again once: it may have been revoked or expired early. Nothing else is
 * retried here: every other failure defers, and Postfix retries the
 * delivery. Without a token, the proxy never rejects one. 0 with the
 * tunnel open, or -1 with o filled.
 */
static int route_tunnel(const struct config *cfg, struct route *rt, struct outcome *o)
{
	struct http_options http;
	int r;

	http_options_init(&http, cfg, rt->conn.deadline);
	if (proxy_plan(cfg, &rt->bind, rt->dest.name, &rt->plan, o) < 0)
		return route_report(rt, ROUTE_PROXY_PLAN, o);
	log_debug("proxy %s:%u, authentication %s (%s)", rt->plan.host, rt->plan.port,
		  config_proxy_auth_name(rt->plan.auth), rt->plan.why);
	route_report(rt, ROUTE_PROXY_PLAN, NULL);
	if ((r = route_tunnel_once(cfg, rt, &http, 0, o)) > 0)
		r = route_tunnel_once(cfg, rt, &http, 1, o);
	return r;
}

/* route_open_tunnel - route_tunnel() for a caller that resolved d itself */
int route_open_tunnel(const struct config *cfg, const struct bindings *b,
		      const struct mail_destination *d, struct conn *c, struct outcome *o)
{
	struct route *rt = xcalloc(1, sizeof(*rt));
	int r;

	rt->dest = *d;		/* borrowed: not freed here */
	rt->bind = *b;
	rt->conn = *c;
	rt->proxy_method = -1;
	r = route_tunnel(cfg, rt, o);
	*c = rt->conn;
	free(rt);
	return r;
}

/*
 * route_connect - the tunnel or the direct connection, then the handshake
 * of implicit TLS
 */
static int route_connect(const struct config *cfg, struct route *rt, struct outcome *o)
{
	const struct mail_destination *d = &rt->dest;

	if (d->onpremise) {
		if (route_tunnel(cfg, rt, o) < 0)
			return -1;
	} else if (conn_connect(&rt->conn, d->host, d->port) < 0) {
		dsn_defer(o, "4.4.1", "connect to %s: %s", rt->conn.peer, rt->conn.errtext);
		return route_report(rt, ROUTE_CONNECT, o);
	} else {
		snprintf(rt->relay, sizeof(rt->relay), "%s", rt->conn.peer);
		route_report(rt, ROUTE_CONNECT, NULL);
	}
	if (!rt->tls.implicit)
		return 0;
	/* implicit TLS (smtps, mail.smtp.ssl.enable=true): the handshake comes first */
	if (tls_handshake_peer(&rt->conn, rt->tls_ctx, &rt->tls.peer) < 0) {
		dsn_fail(o, OUTCOME_TLS, "4.7.5", "TLS handshake with %s failed: %s", rt->relay,
			 rt->conn.errtext);
		return route_report(rt, ROUTE_TLS_HANDSHAKE, o);
	}
	return route_report(rt, ROUTE_TLS_HANDSHAKE, NULL);
}

#define ROUTE_READY_FD 3	/* the grandchild's end of the announcement pipe */
#define ROUTE_READY_WAIT 2.0	/* seconds at most for a grandchild to reach the lock */

/* route_wait_ready - until the prefetching grandchild announces its fetch (or exits) */
static void route_wait_ready(int fd, double deadline)
{
	double until = conn_now() + ROUTE_READY_WAIT;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char byte;

	if (deadline > 0 && deadline < until)
		until = deadline;
	while (conn_now() < until) {
		int r = poll(&pfd, 1, (int)((until - conn_now()) * 1000) + 1);

		if (r > 0) {
			if (read(fd, &byte, 1) < 0) {
				/* EOF or an error: the grandchild is gone, nothing to wait for */
			}
			return;
		}
		if (r < 0 && errno != EINTR)
			return;
	}
}

/*
 * route_prefetch_token - with nothing cached, a delivery through the proxy
 * would wait for the destination token, the Find and then the connectivity
 * token, one after the other. When the cache has no connectivity token at
 * all (oauth_token_missing), a child process fetches it into the cache
 * while this one resolves the destination; route_tunnel_once's
 * oauth_token_cached() then finds it there, or waits for that very fetch
 * (the cache's single flight), so the token costs no round trip of its
 * own. Only for the provider's token (a destination found for a subscriber
 * needs the subscriber's) and only when the proxy wants one; a destination
 * that turns out not to be OnPremise leaves it cached for its lifetime, one
 * request as before. The fetch runs in a grandchild, which init reaps: no
 * process is left for anyone to wait for, in btprelay-lmtp neither.
 *
 * This process goes on only once the grandchild's cache_lock() settled
 * who fetches (a byte on a pipe, or its end): a grandchild slow to start
 * on a busy machine would otherwise let this one reach the token first
 * and fetch it itself, after the Find, one round trip after the other.
 * The grandchild keeps none of this process's descriptors: from
 * btprelay-lmtp they are the LMTP client's connection and the relay
 * session, which must close when this process closes them.
 */
static void route_prefetch_token(const struct config *cfg, const struct route *rt)
{
	struct proxy_plan plan;
	struct http_options http;
	struct oauth_token tok = { 0 };
	struct outcome o;
	pid_t pid;
	int fd, ready[2];

	if (!rt->bind.have_connectivity || proxy_plan(cfg, &rt->bind, NULL, &plan, &o) < 0
	    || plan.auth != PROXY_AUTH_TOKEN
	    || (cfg->tenant_subdomain != NULL && cfg->tenant_subdomain[0] != '\0')
	    || (cfg->tenant_id != NULL && cfg->tenant_id[0] != '\0')
	    || !oauth_token_missing(cfg, &rt->bind.connectivity, "connectivity", 0))
		return;
	if (pipe2(ready, O_CLOEXEC) < 0)
		return;
	pid = fork();
	if (pid != 0) {		/* the child only forks again: at once */
		close(ready[1]);
		while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (pid > 0)
			route_wait_ready(ready[0], rt->conn.deadline);
		close(ready[0]);
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
	/* nor any other descriptor: the announcement pipe becomes 3, the log is opened anew */
	log_close();
	if (ready[1] != ROUTE_READY_FD && dup2(ready[1], ROUTE_READY_FD) < 0)
		_exit(0);
	closefrom(ROUTE_READY_FD + 1);
	log_reopen();
	http_forget_connections();
	cache_announce_lock(ROUTE_READY_FD);
	log_debug("fetching the connectivity token while the destination is resolved");
	http_options_init(&http, cfg, rt->conn.deadline);
	oauth_token_cached(cfg, &rt->bind.connectivity, &http, "connectivity", 0, &tok, &o);
	oauth_token_free(&tok);
	_exit(0);
}

/* route_open - every step, in order */
int route_open(const struct config *cfg, const char *name, struct route *rt, struct outcome *o)
{
	struct mail_destination *d = &rt->dest;
	route_resolver resolve = rt->resolve ? rt->resolve : dest_resolve_until;

	if (bindings_load(cfg, &rt->bind, o) < 0)
		return route_report(rt, ROUTE_BINDINGS, o);
	route_report(rt, ROUTE_BINDINGS, NULL);
	route_prefetch_token(cfg, rt);
	/* not found defers as any other failure: the milter refuses */
	if (resolve(cfg, &rt->bind, name, rt->conn.deadline, d, o) != 0)
		return route_report(rt, ROUTE_RESOLVE, o);
	if (d->host == NULL) {	/* a mailbox only (mail.store.protocol): btprelay-fetch's */
		dsn_config(o, "destination %s is a mailbox (mail.store.protocol %s) without an "
			   "SMTP relay: it carries no outbound mail; probe it with btprelay-fetch "
			   "--probe -s %s", d->name, dest_store_name(d->store.protocol), d->name);
		return route_report(rt, ROUTE_RESOLVE, o);
	}
	snprintf(rt->relay, sizeof(rt->relay), "%s:%u", d->host, d->port);
	route_report(rt, ROUTE_RESOLVE, NULL);

	route_tls_policy(cfg, d, &rt->tls);
	route_helo_name(cfg, rt->helo, sizeof(rt->helo));
	route_smtp_options(cfg, d, &rt->tls, rt->relay, rt->helo, NULL, &rt->opt);
	if (rt->no_auth) {
		rt->opt.auth_user = NULL;
		rt->opt.auth_password = NULL;
		rt->opt.auth_xoauth2_token = NULL;
		rt->opt.auth_error = NULL;
	}
	route_report(rt, ROUTE_TLS_POLICY, NULL);
	if (rt->tls.implicit || rt->opt.tls_level != TLS_LEVEL_NONE) {
		if (route_tls_context(cfg, d, &rt->tls, &rt->tls_ctx, o) < 0)
			return route_report(rt, ROUTE_TLS_CONFIG, o);
		rt->opt.tls_ctx = rt->tls_ctx;
		route_report(rt, ROUTE_TLS_CONFIG, NULL);
	}
	if (route_connect(cfg, rt, o) < 0)
		return -1;
	conn_set_timeout(&rt->conn, rt->opt.command_timeout_ms);
	return 0;
}

/* route_close - everything route_open made; the route can be opened again */
void route_close(struct route *rt)
{
	conn_close(&rt->conn);
	if (rt->tls_ctx)
		SSL_CTX_free(rt->tls_ctx);
	rt->tls_ctx = NULL;
	dest_free(&rt->dest);
	bindings_free(&rt->bind);
}

/* tls_keys - the prefix of the keys d's TLS hints came from: mail.smtp, or a mailbox's */
static const char *tls_keys(const struct mail_destination *d)
{
	return d->tls_keys ? d->tls_keys : "mail.smtp";
}

/* tls_required_by - "PREFIX.starttls.required=true", a string that outlives the policy */
static const char *tls_required_by(const struct mail_destination *d)
{
	static const char *const keys[] = {
		"mail.smtp.starttls.required=true", "mail.imap.starttls.required=true",
		"mail.imaps.starttls.required=true", "mail.pop3.starttls.required=true",
		"mail.pop3s.starttls.required=true",
	};
	const char *k = tls_keys(d);
	size_t i, n = strlen(k);

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strncmp(keys[i], k, n) == 0 && keys[i][n] == '.')
			return keys[i];
	return keys[0];
}

/* route_tls_context - the TLS context for d, as every delivery to it makes it */
int route_tls_context(const struct config *cfg, const struct mail_destination *d,
		      const struct tls_policy *tp, SSL_CTX **ctx, struct outcome *o)
{
	struct tls_trust trust = { cfg->smtp_tls_ca_file, cfg->smtp_tls_ca_path, 1 };
	struct tls_extra extra = { NULL, 0, cfg->smtp_tls_cert_file, cfg->smtp_tls_key_file };
	struct tls_cert_blob *blobs;
	char err[512];
	size_t i, n = 0;

	*ctx = NULL;
	if (tp->peer.fingerprints
	    && tls_fingerprints_check(tp->peer.fingerprints, err, sizeof(err)) < 0) {
		dsn_config(o, "TLS configuration: %s%s of destination %s: %s",
			   d->ssl_fingerprint ? tls_keys(d) : "smtp_tls_fingerprint",
			   d->ssl_fingerprint ? ".ssl.fingerprint" : "", d->name, err);
		return -1;
	}
	blobs = xcalloc(d->ncertificates + 1, sizeof(*blobs));
	for (i = 0; i < d->ncertificates; i++) {
		const struct dest_certificate *c = &d->certificates[i];

		if (c->der == NULL || (d->trust_store_location != NULL
		    && (c->name == NULL || strcmp(c->name, d->trust_store_location) != 0)))
			continue;
		blobs[n].name = c->name;
		blobs[n].der = c->der;
		blobs[n].len = c->der_len;
		blobs[n++].optional = d->trust_store_location == NULL;
	}
	if (d->trust_store_location != NULL && n == 0) {
		free(blobs);
		dsn_config(o, "TLS configuration: destination %s: TrustStoreLocation %s "
			   "names none of the certificates delivered with it", d->name,
			   d->trust_store_location);
		return -1;
	}
	extra.certs = blobs;
	extra.ncerts = n;
	*ctx = tls_ctx_new_extra(&trust, &extra, err, sizeof(err));
	free(blobs);
	if (*ctx == NULL) {
		dsn_fail(o, OUTCOME_TLS, "4.7.5", "TLS configuration: %s", err);
		return -1;
	}
	return 0;
}

/* route_smtp_auth - AUTH per d; 0 when d has no credentials to send */
static int route_smtp_auth(const struct mail_destination *d, struct smtp_options *opt)
{
	if (d->auth == 0 || (d->authentication != NULL
			     && strcasecmp(d->authentication, "NoAuthentication") == 0))
		return 0;
	if (d->authentication != NULL && strncasecmp(d->authentication, "OAuth2", 6) == 0) {
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
		return 1;
	}
	if (d->user == NULL || d->password == NULL)
		return 0;
	opt->auth_user = d->user;
	opt->auth_password = d->password;
	return 1;
}

/* route_smtp_options - the SMTP options of a session with d's relay */
void route_smtp_options(const struct config *cfg, const struct mail_destination *d,
			const struct tls_policy *tp, const char *relay_name, const char *helo,
			SSL_CTX *ctx, struct smtp_options *opt)
{
	int plaintext_ok = d->onpremise && cfg->smtp_auth_plaintext_onpremise;

	memset(opt, 0, sizeof(*opt));
	opt->helo_name = helo;
	opt->relay_name = relay_name;
	opt->tls_level = tp->level;
	opt->tls_required_by = tp->required_by;
	opt->tls_ctx = ctx;
	opt->implicit_tls = tp->implicit;
	opt->tls_sni = tp->peer.sni;
	opt->tls_verify_name = tp->peer.name ? tp->peer.name : d->host;
	opt->tls_no_name_check = tp->peer.name == NULL;
	opt->tls_no_chain_check = tp->peer.no_chain;
	opt->tls_fingerprints = tp->peer.fingerprints;
	opt->command_timeout_ms = cfg->smtp_command_timeout * 1000;
	opt->data_done_timeout_ms = cfg->smtp_data_done_timeout * 1000;
	opt->line_length_limit = cfg->smtp_line_length_limit;

	if (!route_smtp_auth(d, opt))
		return;
	opt->auth_require_tls = !plaintext_ok;
	if (!plaintext_ok && !tp->implicit && opt->tls_level < TLS_LEVEL_ENCRYPT) {
		opt->tls_level = TLS_LEVEL_ENCRYPT;
		opt->tls_required_by = d->onpremise
			? "smtp_auth_plaintext_onpremise=no: credentials only inside TLS"
			: "credentials are never sent in clear text over the Internet";
	}
}

/* route_helo_name - smtp_helo_name, else the host name, else "localhost" */
void route_helo_name(const struct config *cfg, char *buf, size_t size)
{
	if (cfg->smtp_helo_name[0] != '\0')
		str_copy(buf, cfg->smtp_helo_name, size);
	else if (gethostname(buf, size) < 0 || buf[0] == '\0')
		str_copy(buf, "localhost", size);
	buf[size - 1] = '\0';
}

/*
 * tls_warn - append one warning to the policy's list. A fixed buffer is
 * enough: route_tls_policy adds at most three fixed texts, one of them
 * with the relay's host name (at most 255 bytes), well under 600.
 */
static void __attribute__((format(printf, 2, 3))) tls_warn(struct tls_policy *p, const char *fmt, ...)
{
	size_t off = strlen(p->warnings);
	va_list ap;

	if (off > 0 && off + 2 < sizeof(p->warnings)) {
		memcpy(p->warnings + off, "; ", 3);
		off += 2;
	}
	va_start(ap, fmt);
	vsnprintf(p->warnings + off, sizeof(p->warnings) - off, fmt, ap);
	va_end(ap);
}

/*
 * route_tls_policy - the rules (btprelay-transport(8), TLS AND
 * AUTHENTICATION; btprelay-fetch(8) for a mailbox, whose hints are
 * mail.imap(s).* or mail.pop3(s).*, named so in the warnings): the level
 * is smtp_tls_security_level, which the
 * destination's starttls hints raise or lower, unless it is verify: then
 * nothing the destination says lowers TLS or its verification (the hint
 * is ignored with a warning).
 * smtps and mail.smtp.ssl.enable=true start TLS with the first byte. The
 * certificate must name mail.smtp.ssl.verifyname, else the host; a pin
 * (the destination's, else smtp_tls_fingerprint) replaces chain and name
 * checks; mail.smtp.ssl.trust "*" turns verification off (the name is
 * still checked when checkserveridentity is explicitly true, as JavaMail
 * does); a host list that holds the host skips the chain check;
 * checkserveridentity=false skips the name check.
 */
void route_tls_policy(const struct config *cfg, const struct mail_destination *d,
		      struct tls_policy *p)
{
	const char *pin = d->ssl_fingerprint && *d->ssl_fingerprint ? d->ssl_fingerprint
		: cfg->smtp_tls_fingerprint && *cfg->smtp_tls_fingerprint
		? cfg->smtp_tls_fingerprint : NULL;
	int locked = cfg->smtp_tls_level == TLS_LEVEL_VERIFY;
	const char *trust = d->ssl_trust, *k = tls_keys(d);
	const char *peer = d->tls_keys ? "server" : "relay";

	memset(p, 0, sizeof(*p));
	p->level = cfg->smtp_tls_level;
	p->implicit = d->smtps || d->ssl_enable == 1;
	if (locked) {
		p->required_by = "smtp_tls_security_level=verify";
		if (d->starttls_enable == 0 && !p->implicit)
			tls_warn(p, "%s.starttls.enable=false ignored: "
				 "smtp_tls_security_level=verify", k);
	} else if (d->starttls_required == 1) {
		if (p->level < TLS_LEVEL_ENCRYPT)
			p->level = TLS_LEVEL_ENCRYPT;
		p->required_by = tls_required_by(d);
	} else if (d->starttls_enable == 0) {
		p->level = TLS_LEVEL_NONE;
	} else if (d->starttls_enable == 1 && p->level == TLS_LEVEL_NONE) {
		p->level = TLS_LEVEL_MAY;
	}

	p->peer.name = d->ssl_verifyname && *d->ssl_verifyname ? d->ssl_verifyname : d->host;
	p->peer.sni = p->peer.name;
	p->peer.fingerprints = pin;
	if (pin)
		return;		/* the pin is the whole check */
	if (trust && strcmp(trust, "*") == 0) {
		if (locked) {
			tls_warn(p, "%s.ssl.trust=* ignored: smtp_tls_security_level=verify", k);
		} else {
			p->peer.no_chain = 1;
			if (d->ssl_checkserveridentity != 1)
				p->peer.name = NULL;
			tls_warn(p, "%s.ssl.trust=*: the %s's certificate is NOT verified%s%s%s", k,
				 peer, p->peer.name ? " (only its name, " : "", p->peer.name ? k : "",
				 p->peer.name ? ".ssl.checkserveridentity=true)" : "");
		}
	} else if (trust && tls_host_listed(trust, d->host)) {
		if (locked) {
			tls_warn(p, "%s.ssl.trust lists %s, ignored: "
				 "smtp_tls_security_level=verify", k, d->host);
		} else {
			p->peer.no_chain = 1;
			tls_warn(p, "%s.ssl.trust lists %s: its certificate chain is NOT "
				 "verified", k, d->host);
		}
	}
	if (d->ssl_checkserveridentity == 0 && p->peer.name) {
		if (locked) {
			tls_warn(p, "%s.ssl.checkserveridentity=false ignored: "
				 "smtp_tls_security_level=verify", k);
		} else {
			p->peer.name = NULL;
			tls_warn(p, "%s.ssl.checkserveridentity=false: the name in the %s's "
				 "certificate is NOT checked", k, peer);
		}
	}
}
