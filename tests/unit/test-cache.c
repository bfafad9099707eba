/*
 * test-cache - the shared cache: directory checks, keys, store and load,
 * expiry, stale entries, files that must not be trusted (corrupt,
 * truncated, foreign-owned, readable by others, links, FIFOs), single
 * flight across fork()ed processes counted through shared memory, the
 * failure note, dropping a refused entry, listing and clearing; the
 * project's SHA-256 (sha256.c) against FIPS 180-4's examples and OpenSSL.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "cache.h"
#include "conn.h"
#include "log.h"
#include "sha256.h"
#include "tap.h"
#include "../lib/files.h"

#define NOBODY 65534

static char top[] = "/tmp/btprelay-test-cache-XXXXXX";
static char dir[600], logfile[600];

/* shared between the test and its children */
struct shared {
	int fetches;
	int results[64];
};
static struct shared *sh;

/* what a fetch callback does */
struct fake {
	enum outcome_kind kind;	/* OUTCOME_OK, or the kind of the failure */
	int ttl;		/* expires_at = now + ttl */
	int stale;		/* stale_until = expires_at + stale */
	double delay;		/* seconds spent "asking the service" */
	const char *value;
};

/* fake_fetch - counts in shared memory, then answers as told */
static int fake_fetch(void *arg, struct cache_entry *fresh, struct outcome *o)
{
	struct fake *f = arg;
	struct timespec ts = { (time_t)f->delay, (long)((f->delay - (long)f->delay) * 1e9) };

	__atomic_fetch_add(&sh->fetches, 1, __ATOMIC_SEQ_CST);
	if (f->delay > 0)
		nanosleep(&ts, NULL);
	if (f->kind != OUTCOME_OK) {
		dsn_fail(o, f->kind, "4.4.3", "service down (fake)");
		return -1;
	}
	fresh->data = json_pack("{s:s}", "value", f->value);
	fresh->expires_at = time(NULL) + f->ttl;
	fresh->stale_until = fresh->expires_at + f->stale;
	return 0;
}

/* request - a cache_request for key with a lock wait of wait seconds */
static struct cache_request request(const char *key, double wait)
{
	struct cache_request r;

	memset(&r, 0, sizeof(r));
	r.key = key;
	r.kind = "token";
	r.what = "test entry";
	r.fail_ttl = 5;
	r.lock_deadline = conn_now() + wait;
	return r;
}

/* value_of - data.value of an entry, or NULL */
static const char *value_of(const struct cache_entry *e)
{
	return json_string_value(json_object_get(e->data, "value"));
}

/* entry_path - the file of a key */
static const char *entry_path(const char *key, const char *suffix)
{
	static char path[800];

	snprintf(path, sizeof(path), "%s/%s.%s", dir, key, suffix);
	return path;
}

/* write_raw - put text into a key's entry file with mode */
static void write_raw(const char *key, const char *text, mode_t mode)
{
	const char *path = entry_path(key, "json");
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) < 0) {
		perror(path);
		exit(2);
	}
	close(fd);
	chmod(path, mode);
}

/* log_reset - empty the log file */
static void log_reset(void)
{
	if (truncate(logfile, 0) < 0)
		perror(logfile);
}

