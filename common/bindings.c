/*
 * bindings - credentials of the `destination` and `connectivity` service
 * bindings, out of VCAP_SERVICES, a VCAP-shaped JSON file or Kubernetes
 * service binding directories.
 *
 * VCAP_SERVICES wins when it is set and not empty; otherwise the file named
 * by bindings_file is read; when that file does not exist, the binding
 * directories under SERVICE_BINDING_ROOT (or service_binding_root) are
 * turned into the same VCAP-shaped document, one entry per directory whose
 * `type` file says destination or connectivity. A bindings_file set in the
 * configuration that does not exist, with no binding directories to fall
 * back to, is an error naming the path (a typo would otherwise read as
 * "nothing bound"); the default path may be missing. Nothing at all means
 * "nothing bound" (not an error: a host with only a destinations file and
 * Internet relays needs no binding). A file that other users can read, a
 * binding directory they can write to, bad JSON, an ambiguous choice of
 * instance and a binding without a required key are errors: -1 and an
 * outcome deferred with 4.3.5 whose text names the source and the key.
 * Credentials nested in "uaa", or all in one "credentials" key (the SAP BTP
 * service operator's secretKey layout), are found too. Secrets are copied
 * out of the JSON and wiped by bindings_free().
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "bindings.h"
#include "log.h"
#include "util.h"

#define BINDINGS_MAX_FILE (1024 * 1024)
#define BINDINGS_MAX_KEY (64 * 1024)	/* one file of a binding directory */
#define BINDINGS_MAX_KEYS 200		/* files in one binding directory */

/* bind_fail - defer with "SOURCE: text"; returns -1 */
static int __attribute__((format(printf, 3, 4)))
bind_fail(struct outcome *o, const char *src, const char *fmt, ...)
{
	char text[DSN_TEXT_SIZE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	dsn_config(o, "%s: %s", src, text);
	return -1;
}

/* bind_string - a non-empty string member, else NULL */
static const char *bind_string(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;

	return s != NULL && *s != '\0' ? s : NULL;
}

/* bind_pem - a PEM value with literal "\n" sequences turned into newlines */
static char *bind_pem(const char *text)
{
	char *out = xmalloc(strlen(text) + 1), *q = out;
	const char *p;

	for (p = text; *p; p++) {
		if (p[0] == '\\' && p[1] == 'n') {
			*q++ = '\n';
			p++;
		} else {
			*q++ = *p;
		}
	}
	*q = '\0';
	return out;
}

/* bind_is_x509 - whether credential-type names an X.509 kind */
static int bind_is_x509(const json_t *creds)
{
	static const char *const kinds[] = { "x509", "X509_GENERATED", "X509_PROVIDED",
					     "X509_ATTESTED" };
	const char *type = bind_string(creds, "credential-type");
	size_t i;

	for (i = 0; type != NULL && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcasecmp(type, kinds[i]) == 0)
			return 1;
	return 0;
}

/* bind_port - a port as a JSON number or a string of digits; -1 if invalid */
static long bind_port(const json_t *v)
{
	const char *s;
	long n = 0;

	if (json_is_integer(v)) {
		n = (long)json_integer_value(v);
		return n >= 1 && n <= 65535 ? n : -1;
	}
	if (!json_is_string(v) || *(s = json_string_value(v)) == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || (n = n * 10 + (*s - '0')) > 65535)
			return -1;
	}
	return n >= 1 ? n : -1;
}

/*
 * bind_pick - the one instance of label to use. Returns 0 with *entry set,
 * 1 when nothing with that label is bound, -1 on error (outcome set).
 */
