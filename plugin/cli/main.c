/*
 * btprelay - the operator's tool: check the configuration, resolve a
 * destination, get a token, probe a relay, send a test message, list or
 * clear the caches, show the counters (btprelay(8)).
 *
 * main() parses the global options and hands the rest of the command line
 * to one command (check.c, resolve.c, token.c, probe.c, send.c,
 * cache.c). Each command calls the library the way the transport does
 * and returns its exit status; this file holds what they share: output
 * helpers; an outcome becomes an exit status through dsn_operator_exit().
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "cache.h"
#include "cli.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

static const char usage_text[] =
	"usage: btprelay [-c FILE] [-v] COMMAND [ARGS]\n"
	"  check                         configuration, bindings, files, log, cache directory\n"
	"  resolve NAME                  the destination as the transport sees it (secrets masked)\n"
	"  token connectivity|destination [--subscriber]\n"
	"                                get a token; show tenant, client, scopes, expiry\n"
	"  probe NAME [--no-auth]        proxy handshake, greeting, EHLO, TLS, AUTH; sends no mail\n"
	"  send NAME --from ADDR --to ADDR [--to ADDR]... [--subject TEXT] [--body-file FILE]\n"
	"                                a test message through the transport's delivery code\n"
	"  routes [--postmap [TYPE:]FILE [--reload]]\n"
	"                                relay routes (cockpit, env, file); write Postfix's table\n"
	"  cache list|clear              the shared token and destination cache, failure notes\n"
	"  metrics [--listen ADDR:PORT | --count-log] [--postfix-config DIR | --no-postfix]\n"
	"                                counters and queue sizes (Prometheus text), served, or\n"
	"                                Postfix's status lines counted from stdin\n"
	"options:\n"
	"  -c FILE         configuration file (default " BTPRELAY_DEFAULT_CONFIG ")\n"
	"  -v              verbose: the library's debug log on stderr\n"
	"  -h, --help      this text;  -V, --version  the version\n";

/*
 * cli_vline - "PREFIXtext\n" on fp, the text through str_sanitize(): a
 * destination's properties, a relay's replies and file contents reach the
 * operator's terminal, and none of them may send it escape sequences
 */
void cli_vline(FILE *fp, const char *prefix, const char *fmt, va_list ap)
{
	char *text = NULL, *p;

	if (vasprintf(&text, fmt, ap) < 0 || text == NULL) {
		fprintf(fp, "%s(out of memory)\n", prefix);
		return;
	}
	str_sanitize(text, '?');
	p = xmalloc(strlen(prefix) + 1);
	memcpy(p, prefix, strlen(prefix) + 1);
	str_sanitize(p, '?');
	fprintf(fp, "%s%s\n", p, text);
	free(p);
	free(text);
}

/* cli_fact - "key: value" on stdout */
void cli_fact(const char *key, const char *fmt, ...)
{
	char prefix[512];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "%s: ", key);
	va_start(ap, fmt);
	cli_vline(stdout, prefix, fmt, ap);
	va_end(ap);
}

/* cli_error - "btprelay: text" on stderr, after what stdout holds so far */
void cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	cli_vline(stderr, "btprelay: ", fmt, ap);
	va_end(ap);
}

/* cli_failure_note - "failure_note: ..." when the last failure was another process's */
void cli_failure_note(void)
{
	struct cache_note n;

	if (cache_last_note(&n) < 0)
		return;
	cli_fact("failure_note", "this failure is another process's %s lookup for %s, %.0f s "
		 "ago, which this command waited for; the note expires in %ld s, a new "
		 "request asks again, and `btprelay cache clear` drops it now", n.kind, n.what,
		 n.age, n.expires_in);
}

/* cli_config - the configuration file, or EX_CONFIG */
int cli_config(struct cli *cli)
{
	char err[1024];

	if (config_load(&cli->cfg, cli->config_path, err, sizeof(err)) < 0) {
		cli_error("configuration error: %s", err);
		return EX_CONFIG;
	}
	/* the commands that ask the services count as the transport does */
	metrics_open(cli->cfg.metrics_dir);
	return 0;
}

/* cli_time - ISO 8601, UTC */
void cli_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "%lld", (long long)t);
}

static const struct {
	const char *name;
	int (*run)(struct cli *cli, int argc, char **argv);
} commands[] = {
	{ "check", cmd_check },
	{ "resolve", cmd_resolve },
	{ "token", cmd_token },
	{ "probe", cmd_probe },
	{ "send", cmd_send },
	{ "cache", cmd_cache },
	{ "routes", cmd_routes },
	{ "metrics", cmd_metrics },
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli cli;
	size_t i;
	int ch, code;

	signal(SIGPIPE, SIG_IGN);
	process_no_core();
	memset(&cli, 0, sizeof(cli));
	/* "+": options after the command belong to the command */
	while ((ch = getopt_long(argc, argv, "+c:vhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': cli.config_path = optarg; break;
		case 'v': cli.verbose = 1; break;
		case 'h': fputs(usage_text, stdout); return EX_OK;
		case 'V': printf("btprelay %s\n", PACKAGE_VERSION); return EX_OK;
		default: fputs(usage_text, stderr); return EX_USAGE;
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			break;
	if (i == sizeof(commands) / sizeof(commands[0])) {
		cli_error("unknown command \"%s\" (see btprelay -h)", argv[optind]);
		return EX_USAGE;
	}
	/* the library's log lines are for the person at the terminal */
	log_open("btprelay", "terminal", cli.verbose ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	http_global_init();
	code = commands[i].run(&cli, argc - optind, argv + optind);
	config_free(&cli.cfg);
	log_close();
	fflush(stdout);
	return code;
}
