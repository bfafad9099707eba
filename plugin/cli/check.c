/*
 * check - `btprelay check`: everything the transport reads before it
 * talks to anyone, one line per check, "ok: ..." or "error: ...": the
 * configuration file (errors as FILE:LINE), the service bindings (their
 * source, the instances picked, the permissions of files that hold
 * secrets), the destinations declared locally (file, variable,
 * configuration: each one checked as the lookup would), the tenant, the
 * CA files, the log target and the cache directory. Nothing is fetched
 * from the network: `token` and `probe` do that.
 *
 * Exit: 0 when every check is ok, 78 (EX_CONFIG) otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "tls.h"
#include "util.h"

#define CHECK_MAX_FILE (1024 * 1024)

struct check {
	int errors;
	int bindings_failed;
	int destinations;	/* declared locally: usable without a destination binding */
};

/* ok - one passed check */
static void __attribute__((format(printf, 2, 3))) ok(struct check *c, const char *fmt, ...)
{
	va_list ap;

	(void)c;
	fputs("ok: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* bad - one failed check */
static void __attribute__((format(printf, 2, 3))) bad(struct check *c, const char *fmt, ...)
{
	va_list ap;

	c->errors++;
	fputs("error: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* owner - "owner NAME, mode 0600" of a stat */
static void owner(const struct stat *st, char *buf, size_t size)
{
	struct passwd *pw = getpwuid(st->st_uid);

	if (pw != NULL)
		snprintf(buf, size, "owner %s, mode %04o", pw->pw_name,
			 (unsigned)(st->st_mode & 07777));
	else
		snprintf(buf, size, "owner uid %u, mode %04o", (unsigned)st->st_uid,
			 (unsigned)(st->st_mode & 07777));
}

/* check_config_file - the file itself: nobody else may change what the transport does */
static void check_config_file(struct check *c, const struct config *cfg)
{
	struct stat st;
	char who[160];

	if (stat(cfg->path, &st) < 0) {
		ok(c, "configuration: %s does not exist; built-in defaults", cfg->path);
		return;
	}
	owner(&st, who, sizeof(who));
	if (st.st_mode & 002)
		bad(c, "configuration: %s: writable by other users (%s); chmod o-w %s", cfg->path,
		    who, cfg->path);
	else
		ok(c, "configuration: %s (%s)", cfg->path, who);
}

/* client_text - "NAME (client ID, client secret|X.509, token URL U)" */
static void client_text(const struct oauth_client *cl, char *buf, size_t size)
{
	snprintf(buf, size, "%s (client %s, %s, token URL %s)", cl->instance, cl->client_id,
		 cl->cert_pem ? "X.509 certificate" : "client secret", cl->token_url);
}

/* check_bindings - source, instances, permissions (bindings_load checks them) */
static void check_bindings(struct check *c, const struct config *cfg, struct bindings *b)
{
	const char *env = getenv("VCAP_SERVICES");
	struct outcome o;
	struct stat st;
	char who[160], text[1200];

	if (bindings_load(cfg, b, &o) < 0) {
		bad(c, "bindings: %s", o.text);
		c->bindings_failed = 1;
		return;
	}
	if (b->source == NULL) {
		ok(c, "bindings: none (no VCAP_SERVICES, no bindings file %s, no service binding "
		   "directories)", cfg->bindings_file[0] ? cfg->bindings_file : "configured");
	} else if (env != NULL && *env != '\0') {
		ok(c, "bindings: VCAP_SERVICES environment variable (the transport does not see "
		   "it, pipe(8) starts it without: it reads %s)",
		   cfg->bindings_file[0] ? cfg->bindings_file : "no bindings file");
	} else if (cfg->bindings_file[0] != '\0' && strcmp(b->source, cfg->bindings_file) == 0
		   && stat(b->source, &st) == 0) {
		owner(&st, who, sizeof(who));
		ok(c, "bindings: bindings file %s (%s)", b->source, who);
	} else {
		ok(c, "bindings: service binding directories %s", b->source);
	}
	if (b->have_destination) {
		client_text(&b->destination, text, sizeof(text));
		ok(c, "destination binding: %s, Destination Service %s", text, b->destination_uri);
	} else {
		ok(c, "destination binding: none (only destinations declared locally can be "
		   "resolved)");
	}
	if (b->have_connectivity) {
		client_text(&b->connectivity, text, sizeof(text));
		ok(c, "connectivity binding: %s, proxy %s:%u%s", text, b->proxy_host, b->proxy_port,
		   cfg->proxy_host[0] || cfg->proxy_port ? " (proxy_host/proxy_port override)" : "");
	} else {
		ok(c, "connectivity binding: none (OnPremise destinations cannot be used)");
	}
}

/* check_tenant - which tenant the Destination Service is asked for */
static void check_tenant(struct check *c, const struct config *cfg)
{
	const char *sel = config_selection_name(cfg->destination_selection);

	if (cfg->tenant_subdomain[0] != '\0')
		ok(c, "tenant: subscriber subdomain %s, destination_selection %s",
		   cfg->tenant_subdomain, sel);
	else if (cfg->tenant_id[0] != '\0')
		ok(c, "tenant: subscriber id %s, destination_selection %s", cfg->tenant_id, sel);
	else if (cfg->destination_selection == DEST_SELECT_ALWAYS_SUBSCRIBER)
		bad(c, "tenant: destination_selection is alwaysSubscriber, but neither "
		    "tenant_subdomain nor tenant_id is set");
	else
		ok(c, "tenant: provider");
}

/* one_destination - cli_dest_fn: one line per declared destination */
static void one_destination(void *arg, const char *name, const char *source,
			    const struct mail_destination *d, const struct outcome *o)
{
	struct check *c = arg;
	char prefix[300];
	const char *text = o->text;

	if (d == NULL) {
		/* the library's text names the destination first: say it once */
		snprintf(prefix, sizeof(prefix), "destination %s: ", name);
		if (strncmp(text, prefix, strlen(prefix)) == 0)
			text += strlen(prefix);
		bad(c, "destination %s (%s): %s", name, source, text);
		return;
	}
	c->destinations++;
	ok(c, "destination %s (%s): %s relay %s:%u%s", d->name, source,
	   d->onpremise ? "OnPremise" : "Internet", d->host, d->port, d->smtps ? " smtps" : "");
}

/* check_destinations_file - permissions, JSON, every entry */
static void check_destinations_file(struct check *c, const char *path)
{
	char err[1200], who[160], source[1100];
	struct outcome o;
	struct stat st;
	size_t len;
	char *text;
	int n;

	if (stat(path, &st) < 0) {
		bad(c, "destinations file %s: %s", path, strerror(errno));
		return;
	}
	/* relay passwords: the rule of the bindings file */
	if (file_check_private(path, err, sizeof(err)) < 0) {
		bad(c, "destinations file %s", err);
		return;
	}
	if ((text = file_read_all(path, CHECK_MAX_FILE, &len, err, sizeof(err))) == NULL) {
		bad(c, "destinations file %s", err);
		return;
	}
	owner(&st, who, sizeof(who));
	snprintf(source, sizeof(source), "destinations file %s", path);
	n = cli_dest_each(text, len, source, one_destination, c, &o);
	explicit_bzero(text, len);
	free(text);
	if (n < 0)
		bad(c, "%s", o.text);
	else
		ok(c, "destinations file %s: %d entr%s (%s)", path, n, n == 1 ? "y" : "ies", who);
}

/* check_destinations_env - the variable, as resolve reads it */
static void check_destinations_env(struct check *c)
{
	const char *text = getenv(CLI_ENV_DESTINATIONS);
	struct outcome o;
	int n;

	if (text == NULL || *text == '\0')
		return;
	n = cli_dest_each(text, strlen(text), CLI_ENV_SOURCE, one_destination, c, &o);
	if (n < 0)
		bad(c, "%s", o.text);
	else
		ok(c, "%s: %d entr%s (only btprelay reads it: the transport does not see it)",
		   CLI_ENV_SOURCE, n, n == 1 ? "y" : "ies");
}

/* check_declared - destination.NAME.* lines, each resolved from the configuration only */
static void check_declared(struct check *c, const struct config *cfg)
{
	struct config run = *cfg;
	struct bindings none;
	struct mail_destination d;
	struct outcome o;
	char source[1200];
	size_t i, j;

	memset(&none, 0, sizeof(none));
	run.destinations_file = NULL;
	for (i = 0; i < cfg->ndest_props; i++) {
		const char *name = cfg->dest_props[i].destination;

		for (j = 0; j < i; j++)
			if (strcmp(cfg->dest_props[j].destination, name) == 0)
				break;
		if (j < i)
			continue;	/* seen */
		snprintf(source, sizeof(source), "configuration file %s, line %u", cfg->path,
			 cfg->dest_props[i].line);
		if (dest_resolve(&run, &none, name, &d, &o) != 0) {
			one_destination(c, name, source, NULL, &o);
		} else {
			one_destination(c, name, source, &d, &o);
			dest_free(&d);
		}
	}
}

/* check_trust - a CA file or directory loads */
static void check_trust(struct check *c, const char *what, const char *file, const char *path)
{
	struct tls_trust trust = { .ca_file = file, .ca_path = path, .verify = 1 };
	char err[512];
	SSL_CTX *ctx;

	if ((ctx = tls_ctx_new(&trust, err, sizeof(err))) == NULL) {
		bad(c, "%s: %s", what, err);
		return;
	}
	SSL_CTX_free(ctx);
	if (file != NULL && *file != '\0')
		ok(c, "%s: %s%s%s", what, file, path && *path ? " and " : "", path ? path : "");
	else if (path != NULL && *path != '\0')
		ok(c, "%s: %s", what, path);
	else
		ok(c, "%s: the system store", what);
}

/* check_client_key - the client certificate's private key must be private, as for the transport */
static void check_client_key(struct check *c, const struct config *cfg)
{
	char err[512];

	if (cfg->smtp_tls_key_file[0] == '\0')
		return;
	if (file_check_private(cfg->smtp_tls_key_file, err, sizeof(err)) < 0)
		bad(c, "smtp_tls_key_file %s", err);
	else
		ok(c, "smtp_tls_key_file: %s", cfg->smtp_tls_key_file);
}

/* check_log - the transport's log target can be written */
static void check_log(struct check *c, const char *target)
{
	char dir[1024], who[160], *slash;
	struct stat st;
	int fd;

	if (strcmp(target, "syslog") == 0 || strcmp(target, "stderr") == 0) {
		ok(c, "log: %s%s", target, strcmp(target, "syslog") == 0 ? " (mail facility)" : "");
		return;
	}
	/* as the transport opens it, but never created here */
	if ((fd = open(target, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC)) >= 0) {
		/* a FIFO: a reader copies the lines on (the container image's log stream) */
		if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)
		    && !S_ISFIFO(st.st_mode)) {
			bad(c, "log: %s: not a regular file", target);
		} else {
			owner(&st, who, sizeof(who));
			ok(c, "log: %s (%s)", target, who);
		}
		close(fd);
		return;
	}
	if (errno != ENOENT) {
		bad(c, "log: %s: %s (the transport then logs to syslog)", target, strerror(errno));
		return;
	}
	str_copy(dir, target, sizeof(dir));
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (access(dir, W_OK | X_OK) == 0)
		ok(c, "log: %s (created on first use)", target);
	else
		bad(c, "log: %s: does not exist, and %s is not writable (the transport then logs "
		    "to syslog)", target, dir);
}

/* check_cache_dir - the rules of cache_open(), without creating anything */
static void check_cache_dir(struct check *c, const char *dir)
{
	char parent[1024], who[160], *slash;
	struct stat st;

	if (dir == NULL || *dir == '\0') {
		ok(c, "cache_dir: empty: caching is off (every delivery asks the token service "
		   "and the Destination Service)");
		return;
	}
	if (dir[0] != '/') {
		bad(c, "cache_dir %s: not an absolute path (caching is off)", dir);
		return;
	}
	if (lstat(dir, &st) < 0) {
		if (errno != ENOENT) {
			bad(c, "cache_dir %s: %s (caching is off)", dir, strerror(errno));
			return;
		}
		str_copy(parent, dir, sizeof(parent));
		if ((slash = strrchr(parent, '/')) != NULL)
			*(slash == parent ? slash + 1 : slash) = '\0';
		if (geteuid() != 0 && access(parent, W_OK | X_OK) == 0)
			ok(c, "cache_dir %s: created (0700) on first use", dir);
		else
			bad(c, "cache_dir %s: does not exist (caching is off): install -d -m 0700 -o "
			    "USER %s, USER being the one the transport runs as (master.cf user=)",
			    dir, dir);
		return;
	}
	owner(&st, who, sizeof(who));
	if (!S_ISDIR(st.st_mode))
		bad(c, "cache_dir %s: not a directory (caching is off)", dir);
	else if ((st.st_mode & 077) != 0)
		bad(c, "cache_dir %s: accessible by other users (%s), and it holds tokens "
		    "(caching is off): chmod 0700 %s", dir, who, dir);
	else if (geteuid() != 0 && st.st_uid != geteuid())
		bad(c, "cache_dir %s: belongs to another user (%s); this user cannot use it",
		    dir, who);
	else
		ok(c, "cache_dir %s (%s)", dir, who);
}

/* cmd_check - check */
int cmd_check(struct cli *cli, int argc, char **argv)
{
	struct config *cfg = &cli->cfg;
	struct check c = { 0, 0, 0 };
	struct bindings b;
	char err[1024];

	(void)argv;
	if (argc != 1) {
		cli_error("usage: btprelay check");
		return EX_USAGE;
	}
	if (config_load(cfg, cli->config_path, err, sizeof(err)) < 0) {
		bad(&c, "configuration: %s", err);
		cli_error("check: the configuration cannot be read; nothing else was checked");
		return EX_CONFIG;
	}
	check_config_file(&c, cfg);
	check_bindings(&c, cfg, &b);
	check_tenant(&c, cfg);
	if (cfg->destinations_file[0] != '\0')
		check_destinations_file(&c, cfg->destinations_file);
	check_declared(&c, cfg);
	check_destinations_env(&c);
	if (!c.bindings_failed && !b.have_destination && c.destinations == 0)
		bad(&c, "destinations: no destination binding and no destination declared "
		    "(destinations_file, destination.NAME.* lines): no destination can be resolved");
	bindings_free(&b);
	if (cfg->http_ca_file[0] != '\0')
		check_trust(&c, "http_ca_file", cfg->http_ca_file, NULL);
	check_trust(&c, "smtp TLS trust", cfg->smtp_tls_ca_file, cfg->smtp_tls_ca_path);
	check_client_key(&c, cfg);
	check_log(&c, cfg->log_target);
	check_cache_dir(&c, cfg->cache_dir);
	if (c.errors > 0) {
		cli_error("check: %d error%s", c.errors, c.errors == 1 ? "" : "s");
		return EX_CONFIG;
	}
	return EX_OK;
}
