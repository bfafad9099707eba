/*
 * metrics - the shared counter file and its exposition (metrics.h).
 *
 * File layout (METRICS_FILE_SIZE bytes): a 64-byte header (the text
 * METRICS_MAGIC, NUL-padded), then METRICS_FAMILIES_MAX families of
 * METRICS_SLOTS_PER_FAMILY 64-bit counters in host byte order: counter i
 * of family f at slot f * 16 + i. New families are appended, so an older
 * program reads a newer file and the other way round.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

#define METRICS_MAGIC "btprelay metrics 1\n"
#define METRICS_HEADER 64
#define METRICS_FILE_SIZE 4096
#define METRICS_FAMILIES_MAX ((METRICS_FILE_SIZE - METRICS_HEADER) / 8 / METRICS_SLOTS_PER_FAMILY)

_Static_assert(METRIC_COUNT <= METRICS_FAMILIES_MAX, "metrics: the file has no room for the families");

/* one label value: what callers name it, and how the exposition writes it */
struct metric_label {
	const char *key;
	const char *text;
};

struct metric_family {
	const char *name;		/* the counter's name, without _total */
	const char *help;
	const struct metric_label *labels;	/* NULL: one counter without labels */
	size_t nlabels;
};

static const struct metric_label service_labels[] = {
	{ "connectivity", "service=\"connectivity\"" },
	{ "destination", "service=\"destination\"" },
};

/* SOCKS5 REP codes (RFC 1928 section 6, SAP's 0x80 method keeps them) */
static const struct metric_label rep_labels[] = {
	{ "00", "rep=\"00\"" }, { "01", "rep=\"01\"" }, { "02", "rep=\"02\"" },
	{ "03", "rep=\"03\"" }, { "04", "rep=\"04\"" }, { "05", "rep=\"05\"" },
	{ "06", "rep=\"06\"" }, { "07", "rep=\"07\"" }, { "08", "rep=\"08\"" },
	{ "other", "rep=\"other\"" },
};

#define DELIVERY(status, cls) { status " " cls, "status=\"" status "\",dsn_class=\"" cls "\"" }
static const struct metric_label delivery_labels[] = {
	DELIVERY("sent", "2"), DELIVERY("sent", "4"), DELIVERY("sent", "5"),
	DELIVERY("deferred", "2"), DELIVERY("deferred", "4"), DELIVERY("deferred", "5"),
	DELIVERY("bounced", "2"), DELIVERY("bounced", "4"), DELIVERY("bounced", "5"),
};

#define LABELS(a) a, sizeof(a) / sizeof(a[0])
static const struct metric_family families[METRIC_COUNT] = {
	[METRIC_TOKEN_FETCHES] = { "btprelay_token_fetches",
		"Token requests to the token service, by binding", LABELS(service_labels) },
	[METRIC_TOKEN_FETCH_ERRORS] = { "btprelay_token_fetch_errors",
		"Token requests that brought no token, by binding", LABELS(service_labels) },
	[METRIC_TOKEN_CACHE_HITS] = { "btprelay_token_cache_hits",
		"Tokens taken from the shared cache, by binding", LABELS(service_labels) },
	[METRIC_DEST_LOOKUPS] = { "btprelay_destination_lookups",
		"MAIL destinations looked up (destinations file, configuration, "
		"Destination Service)", NULL, 0 },
	[METRIC_DEST_CACHE_HITS] = { "btprelay_destination_cache_hits",
		"Destination Service answers taken from the shared cache", NULL, 0 },
	[METRIC_DEST_FETCHES] = { "btprelay_destination_fetches",
		"Find requests to the Destination Service", NULL, 0 },
	[METRIC_SOCKS_REPLIES] = { "btprelay_socks_replies",
		"Connectivity proxy CONNECT replies, by REP code", LABELS(rep_labels) },
	[METRIC_SESSIONS_OPENED] = { "btprelay_relay_sessions_opened",
		"SMTP sessions opened with a relay", NULL, 0 },
	[METRIC_SESSIONS_REUSED] = { "btprelay_relay_sessions_reused",
		"Transactions carried by a relay session already open", NULL, 0 },
	[METRIC_POSTFIX_DELIVERIES] = { "postfix_deliveries",
		"Postfix delivery attempts by recipient, by status and DSN class "
		"(its log's status= lines)", LABELS(delivery_labels) },
};

/* this process's mapping of the file; NULL: counts are no-ops */
static uint64_t *metrics_slots;

