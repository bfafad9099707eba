/*
 * route - the way to a destination's relay, opened the same way for every
 * caller (a delivery, `btprelay probe`): the bindings, the destination,
 * the TLS policy (once), the SMTP options, the TLS context (when TLS may
 * be used), then the proxy tunnel for an OnPremise destination
 * (Connectivity token, proxy connection, 0x80 handshake, CONNECT) or a
 * direct TCP connection for an Internet one, then the TLS handshake when
 * TLS starts with the first byte (smtps, mail.smtp.ssl.enable=true).
 *
 * Every step reports to an observer, which `btprelay probe` uses to print
 * one line a step; without one, what a delivery says about its route is
 * logged (what weakens TLS verification, a rejected token fetched anew).
 * A failed step fills the outcome, and route_open() returns -1. The rules
 * of TLS and AUTH are in btprelay-transport(8).
 */
#ifndef BTPRELAY_ROUTE_H
#define BTPRELAY_ROUTE_H

#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>
#include "bindings.h"
#include "conf.h"
#include "conn.h"
#include "destination.h"
#include "dsn.h"
#include "proxy.h"
#include "smtp.h"
#include "tls.h"

/* the steps of route_open, in their order; each is reported once it is done or has failed */
enum route_step {
	ROUTE_BINDINGS,		/* the service bindings are loaded */
	ROUTE_RESOLVE,		/* rt->dest */
	ROUTE_TLS_POLICY,	/* rt->tls (its warnings) and rt->opt; never fails */
	ROUTE_TLS_CONFIG,	/* rt->tls_ctx; only when TLS may be used */
	ROUTE_PROXY_PLAN,	/* OnPremise: rt->plan, how the proxy is authenticated and why */
	ROUTE_TOKEN,		/* the Connectivity token (rt->token_expires); with no token
				   (rt->plan.auth PROXY_AUTH_NONE) reported as done */
	ROUTE_PROXY_CONNECT,	/* the TCP connection to the proxy (rt->conn.peer) */
	ROUTE_TOKEN_REJECTED,	/* the proxy rejected the token (o): a new one is fetched, once */
	ROUTE_PROXY_HANDSHAKE,	/* method (rt->proxy_method), CONNECT */
	ROUTE_CONNECT,		/* Internet: the TCP connection to the relay */
	ROUTE_TLS_HANDSHAKE,	/* implicit TLS: the handshake with the relay */
};

struct route;

/*
 * route_observer - step() is called after each step with failed NULL when
 * it is done, or with the outcome route_open() returns (or, for
 * ROUTE_TOKEN_REJECTED, the proxy's answer) when it failed
 */
struct route_observer {
	void (*step)(void *arg, const struct route *rt, enum route_step step,
		     const struct outcome *failed);
	void *arg;
};

/*
 * route_resolver - how the destination is looked up: dest_resolve_until()
 * (destination.h) unless a caller has a longer chain (btprelay's
 * `destinations` variable)
 */
typedef int (*route_resolver)(const struct config *cfg, const struct bindings *b,
			      const char *name, double deadline, struct mail_destination *d,
			      struct outcome *o);

struct route {
	/* set by the caller before route_open (route_init) */
	const struct route_observer *observer;	/* NULL = log what a delivery logs */
	route_resolver resolve;			/* NULL = dest_resolve_until */
	int no_auth;				/* leave AUTH out of opt (probe --no-auth) */

	/* filled by route_open */
	struct bindings bind;
	struct mail_destination dest;
	struct tls_policy tls;		/* resolved once, for everything below */
	struct smtp_options opt;	/* for smtp_session_open(); refers to this route */
	SSL_CTX *tls_ctx;		/* NULL when TLS is not used */
	struct proxy_plan plan;		/* OnPremise: the proxy's address and authentication */
	time_t token_expires;		/* the Connectivity token's expiry, 0 = none */
	int proxy_method;		/* the method the proxy chose: 0x80 or 0x00; -1 = none */
	struct conn conn;		/* to the relay: direct, or through the proxy */
	char relay[320];		/* for texts and logs: "mail.corp.internal:25" */
	char helo[256];			/* the EHLO name (route_helo_name) */
};

