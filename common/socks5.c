/*
 * socks5 - the SAP BTP Connectivity proxy's SOCKS5 handshake with the
 * vendor authentication method 0x80 (JWT + Cloud Connector location ID).
 *
 * The wire format is RFC 1928 with the method SAP's Connectivity
 * documentation describes ("Using the SOCKS5 Proxy for On-Premise
 * Connectivity"). Without a token (a proxy in
 * trusted mode, such as Kyma's Connectivity Proxy module by default) the
 * greeting offers 0x80 and 0x00 (RFC 1928: no authentication required);
 * on 0x80 the auth request carries a JWT length of 0 and the location ID,
 * on 0x00 CONNECT follows the method reply directly, and the location ID
 * cannot reach the proxy. The handshake is a small state machine:
 * greeting -> method reply -> auth request -> auth reply -> CONNECT ->
 * CONNECT reply, one parse function per reply. Every reply is
 * read whole (the CONNECT reply including BND.ADDR and BND.PORT), so that
 * on success the conn is positioned at the first byte from the relay.
 *
 * Returns SOCKS5_OK, SOCKS5_AUTH_REJECTED (the token was refused: the
 * caller may fetch a new one and try once more on a new connection) or
 * SOCKS5_FAIL. On failure the outcome names the step and what the proxy
 * said. Everything defers, because an operator can fix all of it:
 * 4.4.1 for connection-level failures at the proxy, 4.7.0 for
 * authentication, 4.3.5 for configuration (REP 02, 07, 08, inputs that
 * cannot be encoded, a peer that does not speak SOCKS5).
 *
 * The JWT is a secret: it is never logged or put into a text, and the
 * buffer that carried it is wiped.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "socks5.h"
#include "util.h"

#define SOCKS5_VERSION		0x05
#define SOCKS5_METHOD_SAP	0x80	/* JWT + location ID */
#define SOCKS5_METHOD_NOAUTH	0x00	/* no authentication required (RFC 1928) */
#define SOCKS5_METHOD_NONE	0xff	/* no acceptable method */
#define SOCKS5_AUTH_VERSION	0x01
#define SOCKS5_CMD_CONNECT	0x01
#define SOCKS5_ATYP_IPV4	0x01
#define SOCKS5_ATYP_NAME	0x03
#define SOCKS5_ATYP_IPV6	0x04
#define SOCKS5_REP_AUTH		0x05

#define SOCKS5_NAME_MAX		255	/* ATYP 03 length byte */
#define SOCKS5_LOCATION_B64_MAX	255	/* L is one byte */
#define SOCKS5_REPLY_MAX	(4 + 1 + 255 + 2)

/* Handshake states, in order; the step names appear in every failure text. */
enum socks5_state {
	SOCKS5_ST_GREETING,		/* sent 05 01 80 (no token: 05 02 80 00), waiting for 05 80 (or 05 00) */
	SOCKS5_ST_AUTH,			/* sent the 0x80 auth request, waiting for 01 00 */
	SOCKS5_ST_CONNECT,		/* sent CONNECT, waiting for 05 00 ... */
	SOCKS5_ST_DONE,			/* byte pipe to the relay */
};

/* One handshake: the inputs and where it stands. */
struct socks5_hs {
	struct conn *c;
	enum socks5_state state;
	const char *host;
	unsigned port;
	struct outcome *o;
	int trusted;			/* no token: the proxy's trusted mode */
};

/* socks5_rep_text - SAP's meaning of a REP code */
const char *socks5_rep_text(int rep)
{
	switch (rep) {
	case 0x00:
		return "succeeded";
	case 0x01:
		return "connection closed by backend, or general failure";
	case 0x02:
		return "no matching host mapping in the Cloud Connector access control";
	case 0x03:
		return "Cloud Connector not connected, or its location ID cannot be identified";
	case 0x04:
		return "backend host unreachable";
	case 0x05:
		return "authentication failure";
	case 0x06:
		return "TTL expired, not used by the Connectivity proxy";
	case 0x07:
		return "command not supported: only CONNECT is supported";
	case 0x08:
		return "address type not supported: only DOMAIN and IPv4 are supported";
	default:
		return "unknown reply code";
	}
}

