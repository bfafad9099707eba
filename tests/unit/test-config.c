/*
 * test-config - btprelay.conf parsing: defaults, every value type, every
 * error with its FILE:LINE, durations and booleans.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "tap.h"
#include "../lib/files.h"

static char dir[] = "/tmp/btprelay-test-config-XXXXXX";
static char path[512];

/* write_conf - the test file with the given content; returns its path */
static const char *write_conf(const char *content)
{
	snprintf(path, sizeof(path), "%s/btprelay.conf", dir);
	write_file(path, content, 0644);
	return path;
}

/* load_error - load content expecting failure; the error text, or "" on success */
static const char *load_error(const char *content)
{
	static char err[512];
	struct config cfg;

	err[0] = '\0';
	if (config_load(&cfg, write_conf(content), err, sizeof(err)) == 0) {
		config_free(&cfg);
		return "";
	}
	config_free(&cfg);	/* safe after a failed load */
	return err;
}

static void test_defaults(void)
{
	struct config cfg;

	config_defaults(&cfg);
	is_str(cfg.bindings_file, "/etc/btprelay/bindings.json", "default bindings_file");
	is_int(cfg.bindings_file_line, 0, "the default bindings_file is not set by hand");
	is_str(cfg.destinations_file, "", "default destinations_file");
	is_str(cfg.destination_instance, "", "default destination_instance");
	is_str(cfg.connectivity_instance, "", "default connectivity_instance");
	is_str(cfg.proxy_host, "", "default proxy_host");
	is_int(cfg.proxy_port, 0, "default proxy_port");
	is_int(cfg.http_timeout, 10, "default http_timeout");
	is_str(cfg.http_ca_file, "", "default http_ca_file");
	is_str(cfg.smtp_helo_name, "", "default smtp_helo_name");
	is_int(cfg.smtp_tls_level, TLS_LEVEL_MAY, "default smtp_tls_security_level");
	is_str(cfg.smtp_tls_ca_file, "", "default smtp_tls_ca_file");
	is_str(cfg.smtp_tls_ca_path, "", "default smtp_tls_ca_path");
	is_int(cfg.smtp_connect_timeout, 30, "default smtp_connect_timeout");
	is_int(cfg.smtp_command_timeout, 60, "default smtp_command_timeout");
	is_int(cfg.smtp_data_done_timeout, 300, "default smtp_data_done_timeout");
	is_int(cfg.delivery_deadline, 600, "default delivery_deadline");
	is_str(cfg.log_target, "syslog", "default log");
	is_int(cfg.log_level, LOG_LVL_INFO, "default log_level");
	is_str(cfg.service_binding_root, "", "default service_binding_root");
	is_str(cfg.tenant_subdomain, "", "default tenant_subdomain");
	is_str(cfg.tenant_id, "", "default tenant_id");
	is_int(cfg.destination_selection, DEST_SELECT_SUBSCRIBER_FIRST,
	       "default destination_selection subscriberFirst");
	ok(!config_has_tenant(&cfg), "no tenant by default");
	is_int(cfg.http_retries, 2, "default http_retries");
	is_str(cfg.cache_dir, "/var/cache/btprelay", "default cache_dir");
	is_int(cfg.token_refresh_margin, 300, "default token_refresh_margin");
	is_int(cfg.destination_cache_ttl, 300, "default destination_cache_ttl");
	is_int(cfg.destination_stale_ttl, 3600, "default destination_stale_ttl");
	ok(cfg.ndest_props == 0 && cfg.dest_props == NULL, "no configured destinations");
	ok(cfg.path == NULL, "config_defaults sets no path");
	config_free(&cfg);
	config_free(&cfg);
	ok(cfg.bindings_file == NULL, "config_free twice is safe");
}