/* metrics_path - DIR/metrics into buf; -1 when dir is empty or too long */
static int metrics_path(const char *dir, char *buf, size_t size)
{
	int n;

	if (dir == NULL || *dir == '\0')
		return -1;
	n = snprintf(buf, size, "%s/%s", dir, METRICS_FILE);
	return n > 0 && (size_t)n < size ? 0 : -1;
}

/* metrics_create - a new file, linked into place whole; losing the race to another is fine */
static void metrics_create(const char *path)
{
	char tmp[4200], header[METRICS_HEADER];
	int fd, ok;

	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0)
		return;
	memset(header, 0, sizeof(header));
	memcpy(header, METRICS_MAGIC, strlen(METRICS_MAGIC));
	ok = ftruncate(fd, METRICS_FILE_SIZE) == 0
	     && pwrite(fd, header, sizeof(header), 0) == (ssize_t)sizeof(header);
	close(fd);
	if (ok && link(tmp, path) < 0 && errno != EEXIST)
		log_debug("metrics: %s: %s", path, strerror(errno));
	unlink(tmp);
}

/*
 * metrics_map - open path and map it when it is the counter file: a
 * regular file of the right size and header (and, to write, of this user
 * and not writable by others). NULL with errbuf otherwise.
 */
static void *metrics_map(const char *path, int writable, char *errbuf, size_t errlen)
{
	struct stat st;
	void *p;
	int fd;

	fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != METRICS_FILE_SIZE
	    || (writable && (st.st_uid != geteuid() || (st.st_mode & 022) != 0))) {
		snprintf(errbuf, errlen, "%s: not a counter file of this user (mode 0600, %d bytes)",
			 path, METRICS_FILE_SIZE);
		close(fd);
		return NULL;
	}
	p = mmap(NULL, METRICS_FILE_SIZE, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
		 fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(errbuf, errlen, "%s: mmap: %s", path, strerror(errno));
		return NULL;
	}
	if (memcmp(p, METRICS_MAGIC, strlen(METRICS_MAGIC)) != 0) {
		snprintf(errbuf, errlen, "%s: not a counter file (its header differs)", path);
		munmap(p, METRICS_FILE_SIZE);
		return NULL;
	}
	return p;
}

/* metrics_open - map DIR/metrics for counting */
int metrics_open(const char *dir)
{
	char path[4096], err[4300];
	void *p;

	if (metrics_slots != NULL)
		return 0;
	if (metrics_path(dir, path, sizeof(path)) < 0)
		return -1;
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		if (geteuid() == 0)
			return -1;	/* root's file could never be written by the transport's user */
		metrics_create(path);
	}
	if ((p = metrics_map(path, 1, err, sizeof(err))) == NULL) {
		log_debug("metrics off: %s", err);
		return -1;
	}
	metrics_slots = (uint64_t *)((char *)p + METRICS_HEADER);
	return 0;
}

/* metrics_close - unmap */
void metrics_close(void)
{
	if (metrics_slots != NULL)
		munmap((char *)metrics_slots - METRICS_HEADER, METRICS_FILE_SIZE);
	metrics_slots = NULL;
}

/* metrics_add - one more in slot i of family m */
static void metrics_add(enum metric m, size_t i)
{
	if (metrics_slots == NULL || (unsigned)m >= METRIC_COUNT || i >= METRICS_SLOTS_PER_FAMILY)
		return;
	__atomic_fetch_add(&metrics_slots[(size_t)m * METRICS_SLOTS_PER_FAMILY + i], 1,
			   __ATOMIC_RELAXED);
}

/* metrics_inc - count one, no labels */
void metrics_inc(enum metric m)
{
	metrics_add(m, 0);
}

/* metrics_inc_label - count one under the label value key */
void metrics_inc_label(enum metric m, const char *key)
{
	size_t i;

	if ((unsigned)m >= METRIC_COUNT || key == NULL)
		return;
	for (i = 0; i < families[m].nlabels; i++)
		if (strcmp(families[m].labels[i].key, key) == 0) {
			metrics_add(m, i);
			return;
		}
}

/* metrics_inc_code - count one under label number code, the last label for any beyond it */
void metrics_inc_code(enum metric m, unsigned code)
{
	size_t n;

	if ((unsigned)m >= METRIC_COUNT || (n = families[m].nlabels) == 0)
		return;
	metrics_add(m, code < n - 1 ? code : n - 1);
}

