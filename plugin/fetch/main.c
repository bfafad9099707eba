/*
 * btprelay-fetch - inbound mail from on-premise mailboxes (IMAP, POP3)
 * through the Connectivity proxy into the local MTA, exactly once but for
 * the message in flight at a crash (btprelay-fetch(8)).
 *
 * One pass over every source of fetch_sources (or -s NAME) by default,
 * for a systemd timer or a Kubernetes CronJob; --daemon repeats the pass
 * every fetch_interval, waiting longer after failed passes (doubling, at
 * most 16 times the interval). With one IMAP source whose server offers
 * IDLE (RFC 2177) the daemon waits in IDLE instead and passes again as
 * soon as new mail is announced. SIGTERM or SIGINT: the message in hand is
 * finished, then the program exits.
 *
 * Exit status: 0 every source done, 75 (EX_TEMPFAIL) a source failed and
 * is tried again next pass, 78 (EX_CONFIG) the configuration is wrong,
 * 64 (EX_USAGE) bad arguments.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "fetch.h"
#include "log.h"
#include "util.h"

static const char usage_text[] =
	"usage: btprelay-fetch [-c FILE] [-s SOURCE] [--daemon | --probe]\n"
	"  fetches new mail from the mailboxes of fetch_sources into the MTA\n"
	"  -c FILE         configuration file (default " BTPRELAY_DEFAULT_CONFIG ")\n"
	"  -s SOURCE       only this source (a destination name); may be repeated\n"
	"  -d, --daemon    repeat every fetch_interval instead of one pass\n"
	"  -p, --probe     connect, log in and count the messages of each source;\n"
	"                  fetch nothing, change nothing (exit 0 when every login works)\n"
	"  -h, --help      this text;  -V, --version  the version\n";

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static unsigned fetch_flags;		/* FETCH_PROBE, FETCH_IDLE */

/* one_source - a pass over name; with --probe one line on stdout about it */
static int one_source(const struct config *cfg, const char *name, struct fetch_mta *mta)
{
	struct outcome o;
	int rc = fetch_source(cfg, name, mta, &stop_requested, fetch_flags, &o);

	if (fetch_flags & FETCH_PROBE)
		printf("%s %s: %s\n", rc >= 0 ? "ok" : "FAILED", name, o.text);
	return rc;
}

/*
 * one_pass - every source once: -1 when one failed, 1 when the one source
 * waited in IMAP IDLE and new mail came (pass again now), else 0
 */
static int one_pass(const struct config *cfg, char *const *only, int nonly, struct fetch_mta *mta)
{
	char *list = xstrdup(cfg->fetch_sources), *save = NULL, *name;
	int failed = 0, idled = 0, i, rc;

	if (nonly > 0) {
		for (i = 0; i < nonly && !stop_requested; i++) {
			rc = one_source(cfg, only[i], mta);
			failed |= rc < 0;
			idled |= rc == 1;
		}
	} else {
		for (name = strtok_r(list, " ,\t", &save); name && !stop_requested;
		     name = strtok_r(NULL, " ,\t", &save)) {
			rc = one_source(cfg, name, mta);
			failed |= rc < 0;
			idled |= rc == 1;
		}
	}
	fetch_mta_close(mta);
	free(list);
	return failed ? -1 : idled;
}

/* nap - sleep seconds unless a stop is requested */
static void nap(int seconds)
{
	struct timespec ts = { 1, 0 };

	while (seconds-- > 0 && !stop_requested)
		nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "daemon", no_argument, NULL, 'd' },
		{ "probe", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL;
	char *only[32];
	int nonly = 0, daemon_mode = 0, ch, failures = 0, rc;
	struct fetch_mta mta;
	struct sigaction sa;
	struct config cfg;
	char err[1024];

	memset(&mta, 0, sizeof(mta));
	signal(SIGPIPE, SIG_IGN);
	process_no_core();
	while ((ch = getopt_long(argc, argv, "c:s:dphV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 's':
			if (nonly == 32) {
				fputs("btprelay-fetch: at most 32 -s options\n", stderr);
				return EX_USAGE;
			}
			only[nonly++] = optarg;
			break;
		case 'd': daemon_mode = 1; break;
		case 'p': fetch_flags |= FETCH_PROBE; break;
		case 'h': fputs(usage_text, stdout); return EX_OK;
		case 'V': printf("btprelay-fetch %s\n", PACKAGE_VERSION); return EX_OK;
		default: fputs(usage_text, stderr); return EX_USAGE;
		}
	}
	if (optind != argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "btprelay-fetch: %s\n", err);
		return EX_CONFIG;
	}
	log_open("btprelay-fetch", cfg.log_target, (enum log_level)cfg.log_level);
	if (nonly > 0 && cfg.fetch_sources[0] == '\0') {
		free(cfg.fetch_sources);
		cfg.fetch_sources = xstrdup(only[0]);	/* -s alone names a source */
	}
	if (config_check_fetch(&cfg, err, sizeof(err)) < 0) {
		log_error("configuration: %s", err);
		fprintf(stderr, "btprelay-fetch: %s: %s\n", cfg.path ? cfg.path : "configuration", err);
		config_free(&cfg);
		return EX_CONFIG;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	if (daemon_mode && !(fetch_flags & FETCH_PROBE) && cfg.fetch_idle > 0) {
		if ((nonly > 0 ? nonly : config_fetch_sources(&cfg, NULL)) == 1)
			fetch_flags |= FETCH_IDLE;
		else
			log_info("several sources: polling every %d s (IMAP IDLE waits on one source "
				 "only)", cfg.fetch_interval);
	}
	rc = one_pass(&cfg, only, nonly, &mta);
	while (daemon_mode && !(fetch_flags & FETCH_PROBE) && !stop_requested) {
		int wait = rc == 1 ? 0 : cfg.fetch_interval;	/* IDLE announced new mail */

		failures = rc < 0 ? (failures < 4 ? failures + 1 : 4) : 0;
		wait <<= failures;		/* 1, 2, 4, 8, 16 times the interval */
		if (failures)
			log_info("waiting %d s after %d failed pass%s", wait, failures,
				 failures > 1 ? "es" : "");
		nap(wait);
		if (!stop_requested)
			rc = one_pass(&cfg, only, nonly, &mta);
	}
	config_free(&cfg);
	log_close();
	return rc < 0 ? EX_TEMPFAIL : EX_OK;
}