static void test_every_key(void)
{
	struct config cfg;
	char err[512];

	write_conf("# a comment\n"
		   "\n"
		   "bindings_file = /srv/b.json\n"
		   "  destinations_file=/srv/d.json  \n"
		   "\tdestination_instance = dest-2\t\n"
		   "connectivity_instance = conn-1\n"
		   "proxy_host = 127.0.0.1\n"
		   "proxy_port = 20004\n"
		   "   # indented comment\n"
		   "http_timeout = 5s\n"
		   "http_ca_file = /etc/ssl/ca.pem\n"
		   "smtp_helo_name = relay.example\n"
		   "smtp_tls_security_level = encrypt\n"
		   "smtp_tls_ca_file = /etc/ssl/relay.pem\r\n"
		   "smtp_tls_ca_path = /etc/ssl/certs\n"
		   "smtp_connect_timeout = 1m\n"
		   "smtp_command_timeout = 90\n"
		   "smtp_data_done_timeout = 10m\n"
		   "delivery_deadline = 999\n"
		   "log = /var/log/btprelay.log\n"
		   "log_level = debug");	/* no final newline */
	if (!ok(config_load(&cfg, path, err, sizeof(err)) == 0, "every key loads"))
		printf("# %s\n", err);
	is_str(cfg.path, path, "path recorded");
	is_str(cfg.bindings_file, "/srv/b.json", "bindings_file");
	is_int(cfg.bindings_file_line, 3, "bindings_file: set by hand on line 3");
	is_str(cfg.destinations_file, "/srv/d.json", "destinations_file, spaces trimmed");
	is_str(cfg.destination_instance, "dest-2", "destination_instance, tabs trimmed");
	is_str(cfg.connectivity_instance, "conn-1", "connectivity_instance");
	is_str(cfg.proxy_host, "127.0.0.1", "proxy_host");
	is_int(cfg.proxy_port, 20004, "proxy_port");
	is_int(cfg.http_timeout, 5, "http_timeout 5s");
	is_str(cfg.http_ca_file, "/etc/ssl/ca.pem", "http_ca_file");
	is_str(cfg.smtp_helo_name, "relay.example", "smtp_helo_name");
	is_int(cfg.smtp_tls_level, TLS_LEVEL_ENCRYPT, "smtp_tls_security_level encrypt");
	is_str(cfg.smtp_tls_ca_file, "/etc/ssl/relay.pem", "CRLF line end trimmed");
	is_str(cfg.smtp_tls_ca_path, "/etc/ssl/certs", "smtp_tls_ca_path");
	is_int(cfg.smtp_connect_timeout, 60, "smtp_connect_timeout 1m");
	is_int(cfg.smtp_command_timeout, 90, "smtp_command_timeout 90");
	is_int(cfg.smtp_data_done_timeout, 600, "smtp_data_done_timeout 10m");
	is_int(cfg.delivery_deadline, 999, "delivery_deadline 999");
	is_str(cfg.log_target, "/var/log/btprelay.log", "log file");
	is_int(cfg.log_level, LOG_LVL_DEBUG, "log_level debug (last line without newline)");
	config_free(&cfg);

	write_conf("smtp_tls_security_level = none\nlog = stderr\nlog_level = warning\n"
		   "smtp_helo_name =\n");
	ok(config_load(&cfg, path, err, sizeof(err)) == 0, "second file loads");
	is_int(cfg.smtp_tls_level, TLS_LEVEL_NONE, "tls level none");
	is_str(cfg.log_target, "stderr", "log stderr");
	is_int(cfg.log_level, LOG_LVL_WARN, "log_level warning");
	is_str(cfg.smtp_helo_name, "", "empty value allowed for a string");
	is_int(cfg.http_timeout, 10, "unset keys keep their defaults");
	config_free(&cfg);

	write_conf("");
	ok(config_load(&cfg, path, err, sizeof(err)) == 0, "empty file loads");
	is_int(cfg.delivery_deadline, 600, "empty file: defaults");
	config_free(&cfg);
}