static void test_open(void)
{
	char sub[700], file[700];
	struct cache c;
	pid_t pid;
	int status;

	ok(cache_open(&c, "") == -1 && c.dir == NULL, "\"\" turns caching off");
	ok(cache_open(&c, NULL) == -1, "NULL turns caching off");
	ok(cache_open(&c, "relative/dir") == -1, "a relative path is refused");

	snprintf(sub, sizeof(sub), "%s/ok", top);
	mkdir(sub, 0700);
	ok(cache_open(&c, sub) == 0 && c.dir != NULL, "own 0700 directory: on");
	cache_close(&c);
	cache_close(&c);

	chmod(sub, 0750);
	log_reset();
	ok(cache_open(&c, sub) == -1, "group access: refused");
	ok(log_has(logfile, "accessible by other users (mode 0750)"), "the refusal is logged with the mode");
	chmod(sub, 0705);
	ok(cache_open(&c, sub) == -1, "other access: refused");
	chmod(sub, 0700);

	snprintf(file, sizeof(file), "%s/plainfile", top);
	close(open(file, O_WRONLY | O_CREAT, 0600));
	ok(cache_open(&c, file) == -1, "a file is not a cache directory");
	unlink(file);

	if (geteuid() == 0) {
		snprintf(sub, sizeof(sub), "%s/foreign", top);
		mkdir(sub, 0700);
		if (chown(sub, NOBODY, NOBODY) == 0) {
			log_reset();
			ok(cache_open(&c, sub) == -1, "directory of another user: refused");
			ok(log_has(logfile, "belongs to nobody, and root does not use it")
			   && log_has(logfile, "runuser -u nobody --"),
			   "as root: the owner is named, and how to run as that user");
			{
				const char *p;
				int count = 0;

				ok(cache_open(&c, sub) == -1, "... refused again (the token's lookup)");
				for (p = file_text(logfile); (p = strstr(p, "belongs to nobody")) != NULL; p++)
					count++;
				is_int(count, 1, "... and warned about once, not once per lookup");
			}
		}
		snprintf(sub, sizeof(sub), "%s/missing-root", top);
		ok(cache_open(&c, sub) == -1 && access(sub, F_OK) < 0,
		   "root does not create a missing directory");

		/* an unprivileged user creates it 0700 */
		chmod(top, 01777);
		snprintf(sub, sizeof(sub), "%s/created", top);
		fflush(stdout);
		if ((pid = fork()) == 0) {
			struct stat st;

			if (setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
				_exit(3);
			umask(022);
			if (cache_open(&c, sub) != 0 || stat(sub, &st) < 0)
				_exit(1);
			_exit((st.st_mode & 07777) == 0700 && st.st_uid == NOBODY ? 0 : 2);
		}
		waitpid(pid, &status, 0);
		ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "a missing directory is created 0700 (umask 022)");
		chmod(top, 0700);
	} else {
		snprintf(sub, sizeof(sub), "%s/created", top);
		umask(022);
		ok(cache_open(&c, sub) == 0, "a missing directory is created");
		{
			struct stat st;

			ok(stat(sub, &st) == 0 && (st.st_mode & 07777) == 0700, "... mode 0700");
		}
		cache_close(&c);
		ok(1, "# SKIP foreign-owned directory needs root");
	}
}

