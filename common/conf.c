/*
 * conf - read btprelay.conf into struct config.
 *
 * Every key is one row of config_table: its name, its type, where it lives
 * in struct config and its default as text. Defaults go through the same
 * parser as the file, so a bad default is caught the first time the table
 * is used, not when someone finally sets the key. config_load() returns 0,
 * or -1 with "FILE:LINE: what is wrong" in errbuf and nothing left to free.
 * Values of unknown keys are cut when quoted back: a misplaced secret must
 * not end up whole in a log.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "conf.h"
#include "log.h"
#include "util.h"

/* Postfix's transport_time_limit default: running past it bounces */
#define CONFIG_DEADLINE_LIMIT 1000
#define CONFIG_LINE_MAX 4096
#define CONFIG_QUOTE_MAX 40
#define CONFIG_DEST_PREFIX "destination."
#define CONFIG_DEST_NAME_MAX 200	/* the Destination Service's limit */
#define CONFIG_DEST_MAX 10000		/* destination.* lines in one file */

enum config_type {
	CFG_STRING,
	CFG_BOOL,		/* int: 1 or 0 */
	CFG_DURATION,		/* int: seconds, at least 1 */
	CFG_DURATION0,		/* int: seconds, 0 allowed */
	CFG_COUNT,		/* int: 0..max */
	CFG_SELECTION,		/* enum dest_selection */
	CFG_DNS_LABEL,		/* string: "" or one DNS label (letters, digits, '-') */
	CFG_TENANT_ID,		/* string: "" or letters, digits, '-', '.', '_' */
	CFG_PORT,		/* unsigned: 0..65535, 0 = unset */
	CFG_TLS_LEVEL,		/* enum tls_level */
	CFG_LOG_LEVEL,		/* int: enum log_level */
	CFG_LOG_TARGET,		/* string: syslog, stderr or an absolute path */
	CFG_PROXY_AUTH,		/* enum proxy_auth */
};

struct config_key {
	const char *name;
	enum config_type type;
	size_t offset;
	const char *def;
	int max;		/* CFG_DURATION*, CFG_COUNT: largest value allowed, 0 = INT_MAX */
};

#define CFG(name, type, field, def) { name, type, offsetof(struct config, field), def, 0 }
#define CFG_MAX(name, type, field, def, max) \
	{ name, type, offsetof(struct config, field), def, max }