static void test_cache_tenant_keys(void)
{
	struct config cfg;
	char err[512];

	write_conf("service_binding_root = /bindings\n"
		   "tenant_subdomain = customer-a\n"
		   "tenant_id = 2f0b9a9e-5c6d-4e7f-8a9b-0c1d2e3f4a5b\n"
		   "destination_selection = alwaysSubscriber\n"
		   "http_retries = 0\n"
		   "cache_dir =\n"
		   "token_refresh_margin = 0\n"
		   "destination_cache_ttl = 10m\n"
		   "destination_stale_ttl = 0\n");
	if (!ok(config_load(&cfg, path, err, sizeof(err)) == 0, "cache and tenant keys load"))
		printf("# %s\n", err);
	is_str(cfg.service_binding_root, "/bindings", "service_binding_root");
	is_str(cfg.tenant_subdomain, "customer-a", "tenant_subdomain");
	is_str(cfg.tenant_id, "2f0b9a9e-5c6d-4e7f-8a9b-0c1d2e3f4a5b", "tenant_id");
	ok(config_has_tenant(&cfg), "a tenant is configured");
	is_int(cfg.destination_selection, DEST_SELECT_ALWAYS_SUBSCRIBER, "alwaysSubscriber");
	is_str(config_selection_name(cfg.destination_selection), "alwaysSubscriber",
	       "selection name");
	is_int(cfg.http_retries, 0, "http_retries 0");
	is_str(cfg.cache_dir, "", "cache_dir empty: no cache");
	is_str(cfg.metrics_dir, "", "metrics_dir unset follows cache_dir: no counters");
	is_int(cfg.token_refresh_margin, 0, "token_refresh_margin 0 allowed");
	is_int(cfg.destination_cache_ttl, 600, "destination_cache_ttl 10m");
	is_int(cfg.destination_stale_ttl, 0, "destination_stale_ttl 0 allowed");
	config_free(&cfg);

	write_conf("cache_dir = /run/btprelay/cache\n");
	if (!ok(config_load(&cfg, path, err, sizeof(err)) == 0, "cache_dir alone loads"))
		printf("# %s\n", err);
	is_str(cfg.metrics_dir, "/run/btprelay/cache", "metrics_dir unset: the counters in cache_dir");
	config_free(&cfg);
	write_conf("cache_dir = /run/btprelay/cache\nmetrics_dir = /var/spool/postfix/btprelay-metrics\n");
	if (!ok(config_load(&cfg, path, err, sizeof(err)) == 0, "metrics_dir loads"))
		printf("# %s\n", err);
	is_str(cfg.metrics_dir, "/var/spool/postfix/btprelay-metrics", "metrics_dir set: the counters there");
	is_str(cfg.cache_dir, "/run/btprelay/cache", "metrics_dir leaves cache_dir");
	config_free(&cfg);

	write_conf("destination_selection = alwaysProvider\ntenant_id = t.1_x\n");
	ok(config_load(&cfg, path, err, sizeof(err)) == 0, "alwaysProvider loads");
	is_int(cfg.destination_selection, DEST_SELECT_ALWAYS_PROVIDER, "alwaysProvider");
	ok(config_has_tenant(&cfg), "tenant_id alone is a tenant");
	config_free(&cfg);
}

static void test_destinations(void)
{
	struct config cfg;
	char err[512];
	const struct config_dest_prop *dp;

	write_conf("destination.MAIL_LOCAL.mail.smtp.host = 127.0.0.1\n"
		   "destination.MAIL_LOCAL.mail.smtp.port = 2525\n"
		   "# another one\n"
		   "destination.relay-2.Type = MAIL\n"
		   "destination.relay-2.mail.smtp.host =  relay.example  \n"
		   "destination.MAIL_LOCAL.mail.smtp.from = a=b@example\n");
	if (!ok(config_load(&cfg, path, err, sizeof(err)) == 0, "destination lines load"))
		printf("# %s\n", err);
	is_int(cfg.ndest_props, 5, "five properties");
	dp = &cfg.dest_props[0];
	ok(strcmp(dp->destination, "MAIL_LOCAL") == 0 && strcmp(dp->property, "mail.smtp.host") == 0
	   && strcmp(dp->value, "127.0.0.1") == 0 && dp->line == 1, "first: name, property, value, line");
	dp = &cfg.dest_props[3];
	ok(strcmp(dp->destination, "relay-2") == 0 && strcmp(dp->value, "relay.example") == 0,
	   "value trimmed, name with '-'");
	dp = &cfg.dest_props[4];
	is_str(dp->value, "a=b@example", "split at the first '=': the value keeps the others");
	config_free(&cfg);
	ok(cfg.dest_props == NULL && cfg.ndest_props == 0, "config_free releases them");

	write_conf("destination.MAIL_X.mail.smtp.from==a@example\n");
	ok(config_load(&cfg, path, err, sizeof(err)) == 0, "a value may start with '='");
	is_str(cfg.dest_props[0].value, "=a@example", "... kept");
	config_free(&cfg);

	/* a password needs a private file */
	write_conf("destination.M.mail.smtp.host = h\ndestination.M.mail.password = s3cret\n");
	chmod(path, 0644);
	ok(config_load(&cfg, path, err, sizeof(err)) == -1, "password in a world-readable file: error");
	has_str(err, ":2: a destination password or secret, but the file is accessible by other "
		"users (mode 0644)", "names the line and the mode");
	ok(strstr(err, "s3cret") == NULL, "the password is not quoted");
	config_free(&cfg);
	chmod(path, 0640);
	ok(config_load(&cfg, path, err, sizeof(err)) == 0, "password in a 0640 file: fine");
	config_free(&cfg);
	write_conf("destination.M.clientSecret = x\n");
	chmod(path, 0604);
	ok(config_load(&cfg, path, err, sizeof(err)) == -1, "any *secret* property counts");
	config_free(&cfg);
	chmod(path, 0644);
	write_conf("destination.M.mail.smtp.host = h\n");
	ok(config_load(&cfg, path, err, sizeof(err)) == 0, "no password: 0644 is fine");
	config_free(&cfg);
}