/* socks5_auth_request - build the 0x80 auth request (REFERENCE §1) */
size_t socks5_auth_request(unsigned char *buf, size_t size, const char *jwt,
			   const char *location_id)
{
	char loc64[SOCKS5_LOCATION_B64_MAX + 1];
	size_t jwtlen, loclen = 0, b64len = 0, total;

	/* no token: JWT length 0; an empty token from a token service is an error */
	jwtlen = jwt != NULL ? strlen(jwt) : 0;
	if ((jwt != NULL && jwtlen == 0) || jwtlen > UINT32_MAX)
		return 0;
	if (location_id != NULL && (loclen = strlen(location_id)) > 0) {
		/* L counts the base64 text: 4 * ceil(n / 3) must fit in one byte. */
		if ((loclen + 2) / 3 * 4 > SOCKS5_LOCATION_B64_MAX)
			return 0;
		b64len = base64_encode(location_id, loclen, loc64, sizeof(loc64));
		if (b64len == 0)
			return 0;
	}
	total = 1 + 4 + jwtlen + 1 + b64len;
	if (total > size)
		return 0;

	buf[0] = SOCKS5_AUTH_VERSION;
	buf[1] = (unsigned char)(jwtlen >> 24);
	buf[2] = (unsigned char)(jwtlen >> 16);
	buf[3] = (unsigned char)(jwtlen >> 8);
	buf[4] = (unsigned char)jwtlen;
	if (jwtlen > 0)
		memcpy(buf + 5, jwt, jwtlen);
	buf[5 + jwtlen] = (unsigned char)b64len;
	memcpy(buf + 6 + jwtlen, loc64, b64len);
	return total;
}

/* socks5_connect_request - build CONNECT: ATYP 01 for a dotted IPv4, else ATYP 03 */
size_t socks5_connect_request(unsigned char *buf, size_t size, const char *host, unsigned port)
{
	struct in_addr a4;
	struct in6_addr a6;
	size_t len, n = 0;

	if (host == NULL || *host == 0 || port == 0 || port > 65535)
		return 0;
	len = strlen(host);
	if (inet_pton(AF_INET, host, &a4) == 1) {
		if (size < 10)
			return 0;
		buf[n++] = SOCKS5_VERSION;
		buf[n++] = SOCKS5_CMD_CONNECT;
		buf[n++] = 0x00;
		buf[n++] = SOCKS5_ATYP_IPV4;
		memcpy(buf + n, &a4, 4);	/* already network order */
		n += 4;
	} else {
		/* The proxy supports no ATYP 04; a name must fit its length byte. */
		if (inet_pton(AF_INET6, host, &a6) == 1 || len > SOCKS5_NAME_MAX
		    || size < 7 + len)
			return 0;
		buf[n++] = SOCKS5_VERSION;
		buf[n++] = SOCKS5_CMD_CONNECT;
		buf[n++] = 0x00;
		buf[n++] = SOCKS5_ATYP_NAME;
		buf[n++] = (unsigned char)len;
		memcpy(buf + n, host, len);
		n += len;
	}
	buf[n++] = (unsigned char)(port >> 8);
	buf[n++] = (unsigned char)port;
	return n;
}

/* socks5_reply_length - total length of a CONNECT reply from its first 5 bytes */
size_t socks5_reply_length(const unsigned char head[5])
{
	if (head[0] != SOCKS5_VERSION)
		return 0;
	switch (head[3]) {
	case SOCKS5_ATYP_IPV4:
		return 4 + 4 + 2;
	case SOCKS5_ATYP_NAME:
		return 4 + 1 + (size_t)head[4] + 2;
	case SOCKS5_ATYP_IPV6:
		return 4 + 16 + 2;
	default:
		return 0;
	}
}

/* socks5_step - the step name of a state, for texts and logs */
static const char *socks5_step(const struct socks5_hs *hs, char *buf, size_t size)
{
	switch (hs->state) {
	case SOCKS5_ST_GREETING:
		return "proxy greeting";
	case SOCKS5_ST_AUTH:
		return "proxy auth";
	case SOCKS5_ST_CONNECT:
		snprintf(buf, size, "proxy CONNECT %s:%u", hs->host, hs->port);
		return buf;
	default:
		return "proxy";
	}
}

/* socks5_hex - bytes as "05 ff" for texts */
static void socks5_hex(char *buf, size_t size, const unsigned char *p, size_t n)
{
	size_t i, off = 0;

	buf[0] = 0;
	for (i = 0; i < n && off + 4 <= size; i++)
		off += (size_t)snprintf(buf + off, size - off, i ? " %02x" : "%02x", p[i]);
}