static const struct config_key config_table[] = {
	CFG("bindings_file", CFG_STRING, bindings_file, "/etc/btprelay/bindings.json"),
	CFG("destinations_file", CFG_STRING, destinations_file, ""),
	CFG("destination_instance", CFG_STRING, destination_instance, ""),
	CFG("connectivity_instance", CFG_STRING, connectivity_instance, ""),
	CFG("service_binding_root", CFG_STRING, service_binding_root, ""),
	CFG("proxy_host", CFG_STRING, proxy_host, ""),
	CFG("proxy_port", CFG_PORT, proxy_port, "0"),
	CFG("proxy_authentication", CFG_PROXY_AUTH, proxy_authentication, "auto"),
	CFG("tenant_subdomain", CFG_DNS_LABEL, tenant_subdomain, ""),
	CFG("tenant_id", CFG_TENANT_ID, tenant_id, ""),
	CFG("destination_selection", CFG_SELECTION, destination_selection, "subscriberFirst"),
	CFG("http_timeout", CFG_DURATION, http_timeout, "10"),
	CFG_MAX("http_retries", CFG_COUNT, http_retries, "2", 10),
	CFG("http_ca_file", CFG_STRING, http_ca_file, ""),
	CFG("cache_dir", CFG_STRING, cache_dir, "/var/cache/btprelay"),
	CFG("metrics_dir", CFG_STRING, metrics_dir, ""),
	CFG("token_refresh_margin", CFG_DURATION0, token_refresh_margin, "300"),
	CFG("destination_cache_ttl", CFG_DURATION0, destination_cache_ttl, "300"),
	CFG("destination_stale_ttl", CFG_DURATION0, destination_stale_ttl, "3600"),
	CFG("routes_cockpit", CFG_BOOL, routes_cockpit, "yes"),
	CFG("routes_file", CFG_STRING, routes_file, ""),
	CFG("routes_transport", CFG_STRING, routes_transport, "btprelay:$destination"),
	CFG("smtp_helo_name", CFG_STRING, smtp_helo_name, ""),
	CFG("smtp_tls_security_level", CFG_TLS_LEVEL, smtp_tls_level, "may"),
	CFG("smtp_tls_ca_file", CFG_STRING, smtp_tls_ca_file, ""),
	CFG("smtp_tls_ca_path", CFG_STRING, smtp_tls_ca_path, ""),
	CFG("smtp_connect_timeout", CFG_DURATION, smtp_connect_timeout, "30"),
	CFG("smtp_command_timeout", CFG_DURATION, smtp_command_timeout, "60"),
	CFG("smtp_data_done_timeout", CFG_DURATION, smtp_data_done_timeout, "300"),
	CFG_MAX("delivery_deadline", CFG_DURATION, delivery_deadline, "600",
		CONFIG_DEADLINE_LIMIT - 1),
	CFG("log", CFG_LOG_TARGET, log_target, "syslog"),
	CFG("log_level", CFG_LOG_LEVEL, log_level, "info"),
	CFG("milter_socket", CFG_STRING, milter_socket, "unix:/var/spool/postfix/btprelay/milter.sock"),
	CFG("milter_user", CFG_STRING, milter_user, ""),
	CFG("milter_pidfile", CFG_STRING, milter_pidfile, ""),
	CFG("milter_transport_name", CFG_STRING, milter_transport_name, "btprelay"),
	CFG("milter_lmtp_prefix", CFG_STRING, milter_lmtp_prefix, "unix:private/btprelay-lmtp-"),
	CFG("milter_on_not_found", CFG_STRING, milter_on_not_found, "reject"),
	CFG("milter_on_unusable", CFG_STRING, milter_on_unusable, "tempfail"),
	CFG("milter_on_error", CFG_STRING, milter_on_error, "tempfail"),
	CFG("milter_lookup_timeout", CFG_DURATION, milter_lookup_timeout, "10"),
	CFG("milter_sender_policy", CFG_STRING, milter_sender_policy, "keep"),
	CFG("milter_trace_header", CFG_BOOL, milter_trace_header, "no"),
	CFG("milter_cache_ttl", CFG_DURATION, milter_cache_ttl, "300"),
	CFG("milter_negative_ttl", CFG_DURATION, milter_negative_ttl, "60"),
	CFG("smtp_tls_fingerprint", CFG_STRING, smtp_tls_fingerprint, ""),
	CFG("smtp_tls_cert_file", CFG_STRING, smtp_tls_cert_file, ""),
	CFG("smtp_tls_key_file", CFG_STRING, smtp_tls_key_file, ""),
	CFG("smtp_auth_plaintext_onpremise", CFG_BOOL, smtp_auth_plaintext_onpremise, "yes"),
	CFG_MAX("smtp_line_length_limit", CFG_COUNT, smtp_line_length_limit, "998", 1000000),
	CFG("fetch_sources", CFG_STRING, fetch_sources, ""),
	CFG("fetch_recipient", CFG_STRING, fetch_recipient, ""),
	CFG("fetch_sender", CFG_STRING, fetch_sender, ""),
	CFG("fetch_mailbox", CFG_STRING, fetch_mailbox, "INBOX"),
	CFG("fetch_done", CFG_STRING, fetch_done, "delete"),
	CFG("fetch_move_folder", CFG_STRING, fetch_move_folder, ""),
	CFG("fetch_uidvalidity_change", CFG_STRING, fetch_uidvalidity_change, "auto"),
	CFG("fetch_state_dir", CFG_STRING, fetch_state_dir, "/var/lib/btprelay/fetch"),
	CFG("fetch_smtp_server", CFG_STRING, fetch_smtp_server, "127.0.0.1:25"),
	CFG("fetch_interval", CFG_DURATION, fetch_interval, "60"),
	CFG_MAX("fetch_idle", CFG_DURATION0, fetch_idle, "1500", 1740),	/* RFC 2177: < 29 min */
	CFG_MAX("fetch_max_messages", CFG_COUNT, fetch_max_messages, "0", 1000000),
	CFG("fetch_timeout", CFG_DURATION, fetch_timeout, "60"),
};

