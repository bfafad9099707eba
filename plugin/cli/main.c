/*
 * btprelay - the operator's tool: check the configuration, resolve a
 * destination, get a token, probe a relay, send a test message, list or
 * clear the caches (btprelay(8)).
 *
 * main() parses the global options and hands the rest of the command line
 * to one command (check.c, resolve.c, token.c, probe.c, send.c,
 * cache.c). Each command calls the library the way the transport does
 * and returns its exit status; this file holds what they share: output
 * helpers and the mapping of an outcome to an exit status.
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "cli.h"
#include "http.h"
#include "log.h"
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
	"  cache list|clear              the shared token and destination cache\n"
	"  routes [--postmap [TYPE:]FILE [--reload]]\n"
	"                                relay routes (cockpit, env, file); write Postfix's table\n"
	"options:\n"
	"  -c FILE         configuration file (default " BTPRELAY_DEFAULT_CONFIG ")\n"
	"  -v              verbose: the library's debug log on stderr\n"
	"  -h, --help      this text;  -V, --version  the version\n";

/* cli_fact - "key: value" on stdout */
void cli_fact(const char *key, const char *fmt, ...)
{
	va_list ap;

	printf("%s: ", key);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* cli_error - "btprelay: text" on stderr, after what stdout holds so far */
void cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("btprelay: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* cli_config - the configuration file, or EX_CONFIG */
int cli_config(struct cli *cli)
{
	char err[1024];

	if (config_load(&cli->cfg, cli->config_path, err, sizeof(err)) < 0) {
		cli_error("configuration error: %s", err);
		return EX_CONFIG;
	}
	return 0;
}

/* cli_exit - EX_CONFIG for what an operator fixes, EX_TEMPFAIL for what may go away */
int cli_exit(const struct outcome *o)
{
	if (o->cls == DSN_OK)
		return EX_OK;
	if (strncmp(o->status + 1, ".3.", 3) == 0 || strncmp(o->status + 1, ".7.", 3) == 0)
		return EX_CONFIG;
	return EX_TEMPFAIL;
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
	log_open("btprelay", "stderr", cli.verbose ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	http_global_init();
	code = commands[i].run(&cli, argc - optind, argv + optind);
	config_free(&cli.cfg);
	log_close();
	fflush(stdout);
	return code;
}
