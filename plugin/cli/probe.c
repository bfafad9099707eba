/*
 * probe - `btprelay probe NAME [--no-auth]`: open the route to the relay
 * exactly as a delivery does and say how each step went, without sending
 * mail: resolve the destination; for OnPremise how the proxy is
 * authenticated and why (proxy.authentication), the Connectivity token
 * (not with a trusted proxy), the TCP connection to the proxy, the
 * handshake and CONNECT; then
 * SMTP: greeting, EHLO, STARTTLS or implicit TLS (version, cipher, the
 * relay's certificate and the verification result), AUTH with the
 * destination's credentials (unless --no-auth); then QUIT. The TLS
 * context and the SMTP options are the transport's own
 * (deliver_tls_context, deliver_smtp_options): the same trust (CA file or
 * path, certificates delivered with the destination, TrustStoreLocation),
 * pins, mail.smtp.ssl.* hints, implicit TLS, EHLO name and AUTH (PLAIN,
 * LOGIN, XOAUTH2), so a probe that passes means a delivery would get as far.
 *
 * Every step prints "STEP: ok (...)" or "STEP: failed: D.S.N text", the
 * text being the one the transport would log. Facts learned on the way are
 * "key: value" lines. The exit status is the transport's for the same
 * failure (dsn_exit_code: 75 for everything it would defer, 69 when the
 * relay refused with 5xx), 0 when every step passed.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "cli.h"
#include "conn.h"
#include "deliver.h"
#include "http.h"
#include "oauth.h"
#include "proxy.h"
#include "smtp.h"
#include "socks5.h"
#include "tls.h"
#include "util.h"

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define PEER_CERTIFICATE(ssl) SSL_get1_peer_certificate(ssl)
#else
#define PEER_CERTIFICATE(ssl) SSL_get_peer_certificate(ssl)
#endif

struct probe {
	const struct config *cfg;
	const char *name;
	int no_auth;
	struct bindings b;
	struct mail_destination d;
	struct conn conn;
	SSL_CTX *tls_ctx;
	char relay[320];	/* for texts: "mail.corp.internal:25" */
	double mark;		/* conn_now() when the current step began */
	struct outcome o;
};