static void test_durations(void)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "30", 30 }, { "30s", 30 }, { "5m", 300 }, { "1h", 3600 }, { "0", 0 },
		{ "0s", 0 }, { "", -1 }, { "s", -1 }, { "5x", -1 }, { "-5", -1 },
		{ "5 m", -1 }, { " 5", -1 }, { "5ms", -1 }, { "1.5m", -1 },
		{ "99999999999", -1 }, { "2147483647", 2147483647 }, { "35791395m", -1 },
		{ "596524h", -1 }, { "596523h", 2147482800 }, { "596523m", 35791380 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(config_parse_duration(cases[i].text), cases[i].want,
		       "duration \"%s\"", cases[i].text);
	is_int(config_parse_duration(NULL), -1, "duration NULL");
}

static void test_bools(void)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
		{ "yes", 1 }, { "true", 1 }, { "on", 1 }, { "1", 1 }, { "YES", 1 },
		{ "True", 1 }, { "no", 0 }, { "false", 0 }, { "off", 0 }, { "0", 0 },
		{ "OFF", 0 }, { "", -1 }, { "maybe", -1 }, { "2", -1 }, { "yes ", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(config_parse_bool(cases[i].text), cases[i].want, "bool \"%s\"",
		       cases[i].text);
	is_int(config_parse_bool(NULL), -1, "bool NULL");
}

