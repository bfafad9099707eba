/*
 * deliver - one delivery request end to end: resolve the destination, get
 * the Connectivity token, tunnel through the proxy (OnPremise) or connect
 * directly (Internet), run the SMTP transaction, report one outcome per
 * recipient and one for the request.
 *
 * The TLS context and the SMTP options of a session with a destination's
 * relay are made by deliver_tls_context() and deliver_smtp_options(), for
 * deliver() and for anything else that talks to the relay the same way
 * (`btprelay probe`): one source of truth for trust, pins, names, implicit
 * TLS and AUTH.
 */
#ifndef BTPRELAY_DELIVER_H
#define BTPRELAY_DELIVER_H

#include <stddef.h>
#include <openssl/ssl.h>
#include "config.h"
#include "conn.h"
#include "destination.h"
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

/*
 * deliver_tls_context - the TLS context for the relay of d: the chain is
 * verified against smtp_tls_ca_file/smtp_tls_ca_path (else the system
 * store) plus the certificates delivered with d (the TrustStoreLocation
 * entry, else every entry that is a certificate); the client certificate
 * of smtp_tls_cert_file/smtp_tls_key_file is offered; the fingerprint pin
 * (d's, else smtp_tls_fingerprint) is checked for form. Returns 0 with
 * *ctx (the caller frees it with SSL_CTX_free), or -1 with *ctx NULL and
 * a deferred outcome: 4.3.5 for a malformed pin or a TrustStoreLocation
 * that names no delivered certificate, 4.7.5 when the context cannot be
 * made (unreadable CA file, a TrustStoreLocation entry that is no
 * certificate, a client key readable by others). What weakens verification
 * is not logged here: tls_policy_resolve() says it, for the caller to show.
 */
int deliver_tls_context(const struct config *cfg, const struct mail_destination *d,
			SSL_CTX **ctx, struct outcome *o);
/*
 * deliver_smtp_options - the options of an SMTP session with d's relay:
 * TLS per tls_policy_resolve() (smtp_tls_security_level and d's hints:
 * starttls, implicit TLS for smtps or mail.smtp.ssl.enable, trust,
 * checkserveridentity, verifyname as name and SNI, pins), AUTH per d
 * (XOAUTH2 with the token of an OAuth2* destination, PLAIN or LOGIN with
 * mail.user and mail.password; none for NoAuthentication or
 * mail.smtp.auth=false), and TLS raised to "encrypt" when credentials would
 * otherwise travel in clear: always over the Internet, through the proxy
 * tunnel only with smtp_auth_plaintext_onpremise=no (the Cloud Connector
 * hop may do TLS itself: "TCP TLS"). relay_name ("host:port", for texts),
 * helo and ctx (from deliver_tls_context, NULL when not made yet) are
 * referenced, not copied, as are strings of cfg and d: they must outlive opt.
 */
void deliver_smtp_options(const struct config *cfg, const struct mail_destination *d,
			  const char *relay_name, const char *helo, SSL_CTX *ctx,
			  struct smtp_options *opt);
/*
 * deliver_open_tunnel - the proxy tunnel of an OnPremise destination
 * (token or trusted mode, proxy.h) to d->host:d->port on c, which
 * conn_init() prepared; for btprelay-fetch, which resolved d itself
 */
int deliver_open_tunnel(const struct config *cfg, const struct bindings *b,
			const struct mail_destination *d, struct conn *c, struct outcome *o);
/* deliver_helo_name - the EHLO name: smtp_helo_name, else the host name, else "localhost" */
void deliver_helo_name(const struct config *cfg, char *buf, size_t size);

#endif
