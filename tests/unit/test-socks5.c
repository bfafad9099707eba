/*
 * test-socks5 - the 0x80 SOCKS5 client: byte-exact request builders, the
 * CONNECT reply length, and whole handshakes against a scripted fake proxy
 * (a thread on a loopback listener) for every reply the proxy can give;
 * the same without a token (a proxy in trusted mode): greeting 05 02 80 00,
 * the 0x80 auth with a JWT length of 0, or straight to CONNECT on 0x00.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "dsn.h"
#include "log.h"
#include "socks5.h"
#include "tap.h"
#include "../lib/files.h"
#include "../lib/peer.h"

/* ---- the fake proxy: a script of expected bytes and replies (tests/lib/peer.c) ---- */

/* ---- fixtures ---- */

static const unsigned char GREETING[] = { 0x05, 0x01, 0x80 };
static const unsigned char METHOD_OK[] = { 0x05, 0x80 };
static const unsigned char AUTH_OK[] = { 0x01, 0x00 };
/* CONNECT mail.corp.internal:25, ATYP 03 */
static const unsigned char CONNECT_NAME[] = {
	0x05, 0x01, 0x00, 0x03, 18, 'm', 'a', 'i', 'l', '.', 'c', 'o', 'r', 'p', '.',
	'i', 'n', 't', 'e', 'r', 'n', 'a', 'l', 0x00, 25,
};

static char jwt[156];			/* 155 bytes, "eyJ..." */
static unsigned char auth_loc1[1 + 4 + 155 + 1 + 8];	/* location "LOC1" -> "TE9DMQ==" */
static const char *hs_jwt;		/* what handshake() passes: jwt, or NULL for no token */

