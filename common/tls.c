/*
 * tls - OpenSSL client contexts and handshakes, verified by default.
 *
 * The handshake itself never aborts on the certificate: the context
 * verifies in SSL_VERIFY_NONE mode (OpenSSL still computes the chain
 * result), and tls_check_peer() decides after the handshake, before a
 * single SMTP byte goes through the session: the fingerprint pin if there
 * is one, else the chain result (unless the destination trusts the host)
 * and the name (unless the destination turned the check off). So every
 * failure has one text that says which check failed and what the
 * certificate said. A failed check is a failed handshake: the caller
 * defers.
 *
 * A CA file, the system's bundle included, is not loaded into the context
 * but read on demand (cafile.c): OpenSSL 3.0 decodes every certificate of
 * a file it loads, some 20 ms of CPU for the system's 150, in a process
 * that delivers one message and needs one or two of them.
 */
#include <ctype.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "cafile.h"
#include "log.h"
#include "tls.h"
#include "util.h"

/* a context made with trust->verify == 0: tls_handshake_peer checks nothing */
static const char tls_no_checks[] = "certificate not verified (no checks)";

/* tls_ssl_error - the first OpenSSL error as text, the queue cleared */
static void tls_ssl_error(char *buf, size_t size, const char *fallback)
{
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, size);
	else
		snprintf(buf, size, "%s", fallback);
	ERR_clear_error();
}

/*
 * tls_add_blob - trust the certificates of one delivered file (PEM or DER);
 * bundle (the CA file's lookup, or NULL) adds its certificates with the
 * same subjects, as if the whole CA file had been loaded
 */
static int tls_add_blob(X509_STORE *store, X509_LOOKUP *bundle, const struct tls_cert_blob *b,
			char *errbuf, size_t errlen)
{
	const char *name = b->name && *b->name ? b->name : "(no name)";
	BIO *bio;
	X509 *x;
	int count = 0;

	if (b->len == 0 || b->len > INT_MAX) {
		snprintf(errbuf, errlen, "certificate %s of the destination: %s", name,
			 b->len ? "too large" : "empty");
		return -1;
	}
	/* PEM: every CERTIFICATE block; anything else in the file is skipped. */
	bio = BIO_new_mem_buf(b->der, (int)b->len);
	while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		X509_STORE_add_cert(store, x);	/* a duplicate is not an error */
		cafile_lookup_name(bundle, X509_get_subject_name(x));
		X509_free(x);
		count++;
	}
	BIO_free(bio);
	ERR_clear_error();
	if (count == 0) {
		const unsigned char *p = b->der;

		if ((x = d2i_X509(NULL, &p, (long)b->len)) != NULL) {
			X509_STORE_add_cert(store, x);
			cafile_lookup_name(bundle, X509_get_subject_name(x));
			X509_free(x);
			count = 1;
		}
		ERR_clear_error();
	}
	if (count == 0) {
		snprintf(errbuf, errlen, "certificate %s of the destination: not a PEM or DER "
			 "certificate (PKCS#12 and JKS trust stores are not supported: upload the "
			 "CA certificate as PEM)", name);
		return -1;
	}
	log_debug("trusting %d certificate%s of the destination's %s", count,
		  count == 1 ? "" : "s", name);
	return 0;
}

/* tls_client_cert - the client certificate and its key, the key file private */
static int tls_client_cert(SSL_CTX *ctx, const char *cert, const char *key, char *errbuf,
			   size_t errlen)
{
	char why[300];

	if (key == NULL || *key == 0)
		key = cert;
	if (file_check_private(key, why, sizeof(why)) < 0) {
		snprintf(errbuf, errlen, "client certificate key %s", why);
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_ssl_error(why, sizeof(why), "unreadable");
		snprintf(errbuf, errlen, "client certificate %s: %s", cert, why);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1
	    || SSL_CTX_check_private_key(ctx) != 1) {
		tls_ssl_error(why, sizeof(why), "unreadable");
		snprintf(errbuf, errlen, "client certificate key %s: %s", key, why);
		return -1;
	}
	return 0;
}

/*
 * tls_trust_load - the trust anchors: the configured CA file and/or hashed
 * directory, else the system store as SSL_CTX_set_default_verify_paths()
 * sets it up (SSL_CERT_FILE or OpenSSL's default file, SSL_CERT_DIR or its
 * default directory; a missing one is no error), in OpenSSL's order. A
 * CA file is a cafile lookup, read on demand; *bundle is it, NULL when
 * there is none. -1 with errbuf filled on failure.
 */
