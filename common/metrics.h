/*
 * metrics - btprelay's counters, shared by every process that uses one
 * metrics_dir: the transports pipe(8) starts for each delivery, the resident
 * btprelay-lmtp, the milter's threads and the operator's tool.
 *
 * The counters live in one file, METRICS_DIR/metrics (metrics_dir, by
 * default cache_dir, btprelay.conf(5)): a header and a fixed
 * array of 64-bit counters. Each process maps it (MAP_SHARED) once and
 * counts with atomic adds, so a count costs no system call, no lock and
 * no daemon. The file is created 0600 by the first process of the cache's
 * owner that opens it (a temporary file linked into place, so two
 * processes never see half a header), and refused when it is not a
 * regular file of this user of the expected size and header. When the
 * file cannot be used, every count is a no-op: metrics never make a
 * delivery fail.
 *
 * Counters only grow (Prometheus counters); they start at 0 when the file
 * is new, e.g. when metrics_dir is on a tmpfs (a restarted container).
 * metrics_format() writes them in the Prometheus text exposition format
 * (version 0.0.4), which OpenMetrics parsers read too.
 */
#ifndef BTPRELAY_METRICS_H
#define BTPRELAY_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_FILE "metrics"
#define METRICS_SLOTS_PER_FAMILY 16

/* the counter families; the order is the file's layout: append only */
enum metric {
	METRIC_TOKEN_FETCHES,		/* label service: connectivity, destination */
	METRIC_TOKEN_FETCH_ERRORS,	/* label service */
	METRIC_TOKEN_CACHE_HITS,	/* label service */
	METRIC_DEST_LOOKUPS,		/* dest_resolve() calls */
	METRIC_DEST_CACHE_HITS,		/* answered by the shared cache */
	METRIC_DEST_FETCHES,		/* requests to the Destination Service */
	METRIC_SOCKS_REPLIES,		/* label rep: the CONNECT reply's REP, 00..08, other */
	METRIC_SESSIONS_OPENED,		/* SMTP sessions with a relay */
	METRIC_SESSIONS_REUSED,		/* transactions on a session already open */
	METRIC_POSTFIX_DELIVERIES,	/* Postfix's status lines: label status and dsn_class */
	METRIC_COUNT
};

/*
 * metrics_open - map DIR/metrics for this process's counts, creating it
 * when missing (not as root: it would belong to root). Safe to call again
 * (the first mapping stays). 0 when counting, -1 when counts are no-ops
 * (dir empty, unusable: a debug line says why).
 */
int metrics_open(const char *dir);
/* metrics_close - unmap; counts become no-ops */
void metrics_close(void);

/* metrics_inc - count one for a family without labels */
void metrics_inc(enum metric m);
/*
 * metrics_inc_label - count one under the label value named key
 * ("connectivity", "sent 2"); a key the family does not know is dropped
 */
void metrics_inc_label(enum metric m, const char *key);
/* metrics_inc_code - count one under label number code (a REP); past the last: "other" */
void metrics_inc_code(enum metric m, unsigned code);

/* a snapshot of every counter, for metrics_format() */
struct metrics_snapshot {
	uint64_t v[METRIC_COUNT][METRICS_SLOTS_PER_FAMILY];
};

/*
 * metrics_read - the counters of DIR/metrics, read-only (any user that
 * can read the file: root, or the cache's owner). 0, or -1 with errbuf
 * ("no counters yet" when the file does not exist: s is all 0 then).
 */
int metrics_read(const char *dir, struct metrics_snapshot *s, char *errbuf, size_t errlen);
/* metrics_format - every family of s as exposition text on fp */
void metrics_format(FILE *fp, const struct metrics_snapshot *s);

/*
 * metrics_postfix_line - count one line of Postfix's log: a delivery's
 * status line (QUEUEID: to=<...>, relay=..., dsn=X.Y.Z, status=WORD ...)
 * adds one under its status and DSN class. Addresses are skipped as
 * Postfix quotes them, so a recipient that spells ", status=" counts
 * nothing false. Returns 1 when the line was a status line, else 0.
 */
int metrics_postfix_line(const char *line, size_t len);

#endif