/* fixtures_init - a 155-byte JWT and the auth request for location LOC1 */
static void fixtures_init(void)
{
	size_t i;

	memcpy(jwt, "eyJhbGciOiJSUzI1NiJ9.", 21);
	for (i = 21; i < 155; i++)
		jwt[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
	jwt[155] = 0;
	auth_loc1[0] = 0x01;
	auth_loc1[1] = 0;
	auth_loc1[2] = 0;
	auth_loc1[3] = 0;
	auth_loc1[4] = 155;
	memcpy(auth_loc1 + 5, jwt, 155);
	auth_loc1[160] = 8;
	memcpy(auth_loc1 + 161, "TE9DMQ==", 8);
	hs_jwt = jwt;
}

/* trusted mode: no token */
static const unsigned char GREETING_TRUSTED[] = { 0x05, 0x02, 0x80, 0x00 };
static const unsigned char METHOD_NOAUTH[] = { 0x05, 0x00 };
/* JWT length 0, location "LOC1" -> "TE9DMQ==" */
static const unsigned char AUTH_TRUSTED_LOC1[] = {
	0x01, 0x00, 0x00, 0x00, 0x00, 8, 'T', 'E', '9', 'D', 'M', 'Q', '=', '=',
};

/* handshake - run socks5_connect against p with the usual script prefix up to CONNECT */
static int handshake(struct peer *p, int timeout_ms, const char *host, unsigned port,
		     struct conn *c, struct outcome *o)
{
	int rc;

	peer_start(p);
	conn_init(c, timeout_ms, 0);
	if (conn_connect(c, "127.0.0.1", p->port) < 0) {
		printf("# connect: %s\n", c->errtext);
		exit(99);
	}
	memset(o, 0, sizeof(*o));
	rc = socks5_connect(c, hs_jwt, "LOC1", host, port, o);
	return rc;
}

/* ---- builders ---- */

static void test_auth_request(void)
{
	unsigned char buf[600];
	char loc[200];
	size_t n;

	n = socks5_auth_request(buf, sizeof(buf), jwt, "cloud-sdk-js");
	is_int(n, 177, "auth request, 155-byte JWT + cloud-sdk-js: 177 bytes");
	ok(memcmp(buf, "\x01\x00\x00\x00\x9b", 5) == 0, "auth request: 01 + length 00 00 00 9b");
	ok(memcmp(buf + 5, jwt, 155) == 0, "auth request: the JWT verbatim");
	is_int(buf[160], 0x10, "auth request: L = 0x10");
	ok(memcmp(buf + 161, "Y2xvdWQtc2RrLWpz", 16) == 0, "auth request: base64 of the location ID");

	n = socks5_auth_request(buf, sizeof(buf), jwt, NULL);
	is_int(n, 161, "auth request without location: 161 bytes");
	is_int(buf[160], 0x00, "auth request without location: trailing 00");
	n = socks5_auth_request(buf, sizeof(buf), jwt, "");
	ok(n == 161 && buf[160] == 0, "auth request with empty location: trailing 00");

	memset(loc, 'x', sizeof(loc));
	loc[189] = 0;
	n = socks5_auth_request(buf, sizeof(buf), jwt, loc);
	ok(n == 161 + 252 && buf[160] == 252, "location of 189 bytes: 252 base64 bytes fit");
	loc[189] = 'x';
	loc[190] = 0;
	is_int(socks5_auth_request(buf, sizeof(buf), jwt, loc), 0,
	       "location of 190 bytes: base64 over 255 -> 0");
	is_int(socks5_auth_request(buf, 176, jwt, "cloud-sdk-js"), 0, "buffer one byte short -> 0");
	n = socks5_auth_request(buf, sizeof(buf), NULL, "LOC1");
	ok(n == sizeof(AUTH_TRUSTED_LOC1) && memcmp(buf, AUTH_TRUSTED_LOC1, n) == 0,
	   "no token: 01, JWT length 00 00 00 00, 08 TE9DMQ==");
	n = socks5_auth_request(buf, sizeof(buf), NULL, NULL);
	ok(n == 6 && memcmp(buf, "\x01\x00\x00\x00\x00\x00", 6) == 0,
	   "no token, no location: 01 00 00 00 00 00");
	is_int(socks5_auth_request(buf, 5, NULL, NULL), 0, "no token, buffer one byte short -> 0");
	is_int(socks5_auth_request(buf, sizeof(buf), "", NULL), 0, "empty JWT -> 0");
}

static void test_connect_request(void)
{
	unsigned char buf[300];
	char name[300];
	size_t n;

	n = socks5_connect_request(buf, sizeof(buf), "mail.corp.internal", 25);
	ok(n == sizeof(CONNECT_NAME) && memcmp(buf, CONNECT_NAME, n) == 0,
	   "CONNECT name: 05 01 00 03 len name port");
	n = socks5_connect_request(buf, sizeof(buf), "10.1.2.3", 2525);
	ok(n == 10 && memcmp(buf, "\x05\x01\x00\x01\x0a\x01\x02\x03\x09\xdd", 10) == 0,
	   "CONNECT dotted IPv4: ATYP 01 + 4 bytes + port");
	n = socks5_connect_request(buf, sizeof(buf), "10.1.2", 25);
	ok(n == 13 && buf[3] == 0x03, "CONNECT 10.1.2 (not a dotted quad): ATYP 03");
	n = socks5_connect_request(buf, sizeof(buf), "relay", 65535);
	ok(n == 12 && buf[10] == 0xff && buf[11] == 0xff, "CONNECT port 65535 big-endian");

	memset(name, 'a', sizeof(name));
	name[255] = 0;
	n = socks5_connect_request(buf, sizeof(buf), name, 25);
	ok(n == 262 && buf[4] == 255, "CONNECT name of 255 bytes");
	name[255] = 'a';
	name[256] = 0;
	is_int(socks5_connect_request(buf, sizeof(buf), name, 25), 0, "CONNECT name of 256 bytes -> 0");
	is_int(socks5_connect_request(buf, sizeof(buf), "", 25), 0, "CONNECT empty host -> 0");
	is_int(socks5_connect_request(buf, sizeof(buf), "relay", 0), 0, "CONNECT port 0 -> 0");
	is_int(socks5_connect_request(buf, sizeof(buf), "relay", 65536), 0, "CONNECT port 65536 -> 0");
	is_int(socks5_connect_request(buf, sizeof(buf), "::1", 25), 0, "CONNECT IPv6 literal -> 0");
	is_int(socks5_connect_request(buf, 9, "10.1.2.3", 25), 0, "CONNECT IPv4, small buffer -> 0");
	is_int(socks5_connect_request(buf, 11, "relay", 25), 0, "CONNECT name, small buffer -> 0");
}

static void test_reply_length(void)
{
	static const struct {
		unsigned char head[5];
		size_t len;
		const char *name;
	} t[] = {
		{ { 5, 0, 0, 1, 10 }, 10, "ATYP 01: 10 bytes" },
		{ { 5, 0, 0, 3, 7 }, 14, "ATYP 03 with a 7-byte name: 14 bytes" },
		{ { 5, 0, 0, 3, 0 }, 7, "ATYP 03 with an empty name: 7 bytes" },
		{ { 5, 0, 0, 3, 255 }, 262, "ATYP 03 with a 255-byte name: 262 bytes" },
		{ { 5, 0, 0, 4, 0 }, 22, "ATYP 04: 22 bytes" },
		{ { 5, 0, 0, 2, 0 }, 0, "ATYP 02: invalid" },
		{ { 5, 4, 0, 0, 0 }, 0, "ATYP 00: invalid" },
		{ { 4, 0, 0, 1, 0 }, 0, "version 4: invalid" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		is_int(socks5_reply_length(t[i].head), t[i].len, "reply length, %s", t[i].name);
	has_str(socks5_rep_text(2), "no matching host mapping", "REP 02 text");
	has_str(socks5_rep_text(4), "backend host unreachable", "REP 04 text");
	has_str(socks5_rep_text(0x42), "unknown", "REP 42 text");
}

/* ---- whole handshakes ---- */

static void test_success(void)
{
	static const unsigned char reply_v4[] = {
		0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x1f, 0x90,
		'2', '2', '0', ' ', 'h', 'i', '\r', '\n',
	};
	static const unsigned char reply_name[] = {
		0x05, 0x00, 0x00, 0x03, 5, 'p', 'r', 'o', 'x', 'y', 0x1f, 0x90,
		'2', '2', '0', ' ', 'h', 'i', '\r', '\n',
	};
	static const unsigned char connect_v4[] = {
		0x05, 0x01, 0x00, 0x01, 192, 168, 7, 9, 0x00, 0x19,
	};
	struct peer p = { 0 };
	struct conn c;
	struct outcome o;
	char line[64];
	int rc;

	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, reply_v4, sizeof(reply_v4));
	rc = handshake(&p, 3000, "mail.corp.internal", 25, &c, &o);
	is_int(rc, SOCKS5_OK, "handshake ok (BND ATYP 01)");
	is_int(conn_read_line(&c, line, sizeof(line)), 6, "after the reply: the relay's first line");
	is_str(line, "220 hi", "the whole CONNECT reply was consumed");
	conn_close(&c);
	peer_finish(&p);
	is_str(p.why, "", "the proxy saw exactly greeting, auth, CONNECT");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, connect_v4, sizeof(connect_v4));
	peer_add(&p, PEER_SEND, reply_name, sizeof(reply_name));
	rc = handshake(&p, 3000, "192.168.7.9", 25, &c, &o);
	is_int(rc, SOCKS5_OK, "handshake ok to an IPv4 literal (BND ATYP 03)");
	conn_read_line(&c, line, sizeof(line));
	is_str(line, "220 hi", "ATYP 03 reply consumed whole");
	conn_close(&c);
	peer_finish(&p);
	is_str(p.why, "", "the proxy saw CONNECT with ATYP 01");
	peer_free(&p);
}

/* test_rep_codes - every REP code, with a token and without one (the proxy chose 0x00) */
static void test_rep_codes(int trusted)
{
	static const struct {
		unsigned char rep;
		int rc;
		const char *status;
		const char *text;
	} t[] = {
		{ 0x01, SOCKS5_FAIL, "4.4.1", "proxy CONNECT mail.corp.internal:25 failed: REP 01 "
		  "(connection closed by backend, or general failure)" },
		{ 0x02, SOCKS5_FAIL, "4.3.5", "proxy CONNECT mail.corp.internal:25 failed: REP 02 "
		  "(no matching host mapping in the Cloud Connector access control)" },
		{ 0x03, SOCKS5_FAIL, "4.4.1", "proxy CONNECT mail.corp.internal:25 failed: REP 03 "
		  "(Cloud Connector not connected" },
		{ 0x04, SOCKS5_FAIL, "4.4.1", "proxy CONNECT mail.corp.internal:25 failed: REP 04 "
		  "(backend host unreachable)" },
		{ 0x05, SOCKS5_AUTH_REJECTED, "4.7.0", "proxy CONNECT mail.corp.internal:25 failed: "
		  "REP 05 (authentication failure)" },	/* without a token: SOCKS5_FAIL */
		{ 0x06, SOCKS5_FAIL, "4.4.1", "failed: REP 06" },
		{ 0x07, SOCKS5_FAIL, "4.3.5", "failed: REP 07 (command not supported" },
		{ 0x08, SOCKS5_FAIL, "4.3.5", "failed: REP 08 (address type not supported" },
		{ 0x2a, SOCKS5_FAIL, "4.4.1", "failed: REP 2a (unknown reply code" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		unsigned char reply[10] = { 0x05, t[i].rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
		struct peer p = { 0 };
		struct conn c;
		struct outcome o;
		int rc;

		const char *mode = trusted ? "no token, " : "";
		int want_rc = trusted && t[i].rc == SOCKS5_AUTH_REJECTED ? SOCKS5_FAIL : t[i].rc;

		if (trusted) {
			peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
			peer_add(&p, PEER_SEND, METHOD_NOAUTH, sizeof(METHOD_NOAUTH));
		} else {
			peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
			peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
			peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
			peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
		}
		peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
		peer_add(&p, PEER_SEND, reply, sizeof(reply));
		hs_jwt = trusted ? NULL : jwt;
		rc = handshake(&p, 3000, "mail.corp.internal", 25, &c, &o);
		hs_jwt = jwt;
		conn_close(&c);
		peer_finish(&p);
		is_int(rc, want_rc, "%sREP %02x: return value", mode, t[i].rep);
		is_int(o.cls, DSN_DEFER, "%sREP %02x: defers", mode, t[i].rep);
		is_str(o.status, t[i].status, "%sREP %02x: status", mode, t[i].rep);
		has_str(o.text, t[i].text, "%sREP %02x: text", mode, t[i].rep);
		ok(strstr(o.text, jwt) == NULL && strstr(o.text, "eyJ") == NULL,
		   "%sREP %02x: no token in the text", mode, t[i].rep);
		is_str(p.why, "", "%sREP %02x: the proxy saw the expected bytes", mode, t[i].rep);
		peer_free(&p);
	}
}

/* fail_case - one failing handshake: the script, then what must come out */
static void fail_case(const char *name, struct peer *p, int timeout_ms, int want_rc,
		      const char *want_status, const char *want_text)
{
	struct conn c;
	struct outcome o;
	int rc;

	rc = handshake(p, timeout_ms, "mail.corp.internal", 25, &c, &o);
	conn_close(&c);
	peer_finish(p);
	is_int(rc, want_rc, "%s: return value", name);
	is_int(o.cls, DSN_DEFER, "%s: defers", name);
	is_str(o.status, want_status, "%s: status", name);
	is_str(o.text, want_text, "%s: text", name);
}

static void test_failures(void)
{
	static const unsigned char method_ff[] = { 0x05, 0xff };
	static const unsigned char method_v4[] = { 0x04, 0x80 };
	static const unsigned char auth_bad[] = { 0x01, 0x01 };
	static const unsigned char truncated[] = { 0x05, 0x00, 0x00, 0x01, 10, 0 };
	static const unsigned char rep_badatyp[] = { 0x05, 0x04, 0x00, 0x00, 0x00 };
	static const unsigned char not_socks[] = { 'H', 'T', 'T', 'P', '/' };
	struct peer p = { 0 };

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, method_ff, sizeof(method_ff));
	fail_case("method FF", &p, 3000, SOCKS5_FAIL, "4.7.0",
		  "proxy refused authentication method 0x80 (method reply 05 ff)");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, method_v4, sizeof(method_v4));
	fail_case("method reply version 4", &p, 3000, SOCKS5_FAIL, "4.3.5",
		  "proxy greeting: not a SOCKS5 reply (04 80)");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, auth_bad, sizeof(auth_bad));
	fail_case("auth 01 01", &p, 3000, SOCKS5_AUTH_REJECTED, "4.7.0",
		  "proxy authentication rejected (auth reply 01 01)");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_CLOSE, NULL, 0);
	fail_case("closed during auth", &p, 3000, SOCKS5_FAIL, "4.4.1",
		  "proxy auth: connection closed");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, truncated, sizeof(truncated));
	peer_add(&p, PEER_CLOSE, NULL, 0);
	fail_case("truncated CONNECT reply", &p, 3000, SOCKS5_FAIL, "4.4.1",
		  "proxy CONNECT mail.corp.internal:25: connection closed");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, truncated, sizeof(truncated));
	fail_case("CONNECT reply cut short, proxy silent", &p, 200, SOCKS5_FAIL, "4.4.1",
		  "proxy CONNECT mail.corp.internal:25: timeout");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, rep_badatyp, sizeof(rep_badatyp));
	fail_case("REP 04 with a bogus ATYP", &p, 3000, SOCKS5_FAIL, "4.4.1",
		  "proxy CONNECT mail.corp.internal:25 failed: REP 04 (backend host unreachable)");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, not_socks, sizeof(not_socks));
	fail_case("CONNECT reply not SOCKS5", &p, 3000, SOCKS5_FAIL, "4.3.5",
		  "proxy CONNECT mail.corp.internal:25: not a SOCKS5 reply (48 54 54 50 2f)");

	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	fail_case("greeting timeout", &p, 200, SOCKS5_FAIL, "4.4.1", "proxy greeting: timeout");
	peer_free(&p);
}

