/*
 * test-metrics - the shared counter file: created 0600, counted by many
 * processes at once without losing one, refused when it is not ours,
 * no-ops when off; the exposition text; Postfix's status lines counted,
 * and not fooled by addresses or replies that spell the fields.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tap.h"
#include "metrics.h"

#define CHILDREN 8
#define PER_CHILD 2000

/* text - the exposition of dir's counters (static buffer) */
static const char *text(const char *dir)
{
	static char buf[32768];
	struct metrics_snapshot s;
	char err[512];
	FILE *fp;

	metrics_read(dir, &s, err, sizeof(err));
	fp = fmemopen(buf, sizeof(buf), "w");
	metrics_format(fp, &s);
	fclose(fp);
	return buf;
}

static const struct {
	const char *line;
	int status_line;	/* metrics_postfix_line's answer */
	const char *why;
} lines[] = {
	{ "Dec 02 10:00:00 relay-0 postfix/lmtp[123]: 4Tk9Zx1abcz: to=<u@corp.example>, "
	  "relay=private/btprelay-lmtp-MAIL_ONPREM, delay=0.21, delays=0.1/0/0.01/0.1, dsn=2.0.0, "
	  "status=sent (250 2.0.0 Ok: queued as 77)", 1, "lmtp sent" },
	{ "Dec 02 10:00:01 relay-0 postfix/pipe[124]: 4Tk9Zx1abcz: to=<u@corp.example>, "
	  "orig_to=<alias@corp.example>, relay=btprelay, delay=1, delays=0.1/0/0/1, dsn=4.4.1, "
	  "status=deferred (4.4.1 proxy CONNECT failed: REP 04)", 1, "pipe deferred with orig_to" },
	{ "Dec 02 10:00:02 relay-0 postfix/error[125]: 4Tk9Zx1abcd: to=<u@elsewhere.example>, "
	  "relay=none, delay=0, delays=0/0/0/0, dsn=5.1.2, status=bounced (domain not routed)", 1,
	  "error bounced" },
	{ "Dec 02 10:00:03 relay-0 postfix/lmtp[126]: 4Tk9Zx1abce: to=<\"x, dsn=5.0.0, "
	  "status=bounced (\"@corp.example>, relay=lmtp, delay=1, delays=1/0/0/0, dsn=2.0.0, "
	  "status=sent (250 ok)", 1, "an address that spells the fields counts as what it is" },
	{ "Dec 02 10:00:04 relay-0 postfix/lmtp[126]: 4Tk9Zx1abcf: to=<\"a\\\">b\"@corp.example>, "
	  "relay=lmtp, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 ok, dsn=5.0.0, "
	  "status=bounced)", 1, "an escaped quote and '>' inside quotes; a reply that spells them" },
	{ "Dec 02 10:00:05 relay-0 btprelay-lmtp[42]: 4Tk9Zx1abcz: to=<u@corp.example>, "
	  "relay=relay.corp.example[10.0.0.1]:25, dsn=2.0.0, status=sent (250 ok)", 0,
	  "btprelay's own line (no NAME/SERVICE tag)" },
	{ "Dec 02 10:00:06 relay-0 postfix/qmgr[9]: 4Tk9Zx1abcz: from=<a@client.test>, "
	  "status=expired, returned to sender", 0, "qmgr's expired line names no recipient" },
	{ "Dec 02 10:00:07 relay-0 postfix/lmtp[126]: 4Tk9Zx1abcz: to=<u@corp.example>, "
	  "relay=lmtp, delay=1, delays=1/0/0/0, dsn=2.0.0, sta", 0, "a truncated line" },
	{ "Dec 02 10:00:08 relay-0 postfix/lmtp[126]: 4Tk9Zx1abcz: to=<\"unterminated@x, dsn=2.0.0, "
	  "status=sent (ok)", 0, "an address that never ends" },
	{ "Dec 02 10:00:09 relay-0 postfix/smtp[126]: 4Tk9Zx1abcz: to=<u@x>, relay=none, delay=1, "
	  "delays=1/0/0/0, dsn=2.1.5, status=deliverable (verified)", 1,
	  "an address probe: a status line, no delivery counted" },
	{ "Dec 02 10:00:10 relay-0 postfix/smtpd[12]: connect from localhost[127.0.0.1]", 0,
	  "other lines" },
};