static int tls_trust_load(SSL_CTX *ctx, const char *file, const char *path,
			  X509_LOOKUP **bundle, char *errbuf, size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lu;
	const char *dflt;
	char why[200];
	int loaded;

	*bundle = NULL;
	if (file == NULL && path == NULL) {
		if ((dflt = secure_getenv(X509_get_default_cert_file_env())) == NULL)
			dflt = X509_get_default_cert_file();
		if ((*bundle = cafile_lookup_add(store, dflt, 0)) == NULL) {
			SSL_CTX_set_default_verify_paths(ctx);	/* never fails */
			return 0;
		}
		/* then what X509_STORE_set_default_paths() adds after its file */
		if ((lu = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir())) != NULL)
			X509_LOOKUP_add_dir(lu, NULL, X509_FILETYPE_DEFAULT);
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		if ((lu = X509_STORE_add_lookup(store, X509_LOOKUP_store())) != NULL)
			X509_LOOKUP_add_store(lu, NULL);
#endif
		ERR_clear_error();
		return 0;
	}
	/* a file that is more than certificates, or unreadable: loaded as before, errors and all */
	if (file != NULL && (*bundle = cafile_lookup_add(store, file, 1)) != NULL)
		loaded = path == NULL || SSL_CTX_load_verify_locations(ctx, NULL, path);
	else
		loaded = SSL_CTX_load_verify_locations(ctx, file, path);
	if (!loaded) {
		tls_ssl_error(why, sizeof(why), "unknown error");
		snprintf(errbuf, errlen, "cannot load CA certificates from %s: %s",
			 file ? file : path, why);
		return -1;
	}
	return 0;
}

/* tls_ctx_new - client context with TLS 1.2 minimum */
SSL_CTX *tls_ctx_new(const struct tls_trust *trust, char *errbuf, size_t errlen)
{
	return tls_ctx_new_extra(trust, NULL, errbuf, errlen);
}

