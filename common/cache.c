/*
 * cache - tokens and destinations in a private directory, shared by every
 * process of the user that owns it (btprelay(8): cache, FAILURE NOTES).
 *
 * Files: KIND-HEX.json (an entry), KIND-HEX.fail (a failed fetch, kept a
 * few seconds), KIND-HEX.lock (the single-flight lock, never removed: a
 * lock file that is unlinked while held would let two processes hold "the"
 * lock). Entries are written to KIND-HEX.json.XXXXXX (mkstemp: 0600,
 * O_EXCL) and renamed into place. Nothing read from the directory is
 * trusted unless it is a regular file (not a symbolic link, not a FIFO) of
 * this user with no group or other permission bits, at most 1 MiB, with
 * the envelope this module writes; anything else is ignored with a warning
 * and replaced by the next store. No function here can fail a delivery:
 * each problem turns the cache off for that step, and the caller asks the
 * service as it would without a cache.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <pwd.h>

#include "cache.h"
#include "conn.h"
#include "log.h"
#include "sha256.h"
#include "util.h"

#define CACHE_VERSION 1
#define CACHE_MAX_FILE (1024 * 1024)
#define CACHE_FUTURE_SLACK 300	/* seconds an entry may claim to be from the future (clock steps) */
#define CACHE_LOCK_POLL 0.02	/* seconds between two flock() attempts */
#define CACHE_PATH_MAX 4096
#define CACHE_WHAT_MAX 300

/* what an entry or a note says about itself, for listings */
struct cache_label {
	char what[CACHE_WHAT_MAX];
	char about[CACHE_WHAT_MAX];
};

/* the failure note that last answered this thread's cache_get(), for cache_last_note() */
static _Thread_local struct cache_note cache_served;
static _Thread_local int cache_served_set;

/* when this process's work began, for requests that do not say (cache_since) */
static double cache_epoch;

/* cache_since - requests that do not set since began at t (0: at their call) */
void cache_since(double t)
{
	cache_epoch = t;
}

/* cache_clock - wall clock in seconds with a fraction: failure notes compare moments */
double cache_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * cache_warn_dir - a warning about the cache directory, at most once a
 * minute per text: every cache_open() of a run (token, destination) would
 * say the same again
 */
static void __attribute__((format(printf, 1, 2))) cache_warn_dir(const char *fmt, ...)
{
	static _Thread_local char last[600];
	static _Thread_local time_t last_at;
	char text[600];
	time_t now = time(NULL);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (strcmp(text, last) == 0 && now - last_at < 60)
		return;
	str_copy(last, text, sizeof(last));
	last_at = now;
	log_warn("%s", text);
}