/* socks5_conn_fail - an outcome for a conn failure at the current step */
static int socks5_conn_fail(struct socks5_hs *hs)
{
	char step[SOCKS5_NAME_MAX + 32];
	struct conn *c = hs->c;

	if ((c->err == CONN_IO || c->err == CONN_TLS) && c->errtext[0])
		dsn_defer(hs->o, "4.4.1", "%s: %s (%s)", socks5_step(hs, step, sizeof(step)),
			  conn_strerror(c->err), c->errtext);
	else
		dsn_defer(hs->o, "4.4.1", "%s: %s", socks5_step(hs, step, sizeof(step)),
			  conn_strerror(c->err));
	log_debug("%s", hs->o->text);
	return SOCKS5_FAIL;
}

/* socks5_enter - the one place where the handshake changes state */
static void socks5_enter(struct socks5_hs *hs, enum socks5_state state)
{
	char step[SOCKS5_NAME_MAX + 32];

	hs->state = state;
	if (state != SOCKS5_ST_DONE)
		log_debug("%s", socks5_step(hs, step, sizeof(step)));
}

/* socks5_send - write and flush one request */
static int socks5_send(struct socks5_hs *hs, const unsigned char *buf, size_t len)
{
	if (conn_write(hs->c, buf, len) < 0 || conn_flush(hs->c) < 0)
		return socks5_conn_fail(hs);
	return 0;
}

/* socks5_parse_method - the method reply: 05 80, or without a token 05 80 or 05 00 */
static int socks5_parse_method(struct socks5_hs *hs, const unsigned char r[2])
{
	char hex[8];

	socks5_hex(hex, sizeof(hex), r, 2);
	if (r[0] != SOCKS5_VERSION) {
		dsn_config(hs->o, "proxy greeting: not a SOCKS5 reply (%s)", hex);
		return SOCKS5_FAIL;
	}
	if (r[1] == SOCKS5_METHOD_SAP || (hs->trusted && r[1] == SOCKS5_METHOD_NOAUTH))
		return SOCKS5_OK;
	if (!hs->trusted)
		dsn_auth(hs->o, "proxy refused authentication method 0x80 (method reply %s)",
			 hex);
	else if (r[1] == SOCKS5_METHOD_NONE)
		dsn_auth(hs->o, "proxy refused to work without a token: it accepted neither "
			 "method 0x80 without a JWT nor 0x00 (method reply %s); it needs "
			 "proxy_authentication = token and a connectivity binding", hex);
	else
		dsn_auth(hs->o, "proxy chose method 0x%02x, which was not offered "
			 "(method reply %s)", r[1], hex);
	return SOCKS5_FAIL;
}

/* socks5_parse_auth - the auth reply: 01 00 */
static int socks5_parse_auth(struct socks5_hs *hs, const unsigned char r[2])
{
	char hex[8];

	if (r[0] == SOCKS5_AUTH_VERSION && r[1] == 0x00)
		return SOCKS5_OK;
	socks5_hex(hex, sizeof(hex), r, 2);
	if (hs->trusted) {
		dsn_auth(hs->o, "proxy authentication without a token rejected (auth "
			 "reply %s); it needs proxy_authentication = token and a connectivity "
			 "binding", hex);
		return SOCKS5_FAIL;
	}
	dsn_auth(hs->o, "proxy authentication rejected (auth reply %s)", hex);
	return SOCKS5_AUTH_REJECTED;
}

/*
 * socks5_parse_connect - the CONNECT reply: 05 REP 00 ATYP BND.ADDR BND.PORT
 * (len bytes of it; only the first 5 when the rest could not be read).
 */
static int socks5_parse_connect(struct socks5_hs *hs, const unsigned char *r, size_t len)
{
	char step[SOCKS5_NAME_MAX + 32], hex[64];
	int rep = r[1];

	socks5_step(hs, step, sizeof(step));
	metrics_inc_code(METRIC_SOCKS_REPLIES, (unsigned)rep);
	if (rep == 0x00)
		return SOCKS5_OK;
	switch (rep) {
	case SOCKS5_REP_AUTH:
		dsn_auth(hs->o, "%s failed: REP %02x (%s)", step, rep, socks5_rep_text(rep));
		/* without a token there is none to renew */
		return hs->trusted ? SOCKS5_FAIL : SOCKS5_AUTH_REJECTED;
	case 0x02:
	case 0x07:
	case 0x08:
		dsn_config(hs->o, "%s failed: REP %02x (%s)", step, rep, socks5_rep_text(rep));
		return SOCKS5_FAIL;
	case 0x01:
	case 0x03:
	case 0x04:
	case 0x06:
		dsn_defer(hs->o, "4.4.1", "%s failed: REP %02x (%s)", step, rep, socks5_rep_text(rep));
		return SOCKS5_FAIL;
	default:
		socks5_hex(hex, sizeof(hex), r, len < 5 ? len : 5);
		dsn_defer(hs->o, "4.4.1", "%s failed: REP %02x (%s; reply %s)", step, rep,
			  socks5_rep_text(rep), hex);
		return SOCKS5_FAIL;
	}
}