static int bind_pick(const json_t *root, const char *label, const char *instance,
		     const char *src, const json_t **entry, struct outcome *o)
{
	const json_t *list = json_object_get(root, label), *item;
	char names[256];
	size_t i, n = 0, len = 0;
	const char *name;

	*entry = NULL;
	names[0] = '\0';
	if (list == NULL || (json_is_array(list) && json_array_size(list) == 0)) {
		if (instance != NULL && *instance != '\0')
			return bind_fail(o, src, "no %s binding named \"%s\" (%s_instance): "
					 "nothing with label %s is bound", label, instance,
					 label, label);
		return 1;
	}
	if (!json_is_array(list))
		return bind_fail(o, src, "\"%s\" is not an array of bindings", label);
	json_array_foreach(list, i, item) {
		if (!json_is_object(item))
			return bind_fail(o, src, "%s binding #%zu is not an object", label, i + 1);
		name = bind_string(item, "name");
		if (instance != NULL && *instance != '\0'
		    && (name == NULL || strcmp(name, instance) != 0))
			continue;
		n++;
		*entry = item;
		if (len < sizeof(names))
			len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
						len ? ", " : "", name ? name : "(unnamed)");
	}
	if (instance != NULL && *instance != '\0') {
		if (n == 0)
			return bind_fail(o, src, "no %s binding named \"%s\" (%s_instance)",
					 label, instance, label);
		if (n > 1)
			return bind_fail(o, src, "%zu %s bindings are named \"%s\": "
					 "rename one", n, label, instance);
	} else if (n > 1) {
		return bind_fail(o, src, "%zu %s bindings (%s): set %s_instance to pick one",
				 n, label, names, label);
	}
	return 0;
}

/*
 * bind_client - the OAuth client of one binding's credentials. url_keys
 * lists the token URL keys in order of preference (secret bindings; X.509
 * bindings use certurl). Returns 0, or -1 with the outcome set.
 */
static int bind_client(const json_t *entry, const char *label, const char *const *url_keys,
		       const char *src, struct oauth_client *c, const json_t **credsp,
		       struct outcome *o)
{
	const json_t *creds = json_object_get(entry, "credentials"), *uaa;
	const char *name = bind_string(entry, "name");
	const char *url = NULL, *v;

	if (!json_is_object(creds))
		return bind_fail(o, src, "%s binding has no credentials object", label);
	/* the SAP BTP service operator's secretKey layout: everything in one JSON key */
	if (bind_string(creds, "clientid") == NULL
	    && json_is_object(json_object_get(creds, "credentials")))
		creds = json_object_get(creds, "credentials");
	*credsp = creds;
	/* some services nest their OAuth client in "uaa" */
	uaa = json_object_get(creds, "uaa");
	if (bind_string(creds, "clientid") == NULL && json_is_object(uaa))
		creds = uaa;
	c->instance = xstrdup(name ? name : label);
	if ((v = bind_string(creds, "clientid")) == NULL)
		return bind_fail(o, src, "%s binding has no clientid", label);
	c->client_id = xstrdup(v);
	if (bind_is_x509(creds)) {
		if ((url = bind_string(creds, "certurl")) == NULL)
			return bind_fail(o, src, "%s binding (X.509) has no certurl", label);
		if ((v = bind_string(creds, "certificate")) == NULL)
			return bind_fail(o, src, "%s binding (X.509) has no certificate", label);
		c->cert_pem = bind_pem(v);
		if ((v = bind_string(creds, "key")) == NULL)
			return bind_fail(o, src, "%s binding (X.509) has no key", label);
		c->key_pem = bind_pem(v);
	} else {
		for (; *url_keys != NULL && url == NULL; url_keys++)
			url = bind_string(creds, *url_keys);
		if (url == NULL)
			return bind_fail(o, src, "%s binding has no %s", label,
					 strcmp(label, "connectivity") == 0
					 ? "token_service_url or url" : "url");
		if ((v = bind_string(creds, "clientsecret")) == NULL)
			return bind_fail(o, src, "%s binding has no clientsecret", label);
		c->client_secret = xstrdup(v);
	}
	c->token_url = xstrdup(url);
	return 0;
}

/* bind_parse - pick and copy both bindings out of a VCAP-shaped document */
static int bind_parse(const struct config *cfg, const json_t *root, const char *src,
		      struct bindings *b, struct outcome *o)
{
	static const char *const dest_urls[] = { "url", NULL };
	static const char *const conn_urls[] = { "token_service_url", "url", NULL };
	const json_t *entry, *creds;
	const char *v;
	long port;
	int rc;