/* tls_ctx_new_extra - client context, TLS 1.2 minimum, extra trust, client certificate */
SSL_CTX *tls_ctx_new_extra(const struct tls_trust *trust, const struct tls_extra *extra,
			   char *errbuf, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *file = trust->ca_file && *trust->ca_file ? trust->ca_file : NULL;
	const char *path = trust->ca_path && *trust->ca_path ? trust->ca_path : NULL;
	X509_LOOKUP *bundle;
	size_t i;

	if (ctx == NULL) {
		snprintf(errbuf, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* tls_check_peer() decides after the handshake; OpenSSL only computes the result. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (trust->verify) {
		if (tls_trust_load(ctx, file, path, &bundle, errbuf, errlen) < 0) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		for (i = 0; extra && i < extra->ncerts; i++) {
			if (tls_add_blob(SSL_CTX_get_cert_store(ctx), bundle, &extra->certs[i], errbuf,
					 errlen) < 0) {
				if (extra->certs[i].optional) {
					log_debug("%s: skipped", errbuf);
					continue;
				}
				SSL_CTX_free(ctx);
				return NULL;
			}
		}
	} else {
		SSL_CTX_set_app_data(ctx, (void *)tls_no_checks);
	}
	if (extra && extra->cert_file && *extra->cert_file
	    && tls_client_cert(ctx, extra->cert_file, extra->key_file, errbuf, errlen) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* is_ip_literal - whether name is an IPv4 or IPv6 address */
static int is_ip_literal(const char *name)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* tls_fingerprint_format - "AB:CD:..." of a SHA-256 digest */
void tls_fingerprint_format(const unsigned char digest[32], char out[96])
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < 32; i++) {
		out[3 * i] = hex[digest[i] >> 4];
		out[3 * i + 1] = hex[digest[i] & 15];
		out[3 * i + 2] = i < 31 ? ':' : 0;
	}
}

/*
 * tls_fingerprint_next - parse the next pin of a list into digest; returns
 * a pointer past it, NULL at the end of the list, or list itself (with
 * errbuf filled) when the pin is malformed
 */
static const char *tls_fingerprint_next(const char *list, unsigned char digest[32],
					char *errbuf, size_t errlen)
{
	const char *p = list + strspn(list, ", \t;"), *start = p;
	size_t ndig = 0;
	int v, hi = -1;

	if (*p == 0)
		return NULL;
	for (; *p && !strchr(", \t;", *p); p++) {
		if (*p == ':' && hi < 0)
			continue;
		if (!isxdigit((unsigned char)*p) || ndig >= 64)
			goto bad;
		v = isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
		if (hi < 0) {
			hi = v;
		} else {
			digest[ndig / 2] = (unsigned char)(hi << 4 | v);
			hi = -1;
		}
		ndig++;
	}
	if (ndig == 64)
		return p;
bad:
	snprintf(errbuf, errlen, "\"%.*s\" is not a SHA-256 fingerprint (64 hex digits, "
		 "e.g. from openssl x509 -noout -fingerprint -sha256)",
		 (int)(strcspn(start, ", \t;") > 80 ? 80 : strcspn(start, ", \t;")), start);
	return list;
}

/* tls_fingerprints_check - a list of SHA-256 fingerprints */
int tls_fingerprints_check(const char *list, char *errbuf, size_t errlen)
{
	unsigned char d[32];
	const char *p = list, *next;
	int n = 0;

	while ((next = tls_fingerprint_next(p, d, errbuf, errlen)) != NULL) {
		if (next == p)
			return -1;
		p = next;
		n++;
	}
	if (n == 0) {
		snprintf(errbuf, errlen, "no fingerprint in \"%s\"", list);
		return -1;
	}
	return 0;
}

/* tls_cert_names - the certificate's DNS and IP names, for messages */
static void tls_cert_names(X509 *x, char *buf, size_t size)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	size_t off = 0;
	int i, n;

	buf[0] = 0;
	for (i = 0; names && i < sk_GENERAL_NAME_num(names) && off + 1 < size; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		char ip[INET6_ADDRSTRLEN] = "";
		const unsigned char *data;
		int len;

		if (g->type == GEN_DNS) {
			data = ASN1_STRING_get0_data(g->d.dNSName);
			len = ASN1_STRING_length(g->d.dNSName);
			n = snprintf(buf + off, size - off, "%s%.*s", off ? ", " : "",
				     len > 100 ? 100 : len, (const char *)data);
		} else if (g->type == GEN_IPADD) {
			data = ASN1_STRING_get0_data(g->d.iPAddress);
			len = ASN1_STRING_length(g->d.iPAddress);
			if (len == 4 || len == 16)
				inet_ntop(len == 4 ? AF_INET : AF_INET6, data, ip, sizeof(ip));
			n = snprintf(buf + off, size - off, "%s%s", off ? ", " : "", ip);
		} else {
			continue;
		}
		off += n > 0 ? (size_t)n : 0;
	}
	GENERAL_NAMES_free(names);
	if (off == 0) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf,
					  (int)size);
		if (buf[0] == 0)
			snprintf(buf, size, "no name");
	}
	/* names come from the peer: printable only */
	for (off = 0; buf[off]; off++)
		if ((unsigned char)buf[off] < 0x20 || buf[off] == 0x7f)
			buf[off] = '?';
}

/*
 * tls_check_peer - after the handshake: the pin, else the chain result and
 * the name. 0 when the certificate is acceptable; -1 with errtext set.
 */
static int tls_check_peer(struct conn *c, SSL_CTX *ctx, const struct tls_peer *peer)
{
	unsigned char md[EVP_MAX_MD_SIZE], want[32];
	unsigned mdlen = 0;
	char fp[96], names[300], why[200];
	const char *p, *next, *state = NULL;
	X509 *x;
	long vr;
	int rc = -1, ok;

	if (SSL_CTX_get_app_data(ctx) == tls_no_checks) {
		SSL_set_app_data(c->ssl, (void *)tls_no_checks);
		return 0;
	}
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	x = SSL_get1_peer_certificate(c->ssl);
#else
	x = SSL_get_peer_certificate(c->ssl);
#endif
	if (x == NULL) {
		snprintf(c->errtext, sizeof(c->errtext), "the relay sent no certificate");
		goto done;
	}
	if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32) {
		snprintf(c->errtext, sizeof(c->errtext), "cannot compute the certificate fingerprint");
		goto done;
	}
	tls_fingerprint_format(md, fp);
	log_debug("relay certificate SHA-256 fingerprint %s", fp);

	if (peer->fingerprints && *peer->fingerprints) {
		for (p = peer->fingerprints;
		     (next = tls_fingerprint_next(p, want, why, sizeof(why))) != NULL && next != p;
		     p = next) {
			if (memcmp(want, md, 32) == 0) {
				state = "certificate fingerprint matched";
				rc = 0;
				goto done;
			}
		}
		snprintf(c->errtext, sizeof(c->errtext), "certificate fingerprint mismatch: the "
			 "relay's certificate has SHA-256 fingerprint %s, not a pinned one", fp);
		goto done;
	}
	if (!peer->no_chain && (vr = SSL_get_verify_result(c->ssl)) != X509_V_OK) {
		snprintf(c->errtext, sizeof(c->errtext), "certificate verification failed: %s",
			 X509_verify_cert_error_string(vr));
		goto done;
	}
	if (peer->name && *peer->name) {
		if (is_ip_literal(peer->name))
			ok = X509_check_ip_asc(x, peer->name, 0) == 1;
		else
			ok = X509_check_host(x, peer->name, 0,
					     X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
		if (!ok) {
			tls_cert_names(x, names, sizeof(names));
			snprintf(c->errtext, sizeof(c->errtext), "certificate verification failed: "
				 "hostname mismatch: the certificate is for %s, not %s", names,
				 peer->name);
			goto done;
		}
	}
	state = peer->no_chain ? (peer->name && *peer->name
				  ? "certificate chain NOT verified (trusted host), name verified"
				  : "certificate NOT verified (trusted host)")
		: peer->name && *peer->name ? "certificate verified"
		: "certificate chain verified, name NOT checked";
	rc = 0;
done:
	if (rc == 0)
		SSL_set_app_data(c->ssl, (void *)state);
	else
		c->err = CONN_TLS;
	ERR_clear_error();
	X509_free(x);
	return rc;
}

