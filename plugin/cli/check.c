/*
 * check - `btprelay check`: everything the transport reads before it
 * talks to anyone, one line per check, "ok: ..." or "error: ...": the
 * configuration file (errors as FILE:LINE), the service bindings (their
 * source, the instances picked, the permissions of files that hold
 * secrets), the Connectivity proxy (address, authentication with a token
 * or without, and why), the destinations declared locally (file, variable,
 * configuration: each one checked as the lookup would), the tenant, the
 * CA files, the log target, the cache directory, and btprelay-fetch's
 * inbound keys (fetch_*, as btprelay-fetch checks them; a source declared
 * locally must have a mail.store.protocol). Nothing is fetched
 * from the network: `token` and `probe` do that.
 *
 * Exit: 0 when every check is ok, 78 (EX_CONFIG) otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "proxy.h"
#include "routemap.h"
#include "routes.h"
#include "tls.h"
#include "util.h"

#define CHECK_MAX_FILE (1024 * 1024)

struct check {
	int errors;
	int bindings_failed;
	int destinations;	/* declared locally: usable without a destination binding */
	const struct config *cfg;
};

/* ok - one passed check */
static void __attribute__((format(printf, 2, 3))) ok(struct check *c, const char *fmt, ...)
{
	va_list ap;

	(void)c;
	va_start(ap, fmt);
	cli_vline(stdout, "ok: ", fmt, ap);
	va_end(ap);
}

/* bad - one failed check */
static void __attribute__((format(printf, 2, 3))) bad(struct check *c, const char *fmt, ...)
{
	va_list ap;

	c->errors++;
	va_start(ap, fmt);
	cli_vline(stdout, "error: ", fmt, ap);
	va_end(ap);
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
		ok(c, "connectivity binding: none");
	}
}

