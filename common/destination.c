/*
 * destination - MAIL destinations (REFERENCE.md §4) and the lookup chain
 * that finds one by name (§5): the destinations file first, then the
 * destinations declared in the configuration file, then the Destination
 * Service ("find", $skipTokenRetrieval=true unless the destination's
 * Authentication is an OAuth2 kind, whose token then comes along).
 *
 * dest_from_properties() turns a flat property object into struct
 * mail_destination, checking what the rest of the program relies on: Type
 * MAIL, a supported ProxyType, a host and a numeric port, booleans that are
 * true or false, and no CR, LF or NUL in any value (values end up in SMTP
 * commands and the proxy handshake). dest_resolve() returns 0 with d
 * filled; DEST_NOT_FOUND when no source of the chain has the name (an
 * answer, outcome 4.3.5 "destination NAME not found ..."); or -1 with a
 * deferred outcome: 4.3.5 when the destination is wrong (an operator fixes
 * it), 4.7.0 when the Destination Service refuses our token, 4.4.3 when it
 * cannot be reached or fails. The relay password, tokens and delivered
 * certificates (a key store may hold a private key) are wiped by
 * dest_free().
 *
 * The Find response's certificates[] come along with the destination:
 * at most DEST_CERT_MAX entries, each base64 of at most 64 KiB; anything
 * else defers 4.3.5 naming the destination and the certificate, as a
 * wrong property does. Whether they are certificates is tls.c's question.
 *
 * Destination Service answers are cached (cache.c) under the name, the
 * service URI, the binding's token URL and client id, the tenant and the
 * selection, as {"properties", "subscriber", "auth_token", "certificates"}:
 * for destination_cache_ttl (shorter when an OAuth token inside
 * expires sooner) and, past that, for destination_stale_ttl while the
 * service cannot be reached, times out or fails with a 5xx; never after a
 * 404, which is an answer. Tenants: subscriberFirst asks with the
 * subscriber's token and, on 404, with the provider's; the tenant that
 * answered is kept in tenant_is_subscriber, so the Connectivity token is
 * fetched for the same tenant and reaches that tenant's Cloud Connector.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <jansson.h>

#include "cache.h"
#include "conn.h"
#include "destination.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
#include "redact.h"
#include "util.h"

#define DEST_MAX_FILE (1024 * 1024)
#define DEST_NAME_MAX 200		/* the Destination Service's limit */
#define DEST_HOST_MAX 255		/* SOCKS5 ATYP 03 length byte */
#define DEST_LOCATION_MAX 189		/* base64 of it must fit one length byte */
#define DEST_FIND_PATH "/destination-configuration/v1/destinations/"
#define DEST_CERT_MAX 16		/* certificates[] entries of one destination */
#define DEST_CERT_SIZE_MAX (64 * 1024)	/* one certificate file, decoded */
#define DEST_CERT_NAME_MAX 200

/* dest_get - a property value; NULL when absent or empty */
static const char *dest_get(const json_t *props, const char *key)
{
	const char *s = json_string_value(json_object_get(props, key));

	return s != NULL && *s != '\0' ? s : NULL;
}

/* dest_dup - a copy of a property value, NULL when absent or empty */
static char *dest_dup(const json_t *props, const char *key)
{
	const char *s = dest_get(props, key);

	return s != NULL ? xstrdup(s) : NULL;
}

/* dest_parse_port - "1".."65535" -> port; -1 if invalid */
static long dest_parse_port(const char *s)
{
	long n = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s; s++)
		if (*s < '0' || *s > '9' || (n = n * 10 + (*s - '0')) > 65535)
			return -1;
	return n >= 1 ? n : -1;
}

/*
 * dest_bool - a true/false property into *out (1, 0, or -1 when absent).
 * Returns -1 with the outcome set when the value is something else.
 */
static int dest_bool(const json_t *props, const char *key, const char *name, int *out,
		     struct outcome *o)
{
	const char *s = dest_get(props, key);
	char q[64];

	*out = -1;
	if (s == NULL)
		return 0;
	if (strcasecmp(s, "true") == 0) {
		*out = 1;
	} else if (strcasecmp(s, "false") == 0) {
		*out = 0;
	} else {
		str_printable(q, sizeof(q), s, strlen(s));
		dsn_defer(o, "4.3.5", "destination %s: %s is \"%s\", not true or false",
			  name, key, q);
		return -1;
	}
	return 0;
}

/* dest_check_values - every value a string without CR, LF or NUL */
static int dest_check_values(const json_t *props, const char *name, struct outcome *o)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)props, key, v) {
		char k[80];

		str_printable(k, sizeof(k), key, strlen(key));
		if (!json_is_string(v)) {
			dsn_defer(o, "4.3.5", "destination %s: value of %s is not a string",
				  name, k);
			return -1;
		}
		if (strlen(json_string_value(v)) != json_string_length(v)
		    || strpbrk(json_string_value(v), "\r\n") != NULL) {
			dsn_defer(o, "4.3.5", "destination %s: value of %s contains CR, LF "
				  "or NUL; refused", name, k);
			return -1;
		}
	}
	return 0;
}

/* dest_flatten - raw properties as they are, or originalProperties filled in */
json_t *dest_flatten(const json_t *props)
{
	static const char *const map[][2] = {
		{ "name", "Name" },
		{ "type", "Type" },
		{ "proxyType", "ProxyType" },
		{ "authentication", "Authentication" },
		{ "cloudConnectorLocationId", "CloudConnectorLocationId" },
	};
	const json_t *orig;
	json_t *flat, *v;
	size_t i;

	if (!json_is_object(props))
		return NULL;
	orig = json_object_get(props, "originalProperties");
	if (!json_is_object(orig))
		return json_incref((json_t *)props);
	flat = json_copy((json_t *)orig);
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		v = json_object_get(props, map[i][0]);
		if (v != NULL && json_object_get(flat, map[i][1]) == NULL)
			json_object_set(flat, map[i][1], v);
	}
	return flat;
}

