/*
 * resolve - `btprelay resolve NAME`, and the lookup chain as this program
 * runs it: the `destinations` environment variable first (as SAP's Cloud
 * SDK reads it; the MTA-run programs never see it, pipe(8) strips the
 * environment),
 * then the library's dest_resolve_until() (destinations file,
 * configuration, Destination Service through the shared cache).
 *
 * The variable is read in memory only: an entry is checked with
 * dest_from_properties(), and for deliver() it is handed over as
 * destination.NAME.* lines of a copy of the configuration, never written
 * to a file. Every field of the destination is printed; the relay
 * password and an OAuth token are masked.
 *
 * Exit: 0 found, 1 not found, 75 the service could not be asked (it may
 * work later), 78 a configuration error (bindings, a destination that is
 * not usable, credentials refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"
#include "log.h"
#include "route.h"
#include "util.h"

/* env_free - wipe and release; the values are never shared (deep copies) */
static void env_free(json_t *v)
{
	if (v != NULL) {
		json_wipe(v);
		json_decref(v);
	}
}

/* dest_array - text as a JSON array of destinations; NULL with the outcome (4.3.5) */
static json_t *dest_array(const char *text, size_t len, const char *source, struct outcome *o)
{
	json_error_t jerr;
	json_t *root;
	char *near;

	if ((root = json_loadb(text, len, 0, &jerr)) == NULL) {
		/* jansson quotes the text "near" the error: it may be part of a password */
		if ((near = strstr(jerr.text, " near ")) != NULL)
			*near = '\0';
		dsn_config(o, "%s: bad JSON at line %d, column %d: %s", source, jerr.line,
			   jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_array(root)) {
		env_free(root);
		dsn_config(o, "%s: not a JSON array of destinations", source);
		return NULL;
	}
	return root;
}

/* env_load - the variable as a JSON array; NULL when unset (*rc 1) or malformed (-1, o set) */
static json_t *env_load(int *rc, struct outcome *o)
{
	const char *text = getenv(CLI_ENV_DESTINATIONS);
	json_t *root;

	*rc = 1;
	if (text == NULL || *text == '\0')
		return NULL;
	root = dest_array(text, strlen(text), CLI_ENV_SOURCE, o);
	*rc = root != NULL ? 0 : -1;
	return root;
}

/* cli_env_find - the variable's entry for name */
int cli_env_find(const char *name, json_t **props, struct outcome *o)
{
	const json_t *entry;
	json_t *root;
	size_t i;
	int rc;

	*props = NULL;
	if ((root = env_load(&rc, o)) == NULL)
		return rc;
	rc = 1;
	json_array_foreach(root, i, entry) {
		const char *n = json_is_object(entry) ? dest_entry_name(entry) : NULL;

		if (n != NULL && strcmp(n, name) == 0) {
			json_t *flat = dest_flatten(entry);

			/* a copy of its own: root is wiped and freed below */
			*props = json_deep_copy(flat);
			json_decref(flat);
			rc = 0;
			break;
		}
	}
	env_free(root);
	return rc;
}

/* cli_dest_each - check every entry of a destinations array (file or variable) */
int cli_dest_each(const char *text, size_t len, const char *source, cli_dest_fn fn, void *arg,
		  struct outcome *o)
{
	struct mail_destination d;
	const json_t *entry;
	json_t *root;
	struct outcome eo;
	const char *n;
	char q[80];
	size_t i;

	if ((root = dest_array(text, len, source, o)) == NULL)
		return -1;
	json_array_foreach(root, i, entry) {
		n = json_is_object(entry) ? dest_entry_name(entry) : NULL;
		if (n != NULL)
			str_printable(q, sizeof(q), n, strlen(n));
		else
			snprintf(q, sizeof(q), "#%zu", i + 1);
		if (dest_from_properties(entry, source, &d, &eo) == 0) {
			fn(arg, q, source, &d, &eo);
			dest_free(&d);
		} else {
			fn(arg, q, source, NULL, &eo);
		}
	}
	i = json_array_size(root);
	env_free(root);
	return (int)i;
}

/* cli_resolve - the variable, then the library's chain */
int cli_resolve(const struct config *cfg, const struct bindings *b, const char *name,
		double deadline, struct mail_destination *d, struct outcome *o)
{
	json_t *props;
	int rc;

	memset(d, 0, sizeof(*d));
	d->cache_age = -1;
	rc = cli_env_find(name, &props, o);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		rc = dest_from_properties(props, CLI_ENV_SOURCE, d, o);
		env_free(props);
		if (rc == 0)
			log_debug("destination %s from the %s", name, CLI_ENV_SOURCE);
		return rc;
	}
	return dest_resolve_until(cfg, b, name, deadline, d, o);
}