static void test_errors(void)
{
	char want[600], long_key[100];
	static const struct {
		const char *content;
		const char *want;	/* after "PATH:" */
	} cases[] = {
		{ "# ok\nfoo = bar\n", "2: unknown key \"foo\"" },
		{ "smtp_connect_timeout = x\n",
		  "1: bad value for smtp_connect_timeout: \"x\" (a duration: 30, 30s, 5m)" },
		{ "\n\nhttp_timeout = 0\n",
		  "3: bad value for http_timeout: \"0\" (a duration: 30, 30s, 5m)" },
		{ "smtp_command_timeout = 5 m\n", "1: bad value for smtp_command_timeout: \"5 m\"" },
		{ "log_level = info\nlog_level = debug\n",
		  "2: duplicate key log_level (first set on line 1)" },
		{ "bindings_file /x\n", "1: missing \"=\" after \"bindings_file\" (lines are: "
		  "key = value; the value is not shown)" },
		{ "destination.M.mail.password: s3cret\n",
		  "1: missing \"=\" after \"destination.M.mail.password\"" },
		{ "s3cret\n", "1: missing \"=\" (lines are: key = value; the line is not shown" },
		{ "= value\n", "1: missing key before \"=\"" },
		{ "proxy_port = 65536\n", "1: bad value for proxy_port: \"65536\"" },
		{ "proxy_port = -1\n", "1: bad value for proxy_port: \"-1\"" },
		{ "proxy_port = \n", "1: bad value for proxy_port: \"\"" },
		{ "smtp_tls_security_level = dane\n",
		  "1: bad value for smtp_tls_security_level: \"dane\" (none, may, encrypt, verify or secure)" },
		{ "log_level = verbose\n",
		  "1: bad value for log_level: \"verbose\" (error, warning, info or debug)" },
		{ "log = relative.log\n",
		  "1: bad value for log: \"relative.log\" (syslog, stderr or an absolute file path)" },
		{ "delivery_deadline = 1000\n", "1: bad value for delivery_deadline: \"1000\" "
		  "(at most 999 s: Postfix's transport_time_limit is 1000 s" },
		{ "delivery_deadline = 20m\n", "1: bad value for delivery_deadline: \"20m\"" },
		{ "smtp_tls_level = may\n", "1: unknown key \"smtp_tls_level\"" },
		{ "log_target = stderr\n", "1: unknown key \"log_target\"" },
		{ "path = /x\n", "1: unknown key \"path\"" },
		{ "destination_selection = subscriber\n", "1: bad value for destination_selection: "
		  "\"subscriber\" (subscriberFirst, alwaysProvider or alwaysSubscriber)" },
		{ "destination_selection = subscriberfirst\n",
		  "1: bad value for destination_selection" },
		{ "tenant_subdomain = a.b\n", "1: bad value for tenant_subdomain: \"a.b\" "
		  "(a subdomain: letters, digits and '-', at most 63)" },
		{ "tenant_subdomain = -a\n", "1: bad value for tenant_subdomain" },
		{ "tenant_subdomain = a b\n", "1: bad value for tenant_subdomain" },
		{ "tenant_id = a\rb\n", "1: bad value for tenant_id" },
		{ "tenant_id = a:b\n", "1: bad value for tenant_id: \"a:b\" (a tenant id" },
		{ "http_retries = 11\n", "1: bad value for http_retries: \"11\" (a number from 0)" },
		{ "http_retries = 2s\n", "1: bad value for http_retries" },
		{ "http_retries = -1\n", "1: bad value for http_retries" },
		{ "destination_cache_ttl = x\n",
		  "1: bad value for destination_cache_ttl: \"x\" (a duration: 0, 30, 30s, 5m)" },
		{ "destination.M = x\n", "1: bad key \"destination.M\" (destination.NAME.PROPERTY" },
		{ "destination..mail.smtp.host = x\n", "1: bad key \"destination..mail.smtp.host\"" },
		{ "destination.M.\t= x\n", "1: bad key \"destination.M.\"" },
		{ "destination.M!.mail.smtp.host = x\n", "1: bad key \"destination.M!.mail.smtp.host\"" },
		{ "destination.M.mail smtp = x\n",
		  "1: bad key \"destination.M.mail smtp\" (a property name has no spaces" },
		{ "destination.M.Name = N\n", "1: destination.M.Name: the name is the NAME in "
		  "destination.NAME.PROPERTY" },
		{ "destination.M.mail.smtp.host = a\n\ndestination.M.mail.smtp.host = b\n",
		  "3: duplicate key destination.M.mail.smtp.host (first set on line 1)" },
		{ "destinations.M.x = y\n", "1: unknown key \"destinations.M.x\"" },
	};
	size_t i;
	const char *err;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err = load_error(cases[i].content);
		snprintf(want, sizeof(want), "%s:%s", path, cases[i].want);
		ok(strncmp(err, want, strlen(want)) == 0, "error: %s", cases[i].want);
		if (strncmp(err, want, strlen(want)) != 0)
			printf("#   got \"%s\"\n", err);
	}

	/* an unknown key's text is cut: it could be a misplaced secret */
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	snprintf(want, sizeof(want), "%s = v\n", long_key);
	err = load_error(want);
	has_str(err, ":1: unknown key \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"",
		"long unknown key cut at 40 bytes");
	ok(strstr(err, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk") == NULL,
	   "no more than 40 bytes of it");
	err = load_error("clientsecret s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-END\n");
	ok(err[0] != '\0' && strstr(err, "s3cr3t") == NULL, "a line without = that is no key: "
	   "nothing of it quoted");
	/* a secret on a line without "=": the key is quoted, never the value (issue 13) */
	{
		static const char *const slips[] = {
			"destination.M.mail.password: Pa55-w0rd!\n",
			"destination.M.mail.password Pa55-w0rd!\n",
			"destination.M.mail.smtp.host = h\ndestination.M.mail.password:Pa55-w0rd!\n",
			"destination.M.clientSecret\tPa55-w0rd!\n",
			"Pa55-w0rd!\n",
			"Pa55-w0rd! continued\n",
		};
		size_t k;

		for (k = 0; k < sizeof(slips) / sizeof(slips[0]); k++) {
			err = load_error(slips[k]);
			ok(strstr(err, "missing \"=\"") != NULL && strstr(err, "Pa55") == NULL,
			   "a secret after a key without \"=\" is not quoted (%zu): %s", k, err);
		}
	}

	err = load_error("smtp_helo_name = a\001b\n");
	ok(err[0] == '\0', "control byte in a value: accepted, but...");
	err = load_error("smtp_connect_timeout = a\001b\n");
	has_str(err, "\"a?b\"", "control bytes are not echoed");

	/* a line too long */
	{
		char *big = malloc(6000);

		memset(big, 'x', 5998);
		memcpy(big, "smtp_helo_name = ", 17);
		big[5998] = '\n';
		big[5999] = '\0';
		err = load_error(big);
		has_str(err, ":1: line longer than", "over-long line refused");
		free(big);
	}
}