/* dest_has_control - a byte no host name has: space, control characters, DEL */
static int dest_has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* dest_store_name - the mail.store.protocol value of a DEST_STORE_* */
const char *dest_store_name(int protocol)
{
	static const char *const names[] = { "none", "imap", "imaps", "pop3", "pop3s" };

	return protocol >= 0 && protocol <= DEST_STORE_POP3S ? names[protocol] : "none";
}

/*
 * dest_store_fill - mail.store.protocol and the mailbox's host, port and
 * TLS hints under mail.PROTO.* (Jakarta Mail's names; mail.host is its
 * fallback for the host)
 */
static int dest_store_fill(const json_t *props, struct mail_destination *d, struct outcome *o)
{
	static const unsigned ports[] = { 0, 143, 993, 110, 995 };
	const char *proto = dest_get(props, "mail.store.protocol"), *host, *port;
	struct dest_store *st = &d->store;
	char key[64], q[64];
	long n;
	int p;

	st->ssl_enable = st->starttls_enable = st->starttls_required = -1;
	st->ssl_checkserveridentity = -1;
	if (proto == NULL)
		return 0;
	for (p = DEST_STORE_IMAP; p <= DEST_STORE_POP3S; p++)
		if (strcasecmp(proto, dest_store_name(p)) == 0)
			break;
	if (p > DEST_STORE_POP3S) {
		str_printable(q, sizeof(q), proto, strlen(proto));
		dsn_defer(o, "4.3.5", "destination %s: mail.store.protocol is %s "
			  "(imap, imaps, pop3 or pop3s)", d->name, q);
		return -1;
	}
	st->protocol = p;
	proto = dest_store_name(p);
#define STORE_KEY(suffix) (snprintf(key, sizeof(key), "mail.%s.%s", proto, suffix), key)
	if ((host = dest_get(props, STORE_KEY("host"))) == NULL
	    && (host = dest_get(props, "mail.host")) == NULL) {
		dsn_defer(o, "4.3.5", "destination %s: no mail.%s.host or mail.host", d->name, proto);
		return -1;
	}
	if (strlen(host) > DEST_HOST_MAX || dest_has_control(host)) {
		dsn_defer(o, "4.3.5", "destination %s: the mailbox host is not a valid host name",
			  d->name);
		return -1;
	}
	st->host = xstrdup(host);
	st->port = ports[p];
	if ((port = dest_get(props, STORE_KEY("port"))) != NULL) {
		if ((n = dest_parse_port(port)) < 0) {
			str_printable(q, sizeof(q), port, strlen(port));
			dsn_defer(o, "4.3.5", "destination %s: mail.%s.port \"%s\" is not a number "
				  "from 1 to 65535", d->name, proto, q);
			return -1;
		}
		st->port = (unsigned)n;
	}
	if (dest_bool(props, STORE_KEY("ssl.enable"), d->name, &st->ssl_enable, o) < 0
	    || dest_bool(props, STORE_KEY("starttls.enable"), d->name, &st->starttls_enable, o) < 0
	    || dest_bool(props, STORE_KEY("starttls.required"), d->name,
			 &st->starttls_required, o) < 0
	    || dest_bool(props, STORE_KEY("ssl.checkserveridentity"), d->name,
			 &st->ssl_checkserveridentity, o) < 0)
		return -1;
	st->ssl_trust = dest_dup(props, STORE_KEY("ssl.trust"));
	st->ssl_fingerprint = dest_dup(props, STORE_KEY("ssl.fingerprint"));
	st->ssl_verifyname = dest_dup(props, STORE_KEY("ssl.verifyname"));
#undef STORE_KEY
	return 0;
}

