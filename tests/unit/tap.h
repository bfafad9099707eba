/*
 * tap.h - just enough TAP (Test Anything Protocol) for the unit tests:
 * every check prints "ok N - name" or "not ok N - name"; tap_done() prints
 * the plan and returns the exit status. Header-only on purpose.
 */
#ifndef BTPRELAY_TAP_H
#define BTPRELAY_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

static void __attribute__((format(printf, 2, 0))) tap_vresult(int pass, const char *fmt, va_list ap)
{
	tap_count++;
	if (!pass)
		tap_failed++;
	printf("%sok %d - ", pass ? "" : "not ", tap_count);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
}

/* ok - one check */
static inline int __attribute__((format(printf, 2, 3))) ok(int pass, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_vresult(pass, fmt, ap);
	va_end(ap);
	return pass;
}

/* is_int - integers equal, with both values shown on failure */
#define is_int(got, want, ...) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	if (!ok(g_ == w_, __VA_ARGS__)) \
		printf("#   got %lld, want %lld\n", g_, w_); \
} while (0)

/* is_str - strings equal (NULL only equals NULL) */
#define is_str(got, want, ...) do { \
	const char *g_ = (got), *w_ = (want); \
	int same_ = (g_ == NULL || w_ == NULL) ? g_ == w_ : strcmp(g_, w_) == 0; \
	if (!ok(same_, __VA_ARGS__)) \
		printf("#   got \"%s\"\n#  want \"%s\"\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
} while (0)

/* has_str - haystack contains needle */
#define has_str(hay, needle, ...) do { \
	const char *h_ = (hay), *n_ = (needle); \
	if (!ok(h_ != NULL && strstr(h_, n_) != NULL, __VA_ARGS__)) \
		printf("#   \"%s\"\n#   does not contain \"%s\"\n", h_ ? h_ : "(null)", n_); \
} while (0)

/* tap_done - print the plan; exit status 0 when every check passed */
static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
