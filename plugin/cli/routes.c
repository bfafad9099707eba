/*
 * routes - `btprelay routes [--postmap [TYPE:]FILE [--reload]]`: the
 * routing table from BTPRELAY_ROUTES, routes_file and the cockpit's
 * destinations (routes.h), each route with where it came from; with
 * --postmap, the table written as a Postfix lookup table for both
 * transport_maps and relay_domains, and with --reload, `postfix reload`
 * when the table changed, so Postfix's long-running processes use it now.
 *
 * Run by root, the routes are read as the owner of cache_dir (the
 * transport's user: its cache, its bindings) in a child process, and only
 * the reload is done as root.
 *
 * Exit: 0 done (the map updated or already current); 75 the cockpit could
 * not be listed and no cached list stands in, or postmap or the reload
 * failed: the map stays as it was; 78 a bad entry in BTPRELAY_ROUTES or
 * routes_file, a bad map name or routes_transport; 64 usage.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "routemap.h"

#define RELOAD_SECONDS 60

/* print_cockpit - where the cockpit's routes came from */
static void print_cockpit(const struct config *cfg, const struct bindings *b,
			  const struct route_table *t)
{
	if (!cfg->routes_cockpit)
		cli_fact("cockpit", "off (routes_cockpit = no)");
	else if (!b->have_destination)
		cli_fact("cockpit", "off (no destination binding)");
	else if (t->cockpit_stale)
		cli_fact("cockpit", "%zu destinations with %s (stale: the Destination Service "
			 "failed; listed %ld s ago)", t->cockpit_destinations, ROUTES_PROPERTY,
			 t->cockpit_age);
	else if (t->cockpit_age >= 0)
		cli_fact("cockpit", "%zu destinations with %s (from the cache, listed %ld s ago)",
			 t->cockpit_destinations, ROUTES_PROPERTY, t->cockpit_age);
	else
		cli_fact("cockpit", "%zu destinations with %s (Destination Service, listed now)",
			 t->cockpit_destinations, ROUTES_PROPERTY);
}

/*
 * routes_run_user - collect, print and (with map) write; *changed tells
 * whether the map was replaced. Returns the exit status.
 */
static int routes_run_user(struct cli *cli, const char *map, int *changed)
{
	struct bindings b;
	struct route_table t;
	struct outcome o;
	size_t i;
	int rc;

	*changed = 0;
	memset(&o, 0, sizeof(o));
	if (bindings_load(&cli->cfg, &b, &o) < 0) {
		cli_error("bindings: %s", o.text);
		return dsn_operator_exit(&o);
	}
	cli_fact("transport", "%s", cli->cfg.routes_transport);
	rc = routes_collect(&cli->cfg, &b, &t, &o);
	if (rc == 0) {
		print_cockpit(&cli->cfg, &b, &t);
		for (i = 0; i < t.n; i++)
			cli_fact("route", "%s %s (%s, %s)", t.v[i].domain, t.v[i].destination,
				 routes_source_name(t.v[i].source), t.v[i].origin);
		cli_fact("routes", "%zu (%u conflicts)", t.n, t.conflicts);
	}
	if (rc == 0 && map != NULL) {
		rc = routemap_write(&t, cli->cfg.routes_transport, map, changed, &o);
		if (rc == 0)
			cli_fact("map", "%s %s", map, *changed ? "updated" : "unchanged");
	}
	routes_free(&t);
	bindings_free(&b);
	if (rc == 0)
		return EX_OK;
	cli_error("routes: %s%s", o.text, map != NULL ? " (the map stays as it was)" : "");
	return dsn_operator_exit(&o);
}

/* become_cache_owner - as root, become the owner of cache_dir (and its group) for good */
static int become_cache_owner(const struct cli *cli)
{
	const char *dir = cli->cfg.cache_dir;
	struct stat st;

	if (dir[0] == '\0' || stat(dir, &st) < 0)
		return 0;
	return cli_become_owner(cli, &st, dir);
}

/* reload - postfix reload (MAIL_CONFIG names a non-default instance) */
static int reload(void)
{
	const char *const argv[] = { "postfix", "reload", NULL };
	char why[600];

	fflush(stdout);
	if (routemap_run(argv, RELOAD_SECONDS, why, sizeof(why)) < 0) {
		cli_error("the map changed, but %s: Postfix uses it when its processes restart",
			  why);
		return EX_TEMPFAIL;
	}
	cli_fact("reload", "done");
	return EX_OK;
}

/* cmd_routes - routes [--postmap [TYPE:]FILE [--reload]] */
int cmd_routes(struct cli *cli, int argc, char **argv)
{
	const char *map = NULL;
	int i, want_reload = 0, rc, changed = 0, status, fds[2];
	char byte = 0;
	pid_t pid;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--postmap") == 0 && i + 1 < argc)
			map = argv[++i];
		else if (strcmp(argv[i], "--reload") == 0)
			want_reload = 1;
		else
			break;
	}
	if (i < argc || (want_reload && map == NULL)) {
		cli_error("usage: btprelay routes [--postmap [TYPE:]FILE [--reload]]");
		return EX_USAGE;
	}
	if ((rc = cli_config(cli)) != 0)
		return rc;
	if (!(want_reload && geteuid() == 0)) {
		if (become_cache_owner(cli) < 0)
			return EX_OSERR;
		rc = routes_run_user(cli, map, &changed);
		if (rc == EX_OK && changed && want_reload)
			rc = reload();
		return rc;
	}
	/* root with --reload: the routes as the cache's owner, the reload as root */
	fflush(stdout);
	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		cli_error("fork: %s", strerror(errno));
		return EX_OSERR;
	}
	if (pid == 0) {
		close(fds[0]);
		if (become_cache_owner(cli) < 0)
			_exit(EX_OSERR);
		rc = routes_run_user(cli, map, &changed);
		byte = changed ? '1' : '0';
		if (write(fds[1], &byte, 1) != 1)
			rc = EX_OSERR;
		fflush(stdout);
		_exit(rc);
	}
	close(fds[1]);
	if (read(fds[0], &byte, 1) != 1)
		byte = 0;
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : EX_SOFTWARE;
	if (rc == EX_OK && byte == '1')
		rc = reload();
	return rc;
}