/* step_ok - "STEP: ok (detail, 0.012 s)" */
static void __attribute__((format(printf, 3, 4)))
step_ok(struct probe *p, const char *step, const char *fmt, ...)
{
	double now = conn_now();
	char detail[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	cli_fact(step, "ok (%s%s%.3f s)", detail, detail[0] ? ", " : "", now - p->mark);
	p->mark = now;
}

/* step_fail - "STEP: failed: D.S.N text"; returns -1 */
static int step_fail(struct probe *p, const char *step)
{
	cli_fact(step, "failed: %s %s", p->o.status, p->o.text);
	cli_failure_note();
	return -1;
}

/*
 * probe_tunnel - the proxy's authentication and why, token (unless the
 * proxy is trusted), proxy connection, handshake, CONNECT (deliver.c's
 * open_tunnel)
 */
static int probe_tunnel(struct probe *p)
{
	const struct config *cfg = p->cfg;
	struct http_options http;
	struct oauth_token tok = { 0 };
	struct proxy_plan plan;
	unsigned tenant = p->d.tenant_is_subscriber ? OAUTH_SUBSCRIBER : 0;
	const char *loc = p->d.location_id && *p->d.location_id ? p->d.location_id : NULL;
	int attempt, r, method = -1;

	http_options_init(&http, cfg, p->conn.deadline);
	if (proxy_plan(cfg, &p->b, p->d.name, &plan, &p->o) < 0)
		return step_fail(p, "proxy.authentication");
	cli_fact("proxy.authentication", "%s (%s)", config_proxy_auth_name(plan.auth), plan.why);
	for (attempt = 0; attempt < 2; attempt++) {
		if (plan.auth == PROXY_AUTH_NONE) {
			cli_fact("token", "not used (the proxy is trusted: no JWT)");
		} else {
			if (oauth_token_cached(cfg, &p->b.connectivity, &http, "connectivity",
					       tenant, &tok, &p->o) < 0)
				return step_fail(p, "token");
			step_ok(p, "token", "connectivity, %s, expires in %ld s",
				tenant ? "subscriber" : "provider",
				(long)(tok.expires_at - time(NULL)));
		}
		if (conn_connect(&p->conn, plan.host, plan.port) < 0) {
			dsn_defer(&p->o, "4.4.1", "connect to connectivity proxy %s: %s",
				  p->conn.peer, p->conn.errtext);
			oauth_token_free(&tok);
			return step_fail(p, "proxy.connect");
		}
		step_ok(p, "proxy.connect", "%s", p->conn.peer);
		r = socks5_connect_method(&p->conn, plan.auth == PROXY_AUTH_TOKEN ? tok.access_token
					  : NULL, p->d.location_id, p->d.host, p->d.port, &method, &p->o);
		if (r == SOCKS5_AUTH_REJECTED)
			oauth_token_reject(cfg, &p->b.connectivity, &http, "connectivity", tenant,
					   &tok);
		oauth_token_free(&tok);
		if (r == SOCKS5_OK && method == 0x00) {
			/* what a trusted proxy does with the location ID is not documented: show it */
			step_ok(p, "proxy.handshake", "no token, the proxy chose method 0x00, location "
				"ID %s%s, CONNECT %s:%u", loc ? loc : "(none)", loc ? " not sent (the "
				"proxy cannot receive it)" : "", p->d.host, p->d.port);
			return 0;
		}
		if (r == SOCKS5_OK) {
			step_ok(p, "proxy.handshake", "%s, location ID %s, CONNECT %s:%u",
				plan.auth == PROXY_AUTH_TOKEN ? "method 0x80"
				: "no token, the proxy chose method 0x80 (JWT length 0)",
				loc ? loc : "(none)", p->d.host, p->d.port);
			return 0;
		}
		conn_close(&p->conn);
		if (r != SOCKS5_AUTH_REJECTED || attempt == 1)
			return step_fail(p, "proxy.handshake");
		/* as the transport does: a rejected token is fetched again, once */
		cli_fact("proxy.handshake", "rejected: %s %s; fetching a new token", p->o.status,
			 p->o.text);
	}
	return -1;
}

/* name_text - an X509_NAME in RFC 2253 form, printable */
static void name_text(const X509_NAME *name, char *buf, size_t size)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long len;

	buf[0] = '\0';
	if (bio == NULL)
		return;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0
	    && (len = BIO_get_mem_data(bio, &data)) > 0)
		str_printable(buf, size, data, (size_t)len < size ? (size_t)len : size - 1);
	BIO_free(bio);
}

/* san_text - the subjectAltName entries: "DNS:a, DNS:b, IP:127.0.0.1" */
static void san_text(X509 *cert, char *buf, size_t size)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	char one[300], addr[INET6_ADDRSTRLEN];
	size_t len = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const ASN1_STRING *s = NULL;
		const char *tag = NULL;

		switch (g->type) {
		case GEN_DNS: tag = "DNS"; s = g->d.dNSName; break;
		case GEN_EMAIL: tag = "email"; s = g->d.rfc822Name; break;
		case GEN_URI: tag = "URI"; s = g->d.uniformResourceIdentifier; break;
		case GEN_IPADD:
			s = g->d.iPAddress;
			if (!inet_ntop(ASN1_STRING_length(s) == 16 ? AF_INET6 : AF_INET,
				       ASN1_STRING_get0_data(s), addr, sizeof(addr)))
				str_copy(addr, "?", sizeof(addr));
			snprintf(one, sizeof(one), "IP:%s", addr);
			s = NULL;
			break;
		default:
			snprintf(one, sizeof(one), "other");
			break;
		}
		if (tag != NULL && s != NULL) {
			char v[256];

			str_printable(v, sizeof(v), (const char *)ASN1_STRING_get0_data(s),
				      (size_t)ASN1_STRING_length(s));
			snprintf(one, sizeof(one), "%s:%s", tag, v);
		}
		if (len < size)
			len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "", one);
	}
	GENERAL_NAMES_free(names);
	if (buf[0] == '\0')
		snprintf(buf, size, "(none)");
}

