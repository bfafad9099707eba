/*
 * log - Postfix-style log lines to syslog, stderr or a file.
 *
 * A line is "QUEUEID: text" (or just "text" without a queue id). To a file
 * or stderr a timestamp and "ident[pid]:" come first, as syslog would write
 * them, so one grep works on both. Writes to a file are one write(2) per
 * line with O_APPEND, so concurrent transport processes do not interleave.
 * To a terminal ("terminal": an interactive command's stderr) a line is
 * "ident: text", the form of Postfix's own commands. Every line goes
 * through str_sanitize() first: nothing a peer or a destination said can
 * move the cursor, recolour a terminal or split a line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static char log_ident[64] = "btprelay";
static char log_target[4096];	/* as given to log_open, for log_reopen */
static char log_qid[64];
static int log_fd = -1;		/* file or stderr; -1 = syslog */
static int log_fd_owned;
static int log_plain;		/* "ident: text", no time stamp or pid */
static enum log_level log_max = LOG_LVL_INFO;

/* log_open - choose the target */
int log_open(const char *ident, const char *target, enum log_level level)
{
	int ret = 0;

	log_close();
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
	snprintf(log_target, sizeof(log_target), "%s", target ? target : "");
	log_max = level;
	if (target != NULL && (strcmp(target, "stderr") == 0 || strcmp(target, "terminal") == 0)) {
		log_fd = STDERR_FILENO;
		log_plain = strcmp(target, "terminal") == 0;
	} else if (target != NULL && target[0] == '/') {
		log_fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (log_fd >= 0) {
			log_fd_owned = 1;
		} else {
			ret = -1;
			openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
			syslog(LOG_WARNING, "cannot open log file %s: %s; logging to syslog",
			       target, strerror(errno));
		}
	}
	if (log_fd < 0)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	return ret;
}

/* log_reopen - the target of the last log_open again, after log_close */
int log_reopen(void)
{
	char ident[sizeof(log_ident)], target[sizeof(log_target)];

	snprintf(ident, sizeof(ident), "%s", log_ident);
	snprintf(target, sizeof(target), "%s", log_target);
	return log_open(ident, target[0] ? target : NULL, log_max);
}

/* log_set_queue_id - prefix for every following line */
void log_set_queue_id(const char *queue_id)
{
	snprintf(log_qid, sizeof(log_qid), "%s", queue_id ? queue_id : "");
}

/* log_level_parse - name -> level */
int log_level_parse(const char *name)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

/* log_msg - one line */
void log_msg(enum log_level level, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *const tag[] = { "error: ", "warning: ", "", "debug: " };
	char text[2048], line[2304];
	va_list ap;
	int n;

	if (level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	str_sanitize(text, ' ');

	if (log_fd < 0) {
		syslog(prio[level], "%s%s%s%s", log_qid, log_qid[0] ? ": " : "", tag[level], text);
		return;
	}

	time_t now = time(NULL);
	struct tm tm;
	char stamp[32];

	if (log_plain) {
		n = snprintf(line, sizeof(line), "%s: %s%s%s%s\n", log_ident, log_qid,
			     log_qid[0] ? ": " : "", tag[level], text);
	} else {
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s %s[%ld]: %s%s%s%s\n", stamp, log_ident,
			     (long)getpid(), log_qid, log_qid[0] ? ": " : "", tag[level], text);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(log_fd, line, (size_t)n) < 0) {
		/* nowhere left to report it */
	}
}

/* log_close - release the target */
void log_close(void)
{
	if (log_fd_owned)
		close(log_fd);
	else if (log_fd < 0)
		closelog();
	log_fd = -1;
	log_fd_owned = 0;
	log_plain = 0;
}