/* check_proxy - how OnPremise destinations reach the Connectivity proxy, and why */
static void check_proxy(struct check *c, const struct config *cfg, const struct bindings *b)
{
	struct proxy_plan plan;
	struct outcome o;

	if (c->bindings_failed)
		return;
	if (proxy_plan(cfg, b, NULL, &plan, &o) == 0)
		ok(c, "proxy: %s:%u, authentication %s (%s)", plan.host, plan.port,
		   config_proxy_auth_name(plan.auth), plan.why);
	else if (cfg->proxy_authentication == PROXY_AUTH_AUTO)
		ok(c, "proxy: none (OnPremise destinations cannot be used: %s)", o.text);
	else
		bad(c, "proxy: %s", o.text);
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
	if (d->store.protocol == DEST_STORE_NONE && config_fetch_sources(c->cfg, d->name))
		bad(c, "destination %s (%s): fetch_sources lists it, but it has no "
		    "mail.store.protocol (imap, imaps, pop3, pop3s): not a mailbox", d->name, source);
	if (d->host == NULL)	/* a mailbox only (btprelay-fetch(8)) */
		ok(c, "destination %s (%s): %s mailbox %s:%u %s", d->name, source,
		   d->onpremise ? "OnPremise" : "Internet", d->store.host, d->store.port,
		   dest_store_name(d->store.protocol));
	else
		ok(c, "destination %s (%s): %s relay %s:%u%s", d->name, source,
		   d->onpremise ? "OnPremise" : "Internet", d->host, d->port,
		   d->smtps ? " smtps" : "");
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

/*
 * check_syslog - a syslog daemon takes lines on /dev/log: connect as
 * syslog(3) does (datagram, else stream) and send one test line at
 * mail.debug. Without a daemon every line syslog(3) is given is lost
 * silently, and "log = syslog" would look fine here.
 */
static void check_syslog(struct check *c, const struct config *cfg)
{
	struct sockaddr_un sun;
	char line[200];
	int fd = -1, type, err = 0;
	ssize_t n = -1;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	str_copy(sun.sun_path, _PATH_LOG, sizeof(sun.sun_path));
	for (type = SOCK_DGRAM; ; type = SOCK_STREAM) {
		if ((fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0)) < 0) {
			err = errno;
			break;
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
		if (err != EPROTOTYPE || type == SOCK_STREAM)
			break;
	}
	if (fd >= 0) {
		/* RFC 3164 form, priority mail.debug (2 * 8 + 7); a stream takes a NUL after it */
		snprintf(line, sizeof(line), "<23>btprelay[%ld]: btprelay check: syslog test line "
			 "(nothing to do)", (long)getpid());
		n = send(fd, line, strlen(line) + (type == SOCK_STREAM), MSG_DONTWAIT | MSG_NOSIGNAL);
		err = errno;
		close(fd);
	}
	if (n > 0) {
		ok(c, "log: syslog (mail facility; %s accepted a test line at mail.debug)", _PATH_LOG);
		return;
	}
	bad(c, "log: syslog: no syslog daemon takes lines on %s (%s): whatever btprelay logs is "
	    "lost. Start one (apt-get install rsyslog, or systemd-journald), or have btprelay "
	    "write its own file: \"log = /var/log/btprelay.log\" in %s (Postfix without syslog: "
	    "postconf -e maillog_file=/var/log/postfix.log)", _PATH_LOG,
	    fd < 0 && err != 0 ? strerror(err) : n < 0 ? strerror(err) : "nothing sent",
	    cfg->path);
}

/*
 * transport_user - who will write the log: as root, the owner of cache_dir
 * (install -d -o USER makes it so), else the user btprelay; NULL when
 * neither is known. Not root: this user.
 */
static const struct passwd *transport_user(const struct config *cfg)
{
	const struct passwd *pw;
	struct stat st;

	if (geteuid() != 0)
		return getpwuid(geteuid());
	if (cfg->cache_dir[0] == '/' && stat(cfg->cache_dir, &st) == 0 && st.st_uid != 0
	    && (pw = getpwuid(st.st_uid)) != NULL)
		return pw;
	return getpwnam("btprelay");
}

/* user_may - access(path, mode) as user pw (a child that becomes pw); 1 yes, 0 no */
static int user_may(const struct passwd *pw, const char *path, int mode)
{
	pid_t pid;
	int status;

	if (geteuid() != 0 || pw->pw_uid == 0)
		return access(path, mode) == 0;
	fflush(stdout);
	if ((pid = fork()) < 0)
		return 0;
	if (pid == 0) {
		if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0
		    || setuid(pw->pw_uid) < 0)
			_exit(2);
		_exit(access(path, mode) == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 0;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * check_log - the transport's log target takes lines: syslog is tried,
 * a file must be writable (or creatable in its directory) by the user the
 * transport runs as; when it is not, the line says which command fixes it
 */
static void check_log(struct check *c, const struct config *cfg)
{
	const char *target = cfg->log_target;
	const struct passwd *pw;
	char dir[1024], who[160], user[64], *slash;
	struct stat st;

	if (strcmp(target, "syslog") == 0) {
		check_syslog(c, cfg);
		return;
	}
	if (strcmp(target, "stderr") == 0) {
		ok(c, "log: stderr");
		return;
	}
	pw = transport_user(cfg);
	snprintf(user, sizeof(user), "%s", pw != NULL ? pw->pw_name : "USER");
	str_copy(dir, target, sizeof(dir));
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (stat(target, &st) == 0) {
		owner(&st, who, sizeof(who));
		/* a FIFO: a reader copies the lines on (the container image's log stream) */
		if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
			bad(c, "log: %s: not a regular file", target);
		else if (pw != NULL && !user_may(pw, target, W_OK))
			bad(c, "log: %s (%s): %s cannot write it, and the transport then logs to "
			    "syslog: chown %s %s", target, who, user, user, target);
		else
			ok(c, "log: %s (%s)", target, who);
		return;
	}
	if (errno != ENOENT) {
		bad(c, "log: %s: %s (the transport then logs to syslog)", target, strerror(errno));
		return;
	}
	if (pw != NULL && user_may(pw, dir, W_OK | X_OK))
		ok(c, "log: %s (created on first use by %s)", target, user);
	else
		bad(c, "log: %s does not exist, and %s cannot create it in %s (the transport then "
		    "logs to syslog): install -D -m 0640 -o %s /dev/null %s%s", target, user, dir,
		    user, target, pw == NULL ? " (USER: the transport's, master.cf user=)" : "");
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

/*
 * check_routes - the routing sources that need no service: BTPRELAY_ROUTES
 * and routes_file parse, routes_transport makes a transport:nexthop; the
 * cockpit's list is `btprelay routes`'s to fetch
 */
static void check_routes(struct check *c, const struct config *cfg)
{
	struct route_table t;
	struct outcome o;
	const char *env = getenv(ROUTES_ENV);
	char value[512];

	memset(&o, 0, sizeof(o));
	if (routes_collect_local(cfg, &t, &o) < 0) {
		bad(c, "routes: %s", o.text);
	} else if (t.n > 0) {
		routes_resolve(&t);
		ok(c, "routes: %zu (%s %s, routes_file %s), %u conflict%s", t.n, ROUTES_ENV,
		   env != NULL && *env != '\0' ? "set" : "unset",
		   cfg->routes_file != NULL && *cfg->routes_file != '\0' ? cfg->routes_file : "none",
		   t.conflicts, t.conflicts == 1 ? "" : "s");
	}
	routes_free(&t);
	if (routemap_value(cfg->routes_transport, "MAIL_NAME", value, sizeof(value)) < 0
	    || strchr(value, ':') == NULL || value[0] == ':')
		bad(c, "routes_transport \"%s\": not a transport:nexthop (e.g. btprelay:$destination)",
		    cfg->routes_transport);
	else if (cfg->routes_cockpit)
		ok(c, "routes from the cockpit: on (property %s; `btprelay routes` lists them), "
		   "routes_transport %s", ROUTES_PROPERTY, cfg->routes_transport);
}

/* check_inbound - the fetch_* keys (btprelay-fetch(8)), by btprelay-fetch's own check */
static void check_inbound(struct check *c, const struct config *cfg)
{
	char err[512];

	if (cfg->fetch_sources[0] == '\0')
		ok(c, "inbound: none (fetch_sources is empty)");
	else if (config_check_fetch(cfg, err, sizeof(err)) < 0)
		bad(c, "inbound: %s", err);
	else
		ok(c, "inbound: fetch_sources %s to %s by %s, fetch_done %s, state in %s",
		   cfg->fetch_sources, cfg->fetch_recipient, cfg->fetch_smtp_server, cfg->fetch_done,
		   cfg->fetch_state_dir);
}

/* cmd_check - check */
int cmd_check(struct cli *cli, int argc, char **argv)
{
	struct config *cfg = &cli->cfg;
	struct check c = { 0, 0, 0, cfg };
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
	check_proxy(&c, cfg, &b);
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
	check_log(&c, cfg);
	check_cache_dir(&c, cfg->cache_dir);
	check_routes(&c, cfg);
	check_inbound(&c, cfg);
	if (c.errors > 0) {
		cli_error("check: %d error%s", c.errors, c.errors == 1 ? "" : "s");
		return EX_CONFIG;
	}
	return EX_OK;
}
