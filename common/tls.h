/*
 * tls - OpenSSL client contexts, the handshake on a conn, and the TLS
 * policy of a delivery.
 *
 * Verification is on unless a destination explicitly turns part of it
 * off: the chain is checked against the system store or a configured CA
 * file/path plus the certificates delivered with the destination, and the
 * certificate must name the expected host (DNS SAN, or IP SAN for
 * literals). A SHA-256 fingerprint pin replaces both checks. TLS 1.2 is the
 * minimum; SNI is sent for host names. An optional client certificate is
 * offered to relays that ask for one.
 *
 * struct tls_policy is what a delivery's TLS is to be: when STARTTLS is
 * used or required, whether TLS starts with the first byte, and what the
 * relay's certificate must satisfy. route_tls_policy() (route.h) makes it
 * from smtp_tls_security_level and a destination's JavaMail-style hints;
 * btprelay-transport(8) documents the rules.
 */
#ifndef BTPRELAY_TLS_H
#define BTPRELAY_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>
#include "conf.h"
#include "conn.h"

/* tls_cert_blob - a trust anchor handed over in memory: PEM (one or more certificates) or DER */
struct tls_cert_blob {
	const char *name;		/* for messages: the certificates[] Name */
	const unsigned char *der;	/* the file's bytes (the Find response's Content, decoded) */
	size_t len;
	int optional;			/* not a certificate: skipped (logged), not an error */
};

struct tls_trust {
	const char *ca_file;	/* PEM bundle, NULL = system store */
	const char *ca_path;	/* hashed directory, NULL = none */
	int verify;		/* 0 = no checks at all (tls_handshake accepts any certificate) */
};

/* tls_extra - what a delivery adds to a context */
struct tls_extra {
	const struct tls_cert_blob *certs;	/* delivered with the destination: trusted too */
	size_t ncerts;
	const char *cert_file;	/* client certificate chain (PEM), NULL/"" = none */
	const char *key_file;	/* its private key (PEM), NULL/"" = in cert_file; must be private */
};

/* tls_peer - what the relay's certificate must satisfy; all zero = chain verified, no name check */
struct tls_peer {
	const char *sni;		/* server name to send, NULL = none (never an IP literal) */
	const char *name;		/* the name the certificate must carry, NULL = not checked */
	int no_chain;			/* 1 = the chain is not verified (mail.smtp.ssl.trust) */
	const char *fingerprints;	/* SHA-256 pins: the certificate must match one; then
					   chain and name are not checked. NULL = none */
};

/*
 * tls_policy - TLS for one delivery. level says what happens with STARTTLS
 * (TLS_LEVEL_VERIFY behaves as ENCRYPT); implicit means TLS from the
 * first byte, whatever the level.
 */
struct tls_policy {
	enum tls_level level;
	const char *required_by;	/* why TLS is required, for 4.7.4 texts; NULL = the level */
	int implicit;			/* smtps or mail.smtp.ssl.enable=true */
	struct tls_peer peer;
	char warnings[600];		/* what weakens verification, "; "-separated; "" = nothing */
};

/* tls_ctx_new - a client context; NULL with errbuf filled on failure */
SSL_CTX *tls_ctx_new(const struct tls_trust *trust, char *errbuf, size_t errlen);
/* tls_ctx_new_extra - the same, with extra trust anchors and a client certificate (extra may be NULL) */
SSL_CTX *tls_ctx_new_extra(const struct tls_trust *trust, const struct tls_extra *extra,
			   char *errbuf, size_t errlen);
/*
 * tls_handshake_peer - start TLS on a connected conn (after STARTTLS, or at
 * once for implicit TLS) and check the relay's certificate as peer says.
 * On failure: -1, CONN_TLS (or CONN_CLOSED/CONN_TIMEOUT), errtext says why
 * ("certificate verification failed: self-signed certificate").
 */
int tls_handshake_peer(struct conn *c, SSL_CTX *ctx, const struct tls_peer *peer);
/* tls_handshake - tls_handshake_peer with the chain verified and verify_name checked */
int tls_handshake(struct conn *c, SSL_CTX *ctx, const char *sni, const char *verify_name);
/* tls_describe - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384, certificate verified" for logs */
void tls_describe(const struct conn *c, char *buf, size_t size);

/*
 * tls_fingerprints_check - whether list is one or more SHA-256 fingerprints
 * (64 hex digits, colons allowed between pairs; separated by commas or
 * white space). Returns 0, or -1 with errbuf saying what is wrong.
 */
int tls_fingerprints_check(const char *list, char *errbuf, size_t errlen);
/* tls_fingerprint_format - "AB:CD:..." (95 characters + NUL) of a certificate's SHA-256 digest */
void tls_fingerprint_format(const unsigned char digest[32], char out[96]);
/* tls_host_listed - whether host is in a JavaMail host list (white space or commas; case-insensitive) */
int tls_host_listed(const char *list, const char *host);

#endif
