/*
 * dest_props - what the three parts of destination.h share (dest_props.c
 * the properties, destination.c the lookup chain, dest_service.c the
 * Destination Service): limits, the certificates[] of a Find response, and
 * the wiping release of JSON that may hold secrets. Not for other modules.
 */
#ifndef BTPRELAY_DEST_PROPS_H
#define BTPRELAY_DEST_PROPS_H

#include <jansson.h>
#include "destination.h"
#include "dsn.h"

#define DEST_NAME_MAX 200		/* the Destination Service's limit */

/*
 * dest_certificates - certificates[] of a Find response (or of a cache
 * entry) into d: at most 16 objects with a Name, a Type and a base64
 * Content of at most 64 KiB decoded, each decoded once (dest_certificate
 * der); absent or null means none. Whether Content is a certificate is
 * tls.c's question, when it is used. Returns 0, or -1 with a 4.3.5 outcome
 * naming the destination and the certificate (d keeps what it had;
 * dest_free releases it).
 */
int dest_certificates(const json_t *certs, struct mail_destination *d, struct outcome *o);
/* dest_certificates_json - d's certificates as the cache keeps them; NULL when none */
json_t *dest_certificates_json(const struct mail_destination *d);
/* dest_json_free - wipe every string of a JSON value (passwords, tokens) and release it */
void dest_json_free(json_t *v);

#endif
