/*
 * deliver - one delivery request end to end.
 *
 * bindings -> destination -> (OnPremise: connectivity token, proxy, 0x80
 * handshake, CONNECT to the virtual host | Internet: direct TCP) -> SMTP.
 * Every step fills the same struct outcome on failure; recipients that
 * never reached RCPT share the request's outcome. One log line per
 * recipient, in Postfix's words.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bindings.h"
#include "conn.h"
#include "deliver.h"
#include "destination.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
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

/* open_tunnel - connectivity token, proxy connection, 0x80 handshake, CONNECT */
static int open_tunnel(const struct config *cfg, struct route *rt, struct outcome *o)
{
	struct http_options http;
	const struct bindings *b = &rt->bind;
	struct oauth_token tok = { 0 };
	/* the tenant the destination was found for: its Cloud Connector */
	unsigned tenant = rt->dest.tenant_is_subscriber ? OAUTH_SUBSCRIBER : 0;
	int attempt, r = SOCKS5_FAIL;

	http_options_init(&http, cfg, rt->conn.deadline);

	if (!b->have_connectivity) {
		dsn_defer(o, "4.3.5", "destination %s is OnPremise, but no connectivity service binding is configured (%s)",
			  rt->dest.name, b->source ? b->source : "no bindings file, no VCAP_SERVICES");
		return -1;
	}
	/* A rejected token (auth reply, REP 05) is fetched again once: it may have been revoked or expired early. */
	for (attempt = 0; attempt < 2 && r != SOCKS5_OK; attempt++) {
		if (oauth_token_cached(cfg, &b->connectivity, &http, "connectivity", tenant, &tok, o) < 0)
			return -1;
		if (conn_connect(&rt->conn, b->proxy_host, b->proxy_port) < 0) {
			dsn_defer(o, "4.4.1", "connect to connectivity proxy %s: %s",
				  rt->conn.peer, rt->conn.errtext);
			oauth_token_free(&tok);
			return -1;
		}
		r = socks5_connect(&rt->conn, tok.access_token, rt->dest.location_id,
				   rt->dest.host, rt->dest.port, o);
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

/* route_tls - the TLS context, made once per delivery and only when TLS may be used */
static int route_tls(const struct config *cfg, struct route *rt, struct outcome *o)
{
	struct tls_trust trust = { cfg->smtp_tls_ca_file, cfg->smtp_tls_ca_path, 1 };
	char err[256];

	if (rt->tls_ctx == NULL && (rt->tls_ctx = tls_ctx_new(&trust, err, sizeof(err))) == NULL) {
		dsn_defer(o, "4.7.5", "TLS configuration: %s", err);
		return -1;
	}
	return 0;
}

/* open_route - resolve, connect (tunnel or direct), implicit TLS when smtps */
static int open_route(const struct config *cfg, const char *name, struct route *rt,
		      struct outcome *o)
{
	struct mail_destination *d = &rt->dest;

	if (bindings_load(cfg, &rt->bind, o) < 0)
		return -1;
	if (dest_resolve_until(cfg, &rt->bind, name, rt->conn.deadline, d, o) < 0)
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
	if (d->smtps && route_tls(cfg, rt, o) < 0)
		return -1;
	if (d->smtps && tls_handshake(&rt->conn, rt->tls_ctx, d->host, d->host) < 0) {
		dsn_defer(o, "4.7.5", "TLS handshake with %s failed: %s", rt->relay, rt->conn.errtext);
		return -1;
	}
	return 0;
}

/* wants_auth - whether the destination asks for SMTP AUTH */
static int wants_auth(const struct mail_destination *d)
{
	if (d->user == NULL || d->password == NULL || d->auth == 0)
		return 0;
	return d->authentication == NULL || strcmp(d->authentication, "NoAuthentication") != 0;
}

/*
 * session_options - SMTP options for the route: the configured TLS level,
 * raised or lowered by the destination's JavaMail hints, and raised to
 * "encrypt" when credentials would otherwise cross the Internet in clear.
 */
static void session_options(const struct config *cfg, const struct route *rt,
			    const char *helo, struct smtp_options *opt)
{
	const struct mail_destination *d = &rt->dest;

	memset(opt, 0, sizeof(*opt));
	opt->helo_name = helo;
	opt->relay_name = rt->relay;
	opt->tls_level = cfg->smtp_tls_level;
	if (d->starttls_required == 1) {
		opt->tls_level = TLS_LEVEL_ENCRYPT;
		opt->tls_required_by = "mail.smtp.starttls.required=true";
	} else if (d->starttls_enable == 0) {
		opt->tls_level = TLS_LEVEL_NONE;
	} else if (d->starttls_enable == 1 && opt->tls_level == TLS_LEVEL_NONE) {
		opt->tls_level = TLS_LEVEL_MAY;
	}
	if (d->smtps)
		opt->tls_level = TLS_LEVEL_NONE;	/* TLS is already on */
	opt->tls_sni = d->host;
	opt->tls_verify_name = d->host;
	opt->implicit_tls = d->smtps;
	opt->command_timeout_ms = cfg->smtp_command_timeout * 1000;
	opt->data_done_timeout_ms = cfg->smtp_data_done_timeout * 1000;
	if (wants_auth(d)) {
		opt->auth_user = d->user;
		opt->auth_password = d->password;
		/* Over the Internet, credentials travel only inside TLS; through the proxy the Cloud Connector hop may do TLS itself. */
		if (!d->onpremise && !d->smtps && opt->tls_level != TLS_LEVEL_ENCRYPT) {
			opt->tls_level = TLS_LEVEL_ENCRYPT;
			opt->tls_required_by = "credentials are never sent in clear text over the Internet";
		}
	}
}

/* log_recipient - "to=<r>, relay=..., delay=..., dsn=..., status=... (text)" */
static void log_recipient(const struct delivery *dl, const struct route *rt, const char *rcpt,
			  const struct outcome *r, double start)
{
	static const char *const status[] = { "sent", "deferred", "bounced" };

	log_info("to=<%s>, relay=%s, destination=%s, delay=%.2f, dsn=%s, status=%s (%s)",
		 rcpt, rt->relay[0] ? rt->relay : "none", dl->destination,
		 conn_now() - start, r->status, status[r->cls], r->text);
}

/* deliver - one request */
void deliver(const struct config *cfg, const struct delivery *dl,
	     struct outcome *rcpt_out, struct outcome *o)
{
	double start = conn_now();
	struct route *rt = xcalloc(1, sizeof(*rt));
	struct smtp_options opt = { 0 };
	struct smtp_session s = { 0 };
	struct smtp_envelope env = { dl->sender, dl->rcpt, dl->nrcpt, dl->size };
	char helo[256];
	size_t i;
	int sent = 0;

	conn_init(&rt->conn, cfg->smtp_connect_timeout * 1000, start + cfg->delivery_deadline);
	if (open_route(cfg, dl->destination, rt, o) < 0)
		goto done;

	if (cfg->smtp_helo_name[0] != 0)
		str_copy(helo, cfg->smtp_helo_name, sizeof(helo));
	else if (gethostname(helo, sizeof(helo)) < 0 || helo[0] == 0)
		str_copy(helo, "localhost", sizeof(helo));
	helo[sizeof(helo) - 1] = 0;

	session_options(cfg, rt, helo, &opt);
	if (opt.tls_level != TLS_LEVEL_NONE && route_tls(cfg, rt, o) < 0)
		goto done;
	opt.tls_ctx = rt->tls_ctx;
	conn_set_timeout(&rt->conn, opt.command_timeout_ms);
	if (smtp_session_open(&s, &rt->conn, &opt, o) == 0) {
		if (s.tls_active) {
			char desc[128];

			tls_describe(&rt->conn, desc, sizeof(desc));
			log_info("TLS connection established to %s: %s", rt->relay, desc);
		}
		smtp_send_message(&s, &env, dl->body_fd, rcpt_out, o);
		sent = 1;
	}
	smtp_quit(&s);		/* sends nothing when the session is broken */
done:
	for (i = 0; i < dl->nrcpt; i++) {
		if (!sent)
			rcpt_out[i] = *o;
		log_recipient(dl, rt, dl->rcpt[i], &rcpt_out[i], start);
	}
	conn_close(&rt->conn);
	if (rt->tls_ctx)
		SSL_CTX_free(rt->tls_ctx);
	dest_free(&rt->dest);
	bindings_free(&rt->bind);
	free(rt);
}
