/*
 * test-log - common/log.c: the log file is created (0640) and appended to;
 * a line is "Mon dd hh:mm:ss ident[pid]: QUEUEID: text", the queue id
 * first, a level word after it for errors, warnings and debug lines;
 * lines above the level are dropped; what a peer said cannot break a line
 * or reach a terminal as control bytes; an over-long line is cut, still
 * one line; the terminal form "ident: text"; an unusable file falls back
 * to syslog; log_level_parse().
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "tap.h"
#include "../lib/files.h"

static char dir[] = "/tmp/btprelay-test-log-XXXXXX";
static char path[512];

/* nlines - the number of LF-ended lines in text */
static int nlines(const char *text)
{
	int n = 0;

	for (; (text = strchr(text, '\n')) != NULL; text++)
		n++;
	return n;
}

/* line - line k (from 0) of the log file, without its LF; "" when there is none */
static const char *line(int k)
{
	static char buf[4096];
	const char *p = file_text(path), *end;

	for (; k > 0 && p != NULL; k--)
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	if (p == NULL || (end = strchr(p, '\n')) == NULL) {
		buf[0] = '\0';
		return buf;
	}
	snprintf(buf, sizeof(buf), "%.*s", (int)(end - p), p);
	return buf;
}

/* after_stamp - the line after its time stamp "Mon dd hh:mm:ss " (15 bytes and a space) */
static const char *after_stamp(const char *l)
{
	return strlen(l) > 16 && l[3] == ' ' && l[6] == ' ' && l[9] == ':' && l[12] == ':'
	       && l[15] == ' ' ? l + 16 : "(no time stamp)";
}

static void test_file(void)
{
	char want[256];
	struct stat st;
	mode_t old = umask(022);

	snprintf(path, sizeof(path), "%s/btprelay.log", dir);
	is_int(log_open("test-log", path, LOG_LVL_INFO), 0, "log_open of a new file: 0");
	if (stat(path, &st) < 0)
		st.st_mode = 0;
	is_int(st.st_mode & 0777, 0640, "the file is created 0640");
	umask(old);

	log_set_queue_id("4F2A1B2C3D");
	log_info("to=<%s>, relay=%s, status=sent (%s)", "a@corp.example", "relay[1.2.3.4]:25",
		 "250 2.0.0 Ok");
	snprintf(want, sizeof(want), "test-log[%ld]: 4F2A1B2C3D: to=<a@corp.example>, "
		 "relay=relay[1.2.3.4]:25, status=sent (250 2.0.0 Ok)", (long)getpid());
	is_str(after_stamp(line(0)), want, "time stamp, ident[pid], the queue id first, key=value");
	log_warn("w %d", 1);
	log_error("e %d", 2);
	log_debug("not at info level");
	snprintf(want, sizeof(want), "test-log[%ld]: 4F2A1B2C3D: warning: w 1", (long)getpid());
	is_str(after_stamp(line(1)), want, "a warning: \"warning: \" after the queue id");
	snprintf(want, sizeof(want), "test-log[%ld]: 4F2A1B2C3D: error: e 2", (long)getpid());
	is_str(after_stamp(line(2)), want, "an error: \"error: \" after the queue id");
	is_int(nlines(file_text(path)), 3, "a debug line at level info is dropped");

	log_set_queue_id(NULL);
	log_info("no queue id");
	snprintf(want, sizeof(want), "test-log[%ld]: no queue id", (long)getpid());
	is_str(after_stamp(line(3)), want, "without a queue id: the text right after ident[pid]");
	log_close();

	is_int(log_open("test-log", path, LOG_LVL_DEBUG), 0, "log_open of the same file again");
	log_debug("dbg");
	ok(nlines(file_text(path)) == 5 && log_has(path, "]: no queue id\n"),
	   "it is appended to: the earlier lines stay");
	has_str(line(4), "]: debug: dbg", "at level debug: \"debug: \" lines");

	log_info("relay said: 550 bad\r\n250 forged\x1b[31m red\x7f");
	is_int(nlines(file_text(path)), 6, "CR LF inside a text: still one line");
	has_str(line(5), "relay said: 550 bad  250 forged [31m red ", "control bytes become spaces");
	ok(strchr(file_text(path), '\x1b') == NULL && strchr(file_text(path), '\r') == NULL,
	   "no ESC, no CR in the file");
	log_info("destination MAIL_%s", "a\xe2\x80\xae" "b \xc3\xa9");
	has_str(line(6), "destination MAIL_a b \xc3\xa9", "a bidi override becomes a space, UTF-8 stays");
	log_close();
}

static void test_long_line(void)
{
	char *big = malloc(5000);
	const char *l;

	memset(big, 'x', 4999);
	big[4999] = '\0';
	unlink(path);
	log_open("test-log", path, LOG_LVL_INFO);
	log_set_queue_id("ABC");
	log_info("%s", big);
	log_info("next");
	l = line(0);
	ok(nlines(file_text(path)) == 2, "a 5000-byte text: cut, still one line before the next");
	ok(strlen(l) > 2000 && strlen(l) < 2304, "... at most one line buffer long (%zu)", strlen(l));
	has_str(l, "]: ABC: xxxx", "... with its queue id first");
	has_str(line(1), "]: ABC: next", "the next line is whole");
	log_close();
	log_set_queue_id(NULL);
	free(big);
}

static void test_terminal(void)
{
	char err[512];
	int saved = dup(STDERR_FILENO), fd;

	snprintf(err, sizeof(err), "%s/stderr", dir);
	fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || saved < 0 || dup2(fd, STDERR_FILENO) < 0) {
		perror(err);
		exit(99);
	}
	close(fd);
	log_open("btprelay", "terminal", LOG_LVL_INFO);
	log_set_queue_id("Q1");
	log_warn("cache directory %s: mode 0755", "/var/cache/btprelay");
	log_close();
	log_open("test-log", "stderr", LOG_LVL_INFO);
	log_info("plain");
	log_close();
	log_set_queue_id(NULL);
	dup2(saved, STDERR_FILENO);
	close(saved);
	{
		const char *text = file_text(err);
		char want[128];

		static const char term[] =
			"btprelay: Q1: warning: cache directory /var/cache/btprelay: mode 0755\n";

		ok(strncmp(text, term, strlen(term)) == 0,
		   "terminal: \"ident: \" then the line, no time stamp or pid");
		snprintf(want, sizeof(want), " test-log[%ld]: Q1: plain\n", (long)getpid());
		has_str(text, want, "stderr: the file form, with ident[pid]");
	}
	unlink(err);
}

static void test_levels(void)
{
	static const struct {
		const char *name;
		int level;
	} t[] = {
		{ "error", LOG_LVL_ERROR }, { "warning", LOG_LVL_WARN }, { "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG }, { "DEBUG", LOG_LVL_DEBUG }, { "Warning", LOG_LVL_WARN },
		{ "warn", -1 }, { "", -1 }, { "debug2", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		is_int(log_level_parse(t[i].name), t[i].level, "log_level_parse(\"%s\")", t[i].name);

	is_int(log_open("test-log", "/nonexistent-btprelay-dir/x.log", LOG_LVL_INFO), -1,
	       "a file that cannot be created: -1 (syslog instead)");
	ok(access("/nonexistent-btprelay-dir", F_OK) < 0, "... and no directory is made for it");
	log_close();
}

int main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	test_file();
	test_long_line();
	test_terminal();
	test_levels();
	unlink(path);
	rmdir(dir);
	return tap_done();
}
