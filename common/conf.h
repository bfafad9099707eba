/*
 * conf - btprelay.conf: "key = value" lines, '#' comments, blank lines.
 *
 * One table in conf.c lists every key with its type and default; the
 * parser checks each line against it once at start-up. Unknown keys, bad
 * values and duplicates are errors reported as "FILE:LINE: ...". Durations
 * accept a plain number of seconds or a suffix s, m, h. Booleans: yes/no,
 * true/false, on/off, 1/0. Besides the table, the key family
 * "destination.NAME.PROPERTY = value" declares MAIL destinations; a file
 * that gives one of them a password or secret must not be accessible by
 * other users.
 */
#ifndef BTPRELAY_CONF_H
#define BTPRELAY_CONF_H

#include <stddef.h>

#define BTPRELAY_DEFAULT_CONFIG SYSCONFDIR "/btprelay/btprelay.conf"

/*
 * Kyma's ConfigMap kyma-system/connectivity-proxy-info, passed to a
 * workload with envFrom, gives the proxy's address in these variables.
 * They fill proxy_host and proxy_port when the file leaves them unset.
 */
#define CONFIG_ENV_PROXY_HOST "onpremise_proxy_host"
#define CONFIG_ENV_PROXY_PORT "onpremise_socks5_proxy_port"
#define CONFIG_PROXY_HOST_ENV 1
#define CONFIG_PROXY_PORT_ENV 2

enum dest_selection {
	DEST_SELECT_SUBSCRIBER_FIRST = 0,	/* subscriber tenant, then the provider on 404 */
	DEST_SELECT_ALWAYS_PROVIDER,
	DEST_SELECT_ALWAYS_SUBSCRIBER,
};

/*
 * One "destination.NAME.PROPERTY = value" line: a destination declared in
 * the configuration file, looked up after the destinations file and before
 * the Destination Service. Values stay strings, as in the Destination
 * Service; destination.c checks them when the destination is used.
 */
struct config_dest_prop {
	char *destination;		/* NAME */
	char *property;			/* PROPERTY, e.g. mail.smtp.host */
	char *value;			/* wiped by config_free: it may be a password */
	unsigned line;
};

/* How the client authenticates to the Connectivity proxy (proxy.h decides AUTO). */
enum proxy_auth {
	PROXY_AUTH_AUTO = 0,	/* token with a connectivity binding, none without */
	PROXY_AUTH_TOKEN,	/* method 0x80 with the connectivity binding's JWT */
	PROXY_AUTH_NONE,	/* trusted proxy (Kyma's default): no JWT, methods 0x80 and 0x00 */
};

enum tls_level {
	TLS_LEVEL_NONE = 0,	/* never STARTTLS */
	TLS_LEVEL_MAY,		/* STARTTLS when offered, verified when used */
	TLS_LEVEL_ENCRYPT,	/* STARTTLS required (defer when not offered), verified */
	TLS_LEVEL_VERIFY,	/* encrypt, and no destination may lower TLS or its verification ("secure" too) */
};

struct config {
	char *path;			/* the file this came from */

	/* where bindings and destinations come from */
	char *bindings_file;		/* VCAP_SERVICES-shaped JSON; "" = none */
	unsigned bindings_file_line;	/* its line in the file; 0 = the default (may be missing) */
	char *destinations_file;	/* JSON array, format of the `destinations` variable; "" = none */
	char *destination_instance;	/* instance name when several destination bindings */
	char *connectivity_instance;	/* instance name when several connectivity bindings */
	char *service_binding_root;	/* Kubernetes bindings directory; "" = none */
	char *proxy_host;		/* override onpremise_proxy_host ("" = from binding) */
	unsigned proxy_port;		/* override port (0 = from binding) */
	int proxy_from_env;		/* CONFIG_PROXY_*_ENV bits: which of the two came from the environment */
	enum proxy_auth proxy_authentication;	/* default auto */
	struct config_dest_prop *dest_props;	/* destination.NAME.PROPERTY lines, file order */
	size_t ndest_props;

	/* tenant: empty subdomain and id = the provider */
	char *tenant_subdomain;		/* first DNS label of the subscriber's token URL */
	char *tenant_id;		/* subscriber zone id, sent as X-zid */
	enum dest_selection destination_selection;	/* default subscriberFirst */

	/* HTTP calls to the token service and Destination Service */
	int http_timeout;		/* seconds, default 10 */
	int http_retries;		/* extra tries on timeouts, failed connections, 5xx; default 2 */
	char *http_ca_file;		/* "" = system store */

	/* caches shared by the transport processes */
	char *cache_dir;		/* default /var/cache/btprelay; "" = no cache */
	char *metrics_dir;		/* the counter file's directory; "" (default) = cache_dir */
	int token_refresh_margin;	/* seconds before expiry a token is renewed, default 300 */
	int destination_cache_ttl;	/* seconds, default 300; 0 = no destination cache */
	int destination_stale_ttl;	/* seconds after expiry while the service fails, default 3600 */

	/* relay routes for Postfix (routes.c, `btprelay routes`) */
	int routes_cockpit;		/* routes from the destinations' btprelay.domains, default yes */
	char *routes_file;		/* "domain destination" lines, "" = none */
	char *routes_transport;		/* transport_maps value, default btprelay:$destination */