/*
 * test_handshake_deadline - the connect timeout holds for the whole
 * handshake (from conn_connect until the caller sets its next timeout): a
 * proxy that waits 120 ms before each of its three replies (360 ms) fails
 * a 300 ms timeout, though each reply alone is in time.
 */
static void test_handshake_deadline(void)
{
	static const unsigned char reply_ok[] = { 0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x1f, 0x90 };
	struct peer p = { 0 };
	struct conn c;
	struct outcome o;
	int rc;

	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_PAUSE, NULL, 120);
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_PAUSE, NULL, 120);
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_PAUSE, NULL, 120);
	peer_add(&p, PEER_SEND, reply_ok, sizeof(reply_ok));
	rc = handshake(&p, 300, "mail.corp.internal", 25, &c, &o);
	conn_close(&c);
	peer_finish(&p);
	ok(rc == SOCKS5_FAIL && o.cls == DSN_DEFER && strcmp(o.status, "4.4.1") == 0,
	   "three replies 120 ms late each, timeout 300 ms: defer 4.4.1 (got %d %s)", rc, o.status);
	has_str(o.text, ": timeout", "three late replies: the text says timeout");

	/* the same proxy, in time: the deadline ends where the next protocol sets its timeout */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_loc1, sizeof(auth_loc1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, reply_ok, sizeof(reply_ok));
	peer_add(&p, PEER_PAUSE, NULL, 450);
	peer_add(&p, PEER_SEND, "220 hi\r\n", 8);
	rc = handshake(&p, 300, "mail.corp.internal", 25, &c, &o);
	is_int(rc, SOCKS5_OK, "handshake in time: tunnel open");
	{
		char line[32];

		/* past the 300 ms of the connect phase, a read within its own timeout works */
		conn_set_timeout(&c, 1000);
		poll(NULL, 0, 300);
		ok(conn_read_line(&c, line, sizeof(line)) == 6 && strcmp(line, "220 hi") == 0,
		   "after the handshake each read has its own timeout again");
	}
	conn_close(&c);
	peer_finish(&p);
	peer_free(&p);
}