	if (!json_is_object(root))
		return bind_fail(o, src, "not a JSON object (label -> array of bindings)");

	rc = bind_pick(root, "destination", cfg->destination_instance, src, &entry, o);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		if (bind_client(entry, "destination", dest_urls, src, &b->destination,
				&creds, o) < 0)
			return -1;
		if ((v = bind_string(creds, "uri")) == NULL)
			return bind_fail(o, src, "destination binding has no uri");
		b->destination_uri = xstrdup(v);
		b->have_destination = 1;
	}

	rc = bind_pick(root, "connectivity", cfg->connectivity_instance, src, &entry, o);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		if (bind_client(entry, "connectivity", conn_urls, src, &b->connectivity,
				&creds, o) < 0)
			return -1;
		if (cfg->proxy_host != NULL && *cfg->proxy_host != '\0')
			b->proxy_host = xstrdup(cfg->proxy_host);
		else if ((v = bind_string(creds, "onpremise_proxy_host")) != NULL)
			b->proxy_host = xstrdup(v);
		else
			return bind_fail(o, src, "connectivity binding has no "
					 "onpremise_proxy_host");
		if (cfg->proxy_port != 0) {
			b->proxy_port = cfg->proxy_port;
		} else {
			const json_t *pv = json_object_get(creds, "onpremise_socks5_proxy_port");

			if (pv == NULL)
				return bind_fail(o, src, "connectivity binding has no "
						 "onpremise_socks5_proxy_port");
			if ((port = bind_port(pv)) < 0)
				return bind_fail(o, src, "connectivity binding: onpremise_"
						 "socks5_proxy_port is not a port number");
			b->proxy_port = (unsigned)port;
		}
		b->have_connectivity = 1;
	}
	return 0;
}

/*
 * bind_dir_file - the content of one file of a binding directory, after
 * the checks for files that hold secrets: a regular file, no access for
 * other users, owned by root or by this user (a world-writable directory
 * with the sticky bit, as Kubernetes mounts them, lets others add files,
 * never files owned by root), and so is a symbolic link to it. NULL with
 * the outcome set, or with *missing set when the file does not exist.
 */
static char *bind_dir_file(const char *dir, const char *name, const char *src, size_t *len,
			   int *missing, struct outcome *o)
{
	char path[2200], errbuf[2400];
	struct stat st;
	char *text;

	*missing = 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
		bind_fail(o, src, "%s/%s: path too long", dir, name);
		return NULL;
	}
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT) {
			*missing = 1;
			return NULL;
		}
		bind_fail(o, src, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (S_ISLNK(st.st_mode) && st.st_uid != 0 && st.st_uid != geteuid()) {
		bind_fail(o, src, "%s: a symbolic link of uid %u (neither root nor this user); "
			  "refused", path, (unsigned)st.st_uid);
		return NULL;
	}
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		bind_fail(o, src, "%s: not a regular file", path);
		return NULL;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		bind_fail(o, src, "%s: owned by uid %u (neither root nor this user); refused",
			  path, (unsigned)st.st_uid);
		return NULL;
	}
	if (file_check_private(path, errbuf, sizeof(errbuf)) < 0) {
		bind_fail(o, src, "%s (Kubernetes: defaultMode 0440 or 0400 on the volume)", errbuf);
		return NULL;
	}
	if ((text = file_read_all(path, BINDINGS_MAX_KEY, len, errbuf, sizeof(errbuf))) == NULL)
		bind_fail(o, src, "%s", errbuf);
	return text;
}

/* bind_trim - drop trailing white space (a file written with an editor ends in a newline) */
static size_t bind_trim(const char *text, size_t len)
{
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'
			   || text[len - 1] == ' ' || text[len - 1] == '\t'))
		len--;
	return len;
}

/*
 * bind_dir_formats - the credential formats the SAP BTP service operator
 * writes into .metadata: {"credentialProperties":[{"name":..,"format":
 * "text"|"json"}]}. A new reference (name -> format), or NULL when absent.
 */