#define CONFIG_NKEYS (sizeof(config_table) / sizeof(config_table[0]))

/* config_parse_duration - "30", "30s", "5m", "1h" -> seconds; -1 if invalid */
int config_parse_duration(const char *text)
{
	unsigned long n = 0, unit = 1;
	const char *p = text;

	if (text == NULL || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (unsigned long)(*p - '0');
		if (n > INT_MAX)
			return -1;
	}
	switch (*p) {
	case '\0':
		break;
	case 's':
		p++;
		break;
	case 'm':
		unit = 60;
		p++;
		break;
	case 'h':
		unit = 3600;
		p++;
		break;
	default:
		return -1;
	}
	if (*p != '\0' || n > INT_MAX / unit)
		return -1;
	return (int)(n * unit);
}

/* config_parse_bool - 1, 0, or -1 if invalid */
int config_parse_bool(const char *text)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	if (text == NULL)
		return -1;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0)
			return 1;
		if (strcasecmp(text, no[i]) == 0)
			return 0;
	}
	return -1;
}

/* config_parse_port - "0".."65535" -> port; -1 if invalid */
static long config_parse_port(const char *text)
{
	long n = 0;
	const char *p;

	if (*text == '\0')
		return -1;
	for (p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		n = n * 10 + (*p - '0');
		if (n > 65535)
			return -1;
	}
	return n;
}

/* config_parse_tls_level - none, may, encrypt, verify (secure) -> enum tls_level; -1 if invalid */
static int config_parse_tls_level(const char *text)
{
	if (strcmp(text, "none") == 0)
		return TLS_LEVEL_NONE;
	if (strcmp(text, "may") == 0)
		return TLS_LEVEL_MAY;
	if (strcmp(text, "encrypt") == 0)
		return TLS_LEVEL_ENCRYPT;
	if (strcmp(text, "verify") == 0 || strcmp(text, "secure") == 0)
		return TLS_LEVEL_VERIFY;
	return -1;
}

/* config_parse_selection - the Destination Service tenant strategy; -1 if invalid */
static int config_parse_selection(const char *text)
{
	if (strcmp(text, "subscriberFirst") == 0)
		return DEST_SELECT_SUBSCRIBER_FIRST;
	if (strcmp(text, "alwaysProvider") == 0)
		return DEST_SELECT_ALWAYS_PROVIDER;
	if (strcmp(text, "alwaysSubscriber") == 0)
		return DEST_SELECT_ALWAYS_SUBSCRIBER;
	return -1;
}

/* config_parse_proxy_auth - auto, token, none -> enum proxy_auth; -1 if invalid */
static int config_parse_proxy_auth(const char *text)
{
	if (strcmp(text, "auto") == 0)
		return PROXY_AUTH_AUTO;
	if (strcmp(text, "token") == 0)
		return PROXY_AUTH_TOKEN;
	if (strcmp(text, "none") == 0)
		return PROXY_AUTH_NONE;
	return -1;
}

/* config_proxy_auth_name - the configuration spelling of a proxy authentication */
const char *config_proxy_auth_name(enum proxy_auth auth)
{
	switch (auth) {
	case PROXY_AUTH_AUTO:
		return "auto";
	case PROXY_AUTH_TOKEN:
		return "token";
	case PROXY_AUTH_NONE:
		return "none";
	}
	return "?";
}

/* config_selection_name - the configuration spelling of a strategy */
const char *config_selection_name(enum dest_selection sel)
{
	switch (sel) {
	case DEST_SELECT_SUBSCRIBER_FIRST:
		return "subscriberFirst";
	case DEST_SELECT_ALWAYS_PROVIDER:
		return "alwaysProvider";
	case DEST_SELECT_ALWAYS_SUBSCRIBER:
		return "alwaysSubscriber";
	}
	return "?";
}

/* config_has_tenant - whether a subscriber tenant is configured */
int config_has_tenant(const struct config *cfg)
{
	return (cfg->tenant_subdomain != NULL && cfg->tenant_subdomain[0] != '\0')
	       || (cfg->tenant_id != NULL && cfg->tenant_id[0] != '\0');
}

/*
 * config_valid_chars - "" or 1..max bytes of letters, digits and the
 * extra characters; a DNS label neither starts nor ends with '-'. These
 * values end up in a host name and an HTTP header.
 */
