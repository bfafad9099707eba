/*
 * socks5 - the Connectivity proxy's SOCKS5 handshake with method 0x80
 * (JWT + Cloud Connector location ID, SAP BTP Connectivity: "Using the TCP
 * Protocol for Cloud Applications"); without a JWT for
 * a proxy in trusted mode (methods 0x80 with a JWT length of 0, and 0x00).
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

/*
 * socks5_connect - on a conn connected to the proxy: greeting, 0x80 auth,
 * CONNECT host:port. jwt NULL: no token (a proxy in trusted mode): offer
 * 0x80 and 0x00 and follow the proxy's choice; SOCKS5_AUTH_REJECTED is
 * then never returned (there is no token to renew).
 */
int socks5_connect(struct conn *c, const char *jwt, const char *location_id,
		   const char *host, unsigned port, struct outcome *o);
/*
 * socks5_connect_method - socks5_connect, and the method the proxy chose
 * (0x80, or 0x00 without a token) in *method once it is known
 */
int socks5_connect_method(struct conn *c, const char *jwt, const char *location_id,
			  const char *host, unsigned port, int *method, struct outcome *o);

/* The byte-level pieces, pure functions for unit tests and fuzzing. */
/*
 * socks5_auth_request - build the 0x80 auth request (jwt NULL: JWT length
 * 0); returns its length, 0 if it does not fit, the JWT is "" or the
 * location ID is too long
 */
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