static void test_files(void)
{
	struct config cfg;
	char err[512], missing[600];

	snprintf(missing, sizeof(missing), "%s/nope.conf", dir);
	ok(config_load(&cfg, missing, err, sizeof(err)) == -1, "missing named file: error");
	has_str(err, missing, "error names the file");
	has_str(err, "No such file", "error says why");
	config_free(&cfg);

	if (access(BTPRELAY_DEFAULT_CONFIG, F_OK) != 0) {
		ok(config_load(&cfg, NULL, err, sizeof(err)) == 0,
		   "missing default file: defaults");
		is_int(cfg.smtp_connect_timeout, 30, "missing default file: default values");
		is_str(cfg.path, BTPRELAY_DEFAULT_CONFIG, "default path recorded");
		config_free(&cfg);
	} else {
		ok(1, "# SKIP %s exists", BTPRELAY_DEFAULT_CONFIG);
	}
	ok(config_load(&cfg, dir, err, sizeof(err)) == -1, "a directory is not a config file");
	config_free(&cfg);
}

/* test_proxy - proxy_authentication, and Kyma's connectivity-proxy-info values in the environment */
static void test_proxy(void)
{
	static const struct {
		const char *text;
		enum proxy_auth want;
	} t[] = {
		{ "", PROXY_AUTH_AUTO },
		{ "proxy_authentication = auto\n", PROXY_AUTH_AUTO },
		{ "proxy_authentication = token\n", PROXY_AUTH_TOKEN },
		{ "proxy_authentication = none\n", PROXY_AUTH_NONE },
	};
	struct config cfg;
	char err[512];
	size_t i;

	unsetenv(CONFIG_ENV_PROXY_HOST);
	unsetenv(CONFIG_ENV_PROXY_PORT);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ok(config_load(&cfg, write_conf(t[i].text), err, sizeof(err)) == 0
		   && cfg.proxy_authentication == t[i].want, "proxy_authentication %s",
		   config_proxy_auth_name(t[i].want));
		config_free(&cfg);
	}
	has_str(load_error("proxy_authentication = jwt\n"),
		"1: bad value for proxy_authentication: \"jwt\" (auto, token or none)",
		"proxy_authentication jwt: refused, with the choices");

	/* envFrom: configMapRef connectivity-proxy-info */
	setenv(CONFIG_ENV_PROXY_HOST, "connectivity-proxy.kyma-system.svc.cluster.local", 1);
	setenv(CONFIG_ENV_PROXY_PORT, "20004", 1);
	ok(config_load(&cfg, write_conf(""), err, sizeof(err)) == 0, "environment: loads");
	is_str(cfg.proxy_host, "connectivity-proxy.kyma-system.svc.cluster.local",
	       "environment: proxy_host from onpremise_proxy_host");
	is_int(cfg.proxy_port, 20004, "environment: proxy_port from onpremise_socks5_proxy_port");
	is_int(cfg.proxy_from_env, CONFIG_PROXY_HOST_ENV | CONFIG_PROXY_PORT_ENV,
	       "environment: both recorded as from the environment");
	config_free(&cfg);
	ok(config_load(&cfg, write_conf("proxy_host = 127.0.0.1\nproxy_port = 1080\n"), err,
		       sizeof(err)) == 0 && strcmp(cfg.proxy_host, "127.0.0.1") == 0
	   && cfg.proxy_port == 1080 && cfg.proxy_from_env == 0,
	   "environment: the file's proxy_host/proxy_port win");
	config_free(&cfg);
	setenv(CONFIG_ENV_PROXY_PORT, "20004x", 1);
	has_str(load_error(""), "environment variable onpremise_socks5_proxy_port: bad value "
		"\"20004x\"", "environment: a bad port is an error naming the variable");
	setenv(CONFIG_ENV_PROXY_PORT, "0", 1);
	has_str(load_error(""), "onpremise_socks5_proxy_port", "environment: port 0 refused");
	setenv(CONFIG_ENV_PROXY_HOST, "a b", 1);
	unsetenv(CONFIG_ENV_PROXY_PORT);
	has_str(load_error(""), "environment variable onpremise_proxy_host: bad value",
		"environment: a host with a space refused");
	unsetenv(CONFIG_ENV_PROXY_HOST);
}

int main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_defaults();
	test_every_key();
	test_cache_tenant_keys();
	test_destinations();
	test_durations();
	test_bools();
	test_errors();
	test_files();
	test_proxy();
	unlink(path);
	rmdir(dir);
	return tap_done();
}
