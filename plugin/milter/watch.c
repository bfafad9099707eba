/*
 * watch - notice, by stat(2) alone, that a file the milter's policy was
 * built from has changed: the configuration, the bindings file, the
 * destinations file, a binding directory. A stamp is existence, device,
 * inode, size, mtime and ctime: an editor's rename, an in-place rewrite
 * and a touch all change it. Cheap enough for the request path when the
 * caller rate-limits it (main.c: once every few seconds).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"
#include "watch.h"

/* watch_add - one path and its stamp */
static void watch_add(struct watch *w, const char *path)
{
	struct watch_file *f;
	struct stat st;

	if (path == NULL || *path == '\0' || w->n >= WATCH_MAX)
		return;
	f = &w->f[w->n++];
	memset(f, 0, sizeof(*f));
	f->path = xstrdup(path);
	if (stat(path, &st) == 0) {
		f->exists = 1;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->size = st.st_size;
		f->mtime = st.st_mtim;
		f->ctime = st.st_ctim;
	}
}

/* watch_take - stamps of what cfg reads */
void watch_take(struct watch *w, const struct config *cfg)
{
	char sub[4096];
	struct dirent *de;
	DIR *dir;

	memset(w, 0, sizeof(*w));
	watch_add(w, cfg->path);
	watch_add(w, cfg->bindings_file);
	watch_add(w, cfg->destinations_file);
	if (cfg->service_binding_root == NULL || *cfg->service_binding_root == '\0')
		return;
	watch_add(w, cfg->service_binding_root);
	if ((dir = opendir(cfg->service_binding_root)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0'
					     || (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", cfg->service_binding_root,
				     de->d_name) < sizeof(sub))
			watch_add(w, sub);
	}
	closedir(dir);
}

/* watch_again - w's files stamped again */
void watch_again(const struct watch *w, struct watch *now)
{
	size_t i;

	memset(now, 0, sizeof(*now));
	for (i = 0; i < w->n; i++)
		watch_add(now, w->f[i].path);
}

/* watch_same_files - 1 when a and b look at the same paths */
int watch_same_files(const struct watch *a, const struct watch *b)
{
	size_t i;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++)
		if (strcmp(a->f[i].path, b->f[i].path) != 0)
			return 0;
	return 1;
}

/* ts_eq - two timestamps equal */
static int ts_eq(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* watch_changed - the first path whose stamp differs, or NULL */
const char *watch_changed(const struct watch *a, const struct watch *b)
{
	const struct watch_file *x, *y;
	size_t i;

	for (i = 0; i < a->n && i < b->n; i++) {
		x = &a->f[i];
		y = &b->f[i];
		if (x->exists != y->exists || x->dev != y->dev || x->ino != y->ino
		    || x->size != y->size || !ts_eq(&x->mtime, &y->mtime)
		    || !ts_eq(&x->ctime, &y->ctime))
			return y->path;
	}
	return NULL;
}

/* watch_move - dst = src, src emptied */
void watch_move(struct watch *dst, struct watch *src)
{
	watch_free(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
}

/* watch_free - the paths */
void watch_free(struct watch *w)
{
	size_t i;

	for (i = 0; i < w->n; i++)
		free(w->f[i].path);
	memset(w, 0, sizeof(*w));
}