/* dest_fill - the checks and copies of dest_from_properties on a flat object */
static int dest_fill(const json_t *props, struct mail_destination *d, struct outcome *o)
{
	const char *name, *type, *proxy, *proto, *host, *port;
	char q[64];
	long n;

	name = json_string_value(json_object_get(props, "Name"));
	if (name == NULL || *name == '\0') {
		dsn_defer(o, "4.3.5", "destination in %s has no Name", d->source);
		return -1;
	}
	if (strlen(name) > DEST_NAME_MAX || strpbrk(name, "\r\n") != NULL) {
		dsn_defer(o, "4.3.5", "destination in %s: Name is not a valid name", d->source);
		return -1;
	}
	d->name = xstrdup(name);
	if (dest_check_values(props, name, o) < 0)
		return -1;

	if ((type = dest_get(props, "Type")) == NULL) {
		dsn_defer(o, "4.3.5", "destination %s: no Type (must be MAIL)", name);
		return -1;
	}
	if (strcasecmp(type, "MAIL") != 0) {
		str_printable(q, sizeof(q), type, strlen(type));
		dsn_defer(o, "4.3.5", "destination %s: Type is %s, not MAIL", name, q);
		return -1;
	}

	proxy = dest_get(props, "ProxyType");
	if (proxy == NULL || strcasecmp(proxy, "Internet") == 0) {
		d->onpremise = 0;
	} else if (strcasecmp(proxy, "OnPremise") == 0) {
		d->onpremise = 1;
	} else if (strcasecmp(proxy, "PrivateLink") == 0) {
		dsn_defer(o, "4.3.5", "destination %s: ProxyType PrivateLink is not supported",
			  name);
		return -1;
	} else {
		str_printable(q, sizeof(q), proxy, strlen(proxy));
		dsn_defer(o, "4.3.5", "destination %s: unknown ProxyType %s (OnPremise or "
			  "Internet)", name, q);
		return -1;
	}

	if (dest_store_fill(props, d, o) < 0)
		return -1;
	proto = dest_get(props, "mail.transport.protocol");
	if (proto == NULL || strcasecmp(proto, "smtp") == 0) {
		d->smtps = 0;
	} else if (strcasecmp(proto, "smtps") == 0) {
		d->smtps = 1;
	} else {
		str_printable(q, sizeof(q), proto, strlen(proto));
		dsn_defer(o, "4.3.5", "destination %s: mail.transport.protocol is %s "
			  "(smtp or smtps)", name, q);
		return -1;
	}
	if (d->smtps) {
		host = dest_get(props, "mail.smtps.host");
		port = dest_get(props, "mail.smtps.port");
		if (host == NULL)
			host = dest_get(props, "mail.smtp.host");
		if (port == NULL)
			port = dest_get(props, "mail.smtp.port");
	} else {
		host = dest_get(props, "mail.smtp.host");
		port = dest_get(props, "mail.smtp.port");
	}
	if (host == NULL && port == NULL && d->store.protocol != DEST_STORE_NONE)
		goto smtp_done;		/* a mailbox only: no outbound relay */
	if (host == NULL) {
		dsn_defer(o, "4.3.5", "destination %s: no %s", name,
			  d->smtps ? "mail.smtps.host or mail.smtp.host" : "mail.smtp.host");
		return -1;
	}
	if (strlen(host) > DEST_HOST_MAX || dest_has_control(host)) {
		dsn_defer(o, "4.3.5", "destination %s: the relay host is not a valid host name",
			  name);
		return -1;
	}
	d->host = xstrdup(host);
	if (port == NULL) {
		dsn_defer(o, "4.3.5", "destination %s: no %s", name,
			  d->smtps ? "mail.smtps.port or mail.smtp.port" : "mail.smtp.port");
		return -1;
	}
	if ((n = dest_parse_port(port)) < 0) {
		str_printable(q, sizeof(q), port, strlen(port));
		dsn_defer(o, "4.3.5", "destination %s: port \"%s\" is not a number from 1 "
			  "to 65535", name, q);
		return -1;
	}
	d->port = (unsigned)n;
smtp_done:
	if (dest_bool(props, "mail.smtp.auth", name, &d->auth, o) < 0
	    || dest_bool(props, "mail.smtp.starttls.enable", name, &d->starttls_enable, o) < 0
	    || dest_bool(props, "mail.smtp.starttls.required", name,
			 &d->starttls_required, o) < 0)
		return -1;

	d->authentication = dest_dup(props, "Authentication");
	d->user = dest_dup(props, "mail.user");
	d->password = dest_dup(props, "mail.password");
	if ((d->from = dest_dup(props, "mail.smtp.from")) == NULL)
		d->from = dest_dup(props, "mail.from");
	d->location_id = dest_dup(props, "CloudConnectorLocationId");
	if (d->location_id != NULL && strlen(d->location_id) > DEST_LOCATION_MAX) {
		dsn_defer(o, "4.3.5", "destination %s: CloudConnectorLocationId longer than "
			  "%d bytes", name, DEST_LOCATION_MAX);
		return -1;
	}

	/* TLS hints (tls.c): for smtps, JavaMail reads mail.smtps.ssl.* */
	{
		static const char *const ssl_keys[][2] = {
			{ "mail.smtps.ssl.enable", "mail.smtp.ssl.enable" },
			{ "mail.smtps.ssl.checkserveridentity", "mail.smtp.ssl.checkserveridentity" },
			{ "mail.smtps.ssl.trust", "mail.smtp.ssl.trust" },
			{ "mail.smtps.ssl.fingerprint", "mail.smtp.ssl.fingerprint" },
			{ "mail.smtps.ssl.verifyname", "mail.smtp.ssl.verifyname" },
		};
		const char *k[5];
		size_t i;

		for (i = 0; i < 5; i++)
			k[i] = d->smtps && dest_get(props, ssl_keys[i][0]) != NULL ? ssl_keys[i][0]
				: ssl_keys[i][1];
		if (dest_bool(props, k[0], name, &d->ssl_enable, o) < 0
		    || dest_bool(props, k[1], name, &d->ssl_checkserveridentity, o) < 0)
			return -1;
		d->ssl_trust = dest_dup(props, k[2]);
		d->ssl_fingerprint = dest_dup(props, k[3]);
		d->ssl_verifyname = dest_dup(props, k[4]);
		d->trust_store_location = dest_dup(props, "TrustStoreLocation");
	}
	return 0;
}

/* dest_from_properties - fill d from a flat configuration object */
int dest_from_properties(const json_t *props, const char *source,
			 struct mail_destination *d, struct outcome *o)
{
	json_t *flat;
	int rc;

	memset(d, 0, sizeof(*d));
	d->auth = d->starttls_enable = d->starttls_required = -1;
	d->cache_age = -1;
	d->source = xstrdup(source);
	if ((flat = dest_flatten(props)) == NULL) {
		dsn_defer(o, "4.3.5", "destination in %s is not a JSON object", source);
		dest_free(d);
		return -1;
	}
	rc = dest_fill(flat, d, o);
	json_decref(flat);
	if (rc < 0)
		dest_free(d);
	return rc;
}

/* dest_entry_name - the name of one destinations file entry, NULL if none */
const char *dest_entry_name(const json_t *entry)
{
	const json_t *orig = json_object_get(entry, "originalProperties");
	const char *name = json_string_value(json_object_get(entry, "Name"));

	if (name == NULL && json_is_object(orig))
		name = json_string_value(json_object_get(orig, "Name"));
	if (name == NULL)
		name = json_string_value(json_object_get(entry, "name"));
	return name;
}