/* cli_env_config - a configuration in which the variable's entry comes first */
int cli_env_config(const struct config *cfg, const char *name, struct config *run,
		   int *changed, struct outcome *o)
{
	struct mail_destination check;
	struct config_dest_prop *dp;
	const char *key;
	json_t *props, *v;
	size_t n = 0;
	int rc;

	*run = *cfg;
	*changed = 0;
	if ((rc = cli_env_find(name, &props, o)) != 0)
		return rc < 0 ? -1 : 0;
	/* the checks and texts of the library, before anything else */
	if (dest_from_properties(props, CLI_ENV_SOURCE, &check, o) < 0) {
		env_free(props);
		return -1;
	}
	dest_free(&check);
	run->destinations_file = NULL;	/* the variable comes before the file */
	run->dest_props = xcalloc(json_object_size(props) + 1, sizeof(*run->dest_props));
	json_object_foreach(props, key, v) {
		/* the name is in the key; every value is a string (checked above) */
		if (strcmp(key, "Name") == 0 || !json_is_string(v))
			continue;
		dp = &run->dest_props[n++];
		dp->destination = xstrdup(name);
		dp->property = xstrdup(key);
		dp->value = xstrdup(json_string_value(v));
	}
	run->ndest_props = n;
	env_free(props);
	*changed = 1;
	return 0;
}

/* cli_env_config_free - what cli_env_config() allocated; cfg's own strings stay */
void cli_env_config_free(const struct config *cfg, struct config *run)
{
	size_t i;

	if (run->dest_props != cfg->dest_props) {
		for (i = 0; i < run->ndest_props; i++) {
			explicit_bzero(run->dest_props[i].value, strlen(run->dest_props[i].value));
			free(run->dest_props[i].value);
			free(run->dest_props[i].destination);
			free(run->dest_props[i].property);
		}
		free(run->dest_props);
	}
	memset(run, 0, sizeof(*run));
}

/* tristate - a true/false property: 1, 0, -1 = not set */
static const char *tristate(int v)
{
	return v == 1 ? "true" : v == 0 ? "false" : "(not set)";
}

/* level_name - a tls_level as smtp_tls_security_level spells it */
static const char *level_name(enum tls_level level)
{
	static const char *const names[] = { "none", "may", "encrypt", "verify" };

	return (size_t)level < sizeof(names) / sizeof(names[0]) ? names[level] : "?";
}

/* show_tls - the destination's TLS hints and certificates, and the policy they make */
static void show_tls(const struct config *cfg, const struct mail_destination *d)
{
	struct tls_policy tp;
	size_t i;

	cli_fact("mail.smtp.ssl.enable", "%s", tristate(d->ssl_enable));
	cli_fact("mail.smtp.ssl.trust", "%s", d->ssl_trust ? d->ssl_trust : "(not set)");
	cli_fact("mail.smtp.ssl.checkserveridentity", "%s", tristate(d->ssl_checkserveridentity));
	cli_fact("mail.smtp.ssl.fingerprint", "%s",
		 d->ssl_fingerprint ? d->ssl_fingerprint : "(not set)");
	cli_fact("mail.smtp.ssl.verifyname", "%s",
		 d->ssl_verifyname ? d->ssl_verifyname : "(not set)");
	cli_fact("trust_store_location", "%s",
		 d->trust_store_location ? d->trust_store_location : "(not set)");
	cli_fact("certificates", "%zu", d->ncertificates);
	for (i = 0; i < d->ncertificates; i++)
		cli_fact("certificate", "%s (%s, %zu bytes base64)",
			 d->certificates[i].name ? d->certificates[i].name : "(no name)",
			 d->certificates[i].type ? d->certificates[i].type : "no type",
			 d->certificates[i].content ? strlen(d->certificates[i].content) : 0);
	/* what a delivery makes of them with this configuration */
	route_tls_policy(cfg, d, &tp);
	cli_fact("tls.level", "%s%s%s%s", level_name(tp.level),
		 tp.required_by ? " (required by " : "", tp.required_by ? tp.required_by : "",
		 tp.required_by ? ")" : "");
	cli_fact("tls.implicit", "%s", tp.implicit ? "yes" : "no");
	cli_fact("tls.verify_name", "%s", tp.peer.fingerprints ? "(fingerprint pin instead)"
		 : tp.peer.name ? tp.peer.name : "(not checked)");
	cli_fact("tls.verify_chain", "%s", tp.peer.fingerprints ? "(fingerprint pin instead)"
		 : tp.peer.no_chain ? "no" : "yes");
	cli_fact("tls.warnings", "%s", tp.warnings[0] ? tp.warnings : "(none)");
}

