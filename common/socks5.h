/*
 * socks5 - the Connectivity proxy's SOCKS5 handshake with method 0x80
 * (JWT + Cloud Connector location ID), REFERENCE.md §1.
 *
 * On success the conn is a byte pipe to the relay. On failure the outcome
 * names the step and what the proxy said; everything defers (an operator
 * can fix it): "proxy authentication rejected", "REP 02: no matching host
 * mapping in the Cloud Connector access control", ...
 */
#ifndef BTPRELAY_SOCKS5_H
#define BTPRELAY_SOCKS5_H

#include <stddef.h>
#include "conn.h"
#include "dsn.h"

enum socks5_result {
	SOCKS5_OK = 0,
	SOCKS5_FAIL = -1,		/* outcome filled */
	SOCKS5_AUTH_REJECTED = -2,	/* auth reply != 01 00, or REP 05: fetch a new token, retry once */
};

/* socks5_connect - on a conn connected to the proxy: greeting, 0x80 auth, CONNECT host:port */
int socks5_connect(struct conn *c, const char *jwt, const char *location_id,
		   const char *host, unsigned port, struct outcome *o);

/* The byte-level pieces, pure functions for unit tests and fuzzing. */
/* socks5_auth_request - build the 0x80 auth request; returns its length, 0 if it does not fit or the location ID is too long */
size_t socks5_auth_request(unsigned char *buf, size_t size, const char *jwt,
			   const char *location_id);
/* socks5_connect_request - build CONNECT (ATYP 03, or 01 for a dotted IPv4); returns length, 0 if invalid */
size_t socks5_connect_request(unsigned char *buf, size_t size, const char *host, unsigned port);
/*
 * socks5_reply_length - given the first 5 bytes of a CONNECT reply, the
 * total length of the reply; 0 if the version or ATYP is invalid.
 */
size_t socks5_reply_length(const unsigned char head[5]);
/* socks5_rep_text - SAP's meaning of a REP code */
const char *socks5_rep_text(int rep);

#endif