static json_t *bind_dir_formats(const char *dir, const char *src, struct outcome *o, int *err)
{
	const json_t *list, *item;
	json_t *meta, *map;
	size_t len, i;
	char *text;
	int missing;

	*err = 0;
	if ((text = bind_dir_file(dir, ".metadata", src, &len, &missing, o)) == NULL) {
		*err = !missing;
		return NULL;
	}
	meta = json_loadb(text, len, 0, NULL);
	explicit_bzero(text, len);
	free(text);
	map = json_object();
	list = json_object_get(meta, "credentialProperties");
	json_array_foreach(list, i, item) {
		const char *name = json_string_value(json_object_get(item, "name"));
		const char *format = json_string_value(json_object_get(item, "format"));

		if (name != NULL && format != NULL)
			json_object_set_new(map, name, json_string(format));
	}
	json_decref(meta);
	return map;
}

/*
 * bind_dir_type - the service of a binding directory (its type file) into
 * type: 1 for destination or connectivity, else 0 (no type file, or
 * another service's binding: skipped, whatever its modes)
 */
static int bind_dir_type(const char *dir, const char *src, char *type, size_t size)
{
	char tpath[2200], why[256], *text = NULL;
	struct stat st;
	size_t len, tlen;

	if ((size_t)snprintf(tpath, sizeof(tpath), "%s/type", dir) < sizeof(tpath)
	    && stat(tpath, &st) == 0 && S_ISREG(st.st_mode))
		text = file_read_all(tpath, 256, &len, why, sizeof(why));
	if (text == NULL) {
		log_debug("%s: %s has no readable type file; not a service binding", src, dir);
		return 0;
	}
	tlen = bind_trim(text, len);
	str_printable(type, size, text, tlen < size ? tlen : size - 1);
	free(text);
	if (strcmp(type, "destination") != 0 && strcmp(type, "connectivity") != 0) {
		log_debug("%s: %s is a %s binding; skipped", src, dir, type);
		return 0;
	}
	return 1;
}

/*
 * bind_dir_value - one credential file's text as a JSON value: parsed when
 * .metadata says json (or, without a word from it, when it looks like an
 * object or array), else a string. The text is wiped and freed. NULL with
 * the outcome set when it cannot be one.
 */
static json_t *bind_dir_value(char *text, size_t len, const char *format, const char *path,
			      const char *src, struct outcome *o)
{
	json_t *v = NULL;

	if ((format != NULL && strcmp(format, "json") == 0)
	    || (format == NULL && (text[0] == '{' || text[0] == '['))) {
		v = json_loadb(text, len, 0, NULL);
		if (v == NULL && format != NULL) {
			explicit_bzero(text, len);
			free(text);
			bind_fail(o, src, "%s: not the JSON value .metadata announces", path);
			return NULL;
		}
	}
	if (v == NULL)
		v = json_stringn(text, bind_trim(text, len));
	explicit_bzero(text, len);
	free(text);
	if (v == NULL)
		bind_fail(o, src, "%s: not UTF-8 text", path);
	return v;
}

/*
 * bind_dir - one directory SERVICE_BINDING_ROOT/NAME: when its type file
 * names destination or connectivity, append {"name","label","credentials"}
 * to doc[type], one credential per file (JSON when .metadata says so, or
 * when the text is a JSON object or array). Returns 0 (also for a
 * directory of another service), -1 with the outcome set.
 */
static int bind_dir(const char *dir, const char *name, const char *src, json_t *doc,
		    struct outcome *o)
{
	struct dirent **names = NULL;
	json_t *creds = NULL, *formats = NULL, *v, *list;
	char type[64], *text;
	struct stat st;
	size_t len;
	int i, n = 0, missing, err, rc = -1;