/* metrics_read - a snapshot of DIR/metrics */
int metrics_read(const char *dir, struct metrics_snapshot *s, char *errbuf, size_t errlen)
{
	char path[4096];
	const uint64_t *slots;
	void *p;
	size_t f, i;

	memset(s, 0, sizeof(*s));
	if (metrics_path(dir, path, sizeof(path)) < 0) {
		snprintf(errbuf, errlen, "metrics_dir (cache_dir) is empty: no counters are kept");
		return -1;
	}
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		snprintf(errbuf, errlen, "%s: no counters yet", path);
		return -1;
	}
	if ((p = metrics_map(path, 0, errbuf, errlen)) == NULL)
		return -1;
	slots = (const uint64_t *)((const char *)p + METRICS_HEADER);
	for (f = 0; f < METRIC_COUNT; f++)
		for (i = 0; i < METRICS_SLOTS_PER_FAMILY; i++)
			s->v[f][i] = __atomic_load_n(&slots[f * METRICS_SLOTS_PER_FAMILY + i],
						     __ATOMIC_RELAXED);
	munmap(p, METRICS_FILE_SIZE);
	return 0;
}

/* metrics_format - the families as Prometheus text: HELP, TYPE, one line per counter */
void metrics_format(FILE *fp, const struct metrics_snapshot *s)
{
	const struct metric_family *f;
	size_t m, i;

	for (m = 0; m < METRIC_COUNT; m++) {
		f = &families[m];
		fprintf(fp, "# HELP %s_total %s.\n# TYPE %s_total counter\n", f->name, f->help,
			f->name);
		if (f->labels == NULL)
			fprintf(fp, "%s_total %llu\n", f->name, (unsigned long long)s->v[m][0]);
		for (i = 0; i < f->nlabels; i++)
			fprintf(fp, "%s_total{%s} %llu\n", f->name, f->labels[i].text,
				(unsigned long long)s->v[m][i]);
	}
}

/*
 * skip_address - past "<...>" as Postfix logs an address: a quoted local
 * part may hold '>' and '"' (escaped); NULL when the line ends inside
 */
static const char *skip_address(const char *p, const char *end)
{
	int quoted = 0;

	if (p >= end || *p++ != '<')
		return NULL;
	for (; p < end; p++) {
		if (quoted && *p == '\\')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '>')
			return p + 1;
	}
	return NULL;
}

/* starts - p begins with word (within end) */
static int starts(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

/* find - the first word in [p, end), or NULL */
static const char *find(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);

	for (; p != NULL && (size_t)(end - p) >= n; p++)
		if (memcmp(p, word, n) == 0)
			return p;
	return NULL;
}

/* metrics_postfix_line - count a delivery status line of Postfix's log */
int metrics_postfix_line(const char *line, size_t len)
{
	const char *end = line + len, *p, *tag, *q;
	char key[32];
	size_t n;

	/* "... NAME/SERVICE[PID]: QUEUEID: to=<" (btprelay's own tags have no '/') */
	if ((p = find(line, end, "]: ")) == NULL)
		return 0;
	for (tag = p; tag > line && tag[-1] != ' '; tag--)
		;
	if ((q = memchr(tag, '[', (size_t)(p - tag))) == NULL || memchr(tag, '/', (size_t)(q - tag)) == NULL)
		return 0;
	for (p += 3, n = 0; p < end && ((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z')
					|| (*p >= 'a' && *p <= 'z')); p++)
		n++;
	if (n == 0 || !starts(p, end, ": to="))
		return 0;
	if ((p = skip_address(p + 5, end)) == NULL)
		return 0;
	if (starts(p, end, ", orig_to=") && (p = skip_address(p + 10, end)) == NULL)
		return 0;
	/* relay=, delay=, delays= hold no ", dsn=": the first one is the status's */
	if ((p = find(p, end, ", dsn=")) == NULL)
		return 0;
	p += 6;
	if (end - p < 2 || (*p != '2' && *p != '4' && *p != '5') || p[1] != '.')
		return 0;
	for (q = p; q < end && ((*q >= '0' && *q <= '9') || *q == '.'); q++)
		;
	if (!starts(q, end, ", status="))
		return 0;
	q += 9;
	for (n = 0; q + n < end && n < 12 && q[n] >= 'a' && q[n] <= 'z'; n++)
		;
	if (n == 0 || (q + n < end && q[n] != ' '))
		return 0;
	snprintf(key, sizeof(key), "%.*s %c", (int)n, q, *p);
	metrics_inc_label(METRIC_POSTFIX_DELIVERIES, key);
	return 1;
}
