/*
 * state - btprelay-fetch's per-source state file (state.h).
 *
 * Format, one item a line: "uidvalidity N", "done ID" and "sent N ID"
 * (N interrupted hand-overs of ID). Anything else
 * is an error naming the line: a state file is written by this program
 * only, and guessing at a damaged one could deliver a mailbox twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state.h"
#include "util.h"

#define STATE_ID_MAX 200

/* state_find - the index of id, or where it would go (*found 0) */
static size_t state_find(const struct fetch_state *st, const char *id, int *found)
{
	size_t lo = 0, hi = st->n;

	*found = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(st->ids[mid], id);

		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int state_has(const struct fetch_state *st, const char *id)
{
	int found;

	state_find(st, id, &found);
	return found;
}

void state_add(struct fetch_state *st, const char *id)
{
	int found;
	size_t i = state_find(st, id, &found);

	if (found)
		return;
	if (st->n == st->cap) {
		st->cap = st->cap ? 2 * st->cap : 64;
		st->ids = realloc(st->ids, st->cap * sizeof(*st->ids));
		if (st->ids == NULL)
			abort();
	}
	memmove(st->ids + i + 1, st->ids + i, (st->n - i) * sizeof(*st->ids));
	st->ids[i] = xstrdup(id);
	st->n++;
}

unsigned state_sent_count(const struct fetch_state *st, const char *id)
{
	size_t i;

	for (i = 0; i < st->nsent; i++)
		if (strcmp(st->sent[i].id, id) == 0)
			return st->sent[i].count;
	return 0;
}

void state_sent_set(struct fetch_state *st, const char *id, unsigned count)
{
	size_t i;

	for (i = 0; i < st->nsent && strcmp(st->sent[i].id, id) != 0; i++)
		;
	if (i < st->nsent && count == 0) {
		free(st->sent[i].id);
		st->sent[i] = st->sent[--st->nsent];
	} else if (i < st->nsent) {
		st->sent[i].count = count;
	} else if (count > 0) {
		st->sent = realloc(st->sent, (st->nsent + 1) * sizeof(*st->sent));
		if (st->sent == NULL)
			abort();
		st->sent[st->nsent].id = xstrdup(id);
		st->sent[st->nsent++].count = count;
	}
}

void state_keep(struct fetch_state *st, int (*keep)(const char *id, void *arg), void *arg)
{
	size_t i, j = 0;

	for (i = 0; i < st->nsent;) {
		if (keep(st->sent[i].id, arg)) {
			i++;
		} else {
			free(st->sent[i].id);
			st->sent[i] = st->sent[--st->nsent];
		}
	}

	for (i = 0; i < st->n; i++) {
		if (keep(st->ids[i], arg))
			st->ids[j++] = st->ids[i];
		else
			free(st->ids[i]);
	}
	st->n = j;
}

void state_clear(struct fetch_state *st)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		free(st->ids[i]);
	st->n = 0;
	for (i = 0; i < st->nsent; i++)
		free(st->sent[i].id);
	st->nsent = 0;
	st->uidvalidity = 0;
}

void state_free(struct fetch_state *st)
{
	state_clear(st);
	free(st->ids);
	free(st->sent);
	free(st->path);
	memset(st, 0, sizeof(*st));
}

int state_load(struct fetch_state *st, const char *path, char *err, size_t errlen)
{
	char line[STATE_ID_MAX + 32];
	unsigned lineno = 0;
	FILE *f;

	memset(st, 0, sizeof(*st));
	st->path = xstrdup(path);
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "state file %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t len = strcspn(line, "\n");
		char *end;

		lineno++;
		if (line[len] != '\n') {
			snprintf(err, errlen, "state file %s:%u: line too long", path, lineno);
			fclose(f);
			return -1;
		}
		line[len] = '\0';
		if (strncmp(line, "uidvalidity ", 12) == 0) {
			errno = 0;
			st->uidvalidity = strtoul(line + 12, &end, 10);
			if (errno || *end || end == line + 12)
				goto bad;
		} else if (strncmp(line, "done ", 5) == 0 && line[5] != '\0') {
			state_add(st, line + 5);
		} else if (strncmp(line, "sent ", 5) == 0) {
			unsigned long count = strtoul(line + 5, &end, 10);

			if (count == 0 || count > 1000 || *end != ' ' || end[1] == '\0')
				goto bad;
			state_sent_set(st, end + 1, (unsigned)count);
		} else if (line[0] != '#' && line[0] != '\0') {
			goto bad;
		}
	}
	fclose(f);
	return 0;
bad:
	snprintf(err, errlen, "state file %s:%u: not a btprelay-fetch state line "
		 "(move the file away to start over)", path, lineno);
	fclose(f);
	return -1;
}

/* state_sync_dir - fsync the directory of path, so the rename is durable */
static int state_sync_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = -1;

	if (fd >= 0) {
		rc = fsync(fd);
		close(fd);
	}
	free(copy);
	return rc;
}

int state_save(const struct fetch_state *st, char *err, size_t errlen)
{
	size_t tlen = strlen(st->path) + 5, i;
	char *tmp = xmalloc(tlen);
	FILE *f;
	int fd, ok;

	snprintf(tmp, tlen, "%s.tmp", st->path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "state file %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(tmp);
		return -1;
	}
	fprintf(f, "# btprelay-fetch state: messages the MTA accepted (btprelay-fetch(8))\n");
	if (st->uidvalidity)
		fprintf(f, "uidvalidity %lu\n", st->uidvalidity);
	for (i = 0; i < st->n; i++)
		fprintf(f, "done %s\n", st->ids[i]);
	for (i = 0; i < st->nsent; i++)
		fprintf(f, "sent %u %s\n", st->sent[i].count, st->sent[i].id);
	ok = fflush(f) == 0 && fsync(fd) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, st->path) < 0 || state_sync_dir(st->path) < 0) {
		snprintf(err, errlen, "state file %s: %s", st->path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
