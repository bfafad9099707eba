/*
 * util - small helpers shared by the modules: strings, base64, files that
 * hold secrets.
 */
#ifndef BTPRELAY_UTIL_H
#define BTPRELAY_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* xstrdup, xmalloc, xcalloc - allocate or abort (out of memory is not a delivery outcome) */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* strlcpy-like: always NUL-terminates, returns strlen(src) */
size_t str_copy(char *dst, const char *src, size_t size);
/*
 * str_sanitize - in place, for a terminal or a log: control characters (C0,
 * DEL, C1), bidirectional overrides and bytes that are not UTF-8 become
 * repl, one per character or stray byte; the text can only get shorter
 */
void str_sanitize(char *s, char repl);
/* str_printable - copy s into dst (NUL bytes too) through str_sanitize(s, '?'); for log and exit texts */
void str_printable(char *dst, size_t size, const char *s, size_t len);

/* base64_encode - standard alphabet with '=' padding; returns length written (excl. NUL) or 0 if dst too small */
size_t base64_encode(const void *src, size_t len, char *dst, size_t dstsize);
/* base64_decode - standard alphabet, padding required; returns decoded length, or -1 on bad input/too small */
ssize_t base64_decode(const char *src, size_t len, void *dst, size_t dstsize);

/*
 * file_check_private - a file that holds secrets must not be readable or
 * writable by others (mode & 007 == 0). Returns 0, or -1 with errbuf
 * "PATH: readable by other users (mode 0644); chmod o-rwx PATH".
 */
int file_check_private(const char *path, char *errbuf, size_t errlen);
/* str_redact - replace every occurrence of secret (4 bytes or longer) in text by "********" */
void str_redact(char *text, size_t size, const char *secret);

/*
 * process_no_core - no core file for this process: it would hold tokens and
 * passwords (RLIMIT_CORE 0, not dumpable). Call again after setuid(), which
 * resets the dumpable flag.
 */
void process_no_core(void);

/* json_wipe - overwrite every string of a JSON document that held secrets, before it is released */
struct json_t;
void json_wipe(struct json_t *v);

/* file_read_all - read a whole (small) file, at most max bytes; NUL-terminated; NULL + errbuf on failure */
char *file_read_all(const char *path, size_t max, size_t *len, char *errbuf, size_t errlen);

/*
 * strbuf - a growable string, appended to with strbuf_printf(). With a
 * limit, it holds at most limit bytes: a text that reaches it is cut and
 * ends in "...", and nothing more is appended. str is always a string
 * ("" when nothing was appended); strbuf_free() releases it.
 */
struct strbuf {
	char *str;
	size_t len, size;
	size_t limit;		/* 0 = none */
};
void strbuf_init(struct strbuf *b, size_t limit);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_free(struct strbuf *b);

#endif