static int config_valid_chars(const char *text, const char *extra, size_t max, int label)
{
	size_t len = strlen(text);
	const char *p;

	if (len == 0)
		return 1;
	if (len > max || (label && (text[0] == '-' || text[len - 1] == '-')))
		return 0;
	for (p = text; *p; p++)
		if (!isalnum((unsigned char)*p) && strchr(extra, *p) == NULL)
			return 0;
	return 1;
}

/* config_hint - what a valid value of a type looks like, for messages */
static const char *config_hint(enum config_type type)
{
	switch (type) {
	case CFG_STRING:
		return "text";
	case CFG_BOOL:
		return "yes or no";
	case CFG_DURATION:
		return "a duration: 30, 30s, 5m";
	case CFG_DURATION0:
		return "a duration: 0, 30, 30s, 5m";
	case CFG_COUNT:
		return "a number from 0";
	case CFG_SELECTION:
		return "subscriberFirst, alwaysProvider or alwaysSubscriber";
	case CFG_DNS_LABEL:
		return "a subdomain: letters, digits and '-', at most 63";
	case CFG_TENANT_ID:
		return "a tenant id: letters, digits, '-', '.' and '_'";
	case CFG_PORT:
		return "a port number, 1-65535, or 0";
	case CFG_TLS_LEVEL:
		return "none, may, encrypt, verify or secure";
	case CFG_LOG_LEVEL:
		return "error, warning, info or debug";
	case CFG_LOG_TARGET:
		return "syslog, stderr or an absolute file path";
	case CFG_PROXY_AUTH:
		return "auto, token or none";
	}
	return "?";
}

/*
 * config_set - parse value per the key's type and store it in cfg.
 * Returns 0, or -1 when the value is not valid for the type.
 */
static int config_set(struct config *cfg, const struct config_key *key, const char *value)
{
	char *field = (char *)cfg + key->offset;
	long n;

	switch (key->type) {
	case CFG_LOG_TARGET:
		if (strcmp(value, "syslog") != 0 && strcmp(value, "stderr") != 0
		    && value[0] != '/')
			return -1;
		/* FALLTHROUGH */
	case CFG_DNS_LABEL:
		if (key->type == CFG_DNS_LABEL && !config_valid_chars(value, "-", 63, 1))
			return -1;
		/* FALLTHROUGH */
	case CFG_TENANT_ID:
		if (key->type == CFG_TENANT_ID && !config_valid_chars(value, "-._", 200, 0))
			return -1;
		/* FALLTHROUGH */
	case CFG_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case CFG_BOOL:
		n = config_parse_bool(value);
		break;
	case CFG_DURATION:
		n = config_parse_duration(value);
		if (n == 0 || (key->max > 0 && n > key->max))
			return -1;
		break;
	case CFG_DURATION0:
		n = config_parse_duration(value);
		if (key->max > 0 && n > key->max)
			return -1;
		break;
	case CFG_COUNT:
		n = config_parse_duration(value);
		if (strpbrk(value, "smh") != NULL || (key->max > 0 && n > key->max))
			return -1;
		break;
	case CFG_SELECTION:
		n = config_parse_selection(value);
		if (n >= 0)
			*(enum dest_selection *)field = (enum dest_selection)n;
		return n < 0 ? -1 : 0;
	case CFG_PORT:
		n = config_parse_port(value);
		if (n >= 0)
			*(unsigned *)field = (unsigned)n;
		return n < 0 ? -1 : 0;
	case CFG_TLS_LEVEL:
		n = config_parse_tls_level(value);
		if (n >= 0)
			*(enum tls_level *)field = (enum tls_level)n;
		return n < 0 ? -1 : 0;
	case CFG_LOG_LEVEL:
		n = log_level_parse(value);
		break;
	case CFG_PROXY_AUTH:
		n = config_parse_proxy_auth(value);
		if (n >= 0)
			*(enum proxy_auth *)field = (enum proxy_auth)n;
		return n < 0 ? -1 : 0;
	default:
		return -1;
	}
	if (n < 0)
		return -1;
	*(int *)field = (int)n;
	return 0;
}