int main(void)
{
	char dir[] = "/tmp/btprelay-test-metrics.XXXXXX", path[400], other[300], err[512];
	struct metrics_snapshot s;
	struct stat st;
	pid_t pid;
	int i, status, fd, children_ok = 1;
	size_t k;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, METRICS_FILE);

	ok(metrics_read(dir, &s, err, sizeof(err)) < 0 && strstr(err, "no counters yet") != NULL,
	   "no file yet: read says so (%s)", err);
	metrics_inc(METRIC_DEST_LOOKUPS);	/* before any open: a no-op, not a crash */
	is_int(metrics_open(""), -1, "cache_dir empty: metrics off");
	if (geteuid() == 0) {
		/* root does not create the transport's file; the rest runs as nobody */
		is_int(metrics_open(dir), -1, "root creates no counter file");
		ok(stat(path, &st) < 0, "and none is there");
		if (chown(dir, 65534, 65534) < 0 || setgid(65534) < 0 || setuid(65534) < 0) {
			perror("becoming nobody");
			return 99;
		}
	}
	is_int(metrics_open(dir), 0, "metrics_open creates the file");
	ok(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600,
	   "a regular file, mode 0600 (%04o)", (unsigned)(st.st_mode & 0777));
	is_int(st.st_size, 4096, "of a fixed size");
	is_int(metrics_open(dir), 0, "a second open keeps the mapping");

	/* many processes count at once: pipe(8)'s transports do */
	for (i = 0; i < CHILDREN; i++) {
		if ((pid = fork()) == 0) {
			int n;

			metrics_close();
			if (metrics_open(dir) < 0)
				_exit(1);
			for (n = 0; n < PER_CHILD; n++) {
				metrics_inc(METRIC_SESSIONS_OPENED);
				metrics_inc_label(METRIC_TOKEN_FETCHES, "connectivity");
				metrics_inc_code(METRIC_SOCKS_REPLIES, 0);
			}
			_exit(0);
		}
	}
	for (i = 0; i < CHILDREN; i++)
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			children_ok = 0;
	ok(children_ok, "%d processes counted", CHILDREN);
	metrics_inc(METRIC_SESSIONS_OPENED);
	is_int(metrics_read(dir, &s, err, sizeof(err)), 0, "read");
	is_int(s.v[METRIC_SESSIONS_OPENED][0], CHILDREN * PER_CHILD + 1,
	       "no count lost: %d x %d + 1", CHILDREN, PER_CHILD);
	is_int(s.v[METRIC_TOKEN_FETCHES][0], CHILDREN * PER_CHILD, "labelled counts too");

	metrics_inc_code(METRIC_SOCKS_REPLIES, 5);
	metrics_inc_code(METRIC_SOCKS_REPLIES, 0x80);
	metrics_inc_label(METRIC_TOKEN_FETCHES, "destination");
	metrics_inc_label(METRIC_TOKEN_FETCHES, "no such label");
	metrics_inc(METRIC_DEST_LOOKUPS);
	has_str(text(dir), "# TYPE btprelay_socks_replies_total counter\n", "TYPE line");
	has_str(text(dir), "# HELP btprelay_socks_replies_total ", "HELP line");
	has_str(text(dir), "\nbtprelay_socks_replies_total{rep=\"05\"} 1\n", "REP 05 counted");
	has_str(text(dir), "\nbtprelay_socks_replies_total{rep=\"other\"} 1\n", "REP 80 is other");
	has_str(text(dir), "\nbtprelay_socks_replies_total{rep=\"00\"} 16000\n", "REP 00");
	has_str(text(dir), "\nbtprelay_token_fetches_total{service=\"destination\"} 1\n",
		"an unknown label counts nothing");
	has_str(text(dir), "\nbtprelay_destination_lookups_total 1\n", "a counter without labels");
	has_str(text(dir), "\nbtprelay_relay_sessions_reused_total 0\n", "zeros are shown");

	/* Postfix's status lines */
	for (k = 0; k < sizeof(lines) / sizeof(lines[0]); k++)
		is_int(metrics_postfix_line(lines[k].line, strlen(lines[k].line)), lines[k].status_line,
		       "status line: %s", lines[k].why);
	has_str(text(dir), "\npostfix_deliveries_total{status=\"sent\",dsn_class=\"2\"} 3\n",
		"three sent");
	has_str(text(dir), "\npostfix_deliveries_total{status=\"deferred\",dsn_class=\"4\"} 1\n",
		"one deferred");
	has_str(text(dir), "\npostfix_deliveries_total{status=\"bounced\",dsn_class=\"5\"} 1\n",
		"one bounced: the address's fake fields are not counted");

	/* a file that is not ours is never written */
	metrics_close();
	metrics_inc(METRIC_DEST_LOOKUPS);
	is_int(metrics_read(dir, &s, err, sizeof(err)), 0, "read after close");
	is_int(s.v[METRIC_DEST_LOOKUPS][0], 1, "closed: counts are no-ops");
	snprintf(other, sizeof(other), "%s/other", dir);
	mkdir(other, 0700);
	snprintf(path, sizeof(path), "%s/%s", other, METRICS_FILE);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	for (i = 0; i < 64; i++)
		(void)!write(fd, "not a counter file, not a counter file, not a counter file!!!!\n", 64);
	close(fd);
	is_int(metrics_open(other), -1, "a file with another header is refused");
	ok(metrics_read(other, &s, err, sizeof(err)) < 0, "and not read (%s)", err);
	unlink(path);
	is_int(metrics_open(other), 0, "a new one is made in its place");
	metrics_close();
	chmod(path, 0620);
	is_int(metrics_open(other), -1, "a file others may write is refused");
	unlink(path);
	snprintf(other, sizeof(other), "%s/%s", dir, METRICS_FILE);
	ok(symlink(other, path) == 0, "other/metrics: a symbolic link to the real file");
	snprintf(other, sizeof(other), "%s/other", dir);
	is_int(metrics_open(other), -1, "a symbolic link is refused");
	unlink(path);
	rmdir(other);
	snprintf(path, sizeof(path), "%s/%s", dir, METRICS_FILE);
	unlink(path);
	rmdir(dir);
	return tap_done();
}
