/*
 * tls - OpenSSL client contexts and the handshake on a conn.
 *
 * Verification is on unless a caller explicitly turns it off: the chain
 * is checked against the system store or a configured CA file/path, and
 * the certificate must name verify_name (DNS SAN, or IP SAN for literals).
 * TLS 1.2 is the minimum. SNI is sent for host names.
 */
#ifndef BTPRELAY_TLS_H
#define BTPRELAY_TLS_H

#include <openssl/ssl.h>
#include "conn.h"

struct tls_trust {
	const char *ca_file;	/* PEM bundle, NULL = system store */
	const char *ca_path;	/* hashed directory, NULL = none */
	int verify;		/* 1 = verify chain and name (default) */
};

/* tls_ctx_new - a client context; NULL with errbuf filled on failure */
SSL_CTX *tls_ctx_new(const struct tls_trust *trust, char *errbuf, size_t errlen);
/*
 * tls_handshake - start TLS on a connected conn (after STARTTLS, or at once
 * for implicit TLS). sni may be NULL; verify_name is the name the
 * certificate must carry. On failure: -1, CONN_TLS, errtext says why
 * ("certificate verify failed: unable to get local issuer certificate").
 */
int tls_handshake(struct conn *c, SSL_CTX *ctx, const char *sni, const char *verify_name);
/* tls_describe - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384" for logs */
void tls_describe(const struct conn *c, char *buf, size_t size);

#endif