/* config_quote - a value cut to CONFIG_QUOTE_MAX bytes, control bytes replaced */
static void config_quote(char *dst, size_t size, const char *value)
{
	size_t len = strlen(value);
	char cut[CONFIG_QUOTE_MAX + 4];

	if (len > CONFIG_QUOTE_MAX) {
		str_printable(cut, CONFIG_QUOTE_MAX + 1, value, CONFIG_QUOTE_MAX);
		snprintf(dst, size, "%s...", cut);
	} else {
		str_printable(dst, size, value, len);
	}
}

/* config_defaults - only the defaults, no file */
void config_defaults(struct config *cfg)
{
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	for (i = 0; i < CONFIG_NKEYS; i++) {
		if (config_set(cfg, &config_table[i], config_table[i].def) != 0) {
			/* a programming error in the table: say which row, then stop */
			fprintf(stderr, "btprelay: bad default for %s: \"%s\"\n",
				config_table[i].name, config_table[i].def);
			abort();
		}
	}
}

/* config_is_string - whether a type's field is a char * */
static int config_is_string(enum config_type type)
{
	return type == CFG_STRING || type == CFG_LOG_TARGET || type == CFG_DNS_LABEL
	       || type == CFG_TENANT_ID;
}

/* config_free - release every string; safe twice */
void config_free(struct config *cfg)
{
	size_t i;

	for (i = 0; i < CONFIG_NKEYS; i++) {
		if (config_is_string(config_table[i].type)) {
			char **field = (char **)((char *)cfg + config_table[i].offset);

			free(*field);
			*field = NULL;
		}
	}
	for (i = 0; i < cfg->ndest_props; i++) {
		struct config_dest_prop *dp = &cfg->dest_props[i];

		explicit_bzero(dp->value, strlen(dp->value));
		free(dp->value);
		free(dp->destination);
		free(dp->property);
	}
	free(cfg->dest_props);
	cfg->dest_props = NULL;
	cfg->ndest_props = 0;
	free(cfg->path);
	cfg->path = NULL;
}

/* config_trim - strip leading and trailing white space in place */
static char *config_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'
			   || end[-1] == '\n'))
		*--end = '\0';
	return s;
}

/* config_lookup - the table row for a key name, NULL if unknown */
static const struct config_key *config_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < CONFIG_NKEYS; i++)
		if (strcmp(config_table[i].name, name) == 0)
			return &config_table[i];
	return NULL;
}

/* config_bad_value - the message for a value its key's type refuses */
static void config_bad_value(char *errbuf, size_t errlen, const char *path, unsigned lineno,
			     const struct config_key *key, const char *value)
{
	char q[CONFIG_QUOTE_MAX + 8];

	config_quote(q, sizeof(q), value);
	if (key->type == CFG_DURATION && key->max > 0 && config_parse_duration(value) > key->max)
		snprintf(errbuf, errlen, "%s:%u: bad value for %s: \"%s\" (at most %d s: "
			 "Postfix's transport_time_limit is %d s, and running past it bounces)",
			 path, lineno, key->name, q, key->max, key->max + 1);
	else
		snprintf(errbuf, errlen, "%s:%u: bad value for %s: \"%s\" (%s)",
			 path, lineno, key->name, q, config_hint(key->type));
}

/*
 * config_no_equals - the message for a line without "=". Its key is quoted
 * when it is one (a known key, or destination.*: "mail.password: x" is a
 * common slip), never the rest: that may be a password. A line whose first
 * word is no key may be a password on its own: nothing of it is quoted.
 */
static void config_no_equals(char *errbuf, size_t errlen, const char *path, unsigned lineno,
			     char *line)
{
	size_t klen = strcspn(line, ": \t");
	char q[CONFIG_QUOTE_MAX + 8], save = line[klen];

	line[klen] = '\0';
	if (klen > 0 && (config_lookup(line) != NULL
			 || strncmp(line, CONFIG_DEST_PREFIX, strlen(CONFIG_DEST_PREFIX)) == 0)) {
		config_quote(q, sizeof(q), line);
		snprintf(errbuf, errlen, "%s:%u: missing \"=\" after \"%s\" (lines are: "
			 "key = value; the value is not shown)", path, lineno, q);
	} else {
		snprintf(errbuf, errlen, "%s:%u: missing \"=\" (lines are: key = value; the line "
			 "is not shown: it may hold a secret)", path, lineno);
	}
	line[klen] = save;
}

