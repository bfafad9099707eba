/*
 * dest_props - MAIL destination properties (SAP Connectivity documentation,
 * "MAIL Destinations", and JavaMail's mail.smtp.* names): a flat property
 * object checked once and turned into struct mail_destination.
 *
 * dest_from_properties() checks what the rest of the program relies on:
 * Type MAIL, a supported ProxyType, a host and a numeric port, booleans
 * that are true or false, and no CR, LF or NUL in any value (values end up
 * in SMTP commands and the proxy handshake); anything else defers 4.3.5
 * (OUTCOME_CONFIG) naming the destination and the property.
 *
 * The Find response's certificates[] come along with the destination: at
 * most DEST_CERT_MAX entries, each base64 of at most 64 KiB, decoded here
 * once and handed to tls.c as bytes. The relay password, tokens and
 * delivered certificates (a key store may hold a private key) are wiped by
 * dest_free().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "cache.h"
#include "dest_props.h"
#include "log.h"
#include "util.h"

#define DEST_HOST_MAX 255		/* SOCKS5 ATYP 03 length byte */
#define DEST_LOCATION_MAX 189		/* base64 of it must fit one length byte */
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
		dsn_config(o, "destination %s: %s is \"%s\", not true or false",
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
			dsn_config(o, "destination %s: value of %s is not a string",
				   name, k);
			return -1;
		}
		if (strlen(json_string_value(v)) != json_string_length(v)
		    || strpbrk(json_string_value(v), "\r\n") != NULL) {
			dsn_config(o, "destination %s: value of %s contains CR, LF "
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

/* dest_fill_kind - Name, Type (MAIL) and ProxyType (OnPremise or Internet) */
static int dest_fill_kind(const json_t *props, struct mail_destination *d, struct outcome *o)
{
	const char *name, *type, *proxy;
	char q[64];

	name = json_string_value(json_object_get(props, "Name"));
	if (name == NULL || *name == '\0') {
		dsn_config(o, "destination in %s has no Name", d->source);
		return -1;
	}
	if (strlen(name) > DEST_NAME_MAX || strpbrk(name, "\r\n") != NULL) {
		dsn_config(o, "destination in %s: Name is not a valid name", d->source);
		return -1;
	}
	d->name = xstrdup(name);
	if (dest_check_values(props, name, o) < 0)
		return -1;

	if ((type = dest_get(props, "Type")) == NULL) {
		dsn_config(o, "destination %s: no Type (must be MAIL)", name);
		return -1;
	}
	if (strcasecmp(type, "MAIL") != 0) {
		str_printable(q, sizeof(q), type, strlen(type));
		dsn_config(o, "destination %s: Type is %s, not MAIL", name, q);
		return -1;
	}

	proxy = dest_get(props, "ProxyType");
	if (proxy == NULL || strcasecmp(proxy, "Internet") == 0) {
		d->onpremise = 0;
	} else if (strcasecmp(proxy, "OnPremise") == 0) {
		d->onpremise = 1;
	} else if (strcasecmp(proxy, "PrivateLink") == 0) {
		dsn_config(o, "destination %s: ProxyType PrivateLink is not supported",
			   name);
		return -1;
	} else {
		str_printable(q, sizeof(q), proxy, strlen(proxy));
		dsn_config(o, "destination %s: unknown ProxyType %s (OnPremise or "
			   "Internet)", name, q);
		return -1;
	}
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
		dsn_config(o, "destination %s: mail.store.protocol is %s "
			   "(imap, imaps, pop3 or pop3s)", d->name, q);
		return -1;
	}
	st->protocol = p;
	proto = dest_store_name(p);
#define STORE_KEY(suffix) (snprintf(key, sizeof(key), "mail.%s.%s", proto, suffix), key)
	if ((host = dest_get(props, STORE_KEY("host"))) == NULL
	    && (host = dest_get(props, "mail.host")) == NULL) {
		dsn_config(o, "destination %s: no mail.%s.host or mail.host", d->name, proto);
		return -1;
	}
	if (strlen(host) > DEST_HOST_MAX || dest_has_control(host)) {
		dsn_config(o, "destination %s: the mailbox host is not a valid host name",
			   d->name);
		return -1;
	}
	st->host = xstrdup(host);
	st->port = ports[p];
	if ((port = dest_get(props, STORE_KEY("port"))) != NULL) {
		if ((n = dest_parse_port(port)) < 0) {
			str_printable(q, sizeof(q), port, strlen(port));
			dsn_config(o, "destination %s: mail.%s.port \"%s\" is not a number "
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

/* dest_fill_relay - the protocol (smtp or smtps), the relay's host and port */
static int dest_fill_relay(const json_t *props, struct mail_destination *d, struct outcome *o)
{
	const char *name = d->name, *proto, *host, *port;
	char q[64];
	long n;

	proto = dest_get(props, "mail.transport.protocol");
	if (proto == NULL || strcasecmp(proto, "smtp") == 0) {
		d->smtps = 0;
	} else if (strcasecmp(proto, "smtps") == 0) {
		d->smtps = 1;
	} else {
		str_printable(q, sizeof(q), proto, strlen(proto));
		dsn_config(o, "destination %s: mail.transport.protocol is %s "
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
		return 0;		/* a mailbox only: no outbound relay */
	if (host == NULL) {
		dsn_config(o, "destination %s: no %s", name,
			   d->smtps ? "mail.smtps.host or mail.smtp.host" : "mail.smtp.host");
		return -1;
	}
	if (strlen(host) > DEST_HOST_MAX || dest_has_control(host)) {
		dsn_config(o, "destination %s: the relay host is not a valid host name",
			   name);
		return -1;
	}
	d->host = xstrdup(host);
	if (port == NULL) {
		dsn_config(o, "destination %s: no %s", name,
			   d->smtps ? "mail.smtps.port or mail.smtp.port" : "mail.smtp.port");
		return -1;
	}
	if ((n = dest_parse_port(port)) < 0) {
		str_printable(q, sizeof(q), port, strlen(port));
		dsn_config(o, "destination %s: port \"%s\" is not a number from 1 "
			   "to 65535", name, q);
		return -1;
	}
	d->port = (unsigned)n;
	return 0;
}

/* dest_fill_tls - the TLS hints (route.c): for smtps, JavaMail reads mail.smtps.ssl.* */
static int dest_fill_tls(const json_t *props, struct mail_destination *d, struct outcome *o)
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
	if (dest_bool(props, k[0], d->name, &d->ssl_enable, o) < 0
	    || dest_bool(props, k[1], d->name, &d->ssl_checkserveridentity, o) < 0)
		return -1;
	d->ssl_trust = dest_dup(props, k[2]);
	d->ssl_fingerprint = dest_dup(props, k[3]);
	d->ssl_verifyname = dest_dup(props, k[4]);
	d->trust_store_location = dest_dup(props, "TrustStoreLocation");
	return 0;
}

/* dest_fill - the checks and copies of dest_from_properties on a flat object */
static int dest_fill(const json_t *props, struct mail_destination *d, struct outcome *o)
{
	if (dest_fill_kind(props, d, o) < 0 || dest_store_fill(props, d, o) < 0
	    || dest_fill_relay(props, d, o) < 0)
		return -1;
	if (dest_bool(props, "mail.smtp.auth", d->name, &d->auth, o) < 0
	    || dest_bool(props, "mail.smtp.starttls.enable", d->name, &d->starttls_enable, o) < 0
	    || dest_bool(props, "mail.smtp.starttls.required", d->name,
			 &d->starttls_required, o) < 0)
		return -1;

	d->authentication = dest_dup(props, "Authentication");
	d->user = dest_dup(props, "mail.user");
	d->password = dest_dup(props, "mail.password");
	if ((d->from = dest_dup(props, "mail.smtp.from")) == NULL)
		d->from = dest_dup(props, "mail.from");
	d->location_id = dest_dup(props, "CloudConnectorLocationId");
	if (d->location_id != NULL && strlen(d->location_id) > DEST_LOCATION_MAX) {
		dsn_config(o, "destination %s: CloudConnectorLocationId longer than "
			   "%d bytes", d->name, DEST_LOCATION_MAX);
		return -1;
	}
	return dest_fill_tls(props, d, o);
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
		dsn_config(o, "destination in %s is not a JSON object", source);
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
void dest_json_free(json_t *v)
{
	struct cache_entry e;

	memset(&e, 0, sizeof(e));
	e.data = v;
	cache_entry_free(&e);
}

/*
 * dest_cert_content - the base64 Content of one certificates[] entry
 * without its white space (the service may wrap it), decoded once: at most
 * DEST_CERT_SIZE_MAX bytes. Returns the base64 text (a new string) with
 * *der and *der_len the decoded file (the caller wipes and frees both), or
 * NULL with why set.
 */
static char *dest_cert_content(const char *content, unsigned char **der, size_t *der_len,
			       const char **why)
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
	if (rlen <= 0)
		*why = "Content is not valid base64";
	else if (rlen > DEST_CERT_SIZE_MAX)
		*why = "larger than 64 KiB decoded";
	if (*why != NULL) {
		/* a key store may hold a private key */
		explicit_bzero(raw, n / 4 * 3 + 3);
		free(raw);
		explicit_bzero(clean, n);
		free(clean);
		return NULL;
	}
	*der = raw;
	*der_len = (size_t)rlen;
	return clean;
}

/* dest_certificates - certificates[] into d, each checked and decoded once */
int dest_certificates(const json_t *certs, struct mail_destination *d, struct outcome *o)
{
	const json_t *item;
	size_t i, n;

	if (certs == NULL || json_is_null(certs))
		return 0;
	if (!json_is_array(certs)) {
		dsn_config(o, "destination %s: certificates is not an array", d->name);
		return -1;
	}
	if ((n = json_array_size(certs)) > DEST_CERT_MAX) {
		dsn_config(o, "destination %s: %zu certificates delivered with it, at most "
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
		unsigned char *der = NULL;
		size_t der_len = 0;

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
			clean = dest_cert_content(content, &der, &der_len, &why);
		if (clean == NULL) {
			dsn_config(o, "destination %s: certificate %s: %s", d->name, label,
				   why);
			return -1;
		}
		d->certificates[i].name = name != NULL && *name != '\0' ? xstrdup(name) : NULL;
		d->certificates[i].type = type != NULL && *type != '\0' ? xstrdup(type) : NULL;
		d->certificates[i].content = clean;
		d->certificates[i].der = der;
		d->certificates[i].der_len = der_len;
		d->ncertificates = i + 1;
	}
	log_debug("destination %s: %zu certificate%s delivered with it", d->name, n,
		  n == 1 ? "" : "s");
	return 0;
}

/* dest_certificates_json - d's certificates as the cache keeps them; NULL when none */
json_t *dest_certificates_json(const struct mail_destination *d)
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
		if (c->der != NULL)
			explicit_bzero(c->der, c->der_len);
		free(c->der);
	}
	free(d->certificates);
	d->certificates = NULL;
}
