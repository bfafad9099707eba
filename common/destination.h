/*
 * destination - a MAIL destination, and where to find it.
 *
 * Lookup chain, first match wins: the destinations file (JSON array in the
 * format of the `destinations` environment variable), the destinations
 * declared in the configuration file (destination.NAME.PROPERTY lines),
 * then the Destination Service (Find; $skipTokenRetrieval=true unless the
 * destination's Authentication is an OAuth2 kind), for the provider or a
 * subscriber tenant per destination_selection, through the shared cache.
 * Properties are those of SAP's "MAIL Destinations" (Connectivity
 * documentation) and JavaMail's; both sender spellings (mail.smtp.from,
 * mail.from) and the smtps variants are understood.
 *
 * Failures defer (an operator can fix them): not found -> 4.3.5 naming the
 * destination, of kind OUTCOME_NOT_FOUND, so that callers tell "no such
 * destination" from "unusable" without reading the text;
 * not MAIL, no host or port, bad certificates[] -> 4.3.5; service
 * unreachable, timeout, 5xx -> 4.4.3 (unless an expired cached copy may
 * stand in); 401 (after one new token)/403 -> 4.7.0.
 */
#ifndef BTPRELAY_DESTINATION_H
#define BTPRELAY_DESTINATION_H

#include <time.h>
#include <jansson.h>
#include "bindings.h"
#include "conf.h"
#include "dsn.h"

enum dest_store_protocol {
	DEST_STORE_NONE = 0,
	DEST_STORE_IMAP,
	DEST_STORE_IMAPS,
	DEST_STORE_POP3,
	DEST_STORE_POP3S,
};

struct mail_destination {
	char *name;
	char *source;		/* "destinations file /etc/...", "Destination Service" */
	int onpremise;		/* ProxyType OnPremise: through the SOCKS5 proxy */
	char *authentication;	/* NoAuthentication, BasicAuthentication, ... */
	char *host;		/* mail.smtp.host (or mail.smtps.host) */
	unsigned port;		/* mail.smtp.port (or mail.smtps.port) */
	int smtps;		/* mail.transport.protocol=smtps: TLS from the first byte */
	char *user;		/* mail.user, NULL = none */
	char *password;		/* mail.password, NULL = none; wiped by dest_free */
	int auth;		/* mail.smtp.auth: 1, 0, -1 = not set */
	char *from;		/* mail.smtp.from or mail.from, NULL = none */
	char *location_id;	/* CloudConnectorLocationId, NULL = none */
	int starttls_enable;	/* mail.smtp.starttls.enable: 1, 0, -1 */
	int starttls_required;	/* mail.smtp.starttls.required: 1, 0, -1 */

	/* where it was found */
	int tenant_is_subscriber;	/* found with the subscriber's token: fetch the
					   Connectivity token for that tenant too */
	long cache_age;		/* seconds since the Destination Service said this, when it
				   came from the cache; -1 otherwise */
	int stale;		/* from the cache past its TTL: the Destination Service failed */

	/*
	 * The mailbox btprelay-fetch reads (Jakarta Mail's store properties):
	 * mail.store.protocol imap, imaps, pop3 or pop3s, and mail.PROTO.host
	 * (else mail.host), mail.PROTO.port (else the protocol's port),
	 * mail.PROTO.ssl.* and mail.PROTO.starttls.*. A destination with a
	 * store protocol may lack mail.smtp.host: then host is NULL and it
	 * cannot carry outbound mail.
	 */
	struct dest_store {
		int protocol;			/* DEST_STORE_* */
		char *host;
		unsigned port;
		int ssl_enable;			/* 1, 0, -1 */
		int starttls_enable;		/* 1, 0, -1 */
		int starttls_required;		/* 1, 0, -1 */
		int ssl_checkserveridentity;	/* 1, 0, -1 */
		char *ssl_trust;
		char *ssl_fingerprint;
		char *ssl_verifyname;
	} store;