static void test_bad_input(void)
{
	struct peer p = { 0 };
	struct conn c;
	struct outcome o;
	char loc[200], name[300];
	int rc;

	memset(loc, 'x', sizeof(loc));
	loc[190] = 0;
	peer_start(&p);
	conn_init(&c, 3000, 0);
	conn_connect(&c, "127.0.0.1", p.port);
	rc = socks5_connect(&c, jwt, loc, "mail.corp.internal", 25, &o);
	is_int(rc, SOCKS5_FAIL, "location ID of 190 bytes: fails");
	ok(o.cls == DSN_DEFER && strcmp(o.status, "4.3.5") == 0, "location ID too long: 4.3.5");
	has_str(o.text, "location ID too long", "location ID too long: text");

	memset(name, 'a', sizeof(name));
	name[256] = 0;
	rc = socks5_connect(&c, jwt, "LOC1", name, 25, &o);
	ok(rc == SOCKS5_FAIL && strcmp(o.status, "4.3.5") == 0, "host name of 256 bytes: 4.3.5");
	has_str(o.text, "host name too long", "host name too long: text");
	rc = socks5_connect(&c, jwt, "LOC1", "fd00::25", 25, &o);
	ok(rc == SOCKS5_FAIL && strcmp(o.status, "4.3.5") == 0, "IPv6 literal: 4.3.5");
	rc = socks5_connect(&c, "", "LOC1", "mail.corp.internal", 25, &o);
	ok(rc == SOCKS5_FAIL && strcmp(o.status, "4.3.5") == 0, "no token: 4.3.5");
	conn_close(&c);
	peer_finish(&p);
	is_int(p.gotlen, 0, "nothing was sent to the proxy for unusable input");
	peer_free(&p);
}