/* cache_key_valid - KIND-HEX as cache_key() makes it: safe as a file name */
static int cache_key_valid(const char *key)
{
	const char *p = key;
	size_t n;

	for (n = 0; *p >= 'a' && *p <= 'z'; p++)
		n++;
	if (n == 0 || n > CACHE_KIND_MAX || *p++ != '-')
		return 0;
	for (n = 0; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
		n++;
	return n == 64 && *p == '\0';
}

/* cache_path - DIR/KEY.SUFFIX into buf; -1 when caching is off, the key is bad or it does not fit */
static int cache_path(const struct cache *c, const char *key, const char *suffix, char *buf,
		      size_t size)
{
	int n;

	if (c == NULL || c->dir == NULL || !cache_key_valid(key))
		return -1;
	n = snprintf(buf, size, "%s/%s.%s", c->dir, key, suffix);
	return n > 0 && (size_t)n < size ? 0 : -1;
}

/* cache_open - use dir when it is safe */
int cache_open(struct cache *c, const char *dir)
{
	struct stat st;

	c->dir = NULL;
	if (dir == NULL || *dir == '\0')
		return -1;
	if (dir[0] != '/') {
		cache_warn_dir("cache_dir %s: not an absolute path; caching off", dir);
		return -1;
	}
	if (stat(dir, &st) < 0) {
		if (errno != ENOENT) {
			cache_warn_dir("cache_dir %s: %s; caching off", dir, strerror(errno));
			return -1;
		}
		if (geteuid() == 0) {
			/* it would belong to root, and the transport's own user could never use it */
			log_debug("cache_dir %s does not exist, and root does not create it; "
				  "caching off", dir);
			return -1;
		}
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			cache_warn_dir("cache_dir %s: cannot create: %s; caching off", dir,
				       strerror(errno));
			return -1;
		}
		if (stat(dir, &st) < 0) {
			cache_warn_dir("cache_dir %s: %s; caching off", dir, strerror(errno));
			return -1;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		cache_warn_dir("cache_dir %s: not a directory; caching off", dir);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		struct passwd pwbuf, *pw = NULL;
		char pwtext[1024];

		/* getpwuid_r: the milter's threads open caches too */
		if (geteuid() == 0 && getpwuid_r(st.st_uid, &pwbuf, pwtext, sizeof(pwtext), &pw) != 0)
			pw = NULL;
		if (pw != NULL)
			/* root: the usual mistake of an operator at a terminal */
			cache_warn_dir("cache_dir %s belongs to %s, and root does not use it: "
				       "caching off for this run (run it as that user: "
				       "runuser -u %s -- ...)", dir, pw->pw_name, pw->pw_name);
		else
			cache_warn_dir("cache_dir %s: belongs to uid %u, not to this user (uid %u); "
				       "caching off", dir, (unsigned)st.st_uid,
				       (unsigned)geteuid());
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		cache_warn_dir("cache_dir %s: accessible by other users (mode %04o), and it holds "
			       "tokens: chmod 0700 %s; caching off", dir,
			       (unsigned)(st.st_mode & 07777), dir);
		return -1;
	}
	c->dir = xstrdup(dir);
	return 0;
}

/* cache_close - forget the directory; safe twice */
void cache_close(struct cache *c)
{
	free(c->dir);
	c->dir = NULL;
}

/* cache_key - KIND-SHA256(kind, parts); sha256.c, not OpenSSL's (see sha256.h) */
void cache_key(char key[CACHE_KEY_SIZE], const char *kind, const char *const *parts, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_LEN], len[8];
	unsigned k;
	struct sha256 ctx;
	size_t i, klen = strlen(kind);

	if (klen == 0 || klen > CACHE_KIND_MAX || strspn(kind, "abcdefghijklmnopqrstuvwxyz") != klen) {
		/* an invalid key: every function then treats the cache as off */
		key[0] = '\0';
		return;
	}
	sha256_init(&ctx);
	for (i = 0; i <= n; i++) {
		const char *part = i == 0 ? kind : parts[i - 1] != NULL ? parts[i - 1] : "";
		uint64_t plen = strlen(part);

		for (k = 0; k < 8; k++)
			len[k] = (unsigned char)(plen >> (56 - 8 * k));
		sha256_update(&ctx, len, sizeof(len));
		sha256_update(&ctx, part, (size_t)plen);
	}
	sha256_final(&ctx, md);
	memcpy(key, kind, klen);
	key[klen] = '-';
	for (k = 0; k < 32; k++) {
		key[klen + 1 + 2 * k] = hex[md[k] >> 4];
		key[klen + 2 + 2 * k] = hex[md[k] & 15];
	}
	key[klen + 65] = '\0';
}

/* cache_entry_free - wipe and release the data; safe twice */
void cache_entry_free(struct cache_entry *e)
{
	if (e->data != NULL) {
		/* only when nobody else holds it: wiping shared data would change it under them */
		if (e->data->refcount == 1)
			json_wipe(e->data);
		json_decref(e->data);
	}
	memset(e, 0, sizeof(*e));
}

/*
 * cache_read - the text of a file that can be trusted, NUL-terminated.
 * NULL with why set ("" when the file does not exist).
 */
