/*
 * token - `btprelay token connectivity|destination [--subscriber]`: get a
 * new token from the token service with the binding's credentials, as the
 * transport would (oauth_token_fetch: client secret or X.509, provider or
 * the configured subscriber tenant), and say what it is good for: the
 * tenant (the JWT's zid claim), the client, the scopes, the expiry. The
 * cache is neither read nor written, so a working credential is proven
 * every time. The token itself is never printed.
 *
 * Exit: 0 a token was issued, 75 the token service could not be asked,
 * 78 no such binding or the credentials were refused.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"
#include "http.h"
#include "oauth.h"
#include "util.h"

#define JWT_PAYLOAD_MAX (16 * 1024)

/*
 * jwt_claims - the payload of a JWT (header.payload.signature, base64url
 * without padding) as a JSON object; NULL when it is not one. Only the
 * payload is decoded; the signature is the token service's business.
 */
static json_t *jwt_claims(const char *jwt)
{
	const char *p = strchr(jwt, '.'), *end;
	char *b64, *raw;
	size_t len, i;
	ssize_t n;
	json_t *claims = NULL;

	if (p == NULL || (end = strchr(++p, '.')) == NULL)
		return NULL;
	len = (size_t)(end - p);
	if (len == 0 || len > JWT_PAYLOAD_MAX)
		return NULL;
	/* base64url -> base64 with padding, for base64_decode */
	b64 = xmalloc(len + 4);
	for (i = 0; i < len; i++)
		b64[i] = p[i] == '-' ? '+' : p[i] == '_' ? '/' : p[i];
	while (i % 4 != 0)
		b64[i++] = '=';
	b64[i] = '\0';
	raw = xmalloc(i);
	n = base64_decode(b64, i, raw, i);
	if (n > 0)
		claims = json_loadb(raw, (size_t)n, 0, NULL);
	free(b64);
	free(raw);
	if (!json_is_object(claims)) {
		json_decref(claims);
		return NULL;
	}
	return claims;
}

/* claim_text - a string claim, made printable; NULL when absent */
static const char *claim_text(const json_t *claims, const char *key, char *buf, size_t size)
{
	const char *s = json_string_value(json_object_get(claims, key));

	if (s == NULL)
		return NULL;
	str_printable(buf, size, s, strlen(s));
	return buf;
}

/* claim_scopes - "scope" as an array of strings or one space-separated string */
static void claim_scopes(const json_t *claims, char *buf, size_t size)
{
	const json_t *scope = json_object_get(claims, "scope"), *item;
	size_t i, len = 0;
	char one[200];

	buf[0] = '\0';
	if (json_is_string(scope)) {
		str_printable(buf, size, json_string_value(scope), json_string_length(scope));
		return;
	}
	json_array_foreach(scope, i, item) {
		if (!json_is_string(item) || len >= size)
			continue;
		str_printable(one, sizeof(one), json_string_value(item), json_string_length(item));
		len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? " " : "", one);
	}
}

/* show - what the token says about itself */
static void show(const struct oauth_token *tok)
{
	json_t *claims = jwt_claims(tok->access_token);
	char buf[1024], when[32];
	const char *s;
	time_t now = time(NULL);

	cli_fact("token", "issued (%zu bytes, not shown)", strlen(tok->access_token));
	if (claims == NULL) {
		cli_fact("claims", "(the token is not a JWT: no tenant, scopes or issuer to show)");
	} else {
		cli_fact("tenant", "%s", (s = claim_text(claims, "zid", buf, sizeof(buf)))
			 ? s : "(no zid claim)");
		if ((s = claim_text(claims, "iss", buf, sizeof(buf))) != NULL)
			cli_fact("issuer", "%s", s);
		claim_scopes(claims, buf, sizeof(buf));
		cli_fact("scopes", "%s", buf[0] ? buf : "(none)");
		if (json_is_integer(json_object_get(claims, "iat"))) {
			cli_time((time_t)json_integer_value(json_object_get(claims, "iat")), when,
				 sizeof(when));
			cli_fact("issued_at", "%s", when);
		}
	}
	cli_time(tok->expires_at, when, sizeof(when));
	cli_fact("expires", "%s", when);
	cli_fact("expires_in", "%ld s", (long)(tok->expires_at - now));
	json_decref(claims);
}

/* cmd_token - token connectivity|destination [--subscriber] */
int cmd_token(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "subscriber", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const struct oauth_client *client;
	struct oauth_tenant tenant = { NULL, NULL };
	struct http_options http;
	struct oauth_token tok;
	struct bindings b;
	struct outcome o;
	const char *what;
	int ch, subscriber = 0, rc, have;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "s", longopts, NULL)) != -1) {
		if (ch != 's') {
			cli_error("usage: btprelay token connectivity|destination [--subscriber]");
			return EX_USAGE;
		}
		subscriber = 1;
	}
	if (optind != argc - 1 || (strcmp(argv[optind], "connectivity") != 0
				   && strcmp(argv[optind], "destination") != 0)) {
		cli_error("usage: btprelay token connectivity|destination [--subscriber]");
		return EX_USAGE;
	}
	what = argv[optind];
	if ((rc = cli_config(cli)) != 0)
		return rc;
	if (subscriber && !config_has_tenant(&cli->cfg)) {
		cli_error("--subscriber: neither tenant_subdomain nor tenant_id is configured in %s",
			  cli->cfg.path);
		return EX_CONFIG;
	}
	if (bindings_load(&cli->cfg, &b, &o) < 0) {
		cli_error("%s %s", o.status, o.text);
		return dsn_operator_exit(&o);
	}
	have = strcmp(what, "connectivity") == 0 ? b.have_connectivity : b.have_destination;
	client = strcmp(what, "connectivity") == 0 ? &b.connectivity : &b.destination;
	if (!have) {
		cli_error("no %s service binding (%s)", what,
			  b.source ? b.source : "no VCAP_SERVICES, no bindings file, no service "
			  "binding directories");
		bindings_free(&b);
		return EX_CONFIG;
	}
	if (subscriber) {
		if (cli->cfg.tenant_subdomain[0] != '\0')
			tenant.subdomain = cli->cfg.tenant_subdomain;
		else
			tenant.zid = cli->cfg.tenant_id;
	}
	cli_fact("binding", "%s (%s, from %s)", what, client->instance, b.source);
	cli_fact("client_id", "%s", client->client_id);
	cli_fact("credential", "%s", client->cert_pem ? "X.509 certificate" : "client secret");
	cli_fact("token_url", "%s", client->token_url);
	cli_fact("tenant_mode", "%s%s%s", subscriber ? "subscriber " : "provider",
		 tenant.subdomain ? "subdomain " : tenant.zid ? "id " : "",
		 tenant.subdomain ? tenant.subdomain : tenant.zid ? tenant.zid : "");
	http_options_init(&http, &cli->cfg, 0);
	rc = oauth_token_fetch(client, subscriber ? &tenant : NULL, &http, what, &tok, &o);
	bindings_free(&b);
	if (rc < 0) {
		cli_fact("token", "failed");
		cli_error("%s %s", o.status, o.text);
		return dsn_operator_exit(&o);
	}
	show(&tok);
	oauth_token_free(&tok);
	return EX_OK;
}
