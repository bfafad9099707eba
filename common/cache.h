/*
 * cache - tokens and destinations shared by the processes of one user,
 * as files in a private directory (btprelay(8): cache, FAILURE NOTES).
 *
 * An entry is one file KIND-HEX.json, HEX the SHA-256 of everything that
 * changes the answer, holding {"v":1,"what":..,"stored_at":..,
 * "expires_at":..,"stale_until":..,"data":..}. It is written to a temporary
 * file (0600) and renamed into place. A file that is not a regular file of
 * this user with no group or other permission, or that does not parse, is
 * ignored and replaced by the next store: the cache makes deliveries
 * faster, it never makes one fail. Every failure to use the cache falls
 * back to asking the service.
 *
 * Single flight: cache_get() locks KIND-HEX.lock (flock, bounded wait)
 * before it fetches and looks again once it holds the lock, so processes
 * that miss at the same time make one fetch. A failed fetch is noted
 * (KIND-HEX.fail, valid fail_ttl seconds at most), and the note answers
 * only the requests that were already waiting when it was written: the
 * processes queued behind a fetch share its failure (or serve a stale
 * entry) without asking again, while any request that starts after the
 * failure, such as a `postqueue -f` after an operator fixed the cause,
 * asks again. `btprelay cache list` shows the notes, `cache clear` drops
 * them.
 */
#ifndef BTPRELAY_CACHE_H
#define BTPRELAY_CACHE_H

#include <time.h>
#include <jansson.h>
#include "dsn.h"

#define CACHE_KIND_MAX 16
#define CACHE_KEY_SIZE (CACHE_KIND_MAX + 1 + 64 + 1)	/* "KIND-" + hex + NUL */

struct cache {
	char *dir;		/* NULL: caching is off */
};

struct cache_entry {
	json_t *data;		/* the cached value (a new reference), NULL when none */
	time_t stored_at;	/* wall clock */
	time_t expires_at;	/* fresh until */
	time_t stale_until;	/* may stand in for a failed fetch until (>= expires_at) */
	int hit;		/* cache_get: from the cache, not from a fetch */
	int stale;		/* cache_get: an expired entry standing in for a failed fetch */
};

/*
 * cache_open - use dir when it is safe: created 0700 when missing (not
 * when running as root: the directory would then belong to root), refused
 * with a warning when it is not a directory, belongs to another user or
 * grants group or other users any access. "" or NULL turns caching off
 * silently. Returns 0 when on, -1 when off; never a delivery failure.
 */
int cache_open(struct cache *c, const char *dir);
void cache_close(struct cache *c);

/*
 * cache_key - "KIND-" + SHA-256 hex over the n parts (NULL counts as "");
 * each part is hashed with its length, so ("ab","c") and ("a","bc")
 * differ. kind is a short name: "token", "destination".
 */
void cache_key(char key[CACHE_KEY_SIZE], const char *kind, const char *const *parts, size_t n);

/*
 * cache_load - the entry under key, whatever its age: 0 with e filled,
 * -1 when there is none or it cannot be trusted (logged).
 */
int cache_load(const struct cache *c, const char *key, struct cache_entry *e);
/* cache_exists - 1 when an entry file for key is there (fresh or not, not read), else 0 */
int cache_exists(const struct cache *c, const char *key);
/*
 * cache_store - write data under key (what: a description without
 * secrets, for logs and listings). stale_until below expires_at counts as
 * expires_at. Returns 0, or -1 (logged; nothing else happens).
 */
int cache_store(const struct cache *c, const char *key, const char *what, const json_t *data,
		time_t expires_at, time_t stale_until);
/* cache_remove - remove the entry and its failure note; 0, or -1 when there was none */
int cache_remove(const struct cache *c, const char *key);
/* cache_entry_free - wipe the strings of e->data (it may hold tokens), release it */
void cache_entry_free(struct cache_entry *e);

/*
 * cache_lock - an flock(LOCK_EX) on KIND-HEX.lock, polled until deadline
 * (conn_now() clock). Returns the locked descriptor, or -1 when the wait
 * ran out or the lock file cannot be used (the caller goes on unlocked).
 */
int cache_lock(const struct cache *c, const char *key, double deadline);
/*
 * cache_announce_lock - the next cache_lock() of this process writes one
 * byte to fd and closes it as soon as its first attempt settled who
 * fetches (this process holds the lock, or another process does), or
 * when it goes on without a lock. A process that fetches on behalf of its
 * parent tells it so that the parent finds the fetch under way.
 */