/* time_text - an ASN1_TIME as ISO 8601 */
static void time_text(const ASN1_TIME *t, char *buf, size_t size)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1
	    || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "?");
}

/* show_tls - protocol, cipher, the relay's certificate, what was checked */
static void show_tls(const struct conn *c, const struct tls_peer *peer)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char text[1024], fp[96];
	unsigned mdlen = 0;
	long vr = SSL_get_verify_result(c->ssl);
	X509 *cert = PEER_CERTIFICATE(c->ssl);

	cli_fact("tls.version", "%s", SSL_get_version(c->ssl));
	cli_fact("tls.cipher", "%s", SSL_get_cipher_name(c->ssl));
	if (cert == NULL) {
		cli_fact("tls.peer", "(no certificate)");
	} else {
		name_text(X509_get_subject_name(cert), text, sizeof(text));
		cli_fact("tls.peer.subject", "%s", text);
		name_text(X509_get_issuer_name(cert), text, sizeof(text));
		cli_fact("tls.peer.issuer", "%s", text);
		san_text(cert, text, sizeof(text));
		cli_fact("tls.peer.san", "%s", text);
		time_text(X509_get0_notBefore(cert), text, sizeof(text));
		cli_fact("tls.peer.not_before", "%s", text);
		time_text(X509_get0_notAfter(cert), text, sizeof(text));
		cli_fact("tls.peer.not_after", "%s", text);
		if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32) {
			tls_fingerprint_format(md, fp);
			cli_fact("tls.peer.sha256", "%s", fp);
		}
		X509_free(cert);
	}
	/* OpenSSL's result for the chain; what the handshake checked besides it */
	cli_fact("tls.verify", "%s", peer->fingerprints ? "(not used: fingerprint pin)"
		 : peer->no_chain ? "(not used: mail.smtp.ssl.trust)"
		 : X509_verify_cert_error_string(vr));
	cli_fact("tls.verify_name", "%s", peer->fingerprints ? "(not used: fingerprint pin)"
		 : peer->name ? peer->name : "(not checked: mail.smtp.ssl.checkserveridentity)");
	tls_describe(c, text, sizeof(text));
	cli_fact("tls.summary", "%s", text);
}

/* ext_text - the EHLO extensions the library knows */
static void ext_text(const struct smtp_session *s, char *buf, size_t size)
{
	static const struct {
		unsigned bit;
		const char *name;
	} words[] = {
		{ SMTP_EXT_PIPELINING, "PIPELINING" },
		{ SMTP_EXT_SIZE, "SIZE" },
		{ SMTP_EXT_8BITMIME, "8BITMIME" },
		{ SMTP_EXT_SMTPUTF8, "SMTPUTF8" },
		{ SMTP_EXT_ENHANCEDSTATUSCODES, "ENHANCEDSTATUSCODES" },
		{ SMTP_EXT_STARTTLS, "STARTTLS" },
		{ SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN | SMTP_EXT_AUTH_XOAUTH2, "AUTH" },
	};
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if ((s->ext & words[i].bit) && len < size)
			len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? " " : "",
						words[i].name);
	if (buf[0] == '\0')
		snprintf(buf, size, "(none)");
}

/* mech_text - the AUTH mechanisms the library knows that the relay offers */
static void mech_text(unsigned ext, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s%s%s%s", ext & SMTP_EXT_AUTH_PLAIN ? "PLAIN" : "",
		 (ext & SMTP_EXT_AUTH_PLAIN) && (ext & SMTP_EXT_AUTH_LOGIN) ? " " : "",
		 ext & SMTP_EXT_AUTH_LOGIN ? "LOGIN" : "",
		 (ext & SMTP_EXT_AUTH_XOAUTH2) && (ext & (SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN))
		 ? " " : "", ext & SMTP_EXT_AUTH_XOAUTH2 ? "XOAUTH2" : "");
}

/*
 * show_smtp - the SMTP steps from the session's state: those before the
 * one that failed passed. A broken connection hides where it broke; the
 * outcome's text names the command then.
 */
