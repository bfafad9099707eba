/*
 * log - Postfix-style log lines: "QUEUEID: key=value, ..." to syslog (mail
 * facility), stderr or a file. The queue id is set once per delivery and
 * prefixes every line. Secrets never go through here: callers log names,
 * not values.
 */
#ifndef BTPRELAY_LOG_H
#define BTPRELAY_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/*
 * log_open - target is "syslog", "stderr" or an absolute file path (opened
 * for append, created 0640), or "terminal": stderr with lines in the form
 * "ident: text" of an interactive command (not a btprelay.conf value). Returns 0, or -1 when the file cannot be opened
 * (then logging falls back to syslog).
 */
int log_open(const char *ident, const char *target, enum log_level level);
/* log_set_queue_id - prefix for every following line ("3F2A1B2C3D: "), NULL for none */
void log_set_queue_id(const char *queue_id);
/* log_level_parse - "error", "warning", "info", "debug" -> level; -1 if unknown */
int log_level_parse(const char *name);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_close(void);
/*
 * log_reopen - log_open() with the last target, ident and level: a forked
 * helper that closed every inherited descriptor (log_close() first) logs on
 */
int log_reopen(void);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
