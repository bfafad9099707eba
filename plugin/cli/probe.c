/*
 * probe - `btprelay probe NAME [--no-auth]`: open the route to the relay
 * exactly as a delivery does and say how each step went, without sending
 * mail: resolve the destination; for OnPremise how the proxy is
 * authenticated and why (proxy.authentication), the Connectivity token
 * (not with a trusted proxy), the TCP connection to the proxy, the
 * handshake and CONNECT; then
 * SMTP: greeting, EHLO, STARTTLS or implicit TLS (version, cipher, the
 * relay's certificate and the verification result), AUTH with the
 * destination's credentials (unless --no-auth); then QUIT. The route is
 * the transport's own (route.h, its steps watched by an observer): the
 * same proxy, token, trust (CA file or path, certificates delivered with
 * the destination, TrustStoreLocation), pins, mail.smtp.ssl.* hints,
 * implicit TLS, EHLO name and AUTH (PLAIN, LOGIN, XOAUTH2), so a probe
 * that passes means a delivery would get as far.
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
#include "route.h"
#include "smtp.h"
#include "tls.h"
#include "util.h"

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define PEER_CERTIFICATE(ssl) SSL_get1_peer_certificate(ssl)
#else
#define PEER_CERTIFICATE(ssl) SSL_get_peer_certificate(ssl)
#endif

struct probe {
	const char *name;
	int no_auth;
	struct route rt;
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

/* step_fail - "STEP: failed: D.S.N text" */
static void step_fail(const struct outcome *o, const char *step)
{
	cli_fact(step, "failed: %s %s", o->status, o->text);
	cli_failure_note();
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
		step_fail(&p->o, "smtp");
		return;
	}
	if (at == SMTP_STATE_GREETING) {
		step_fail(&p->o, "smtp.greeting");
		return;
	}
	step_ok(p, "smtp.greeting", "220");
	/* smtp_tls() fails in state EHLO: TLS required, and not offered */
	tls_failed = at == SMTP_STATE_EHLO && p->o.kind == OUTCOME_TLS_REQUIRED;
	if ((at == SMTP_STATE_EHLO || at == SMTP_STATE_HELO) && !tls_failed) {
		step_fail(&p->o, "smtp.ehlo");
		return;
	}
	step_ok(p, "smtp.ehlo", "%s", s->helo_only ? "EHLO refused, HELO accepted" : "EHLO");
	if (opt->implicit_tls) {
		cli_fact("tls", "implicit (the handshake came first)");
	} else if (tls_failed || at == SMTP_STATE_STARTTLS
		   || (broken && !s->tls_active && opt->tls_level != TLS_LEVEL_NONE
		       && (s->ext & SMTP_EXT_STARTTLS))) {
		step_fail(&p->o, "tls.starttls");
		return;
	} else if (s->tls_active) {
		step_ok(p, "tls.starttls", "STARTTLS");
	} else {
		cli_fact("tls", "none (%s)", opt->tls_level == TLS_LEVEL_NONE ? "not wanted: "
			 "smtp_tls_security_level or mail.smtp.starttls.enable"
			 : s->ext & SMTP_EXT_STARTTLS ? "the relay refused STARTTLS"
			 : "the relay does not offer STARTTLS");
	}
	if (s->tls_active && !opt->implicit_tls && p->rt.conn.ssl != NULL)
		show_tls(&p->rt.conn, &tp->peer);
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
		step_fail(&p->o, opt->auth_user && (broken || at == SMTP_STATE_AUTH) ? "auth" : "smtp");
		return;
	}
	if (opt->auth_user != NULL)
		step_ok(p, "auth", "%suser %s", opt->auth_xoauth2_token ? "XOAUTH2, " : "",
			opt->auth_user);
	else
		cli_fact("auth", "%s", p->no_auth ? "skipped (--no-auth)"
			 : "not used (the destination has no credentials, or mail.smtp.auth false)");
}

