/*
 * destination - the lookup chain that finds a MAIL destination by name
 * (btprelay(8), "Where destinations and bindings come from"): the
 * destinations file first, then the destinations declared in the
 * configuration file, then the Destination Service (dest_service.c).
 * The properties are dest_props.c's.
 *
 * dest_resolve() returns 0 with d filled, or -1 with a deferred outcome:
 * OUTCOME_NOT_FOUND when no source of the chain has the name (an answer,
 * 4.3.5 "destination NAME not found ..."); 4.3.5 when the destination is
 * wrong (an operator fixes it), 4.7.0 when the Destination Service refuses
 * our token, 4.4.3 when it cannot be reached or fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <jansson.h>

#include "dest_props.h"
#include "dest_service.h"
#include "destination.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define DEST_MAX_FILE (1024 * 1024)

/*
 * dest_from_file - look name up in the destinations file. Returns 0 with d
 * filled, or -1 with the outcome: OUTCOME_NOT_FOUND when the file has no
 * such destination.
 */
static int dest_from_file(const char *path, const char *name, struct mail_destination *d,
			  struct outcome *o)
{
	char errbuf[512], source[1100];
	const json_t *entry, *found = NULL;
	json_error_t jerr;
	json_t *root;
	struct stat st;
	size_t len, i;
	char *text;
	int rc;

	if (stat(path, &st) < 0) {
		dsn_config(o, "destinations file %s: %s", path, strerror(errno));
		return -1;
	}
	/* it may hold relay passwords */
	if (file_check_private(path, errbuf, sizeof(errbuf)) < 0) {
		dsn_config(o, "destinations file %s", errbuf);
		return -1;
	}
	if ((text = file_read_all(path, DEST_MAX_FILE, &len, errbuf, sizeof(errbuf))) == NULL) {
		dsn_config(o, "destinations file %s", errbuf);
		return -1;
	}
	root = json_loadb(text, len, 0, &jerr);
	explicit_bzero(text, len);
	free(text);
	if (root == NULL) {
		/* jansson quotes the text "near" the error: it may be part of a password */
		char *near = strstr(jerr.text, " near ");

		if (near != NULL)
			*near = '\0';
		dsn_config(o, "destinations file %s: bad JSON at line %d, column %d: %s",
			   path, jerr.line, jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_array(root)) {
		json_decref(root);
		dsn_config(o, "destinations file %s: not a JSON array of destinations",
			   path);
		return -1;
	}
	json_array_foreach(root, i, entry) {
		const char *n = json_is_object(entry) ? dest_entry_name(entry) : NULL;

		if (n != NULL && strcmp(n, name) == 0) {
			found = entry;
			break;
		}
	}
	if (found == NULL) {
		json_decref(root);
		dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found in %s", name, path);
		return -1;
	}
	snprintf(source, sizeof(source), "destinations file %s", path);
	rc = dest_from_properties(found, source, d, o);
	json_decref(root);
	return rc;
}

/*
 * dest_from_config - a destination declared in the configuration file
 * (destination.NAME.PROPERTY lines). Type defaults to MAIL. Returns 0 with
 * d filled, or -1 with the outcome: OUTCOME_NOT_FOUND when the
 * configuration declares no such destination.
 */
static int dest_from_config(const struct config *cfg, const char *name,
			    struct mail_destination *d, struct outcome *o)
{
	char source[1100];
	json_t *props = NULL, *v;
	size_t i;
	int rc;

	for (i = 0; i < cfg->ndest_props; i++) {
		const struct config_dest_prop *dp = &cfg->dest_props[i];

		if (strcmp(dp->destination, name) != 0)
			continue;
		if (props == NULL) {
			props = json_object();
			json_object_set_new(props, "Name", json_string(name));
		}
		if ((v = json_string(dp->value)) == NULL) {
			dsn_config(o, "destination %s in %s line %u: the value of %s is "
				   "not UTF-8", name, cfg->path ? cfg->path : "the configuration",
				   dp->line, dp->property);
			dest_json_free(props);
			return -1;
		}
		json_object_set_new(props, dp->property, v);
	}
	if (props == NULL) {
		dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found in the "
			 "configuration", name);
		return -1;
	}
	if (json_object_get(props, "Type") == NULL)
		json_object_set_new(props, "Type", json_string("MAIL"));
	snprintf(source, sizeof(source), "configuration file %s",
		 cfg->path ? cfg->path : "(defaults)");
	rc = dest_from_properties(props, source, d, o);
	dest_json_free(props);
	return rc;
}

/* dest_resolve - the lookup chain for name, without a deadline of its own */
int dest_resolve(const struct config *cfg, const struct bindings *b, const char *name,
		 struct mail_destination *d, struct outcome *o)
{
	return dest_resolve_until(cfg, b, name, 0, d, o);
}

/* dest_resolve_until - the lookup chain for name */
int dest_resolve_until(const struct config *cfg, const struct bindings *b, const char *name,
		       double deadline, struct mail_destination *d, struct outcome *o)
{
	const char *file = cfg->destinations_file;
	int have_file = file != NULL && *file != '\0';
	int have_conf = cfg->ndest_props > 0;
	char q[64];
	struct strbuf where;
	const char *p;
	int rc;

	memset(d, 0, sizeof(*d));
	d->cache_age = -1;
	metrics_inc(METRIC_DEST_LOOKUPS);
	for (p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			break;
	if (*name == '\0' || *p != '\0' || strlen(name) > DEST_NAME_MAX) {
		str_printable(q, sizeof(q), name, strlen(name));
		dsn_config(o, "\"%s\" is not a valid destination name", q);
		return -1;
	}
	if (have_file) {
		rc = dest_from_file(file, name, d, o);
		if (rc == 0 || o->kind != OUTCOME_NOT_FOUND)
			goto done;
	}
	if (have_conf) {
		rc = dest_from_config(cfg, name, d, o);
		if (rc == 0 || o->kind != OUTCOME_NOT_FOUND)
			goto done;
	}
	/* where else it was looked for, for the text of "not found" */
	strbuf_init(&where, 0);
	if (have_file)
		strbuf_printf(&where, "destinations file %s", file);
	if (have_conf)
		strbuf_printf(&where, "%sconfiguration file %s", where.len == 0 ? ""
			      : b->have_destination ? " nor in " : ", ",
			      cfg->path ? cfg->path : "(defaults)");
	if (b->have_destination) {
		rc = dest_from_service(cfg, b, name, deadline, d, o);
		if (rc < 0 && o->kind == OUTCOME_NOT_FOUND && where.len > 0) {
			char service[DSN_TEXT_SIZE];

			str_copy(service, o->text, sizeof(service));
			dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "%s nor in %s", service, where.str);
		}
	} else if (where.len > 0) {
		dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found (%s, no "
			 "Destination Service binding)", name, where.str);
		rc = -1;
	} else {
		dsn_fail(o, OUTCOME_NOT_FOUND, "4.3.5", "destination %s not found (no "
			 "destinations file, no Destination Service binding)", name);
		rc = -1;
	}
	strbuf_free(&where);
done:
	if (rc == 0)
		log_debug("destination %s from %s%s: relay %s:%u%s%s", d->name, d->source,
			  d->stale ? " (stale cache entry)" : d->cache_age >= 0 ? " (cached)" : "",
			  d->host ? d->host : "(none)", d->port, d->onpremise ? " OnPremise" : " Internet",
			  d->smtps ? " smtps" : "");
	return rc;
}
