/*
 * btprelay-transport - Postfix pipe(8) command and sendmail mailer.
 *
 * One run is one delivery request: the message on stdin, the envelope in
 * argv. The result is one exit status (sysexits) and one output line that
 * starts with the enhanced status code, which Postfix and sendmail put in
 * their logs and bounces. Everything an operator can fix defers (75).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "conf.h"
#include "deliver.h"
#include "dsn.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

static const char usage_text[] =
	"usage: btprelay-transport [-c FILE] [-n] [-q QUEUE_ID] [-s SIZE] -f SENDER -d DESTINATION -- RECIPIENT...\n"
	"  -c FILE         configuration file (default " BTPRELAY_DEFAULT_CONFIG ")\n"
	"  -d DESTINATION  the MAIL destination to relay through (Postfix: ${nexthop})\n"
	"  -f SENDER       envelope sender, empty for the null sender (Postfix: ${sender})\n"
	"  -q QUEUE_ID     the MTA's queue id, prefixed to log lines (Postfix: ${queue_id})\n"
	"  -s SIZE         message size in bytes, for the SIZE extension (Postfix: ${size})\n"
	"  -n              end the status line with a newline (sendmail; pipe(8) shows it as a space)\n"
	"  -h, --help      this text;  -V, --version  the version\n";

/*
 * finish - print the outcome and exit with its code; the one exit point of
 * a delivery. A failure starts with its enhanced status code at byte 0
 * (Postfix and sendmail take it from there); success shows the relay's
 * reply. No newline for Postfix, whose pipe(8) would show it as a space;
 * sendmail appends its own text to the line, so its mailer passes -n.
 */
static int newline;

static int finish(const struct outcome *o)
{
	if (o->cls == DSN_OK)
		printf("%s", o->text);
	else
		printf("%s %s", o->status, o->text);
	if (newline || isatty(STDOUT_FILENO))
		putchar('\n');
	fflush(stdout);
	return dsn_exit_code(o);
}

/* report - the request's outcome: the reply on success, the worst failure otherwise */
static int report(const struct outcome *o, const struct outcome *rcpt, size_t n)
{
	const struct outcome *worst = o;
	size_t i;

	for (i = 0; i < n; i++)
		if (dsn_worse(&rcpt[i], worst))
			worst = &rcpt[i];
	return finish(worst);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *sender = NULL, *dest = NULL, *queue_id = NULL;
	struct config cfg;
	struct outcome o, *rcpt_out;
	struct delivery dl = { 0 };
	char err[512];
	long size = -1;
	int ch, code;

	signal(SIGPIPE, SIG_IGN);
	process_no_core();
#ifdef OPENSSL_INIT_NO_ATEXIT
	/* One delivery, then exit: freeing OpenSSL's tables at exit would only cost time. */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
#endif
	while ((ch = getopt_long(argc, argv, "c:d:f:nq:s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 'd': dest = optarg; break;
		case 'f': sender = optarg; break;
		case 'n': newline = 1; break;
		case 'q': queue_id = optarg; break;
		case 's': size = strtol(optarg, NULL, 10); break;
		case 'h': fputs(usage_text, stdout); return EX_OK;
		case 'V': printf("btprelay-transport %s\n", PACKAGE_VERSION); return EX_OK;
		default:
			dsn_config(&o, "btprelay-transport: bad command line (see btprelay-transport -h)");
			return finish(&o);
		}
	}
	/* A wrong command line is a master.cf mistake: defer, so the mail waits for the fix. */
	if (dest == NULL || *dest == 0 || sender == NULL || optind >= argc) {
		dsn_config(&o, "btprelay-transport: usage: -f SENDER -d DESTINATION -- RECIPIENT... (check master.cf argv)");
		return finish(&o);
	}
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		dsn_config(&o, "btprelay-transport: configuration error: %s", err);
		return finish(&o);
	}
	log_open("btprelay-transport", cfg.log_target, (enum log_level)cfg.log_level);
	log_set_queue_id(queue_id);
	metrics_open(cfg.metrics_dir);
	/* no http_global_init(): libcurl is loaded by the first HTTP request, and
	   with the token and the destination cached there is none */

	dl.destination = dest;
	dl.sender = sender;
	dl.rcpt = (const char *const *)&argv[optind];
	dl.nrcpt = (size_t)(argc - optind);
	dl.size = size;
	dl.body_fd = STDIN_FILENO;
	dl.queue_id = queue_id;
	rcpt_out = xcalloc(dl.nrcpt, sizeof(*rcpt_out));
	deliver(&cfg, &dl, rcpt_out, &o);
	code = report(&o, rcpt_out, dl.nrcpt);
	free(rcpt_out);
	config_free(&cfg);
	log_close();
	return code;
}