/* socks5_check_input - refuse what cannot be encoded, with a text saying why */
static int socks5_check_input(struct socks5_hs *hs, const char *jwt, const char *location_id)
{
	struct in6_addr a6;
	size_t loclen = location_id ? strlen(location_id) : 0;

	if (jwt != NULL && *jwt == 0) {
		dsn_config(hs->o, "proxy auth: no Connectivity token");
		return SOCKS5_FAIL;
	}
	if ((loclen + 2) / 3 * 4 > SOCKS5_LOCATION_B64_MAX) {
		dsn_config(hs->o, "proxy auth: Cloud Connector location ID too long "
			   "(%zu bytes, at most 189)", loclen);
		return SOCKS5_FAIL;
	}
	if (hs->host == NULL || *hs->host == 0) {
		dsn_config(hs->o, "proxy CONNECT: no relay host name");
		return SOCKS5_FAIL;
	}
	if (strlen(hs->host) > SOCKS5_NAME_MAX) {
		dsn_config(hs->o, "proxy CONNECT: relay host name too long (%zu bytes, at most %d)",
			   strlen(hs->host), SOCKS5_NAME_MAX);
		return SOCKS5_FAIL;
	}
	if (inet_pton(AF_INET6, hs->host, &a6) == 1) {
		dsn_config(hs->o, "proxy CONNECT %s: IPv6 addresses are not supported by the "
			   "Connectivity proxy", hs->host);
		return SOCKS5_FAIL;
	}
	if (hs->port == 0 || hs->port > 65535) {
		dsn_config(hs->o, "proxy CONNECT %s: invalid port %u", hs->host, hs->port);
		return SOCKS5_FAIL;
	}
	return SOCKS5_OK;
}

/*
 * socks5_auth - the 0x80 sub-negotiation: the token (or a JWT length of 0
 * without one) and the location ID; the buffer that held the token is wiped
 */
static int socks5_auth(struct socks5_hs *hs, const char *jwt, const char *location_id)
{
	unsigned char *auth, reply[2];
	size_t authsize, len;
	int rc;

	socks5_enter(hs, SOCKS5_ST_AUTH);
	log_debug("proxy auth: %s%zu bytes, location ID %s%s%s", jwt ? "token of "
		  : "no token (trusted mode), JWT length 0: ", jwt ? strlen(jwt) : 0,
		  location_id && *location_id ? "\"" : "",
		  location_id && *location_id ? location_id : "(none)",
		  location_id && *location_id ? "\"" : "");
	authsize = 1 + 4 + (jwt ? strlen(jwt) : 0) + 1 + SOCKS5_LOCATION_B64_MAX;
	auth = xmalloc(authsize);
	len = socks5_auth_request(auth, authsize, jwt, location_id);
	if (len == 0) {
		/* socks5_check_input() has refused everything that gets here. */
		free(auth);
		dsn_config(hs->o, "proxy auth: cannot encode the auth request");
		return SOCKS5_FAIL;
	}
	rc = conn_write(hs->c, auth, len) < 0 || conn_flush(hs->c) < 0 ? -1 : 0;
	explicit_bzero(auth, authsize);
	free(auth);
	if (rc < 0)
		return socks5_conn_fail(hs);
	if (conn_read(hs->c, reply, 2) < 0)
		return socks5_conn_fail(hs);
	return socks5_parse_auth(hs, reply);
}

/*
 * socks5_request_connect - CONNECT to the relay's (virtual) host, and its
 * reply read whole
 */