/* route_done - the facts of a route step that passed */
static void route_done(struct probe *p, const struct route *rt, enum route_step step)
{
	const struct mail_destination *d = &rt->dest;
	const char *loc = d->location_id && *d->location_id ? d->location_id : NULL;

	switch (step) {
	case ROUTE_RESOLVE:
		step_ok(p, "resolve", "%s%s", d->source, d->stale ? ", stale cache entry"
			: d->cache_age >= 0 ? ", from the cache" : "");
		cli_fact("relay", "%s:%u", d->host, d->port);
		cli_fact("proxy_type", "%s", d->onpremise ? "OnPremise" : "Internet");
		if (d->onpremise)
			cli_fact("location_id", "%s", d->location_id ? d->location_id : "(none)");
		break;
	case ROUTE_TLS_POLICY:
		if (rt->tls.warnings[0] != '\0')
			cli_fact("tls.warnings", "%s", rt->tls.warnings);
		break;
	case ROUTE_PROXY_PLAN:
		cli_fact("proxy.authentication", "%s (%s)", config_proxy_auth_name(rt->plan.auth),
			 rt->plan.why);
		break;
	case ROUTE_TOKEN:
		if (rt->plan.auth == PROXY_AUTH_NONE)
			cli_fact("token", "not used (the proxy is trusted: no JWT)");
		else
			step_ok(p, "token", "connectivity, %s, expires in %ld s",
				d->tenant_is_subscriber ? "subscriber" : "provider",
				(long)(rt->token_expires - time(NULL)));
		break;
	case ROUTE_PROXY_CONNECT:
		step_ok(p, "proxy.connect", "%s", rt->conn.peer);
		break;
	case ROUTE_PROXY_HANDSHAKE:
		/* what a trusted proxy does with the location ID is not documented: show it */
		if (rt->proxy_method == 0x00)
			step_ok(p, "proxy.handshake", "no token, the proxy chose method 0x00, location "
				"ID %s%s, CONNECT %s:%u", loc ? loc : "(none)", loc ? " not sent (the "
				"proxy cannot receive it)" : "", d->host, d->port);
		else
			step_ok(p, "proxy.handshake", "%s, location ID %s, CONNECT %s:%u",
				rt->plan.auth == PROXY_AUTH_TOKEN ? "method 0x80"
				: "no token, the proxy chose method 0x80 (JWT length 0)",
				loc ? loc : "(none)", d->host, d->port);
		break;
	case ROUTE_CONNECT:
		step_ok(p, "connect", "%s", rt->conn.peer);
		break;
	case ROUTE_TLS_HANDSHAKE:
		step_ok(p, "tls.handshake", "implicit TLS, %s", d->smtps ? "smtps"
			: "mail.smtp.ssl.enable");
		show_tls(&rt->conn, &rt->tls.peer);
		break;
	default:
		break;
	}
}

/* probe_step - route_observer: one line a step, as the route goes */
static void probe_step(void *arg, const struct route *rt, enum route_step step,
		       const struct outcome *failed)
{
	static const char *const names[] = {
		[ROUTE_BINDINGS] = "bindings", [ROUTE_RESOLVE] = "resolve",
		[ROUTE_TLS_POLICY] = "tls.policy", [ROUTE_TLS_CONFIG] = "tls.config",
		[ROUTE_PROXY_PLAN] = "proxy.authentication", [ROUTE_TOKEN] = "token",
		[ROUTE_PROXY_CONNECT] = "proxy.connect", [ROUTE_TOKEN_REJECTED] = "proxy.handshake",
		[ROUTE_PROXY_HANDSHAKE] = "proxy.handshake", [ROUTE_CONNECT] = "connect",
		[ROUTE_TLS_HANDSHAKE] = "tls.handshake",
	};

	if (step == ROUTE_TOKEN_REJECTED)	/* as the transport does: fetched again, once */
		cli_fact(names[step], "rejected: %s %s; fetching a new token", failed->status,
			 failed->text);
	else if (failed != NULL)
		step_fail(failed, names[step]);
	else
		route_done(arg, rt, step);
}

/* probe_run - every step; 0 when all passed, -1 with p->o */
static int probe_run(const struct config *cfg, struct probe *p)
{
	const struct route_observer observer = { probe_step, p };
	struct route *rt = &p->rt;
	struct smtp_session s;
	int rc;

	rt->observer = &observer;
	rt->resolve = cli_resolve;
	rt->no_auth = p->no_auth;
	rc = route_open(cfg, p->name, rt, &p->o);
	rt->observer = NULL;
	if (rc < 0)
		return -1;
	rc = smtp_session_open(&s, &rt->conn, &rt->opt, &p->o);
	show_smtp(p, &s, &rt->opt, &rt->tls, rc);
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
	p.name = argv[optind];
	p.mark = conn_now();
	route_init(&p.rt, cfg->smtp_connect_timeout * 1000, p.mark + cfg->delivery_deadline);
	cli_fact("destination", "%s", p.name);
	rc = probe_run(cfg, &p);
	route_close(&p.rt);
	if (rc < 0) {
		cli_fact("result", "failed");
		cli_error("probe %s: %s %s", p.name, p.o.status, p.o.text);
		return dsn_exit_code(&p.o);
	}
	cli_fact("result", "ok");
	return EX_OK;
}
