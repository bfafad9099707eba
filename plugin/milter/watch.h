/*
 * watch - has any file a policy was built from changed since? (watch.c)
 */
#ifndef BTPRELAY_MILTER_WATCH_H
#define BTPRELAY_MILTER_WATCH_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "conf.h"

#define WATCH_MAX 34			/* files and directories looked at */

struct watch_file {
	char *path;
	int exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct watch {
	size_t n;
	struct watch_file f[WATCH_MAX];
};

/*
 * watch_take - stamps of what cfg reads: the configuration file, the
 * bindings file, the destinations file, the binding root directory and its
 * subdirectories (Kubernetes replaces a binding by swapping a link in it).
 */
void watch_take(struct watch *w, const struct config *cfg);
/* watch_again - w's files stamped again, into now */
void watch_again(const struct watch *w, struct watch *now);
/* watch_same_files - 1 when a and b look at the same paths */
int watch_same_files(const struct watch *a, const struct watch *b);
/* watch_changed - the first path whose stamp differs between a and b (same files), or NULL */
const char *watch_changed(const struct watch *a, const struct watch *b);
/* watch_move - dst = src (dst freed first), src emptied */
void watch_move(struct watch *dst, struct watch *src);
void watch_free(struct watch *w);

#endif
