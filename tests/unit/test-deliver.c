/*
 * test-deliver - route_smtp_options() (route.h), the one place that turns
 * a destination and the configuration into the SMTP session's TLS and AUTH
 * of every delivery: which mechanism, when credentials force TLS, what
 * stops AUTH, and the JavaMail TLS hints; and route_helo_name().
 */
#include <stdlib.h>
#include <time.h>
#include "tap.h"
#include "route.h"

static struct config cfg;

/* smtp_options - route_smtp_options with d's TLS policy, as route_open makes them */
static void smtp_options(const struct mail_destination *d, struct smtp_options *opt)
{
	static struct tls_policy tp;

	route_tls_policy(&cfg, d, &tp);
	route_smtp_options(&cfg, d, &tp, "relay:25", "mta.test", NULL, opt);
}

/* dest - a destination from its properties, given as "key=value" strings */
static void dest(struct mail_destination *d, const char *const *kv)
{
	json_t *props = json_object();
	struct outcome o;

	for (; *kv != NULL; kv++) {
		const char *eq = strchr(*kv, '=');
		char key[128];

		snprintf(key, sizeof(key), "%.*s", (int)(eq - *kv), *kv);
		json_object_set_new(props, key, json_string(eq + 1));
	}
	memset(d, 0, sizeof(*d));
	if (dest_from_properties(props, "test", d, &o) != 0) {
		printf("# dest_from_properties: %s\n", o.text);
		exit(99);
	}
	json_decref(props);
}

/* options - the SMTP options for a destination of these properties */
static void options(struct smtp_options *opt, struct mail_destination *d, const char *const *kv)
{
	dest(d, kv);
	smtp_options(d, opt);
}

#define BASE "Name=T", "Type=MAIL", "mail.smtp.host=mail.corp.internal", "mail.smtp.port=25"

