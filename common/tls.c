/*
 * tls - OpenSSL client contexts and handshakes, verified by default.
 *
 * The chain is verified against the configured CA file/path, or the
 * system store when none is configured; the leaf must carry the expected
 * name (DNS SAN via SSL_set1_host, or an IP SAN for address literals).
 * A failed verification is a failed handshake: the caller defers.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* tls_ctx_new - client context with TLS 1.2 minimum */
SSL_CTX *tls_ctx_new(const struct tls_trust *trust, char *errbuf, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *file = trust->ca_file && *trust->ca_file ? trust->ca_file : NULL;
	const char *path = trust->ca_path && *trust->ca_path ? trust->ca_path : NULL;

	if (ctx == NULL) {
		snprintf(errbuf, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (trust->verify) {
		int loaded = (file || path) ? SSL_CTX_load_verify_locations(ctx, file, path)
					    : SSL_CTX_set_default_verify_paths(ctx);

		if (!loaded) {
			unsigned long e = ERR_get_error();

			snprintf(errbuf, errlen, "cannot load CA certificates from %s: %s",
				 file ? file : path ? path : "the system store",
				 e ? ERR_reason_error_string(e) : "unknown error");
			ERR_clear_error();
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}

/* is_ip_literal - whether name is an IPv4 or IPv6 address */
static int is_ip_literal(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* handshake_error - why the handshake failed, verification result first */
static void handshake_error(struct conn *c)
{
	long vr = SSL_get_verify_result(c->ssl);
	unsigned long e = ERR_get_error();
	char buf[200] = "handshake failed";

	if (vr != X509_V_OK) {
		snprintf(c->errtext, sizeof(c->errtext), "certificate verification failed: %s",
			 X509_verify_cert_error_string(vr));
	} else {
		if (e)
			ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(c->errtext, sizeof(c->errtext), "%s", buf);
	}
	ERR_clear_error();
	c->err = CONN_TLS;
}

/* tls_handshake - SSL_connect on the conn's socket, bounded by its timeout */
int tls_handshake(struct conn *c, SSL_CTX *ctx, const char *sni, const char *verify_name)
{
	double end = conn_now() + c->timeout_ms / 1000.0;

	if (c->deadline > 0 && c->deadline < end)
		end = c->deadline;
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
		handshake_error(c);
		return -1;
	}
	if (sni && *sni && !is_ip_literal(sni))
		SSL_set_tlsext_host_name(c->ssl, sni);
	if (verify_name && *verify_name && SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
		if (is_ip_literal(verify_name)) {
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), verify_name);
		} else {
			SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			SSL_set1_host(c->ssl, verify_name);
		}
	}
	for (;;) {
		int r = SSL_connect(c->ssl), err;
		struct pollfd pfd = { .fd = c->fd };
		double left;

		if (r == 1)
			return 0;
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			pfd.events = POLLIN;
		else if (err == SSL_ERROR_WANT_WRITE)
			pfd.events = POLLOUT;
		else {
			if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
				c->err = CONN_CLOSED;
				snprintf(c->errtext, sizeof(c->errtext),
					 "connection closed during TLS handshake");
			} else {
				handshake_error(c);
			}
			SSL_free(c->ssl);
			c->ssl = NULL;
			return -1;
		}
		left = end - conn_now();
		if (left <= 0 || poll(&pfd, 1, (int)(left * 1000) + 1) == 0) {
			c->err = CONN_TIMEOUT;
			snprintf(c->errtext, sizeof(c->errtext), "timeout during TLS handshake");
			SSL_free(c->ssl);
			c->ssl = NULL;
			return -1;
		}
	}
}

/* tls_describe - protocol and cipher, for log lines */
void tls_describe(const struct conn *c, char *buf, size_t size)
{
	if (c->ssl == NULL)
		snprintf(buf, size, "no TLS");
	else
		snprintf(buf, size, "%s with cipher %s", SSL_get_version(c->ssl),
			 SSL_get_cipher_name(c->ssl));
}