static int trusted_method;		/* the method the last trusted_case() was told */

/* trusted_case - one handshake without a token; returns rc, the proxy's verdict in p->why */
static int trusted_case(struct peer *p, const char *location, struct outcome *o)
{
	struct conn c;
	int rc;

	trusted_method = -1;
	peer_start(p);
	conn_init(&c, 3000, 0);
	if (conn_connect(&c, "127.0.0.1", p->port) < 0)
		exit(99);
	memset(o, 0, sizeof(*o));
	rc = socks5_connect_method(&c, NULL, location, "mail.corp.internal", 25, &trusted_method, o);
	conn_close(&c);
	peer_finish(p);
	return rc;
}

static void test_trusted(void)
{
	static const unsigned char reply_ok[] = { 0x05, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0, 25 };
	static const unsigned char method_ff[] = { 0x05, 0xff };
	static const unsigned char method_02[] = { 0x05, 0x02 };
	static const unsigned char auth_bad[] = { 0x01, 0x01 };
	static const unsigned char auth_noloc[] = { 0x01, 0, 0, 0, 0, 0 };
	char logpath[] = "/tmp/test-socks5-log.XXXXXX";
	struct peer p = { 0 };
	struct outcome o;
	int fd, rc;

	/* every log line of this test at debug level, to look for what it must not say */
	if ((fd = mkstemp(logpath)) < 0 || log_open("test-socks5", logpath, LOG_LVL_DEBUG) < 0) {
		perror("log file");
		exit(99);
	}
	close(fd);

	/* the proxy chooses 0x80: JWT length 0, then the location ID */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, AUTH_TRUSTED_LOC1, sizeof(AUTH_TRUSTED_LOC1));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, reply_ok, sizeof(reply_ok));
	rc = trusted_case(&p, "LOC1", &o);
	is_int(rc, SOCKS5_OK, "no token, proxy chose 0x80: handshake ok");
	is_int(trusted_method, 0x80, "no token, 0x80: socks5_connect_method says 0x80");
	is_str(p.why, "", "no token, 0x80: greeting 05 02 80 00, auth 01 00000000 08 TE9DMQ==, CONNECT");
	ok(p.gotlen == sizeof(GREETING_TRUSTED) + sizeof(AUTH_TRUSTED_LOC1) + sizeof(CONNECT_NAME),
	   "no token, 0x80: nothing else was sent");

	/* 0x80 without a location ID: L = 0 */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, auth_noloc, sizeof(auth_noloc));
	peer_add(&p, PEER_SEND, AUTH_OK, sizeof(AUTH_OK));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, reply_ok, sizeof(reply_ok));
	rc = trusted_case(&p, NULL, &o);
	ok(rc == SOCKS5_OK && p.why[0] == 0, "no token, no location ID, 0x80: auth 01 00000000 00");

	/* the proxy chooses 0x00: CONNECT right after the method reply */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
	peer_add(&p, PEER_SEND, METHOD_NOAUTH, sizeof(METHOD_NOAUTH));
	peer_add(&p, PEER_EXPECT, CONNECT_NAME, sizeof(CONNECT_NAME));
	peer_add(&p, PEER_SEND, reply_ok, sizeof(reply_ok));
	rc = trusted_case(&p, "LOC1", &o);
	is_int(rc, SOCKS5_OK, "no token, proxy chose 0x00: handshake ok");
	is_int(trusted_method, 0x00, "no token, 0x00: socks5_connect_method says 0x00");
	is_str(p.why, "", "no token, 0x00: no auth request, CONNECT right after the method reply");
	ok(p.gotlen == sizeof(GREETING_TRUSTED) + sizeof(CONNECT_NAME),
	   "no token, 0x00: nothing else was sent");
	has_str(file_text(logpath), "cannot receive the Cloud Connector location ID \"LOC1\"",
		"no token, 0x00 with a location ID: a warning says the proxy cannot receive it");

	/* 0xFF: neither method is acceptable */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
	peer_add(&p, PEER_SEND, method_ff, sizeof(method_ff));
	rc = trusted_case(&p, "LOC1", &o);
	is_int(rc, SOCKS5_FAIL, "no token, method FF: fails (no token to renew)");
	is_int(trusted_method, -1, "no token, method FF: no method chosen");
	ok(o.cls == DSN_DEFER && strcmp(o.status, "4.7.0") == 0, "no token, method FF: defers 4.7.0");
	is_str(o.text, "proxy refused to work without a token: it accepted neither method 0x80 "
	       "without a JWT nor 0x00 (method reply 05 ff); it needs proxy_authentication = "
	       "token and a connectivity binding", "no token, method FF: text");
	ok(p.gotlen == sizeof(GREETING_TRUSTED), "no token, method FF: nothing sent after the greeting");

	/* a method that was not offered */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
	peer_add(&p, PEER_SEND, method_02, sizeof(method_02));
	rc = trusted_case(&p, "LOC1", &o);
	ok(rc == SOCKS5_FAIL && strcmp(o.status, "4.7.0") == 0, "no token, method 02: 4.7.0");
	is_str(o.text, "proxy chose method 0x02, which was not offered (method reply 05 02)",
	       "no token, method 02: text");

	/* 0x80, then the empty JWT is refused */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING_TRUSTED, sizeof(GREETING_TRUSTED));
	peer_add(&p, PEER_SEND, METHOD_OK, sizeof(METHOD_OK));
	peer_add(&p, PEER_EXPECT, AUTH_TRUSTED_LOC1, sizeof(AUTH_TRUSTED_LOC1));
	peer_add(&p, PEER_SEND, auth_bad, sizeof(auth_bad));
	rc = trusted_case(&p, "LOC1", &o);
	is_int(rc, SOCKS5_FAIL, "no token, auth 01 01: fails, no retry with a new token");
	ok(o.cls == DSN_DEFER && strcmp(o.status, "4.7.0") == 0, "no token, auth 01 01: 4.7.0");
	has_str(o.text, "proxy authentication without a token rejected (auth reply 01 01)",
		"no token, auth 01 01: text");

	/* with a token the greeting stays 05 01 80, and the debug log has no token */
	peer_free(&p);
	peer_add(&p, PEER_EXPECT, GREETING, sizeof(GREETING));
	peer_add(&p, PEER_SEND, METHOD_NOAUTH, sizeof(METHOD_NOAUTH));
	fail_case("token, proxy chose 0x00", &p, 3000, SOCKS5_FAIL, "4.7.0",
		  "proxy refused authentication method 0x80 (method reply 05 00)");
	has_str(file_text(logpath), "no token (trusted mode), JWT length 0",
		"debug log: the trusted auth step");
	ok(!log_has(logpath, "eyJ"), "debug log: no token");
	log_close();
	unlink(logpath);
	peer_free(&p);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	fixtures_init();
	test_auth_request();
	test_connect_request();
	test_reply_length();
	test_success();
	test_rep_codes(0);
	test_rep_codes(1);
	test_failures();
	test_handshake_deadline();
	test_bad_input();
	test_trusted();
	return tap_done();
}