/* show - every field of the destination, secrets masked */
static void show(const struct config *cfg, const struct mail_destination *d)
{
	char when[32];

	cli_fact("name", "%s", d->name);
	cli_fact("source", "%s", d->source);
	cli_fact("tenant", "%s", d->tenant_is_subscriber ? "subscriber" : "provider");
	if (d->stale)
		cli_fact("cache", "stale, %ld s old (the Destination Service failed; this copy "
			 "stands in)", d->cache_age);
	else if (d->cache_age >= 0)
		cli_fact("cache", "hit, %ld s old", d->cache_age);
	else
		cli_fact("cache", "not from the cache");
	cli_fact("proxy_type", "%s", d->onpremise ? "OnPremise" : "Internet");
	cli_fact("authentication", "%s", d->authentication ? d->authentication : "(not set)");
	cli_fact("protocol", "%s", d->smtps ? "smtps" : "smtp");
	cli_fact("host", "%s", d->host ? d->host : "(none: a mailbox only)");
	cli_fact("port", "%u", d->port);
	if (d->store.protocol != DEST_STORE_NONE)
		cli_fact("mail.store.protocol", "%s %s:%u (btprelay-fetch)",
			 dest_store_name(d->store.protocol), d->store.host, d->store.port);
	cli_fact("location_id", "%s", d->location_id ? d->location_id : "(none)");
	cli_fact("mail.user", "%s", d->user ? d->user : "(not set)");
	cli_fact("mail.password", "%s", d->password ? CLI_MASK " (set)" : "(not set)");
	cli_fact("mail.smtp.auth", "%s", tristate(d->auth));
	cli_fact("mail.smtp.from", "%s", d->from ? d->from : "(not set)");
	cli_fact("mail.smtp.starttls.enable", "%s", tristate(d->starttls_enable));
	cli_fact("mail.smtp.starttls.required", "%s", tristate(d->starttls_required));
	if (d->oauth_token.error != NULL) {
		cli_fact("oauth_token", "error: %s", d->oauth_token.error);
	} else if (d->oauth_token.value != NULL) {
		cli_fact("oauth_token", CLI_MASK " (set, type %s)",
			 d->oauth_token.type ? d->oauth_token.type : "?");
		if (d->oauth_token.expires_at > 0) {
			cli_time(d->oauth_token.expires_at, when, sizeof(when));
			cli_fact("oauth_token.expires", "%s (in %ld s)", when,
				 (long)(d->oauth_token.expires_at - time(NULL)));
		}
	} else {
		cli_fact("oauth_token", "(none)");
	}
	show_tls(cfg, d);
}

/* cmd_resolve - resolve NAME */
int cmd_resolve(struct cli *cli, int argc, char **argv)
{
	struct bindings b;
	struct mail_destination d;
	struct outcome o;
	int rc;

	if (argc != 2 || argv[1][0] == '-') {
		cli_error("usage: btprelay resolve NAME");
		return EX_USAGE;
	}
	if ((rc = cli_config(cli)) != 0)
		return rc;
	if (bindings_load(&cli->cfg, &b, &o) < 0) {
		cli_error("%s %s", o.status, o.text);
		return dsn_operator_exit(&o);
	}
	rc = cli_resolve(&cli->cfg, &b, argv[1], 0, &d, &o);
	bindings_free(&b);
	if (rc != 0) {
		cli_error("%s %s", o.status, o.text);
		cli_failure_note();
		return o.kind == OUTCOME_NOT_FOUND ? CLI_EXIT_NOT_FOUND : dsn_operator_exit(&o);
	}
	show(&cli->cfg, &d);
	dest_free(&d);
	return EX_OK;
}
