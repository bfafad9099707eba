/*
 * cache - `btprelay cache list|clear`: the token and destination cache
 * that the transport's processes share (cache_dir, btprelay.conf(5)),
 * through cache.h's cache_list() and cache_clear().
 *
 * The cache belongs to the user the transport runs as, and the library
 * trusts only files of the user that reads them. Run as root, this command
 * therefore acts as the owner of cache_dir: it drops to that user (and its
 * group) for good before it touches the directory. Entries are listed
 * with what they say about themselves (never their data: tokens), their
 * age, size, freshness and the facts of their key (service URL, client,
 * tenant: two entries of one destination differ there), and each failure
 * note with its text, age and time left. clear removes entries, failure
 * notes and temporary files; lock files stay (cache.c explains why).
 *
 * Exit: 0 done (also when caching is off or the directory does not exist
 * yet), 78 the directory cannot be used, 71 the user could not be changed.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cli.h"
#include "metrics.h"

struct listing {
	const char *dir;
	time_t now;
	int notes;		/* failure notes seen */
};

/* cli_become_owner - as root, become the owner of dir (and its group) for good; -1 on failure */
int cli_become_owner(const struct cli *cli, const struct stat *st, const char *dir)
{
	struct passwd *pw;
	gid_t gid;

	if (geteuid() != 0 || st->st_uid == 0)
		return 0;
	pw = getpwuid(st->st_uid);
	gid = pw != NULL ? pw->pw_gid : st->st_gid;
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(st->st_uid) < 0) {
		cli_error("cannot become uid %u, the owner of %s: %s", (unsigned)st->st_uid, dir,
			  strerror(errno));
		return -1;
	}
	metrics_open(cli->cfg.metrics_dir);	/* root could not count; the owner does */
	return 0;
}

/* list_one - cache_list_fn: one line per entry or failure note */
static void list_one(void *arg, const struct cache_item *it)
{
	struct listing *l = arg;
	const struct cache_entry *e = it->e;
	char path[4096], state[200], about[400];
	const char *status, *text;
	struct stat st;
	long size = -1;
	double noted_at;

	if (snprintf(path, sizeof(path), "%s/%s", l->dir, it->file) < (int)sizeof(path)
	    && lstat(path, &st) == 0)
		size = (long)st.st_size;
	if (it->note)
		l->notes++;
	if (it->what == NULL) {
		cli_fact(it->file, "(not trusted: ignored by the transport and replaced on the next "
			 "store); %ld bytes", size);
		return;
	}
	/* the facts of the key tell two entries of one name apart (bindings changed) */
	snprintf(about, sizeof(about), "%s%s%s", it->what[0] ? it->what : "?",
		 it->about[0] ? ", " : "", it->about);
	if (it->note) {
		status = json_string_value(json_object_get(e->data, "status"));
		text = json_string_value(json_object_get(e->data, "text"));
		noted_at = json_number_value(json_object_get(e->data, "noted_at"));
		if (l->now < e->expires_at)
			snprintf(state, sizeof(state), "expires in %ld s",
				 (long)(e->expires_at - l->now));
		else
			snprintf(state, sizeof(state), "expired");
		cli_fact(it->file, "failure note for %s: %s %s; failed %ld s ago; answers only "
			 "the deliveries that were waiting for that lookup, later ones ask again; "
			 "%s; `btprelay cache clear` drops it", about, status ? status : "?",
			 text ? text : "?", noted_at > 0 ? (long)(cache_clock() - noted_at)
			 : (long)(l->now - e->stored_at), state);
		return;
	}
	if (l->now < e->expires_at)
		snprintf(state, sizeof(state), "fresh for %ld s", (long)(e->expires_at - l->now));
	else if (l->now < e->stale_until)
		snprintf(state, sizeof(state), "expired %ld s ago, may stand in for %ld s more "
			 "while the service fails", (long)(l->now - e->expires_at),
			 (long)(e->stale_until - l->now));
	else
		snprintf(state, sizeof(state), "expired %ld s ago", (long)(l->now - e->expires_at));
	cli_fact(it->file, "%s; %ld s old; %ld bytes; %s", about, (long)(l->now - e->stored_at),
		 size, state);
}

/* cmd_cache - cache list|clear */
int cmd_cache(struct cli *cli, int argc, char **argv)
{
	const char *dir;
	struct cache c;
	struct listing l = { NULL, 0, 0 };
	struct stat st;
	int rc, n, list;

	if (argc != 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "clear") != 0)) {
		cli_error("usage: btprelay cache list|clear");
		return EX_USAGE;
	}
	list = strcmp(argv[1], "list") == 0;
	if ((rc = cli_config(cli)) != 0)
		return rc;
	dir = cli->cfg.cache_dir;
	if (dir[0] == '\0') {
		cli_error("cache_dir is empty in %s: caching is off", cli->cfg.path);
		cli_fact(list ? "entries" : "removed", "0");
		return EX_OK;
	}
	if (lstat(dir, &st) < 0 && errno == ENOENT) {
		cli_error("cache_dir %s does not exist: nothing is cached", dir);
		cli_fact(list ? "entries" : "removed", "0");
		return EX_OK;
	}
	if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && cli_become_owner(cli, &st, dir) < 0)
		return EX_OSERR;
	if (cache_open(&c, dir) < 0) {
		cli_error("cache_dir %s cannot be used (see above)", dir);
		return EX_CONFIG;
	}
	if (list) {
		l.dir = dir;
		l.now = time(NULL);
		l.notes = 0;
		n = cache_list(&c, list_one, &l);
	} else {
		n = cache_clear(&c);
	}
	cache_close(&c);
	if (n < 0) {
		cli_error("cache_dir %s: cannot read the directory: %s", dir, strerror(errno));
		return EX_CONFIG;
	}
	cli_fact(list ? "entries" : "removed", "%d", n);
	if (list)
		cli_fact("failure_notes", "%d", l.notes);
	return EX_OK;
}