static int socks5_request_connect(struct socks5_hs *hs)
{
	unsigned char reply[SOCKS5_REPLY_MAX], creq[7 + SOCKS5_NAME_MAX];
	size_t len, rlen;

	socks5_enter(hs, SOCKS5_ST_CONNECT);
	len = socks5_connect_request(creq, sizeof(creq), hs->host, hs->port);
	if (len == 0) {
		dsn_config(hs->o, "proxy CONNECT %s:%u: cannot encode the request", hs->host,
			   hs->port);
		return SOCKS5_FAIL;
	}
	if (socks5_send(hs, creq, len) < 0)
		return SOCKS5_FAIL;
	if (conn_read(hs->c, reply, 5) < 0)
		return socks5_conn_fail(hs);
	if (reply[0] != SOCKS5_VERSION) {
		char hex[16], step[SOCKS5_NAME_MAX + 32];

		socks5_hex(hex, sizeof(hex), reply, 5);
		dsn_config(hs->o, "%s: not a SOCKS5 reply (%s)",
			   socks5_step(hs, step, sizeof(step)), hex);
		return SOCKS5_FAIL;
	}
	rlen = socks5_reply_length(reply);
	if (rlen == 0) {
		char hex[16], step[SOCKS5_NAME_MAX + 32];

		/* A refusal with a bogus address type still says why. */
		if (reply[1] != 0x00)
			return socks5_parse_connect(hs, reply, 5);
		socks5_hex(hex, sizeof(hex), reply, 5);
		dsn_config(hs->o, "%s: malformed reply, bad address type (%s)",
			   socks5_step(hs, step, sizeof(step)), hex);
		return SOCKS5_FAIL;
	}
	/* Always read the whole reply: what follows it belongs to the relay. */
	if (conn_read(hs->c, reply + 5, rlen - 5) < 0) {
		if (reply[1] != 0x00)
			return socks5_parse_connect(hs, reply, 5);
		return socks5_conn_fail(hs);
	}
	return socks5_parse_connect(hs, reply, rlen);
}

/* socks5_connect_method - socks5_connect, and the method the proxy chose in *method */
int socks5_connect_method(struct conn *c, const char *jwt, const char *location_id,
			  const char *host, unsigned port, int *method, struct outcome *o)
{
	static const unsigned char greeting[3] = { SOCKS5_VERSION, 1, SOCKS5_METHOD_SAP };
	static const unsigned char greeting_trusted[4] = {
		SOCKS5_VERSION, 2, SOCKS5_METHOD_SAP, SOCKS5_METHOD_NOAUTH,
	};
	struct socks5_hs hs = { c, SOCKS5_ST_GREETING, host, port, o, jwt == NULL };
	unsigned char reply[2];
	int rc;

	if ((rc = socks5_check_input(&hs, jwt, location_id)) != SOCKS5_OK)
		return rc;

	/* Greeting: 0x80; without a token 0x80 first, then 0x00. */
	socks5_enter(&hs, SOCKS5_ST_GREETING);
	if (socks5_send(&hs, hs.trusted ? greeting_trusted : greeting,
			hs.trusted ? sizeof(greeting_trusted) : sizeof(greeting)) < 0)
		return SOCKS5_FAIL;
	if (conn_read(c, reply, 2) < 0)
		return socks5_conn_fail(&hs);
	if ((rc = socks5_parse_method(&hs, reply)) != SOCKS5_OK)
		return rc;
	if (method != NULL)
		*method = reply[1];

	if (reply[1] == SOCKS5_METHOD_SAP) {
		if ((rc = socks5_auth(&hs, jwt, location_id)) != SOCKS5_OK)
			return rc;
	} else if (location_id != NULL && *location_id != 0) {
		/* 0x00 has no field for it: the proxy picks its default Cloud Connector */
		log_warn("proxy chose no authentication (method 0x00): it cannot receive the "
			 "Cloud Connector location ID \"%s\"; the proxy picks the Cloud Connector "
			 "itself", location_id);
	} else {
		log_debug("proxy chose no authentication (method 0x00)");
	}

	if ((rc = socks5_request_connect(&hs)) != SOCKS5_OK)
		return rc;
	socks5_enter(&hs, SOCKS5_ST_DONE);
	log_debug("proxy CONNECT %s:%u: tunnel open", host, port);
	return SOCKS5_OK;
}

/* socks5_connect - on a conn connected to the proxy: greeting, 0x80 auth, CONNECT host:port */
int socks5_connect(struct conn *c, const char *jwt, const char *location_id,
		   const char *host, unsigned port, struct outcome *o)
{
	return socks5_connect_method(c, jwt, location_id, host, port, NULL, o);
}