static void show_smtp(struct probe *p, const struct smtp_session *s,
		      const struct smtp_options *opt, const struct tls_policy *tp, int rc)
{
	enum smtp_state at = rc == 0 ? SMTP_STATE_READY : s->state;
	int broken = at == SMTP_STATE_BROKEN, tls_failed;
	char text[512];

	if (broken && !s->tls_active && s->ext == 0 && !s->helo_only) {
		step_fail(p, "smtp");
		return;
	}
	if (at == SMTP_STATE_GREETING) {
		step_fail(p, "smtp.greeting");
		return;
	}
	step_ok(p, "smtp.greeting", "220");
	/* smtp_tls() fails in state EHLO: TLS required, and not offered */
	tls_failed = at == SMTP_STATE_EHLO && (strcmp(p->o.status, "4.7.4") == 0
					      || strstr(p->o.text, "TLS is required") != NULL);
	if ((at == SMTP_STATE_EHLO || at == SMTP_STATE_HELO) && !tls_failed) {
		step_fail(p, "smtp.ehlo");
		return;
	}
	step_ok(p, "smtp.ehlo", "%s", s->helo_only ? "EHLO refused, HELO accepted" : "EHLO");
	if (opt->implicit_tls) {
		cli_fact("tls", "implicit (the handshake came first)");
	} else if (tls_failed || at == SMTP_STATE_STARTTLS
		   || (broken && !s->tls_active && opt->tls_level != TLS_LEVEL_NONE
		       && (s->ext & SMTP_EXT_STARTTLS))) {
		step_fail(p, "tls.starttls");
		return;
	} else if (s->tls_active) {
		step_ok(p, "tls.starttls", "STARTTLS");
	} else {
		cli_fact("tls", "none (%s)", opt->tls_level == TLS_LEVEL_NONE ? "not wanted: "
			 "smtp_tls_security_level or mail.smtp.starttls.enable"
			 : s->ext & SMTP_EXT_STARTTLS ? "the relay refused STARTTLS"
			 : "the relay does not offer STARTTLS");
	}
	if (s->tls_active && !opt->implicit_tls && p->conn.ssl != NULL)
		show_tls(&p->conn, &tp->peer);
	ext_text(s, text, sizeof(text));
	cli_fact("smtp.extensions", "%s", text);
	if (s->size_limit > 0)
		cli_fact("smtp.size_limit", "%lu", s->size_limit);
	else
		cli_fact("smtp.size_limit", "(none)");
	mech_text(s->ext, text, sizeof(text));
	cli_fact("auth.mechanisms", "%s", text[0] ? text : "(none of XOAUTH2, PLAIN, LOGIN)");
	if (rc < 0) {
		/* what is left: AUTH, or a connection that broke after TLS */
		step_fail(p, opt->auth_user && (broken || at == SMTP_STATE_AUTH) ? "auth" : "smtp");
		return;
	}
	if (opt->auth_user != NULL)
		step_ok(p, "auth", "%suser %s", opt->auth_xoauth2_token ? "XOAUTH2, " : "",
			opt->auth_user);
	else
		cli_fact("auth", "%s", p->no_auth ? "skipped (--no-auth)"
			 : "not used (the destination has no credentials, or mail.smtp.auth false)");
}