static char *cache_read(const char *path, size_t *len, char *why, size_t whylen)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;

	why[0] = '\0';
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(why, whylen, "a symbolic link");
		else if (errno != ENOENT)
			snprintf(why, whylen, "%s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, whylen, "%s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
	} else if (st.st_uid != geteuid()) {
		snprintf(why, whylen, "belongs to uid %u, not to this user", (unsigned)st.st_uid);
	} else if ((st.st_mode & 077) != 0) {
		snprintf(why, whylen, "accessible by other users (mode %04o)",
			 (unsigned)(st.st_mode & 07777));
	} else if (st.st_size > CACHE_MAX_FILE) {
		snprintf(why, whylen, "larger than %d bytes", CACHE_MAX_FILE);
	} else {
		buf = xmalloc((size_t)st.st_size + 1);
		while (n < (size_t)st.st_size) {
			r = read(fd, buf + n, (size_t)st.st_size - n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		buf[n] = '\0';
		*len = n;
	}
	close(fd);
	return buf;
}

/* cache_time - an integer member as time_t; -1 when absent or not an integer >= 0 */
static time_t cache_time(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	return (time_t)json_integer_value(v);
}

/*
 * cache_parse - the envelope: 0 with e filled (and what, when wanted),
 * -1 with why set.
 */
static int cache_parse(const char *text, size_t len, struct cache_entry *e,
		       struct cache_label *label, char *why, size_t whylen)
{
	json_t *root = json_loadb(text, len, 0, NULL), *data;
	const json_t *v;
	time_t now = time(NULL);
	int rc = -1;

	memset(e, 0, sizeof(*e));
	if (!json_is_object(root)) {
		snprintf(why, whylen, "not a JSON object (corrupt or truncated)");
		goto out;
	}
	v = json_object_get(root, "v");
	if (!json_is_integer(v) || json_integer_value(v) != CACHE_VERSION) {
		snprintf(why, whylen, "not a version %d entry", CACHE_VERSION);
		goto out;
	}
	e->stored_at = cache_time(root, "stored_at");
	e->expires_at = cache_time(root, "expires_at");
	e->stale_until = json_object_get(root, "stale_until") != NULL
			 ? cache_time(root, "stale_until") : e->expires_at;
	data = json_object_get(root, "data");
	if (e->stored_at < 0 || e->expires_at < 0 || e->stale_until < 0 || data == NULL
	    || json_is_null(data)) {
		snprintf(why, whylen, "incomplete entry");
		goto out;
	}
	if (e->stored_at > now + CACHE_FUTURE_SLACK) {
		snprintf(why, whylen, "stored in the future (the clock went back?)");
		goto out;
	}
	if (e->stale_until < e->expires_at)
		e->stale_until = e->expires_at;
	if (label != NULL) {
		const char *w = json_string_value(json_object_get(root, "what"));
		const char *a = json_string_value(json_object_get(root, "about"));

		str_printable(label->what, sizeof(label->what), w ? w : "?", w ? strlen(w) : 1);
		str_printable(label->about, sizeof(label->about), a ? a : "", a ? strlen(a) : 0);
	}
	/* out of the envelope before the envelope's strings are wiped */
	e->data = json_incref(data);
	json_object_del(root, "data");
	rc = 0;
out:
	if (root != NULL) {
		json_wipe(root);
		json_decref(root);
	}
	return rc;
}

/* cache_load_path - read and check one file; 0 with e filled, -1 (logged unless missing) */
static int cache_load_path(const char *path, struct cache_entry *e, struct cache_label *label)
{
	char why[128];
	size_t len = 0;
	char *text;
	int rc;

	memset(e, 0, sizeof(*e));
	if ((text = cache_read(path, &len, why, sizeof(why))) == NULL) {
		if (why[0] != '\0')
			log_warn("cache file %s ignored: %s", path, why);
		return -1;
	}
	rc = cache_parse(text, len, e, label, why, sizeof(why));
	explicit_bzero(text, len);
	free(text);
	if (rc < 0)
		log_warn("cache file %s ignored: %s", path, why);
	return rc;
}

/* cache_load - the entry under key, whatever its age */
int cache_load(const struct cache *c, const char *key, struct cache_entry *e)
{
	char path[CACHE_PATH_MAX];

	memset(e, 0, sizeof(*e));
	if (cache_path(c, key, "json", path, sizeof(path)) < 0)
		return -1;
	return cache_load_path(path, e, NULL);
}

/* cache_exists - an entry file under key, whatever it holds: one stat(), nothing read */
int cache_exists(const struct cache *c, const char *key)
{
	char path[CACHE_PATH_MAX];
	struct stat st;

	return cache_path(c, key, "json", path, sizeof(path)) == 0 && lstat(path, &st) == 0
	       && S_ISREG(st.st_mode);
}

/* cache_write - text into path through a temporary file and rename(); 0 or -1 (logged) */
static int cache_write(const char *path, const char *text)
{
	char tmp[CACHE_PATH_MAX + 8];
	size_t len = strlen(text), n = 0;
	ssize_t r;
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		log_warn("cache file %s: cannot create: %s", tmp, strerror(errno));
		return -1;
	}
	/* mkstemp makes 0600 already; say it anyway, whatever the libc */
	if (fchmod(fd, 0600) < 0)
		goto fail;
	while (n < len) {
		r = write(fd, text + n, len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		n += (size_t)r;
	}
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	return 0;
fail:
	log_warn("cache file %s: cannot write: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

/* cache_store_path - the envelope around data into path */
static int cache_store_path(const char *path, const char *what, const char *about,
			    const json_t *data, time_t expires_at, time_t stale_until)
{
	json_t *env = json_object();
	char *text;
	int rc;

	json_object_set_new(env, "v", json_integer(CACHE_VERSION));
	json_object_set_new(env, "what", json_string(what ? what : ""));
	if (about != NULL && *about != '\0')
		json_object_set_new(env, "about", json_string(about));
	json_object_set_new(env, "stored_at", json_integer((json_int_t)time(NULL)));
	json_object_set_new(env, "expires_at", json_integer((json_int_t)expires_at));
	json_object_set_new(env, "stale_until", json_integer((json_int_t)
				(stale_until > expires_at ? stale_until : expires_at)));
	json_object_set(env, "data", (json_t *)data);
	text = json_dumps(env, JSON_COMPACT);
	json_decref(env);
	if (text == NULL) {
		log_warn("cache file %s: cannot encode the entry", path);
		return -1;
	}
	rc = cache_write(path, text);
	explicit_bzero(text, strlen(text));
	free(text);
	return rc;
}

/* cache_store - write data under key */
int cache_store(const struct cache *c, const char *key, const char *what, const json_t *data,
		time_t expires_at, time_t stale_until)
{
	char path[CACHE_PATH_MAX];

	if (data == NULL || cache_path(c, key, "json", path, sizeof(path)) < 0)
		return -1;
	return cache_store_path(path, what, NULL, data, expires_at, stale_until);
}

/* cache_remove - the entry and its failure note */
int cache_remove(const struct cache *c, const char *key)
{
	char path[CACHE_PATH_MAX];
	int rc = -1;

	if (cache_path(c, key, "fail", path, sizeof(path)) == 0)
		unlink(path);
	if (cache_path(c, key, "json", path, sizeof(path)) == 0 && unlink(path) == 0)
		rc = 0;
	return rc;
}

/* cache_sleep - a short pause between lock attempts */
static void cache_sleep(double seconds)
{
	struct timespec ts = { 0, (long)(seconds * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int cache_announce_fd = -1;	/* cache_announce_lock */

/* cache_announce_lock - see cache.h */
void cache_announce_lock(int fd)
{
	cache_announce_fd = fd;
}

/* cache_announce - one byte to the announcement descriptor, once; errno kept */
static void cache_announce(void)
{
	int saved = errno;

	if (cache_announce_fd >= 0) {
		if (write(cache_announce_fd, "L", 1) < 0) {
			/* the reader gone: nobody waits */
		}
		close(cache_announce_fd);
		cache_announce_fd = -1;
	}
	errno = saved;
}

/* cache_lock - flock the key's lock file, waiting until deadline at most */
int cache_lock(const struct cache *c, const char *key, double deadline)
{
	char path[CACHE_PATH_MAX];
	struct stat st;
	int fd, got;

	if (cache_path(c, key, "lock", path, sizeof(path)) < 0) {
		cache_announce();
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("cache lock %s: %s; going on without it", path, strerror(errno));
		cache_announce();
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		log_warn("cache lock %s: not a regular file of this user; going on without it",
			 path);
		close(fd);
		cache_announce();
		return -1;
	}
	for (;;) {
		got = flock(fd, LOCK_EX | LOCK_NB) == 0;
		/* held by this process or by another's fetch: either way one is under way */
		cache_announce();
		if (got)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			log_warn("cache lock %s: %s; going on without it", path, strerror(errno));
			break;
		}
		if (conn_now() >= deadline) {
			log_debug("cache lock %s: another process is still fetching; going on "
				  "without waiting longer", path);
			break;
		}
		cache_sleep(CACHE_LOCK_POLL);
	}
	close(fd);
	return -1;
}

/* cache_unlock - closing the descriptor releases the flock */
void cache_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* cache_may_stand_in - whether an expired entry may answer for a fetch that failed so */
static int cache_may_stand_in(const struct outcome *o)
{
	return o->kind == OUTCOME_TRANSIENT || o->kind == OUTCOME_OUT_OF_TIME;
}

/*
 * cache_note_failure - remember a failed fetch for ttl seconds; not when
 * this process only ran out of time
 */
static void cache_note_failure(const struct cache *c, const struct cache_request *r,
			       const struct outcome *o)
{
	char path[CACHE_PATH_MAX];
	json_t *note;

	if (r->fail_ttl <= 0 || o->kind == OUTCOME_OUT_OF_TIME
	    || cache_path(c, r->key, "fail", path, sizeof(path)) < 0)
		return;
	note = json_pack("{s:i, s:s, s:s, s:f}", "kind", (int)o->kind, "status", o->status, "text",
			 o->text, "noted_at", cache_clock());
	if (note != NULL)
		cache_store_path(path, r->what, r->about, note, time(NULL) + r->fail_ttl, 0);
	json_decref(note);
}

/*
 * cache_recent_failure - a failure noted while this request waited (after
 * since) and less than fail_ttl ago: 1 with the outcome (and its kind)
 * set, or 0 when there is none. A note older than the request answers nobody: a
 * flush that an operator starts after fixing the cause asks again.
 */
static int cache_recent_failure(const struct cache *c, const struct cache_request *r,
				double since, struct outcome *o)
{
	char path[CACHE_PATH_MAX];
	struct cache_entry note;
	const char *status, *text;
	time_t now = time(NULL);
	double noted_at;
	json_int_t kind;
	int found = 0;

	if (r->fail_ttl <= 0 || cache_path(c, r->key, "fail", path, sizeof(path)) < 0)
		return 0;
	if (cache_load_path(path, &note, NULL) < 0)
		return 0;
	status = json_string_value(json_object_get(note.data, "status"));
	text = json_string_value(json_object_get(note.data, "text"));
	noted_at = json_number_value(json_object_get(note.data, "noted_at"));
	kind = json_integer_value(json_object_get(note.data, "kind"));
	if (note.expires_at > now && kind > OUTCOME_OK && kind <= OUTCOME_REFUSED
	    && status != NULL && text != NULL && dsn_valid(status) > 0 && status[0] == '4'
	    && noted_at >= since) {
		found = 1;
		dsn_fail(o, (enum outcome_kind)kind, status, "%s", text);
		log_debug("%s cache: %s failed %.1f s ago while this process waited for that "
			  "lookup; not asking again", r->kind, r->what, cache_clock() - noted_at);
		memset(&cache_served, 0, sizeof(cache_served));
		str_copy(cache_served.kind, r->kind, sizeof(cache_served.kind));
		str_printable(cache_served.what, sizeof(cache_served.what), r->what,
			      strlen(r->what));
		cache_served.age = cache_clock() - noted_at;
		cache_served.expires_in = (long)(note.expires_at - now);
		cache_served_set = 1;
	} else if (note.expires_at > now && noted_at < since) {
		log_debug("%s cache: %s failed %.1f s ago, before this request: asking again",
			  r->kind, r->what, cache_clock() - noted_at);
	}
	cache_entry_free(&note);
	return found;
}

/*
 * cache_fetch_store - fetch() under the lock. 0: the entry is stored
 * (unless it can neither be fresh nor stand in) and the failure note
 * dropped; -1: the failure is noted for the processes that wait for it.
 */
static int cache_fetch_store(const struct cache *c, const struct cache_request *r,
			     cache_fetch_fn fetch, void *arg, struct cache_entry *e,
			     struct outcome *o)
{
	char path[CACHE_PATH_MAX];

	if (fetch(arg, e, o) != 0) {
		cache_note_failure(c, r, o);
		return -1;
	}
	e->stored_at = time(NULL);
	/* an entry that is never fresh may still stand in later (TTL 0) */
	if ((e->expires_at > e->stored_at || e->stale_until > e->stored_at)
	    && cache_path(c, r->key, "json", path, sizeof(path)) == 0)
		cache_store_path(path, r->what, r->about, e->data, e->expires_at, e->stale_until);
	if (cache_path(c, r->key, "fail", path, sizeof(path)) == 0)
		unlink(path);
	return 0;
}

/* cache_get - a fresh entry, else one fetch for all processes */
int cache_get(const struct cache *c, const struct cache_request *r, cache_fetch_fn fetch,
	      void *arg, struct cache_entry *e, struct outcome *o)
{
	struct cache_entry old;
	char path[CACHE_PATH_MAX];
	time_t now = time(NULL);
	double since = r->since > 0 ? r->since : cache_epoch > 0 ? cache_epoch : cache_clock();
	int fd = -1, have_old;

	memset(e, 0, sizeof(*e));
	cache_last_note_reset();
	if (cache_path(c, r->key, "json", path, sizeof(path)) < 0)
		return fetch(arg, e, o);

	have_old = cache_load(c, r->key, &old) == 0;
	if (have_old && !r->refresh && old.expires_at > now) {
		log_debug("%s cache hit: %s, expires in %ld s", r->kind, r->what,
			  (long)(old.expires_at - now));
		*e = old;
		e->hit = 1;
		return 0;
	}

	fd = cache_lock(c, r->key, r->lock_deadline);
	now = time(NULL);
	if (!r->refresh) {
		/* another process may have fetched it while this one waited */
		if (have_old)
			cache_entry_free(&old);
		have_old = cache_load(c, r->key, &old) == 0;
		if (have_old && old.expires_at > now) {
			log_debug("%s cache hit: %s, fetched by another process, expires in %ld s",
				  r->kind, r->what, (long)(old.expires_at - now));
			cache_unlock(fd);
			*e = old;
			e->hit = 1;
			return 0;
		}
	}
	if (!cache_recent_failure(c, r, since, o)) {
		if (r->refresh)
			log_debug("%s cache refresh: %s", r->kind, r->what);
		else if (have_old)
			log_debug("%s cache miss: %s, expired %ld s ago", r->kind, r->what,
				  (long)(now - old.expires_at));
		else
			log_debug("%s cache miss: %s", r->kind, r->what);
		if (cache_fetch_store(c, r, fetch, arg, e, o) == 0) {
			if (have_old)
				cache_entry_free(&old);
			cache_unlock(fd);
			return 0;
		}
		/* a final answer (not found, refused): the old entry must not stand in later */
		if (!cache_may_stand_in(o) && have_old
		    && cache_path(c, r->key, "json", path, sizeof(path)) == 0)
			unlink(path);
	}
	now = time(NULL);
	if (cache_may_stand_in(o) && have_old && old.stale_until > now) {
		log_info("%s cache stale: %s, expired %ld s ago, stands in while: %s", r->kind,
			 r->what, (long)(now - old.expires_at), o->text);
		cache_unlock(fd);
		*e = old;
		e->hit = 1;
		e->stale = 1;
		return 0;
	}
	if (have_old)
		cache_entry_free(&old);
	cache_unlock(fd);
	return -1;
}

/* cache_drop_if - remove the entry under the lock when match() says so */
int cache_drop_if(const struct cache *c, const char *key,
		  int (*match)(void *arg, const json_t *data), void *arg, double lock_deadline)
{
	char path[CACHE_PATH_MAX];
	struct cache_entry e;
	int fd, dropped = 0;

	if (cache_path(c, key, "json", path, sizeof(path)) < 0)
		return 0;
	fd = cache_lock(c, key, lock_deadline);
	if (cache_load(c, key, &e) == 0) {
		if (match(arg, e.data) && unlink(path) == 0)
			dropped = 1;
		cache_entry_free(&e);
	}
	cache_unlock(fd);
	return dropped;
}

/* cache_file_kind - 1 entry, 2 failure note, 3 temporary file, 4 lock, 0 not ours */
static int cache_file_kind(const char *name)
{
	char key[CACHE_KEY_SIZE];
	const char *dot = strchr(name, '.');
	size_t klen = dot ? (size_t)(dot - name) : 0;

	if (dot == NULL || klen >= sizeof(key))
		return 0;
	memcpy(key, name, klen);
	key[klen] = '\0';
	if (!cache_key_valid(key))
		return 0;
	if (strcmp(dot, ".json") == 0)
		return 1;
	if (strcmp(dot, ".fail") == 0)
		return 2;
	if ((strncmp(dot, ".json.", 6) == 0 || strncmp(dot, ".fail.", 6) == 0)
	    && strlen(dot) == 12)
		return 3;
	if (strcmp(dot, ".lock") == 0)
		return 4;
	return 0;
}

/* cache_list - every entry and failure note with what it says about itself */
int cache_list(const struct cache *c, cache_list_fn fn, void *arg)
{
	char path[CACHE_PATH_MAX];
	struct cache_label label;
	struct cache_item it;
	struct cache_entry e;
	struct dirent **names;
	int i, n, kind, count = 0;

	if (c == NULL || c->dir == NULL || (n = scandir(c->dir, &names, NULL, alphasort)) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		kind = cache_file_kind(names[i]->d_name);
		if ((kind == 1 || kind == 2)
		    && snprintf(path, sizeof(path), "%s/%s", c->dir, names[i]->d_name)
		       < (int)sizeof(path)) {
			if (kind == 1)
				count++;
			memset(&it, 0, sizeof(it));
			it.file = names[i]->d_name;
			it.note = kind == 2;
			it.e = &e;
			if (cache_load_path(path, &e, &label) == 0) {
				it.what = label.what;
				it.about = label.about;
			}
			fn(arg, &it);
			cache_entry_free(&e);
		}
		free(names[i]);
	}
	free(names);
	return count;
}

/* cache_last_note - the failure note that answered this thread's last cache_get() */
int cache_last_note(struct cache_note *n)
{
	if (!cache_served_set)
		return -1;
	*n = cache_served;
	return 0;
}

/* cache_last_note_reset - forget it */
void cache_last_note_reset(void)
{
	cache_served_set = 0;
	memset(&cache_served, 0, sizeof(cache_served));
}

/* cache_clear - remove entries, failure notes and temporary files; lock files stay */
int cache_clear(const struct cache *c)
{
	char path[CACHE_PATH_MAX];
	struct dirent **names;
	int i, n, kind, count = 0;

	if (c == NULL || c->dir == NULL || (n = scandir(c->dir, &names, NULL, alphasort)) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		kind = cache_file_kind(names[i]->d_name);
		if (kind >= 1 && kind <= 3
		    && snprintf(path, sizeof(path), "%s/%s", c->dir, names[i]->d_name)
		       < (int)sizeof(path)
		    && unlink(path) == 0 && kind == 1)
			count++;
		free(names[i]);
	}
	free(names);
	return count;
}