int main(void)
{
	struct mail_destination d;
	struct smtp_options opt;
	char helo[64];

	config_defaults(&cfg);

	{	/* OnPremise, basic credentials: PLAIN/LOGIN; plaintext allowed through the tunnel by default */
		const char *kv[] = { BASE, "ProxyType=OnPremise", "Authentication=BasicAuthentication",
				     "mail.user=u", "mail.password=p", NULL };
		options(&opt, &d, kv);
		ok(opt.auth_user && strcmp(opt.auth_user, "u") == 0 && opt.auth_password
		   && strcmp(opt.auth_password, "p") == 0 && opt.auth_xoauth2_token == NULL,
		   "OnPremise with user and password: AUTH with them");
		is_int(opt.auth_require_tls, 0, "OnPremise: AUTH allowed without TLS (smtp_auth_plaintext_onpremise=yes)");
		is_int(opt.tls_level, TLS_LEVEL_MAY, "OnPremise: TLS level stays may");
		is_str(opt.tls_verify_name, "mail.corp.internal", "the certificate must name the host");
		is_int(opt.tls_no_name_check, 0, "and the name is checked");
		dest_free(&d);
		cfg.smtp_auth_plaintext_onpremise = 0;
		options(&opt, &d, kv);
		ok(opt.auth_require_tls && opt.tls_level == TLS_LEVEL_ENCRYPT,
		   "OnPremise with smtp_auth_plaintext_onpremise=no: TLS required for AUTH");
		has_str(opt.tls_required_by, "smtp_auth_plaintext_onpremise=no", "... and the reason says why");
		cfg.smtp_auth_plaintext_onpremise = 1;
		dest_free(&d);
	}
	{	/* Internet, basic credentials: never in clear text */
		const char *kv[] = { BASE, "ProxyType=Internet", "Authentication=BasicAuthentication",
				     "mail.user=u", "mail.password=p", NULL };
		options(&opt, &d, kv);
		ok(opt.auth_require_tls && opt.tls_level == TLS_LEVEL_ENCRYPT,
		   "Internet with credentials: TLS raised to encrypt");
		has_str(opt.tls_required_by, "never sent in clear text", "... with the reason");
		dest_free(&d);
	}
	{	/* NoAuthentication and mail.smtp.auth=false: no AUTH, whatever the credentials */
		const char *kv1[] = { BASE, "ProxyType=Internet", "Authentication=NoAuthentication",
				      "mail.user=u", "mail.password=p", NULL };
		const char *kv2[] = { BASE, "ProxyType=Internet", "mail.smtp.auth=false",
				      "mail.user=u", "mail.password=p", NULL };
		options(&opt, &d, kv1);
		ok(opt.auth_user == NULL && opt.tls_level == TLS_LEVEL_MAY,
		   "NoAuthentication: no AUTH, TLS not raised");
		dest_free(&d);
		options(&opt, &d, kv2);
		ok(opt.auth_user == NULL, "mail.smtp.auth=false: no AUTH");
		dest_free(&d);
	}
	{	/* OAuth2: XOAUTH2 with the token of the Find response, or a reason not to */
		const char *kv[] = { BASE, "ProxyType=Internet", "Authentication=OAuth2ClientCredentials",
				     "mail.user=box@corp.example", NULL };
		const char *nouser[] = { BASE, "ProxyType=Internet",
					 "Authentication=OAuth2ClientCredentials", NULL };
		options(&opt, &d, kv);
		ok(opt.auth_error != NULL && opt.auth_xoauth2_token == NULL,
		   "OAuth2 without a token from the Destination Service: AUTH impossible, said why");
		dest_free(&d);
		dest(&d, kv);
		d.oauth_token.value = strdup("eyJ.token.sig");
		d.oauth_token.expires_at = time(NULL) + 600;
		smtp_options(&d, &opt);
		ok(opt.auth_xoauth2_token && strcmp(opt.auth_xoauth2_token, "eyJ.token.sig") == 0
		   && opt.auth_error == NULL && strcmp(opt.auth_user, "box@corp.example") == 0,
		   "OAuth2 with a token: XOAUTH2 for mail.user");
		ok(opt.auth_require_tls && opt.tls_level == TLS_LEVEL_ENCRYPT,
		   "OAuth2 over the Internet: the token only inside TLS");
		d.oauth_token.expires_at = time(NULL) - 1;
		smtp_options(&d, &opt);
		has_str(opt.auth_error, "expired", "OAuth2 with an expired token: AUTH impossible");
		dest_free(&d);
		options(&opt, &d, nouser);
		has_str(opt.auth_error, "mail.user", "OAuth2 without mail.user: the reason names it");
		dest_free(&d);
	}
	{	/* JavaMail hints: implicit TLS, trust, host check, verify name */
		const char *smtps[] = { BASE, "ProxyType=Internet", "mail.transport.protocol=smtps", NULL };
		const char *trust[] = { BASE, "ProxyType=Internet", "mail.smtp.ssl.trust=*", NULL };
		const char *name[] = { BASE, "ProxyType=Internet", "mail.smtp.ssl.verifyname=relay.corp.example", NULL };
		const char *noid[] = { BASE, "ProxyType=Internet", "mail.smtp.ssl.checkserveridentity=false", NULL };
		options(&opt, &d, smtps);
		is_int(opt.implicit_tls, 1, "mail.transport.protocol=smtps: implicit TLS");
		dest_free(&d);
		options(&opt, &d, trust);
		is_int(opt.tls_no_chain_check, 1, "mail.smtp.ssl.trust=*: the chain is not verified");
		dest_free(&d);
		options(&opt, &d, name);
		is_str(opt.tls_verify_name, "relay.corp.example", "mail.smtp.ssl.verifyname: the name checked");
		dest_free(&d);
		options(&opt, &d, noid);
		is_int(opt.tls_no_name_check, 1, "checkserveridentity=false: the name is not checked");
		dest_free(&d);
	}
	{	/* timeouts and limits come from the configuration */
		const char *kv[] = { BASE, "ProxyType=Internet", NULL };
		cfg.smtp_command_timeout = 7;
		cfg.smtp_data_done_timeout = 9;
		options(&opt, &d, kv);
		ok(opt.command_timeout_ms == 7000 && opt.data_done_timeout_ms == 9000,
		   "timeouts from smtp_command_timeout and smtp_data_done_timeout");
		is_str(opt.helo_name, "mta.test", "the EHLO name is the caller's");
		dest_free(&d);
	}

	route_helo_name(&cfg, helo, sizeof(helo));
	ok(helo[0] != '\0', "route_helo_name: the host name when smtp_helo_name is empty (%s)", helo);
	free(cfg.smtp_helo_name);
	cfg.smtp_helo_name = strdup("relay-client.example");
	route_helo_name(&cfg, helo, sizeof(helo));
	is_str(helo, "relay-client.example", "route_helo_name: smtp_helo_name when set");
	config_free(&cfg);
	return tap_done();
}
