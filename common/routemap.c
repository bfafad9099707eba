/*
 * routemap - a route table as the Postfix lookup table that transport_maps
 * and relay_domains read (routemap.h): text written under a temporary
 * name, indexed by postmap(1), both renamed into place.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "routemap.h"
#include "util.h"

#define ROUTEMAP_POSTMAP_SECONDS 60	/* postmap of a table of ROUTES_MAX lines takes well under */
#define ROUTEMAP_FILE_MAX (4 * 1024 * 1024)

/* routemap_value - the transport_maps value of a destination */
int routemap_value(const char *tmpl, const char *name, char *buf, size_t size)
{
	size_t n = 0, k;
	const char *p = tmpl, *add;

	while (*p != '\0') {
		if (strncmp(p, "${destination}", 14) == 0) {
			add = name;
			p += 14;
		} else if (strncmp(p, "$destination", 12) == 0) {
			add = name;
			p += 12;
		} else {
			if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p) || n + 1 >= size)
				return -1;
			buf[n++] = *p++;
			continue;
		}
		k = strlen(add);
		if (n + k >= size)
			return -1;
		memcpy(buf + n, add, k);
		n += k;
	}
	buf[n] = '\0';
	return n > 0 ? 0 : -1;
}

/* map_suffix - the file postmap(1) makes for a table type, NULL when not supported */
static const char *map_suffix(const char *type)
{
	if (strcmp(type, "hash") == 0 || strcmp(type, "btree") == 0)
		return ".db";
	if (strcmp(type, "cdb") == 0)
		return ".cdb";
	return NULL;
}

/* routemap_run - run a Postfix command (argv[0] from PATH, else /usr/sbin) */
int routemap_run(const char *const argv[], int seconds, char *why, size_t size)
{
	char path[300];
	pid_t pid;
	int status, i;

	if ((pid = fork()) < 0) {
		snprintf(why, size, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		execvp(argv[0], (char *const *)argv);
		snprintf(path, sizeof(path), "/usr/sbin/%s", argv[0]);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < seconds * 20; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				return 0;
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				snprintf(why, size, "%s not found (PATH, /usr/sbin)", argv[0]);
			else
				snprintf(why, size, "%s %s failed (%s %d)", argv[0], argv[1],
					 WIFEXITED(status) ? "exit" : "signal",
					 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			return -1;
		}
		usleep(50000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	snprintf(why, size, "%s %s did not finish in %d s", argv[0], argv[1], seconds);
	return -1;
}

/*
 * routemap_text - the map's source: a header, then "domain value" in the
 * table's order (sorted by domain). 0 with *text allocated, or -1 with the
 * outcome.
 */
static int routemap_text(const struct route_table *t, const char *tmpl, const char *path,
			 char **text, size_t *len, struct outcome *o)
{
	char value[600];
	size_t i;
	FILE *f = open_memstream(text, len);

	if (f == NULL) {
		dsn_local(o, "routes map %s: out of memory", path);
		return -1;
	}
	fprintf(f, "# written by btprelay routes: do not edit (btprelay(8))\n");
	for (i = 0; i < t->n; i++) {
		if (routemap_value(tmpl, t->v[i].destination, value, sizeof(value)) < 0) {
			fclose(f);
			free(*text);
			*text = NULL;
			dsn_config(o, "routes_transport \"%s\": not a transport:nexthop "
				   "for destination %s", tmpl, t->v[i].destination);
			return -1;
		}
		fprintf(f, "%s\t%s\n", t->v[i].domain, value);
	}
	fclose(f);
	return 0;
}

/* routemap_write - the table as a Postfix lookup table, replaced atomically */
int routemap_write(const struct route_table *t, const char *tmpl, const char *map,
		   int *changed, struct outcome *o)
{
	char type[16] = "hash", why[4400], tmp[4200], tmpdb[4300], db[4300], arg[4300];
	const char *const postmap[] = { "postmap", arg, NULL };
	const char *path = map, *colon = strchr(map, ':'), *suffix;
	char *text = NULL, *old = NULL;
	size_t len = 0, oldlen = 0;
	struct stat st;
	int fd, mode_rc, rc = -1;

	*changed = 0;
	if (colon != NULL && (size_t)(colon - map) < sizeof(type) && strchr(map, '/') > colon) {
		memcpy(type, map, (size_t)(colon - map));
		type[colon - map] = '\0';
		path = colon + 1;
	}
	if ((suffix = map_suffix(type)) == NULL || *path != '/' || strlen(path) > 4000) {
		dsn_config(o, "routes map %s: want [hash|btree|cdb:]/absolute/path",
			   map);
		return -1;
	}
	if (routemap_text(t, tmpl, path, &text, &len, o) < 0)
		return -1;
	snprintf(db, sizeof(db), "%s%s", path, suffix);
	old = file_read_all(path, ROUTEMAP_FILE_MAX, &oldlen, why, sizeof(why));
	if (old != NULL && oldlen == len && memcmp(old, text, len) == 0 && stat(db, &st) == 0) {
		free(old);
		free(text);
		return 0;
	}
	free(old);

	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
	snprintf(tmpdb, sizeof(tmpdb), "%s%s", tmp, suffix);
	unlink(tmp);
	unlink(tmpdb);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		snprintf(why, sizeof(why), "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	/* Postfix's processes read it, whatever the umask */
	mode_rc = fchmod(fd, 0644);
	if (close(fd) < 0 || mode_rc < 0) {
		snprintf(why, sizeof(why), "%s: %s", tmp, strerror(errno));
		goto out;
	}
	snprintf(arg, sizeof(arg), "%s:%s", type, tmp);
	if (routemap_run(postmap, ROUTEMAP_POSTMAP_SECONDS, why, sizeof(why)) < 0)
		goto out;
	/* the indexed file first: it is what Postfix reads */
	if (rename(tmpdb, db) < 0 || rename(tmp, path) < 0) {
		snprintf(why, sizeof(why), "rename into %s: %s", path, strerror(errno));
		goto out;
	}
	*changed = 1;
	rc = 0;
out:
	if (rc < 0) {
		unlink(tmp);
		unlink(tmpdb);
		dsn_local(o, "routes map %s: %s; the old table stays", path, why);
	}
	free(text);
	return rc;
}