	/* the type is no secret: other services' bindings are skipped whatever their modes */
	if (!bind_dir_type(dir, src, type, sizeof(type)))
		return 0;
	if (stat(dir, &st) < 0)
		return bind_fail(o, src, "%s: %s", dir, strerror(errno));
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return bind_fail(o, src, "%s: owned by uid %u (neither root nor this user); "
				 "refused", dir, (unsigned)st.st_uid);
	if ((st.st_mode & 002) && !(st.st_mode & S_ISVTX))
		return bind_fail(o, src, "%s: writable by other users (mode %04o): they could "
				 "replace credentials; chmod o-w %s", dir,
				 (unsigned)(st.st_mode & 07777), dir);
	formats = bind_dir_formats(dir, src, o, &err);
	if (err)
		return -1;
	if ((n = scandir(dir, &names, NULL, alphasort)) < 0)
		return bind_fail(o, src, "%s: %s", dir, strerror(errno));
	if (n > BINDINGS_MAX_KEYS + 2) {
		bind_fail(o, src, "%s: more than %d files", dir, BINDINGS_MAX_KEYS);
		goto out;
	}
	creds = json_object();
	for (i = 0; i < n; i++) {
		const char *key = names[i]->d_name;
		char path[2200];

		/* dot files: Kubernetes' ..data links, .metadata; type is not a credential */
		if (key[0] == '.' || strcmp(key, "type") == 0)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, key) >= sizeof(path)
		    || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
			continue;
		if ((text = bind_dir_file(dir, key, src, &len, &missing, o)) == NULL) {
			if (missing)
				continue;	/* gone since the listing (an update) */
			goto out;
		}
		v = bind_dir_value(text, len, json_string_value(json_object_get(formats, key)), path,
				   src, o);
		if (v == NULL)
			goto out;
		json_object_set_new(creds, key, v);
	}
	if ((list = json_object_get(doc, type)) == NULL) {
		list = json_array();
		json_object_set_new(doc, type, list);
	}
	json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "name", name, "label", type,
					      "credentials", creds));
	creds = NULL;		/* doc holds it now */
	rc = 0;
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (creds != NULL) {
		json_wipe(creds);
		json_decref(creds);
	}
	json_decref(formats);
	return rc;
}

/*
 * bind_from_dirs - the Kubernetes service binding directories under root
 * as a VCAP-shaped document; NULL with the outcome set
 */
