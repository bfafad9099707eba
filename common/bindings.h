/*
 * bindings - the `destination` and `connectivity` service bindings.
 *
 * Source, first found wins: the VCAP_SERVICES environment variable, the
 * VCAP-shaped JSON file named by bindings_file (pipe(8) strips the
 * environment, so MTA-run programs use the file), then Kubernetes service
 * binding directories under $SERVICE_BINDING_ROOT, or under
 * service_binding_root when the variable is not set: one directory per
 * binding, one file per credential plus `type` (destination,
 * connectivity), as SAP BTP Kyma mounts them. Instances are picked by
 * label and, when several are bound, by the configured instance name (a
 * directory's name is its instance name). Credentials are copied out of
 * the JSON; bindings_free() wipes them.
 */
#ifndef BTPRELAY_BINDINGS_H
#define BTPRELAY_BINDINGS_H

#include "conf.h"
#include "dsn.h"

struct oauth_client {
	char *token_url;	/* base URL; oauth appends /oauth/token */
	char *client_id;
	char *client_secret;	/* NULL for X.509 bindings */
	char *cert_pem;		/* X.509: client certificate (PEM), else NULL */
	char *key_pem;		/* X.509: private key (PEM), else NULL */
	char *instance;		/* binding instance name, for logs */
};

struct bindings {
	int have_destination;
	struct oauth_client destination;
	char *destination_uri;		/* Destination Service base URI */

	int have_connectivity;
	struct oauth_client connectivity;
	char *proxy_host;		/* onpremise_proxy_host (or config override) */
	unsigned proxy_port;		/* onpremise_socks5_proxy_port (string or number) */
	char *source;			/* "VCAP_SERVICES", the file or the directory, for messages */
};

/*
 * bindings_load - read what is bound. Having no file, no directory and no
 * variable is not an error (both have_* are 0), unless bindings_file was
 * set in the configuration (bindings_file_line) and does not exist; a
 * malformed file, a file
 * readable by others, a binding directory writable by others or owned by
 * another user (not root), or a binding without its required keys is: -1,
 * outcome deferred with 4.3.5 and a text naming the file and the key.
 */
int bindings_load(const struct config *cfg, struct bindings *b, struct outcome *o);
void bindings_free(struct bindings *b);

#endif