/*
 * config_dest_add - one "destination.NAME.PROPERTY = value" line. NAME is
 * a Destination Service name (letters, digits, '_', '-'), PROPERTY any
 * property but Name (the name is in the key). Sets *secret to the line
 * when the property holds a password or secret. Returns 0, or -1 with
 * "FILE:LINE: text" in errbuf.
 */
static int config_dest_add(struct config *cfg, const char *path, unsigned lineno,
			   const char *key, const char *value, unsigned *secret,
			   char *errbuf, size_t errlen)
{
	const char *name = key + strlen(CONFIG_DEST_PREFIX), *dot = strchr(name, '.');
	const char *prop = dot != NULL ? dot + 1 : "", *p;
	size_t nlen = dot != NULL ? (size_t)(dot - name) : strlen(name), i;
	struct config_dest_prop *dp;
	char q[CONFIG_QUOTE_MAX + 8];

	config_quote(q, sizeof(q), key);
	for (p = name; p < name + nlen; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			break;
	if (nlen == 0 || nlen > CONFIG_DEST_NAME_MAX || p < name + nlen || *prop == '\0') {
		snprintf(errbuf, errlen, "%s:%u: bad key \"%s\" (destination.NAME.PROPERTY: "
			 "NAME of letters, digits, '_' and '-', e.g. "
			 "destination.MAIL_LOCAL.mail.smtp.host)", path, lineno, q);
		return -1;
	}
	for (p = prop; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			break;
	if (*p != '\0') {
		snprintf(errbuf, errlen, "%s:%u: bad key \"%s\" (a property name has no spaces "
			 "or control characters)", path, lineno, q);
		return -1;
	}
	if (strcmp(prop, "Name") == 0) {
		snprintf(errbuf, errlen, "%s:%u: %s: the name is the NAME in "
			 "destination.NAME.PROPERTY", path, lineno, q);
		return -1;
	}
	for (i = 0; i < cfg->ndest_props; i++) {
		dp = &cfg->dest_props[i];
		if (strlen(dp->destination) == nlen && strncmp(dp->destination, name, nlen) == 0
		    && strcmp(dp->property, prop) == 0) {
			snprintf(errbuf, errlen, "%s:%u: duplicate key %s (first set on line %u)",
				 path, lineno, q, dp->line);
			return -1;
		}
	}
	if (cfg->ndest_props >= CONFIG_DEST_MAX) {
		snprintf(errbuf, errlen, "%s:%u: more than %d destination.* lines", path, lineno,
			 CONFIG_DEST_MAX);
		return -1;
	}
	if ((cfg->ndest_props & (cfg->ndest_props - 1)) == 0) {
		/* grow at 0, 1, 2, 4, 8, ... entries */
		size_t cap = cfg->ndest_props ? 2 * cfg->ndest_props : 1;
		struct config_dest_prop *grown = xcalloc(cap, sizeof(*grown));

		if (cfg->ndest_props > 0)
			memcpy(grown, cfg->dest_props, cfg->ndest_props * sizeof(*grown));
		free(cfg->dest_props);
		cfg->dest_props = grown;
	}
	dp = &cfg->dest_props[cfg->ndest_props++];
	dp->destination = xmalloc(nlen + 1);
	memcpy(dp->destination, name, nlen);
	dp->destination[nlen] = '\0';
	dp->property = xstrdup(prop);
	dp->value = xstrdup(value);
	dp->line = lineno;
	if (*secret == 0 && (strcasestr(prop, "password") != NULL
			     || strcasestr(prop, "secret") != NULL))
		*secret = lineno;
	return 0;
}

/*
 * config_parse_line - one "key = value" line (trimmed, not blank, no
 * comment). seen[] holds the line each key was set on, *secret the first
 * line with a destination's password or secret. Returns 0, or -1 with
 * "FILE:LINE: text" in errbuf.
 */
static int config_parse_line(struct config *cfg, char *s, const char *path, unsigned lineno,
			     unsigned *seen, unsigned *secret, char *errbuf, size_t errlen)
{
	const struct config_key *key;
	char q[CONFIG_QUOTE_MAX + 8], *eq, *name, *value;

	if ((eq = strchr(s, '=')) == NULL) {
		config_no_equals(errbuf, errlen, path, lineno, s);
		return -1;
	}
	*eq = '\0';
	name = config_trim(s);
	value = config_trim(eq + 1);
	if (*name == '\0') {
		snprintf(errbuf, errlen, "%s:%u: missing key before \"=\"", path, lineno);
		return -1;
	}
	if (strncmp(name, CONFIG_DEST_PREFIX, strlen(CONFIG_DEST_PREFIX)) == 0)
		return config_dest_add(cfg, path, lineno, name, value, secret, errbuf, errlen);
	if ((key = config_lookup(name)) == NULL) {
		config_quote(q, sizeof(q), name);
		snprintf(errbuf, errlen, "%s:%u: unknown key \"%s\"", path, lineno, q);
		return -1;
	}
	if (seen[key - config_table] != 0) {
		snprintf(errbuf, errlen, "%s:%u: duplicate key %s (first set on line %u)",
			 path, lineno, key->name, seen[key - config_table]);
		return -1;
	}
	seen[key - config_table] = lineno;
	if (config_set(cfg, key, value) != 0) {
		config_bad_value(errbuf, errlen, path, lineno, key, value);
		return -1;
	}
	if (strcmp(key->name, "bindings_file") == 0)
		cfg->bindings_file_line = lineno;	/* set: a missing file is an error */
	return 0;
}

/*
 * config_parse_file - apply every line of an open file to cfg.
 * Returns 0, or -1 with "FILE:LINE: text" in errbuf.
 */
static int config_parse_file(struct config *cfg, FILE *fp, const char *path,
			     char *errbuf, size_t errlen)
{
	char *line = NULL, *s;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0, seen[CONFIG_NKEYS], secret = 0;
	struct stat st;
	int rc = -1;

	memset(seen, 0, sizeof(seen));
	errno = 0;
	while ((len = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		if (len > CONFIG_LINE_MAX) {
			snprintf(errbuf, errlen, "%s:%u: line longer than %d bytes",
				 path, lineno, CONFIG_LINE_MAX);
			goto out;
		}
		if (strlen(line) != (size_t)len) {
			snprintf(errbuf, errlen, "%s:%u: NUL byte in line", path, lineno);
			goto out;
		}
		s = config_trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		if (config_parse_line(cfg, s, path, lineno, seen, &secret, errbuf, errlen) < 0)
			goto out;
	}
	if (ferror(fp)) {
		snprintf(errbuf, errlen, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
	/* relay passwords: the rule of the destinations and bindings files */
	if (secret != 0 && fstat(fileno(fp), &st) == 0 && (st.st_mode & 007) != 0) {
		snprintf(errbuf, errlen, "%s:%u: a destination password or secret, but the file is "
			 "accessible by other users (mode %04o): chmod o-rwx %s, or move the "
			 "destination into destinations_file", path, secret,
			 (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	rc = 0;
out:
	if (line != NULL)
		explicit_bzero(line, cap);	/* it may have held a password */
	free(line);
	return rc;
}

/*
 * config_proxy_env - the proxy's address from Kyma's connectivity-proxy-info
 * ConfigMap (as environment variables) where the file left it unset.
 * Returns 0, or -1 with "variable NAME: text" in errbuf.
 */
static int config_proxy_env(struct config *cfg, char *errbuf, size_t errlen)
{
	const char *host = getenv(CONFIG_ENV_PROXY_HOST), *port = getenv(CONFIG_ENV_PROXY_PORT);
	char q[CONFIG_QUOTE_MAX + 8];
	const char *p;
	long n;

	if (cfg->proxy_host[0] == '\0' && host != NULL && *host != '\0') {
		for (p = host; *p; p++)
			if (*p <= 0x20 || *p >= 0x7f)
				break;
		if (*p != '\0' || strlen(host) > 255) {
			config_quote(q, sizeof(q), host);
			snprintf(errbuf, errlen, "environment variable %s: bad value \"%s\" (a host name)",
				 CONFIG_ENV_PROXY_HOST, q);
			return -1;
		}
		free(cfg->proxy_host);
		cfg->proxy_host = xstrdup(host);
		cfg->proxy_from_env |= CONFIG_PROXY_HOST_ENV;
	}
	if (cfg->proxy_port == 0 && port != NULL && *port != '\0') {
		if ((n = config_parse_port(port)) <= 0) {
			config_quote(q, sizeof(q), port);
			snprintf(errbuf, errlen, "environment variable %s: bad value \"%s\" (a port "
				 "number, 1-65535)", CONFIG_ENV_PROXY_PORT, q);
			return -1;
		}
		cfg->proxy_port = (unsigned)n;
		cfg->proxy_from_env |= CONFIG_PROXY_PORT_ENV;
	}
	return 0;
}

/* config_load - defaults, then the file at path (NULL = default path), then the environment */
int config_load(struct config *cfg, const char *path, char *errbuf, size_t errlen)
{
	int named = path != NULL;
	FILE *fp;
	int rc = 0;

	if (path == NULL)
		path = BTPRELAY_DEFAULT_CONFIG;
	config_defaults(cfg);
	cfg->path = xstrdup(path);
	if ((fp = fopen(path, "r")) == NULL) {
		if (errno != ENOENT || named) {
			snprintf(errbuf, errlen, "%s: cannot open: %s", path, strerror(errno));
			config_free(cfg);
			return -1;
		}
	} else {
		rc = config_parse_file(cfg, fp, path, errbuf, errlen);
		fclose(fp);
	}
	if (rc == 0)
		rc = config_proxy_env(cfg, errbuf, errlen);
	if (rc != 0) {
		config_free(cfg);
		return rc;
	}
	if (cfg->metrics_dir[0] == '\0') {	/* the counters beside the caches */
		free(cfg->metrics_dir);
		cfg->metrics_dir = xstrdup(cfg->cache_dir);
	}
	return 0;
}

/* config_check_fetch - the fetch_* keys, for btprelay-fetch and btprelay check */
int config_check_fetch(const struct config *cfg, char *err, size_t errlen)
{
	static const char *const policies[] = { "auto", "refetch", "skip", "stop" };
	size_t i;

	if (cfg->fetch_sources[0] == '\0') {
		snprintf(err, errlen, "fetch_sources is empty: no inbound source configured");
		return -1;
	}
	if (cfg->fetch_recipient[0] == '\0' || strpbrk(cfg->fetch_recipient, "<> \t\r\n")) {
		snprintf(err, errlen, "fetch_recipient must be one address (user@domain)");
		return -1;
	}
	if (strpbrk(cfg->fetch_sender, "<> \t\r\n")) {
		snprintf(err, errlen, "fetch_sender must be one address or empty");
		return -1;
	}
	if (strcmp(cfg->fetch_done, "delete") != 0 && strcmp(cfg->fetch_done, "move") != 0
	    && strcmp(cfg->fetch_done, "keep") != 0) {
		snprintf(err, errlen, "fetch_done must be delete, move or keep");
		return -1;
	}
	if (strcmp(cfg->fetch_done, "move") == 0 && cfg->fetch_move_folder[0] == '\0') {
		snprintf(err, errlen, "fetch_done = move needs fetch_move_folder");
		return -1;
	}
	for (i = 0; i < 4 && strcmp(cfg->fetch_uidvalidity_change, policies[i]) != 0; i++)
		;
	if (i == 4) {
		snprintf(err, errlen, "fetch_uidvalidity_change must be auto, refetch, skip or stop");
		return -1;
	}
	if (cfg->fetch_state_dir[0] != '/') {
		snprintf(err, errlen, "fetch_state_dir must be an absolute path");
		return -1;
	}
	if (strrchr(cfg->fetch_smtp_server, ':') == NULL) {
		snprintf(err, errlen, "fetch_smtp_server must be host:port");
		return -1;
	}
	return 0;
}

/* config_fetch_sources - the number of names in fetch_sources, or (name) whether it lists name */
int config_fetch_sources(const struct config *cfg, const char *name)
{
	const char *p = cfg->fetch_sources;
	size_t len;
	int n = 0;

	while (*(p += strspn(p, " ,\t")) != '\0') {
		len = strcspn(p, " ,\t");
		if (name && strlen(name) == len && strncmp(p, name, len) == 0)
			return 1;
		n++;
		p += len;
	}
	return name ? 0 : n;
}
