/*
 * cli - what the commands of btprelay(8) share: the command line's global
 * options, the loaded configuration, output helpers, and the
 * `destinations` environment variable (the first link of the lookup chain
 * of SAP's Cloud SDK, "Destinations from environment variables"), which
 * only this interactive program reads.
 *
 * Output contract: results go to stdout as "key: value" lines, one fact
 * per line, keys stable; errors go to stderr as "btprelay: text". No
 * secret (client secret, token, relay password, private key) is printed.
 */
#ifndef BTPRELAY_CLI_H
#define BTPRELAY_CLI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>
#include <jansson.h>

#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "dsn.h"

/* exit statuses beyond <sysexits.h> */
#define CLI_EXIT_NOT_FOUND 1	/* resolve: no destination of that name */

#define CLI_MASK "********"	/* stands for a secret that is set */
#define CLI_ENV_DESTINATIONS "destinations"
#define CLI_ENV_SOURCE "destinations environment variable"

struct cli {
	const char *config_path;	/* -c, NULL = the default path */
	int verbose;			/* -v: library debug log on stderr */
	struct config cfg;		/* loaded by cli_config() */
};

/* cli_vline - "PREFIXtext" and a newline on fp, sanitized for a terminal (str_sanitize) */
void cli_vline(FILE *fp, const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* cli_fact - "key: value" on stdout */
void cli_fact(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* cli_become_owner - as root, become the owner of dir (its stat) for good, and count
 * into metrics_dir as that user; -1 on failure */
struct stat;
int cli_become_owner(const struct cli *cli, const struct stat *st, const char *dir);
/* cli_error - "btprelay: text" on stderr */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * cli_failure_note - after a failed lookup or token request: when the
 * failure came from a failure note (another process's fetch that this one
 * waited for, cache.h), say so on stdout with its age, the time it has
 * left and how to drop it
 */
void cli_failure_note(void);
/*
 * cli_config - load the configuration named by -c (or the default). 0, or
 * EX_CONFIG after printing "btprelay: FILE:LINE: text" on stderr.
 */
int cli_config(struct cli *cli);
/* cli_time - "2026-11-23T17:58:00Z" */
void cli_time(time_t t, char *buf, size_t size);

/*
 * cli_env_find - the entry named name in the `destinations` environment
 * variable as a flat property object (a new reference): 0 found, 1 when
 * the variable is unset or has no such entry, -1 when it is not a JSON
 * array (outcome 4.3.5). Values are not checked here; dest_from_properties
 * does that.
 */
int cli_env_find(const char *name, json_t **props, struct outcome *o);
/*
 * cli_dest_each - for `check`: parse text as a JSON array of destinations
 * (the format of the destinations file and variable) and call fn for each
 * entry with the checked destination, or with d NULL and the outcome of
 * its checks. Returns the number of entries, or -1 with o set when the
 * text is not such an array.
 */
typedef void (*cli_dest_fn)(void *arg, const char *name, const char *source,
			    const struct mail_destination *d, const struct outcome *o);
int cli_dest_each(const char *text, size_t len, const char *source, cli_dest_fn fn, void *arg,
		  struct outcome *o);
/*
 * cli_resolve - the whole lookup chain: the `destinations` variable, then
 * dest_resolve_until() (destinations file, configuration, Destination
 * Service). Returns 0 with d filled, or -1 with the outcome (of kind
 * OUTCOME_NOT_FOUND when no link has the name).
 */
int cli_resolve(const struct config *cfg, const struct bindings *b, const char *name,
		double deadline, struct mail_destination *d, struct outcome *o);
/*
 * cli_env_config - for commands that hand the configuration to deliver():
 * when name is in the `destinations` variable, *run becomes a shallow copy
 * of cfg in which the destination is declared as destination.NAME.*
 * lines and the destinations file is off, so the library finds the
 * variable's entry first; free with cli_env_config_free(). Returns 0 (run
 * set, *changed tells whether it differs from cfg), -1 with the outcome.
 */
int cli_env_config(const struct config *cfg, const char *name, struct config *run,
		   int *changed, struct outcome *o);
void cli_env_config_free(const struct config *cfg, struct config *run);

/* the commands: argv[0] is the command name; each returns the exit status */
int cmd_check(struct cli *cli, int argc, char **argv);
int cmd_resolve(struct cli *cli, int argc, char **argv);
int cmd_token(struct cli *cli, int argc, char **argv);
int cmd_probe(struct cli *cli, int argc, char **argv);
int cmd_send(struct cli *cli, int argc, char **argv);
int cmd_cache(struct cli *cli, int argc, char **argv);
int cmd_routes(struct cli *cli, int argc, char **argv);
int cmd_metrics(struct cli *cli, int argc, char **argv);

#endif