/* handshake_error - why the handshake failed */
static void handshake_error(struct conn *c)
{
	char buf[200];

	tls_ssl_error(buf, sizeof(buf), "handshake failed");
	snprintf(c->errtext, sizeof(c->errtext), "%s", buf);
	c->err = CONN_TLS;
}

/*
 * tls_cert_request - called when the relay asks for a client certificate.
 * With TLS 1.3 a relay that insists closes the session after the handshake,
 * and whether our next read sees its alert or just the closed socket is
 * timing; remembering the request lets the failure name its cause either way.
 */
static int tls_cert_request(SSL *ssl, void *arg)
{
	struct conn *c = arg;

	if (SSL_get_certificate(ssl) == NULL)
		c->tls_cert_unmet = 1;
	return 1;
}

/* tls_handshake_peer - SSL_connect on the conn's socket, bounded by its timeout, then the checks */
int tls_handshake_peer(struct conn *c, SSL_CTX *ctx, const struct tls_peer *peer)
{
	double end = conn_now() + c->timeout_ms / 1000.0;

	if (c->deadline > 0 && c->deadline < end)
		end = c->deadline;
	ERR_clear_error();
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd)) {
		handshake_error(c);
		if (c->ssl)
			SSL_free(c->ssl);
		c->ssl = NULL;
		return -1;
	}
	c->tls_cert_unmet = 0;
	SSL_set_cert_cb(c->ssl, tls_cert_request, c);
	if (peer->sni && *peer->sni && !is_ip_literal(peer->sni))
		SSL_set_tlsext_host_name(c->ssl, peer->sni);
	for (;;) {
		int r = SSL_connect(c->ssl), err;
		struct pollfd pfd = { .fd = c->fd };
		double left;

		if (r == 1) {
			if (tls_check_peer(c, ctx, peer) == 0)
				return 0;
			/* close_notify, so the relay does not wait for us */
			SSL_shutdown(c->ssl);
			SSL_free(c->ssl);
			c->ssl = NULL;
			ERR_clear_error();
			return -1;
		}
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
				ERR_clear_error();
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
			ERR_clear_error();
			return -1;
		}
	}
}

/* tls_handshake - the handshake with full verification of verify_name */
int tls_handshake(struct conn *c, SSL_CTX *ctx, const char *sni, const char *verify_name)
{
	struct tls_peer peer = { sni, verify_name, 0, NULL };

	return tls_handshake_peer(c, ctx, &peer);
}

/* tls_describe - protocol, cipher and what was verified, for log lines */
void tls_describe(const struct conn *c, char *buf, size_t size)
{
	const char *state;

	if (c->ssl == NULL) {
		snprintf(buf, size, "no TLS");
		return;
	}
	state = SSL_get_app_data(c->ssl);
	snprintf(buf, size, "%s with cipher %s%s%s", SSL_get_version(c->ssl),
		 SSL_get_cipher_name(c->ssl), state ? ", " : "", state ? state : "");
}

/* tls_host_listed - host in a white-space or comma separated list, ignoring case */
int tls_host_listed(const char *list, const char *host)
{
	size_t hl = strlen(host), n;
	const char *p = list;

	while (p && *p) {
		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n > 0 && n == hl && strncasecmp(p, host, n) == 0)
			return 1;
		p += n;
	}
	return 0;
}