/*
 * route_init - an empty route whose connection times out as conn_init()
 * says; observer and resolve may be set before route_open
 */
void route_init(struct route *rt, int connect_timeout_ms, double deadline);
/*
 * route_open - the route to name's relay, every step above. Returns 0 with
 * rt->conn connected (TLS done when implicit) and rt->opt ready, or -1
 * with o filled; rt->relay names the relay as far as it is known either
 * way. Close with route_close() in both cases.
 */
int route_open(const struct config *cfg, const char *name, struct route *rt, struct outcome *o);
/* route_close - the connection, the TLS context, the destination, the bindings */
void route_close(struct route *rt);
/*
 * route_open_tunnel - the proxy tunnel of an OnPremise destination (token
 * or trusted mode) to d->host:d->port on c, which conn_init() prepared, for
 * a caller that resolved d itself (btprelay-fetch: d's host and port are
 * the mailbox's). 0, or -1 with o filled.
 */
int route_open_tunnel(const struct config *cfg, const struct bindings *b,
		      const struct mail_destination *d, struct conn *c, struct outcome *o);

/*
 * route_tls_policy - smtp_tls_security_level and d's hints -> p: the
 * level, whether TLS starts with the first byte, what the relay's
 * certificate must satisfy, and what weakens verification (p->warnings).
 * The rules are btprelay-transport(8)'s, TLS AND AUTHENTICATION.
 */
void route_tls_policy(const struct config *cfg, const struct mail_destination *d,
		      struct tls_policy *p);
/*
 * route_smtp_options - the options of an SMTP session with d's relay: TLS
 * per tp (route_tls_policy), AUTH per d (XOAUTH2 with the token of an
 * OAuth2* destination, PLAIN or LOGIN with mail.user and mail.password;
 * none for NoAuthentication or mail.smtp.auth=false), and TLS raised to
 * "encrypt" when credentials would otherwise travel in clear: always over
 * the Internet, through the proxy tunnel only with
 * smtp_auth_plaintext_onpremise=no (the Cloud Connector hop may do TLS
 * itself: "TCP TLS"). relay_name ("host:port", for texts), helo, ctx (NULL
 * when not made yet) and the strings of cfg, d and tp are referenced, not
 * copied: they must outlive opt.
 */
void route_smtp_options(const struct config *cfg, const struct mail_destination *d,
			const struct tls_policy *tp, const char *relay_name, const char *helo,
			SSL_CTX *ctx, struct smtp_options *opt);
/*
 * route_tls_context - the TLS context for d's relay: the chain is verified
 * against smtp_tls_ca_file/smtp_tls_ca_path (else the system store) plus
 * the certificates delivered with d (the TrustStoreLocation entry, else
 * every entry that is a certificate); the client certificate of
 * smtp_tls_cert_file/smtp_tls_key_file is offered; the fingerprint pin of
 * tp is checked for form. Returns 0 with *ctx (free with SSL_CTX_free), or
 * -1 with *ctx NULL and a deferred outcome: 4.3.5 for a malformed pin or a
 * TrustStoreLocation that names no delivered certificate, 4.7.5 when the
 * context cannot be made (unreadable CA file, a TrustStoreLocation entry
 * that is no certificate, a client key readable by others).
 */
int route_tls_context(const struct config *cfg, const struct mail_destination *d,
		      const struct tls_policy *tp, SSL_CTX **ctx, struct outcome *o);
/* route_helo_name - the EHLO name: smtp_helo_name, else the host name, else "localhost" */
void route_helo_name(const struct config *cfg, char *buf, size_t size);

#endif