	/* authTokens[0] of an OAuth2* destination (for AUTH XOAUTH2) */
	struct {
		char *type;		/* "Bearer", NULL = no token */
		char *value;		/* the token; wiped by dest_free */
		time_t expires_at;	/* from expires_in; 0 = not said */
		char *error;		/* the service could not get the token: why */
	} oauth_token;

	/*
	 * TLS hints, read by route_tls_policy() (route.c): JavaMail's
	 * mail.smtp.ssl.* (mail.smtps.ssl.* first for smtps) and btprelay's own
	 * mail.smtp.ssl.fingerprint and mail.smtp.ssl.verifyname.
	 */
	int ssl_enable;			/* mail.smtp.ssl.enable: 1 = TLS from the first byte; 1, 0, -1 */
	char *ssl_trust;		/* mail.smtp.ssl.trust: "*" or host names, NULL = none */
	int ssl_checkserveridentity;	/* mail.smtp.ssl.checkserveridentity: 1, 0, -1 */
	char *ssl_fingerprint;		/* mail.smtp.ssl.fingerprint: SHA-256 pins, NULL = none */
	char *ssl_verifyname;		/* mail.smtp.ssl.verifyname: the certificate's name, NULL = host */
	char *trust_store_location;	/* TrustStoreLocation: which certificates[] entry to trust */
	/*
	 * the keys the hints came from, as texts name them: NULL = mail.smtp
	 * (the relay); "mail.imaps" and the like when btprelay-fetch puts a
	 * mailbox's hints here (a view of the destination, never freed)
	 */
	const char *tls_keys;

	/*
	 * certificates[] of the Find response (Content is base64 of a PEM or
	 * DER file, white space removed, decoded once to at most 64 KiB; at
	 * most 16 entries); trusted for the relay by tls.c. Filled from the
	 * Find response and from the destination cache; Content and its bytes
	 * wiped and everything freed by dest_free.
	 */
	struct dest_certificate {
		char *name;		/* Name */
		char *type;		/* Type, e.g. CERTIFICATE */
		char *content;		/* Content (base64), as the cache keeps it */
		unsigned char *der;	/* Content decoded: the file (PEM or DER) */
		size_t der_len;
	} *certificates;
	size_t ncertificates;
};

/*
 * dest_flatten - the flat property object of a destination entry: raw
 * properties as they are, or {name,type,...,originalProperties} with the
 * lower-case members filling the properties they lack. A new reference
 * that shares its values with props (json_deep_copy it to outlive props),
 * or NULL when props is not an object.
 */
json_t *dest_flatten(const json_t *props);
/*
 * dest_from_properties - fill d from a flat configuration object (the
 * Find response's destinationConfiguration, or one entry of the
 * destinations file, either raw properties or {name,type,originalProperties}).
 */
int dest_from_properties(const json_t *props, const char *source,
			 struct mail_destination *d, struct outcome *o);
/* dest_entry_name - an entry's name in the destinations format: Name, originalProperties.Name or name */
const char *dest_entry_name(const json_t *entry);
/*
 * dest_resolve - the lookup chain for name: 0 with d filled (free it with
 * dest_free), or -1 with a deferred outcome: of kind OUTCOME_NOT_FOUND
 * when no source of the chain (destinations file, configuration,
 * Destination Service for every tenant asked) has a destination of that
 * name (4.3.5 "destination NAME not found ..."; an answer, not an error,
 * but a delivery still defers on it), else found but unusable, a broken
 * source, the Destination Service failing
 */
int dest_resolve(const struct config *cfg, const struct bindings *b, const char *name,
		 struct mail_destination *d, struct outcome *o);
/*
 * dest_resolve_until - dest_resolve whose HTTP calls (retries included)
 * end by deadline (conn_now() clock; 0 = only their own timeouts)
 */
int dest_resolve_until(const struct config *cfg, const struct bindings *b, const char *name,
		       double deadline, struct mail_destination *d, struct outcome *o);
void dest_free(struct mail_destination *d);
/* dest_store_name - "imap", "imaps", "pop3", "pop3s", or "none" */
const char *dest_store_name(int protocol);

#endif