/*
 * dest_from_file - look name up in the destinations file. Returns 0 with d
 * filled, DEST_NOT_FOUND when the file has no such destination, -1 on error.
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
		dsn_defer(o, "4.3.5", "destinations file %s: %s", path, strerror(errno));
		return -1;
	}
	/* it may hold relay passwords */
	if (file_check_private(path, errbuf, sizeof(errbuf)) < 0) {
		dsn_defer(o, "4.3.5", "destinations file %s", errbuf);
		return -1;
	}
	if ((text = file_read_all(path, DEST_MAX_FILE, &len, errbuf, sizeof(errbuf))) == NULL) {
		dsn_defer(o, "4.3.5", "destinations file %s", errbuf);
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
		dsn_defer(o, "4.3.5", "destinations file %s: bad JSON at line %d, column %d: %s",
			  path, jerr.line, jerr.column, jerr.text);
		return -1;
	}
	if (!json_is_array(root)) {
		json_decref(root);
		dsn_defer(o, "4.3.5", "destinations file %s: not a JSON array of destinations",
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
		return DEST_NOT_FOUND;
	}
	snprintf(source, sizeof(source), "destinations file %s", path);
	rc = dest_from_properties(found, source, d, o);
	json_decref(root);
	return rc;
}

/* dest_urlencode - a path segment, percent-encoded; newly allocated */
static char *dest_urlencode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = xmalloc(3 * strlen(s) + 1), *q = out;
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
		    || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'
		    || *p == '~') {
			*q++ = (char)*p;
		} else {
			*q++ = '%';
			*q++ = hex[*p >> 4];
			*q++ = hex[*p & 15];
		}
	}
	*q = '\0';
	return out;
}