/* probe_run - every step; 0 when all passed, -1 with p->o */
static int probe_run(struct probe *p)
{
	const struct config *cfg = p->cfg;
	struct mail_destination *d = &p->d;
	struct smtp_options opt;
	struct smtp_session s;
	struct tls_policy tp;
	char helo[256];
	int rc;

	if (bindings_load(cfg, &p->b, &p->o) < 0)
		return step_fail(p, "bindings");
	if (cli_resolve(cfg, &p->b, p->name, p->conn.deadline, d, &p->o) != 0)
		return step_fail(p, "resolve");
	step_ok(p, "resolve", "%s%s", d->source, d->stale ? ", stale cache entry"
		: d->cache_age >= 0 ? ", from the cache" : "");
	if (d->host == NULL) {	/* a mailbox only: btprelay-fetch --probe looks at it */
		dsn_defer(&p->o, "4.3.5", "destination %s is a mailbox (mail.store.protocol %s) "
			  "without an SMTP relay: probe it with btprelay-fetch --probe -s %s",
			  d->name, dest_store_name(d->store.protocol), d->name);
		return step_fail(p, "resolve");
	}
	cli_fact("relay", "%s:%u", d->host, d->port);
	cli_fact("proxy_type", "%s", d->onpremise ? "OnPremise" : "Internet");
	if (d->onpremise)
		cli_fact("location_id", "%s", d->location_id ? d->location_id : "(none)");
	snprintf(p->relay, sizeof(p->relay), "%s:%u", d->host, d->port);

	/* the transport's own TLS context and SMTP options (deliver.h) */
	deliver_helo_name(cfg, helo, sizeof(helo));
	deliver_smtp_options(cfg, d, p->relay, helo, NULL, &opt);
	tls_policy_resolve(cfg, d, &tp);
	if (tp.warnings[0] != '\0')
		cli_fact("tls.warnings", "%s", tp.warnings);
	if ((opt.implicit_tls || opt.tls_level != TLS_LEVEL_NONE)
	    && deliver_tls_context(cfg, d, &p->tls_ctx, &p->o) < 0)
		return step_fail(p, "tls.config");
	opt.tls_ctx = p->tls_ctx;

	if (d->onpremise) {
		if (probe_tunnel(p) < 0)
			return -1;
	} else if (conn_connect(&p->conn, d->host, d->port) < 0) {
		dsn_defer(&p->o, "4.4.1", "connect to %s: %s", p->conn.peer, p->conn.errtext);
		return step_fail(p, "connect");
	} else {
		snprintf(p->relay, sizeof(p->relay), "%s", p->conn.peer);
		step_ok(p, "connect", "%s", p->conn.peer);
	}
	if (opt.implicit_tls) {
		if (tls_handshake_peer(&p->conn, p->tls_ctx, &tp.peer) < 0) {
			dsn_defer(&p->o, "4.7.5", "TLS handshake with %s failed: %s", p->relay,
				  p->conn.errtext);
			return step_fail(p, "tls.handshake");
		}
		step_ok(p, "tls.handshake", "implicit TLS, %s", d->smtps ? "smtps"
			: "mail.smtp.ssl.enable");
		show_tls(&p->conn, &tp.peer);
	}
	conn_set_timeout(&p->conn, opt.command_timeout_ms);
	if (p->no_auth) {
		opt.auth_user = NULL;
		opt.auth_password = NULL;
		opt.auth_xoauth2_token = NULL;
		opt.auth_error = NULL;
	}
	rc = smtp_session_open(&s, &p->conn, &opt, &p->o);
	show_smtp(p, &s, &opt, &tp, rc);
	if (s.state != SMTP_STATE_BROKEN && s.state != SMTP_STATE_NEW) {
		smtp_quit(&s);
		cli_fact("smtp.quit", "sent");
	}
	return rc;
}

/* cmd_probe - probe NAME [--no-auth] */
int cmd_probe(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no-auth", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const struct config *cfg;
	struct probe p;
	int ch, rc;

	memset(&p, 0, sizeof(p));
	optind = 0;
	while ((ch = getopt_long(argc, argv, "n", longopts, NULL)) != -1) {
		if (ch != 'n') {
			cli_error("usage: btprelay probe NAME [--no-auth]");
			return EX_USAGE;
		}
		p.no_auth = 1;
	}
	if (optind != argc - 1) {
		cli_error("usage: btprelay probe NAME [--no-auth]");
		return EX_USAGE;
	}
	if ((rc = cli_config(cli)) != 0)
		return rc;
	cfg = &cli->cfg;
	p.cfg = cfg;
	p.name = argv[optind];
	p.mark = conn_now();
	conn_init(&p.conn, cfg->smtp_connect_timeout * 1000, p.mark + cfg->delivery_deadline);
	cli_fact("destination", "%s", p.name);
	rc = probe_run(&p);
	conn_close(&p.conn);
	if (p.tls_ctx != NULL)
		SSL_CTX_free(p.tls_ctx);
	dest_free(&p.d);
	bindings_free(&p.b);
	if (rc < 0) {
		cli_fact("result", "failed");
		cli_error("probe %s: %s %s", p.name, p.o.status, p.o.text);
		return dsn_exit_code(&p.o);
	}
	cli_fact("result", "ok");
	return EX_OK;
}