	/* SMTP to the relay */
	char *smtp_helo_name;		/* "" = gethostname() */
	enum tls_level smtp_tls_level;	/* default may */
	char *smtp_tls_ca_file;		/* "" = system store */
	char *smtp_tls_ca_path;		/* "" = none */
	int smtp_connect_timeout;	/* seconds, default 30 (proxy handshake included) */
	int smtp_command_timeout;	/* seconds, default 60: every reply but the final one */
	int smtp_data_done_timeout;	/* seconds, default 300: reply to the final dot */
	int delivery_deadline;		/* seconds, default 600: the whole run */

	/* logging */
	char *log_target;		/* "syslog" (default), "stderr", or a file path */
	int log_level;			/* enum log_level, default info */

	/* btprelay-milter (actions are checked by the milter: reject, tempfail, accept) */
	char *milter_socket;		/* unix:/path or inet:PORT@HOST */
	char *milter_user;		/* user to run as after opening the socket, "" = stay */
	char *milter_pidfile;		/* "" = none */
	char *milter_transport_name;	/* the {rcpt_mailer} that means btprelay, default btprelay */
	char *milter_lmtp_prefix;	/* lmtp {rcpt_host} prefix of btprelay-lmtp services, "" = none */
	char *milter_on_not_found;	/* default reject (550 5.1.2) */
	char *milter_on_unusable;	/* default tempfail (451 4.3.5) */
	char *milter_on_error;		/* default tempfail (451 4.4.3) */
	int milter_lookup_timeout;	/* seconds, default 10, below Postfix's 30 s command timeout */
	char *milter_sender_policy;	/* keep (default) or rewrite to the destination's from */
	int milter_trace_header;	/* add X-BTPRelay-Destination, default no */
	int milter_cache_ttl;		/* seconds a found destination is kept, default 300 */
	int milter_negative_ttl;	/* seconds "not found" or "unusable" is kept, default 60 */

	/* SMTP to the relay: TLS trust, client certificate, AUTH, long lines (smtp.c, tls.c) */
	char *smtp_tls_fingerprint;	/* SHA-256 certificate pins for every relay, "" = none */
	char *smtp_tls_cert_file;	/* client certificate (PEM chain), "" = none */
	char *smtp_tls_key_file;	/* its private key, "" = in smtp_tls_cert_file; must be private */
	int smtp_auth_plaintext_onpremise;	/* AUTH without TLS through the proxy tunnel, default yes */
	int smtp_line_length_limit;	/* longer lines broken with CRLF SPACE, default 998, 0 = never */

	/* btprelay-fetch: inbound mail from on-premise mailboxes (values checked by fetch) */
	char *fetch_sources;		/* destination names (mail.store.protocol), "" = none */
	char *fetch_recipient;		/* envelope recipient of fetched mail */
	char *fetch_sender;		/* envelope sender, "" = the destination's mail.from */
	char *fetch_mailbox;		/* IMAP folder, default INBOX */
	char *fetch_done;		/* delete (default), move or keep */
	char *fetch_move_folder;	/* the folder of fetch_done = move */
	char *fetch_uidvalidity_change;	/* auto (default), refetch, skip, stop */
	char *fetch_state_dir;		/* default /var/lib/btprelay/fetch */
	char *fetch_smtp_server;	/* the MTA: host:port, default 127.0.0.1:25 */
	int fetch_interval;		/* --daemon: seconds between passes, default 60 */
	int fetch_idle;			/* --daemon: one IMAP IDLE's seconds, 0 = poll; default 1500 */
	int fetch_max_messages;		/* per source and pass, 0 = all */
	int fetch_timeout;		/* seconds per mailbox command or reply, default 60 */
};

/*
 * config_load - defaults, then the file at path (NULL = default path).
 * A missing default file is not an error (all defaults); a missing named
 * file is. Then CONFIG_ENV_PROXY_HOST/PORT fill proxy_host/proxy_port
 * when the file did not set them. Returns 0, or -1 with errbuf "FILE:LINE: text".
 */
int config_load(struct config *cfg, const char *path, char *errbuf, size_t errlen);
/* config_defaults - only the defaults, no file */
void config_defaults(struct config *cfg);
void config_free(struct config *cfg);
/* config_parse_duration - "30", "30s", "5m", "1h" -> seconds; -1 if invalid */
int config_parse_duration(const char *text);
/* config_parse_bool - 1, 0, or -1 if invalid */
int config_parse_bool(const char *text);
/* config_has_tenant - whether a subscriber tenant is configured (subdomain or id) */
int config_has_tenant(const struct config *cfg);
/*
 * config_check_fetch - the fetch_* keys of btprelay-fetch(8), beyond their
 * types: 0, or -1 with err naming the key (btprelay-fetch and btprelay
 * check say the same)
 */
int config_check_fetch(const struct config *cfg, char *err, size_t errlen);
/* config_fetch_sources - how many names fetch_sources lists; with name: whether it lists name */
int config_fetch_sources(const struct config *cfg, const char *name);
/* config_proxy_auth_name - "auto", "token", "none" */
const char *config_proxy_auth_name(enum proxy_auth auth);
/* config_selection_name - "subscriberFirst", "alwaysProvider", "alwaysSubscriber" */
const char *config_selection_name(enum dest_selection sel);

#endif