/* dest_wipe - wipe and free one string */
static void dest_wipe(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

/* dest_json_free - wipe every string of a JSON value (passwords, tokens) and release it */
static void dest_json_free(json_t *v)
{
	struct cache_entry e;

	memset(&e, 0, sizeof(e));
	e.data = v;
	cache_entry_free(&e);
}

/*
 * dest_from_config - a destination declared in the configuration file
 * (destination.NAME.PROPERTY lines). Type defaults to MAIL. Returns 0 with
 * d filled, DEST_NOT_FOUND when the configuration declares no such
 * destination, -1 on error.
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
			dsn_defer(o, "4.3.5", "destination %s in %s line %u: the value of %s is "
				  "not UTF-8", name, cfg->path ? cfg->path : "the configuration",
				  dp->line, dp->property);
			dest_json_free(props);
			return -1;
		}
		json_object_set_new(props, dp->property, v);
	}
	if (props == NULL)
		return DEST_NOT_FOUND;
	if (json_object_get(props, "Type") == NULL)
		json_object_set_new(props, "Type", json_string("MAIL"));
	snprintf(source, sizeof(source), "configuration file %s",
		 cfg->path ? cfg->path : "(defaults)");
	rc = dest_from_properties(props, source, d, o);
	dest_json_free(props);
	return rc;
}

/* dest_service_error - " (ErrorMessage)" from a Destination Service error body, or "" */
static void dest_service_error(const struct http_response *resp, const struct oauth_token *tok,
			       char *buf, size_t size)
{
	const char *msg = NULL;
	char m[200];
	json_t *root;

	buf[0] = '\0';
	if (resp->body == NULL
	    || (root = json_loadb(resp->body, resp->len, 0, NULL)) == NULL)
		return;
	if (json_is_object(root))
		msg = json_string_value(json_object_get(root, "ErrorMessage"));
	if (msg != NULL) {
		str_printable(m, sizeof(m), msg, strlen(msg));
		redact_secret(m, sizeof(m), tok->access_token);	/* a service that echoes the token */
		snprintf(buf, size, " (%s)", m);
	}
	json_decref(root);
}

/* fetch results of the Destination Service beyond cache.h's */
#define DEST_FETCH_NOT_FOUND (-3)	/* 404 for every tenant asked */

/* one Destination Service lookup: what the cache's fetch callback needs */
struct dest_lookup {
	const struct config *cfg;
	const struct bindings *b;
	const char *name;
	struct http_options http;
	char tenant[300];	/* "subdomain:x", "zid:y", "" = none configured */
};

/* dest_is_oauth - whether an Authentication value is one of the OAuth2* kinds */
static int dest_is_oauth(const json_t *conf)
{
	const char *auth = json_string_value(json_object_get(conf, "Authentication"));

	return auth != NULL && strncasecmp(auth, "OAuth2", 6) == 0;
}

/*
 * dest_get_once - one GET of the find URL with a token. Returns 0 with
 * *root (the 200 response), 1 on 404, 2 on 401, or a cache code with the
 * outcome set.
 */
static int dest_get_once(struct dest_lookup *l, const char *url, size_t blen,
			 const struct oauth_token *tok, json_t **root, struct outcome *o)
{
	struct http_response resp;
	const char *headers[3];
	char *auth, why[256];
	size_t alen = strlen("Authorization: Bearer ") + strlen(tok->access_token) + 1;
	int rc, ret = CACHE_TRANSIENT;

	*root = NULL;
	auth = xmalloc(alen);
	snprintf(auth, alen, "Authorization: Bearer %s", tok->access_token);
	headers[0] = auth;
	headers[1] = "Accept: application/json";
	headers[2] = NULL;
	rc = http_request(&l->http, "GET", url, headers, NULL, NULL, NULL, &resp);
	explicit_bzero(auth, alen);
	free(auth);

	/* texts name the service without path and query */
	if (rc < 0) {
		/* 4.3.0: a problem of this host (no libcurl), not of the service */
		dsn_defer(o, resp.local ? "4.3.0" : "4.4.3", "Destination Service %.*s: %s", (int)blen,
			  url, resp.error);
	} else if (resp.status == 200) {
		*root = json_loadb(resp.body, resp.len, 0, NULL);
		if (json_is_object(json_object_get(*root, "destinationConfiguration"))) {
			ret = 0;
		} else {
			dest_json_free(*root);
			*root = NULL;
			dsn_defer(o, "4.4.3", "Destination Service %.*s: find %s: response has no "
				  "destinationConfiguration object", (int)blen, url, l->name);
		}
	} else if (resp.status == 404) {
		ret = 1;
	} else if (resp.status == 401) {
		dest_service_error(&resp, tok, why, sizeof(why));
		dsn_defer(o, "4.7.0", "Destination Service %.*s: find %s: HTTP 401%s", (int)blen,
			  url, l->name, why);
		ret = 2;
	} else if (resp.status == 403) {
		dest_service_error(&resp, tok, why, sizeof(why));
		dsn_defer(o, "4.7.0", "Destination Service %.*s: find %s: HTTP 403%s", (int)blen,
			  url, l->name, why);
		ret = CACHE_FAIL;
	} else {
		/* 5xx (after the retries), and 4xx we cannot act on; 429 may go away */
		if (resp.status < 500 && resp.status != 429)
			ret = CACHE_FAIL;
		dest_service_error(&resp, tok, why, sizeof(why));
		dsn_defer(o, "4.4.3", "Destination Service %.*s: find %s: HTTP %ld%s", (int)blen,
			  url, l->name, resp.status, why);
	}
	http_response_free(&resp);
	return ret;
}

/*
 * dest_find - Find for one tenant (flags: OAUTH_SUBSCRIBER or 0). A 401
 * drops the token and tries once more with a new one; an OAuth2*
 * destination is fetched again with its tokens. Returns 0 with *root, 1 on
 * 404, or a cache code with the outcome set.
 */
static int dest_find(struct dest_lookup *l, unsigned flags, json_t **root, struct outcome *o)
{
	const char *base = l->b->destination_uri;
	size_t blen = strlen(base);
	struct oauth_token tok;
	char *enc, *url;
	int attempt, rc = CACHE_FAIL;

	*root = NULL;
	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	enc = dest_urlencode(l->name);
	url = xmalloc(blen + strlen(DEST_FIND_PATH) + strlen(enc) + 32);
	sprintf(url, "%.*s%s%s?$skipTokenRetrieval=true", (int)blen, base, DEST_FIND_PATH, enc);
	free(enc);
	for (attempt = 0; attempt < 2; attempt++) {
		if (oauth_token_cached(l->cfg, &l->b->destination, &l->http, "destination", flags,
				       &tok, o) < 0) {
			rc = strcmp(o->status, "4.4.3") == 0 ? CACHE_TRANSIENT : CACHE_FAIL;
			break;
		}
		rc = dest_get_once(l, url, blen, &tok, root, o);
		if (rc == 0 && dest_is_oauth(json_object_get(*root, "destinationConfiguration"))) {
			/* its tokens: the same call without $skipTokenRetrieval */
			dest_json_free(*root);
			*strchr(url + blen, '?') = '\0';
			rc = dest_get_once(l, url, blen, &tok, root, o);
		}
		if (rc == 2 && attempt == 0) {
			log_info("Destination Service refused the destination token (HTTP 401); "
				 "fetching a new one");
			oauth_token_reject(l->cfg, &l->b->destination, &l->http, "destination", flags,
					   &tok);
		}
		oauth_token_free(&tok);
		if (rc != 2)
			break;
	}
	if (rc == 2)
		rc = CACHE_FAIL;
	free(url);
	return rc;
}

/*
 * dest_auth_token - authTokens[0] of a Find response as the cache keeps
 * it: {"type","value","expires_at"} or {"error"}; NULL when there is none
 */
static json_t *dest_auth_token(const json_t *root, const char *name)
{
	const json_t *t = json_array_get(json_object_get(root, "authTokens"), 0);
	const char *type = json_string_value(json_object_get(t, "type"));
	const char *value = json_string_value(json_object_get(t, "value"));
	const char *error = json_string_value(json_object_get(t, "error"));
	long in = oauth_lifetime(json_object_get(t, "expires_in"));
	char text[300];
	const char *p;

	if (!json_is_object(t))
		return NULL;
	if (error != NULL) {
		str_printable(text, sizeof(text), error, strlen(error));
		log_warn("destination %s: the Destination Service could not get its token: %s",
			 name, text);
		return json_pack("{s:s}", "error", text);
	}
	for (p = value; p != NULL && *p > 0x20 && *p < 0x7f; p++)
		;
	if (value == NULL || *value == '\0' || *p != '\0' || type == NULL
	    || strpbrk(type, "\r\n") != NULL)
		return json_pack("{s:s}", "error", "malformed authTokens entry");
	return json_pack("{s:s, s:s, s:I}", "type", type, "value", value, "expires_at",
			 (json_int_t)(in >= 0 ? time(NULL) + in : 0));
}

/*
 * dest_cert_content - the base64 Content of one certificates[] entry
 * without its white space (the service may wrap it), checked: decodes, at
 * most DEST_CERT_SIZE_MAX bytes. Returns a new string, or NULL with why set.
 */
static char *dest_cert_content(const char *content, const char **why)
{
	size_t i, n = 0, len = strlen(content);
	char *clean = xmalloc(len + 1);
	unsigned char *raw;
	ssize_t rlen;

	for (i = 0; i < len; i++)
		if (strchr(" \t\r\n", content[i]) == NULL)
			clean[n++] = content[i];
	clean[n] = '\0';
	*why = NULL;
	if (n == 0)
		*why = "no Content";
	else if (n / 4 * 3 > DEST_CERT_SIZE_MAX + 2)
		*why = "larger than 64 KiB decoded";
	if (*why != NULL) {
		free(clean);
		return NULL;
	}
	raw = xmalloc(n / 4 * 3 + 3);
	rlen = base64_decode(clean, n, raw, n / 4 * 3 + 3);
	/* a key store may hold a private key */
	explicit_bzero(raw, n / 4 * 3 + 3);
	free(raw);
	if (rlen <= 0)
		*why = "Content is not valid base64";
	else if (rlen > DEST_CERT_SIZE_MAX)
		*why = "larger than 64 KiB decoded";
	if (*why != NULL) {
		explicit_bzero(clean, n);
		free(clean);
		return NULL;
	}
	return clean;
}

/*
 * dest_certificates - certificates[] of a Find response (or of a cache
 * entry) into d: at most DEST_CERT_MAX objects with a Name, a Type and a
 * base64 Content of at most DEST_CERT_SIZE_MAX bytes; absent or null means
 * none. Whether Content is a certificate is tls.c's question, when it is
 * used. Returns 0, or -1 with a 4.3.5 outcome naming the destination and
 * the certificate (d keeps what it had; dest_free releases it).
 */
static int dest_certificates(const json_t *certs, struct mail_destination *d,
			     struct outcome *o)
{
	const json_t *item;
	size_t i, n;

	if (certs == NULL || json_is_null(certs))
		return 0;
	if (!json_is_array(certs)) {
		dsn_defer(o, "4.3.5", "destination %s: certificates is not an array", d->name);
		return -1;
	}
	if ((n = json_array_size(certs)) > DEST_CERT_MAX) {
		dsn_defer(o, "4.3.5", "destination %s: %zu certificates delivered with it, at most "
			  "%d are accepted", d->name, n, DEST_CERT_MAX);
		return -1;
	}
	if (n == 0)
		return 0;
	d->certificates = xcalloc(n, sizeof(*d->certificates));
	json_array_foreach(certs, i, item) {
		const json_t *jname = json_object_get(item, "Name");
		const json_t *jtype = json_object_get(item, "Type");
		const char *name = json_string_value(jname), *type = json_string_value(jtype);
		const char *content = json_string_value(json_object_get(item, "Content"));
		const char *why = NULL, *p;
		char label[DEST_CERT_NAME_MAX + 32], *clean = NULL;

		if (name != NULL && *name != '\0')
			str_printable(label, sizeof(label), name, strlen(name));
		else
			snprintf(label, sizeof(label), "certificates[%zu]", i);
		for (p = name; p != NULL && *p != '\0' && (unsigned char)*p >= 0x20 && *p != 0x7f;
		     p++)
			;
		if (!json_is_object(item))
			why = "not an object";
		else if ((jname != NULL && !json_is_string(jname))
			 || (jtype != NULL && !json_is_string(jtype)))
			why = "Name or Type is not a string";
		else if (name != NULL && (*p != '\0' || strlen(name) > DEST_CERT_NAME_MAX
					  || strlen(name) != json_string_length(jname)))
			why = "Name too long or with control characters";
		else if (content == NULL)
			why = "no Content";
		else
			clean = dest_cert_content(content, &why);
		if (clean == NULL) {
			dsn_defer(o, "4.3.5", "destination %s: certificate %s: %s", d->name, label,
				  why);
			return -1;
		}
		d->certificates[i].name = name != NULL && *name != '\0' ? xstrdup(name) : NULL;
		d->certificates[i].type = type != NULL && *type != '\0' ? xstrdup(type) : NULL;
		d->certificates[i].content = clean;
		d->ncertificates = i + 1;
	}
	log_debug("destination %s: %zu certificate%s delivered with it", d->name, n,
		  n == 1 ? "" : "s");
	return 0;
}

/* dest_certificates_json - d's certificates as the cache keeps them; NULL when none */
static json_t *dest_certificates_json(const struct mail_destination *d)
{
	json_t *arr, *item;
	size_t i;

	if (d->ncertificates == 0)
		return NULL;
	arr = json_array();
	for (i = 0; i < d->ncertificates; i++) {
		const struct dest_certificate *c = &d->certificates[i];

		item = json_pack("{s:s}", "Content", c->content);
		if (c->name != NULL)
			json_object_set_new(item, "Name", json_string(c->name));
		if (c->type != NULL)
			json_object_set_new(item, "Type", json_string(c->type));
		json_array_append_new(arr, item);
	}
	return arr;
}

/* dest_fetch_cb - cache_fetch_fn: Find for the tenants of destination_selection */
static int dest_fetch_cb(void *arg, struct cache_entry *fresh, struct outcome *o)
{
	struct dest_lookup *l = arg;
	const struct config *cfg = l->cfg;
	unsigned order[2];
	size_t n = 0, i;
	struct mail_destination check;
	json_t *root = NULL, *conf, *token, *certs;
	time_t now, expires, tok_exp;
	int rc = 1, margin;

	switch (cfg->destination_selection) {
	case DEST_SELECT_ALWAYS_PROVIDER:
		order[n++] = 0;
		break;
	case DEST_SELECT_ALWAYS_SUBSCRIBER:
		if (!config_has_tenant(cfg)) {
			dsn_defer(o, "4.3.5", "destination_selection is alwaysSubscriber, but neither "
				  "tenant_subdomain nor tenant_id is configured");
			return CACHE_FAIL;
		}
		order[n++] = OAUTH_SUBSCRIBER;
		break;
	case DEST_SELECT_SUBSCRIBER_FIRST:
	default:
		if (config_has_tenant(cfg))
			order[n++] = OAUTH_SUBSCRIBER;
		order[n++] = 0;
		break;
	}
	for (i = 0; i < n && rc == 1; i++) {
		rc = dest_find(l, order[i], &root, o);
		if (rc == 1 && i + 1 < n)
			log_debug("destination %s: not found for the subscriber tenant; asking for "
				  "the provider's", l->name);
	}
	if (rc == 1) {
		if (n == 2 || order[0] == OAUTH_SUBSCRIBER)
			dsn_defer(o, "4.3.5", "destination %s not found in the Destination Service "
				  "(%s)", l->name, n == 2 ? "subscriber tenant nor provider"
				  : "subscriber tenant");
		else
			dsn_defer(o, "4.3.5", "destination %s not found in the Destination Service",
				  l->name);
		return DEST_FETCH_NOT_FOUND;
	}
	if (rc == CACHE_TRANSIENT && l->http.deadline > 0 && conn_now() + 1 >= l->http.deadline)
		return CACHE_OUT_OF_TIME;	/* this process's deadline, not the service */
	if (rc < 0)
		return rc;

	/* only what passes the checks is cached; certificates without white space */
	conf = json_object_get(root, "destinationConfiguration");
	if (dest_from_properties(conf, "Destination Service", &check, o) < 0) {
		dest_json_free(root);
		return CACHE_FAIL;
	}
	if (dest_certificates(json_object_get(root, "certificates"), &check, o) < 0) {
		dest_free(&check);
		dest_json_free(root);
		return CACHE_FAIL;
	}
	certs = dest_certificates_json(&check);
	dest_free(&check);
	now = time(NULL);
	expires = now + cfg->destination_cache_ttl;
	fresh->stale_until = expires + cfg->destination_stale_ttl;
	token = dest_is_oauth(conf) ? dest_auth_token(root, l->name) : NULL;
	if (token != NULL && json_object_get(token, "error") != NULL) {
		expires = fresh->stale_until = 0;	/* try again next time */
	} else if (token != NULL) {
		/* no longer than the token inside it lives (REFERENCE.md §5) */
		tok_exp = (time_t)json_integer_value(json_object_get(token, "expires_at"));
		if (tok_exp > 0) {
			margin = cfg->token_refresh_margin;
			if (margin > (tok_exp - now) / 2)
				margin = (int)((tok_exp - now) / 2);
			if (tok_exp - margin < expires)
				expires = tok_exp - margin;
			if (tok_exp - margin < fresh->stale_until)
				fresh->stale_until = tok_exp - margin;
		}
	}
	fresh->expires_at = expires;
	/* a copy: the response is wiped */
	fresh->data = json_pack("{s:o, s:b}", "properties", json_deep_copy(conf), "subscriber",
				order[i - 1] == OAUTH_SUBSCRIBER);
	dest_json_free(root);
	if (fresh->data == NULL) {
		dest_json_free(token);
		dest_json_free(certs);
		dsn_defer(o, "4.3.0", "destination %s: out of memory", l->name);
		return CACHE_FAIL;
	}
	if (token != NULL)
		json_object_set_new(fresh->data, "auth_token", token);
	if (certs != NULL)
		json_object_set_new(fresh->data, "certificates", certs);
	return 0;
}

/* dest_take_entry - fill d from a cached or fetched entry; -1 when the data is unusable */
static int dest_take_entry(const struct cache_entry *e, struct mail_destination *d,
			   struct outcome *o)
{
	const json_t *props = json_object_get(e->data, "properties");
	const json_t *tok = json_object_get(e->data, "auth_token");
	const char *s;

	if (!json_is_object(props) || dest_from_properties(props, "Destination Service", d, o) < 0)
		return -1;
	if (dest_certificates(json_object_get(e->data, "certificates"), d, o) < 0) {
		dest_free(d);
		return -1;
	}
	d->tenant_is_subscriber = json_is_true(json_object_get(e->data, "subscriber"));
	d->cache_age = e->hit ? (long)(time(NULL) - e->stored_at) : -1;
	d->stale = e->stale;
	if (json_is_object(tok)) {
		if ((s = json_string_value(json_object_get(tok, "type"))) != NULL)
			d->oauth_token.type = xstrdup(s);
		if ((s = json_string_value(json_object_get(tok, "value"))) != NULL)
			d->oauth_token.value = xstrdup(s);
		if ((s = json_string_value(json_object_get(tok, "error"))) != NULL)
			d->oauth_token.error = xstrdup(s);
		if (json_is_integer(json_object_get(tok, "expires_at")))
			d->oauth_token.expires_at =
				(time_t)json_integer_value(json_object_get(tok, "expires_at"));
	}
	return 0;
}

/*
 * dest_from_service - find name in the Destination Service, through the
 * cache. Returns 0 with d filled, DEST_NOT_FOUND when not found (outcome
 * set), -1 on error.
 */
static int dest_from_service(const struct config *cfg, const struct bindings *b,
			     const char *name, double deadline, struct mail_destination *d,
			     struct outcome *o)
{
	struct dest_lookup l;
	struct cache cache;
	struct cache_request req;
	struct cache_entry e;
	const char *parts[6];
	char key[CACHE_KEY_SIZE], what[600], about[1200];
	double until;
	int attempt, rc = -1;

	memset(&l, 0, sizeof(l));
	l.cfg = cfg;
	l.b = b;
	l.name = name;
	http_options_init(&l.http, cfg, deadline);
	if (cfg->tenant_subdomain != NULL && cfg->tenant_subdomain[0] != '\0')
		snprintf(l.tenant, sizeof(l.tenant), "subdomain:%s", cfg->tenant_subdomain);
	else if (cfg->tenant_id != NULL && cfg->tenant_id[0] != '\0')
		snprintf(l.tenant, sizeof(l.tenant), "zid:%s", cfg->tenant_id);

	parts[0] = name;
	parts[1] = b->destination_uri;
	parts[2] = b->destination.token_url;
	parts[3] = b->destination.client_id;
	parts[4] = l.tenant;
	parts[5] = config_selection_name(cfg->destination_selection);
	cache_key(key, "destination", parts, 6);
	snprintf(what, sizeof(what), "%s (%s%s%s)", name, parts[5], l.tenant[0] ? ", " : "",
		 l.tenant);
	/* for `btprelay cache list`: bindings change, and a new entry appears beside the old */
	snprintf(about, sizeof(about), "Destination Service %s, client %s",
		 b->destination_uri ? b->destination_uri : "(none)",
		 b->destination.client_id ? b->destination.client_id : "(none)");
	memset(&req, 0, sizeof(req));
	req.key = key;
	req.kind = "destination";
	req.what = what;
	req.about = about;
	req.fail_ttl = cfg->http_timeout;
	cache_open(&cache, cfg->cache_dir);
	for (attempt = 0; attempt < 2 && rc < 0; attempt++) {
		/* a token and a Find, each with its retries */
		until = conn_now() + 2 * http_budget(&l.http);
		req.lock_deadline = deadline > 0 && deadline < until ? deadline : until;
		rc = cache_get(&cache, &req, dest_fetch_cb, &l, &e, o);
		if (rc == DEST_FETCH_NOT_FOUND) {
			rc = DEST_NOT_FOUND;
			break;
		}
		if (rc < 0) {
			rc = -1;
			break;
		}
		rc = dest_take_entry(&e, d, o);
		if (rc < 0 && e.hit) {
			log_warn("destination cache: %s: cached entry unusable; asking the "
				 "Destination Service", what);
			req.refresh = 1;
		}
		cache_entry_free(&e);
		if (rc < 0 && !req.refresh)
			break;
	}
	cache_close(&cache);
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
	char q[64], where[2400];
	const char *p;
	int rc;

	memset(d, 0, sizeof(*d));
	d->cache_age = -1;
	for (p = name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			break;
	if (*name == '\0' || *p != '\0' || strlen(name) > DEST_NAME_MAX) {
		str_printable(q, sizeof(q), name, strlen(name));
		dsn_defer(o, "4.3.5", "\"%s\" is not a valid destination name", q);
		return -1;
	}
	if (have_file) {
		rc = dest_from_file(file, name, d, o);
		if (rc != DEST_NOT_FOUND)
			goto done;
	}
	if (have_conf) {
		rc = dest_from_config(cfg, name, d, o);
		if (rc != DEST_NOT_FOUND)
			goto done;
	}
	where[0] = '\0';
	if (have_file)
		snprintf(where, sizeof(where), "destinations file %s", file);
	if (have_conf)
		snprintf(where + strlen(where), sizeof(where) - strlen(where), "%sconfiguration "
			 "file %s", where[0] ? (b->have_destination ? " nor in " : ", ") : "",
			 cfg->path ? cfg->path : "(defaults)");
	if (b->have_destination) {
		rc = dest_from_service(cfg, b, name, deadline, d, o);
		if (rc == DEST_NOT_FOUND && where[0] != '\0') {
			char service[DSN_TEXT_SIZE];

			str_copy(service, o->text, sizeof(service));
			dsn_defer(o, "4.3.5", "%s nor in %s", service, where);
		}
		if (rc != 0 && rc != DEST_NOT_FOUND)
			rc = -1;
		goto done;
	}
	if (where[0] != '\0')
		dsn_defer(o, "4.3.5", "destination %s not found (%s, no Destination Service "
			  "binding)", name, where);
	else
		dsn_defer(o, "4.3.5", "destination %s not found (no destinations file, "
			  "no Destination Service binding)", name);
	return DEST_NOT_FOUND;
done:
	if (rc == 0)
		log_debug("destination %s from %s%s: relay %s:%u%s%s", d->name, d->source,
			  d->stale ? " (stale cache entry)" : d->cache_age >= 0 ? " (cached)" : "",
			  d->host ? d->host : "(none)", d->port, d->onpremise ? " OnPremise" : " Internet",
			  d->smtps ? " smtps" : "");
	return rc;
}

/* dest_free - release everything, wiping the secrets; safe twice */
void dest_free(struct mail_destination *d)
{
	dest_wipe(&d->password);
	dest_wipe(&d->user);
	dest_wipe(&d->oauth_token.value);
	free(d->oauth_token.type);
	free(d->oauth_token.error);
	d->oauth_token.type = d->oauth_token.error = NULL;
	d->oauth_token.expires_at = 0;
	free(d->name);
	free(d->source);
	free(d->authentication);
	free(d->host);
	free(d->from);
	free(d->location_id);
	d->name = d->source = d->authentication = d->host = d->from = d->location_id = NULL;
	free(d->store.host);
	free(d->store.ssl_trust);
	free(d->store.ssl_fingerprint);
	free(d->store.ssl_verifyname);
	memset(&d->store, 0, sizeof(d->store));

	/* TLS hints and certificates[] */
	free(d->ssl_trust);
	free(d->ssl_fingerprint);
	free(d->ssl_verifyname);
	free(d->trust_store_location);
	d->ssl_trust = d->ssl_fingerprint = d->ssl_verifyname = d->trust_store_location = NULL;
	while (d->ncertificates > 0) {
		struct dest_certificate *c = &d->certificates[--d->ncertificates];

		free(c->name);
		free(c->type);
		dest_wipe(&c->content);		/* a key store may hold a private key */
	}
	free(d->certificates);
	d->certificates = NULL;
}