void cache_announce_lock(int fd);
/* cache_unlock - release a lock from cache_lock; -1 is ignored */
void cache_unlock(int fd);

/*
 * cache_fetch_fn - ask the service: return 0 with fresh->data (a new
 * reference), fresh->expires_at and fresh->stale_until set (an expiry not
 * in the future means "do not cache"), or -1 with the outcome set. Its
 * kind decides: after OUTCOME_TRANSIENT or OUTCOME_OUT_OF_TIME a stale
 * entry may stand in; OUTCOME_OUT_OF_TIME is not noted for the others.
 */
typedef int (*cache_fetch_fn)(void *arg, struct cache_entry *fresh, struct outcome *o);

struct cache_request {
	const char *key;
	const char *kind;	/* "token", "destination": log lines say "token cache hit" */
	const char *what;	/* what the entry is, no secrets: "connectivity (provider)" */
	int refresh;		/* fetch even when a fresh entry exists, and replace it */
	const char *about;	/* the key's facts for listings (service URL, client, tenant): no
				   secrets; NULL for none */
	int fail_ttl;		/* seconds a failed fetch is noted at most; 0 = not at all */
	double since;		/* cache_clock() when this request began; 0 = at the call. A
				   failure noted before it does not answer it */
	double lock_deadline;	/* conn_now() clock: the longest wait for another's fetch */
};

/*
 * cache_get - a fresh entry, else fetch once for all processes: lock,
 * look again, fetch, store. When the fetch fails with OUTCOME_TRANSIENT
 * (or OUTCOME_OUT_OF_TIME) and an expired entry is within its
 * stale_until, that entry is returned with e->stale set; any other
 * failure (an answer such as "not found") removes the old entry, so it
 * never stands in later. Returns 0 with e filled (free it with
 * cache_entry_free), or -1 with the fetch's outcome (or the one another
 * process noted, kind included). With caching off it just calls fetch.
 */
int cache_get(const struct cache *c, const struct cache_request *r, cache_fetch_fn fetch,
	      void *arg, struct cache_entry *e, struct outcome *o);

/*
 * cache_drop_if - under the lock, remove the entry under key when match()
 * says its data is the one a service just refused; an entry another
 * process already replaced stays. Returns 1 when removed, else 0.
 */
int cache_drop_if(const struct cache *c, const char *key,
		  int (*match)(void *arg, const json_t *data), void *arg, double lock_deadline);

/* one file of the cache directory, for cache_list() */
struct cache_item {
	const char *file;	/* KIND-HEX.json or KIND-HEX.fail */
	const char *what;	/* what it says it is; NULL when it cannot be trusted */
	const char *about;	/* the facts of its key ("" when not recorded) */
	int note;		/* a failure note: e->data has "status", "text", "noted_at" */
	const struct cache_entry *e;
};

/*
 * cache_list - call fn for every entry (KIND-HEX.json) and failure note
 * (KIND-HEX.fail) with what it says about itself. Returns the number of
 * entries (not notes), or -1 when the directory cannot be read.
 */
typedef void (*cache_list_fn)(void *arg, const struct cache_item *it);
int cache_list(const struct cache *c, cache_list_fn fn, void *arg);
/* cache_clear - remove every entry, failure note and temporary file; the count, or -1 */
int cache_clear(const struct cache *c);

/* cache_clock - the wall clock with a fraction of a second, for cache_request.since */
double cache_clock(void);
/*
 * cache_since - the moment this process's work began (cache_clock()), for
 * every request that does not set its own since; 0 (the default): each
 * request begins at its cache_get() call. A process that serves one
 * delivery, or a test that forks a burst of them, may set it once.
 */
void cache_since(double t);

/* a failure note that answered a cache_get() instead of a fetch */
struct cache_note {
	char kind[CACHE_KIND_MAX + 1];	/* "token", "destination" */
	char what[300];
	double age;			/* seconds since the failure */
	long expires_in;		/* seconds until the note is removed */
};
/*
 * cache_last_note - 0 with n filled when the last failure of a
 * cache_get() in this thread came from another process's fetch (a
 * failure note), -1 otherwise; cache_last_note_reset() forgets it
 */
int cache_last_note(struct cache_note *n);
void cache_last_note_reset(void);

#endif