static void hex32(char out[65], const unsigned char md[32])
{
	int i;

	for (i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

/* test_sha256 - FIPS 180-2 appendix B's messages, then every length up to 300 bytes
 * (each padding case) and a 1 MB message in odd pieces against OpenSSL's SHA-256 */
static void test_sha256(void)
{
	static const struct { const char *msg; const char *digest; } known[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	unsigned char buf[300], md[32], ref[32], *big;
	char text[65];
	struct sha256 s;
	size_t i, n, off;
	int same = 1;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		sha256_init(&s);
		sha256_update(&s, known[i].msg, strlen(known[i].msg));
		sha256_final(&s, md);
		hex32(text, md);
		is_str(text, known[i].digest, "sha256 of a FIPS 180-2 example");
	}
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	for (n = 0; n <= sizeof(buf); n++) {
		unsigned len = 0;
		sha256_init(&s);
		sha256_update(&s, buf, n / 2);
		sha256_update(&s, buf + n / 2, n - n / 2);
		sha256_final(&s, md);
		EVP_Digest(buf, n, ref, &len, EVP_sha256(), NULL);
		same = same && len == 32 && memcmp(md, ref, 32) == 0;
	}
	ok(same, "sha256 equals OpenSSL's for every length 0..300, fed in two pieces");
	big = malloc(1 << 20);
	if (big == NULL)
		abort();
	for (i = 0; i < 1 << 20; i++)
		big[i] = (unsigned char)(i ^ (i >> 9));
	sha256_init(&s);
	for (off = 0, n = 1; off < 1 << 20; off += n, n = n * 3 % 1000 + 1)
		sha256_update(&s, big + off, off + n > 1 << 20 ? (1 << 20) - off : n);
	sha256_final(&s, md);
	EVP_Digest(big, 1 << 20, ref, NULL, EVP_sha256(), NULL);
	ok(memcmp(md, ref, 32) == 0, "sha256 of 1 MB in pieces of 1..1000 bytes equals OpenSSL's");
	free(big);
}

static void test_keys(void)
{
	char a[CACHE_KEY_SIZE], b[CACHE_KEY_SIZE];
	const char *p1[] = { "ab", "c" }, *p2[] = { "a", "bc" }, *p3[] = { "ab", NULL },
		   *p4[] = { "ab", "" };

	cache_key(a, "token", p1, 2);
	is_int(strlen(a), 6 + 64, "key: kind, dash, 64 hex digits");
	ok(strncmp(a, "token-", 6) == 0, "key starts with the kind");
	cache_key(b, "token", p1, 2);
	is_str(a, b, "same parts, same key");
	cache_key(b, "token", p2, 2);
	ok(strcmp(a, b) != 0, "part boundaries count");
	cache_key(b, "destination", p1, 2);
	ok(strcmp(a + 6, b + 12) != 0, "the kind is hashed too");
	cache_key(a, "token", p3, 2);
	cache_key(b, "token", p4, 2);
	is_str(a, b, "NULL counts as \"\"");
	cache_key(a, "Bad Kind", p1, 2);
	is_str(a, "", "an invalid kind gives no key");
	/* the key of a release that hashed with OpenSSL: caches stay valid across the update */
	cache_key(a, "token", p1, 2);
	is_str(a, "token-93fe0ae003269591c921ad92206b7570f8fb063dd59baea2e1244fc16e8e0649", "key as before");
}

static void test_store_load(struct cache *c)
{
	char key[CACHE_KEY_SIZE];
	const char *parts[] = { "store" };
	struct cache_entry e;
	struct stat st;
	json_t *data = json_pack("{s:s, s:i}", "value", "v1", "n", 7);
	time_t now = time(NULL);
	struct cache off = { NULL };

	cache_key(key, "token", parts, 1);
	ok(!cache_exists(c, key), "cache_exists: no entry before the first store");
	ok(cache_store(c, key, "a test", data, now + 100, now + 50) == 0, "store");
	ok(cache_exists(c, key), "cache_exists: the entry after it");
	ok(stat(entry_path(key, "json"), &st) == 0 && (st.st_mode & 07777) == 0600,
	   "entry file is 0600");
	ok(cache_load(c, key, &e) == 0, "load");
	is_str(value_of(&e), "v1", "data comes back");
	is_int(json_integer_value(json_object_get(e.data, "n")), 7, "numbers too");
	ok(e.stored_at >= now && e.stored_at <= time(NULL), "stored_at");
	is_int(e.expires_at, now + 100, "expires_at");
	is_int(e.stale_until, now + 100, "stale_until never before expires_at");
	cache_entry_free(&e);
	cache_entry_free(&e);
	ok(e.data == NULL, "cache_entry_free twice is safe");

	ok(cache_store(c, key, "a test", data, now + 100, now + 900) == 0, "store again");
	ok(cache_load(c, key, &e) == 0 && e.stale_until == now + 900, "stale_until kept");
	cache_entry_free(&e);
	is_str(json_string_value(json_object_get(data, "value")), "v1",
	       "the caller's data is not wiped by a store");
	json_decref(data);

	ok(cache_remove(c, key) == 0, "remove");
	ok(cache_load(c, key, &e) == -1 && e.data == NULL, "removed: nothing to load");
	ok(cache_remove(c, key) == -1, "remove again: nothing there");

	ok(cache_load(&off, key, &e) == -1, "caching off: load finds nothing");
	ok(cache_store(&off, key, "x", json_null(), now + 5, 0) == -1, "caching off: no store");
	ok(cache_load(c, "../../etc/passwd", &e) == -1, "a key that is not a key is refused");
}

static void test_untrusted(struct cache *c)
{
	static const struct {
		const char *name, *text, *why;
	} bad[] = {
		{ "garbage", "this is not JSON", "not a JSON object" },
		{ "truncated", "{\"v\":1,\"what\":\"x\",\"stored_at\":1,\"expi", "not a JSON object" },
		{ "empty", "", "not a JSON object" },
		{ "array", "[1,2]", "not a JSON object" },
		{ "version 2", "{\"v\":2,\"stored_at\":1,\"expires_at\":2,\"data\":1}",
		  "not a version 1 entry" },
		{ "no data", "{\"v\":1,\"stored_at\":1,\"expires_at\":2}", "incomplete entry" },
		{ "null data", "{\"v\":1,\"stored_at\":1,\"expires_at\":2,\"data\":null}",
		  "incomplete entry" },
		{ "string time", "{\"v\":1,\"stored_at\":\"1\",\"expires_at\":2,\"data\":1}",
		  "incomplete entry" },
		{ "negative time", "{\"v\":1,\"stored_at\":10,\"expires_at\":-2,\"data\":1}",
		  "incomplete entry" },
	};
	char key[CACHE_KEY_SIZE], text[256];
	const char *parts[] = { "untrusted" };
	struct fake f = { 0, 100, 0, 0, "fresh" };
	struct cache_request r;
	struct cache_entry e;
	struct stat st;
	size_t i;

	cache_key(key, "token", parts, 1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_raw(key, bad[i].text, 0600);
		log_reset();
		ok(cache_load(c, key, &e) == -1, "%s: ignored", bad[i].name);
		ok(log_has(logfile, bad[i].why), "%s: logged as \"%s\"", bad[i].name, bad[i].why);
		sh->fetches = 0;
		r = request(key, 1);
		ok(cache_get(c, &r, fake_fetch, &f, &e, NULL) == 0 && sh->fetches == 1
		   && !e.hit, "%s: fetched instead", bad[i].name);
		cache_entry_free(&e);
		ok(cache_load(c, key, &e) == 0 && strcmp(value_of(&e), "fresh") == 0,
		   "%s: replaced by a good entry", bad[i].name);
		cache_entry_free(&e);
	}

	snprintf(text, sizeof(text), "{\"v\":1,\"stored_at\":%ld,\"expires_at\":%ld,"
		 "\"data\":{\"value\":\"future\"}}", (long)time(NULL) + 3600,
		 (long)time(NULL) + 7200);
	write_raw(key, text, 0600);
	log_reset();
	ok(cache_load(c, key, &e) == -1, "stored an hour in the future: ignored");
	ok(log_has(logfile, "stored in the future"), "future: logged");

	/* a good entry whose file mode or owner is wrong */
	snprintf(text, sizeof(text), "{\"v\":1,\"stored_at\":%ld,\"expires_at\":%ld,"
		 "\"data\":{\"value\":\"planted\"}}", (long)time(NULL), (long)time(NULL) + 3600);
	write_raw(key, text, 0600);
	ok(cache_load(c, key, &e) == 0, "the well-formed entry itself loads");
	cache_entry_free(&e);
	write_raw(key, text, 0644);
	log_reset();
	ok(cache_load(c, key, &e) == -1, "world-readable entry: ignored");
	ok(log_has(logfile, "accessible by other users (mode 0644)"), "world-readable: logged");
	write_raw(key, text, 0640);
	ok(cache_load(c, key, &e) == -1, "group-readable entry: ignored");
	sh->fetches = 0;
	r = request(key, 1);
	ok(cache_get(c, &r, fake_fetch, &f, &e, NULL) == 0 && strcmp(value_of(&e), "fresh") == 0
	   && sh->fetches == 1, "group-readable: fetched, not trusted");
	cache_entry_free(&e);
	ok(stat(entry_path(key, "json"), &st) == 0 && (st.st_mode & 07777) == 0600,
	   "group-readable: replaced by a 0600 file");

	if (geteuid() == 0) {
		write_raw(key, text, 0600);
		if (chown(entry_path(key, "json"), NOBODY, NOBODY) == 0) {
			log_reset();
			ok(cache_load(c, key, &e) == -1, "foreign-owned entry: ignored");
			ok(log_has(logfile, "belongs to uid 65534"), "foreign-owned: logged");
			sh->fetches = 0;
			r = request(key, 1);
			ok(cache_get(c, &r, fake_fetch, &f, &e, NULL) == 0
			   && strcmp(value_of(&e), "fresh") == 0, "foreign-owned: fetched instead");
			cache_entry_free(&e);
			ok(stat(entry_path(key, "json"), &st) == 0 && st.st_uid == 0,
			   "foreign-owned: replaced by our own file");
		}
	} else {
		ok(1, "# SKIP foreign-owned entries need root");
	}

	/* a symbolic link and a FIFO: never followed, never blocking */
	{
		char target[700];

		snprintf(target, sizeof(target), "%s/target", top);
		write_raw(key, text, 0600);
		rename(entry_path(key, "json"), target);
		if (symlink(target, entry_path(key, "json")) == 0) {
			log_reset();
			ok(cache_load(c, key, &e) == -1, "symbolic link: ignored");
			ok(log_has(logfile, "a symbolic link"), "symbolic link: logged");
		}
		unlink(entry_path(key, "json"));
		unlink(target);
		if (mkfifo(entry_path(key, "json"), 0600) == 0) {
			ok(cache_load(c, key, &e) == -1, "FIFO: ignored without blocking");
			unlink(entry_path(key, "json"));
		}
	}
}

static void test_get(struct cache *c)
{
	char key[CACHE_KEY_SIZE];
	const char *parts[] = { "get" };
	struct fake f = { 0, 100, 0, 0, "one" };
	struct cache_request r;
	struct cache_entry e, old;
	struct outcome o;
	struct cache off = { NULL };
	time_t now = time(NULL);
	json_t *data;

	cache_key(key, "token", parts, 1);
	cache_remove(c, key);
	sh->fetches = 0;
	log_reset();
	r = request(key, 1);
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0, "miss: fetched");
	is_int(sh->fetches, 1, "miss: one fetch");
	ok(!e.hit && !e.stale, "miss: not a hit");
	cache_entry_free(&e);
	ok(log_has(logfile, "token cache miss: test entry"), "miss logged (\"token cache miss\")");

	f.value = "two";
	log_reset();
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && e.hit, "hit");
	is_str(value_of(&e), "one", "hit: the stored value");
	is_int(sh->fetches, 1, "hit: no fetch");
	ok(log_has(logfile, "token cache hit: test entry, expires in"), "hit logged (\"token cache hit\")");
	cache_entry_free(&e);

	r.refresh = 1;
	log_reset();
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && !e.hit, "refresh: fetched");
	is_str(value_of(&e), "two", "refresh: the new value");
	ok(log_has(logfile, "token cache refresh: test entry"), "refresh logged");
	cache_entry_free(&e);
	r.refresh = 0;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && strcmp(value_of(&e), "two") == 0,
	   "refresh: the new value was stored");
	cache_entry_free(&e);

	/* expired: fetched again */
	data = json_pack("{s:s}", "value", "old");
	cache_store(c, key, "test entry", data, now - 10, now + 1000);
	json_decref(data);
	f.value = "three";
	sh->fetches = 0;
	log_reset();
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && strcmp(value_of(&e), "three") == 0,
	   "expired entry: fetched again");
	ok(log_has(logfile, "token cache miss: test entry, expired"), "expired: logged as a miss");
	cache_entry_free(&e);

	/* stale: the fetch fails in a way that may go away */
	data = json_pack("{s:s}", "value", "old");
	cache_store(c, key, "test entry", data, now - 10, now + 1000);
	f.kind = OUTCOME_TRANSIENT;
	r.fail_ttl = 0;
	log_reset();
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0, "transient failure: an entry stands in");
	ok(e.stale && e.hit, "... marked stale");
	is_str(value_of(&e), "old", "... the expired value");
	ok(log_has(logfile, "token cache stale: test entry, expired"), "stale logged");
	ok(log_has(logfile, "service down (fake)"), "stale: the failure is in the log line");
	cache_entry_free(&e);

	f.kind = OUTCOME_OUT_OF_TIME;
	r.fail_ttl = 30;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && e.stale,
	   "out of time: an entry stands in");
	cache_entry_free(&e);
	ok(access(entry_path(key, "fail"), F_OK) < 0, "out of time: no failure note for the others");
	r.fail_ttl = 0;

	f.kind = OUTCOME_REFUSED;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == -1 && o.kind == OUTCOME_REFUSED && e.data == NULL,
	   "a final failure: no stale entry");
	ok(cache_load(c, key, &old) == -1, "a final failure removes the old entry");
	is_str(o.text, "service down (fake)", "the fetch's outcome");

	cache_store(c, key, "test entry", data, now - 100, now - 1);
	f.kind = OUTCOME_TRANSIENT;
	sh->fetches = 0;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == -1 && o.kind == OUTCOME_TRANSIENT,
	   "past stale_until: nothing stands in");
	json_decref(data);

	/* TTL 0: never fresh, but kept to stand in */
	f.kind = OUTCOME_OK;
	f.ttl = 0;
	f.stale = 500;
	f.value = "ttl0";
	sh->fetches = 0;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0, "TTL 0: fetched");
	cache_entry_free(&e);
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && sh->fetches == 2,
	   "TTL 0: fetched every time");
	cache_entry_free(&e);
	f.kind = OUTCOME_TRANSIENT;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0 && e.stale
	   && strcmp(value_of(&e), "ttl0") == 0, "TTL 0: still stands in for a failure");
	cache_entry_free(&e);

	/* nothing cached when the expiry is in the past */
	cache_remove(c, key);
	f.kind = OUTCOME_OK;
	f.ttl = -5;
	f.stale = 0;
	ok(cache_get(c, &r, fake_fetch, &f, &e, &o) == 0, "expired on arrival: handed out");
	cache_entry_free(&e);
	ok(cache_load(c, key, &old) == -1, "... but not stored");

	/* caching off: straight to the fetch */
	sh->fetches = 0;
	f.ttl = 100;
	ok(cache_get(&off, &r, fake_fetch, &f, &e, &o) == 0 && sh->fetches == 1 && !e.hit,
	   "caching off: fetch");
	cache_entry_free(&e);
	ok(cache_get(&off, &r, fake_fetch, &f, &e, &o) == 0 && sh->fetches == 2,
	   "caching off: fetch every time");
	cache_entry_free(&e);
}