static json_t *bind_from_dirs(const char *root, const char *src, struct outcome *o)
{
	struct dirent **names;
	char path[2200];
	struct stat st;
	json_t *doc;
	int i, n, rc = 0;

	if (stat(root, &st) < 0) {
		bind_fail(o, src, "%s", strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		bind_fail(o, src, "not a directory");
		return NULL;
	}
	if ((n = scandir(root, &names, NULL, alphasort)) < 0) {
		bind_fail(o, src, "%s", strerror(errno));
		return NULL;
	}
	doc = json_object();
	for (i = 0; i < n; i++) {
		if (rc == 0 && names[i]->d_name[0] != '.'
		    && (size_t)snprintf(path, sizeof(path), "%s/%s", root, names[i]->d_name)
		       < sizeof(path)
		    && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			rc = bind_dir(path, names[i]->d_name, src, doc, o);
		free(names[i]);
	}
	free(names);
	if (rc < 0) {
		json_wipe(doc);
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/*
 * bind_read_file - the bindings file, private to its owner, parsed: 0 with
 * *root (NULL when it is no JSON: jerr says why), or -1 with the outcome
 * when it cannot be read; the text is wiped
 */
static int bind_read_file(const char *path, json_t **root, json_error_t *jerr,
			  struct outcome *o)
{
	char errbuf[512], *text;
	size_t len = 0;

	if (file_check_private(path, errbuf, sizeof(errbuf)) < 0
	    || (text = file_read_all(path, BINDINGS_MAX_FILE, &len, errbuf, sizeof(errbuf))) == NULL) {
		dsn_config(o, "bindings file %s", errbuf);
		return -1;
	}
	*root = json_loadb(text, len, 0, jerr);
	explicit_bzero(text, len);
	free(text);
	return 0;
}

/*
 * bindings_load - read what is bound: VCAP_SERVICES, else the bindings
 * file, else the service binding directories (SERVICE_BINDING_ROOT, else
 * service_binding_root)
 */
int bindings_load(const struct config *cfg, struct bindings *b, struct outcome *o)
{
	const char *env = getenv("VCAP_SERVICES");
	const char *dirs = getenv("SERVICE_BINDING_ROOT");
	char src[1100];
	json_error_t jerr;
	json_t *root;
	struct stat st;
	int rc;

	memset(b, 0, sizeof(*b));
	if (dirs == NULL || *dirs == '\0')
		dirs = cfg->service_binding_root;
	if (env != NULL && *env != '\0') {
		b->source = xstrdup("VCAP_SERVICES");
		snprintf(src, sizeof(src), "VCAP_SERVICES");
		root = json_loads(env, 0, &jerr);
	} else if (cfg->bindings_file != NULL && *cfg->bindings_file != '\0'
		   && (stat(cfg->bindings_file, &st) == 0 || errno != ENOENT)) {
		b->source = xstrdup(cfg->bindings_file);
		snprintf(src, sizeof(src), "bindings file %s", cfg->bindings_file);
		if (bind_read_file(cfg->bindings_file, &root, &jerr, o) < 0)
			goto fail;
	} else if (cfg->bindings_file_line > 0 && *cfg->bindings_file != '\0'
		   && (dirs == NULL || *dirs == '\0')) {
		/* set by hand and missing: a typo, not "nothing bound" */
		dsn_config(o, "bindings file %s does not exist (bindings_file, %s line "
			   "%u): fix the path, or set \"bindings_file =\" for no bindings file",
			   cfg->bindings_file, cfg->path ? cfg->path : "configuration",
			   cfg->bindings_file_line);
		return -1;
	} else if (dirs != NULL && *dirs != '\0') {
		if (cfg->bindings_file != NULL && *cfg->bindings_file != '\0')
			log_debug("bindings file %s: not found; trying %s", cfg->bindings_file, dirs);
		b->source = xstrdup(dirs);
		snprintf(src, sizeof(src), "service bindings %s", dirs);
		if ((root = bind_from_dirs(dirs, src, o)) == NULL)
			goto fail;
	} else {
		if (cfg->bindings_file != NULL && *cfg->bindings_file != '\0')
			log_debug("bindings file %s: not found; no service bound",
				  cfg->bindings_file);
		return 0;
	}
	if (root == NULL) {
		/* jansson quotes the text "near" the error: it may be part of a secret */
		char *near = strstr(jerr.text, " near ");

		if (near != NULL)
			*near = '\0';
		bind_fail(o, src, "bad JSON at line %d, column %d: %s", jerr.line, jerr.column,
			  jerr.text);
		goto fail;
	}
	rc = bind_parse(cfg, root, src, b, o);
	json_wipe(root);
	json_decref(root);
	if (rc < 0)
		goto fail;
	log_debug("%s: destination %s, connectivity %s", src,
		  b->have_destination ? b->destination.instance : "not bound",
		  b->have_connectivity ? b->connectivity.instance : "not bound");
	return 0;
fail:
	bindings_free(b);
	return -1;
}

/* bind_wipe - wipe and free one string */
static void bind_wipe(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

/* bind_client_free - wipe and free one OAuth client */
static void bind_client_free(struct oauth_client *c)
{
	bind_wipe(&c->token_url);
	bind_wipe(&c->client_id);
	bind_wipe(&c->client_secret);
	bind_wipe(&c->cert_pem);
	bind_wipe(&c->key_pem);
	bind_wipe(&c->instance);
}

/* bindings_free - wipe secrets, release everything; safe twice */
void bindings_free(struct bindings *b)
{
	bind_client_free(&b->destination);
	bind_client_free(&b->connectivity);
	bind_wipe(&b->destination_uri);
	bind_wipe(&b->proxy_host);
	bind_wipe(&b->source);
	b->have_destination = 0;
	b->have_connectivity = 0;
	b->proxy_port = 0;
}