/*
 * burst - n processes call cache_get at once, all waiting since the moment
 * burst was called (however late the scheduler starts them); returns how
 * many got value
 */
static int burst(struct cache *c, const char *key, struct fake *f, int n, const char *value,
		 double wait)
{
	double since = cache_clock();

	pid_t pids[64];
	int i, status, good = 0;

	fflush(stdout);
	for (i = 0; i < n; i++) {
		if ((pids[i] = fork()) == 0) {
			struct cache_request r = request(key, wait);
			struct cache_entry e;
			struct outcome o;
			int rc;

			r.since = since;
			rc = cache_get(c, &r, fake_fetch, f, &e, &o);
			sh->results[i] = rc == 0 && value != NULL && value_of(&e) != NULL
					 && strcmp(value_of(&e), value) == 0 ? 1
					 : rc != 0 && value == NULL
					 && strcmp(o.text, "service down (fake)") == 0 ? 1 : 0;
			cache_entry_free(&e);
			_exit(0);
		}
	}
	for (i = 0; i < n; i++) {
		waitpid(pids[i], &status, 0);
		good += sh->results[i];
	}
	return good;
}

static void test_single_flight(struct cache *c)
{
	char key[CACHE_KEY_SIZE];
	const char *parts[] = { "burst" };
	struct fake f = { 0, 100, 0, 0.3, "shared" };
	int lockfd;
	pid_t pid;
	int status;

	cache_key(key, "token", parts, 1);
	cache_remove(c, key);
	sh->fetches = 0;
	memset(sh->results, 0, sizeof(sh->results));
	is_int(burst(c, key, &f, 30, "shared", 10), 30, "30 processes at once: all get the value");
	is_int(sh->fetches, 1, "30 processes at once: one fetch");

	/* a failing service: the queued processes do not ask again */
	cache_remove(c, key);
	f.kind = OUTCOME_TRANSIENT;
	f.delay = 0.2;
	sh->fetches = 0;
	memset(sh->results, 0, sizeof(sh->results));
	is_int(burst(c, key, &f, 20, NULL, 10), 20, "failing service: all 20 fail the same way");
	is_int(sh->fetches, 1, "failing service: one fetch for 20 processes");
	ok(access(entry_path(key, "fail"), F_OK) == 0, "the failure note exists");

	/* the note answers those that waited for that fetch, never a later request */
	{
		struct cache_request r = request(key, 1);
		struct cache_entry e;
		struct cache_note note;
		struct outcome o;
		int rc;

		f.kind = OUTCOME_OK;
		f.delay = 0;
		sh->fetches = 0;
		r.since = cache_clock() - 30;	/* began before the failure: it waited for it */
		rc = cache_get(c, &r, fake_fetch, &f, &e, &o);
		ok(rc == -1 && o.kind == OUTCOME_TRANSIENT && sh->fetches == 0
		   && strcmp(o.text, "service down (fake)") == 0,
		   "a request that waited during the failed fetch shares its failure");
		ok(cache_last_note(&note) == 0 && strcmp(note.kind, "token") == 0
		   && strcmp(note.what, "test entry") == 0 && note.age >= 0 && note.age < 30
		   && note.expires_in > 0 && note.expires_in <= 5,
		   "cache_last_note: kind, what, age and time left of the note that answered");
		cache_entry_free(&e);
		r.since = 0;			/* begins now: after the failure (a flush after a fix) */
		rc = cache_get(c, &r, fake_fetch, &f, &e, &o);
		ok(rc == 0 && sh->fetches == 1 && value_of(&e) != NULL
		   && strcmp(value_of(&e), "shared") == 0,
		   "a request that begins after the failure asks again, and gets the answer");
		ok(cache_last_note(&note) == -1, "cache_last_note: none for a fetched answer");
		ok(access(entry_path(key, "fail"), F_OK) < 0, "... and the failure note is gone");
		cache_entry_free(&e);
		cache_remove(c, key);
		f.kind = OUTCOME_TRANSIENT;
		is_int(burst(c, key, &f, 1, NULL, 10), 1, "a new failure is noted again");
		ok(access(entry_path(key, "fail"), F_OK) == 0, "... the note is back");
	}

	/* the note expires; then the next one asks again and success removes it */
	{
		char text[256];
		int fd;

		snprintf(text, sizeof(text), "{\"v\":1,\"stored_at\":%ld,\"expires_at\":%ld,"
			 "\"data\":{\"kind\":1,\"status\":\"4.4.3\",\"text\":\"old failure\"}}",
			 (long)time(NULL) - 60, (long)time(NULL) - 30);
		fd = open(entry_path(key, "fail"), O_WRONLY | O_TRUNC);
		if (fd < 0 || write(fd, text, strlen(text)) < 0)
			perror("fail note");
		close(fd);
	}
	f.kind = OUTCOME_OK;
	f.delay = 0;
	sh->fetches = 0;
	is_int(burst(c, key, &f, 1, "shared", 10), 1, "expired failure note: asked again");
	is_int(sh->fetches, 1, "... one fetch");
	ok(access(entry_path(key, "fail"), F_OK) < 0, "success removes the failure note");

	/* the wait for another process's fetch is bounded */
	cache_remove(c, key);
	lockfd = cache_lock(c, key, conn_now() + 1);
	ok(lockfd >= 0, "the test holds the lock");
	sh->fetches = 0;
	fflush(stdout);
	if ((pid = fork()) == 0) {
		double t0 = conn_now();
		struct cache_request r = request(key, 0.3);
		struct cache_entry e;
		int rc = cache_get(c, &r, fake_fetch, &f, &e, NULL);
		double took = conn_now() - t0;

		cache_entry_free(&e);
		_exit(rc == 0 && took >= 0.25 && took < 3 ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "lock held elsewhere: waited about the bound, then fetched");
	is_int(sh->fetches, 1, "... one fetch without the lock");
	cache_unlock(lockfd);
}

/* match_value - cache_drop_if match on data.value */
static int match_value(void *arg, const json_t *data)
{
	const char *v = json_string_value(json_object_get(data, "value"));

	return v != NULL && strcmp(v, arg) == 0;
}

/* list_cb - count entries, good ones and failure notes */
static void list_cb(void *arg, const struct cache_item *it)
{
	int *counts = arg;

	if (it->note) {
		counts[2]++;
		if (it->what != NULL && strcmp(it->what, "noted") == 0
		    && strcmp(it->about, "service https://x.example, client c1") == 0
		    && strcmp(json_string_value(json_object_get(it->e->data, "text")),
			      "service down (fake)") == 0)
			counts[3]++;
		return;
	}
	counts[0]++;
	if (it->what != NULL && strcmp(it->what, "listed") == 0
	    && strncmp(it->file, "destination-", 12) == 0)
		counts[1]++;
}

static void test_drop_list_clear(struct cache *c)
{
	char key[CACHE_KEY_SIZE], key2[CACHE_KEY_SIZE];
	const char *parts[] = { "drop" }, *parts2[] = { "other" };
	json_t *data = json_pack("{s:s}", "value", "refused");
	struct cache_entry e;
	int counts[4] = { 0, 0, 0, 0 }, n;

	cache_key(key, "token", parts, 1);
	cache_store(c, key, "x", data, time(NULL) + 100, 0);
	ok(cache_drop_if(c, key, match_value, "another", conn_now() + 1) == 0,
	   "drop_if: another value stays");
	ok(cache_load(c, key, &e) == 0, "... still there");
	cache_entry_free(&e);
	ok(cache_drop_if(c, key, match_value, "refused", conn_now() + 1) == 1,
	   "drop_if: the refused value goes");
	ok(cache_load(c, key, &e) == -1, "... gone");
	ok(cache_drop_if(c, key, match_value, "refused", conn_now() + 1) == 0,
	   "drop_if: nothing to drop");

	n = cache_clear(c);
	ok(n >= 0, "clear");
	cache_key(key, "destination", parts, 1);
	cache_key(key2, "destination", parts2, 1);
	cache_store(c, key, "listed", data, time(NULL) + 100, 0);
	cache_store(c, key2, "listed", data, time(NULL) + 100, 0);
	write_raw(key2, "garbage", 0600);
	close(open(entry_path(key, "lock"), O_WRONLY | O_CREAT, 0600));
	{
		/* a failure note, with the facts of its key */
		const char *parts3[] = { "noted" };
		char key3[CACHE_KEY_SIZE];
		struct cache_request r;
		struct cache_entry fe;
		struct outcome o;
		struct fake f = { OUTCOME_TRANSIENT, 0, 0, 0, NULL };

		cache_key(key3, "destination", parts3, 1);
		r = request(key3, 1);
		r.what = "noted";
		r.about = "service https://x.example, client c1";
		ok(cache_get(c, &r, fake_fetch, &f, &fe, &o) == -1, "a failed fetch");
	}
	n = cache_list(c, list_cb, counts);
	is_int(n, 2, "list: two entries");
	is_int(counts[0], 2, "list: callback for each");
	is_int(counts[1], 1, "list: one readable, with what it is");
	is_int(counts[2], 1, "list: the failure note too");
	is_int(counts[3], 1, "list: the note's what, key facts and text");
	is_int(cache_clear(c), 2, "clear: two entries removed");
	counts[0] = counts[2] = 0;
	is_int(cache_list(c, list_cb, counts), 0, "clear: nothing left");
	is_int(counts[2], 0, "clear: the failure note is gone too");
	ok(access(entry_path(key, "lock"), F_OK) == 0, "clear: lock files stay");
	json_decref(data);
	{
		struct cache off = { NULL };

		is_int(cache_list(&off, list_cb, counts), -1, "list: caching off");
		is_int(cache_clear(&off), -1, "clear: caching off");
	}
}

/* rm_tree - remove the test directory */
static void rm_tree(const char *path)
{
	char cmd[800];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", path);
}

int main(void)
{
	struct cache c;

	if (mkdtemp(top) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	snprintf(logfile, sizeof(logfile), "%s/log", top);
	log_open("test-cache", logfile, LOG_LVL_DEBUG);
	snprintf(dir, sizeof(dir), "%s/cache", top);
	mkdir(dir, 0700);

	test_open();
	test_sha256();
	test_keys();
	if (!ok(cache_open(&c, dir) == 0, "the test cache opens")) {
		rm_tree(top);
		return tap_done();
	}
	test_store_load(&c);
	test_untrusted(&c);
	test_get(&c);
	test_single_flight(&c);
	test_drop_list_clear(&c);
	cache_close(&c);
	log_close();
	munmap(sh, sizeof(*sh));
	rm_tree(top);
	return tap_done();
}
