/*
 * test-destination - MAIL destination properties (OnPremise, Internet,
 * smtps, both sender spellings, bad Type, no host, bad port, CR/LF
 * injection), the destinations file in both shapes, and the lookup chain
 * against a tiny in-process HTTP server standing in for the token service
 * and the Destination Service (so oauth.c and http.c run too).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "cache.h"
#include "conn.h"
#include "destination.h"
#include "http.h"
#include "log.h"
#include "oauth.h"
#include "routes.h"
#include "tap.h"
#include "../lib/files.h"
#include "../lib/peer.h"

static char dir[] = "/tmp/btprelay-test-destination-XXXXXX";
static char file[512];

static const char onprem_json[] =
	"{\"Name\":\"MAIL_ONPREM\",\"Type\":\"MAIL\",\"ProxyType\":\"OnPremise\","
	"\"Authentication\":\"BasicAuthentication\",\"mail.user\":\"relayuser\","
	"\"mail.password\":\"s3cret\",\"mail.smtp.host\":\"mail.corp.internal\","
	"\"mail.smtp.port\":\"25\",\"mail.smtp.auth\":\"true\","
	"\"mail.transport.protocol\":\"smtp\",\"mail.smtp.from\":\"noreply@corp.example\","
	"\"CloudConnectorLocationId\":\"LOC1\",\"mail.smtp.starttls.enable\":\"true\","
	"\"mail.smtp.starttls.required\":\"FALSE\"}";

/* from_text - dest_from_properties on a JSON text */
static int from_text(const char *text, struct mail_destination *d, struct outcome *o)
{
	json_t *props = json_loads(text, 0, NULL);
	int rc;

	if (props == NULL) {
		printf("# bad test JSON: %s\n", text);
		exit(2);
	}
	rc = dest_from_properties(props, "test", d, o);
	json_decref(props);
	return rc;
}

static void test_properties(void)
{
	struct mail_destination d;
	struct outcome o;

	if (!ok(from_text(onprem_json, &d, &o) == 0, "OnPremise destination"))
		printf("# %s\n", o.text);
	is_str(d.name, "MAIL_ONPREM", "name");
	is_str(d.source, "test", "source");
	is_int(d.onpremise, 1, "OnPremise");
	is_str(d.authentication, "BasicAuthentication", "authentication");
	is_str(d.host, "mail.corp.internal", "host");
	is_int(d.port, 25, "port");
	is_int(d.smtps, 0, "not smtps");
	is_str(d.user, "relayuser", "user");
	is_str(d.password, "s3cret", "password");
	is_int(d.auth, 1, "mail.smtp.auth true");
	is_str(d.from, "noreply@corp.example", "mail.smtp.from");
	is_str(d.location_id, "LOC1", "location id");
	is_int(d.starttls_enable, 1, "starttls.enable");
	is_int(d.starttls_required, 0, "starttls.required FALSE");
	dest_free(&d);
	dest_free(&d);
	ok(d.password == NULL && d.host == NULL, "dest_free twice is safe");

	ok(from_text("{\"Name\":\"MAIL_NET\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"smtp.example\","
		     "\"mail.smtp.port\":\"587\",\"mail.from\":\"a@example\","
		     "\"CloudConnectorLocationId\":\"\",\"mail.smtp.auth\":\"false\"}", &d, &o) == 0,
	   "Internet destination (no ProxyType)");
	is_int(d.onpremise, 0, "no ProxyType: Internet");
	is_int(d.port, 587, "port 587");
	is_str(d.from, "a@example", "mail.from spelling");
	ok(d.location_id == NULL, "empty location id: none");
	ok(d.user == NULL && d.password == NULL, "no credentials");
	is_int(d.auth, 0, "mail.smtp.auth false");
	is_int(d.starttls_enable, -1, "starttls.enable not set");
	ok(d.authentication == NULL, "no Authentication");
	dest_free(&d);

	ok(from_text("{\"Name\":\"M\",\"Type\":\"MAIL\",\"ProxyType\":\"Internet\","
		     "\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\","
		     "\"mail.from\":\"old@example\",\"mail.smtp.from\":\"new@example\"}", &d, &o) == 0,
	   "both sender spellings");
	is_str(d.from, "new@example", "mail.smtp.from wins over mail.from");
	is_int(d.auth, -1, "mail.smtp.auth not set");
	dest_free(&d);

	ok(from_text("{\"Name\":\"M\",\"Type\":\"MAIL\",\"mail.transport.protocol\":\"smtps\","
		     "\"mail.smtp.host\":\"plain\",\"mail.smtp.port\":\"25\","
		     "\"mail.smtps.host\":\"secure\",\"mail.smtps.port\":\"465\"}", &d, &o) == 0,
	   "smtps destination");
	is_int(d.smtps, 1, "smtps");
	is_str(d.host, "secure", "mail.smtps.host");
	is_int(d.port, 465, "mail.smtps.port");
	dest_free(&d);

	ok(from_text("{\"Name\":\"M\",\"Type\":\"MAIL\",\"mail.transport.protocol\":\"smtps\","
		     "\"mail.smtp.host\":\"plain\",\"mail.smtp.port\":\"465\"}", &d, &o) == 0,
	   "smtps with only mail.smtp.*");
	is_str(d.host, "plain", "falls back to mail.smtp.host");
	is_int(d.port, 465, "falls back to mail.smtp.port");
	dest_free(&d);

	ok(from_text("{\"Name\":\"M\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"plain\","
		     "\"mail.smtp.port\":\"25\",\"mail.smtps.host\":\"secure\"}", &d, &o) == 0,
	   "smtp ignores mail.smtps.*");
	is_str(d.host, "plain", "mail.smtp.host for smtp");
	is_int(d.smtps, 0, "not smtps");
	dest_free(&d);

	/* the SDK's {name,type,originalProperties} shape */
	ok(from_text("{\"name\":\"MAIL_LOCAL\",\"type\":\"MAIL\",\"originalProperties\":{"
		     "\"mail.smtp.host\":\"127.0.0.1\",\"mail.smtp.port\":\"2525\"}}", &d, &o) == 0,
	   "name/type/originalProperties shape");
	is_str(d.name, "MAIL_LOCAL", "lower-case name fills Name");
	is_str(d.host, "127.0.0.1", "host from originalProperties");
	is_int(d.port, 2525, "port from originalProperties");
	dest_free(&d);
}

static void test_property_errors(void)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"HTTP\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: Type is HTTP, not MAIL" },
		{ "{\"Name\":\"MAIL_X\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: no Type (must be MAIL)" },
		{ "{\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\"}",
		  "destination in test has no Name" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: no mail.smtp.host" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: no mail.smtp.host" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.transport.protocol\":\"smtps\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: no mail.smtps.host or mail.smtp.host" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\"}",
		  "destination MAIL_X: no mail.smtp.port" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"smtp\"}",
		  "destination MAIL_X: port \"smtp\" is not a number from 1 to 65535" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"0\"}",
		  "destination MAIL_X: port \"0\" is not" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"65536\"}",
		  "destination MAIL_X: port \"65536\" is not" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"-25\"}",
		  "destination MAIL_X: port \"-25\" is not" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\" 25\"}",
		  "destination MAIL_X: port \" 25\" is not" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":25}",
		  "destination MAIL_X: value of mail.smtp.port is not a string" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\","
		  "\"mail.smtp.from\":\"a@b\\r\\nRCPT TO:<x@y>\"}",
		  "destination MAIL_X: value of mail.smtp.from contains CR, LF or NUL; refused" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\","
		  "\"mail.user\":\"u\\n\"}",
		  "destination MAIL_X: value of mail.user contains CR, LF or NUL" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\\r\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: value of mail.smtp.host contains CR, LF or NUL" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"ProxyType\":\"PrivateLink\","
		  "\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: ProxyType PrivateLink is not supported" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"ProxyType\":\"Carrier\","
		  "\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: unknown ProxyType Carrier" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\","
		  "\"mail.smtp.auth\":\"maybe\"}",
		  "destination MAIL_X: mail.smtp.auth is \"maybe\", not true or false" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\","
		  "\"mail.transport.protocol\":\"lmtp\"}",
		  "destination MAIL_X: mail.transport.protocol is lmtp (smtp or smtps)" },
		{ "{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"a b\",\"mail.smtp.port\":\"25\"}",
		  "destination MAIL_X: the relay host is not a valid host name" },
		{ "[1]", "destination in test is not a JSON object" },
	};
	struct mail_destination d;
	struct outcome o;
	json_t *props;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		props = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
		ok(props != NULL && dest_from_properties(props, "test", &d, &o) == -1,
		   "refused: %s", cases[i].want);
		json_decref(props);
		has_str(o.text, cases[i].want, "text");
		is_str(o.status, "4.3.5", "defers 4.3.5");
		is_int(o.cls, DSN_DEFER, "class defer");
		ok(d.name == NULL && d.host == NULL && d.source == NULL, "nothing left to free");
	}

	/* NUL inside a value (the Destination Service JSON may carry \u0000) */
	props = json_loads("{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\","
			   "\"mail.smtp.port\":\"25\"}", 0, NULL);
	json_object_set_new(props, "mail.password", json_stringn("a\0b", 3));
	ok(dest_from_properties(props, "test", &d, &o) == -1, "NUL in a value refused");
	has_str(o.text, "value of mail.password contains CR, LF or NUL", "NUL: text");
	json_decref(props);

	/* the password never appears in a text */
	props = json_loads("{\"Name\":\"MAIL_X\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"h\","
			   "\"mail.smtp.port\":\"x\",\"mail.password\":\"pw\\r\\nsecret\"}", 0, NULL);
	ok(dest_from_properties(props, "test", &d, &o) == -1, "bad password refused");
	ok(strstr(o.text, "secret") == NULL, "without quoting it");
	json_decref(props);
}

static void test_file(struct config *cfg)
{
	struct mail_destination d;
	struct bindings b;
	struct outcome o;
	char want[800], source[600];

	memset(&b, 0, sizeof(b));
	free(cfg->destinations_file);
	cfg->destinations_file = strdup(file);
	snprintf(source, sizeof(source), "destinations file %s", file);
	write_file(file, "[{\"name\":\"MAIL_LOCAL\",\"type\":\"MAIL\",\"originalProperties\":{"
		   "\"mail.smtp.host\":\"127.0.0.1\",\"mail.smtp.port\":\"2525\"}},\n"
		   "{\"Name\":\"MAIL_ONPREM\",\"Type\":\"MAIL\",\"ProxyType\":\"OnPremise\","
		   "\"mail.smtp.host\":\"mail.corp.internal\",\"mail.smtp.port\":\"25\","
		   "\"mail.user\":\"u\",\"mail.password\":\"p\"},\n"
		   "{\"name\":\"MAIL_BAD\",\"type\":\"HTTP\",\"originalProperties\":{}},\n"
		   "42]", 0600);

	if (!ok(dest_resolve(cfg, &b, "MAIL_LOCAL", &d, &o) == 0, "file: SDK shape found"))
		printf("# %s\n", o.text);
	is_str(d.name, "MAIL_LOCAL", "file: name");
	is_str(d.source, source, "file: source names the file");
	is_int(d.port, 2525, "file: port");
	dest_free(&d);

	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "file: raw properties found");
	is_int(d.onpremise, 1, "file: OnPremise");
	is_str(d.password, "p", "file: password");
	dest_free(&d);

	ok(dest_resolve(cfg, &b, "MAIL_BAD", &d, &o) == -1, "file: wrong type refused");
	has_str(o.text, "destination MAIL_BAD: Type is HTTP, not MAIL", "file: says why");

	ok(dest_resolve(cfg, &b, "MAIL_X", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "file: not found");
	snprintf(want, sizeof(want), "destination MAIL_X not found (destinations file %s, "
		 "no Destination Service binding)", file);
	is_str(o.text, want, "file: not-found text");
	is_str(o.status, "4.3.5", "not found defers 4.3.5");

	ok(dest_resolve(cfg, &b, "mail_local", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "names are case-sensitive");

	ok(dest_resolve(cfg, &b, "MAIL\r\nX", &d, &o) == -1, "a name with CR LF refused");
	has_str(o.text, "\"MAIL??X\" is not a valid destination name", "name shown safely");
	ok(dest_resolve(cfg, &b, "", &d, &o) == -1, "an empty name refused");

	chmod(file, 0644);
	ok(dest_resolve(cfg, &b, "MAIL_LOCAL", &d, &o) == -1, "world-readable file refused");
	has_str(o.text, file, "refusal names the file");
	has_str(o.text, "other users", "refusal says why");

	write_file(file, "[\n{\"Name\": \"A\",\n \"mail.password\": \"x\\q\"}]", 0600);
	ok(dest_resolve(cfg, &b, "A", &d, &o) == -1, "bad JSON refused");
	snprintf(want, sizeof(want), "destinations file %s: bad JSON at line 3", file);
	has_str(o.text, want, "bad JSON: file and line");

	write_file(file, "{\"Name\":\"A\"}", 0600);
	ok(dest_resolve(cfg, &b, "A", &d, &o) == -1, "an object, not an array: refused");
	has_str(o.text, "not a JSON array", "says so");

	unlink(file);
	ok(dest_resolve(cfg, &b, "A", &d, &o) == -1, "missing destinations file: error");
	snprintf(want, sizeof(want), "destinations file %s: No such file or directory", file);
	is_str(o.text, want, "missing file named");

	free(cfg->destinations_file);
	cfg->destinations_file = strdup("");
	ok(dest_resolve(cfg, &b, "MAIL_X", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "no source at all: not found");
	is_str(o.text, "destination MAIL_X not found (no destinations file, no Destination "
	       "Service binding)", "no source: text");
}

/*
 * The fake services: one forked process per connection, answering
 * HTTP/1.1 with Connection: close, with counters and switches in shared
 * memory (struct fake_state). Token: 200 for client_secret=good-secret in
 * the form, else 401; the token is tok123
 * for the provider (tok456 once tok123 is revoked), tok-SUB when the Host
 * is SUB.localhost, tok-zid-ID with X-zid: ID. Find: needs a token it
 * knows and $skipTokenRetrieval=true (but for MAIL_OAUTH); the provider
 * has MAIL_ONPREM, MAIL_OAUTH, MAIL_OAUTH_ERR, MAIL_FLAKY (503 twice),
 * MAIL_500, MAIL_403, MAIL_NOCONF, MAIL_SLOW (never answers), "MAIL SPACE";
 * subscribers have MAIL_SUB; anything else is 404. down = 1 makes every
 * Find answer 500, down = 2 makes it answer 404. The lists of the routes
 * (instanceDestinations, subaccountDestinations) are empty, for a token
 * Find takes.
 */
struct fake_state {
	int token_requests;
	int find_requests;
	int list_requests;
	int flaky;
	int revoked;		/* tok123 is refused by Find, tok456 is issued instead */
	int down;
	int expires_in;		/* of issued tokens; 0 = 43199 */
	char expires_json[32];	/* when set: the expires_in of issued tokens, as JSON */
	char auth_expires_json[32];	/* MAIL_OAUTH's authTokens expires_in; "" = "3600" */
	char last_zid[64];	/* X-zid of the last token request */
	char last_find_token[128];
};
static struct fake_state *fs;
static pid_t server_pid;
static unsigned server_port;

/* header_value - the value of a request header into buf, "" when absent */
static const char *header_value(const char *req, const char *name, char *buf, size_t size)
{
	const char *p = strcasestr(req, name);
	size_t n;

	buf[0] = '\0';
	if (p == NULL)
		return buf;
	p += strlen(name);
	while (*p == ' ')
		p++;
	n = strcspn(p, "\r\n");
	if (n >= size)
		n = size - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

/* serve_token - the token service */
static void serve_token(const char *req, const char **status, const char **body)
{
	static char ok_body[512];
	char host[128], zid[64], token[96];

	__atomic_fetch_add(&fs->token_requests, 1, __ATOMIC_SEQ_CST);
	header_value(req, "\r\nHost:", host, sizeof(host));
	header_value(req, "\r\nX-zid:", zid, sizeof(zid));
	snprintf(fs->last_zid, sizeof(fs->last_zid), "%s", zid);
	if (strstr(req, "client_secret=good-secret") != NULL) {
		if (zid[0] != '\0')
			snprintf(token, sizeof(token), "tok-zid-%s", zid);
		else if (strncmp(host, "prov.", 5) != 0 && strstr(host, ".localhost") != NULL)
			snprintf(token, sizeof(token), "tok-%.*s", (int)strcspn(host, "."), host);
		else
			snprintf(token, sizeof(token), "%s", fs->revoked ? "tok456" : "tok123");
		snprintf(ok_body, sizeof(ok_body), "{\"access_token\":\"%s\",\"token_type\":"
			 "\"bearer\",\"expires_in\":%d}", token,
			 fs->expires_in ? fs->expires_in : 43199);
		if (fs->expires_json[0])
			snprintf(ok_body, sizeof(ok_body), "{\"access_token\":\"%s\",\"token_type\":"
				 "\"bearer\",\"expires_in\":%s}", token, fs->expires_json);
		*status = "200 OK";
		*body = ok_body;
	} else {
		*status = "401 Unauthorized";
		*body = "{\"error\":\"unauthorized\",\"error_description\":\"Bad credentials\"}";
	}
}

/* the Content of a certificates[] entry: base64 of a short PEM file, wrapped as files are */
#define CERT_B64_1 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VS"
#define CERT_B64_2 "VElGSUNBVEUtLS0tLQo="
#define CERT_B64 CERT_B64_1 CERT_B64_2

/*
 * serve_certs - Find answers with certificates[]: MAIL_CERTS (two good
 * ones, the first wrapped), MAIL_CERT_64K (exactly 64 KiB decoded),
 * MAIL_CERT_BIG (two bytes over), MAIL_CERT_BAD64, MAIL_CERT_MANY
 * (17), MAIL_CERT_NOCONTENT, MAIL_CERT_NOTARRAY, MAIL_CERT_CTRL (a Name with
 * a control character), MAIL_CERT_NULL (certificates: null)
 */
static int serve_certs(const char *name, const char **status, const char **body)
{
	static char found[100000];
	size_t n = strcspn(name, "? "), len;
	char dest[64];
	int i;

	snprintf(dest, sizeof(dest), "%.*s", (int)(n < 63 ? n : 63), name);
	len = (size_t)snprintf(found, sizeof(found), "{\"destinationConfiguration\":{\"Name\":"
			       "\"%s\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"c\","
			       "\"mail.smtp.port\":\"25\"},\"certificates\":", dest);
	*status = "200 OK";
	*body = found;
	if (strcmp(dest, "MAIL_CERTS") == 0) {
		snprintf(found + len, sizeof(found) - len, "[{\"Name\":\"relay-ca.pem\",\"Type\":"
			 "\"CERTIFICATE\",\"Content\":\"%s\\r\\n%s\\n\"},{\"Name\":\"b.der\","
			 "\"Type\":\"CERTIFICATE\",\"Content\":\"AAEC\"}]}", CERT_B64_1,
			 CERT_B64_2);
	} else if (strcmp(dest, "MAIL_CERT_64K") == 0 || strcmp(dest, "MAIL_CERT_BIG") == 0) {
		/* 87384 base64 characters: 65536 bytes with "==", 65538 without */
		len += (size_t)snprintf(found + len, sizeof(found) - len, "[{\"Name\":\"%s\","
					"\"Content\":\"", dest + 10);
		memset(found + len, 'A', 87384);
		if (strcmp(dest, "MAIL_CERT_64K") == 0)
			memcpy(found + len + 87382, "==", 2);
		len += 87384;
		snprintf(found + len, sizeof(found) - len, "\"}]}");
	} else if (strcmp(dest, "MAIL_CERT_BAD64") == 0) {
		snprintf(found + len, sizeof(found) - len, "[{\"Name\":\"good.pem\",\"Content\":"
			 "\"%s\"},{\"Name\":\"bad.pem\",\"Type\":\"CERTIFICATE\",\"Content\":"
			 "\"not*base64\"}]}", CERT_B64);
	} else if (strcmp(dest, "MAIL_CERT_MANY") == 0) {
		len += (size_t)snprintf(found + len, sizeof(found) - len, "[");
		for (i = 0; i < 17; i++)
			len += (size_t)snprintf(found + len, sizeof(found) - len,
						"%s{\"Name\":\"c%d.pem\",\"Content\":\"AAEC\"}",
						i ? "," : "", i);
		snprintf(found + len, sizeof(found) - len, "]}");
	} else if (strcmp(dest, "MAIL_CERT_NOCONTENT") == 0) {
		snprintf(found + len, sizeof(found) - len, "[{\"Name\":\"x.pem\",\"Type\":"
			 "\"CERTIFICATE\"}]}");
	} else if (strcmp(dest, "MAIL_CERT_NOTARRAY") == 0) {
		snprintf(found + len, sizeof(found) - len, "{\"Name\":\"x.pem\"}}");
	} else if (strcmp(dest, "MAIL_CERT_CTRL") == 0) {
		snprintf(found + len, sizeof(found) - len, "[{\"Name\":\"x\\u0001.pem\","
			 "\"Content\":\"AAEC\"}]}");
	} else if (strcmp(dest, "MAIL_CERT_NULL") == 0) {
		snprintf(found + len, sizeof(found) - len, "null}");
	} else {
		*status = "404 Not Found";
		*body = "{}";
	}
	return 1;
}

/* serve_find - the Destination Service; returns 0 when the connection must just close */
static int serve_find(const char *req, const char **status, const char **body)
{
	static char found[4096];
	const char *name = req + 52;
	char auth[128];
	int skip = strstr(req, "?$skipTokenRetrieval=true ") != NULL;
	int provider, subscriber;

	__atomic_fetch_add(&fs->find_requests, 1, __ATOMIC_SEQ_CST);
	header_value(req, "\r\nAuthorization: Bearer", auth, sizeof(auth));
	snprintf(fs->last_find_token, sizeof(fs->last_find_token), "%s", auth);
	provider = (strcmp(auth, "tok123") == 0 && !fs->revoked) || strcmp(auth, "tok456") == 0;
	subscriber = strncmp(auth, "tok-", 4) == 0;
	if (!provider && !subscriber) {
		*status = "401 Unauthorized";
		*body = "{\"ErrorMessage\":\"bad token\"}";
	} else if (!skip && strncmp(name, "MAIL_OAUTH", 10) != 0) {
		*status = "400 Bad Request";
		*body = "{\"ErrorMessage\":\"test: $skipTokenRetrieval=true expected\"}";
	} else if (fs->down == 1) {
		*status = "500 Internal Server Error";
		*body = "{\"ErrorMessage\":\"down\"}";
	} else if (fs->down == 2) {
		/* the default 404 */
	} else if (subscriber) {
		if (strncmp(name, "MAIL_SUB?", 9) == 0 || strncmp(name, "MAIL_SUB ", 9) == 0) {
			*status = "200 OK";
			*body = "{\"owner\":{\"SubaccountId\":\"sub\",\"InstanceId\":null},"
				"\"destinationConfiguration\":{\"Name\":\"MAIL_SUB\",\"Type\":\"MAIL\","
				"\"ProxyType\":\"OnPremise\",\"mail.smtp.host\":\"sub.corp.internal\","
				"\"mail.smtp.port\":\"25\"}}";
		}
	} else if (strncmp(name, "MAIL_ONPREM?", 12) == 0) {
		*status = "200 OK";
		snprintf(found, sizeof(found), "{\"owner\":{\"SubaccountId\":\"x\","
			 "\"InstanceId\":null},\"destinationConfiguration\":%s}", onprem_json);
		*body = found;
	} else if (strncmp(name, "MAIL_OAUTH ", 11) == 0 || strncmp(name, "MAIL_OAUTH?", 11) == 0) {
		*status = "200 OK";
		snprintf(found, sizeof(found), "{\"destinationConfiguration\":{\"Name\":"
			 "\"MAIL_OAUTH\",\"Type\":\"MAIL\",\"Authentication\":"
			 "\"OAuth2ClientCredentials\",\"mail.smtp.host\":\"o\",\"mail.smtp.port\":"
			 "\"587\",\"mail.user\":\"u@o\"},\"authTokens\":[{\"type\":\"Bearer\","
			 "\"value\":\"relay-token\",\"http_header\":{\"key\":\"Authorization\","
			 "\"value\":\"Bearer relay-token\"},\"expires_in\":%s}]}",
			 fs->auth_expires_json[0] ? fs->auth_expires_json : "\"3600\"");
		*body = skip ? "{\"destinationConfiguration\":{\"Name\":\"MAIL_OAUTH\",\"Type\":\"MAIL\","
			"\"Authentication\":\"OAuth2ClientCredentials\",\"mail.smtp.host\":\"o\","
			"\"mail.smtp.port\":\"587\",\"mail.user\":\"u@o\"}}" : found;
	} else if (strncmp(name, "MAIL_OAUTH_ERR", 14) == 0) {
		*status = "200 OK";
		*body = "{\"destinationConfiguration\":{\"Name\":\"MAIL_OAUTH_ERR\",\"Type\":\"MAIL\","
			"\"Authentication\":\"OAuth2ClientCredentials\",\"mail.smtp.host\":\"o\","
			"\"mail.smtp.port\":\"587\"},\"authTokens\":[{\"type\":\"\",\"value\":\"\","
			"\"error\":\"Retrieval of OAuthToken failed due to: 401 Unauthorized\"}]}";
	} else if (strncmp(name, "MAIL_FLAKY?", 11) == 0) {
		if (__atomic_fetch_add(&fs->flaky, 1, __ATOMIC_SEQ_CST) < 2) {
			*status = "503 Service Unavailable";
			*body = "{\"ErrorMessage\":\"busy\"}";
		} else {
			*status = "200 OK";
			*body = "{\"destinationConfiguration\":{\"Name\":\"MAIL_FLAKY\",\"Type\":\"MAIL\","
				"\"mail.smtp.host\":\"f\",\"mail.smtp.port\":\"25\"}}";
		}
	} else if (strncmp(name, "MAIL_500?", 9) == 0) {
		*status = "500 Internal Server Error";
		*body = "{\"ErrorMessage\":\"boom\"}";
	} else if (strncmp(name, "MAIL_403?", 9) == 0) {
		*status = "403 Forbidden";
		*body = "{}";
	} else if (strncmp(name, "MAIL_NOCONF?", 12) == 0) {
		*status = "200 OK";
		*body = "{\"owner\":{}}";
	} else if (strncmp(name, "MAIL_SLOW?", 10) == 0) {
		sleep(3);
		return 0;
	} else if (strncmp(name, "MAIL_CERT", 9) == 0) {
		return serve_certs(name, status, body);
	} else if (strncmp(name, "MAIL%20SPACE?", 13) == 0) {
		*status = "200 OK";
		*body = "{\"destinationConfiguration\":{\"Name\":\"MAIL SPACE\",\"Type\":\"MAIL\","
			"\"mail.smtp.host\":\"h\",\"mail.smtp.port\":\"25\"}}";
	}
	return 1;
}

/* serve_list - one list of the routes: [] with a provider token Find takes, else 401 */
static void serve_list(const char *req, const char **status, const char **body)
{
	char auth[128];

	__atomic_fetch_add(&fs->list_requests, 1, __ATOMIC_SEQ_CST);
	header_value(req, "\r\nAuthorization: Bearer", auth, sizeof(auth));
	snprintf(fs->last_find_token, sizeof(fs->last_find_token), "%s", auth);
	if ((strcmp(auth, "tok123") == 0 && !fs->revoked) || strcmp(auth, "tok456") == 0) {
		*status = "200 OK";
		*body = "[]";
	} else {
		*status = "401 Unauthorized";
		*body = "{\"ErrorMessage\":\"bad token\"}";
	}
}

/* serve_one - read one request, answer it */
static void serve_one(int fd)
{
	static char resp[128 * 1024];
	char req[16384];
	const char *status = "404 Not Found", *body = "{\"ErrorMessage\":\"Configuration with "
		"the specified name was not found\"}";

	if (peer_http_read(fd, req, sizeof(req)) < 0)
		return;
	if (strncmp(req, "POST /auth/oauth/token ", 23) == 0)
		serve_token(req, &status, &body);
	else if (strncmp(req, "GET /dest/destination-configuration/v1/destinations/", 52) == 0
		 && !serve_find(req, &status, &body))
		return;
	else if (strstr(req, "GET /dest/destination-configuration/v1/instanceDestinations ") == req
		 || strstr(req, "GET /dest/destination-configuration/v1/subaccountDestinations ") == req)
		serve_list(req, &status, &body);
	snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", status, strlen(body), body);
	if (write(fd, resp, strlen(resp)) < 0)
		return;
}

/* server_start - listen on 127.0.0.1, fork the answering process */
static int server_start(void)
{
	int lfd, fd;

	if ((lfd = peer_listen(16, &server_port)) < 0)
		return -1;
	fflush(stdout);
	if ((server_pid = fork()) < 0)
		return -1;
	if (server_pid == 0) {
		signal(SIGPIPE, SIG_IGN);
		/* one process per connection: a slow answer must not hold up the next test */
		signal(SIGCHLD, SIG_IGN);
		/* a lingering slow answerer must not hold the TAP output open */
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(1);
		for (;;) {
			if ((fd = accept(lfd, NULL, NULL)) < 0)
				continue;
			if (fork() == 0) {
				serve_one(fd);
				_exit(0);
			}
			close(fd);
		}
	}
	close(lfd);
	return 0;
}

static void test_service(struct config *cfg)
{
	struct mail_destination d;
	struct bindings b;
	struct outcome o;
	char tokurl[128], uri[128], want[800];

	memset(&b, 0, sizeof(b));
	snprintf(tokurl, sizeof(tokurl), "http://127.0.0.1:%u/auth", server_port);
	snprintf(uri, sizeof(uri), "http://127.0.0.1:%u/dest/", server_port);
	b.have_destination = 1;
	b.destination.token_url = tokurl;
	b.destination.client_id = "sb-dest";
	b.destination.client_secret = "good-secret";
	b.destination_uri = uri;
	free(cfg->destinations_file);
	cfg->destinations_file = strdup("");
	cfg->http_timeout = 1;
	cfg->http_retries = 0;		/* retries have their own test */

	if (!ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "found in the service"))
		printf("# %s\n", o.text);
	is_str(d.source, "Destination Service", "source");
	is_str(d.host, "mail.corp.internal", "host from the service");
	is_str(d.location_id, "LOC1", "location from the service");
	dest_free(&d);

	ok(dest_resolve(cfg, &b, "MAIL SPACE", &d, &o) == 0, "name is URL-encoded");
	dest_free(&d);

	ok(dest_resolve(cfg, &b, "MAIL_NONE", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "404");
	is_str(o.text, "destination MAIL_NONE not found in the Destination Service", "404 text");
	is_str(o.status, "4.3.5", "404 defers 4.3.5");

	ok(dest_resolve(cfg, &b, "MAIL_500", &d, &o) == -1, "500");
	snprintf(want, sizeof(want), "Destination Service http://127.0.0.1:%u/dest: find MAIL_500: "
		 "HTTP 500 (boom)", server_port);
	is_str(o.text, want, "500 text");
	is_str(o.status, "4.4.3", "500 defers 4.4.3");

	ok(dest_resolve(cfg, &b, "MAIL_403", &d, &o) == -1, "403");
	is_str(o.status, "4.7.0", "403 defers 4.7.0");

	ok(dest_resolve(cfg, &b, "MAIL_NOCONF", &d, &o) == -1, "200 without a configuration");
	is_str(o.status, "4.4.3", "malformed response defers 4.4.3");

	ok(dest_resolve(cfg, &b, "MAIL_SLOW", &d, &o) == -1, "service too slow");
	has_str(o.text, "timed out after 1 s", "timeout text");
	is_str(o.status, "4.4.3", "timeout defers 4.4.3");

	b.destination.client_secret = "bad-secret";
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == -1, "token refused");
	has_str(o.text, "destination token service", "the token step is named");
	is_str(o.status, "4.7.0", "token refusal defers 4.7.0");
	b.destination.client_secret = "good-secret";

	/* the file first, then the service */
	free(cfg->destinations_file);
	cfg->destinations_file = strdup(file);
	write_file(file, "[{\"Name\":\"MAIL_ONPREM\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"from-file\","
		   "\"mail.smtp.port\":\"25\"}]", 0600);
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "file wins over the service");
	is_str(d.host, "from-file", "host from the file");
	dest_free(&d);
	ok(dest_resolve(cfg, &b, "MAIL_403", &d, &o) == -1, "not in the file: service asked");
	is_str(o.status, "4.7.0", "the service's answer");
	ok(dest_resolve(cfg, &b, "MAIL_NONE", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "in neither");
	snprintf(want, sizeof(want), "destination MAIL_NONE not found in the Destination Service "
		 "nor in destinations file %s", file);
	is_str(o.text, want, "in neither: text");
	unlink(file);
}

static char cachedir[600], logfile[600];

/* log_reset - empty the debug log */
static void log_reset(void)
{
	if (truncate(logfile, 0) < 0)
		perror(logfile);
}

/* use_cache - the test cache (emptied) or none */
static void use_cache(struct config *cfg, int on)
{
	struct cache c;

	free(cfg->cache_dir);
	cfg->cache_dir = strdup(on ? cachedir : "");
	if (on && cache_open(&c, cachedir) == 0) {
		cache_clear(&c);
		cache_close(&c);
	}
}

/* drop_fail_notes - forget remembered failures, as if their few seconds had passed */
static void drop_fail_notes(void)
{
	struct dirent **names;
	char path[1200];
	int i, n = scandir(cachedir, &names, NULL, alphasort);

	for (i = 0; i < n; i++) {
		size_t len = strlen(names[i]->d_name);

		if (len > 5 && strcmp(names[i]->d_name + len - 5, ".fail") == 0) {
			snprintf(path, sizeof(path), "%s/%s", cachedir, names[i]->d_name);
			unlink(path);
		}
		free(names[i]);
	}
	if (n >= 0)
		free(names);
}

/* plant - replace the content of the one cache entry whose name starts with prefix */
static int plant(const char *prefix, const char *data)
{
	struct dirent **names;
	char path[1200], text[2048];
	int i, n = scandir(cachedir, &names, NULL, alphasort), done = 0;
	FILE *fp;

	for (i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		size_t len = strlen(name);

		if (!done && strncmp(name, prefix, strlen(prefix)) == 0 && len > 5
		    && strcmp(name + len - 5, ".json") == 0) {
			snprintf(path, sizeof(path), "%s/%s", cachedir, name);
			snprintf(text, sizeof(text), "{\"v\":1,\"stored_at\":%ld,\"expires_at\":%ld,"
				 "\"data\":%s}", (long)time(NULL), (long)time(NULL) + 1000, data);
			if ((fp = fopen(path, "w")) != NULL) {
				fputs(text, fp);
				fclose(fp);
				done = 1;
			}
		}
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return done;
}

/* bind_server - bindings of both services pointing at the fake server */
static void bind_server(struct bindings *b, char *tokurl, char *uri, size_t size)
{
	memset(b, 0, sizeof(*b));
	snprintf(tokurl, size, "http://prov.localhost:%u/auth", server_port);
	snprintf(uri, size, "http://127.0.0.1:%u/dest/", server_port);
	b->have_destination = 1;
	b->destination.token_url = tokurl;
	b->destination.client_id = "sb-dest";
	b->destination.client_secret = "good-secret";
	b->destination_uri = uri;
	b->have_connectivity = 1;
	b->connectivity.token_url = tokurl;
	b->connectivity.client_id = "sb-conn";
	b->connectivity.client_secret = "good-secret";
}

/* set_str - replace a config string */
static void set_str(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
}

/* what life_cb collects */
struct life {
	const char *kind;
	long life;
	int n;
	time_t expires_at, stale_until;	/* of the (last) entry */
	time_t token_expires_at;	/* its data's auth_token.expires_at, 0 = none */
};

/* life_cb - cache_list callback: the life of the entries of one kind */
static void life_cb(void *arg, const struct cache_item *it)
{
	struct life *l = arg;

	if (!it->note && strncmp(it->file, l->kind, strlen(l->kind)) == 0) {
		l->n++;
		l->life = (long)(it->e->expires_at - it->e->stored_at);
		l->expires_at = it->e->expires_at;
		l->stale_until = it->e->stale_until;
		l->token_expires_at = (time_t)json_integer_value(json_object_get(
			json_object_get(it->e->data, "auth_token"), "expires_at"));
	}
}

/* entry_times - the times of the (last) entry of a kind; l->life -1 when none */
static void entry_times(const char *kind, struct life *l)
{
	struct cache c;

	memset(l, 0, sizeof(*l));
	l->kind = kind;
	l->life = -1;
	if (cache_open(&c, cachedir) == 0) {
		cache_list(&c, life_cb, l);
		cache_close(&c);
	}
}

/* entry_life - expires_at - stored_at of the (last) entry of a kind, -1 when none */
static long entry_life(const char *kind, int *n)
{
	struct life l;

	entry_times(kind, &l);
	*n = l.n;
	return l.life;
}

static void test_token_cache(struct config *cfg)
{
	struct bindings b;
	struct http_options opt;
	struct oauth_token tok, other;
	struct outcome o;
	char tokurl[128], uri[128];
	long life;
	int n;

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	cfg->http_retries = 0;
	http_options_init(&opt, cfg, 0);
	use_cache(cfg, 1);
	fs->token_requests = 0;
	log_reset();
	if (!ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0,
		"cached token: first call"))
		printf("# %s\n", o.text);
	is_str(tok.access_token, "tok123", "cached token: the token");
	is_int(fs->token_requests, 1, "first call: one request");
	ok(log_has(logfile, "token cache miss: connectivity (provider)"), "\"token cache miss\" logged");
	oauth_token_free(&tok);
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0
	   && strcmp(tok.access_token, "tok123") == 0, "second call: same token");
	ok(tok.expires_at > time(NULL) + 43000, "second call: the token's own expiry");
	is_int(fs->token_requests, 1, "second call: no request");
	ok(log_has(logfile, "token cache hit: connectivity (provider)"), "\"token cache hit\" logged");
	ok(!log_has(logfile, "tok123"), "the token is never logged");
	oauth_token_free(&tok);
	life = entry_life("token-", &n);
	is_int(n, 1, "one token entry");
	ok(life >= 43199 - 300 - 2 && life <= 43199 - 300, "kept until expiry minus 300 s (%ld)",
	   life);

	ok(plant("token-", "{\"access_token\":\"not a token\",\"expires_at\":99999999999}"),
	   "a cached token planted");
	log_reset();
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0
	   && strcmp(tok.access_token, "tok123") == 0, "an unusable cached token is replaced");
	is_int(fs->token_requests, 2, "... by a new request");
	ok(log_has(logfile, "cached entry has no usable token"), "... and that is logged");
	oauth_token_free(&tok);
	ok(oauth_token_cached(cfg, &b.destination, &opt, "destination", 0, &tok, &o) == 0,
	   "another client");
	is_int(fs->token_requests, 3, "another client: its own request");
	oauth_token_free(&tok);

	/* a short-lived token: the margin is at most half its life */
	use_cache(cfg, 1);
	fs->expires_in = 20;
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0,
	   "short-lived token");
	oauth_token_free(&tok);
	life = entry_life("token-", &n);
	ok(life >= 9 && life <= 10, "20 s token kept 10 s (margin capped at half) (%ld)", life);
	fs->expires_in = 0;

	/* expires_in 2^63-1 (issue 13, defect 7): no overflow, cached, at most OAUTH_LIFETIME_MAX */
	{
		static const char *const eternal[] = { "9223372036854775807", "\"9223372036854775807\"",
			"1e300", "\"99999999999999999999999\"" };
		size_t k;
		time_t now;

		for (k = 0; k < sizeof(eternal) / sizeof(eternal[0]); k++) {
			use_cache(cfg, 1);
			snprintf(fs->expires_json, sizeof(fs->expires_json), "%s", eternal[k]);
			fs->token_requests = 0;
			now = time(NULL);
			ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0
			   && tok.expires_at >= now + OAUTH_LIFETIME_MAX
			   && tok.expires_at <= time(NULL) + OAUTH_LIFETIME_MAX,
			   "expires_in %s: the token lives OAUTH_LIFETIME_MAX (%ld from now)", eternal[k],
			   (long)(tok.expires_at - now));
			oauth_token_free(&tok);
			life = entry_life("token-", &n);
			ok(n == 1 && life > 0 && life <= OAUTH_LIFETIME_MAX,
			   "expires_in %s: cached (%ld s)", eternal[k], life);
			ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0
			   && fs->token_requests == 1, "expires_in %s: the next call is a cache hit",
			   eternal[k]);
			oauth_token_free(&tok);
		}
		fs->expires_json[0] = '\0';
	}

	/* forced refresh, and a refused token */
	use_cache(cfg, 1);
	fs->token_requests = 0;
	oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o);
	oauth_token_free(&tok);
	log_reset();
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", OAUTH_REFRESH, &tok,
			      &o) == 0, "OAUTH_REFRESH");
	is_int(fs->token_requests, 2, "OAUTH_REFRESH: fetched");
	ok(log_has(logfile, "token cache refresh: connectivity (provider)"), "\"token cache refresh\" logged");
	other.access_token = "someone-elses";
	other.expires_at = 0;
	oauth_token_reject(cfg, &b.connectivity, &opt, "connectivity", 0, &other);
	oauth_token_free(&tok);
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0
	   && fs->token_requests == 2, "rejecting another token keeps the cached one");
	oauth_token_reject(cfg, &b.connectivity, &opt, "connectivity", 0, &tok);
	oauth_token_free(&tok);
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0,
	   "after a rejection");
	is_int(fs->token_requests, 3, "after a rejection: fetched once");
	oauth_token_free(&tok);

	/* caching off */
	use_cache(cfg, 0);
	fs->token_requests = 0;
	oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o);
	oauth_token_free(&tok);
	oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o);
	oauth_token_free(&tok);
	is_int(fs->token_requests, 2, "cache_dir empty: a request per call");

	/* a failed fetch answers the requests of a burst that waited for it */
	use_cache(cfg, 1);
	b.connectivity.client_secret = "bad";
	fs->token_requests = 0;
	cache_since(cache_clock());	/* both calls below began before the failure */
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == -1,
	   "refused credentials");
	is_str(o.status, "4.7.0", "refused: 4.7.0");
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == -1,
	   "refused again");
	has_str(o.text, "HTTP 401 (unauthorized: Bad credentials)", "... the same text");
	is_int(fs->token_requests, 2, "refused twice in a row: two requests (form, then Basic)");
	cache_since(0);
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == -1,
	   "a request begun after the failure");
	is_int(fs->token_requests, 4, "... asks again (form, then Basic), the note is older");
	b.connectivity.client_secret = "good-secret";
	drop_fail_notes();
}

static void test_tenants(struct config *cfg)
{
	struct bindings b;
	struct http_options opt;
	struct oauth_token tok;
	struct mail_destination d;
	struct outcome o;
	char tokurl[128], uri[128], ipurl[128];

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	cfg->http_retries = 0;
	http_options_init(&opt, cfg, 0);
	use_cache(cfg, 1);
	fs->token_requests = 0;

	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", OAUTH_SUBSCRIBER, &tok,
			      &o) == -1, "subscriber token without a tenant: error");
	is_str(o.text, "connectivity token for a subscriber tenant, but neither tenant_subdomain "
	       "nor tenant_id is configured", "says what is missing");
	is_str(o.status, "4.3.5", "defers 4.3.5");

	set_str(&cfg->tenant_subdomain, "cust");
	if (!ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", OAUTH_SUBSCRIBER,
				   &tok, &o) == 0, "subscriber token by subdomain"))
		printf("# %s\n", o.text);
	is_str(tok.access_token, "tok-cust", "issued for the subdomain's host");
	oauth_token_free(&tok);
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", 0, &tok, &o) == 0
	   && strcmp(tok.access_token, "tok123") == 0, "the provider's token is another entry");
	oauth_token_free(&tok);
	is_int(fs->token_requests, 2, "two tenants, two requests");
	oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", OAUTH_SUBSCRIBER, &tok, &o);
	is_str(tok.access_token, "tok-cust", "subscriber token from the cache");
	is_int(fs->token_requests, 2, "... without a request");
	oauth_token_free(&tok);

	snprintf(ipurl, sizeof(ipurl), "http://127.0.0.1:%u/auth", server_port);
	b.connectivity.token_url = ipurl;
	ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", OAUTH_SUBSCRIBER, &tok,
			      &o) == -1, "subdomain with an IP address token URL: error");
	has_str(o.text, "the host has no first label to replace", "says why");
	is_str(o.status, "4.3.5", "defers 4.3.5");

	/* by tenant id: the provider's URL and X-zid */
	set_str(&cfg->tenant_subdomain, "");
	set_str(&cfg->tenant_id, "zz-9");
	if (!ok(oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity", OAUTH_SUBSCRIBER,
				   &tok, &o) == 0, "subscriber token by tenant id"))
		printf("# %s\n", o.text);
	is_str(tok.access_token, "tok-zid-zz-9", "issued for the X-zid");
	is_str(fs->last_zid, "zz-9", "X-zid header sent");
	oauth_token_free(&tok);
	b.connectivity.token_url = tokurl;

	/* the Destination Service per destination_selection */
	set_str(&cfg->tenant_id, "");
	set_str(&cfg->tenant_subdomain, "cust");
	cfg->destination_selection = DEST_SELECT_SUBSCRIBER_FIRST;
	fs->find_requests = 0;
	if (!ok(dest_resolve(cfg, &b, "MAIL_SUB", &d, &o) == 0, "subscriberFirst: the subscriber's"))
		printf("# %s\n", o.text);
	is_int(d.tenant_is_subscriber, 1, "found for the subscriber");
	is_str(d.host, "sub.corp.internal", "the subscriber's destination");
	is_str(fs->last_find_token, "tok-cust", "asked with the subscriber's token");
	is_int(fs->find_requests, 1, "one Find");
	dest_free(&d);
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "subscriberFirst: 404, then provider");
	is_int(d.tenant_is_subscriber, 0, "found for the provider");
	is_int(fs->find_requests, 2, "two Finds");
	is_str(fs->last_find_token, "tok123", "the second with the provider's token");
	dest_free(&d);
	ok(dest_resolve(cfg, &b, "MAIL_NONE", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "subscriberFirst: in neither");
	is_str(o.text, "destination MAIL_NONE not found in the Destination Service (subscriber "
	       "tenant nor provider)", "not found: both tenants named");

	cfg->destination_selection = DEST_SELECT_ALWAYS_PROVIDER;
	ok(dest_resolve(cfg, &b, "MAIL_SUB", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "alwaysProvider: not the subscriber's");
	is_str(o.text, "destination MAIL_SUB not found in the Destination Service", "404 text");
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0 && d.tenant_is_subscriber == 0,
	   "alwaysProvider: the provider's");
	dest_free(&d);

	cfg->destination_selection = DEST_SELECT_ALWAYS_SUBSCRIBER;
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND,
	   "alwaysSubscriber: no fallback to the provider");
	is_str(o.text, "destination MAIL_ONPREM not found in the Destination Service (subscriber "
	       "tenant)", "404 text names the tenant");
	ok(dest_resolve(cfg, &b, "MAIL_SUB", &d, &o) == 0 && d.tenant_is_subscriber == 1,
	   "alwaysSubscriber: the subscriber's");
	dest_free(&d);

	/* the cache key holds the tenant */
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_SUB", &d, &o) == 0 && d.cache_age >= 0,
	   "same tenant: from the cache");
	dest_free(&d);
	is_int(fs->find_requests, 0, "same tenant: no Find");
	set_str(&cfg->tenant_subdomain, "other");
	ok(dest_resolve(cfg, &b, "MAIL_SUB", &d, &o) == 0 && d.cache_age == -1,
	   "another tenant: asked again");
	is_str(fs->last_find_token, "tok-other", "with that tenant's token");
	dest_free(&d);

	set_str(&cfg->tenant_subdomain, "");
	ok(dest_resolve(cfg, &b, "MAIL_SUB", &d, &o) == -1, "alwaysSubscriber without a tenant");
	is_str(o.text, "destination_selection is alwaysSubscriber, but neither tenant_subdomain "
	       "nor tenant_id is configured", "says what is missing");
	cfg->destination_selection = DEST_SELECT_SUBSCRIBER_FIRST;
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0 && d.tenant_is_subscriber == 0,
	   "subscriberFirst without a tenant: the provider");
	dest_free(&d);
	drop_fail_notes();
}

static void test_service_cache(struct config *cfg)
{
	struct bindings b;
	struct mail_destination d;
	struct route_table t;
	struct outcome o;
	char tokurl[128], uri[128];
	time_t now;
	int cockpit = cfg->routes_cockpit;

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	cfg->http_retries = 0;
	cfg->destination_cache_ttl = 300;
	cfg->destination_stale_ttl = 3600;
	use_cache(cfg, 1);
	fs->find_requests = fs->token_requests = 0;
	log_reset();
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0 && d.cache_age == -1,
	   "first lookup: from the service");
	dest_free(&d);
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "second lookup");
	ok(d.cache_age >= 0 && d.cache_age < 5 && !d.stale, "second lookup: from the cache");
	is_str(d.password, "s3cret", "the password survives the cache");
	is_str(d.location_id, "LOC1", "so does the location");
	dest_free(&d);
	is_int(fs->find_requests, 1, "one Find for two lookups");
	is_int(fs->token_requests, 1, "one token for two lookups");
	ok(log_has(logfile, "destination cache miss: MAIL_ONPREM (subscriberFirst)"), "miss logged");
	ok(plant("destination-", "{\"properties\":{\"Name\":\"MAIL_ONPREM\",\"Type\":\"HTTP\"}}"),
	   "a cached destination planted");
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0 && d.cache_age == -1,
	   "an unusable cached destination is asked for again");
	is_str(d.host, "mail.corp.internal", "... and replaced");
	dest_free(&d);
	ok(log_has(logfile, "destination cache hit: MAIL_ONPREM (subscriberFirst)"),
	   "\"destination cache hit\" logged");
	ok(!log_has(logfile, "s3cret"), "no password in the log");

	/* TTL 0: asked every time, but kept to stand in */
	use_cache(cfg, 1);
	cfg->destination_cache_ttl = 0;
	fs->find_requests = 0;
	dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o);
	dest_free(&d);
	dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o);
	dest_free(&d);
	is_int(fs->find_requests, 2, "TTL 0: a Find per lookup");
	fs->down = 1;
	log_reset();
	if (!ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "service failing: stale entry"))
		printf("# %s\n", o.text);
	ok(d.stale && d.cache_age >= 0, "... marked stale");
	is_str(d.host, "mail.corp.internal", "... the last answer");
	dest_free(&d);
	ok(log_has(logfile, "destination cache stale: MAIL_ONPREM"), "\"destination cache stale\" logged");
	ok(log_has(logfile, "HTTP 500 (down)"), "... with the failure");
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0 && d.stale, "still failing: stale");
	dest_free(&d);
	is_int(fs->find_requests, 1, "a lookup begun after the failure asks again (the note "
	       "answers only those that waited)");
	drop_fail_notes();

	fs->down = 2;
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "404: no stale entry");
	has_str(o.text, "not found in the Destination Service", "404: not found");
	fs->down = 1;
	drop_fail_notes();
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == -1,
	   "after a 404 the old entry never stands in");
	has_str(o.text, "HTTP 500 (down)", "... the outage is reported");
	is_str(o.status, "4.4.3", "... 4.4.3");
	drop_fail_notes();

	cfg->destination_stale_ttl = 0;
	fs->down = 0;
	dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o);
	dest_free(&d);
	fs->down = 1;
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == -1, "stale TTL 0: nothing stands in");
	fs->down = 0;
	drop_fail_notes();

	/* OAuth destinations: the token comes along, the entry lives no longer than it */
	use_cache(cfg, 1);
	cfg->destination_cache_ttl = 300;
	cfg->destination_stale_ttl = 3600;
	fs->find_requests = 0;
	now = time(NULL);
	if (!ok(dest_resolve(cfg, &b, "MAIL_OAUTH", &d, &o) == 0, "OAuth2 destination"))
		printf("# %s\n", o.text);
	is_str(d.oauth_token.type, "Bearer", "token type");
	is_str(d.oauth_token.value, "relay-token", "token value");
	ok(d.oauth_token.expires_at >= now + 3600 && d.oauth_token.expires_at <= time(NULL) + 3600,
	   "token expiry from expires_in");
	ok(d.oauth_token.error == NULL, "no error");
	is_int(fs->find_requests, 2, "Find with $skipTokenRetrieval, then without");
	dest_free(&d);
	ok(d.oauth_token.value == NULL, "dest_free releases the token");
	ok(dest_resolve(cfg, &b, "MAIL_OAUTH", &d, &o) == 0 && d.cache_age >= 0
	   && strcmp(d.oauth_token.value, "relay-token") == 0, "OAuth2 destination cached with its token");
	dest_free(&d);

	/* the stale entry lives no longer than the token in it (issue 13, blind spot c) */
	{
		struct life l;

		entry_times("destination-", &l);
		ok(l.n == 1 && l.token_expires_at > 0, "OAuth2 destination entry with its token");
		ok(l.stale_until > l.expires_at && l.stale_until <= l.token_expires_at,
		   "stale_until (%ld s from expiry) capped by the token's expiry (%ld s)",
		   (long)(l.stale_until - l.expires_at), (long)(l.token_expires_at - l.expires_at));
		use_cache(cfg, 1);
		cfg->destination_cache_ttl = 0;
		dest_resolve(cfg, &b, "MAIL_OAUTH", &d, &o);
		dest_free(&d);
		entry_times("destination-", &l);
		ok(l.stale_until <= l.token_expires_at, "TTL 0: stale_until still capped by the token");
		cfg->destination_cache_ttl = 300;
	}

	/* authTokens expires_in 2^63-1 (issue 13, defect 7) */
	{
		static const char *const eternal[] = { "\"9223372036854775807\"", "9223372036854775807" };
		struct life l;
		size_t k;

		for (k = 0; k < sizeof(eternal) / sizeof(eternal[0]); k++) {
			use_cache(cfg, 1);
			snprintf(fs->auth_expires_json, sizeof(fs->auth_expires_json), "%s", eternal[k]);
			now = time(NULL);
			ok(dest_resolve(cfg, &b, "MAIL_OAUTH", &d, &o) == 0
			   && d.oauth_token.expires_at >= now + OAUTH_LIFETIME_MAX
			   && d.oauth_token.expires_at <= time(NULL) + OAUTH_LIFETIME_MAX,
			   "authTokens expires_in %s: the token lives OAUTH_LIFETIME_MAX", eternal[k]);
			dest_free(&d);
			entry_times("destination-", &l);
			ok(l.n == 1 && l.expires_at > now && l.token_expires_at > now,
			   "authTokens expires_in %s: the destination is cached", eternal[k]);
			fs->find_requests = 0;
			ok(dest_resolve(cfg, &b, "MAIL_OAUTH", &d, &o) == 0 && d.cache_age >= 0
			   && fs->find_requests == 0, "authTokens expires_in %s: a cache hit", eternal[k]);
			dest_free(&d);
		}
		fs->auth_expires_json[0] = '\0';
	}
	ok(dest_resolve(cfg, &b, "MAIL_OAUTH_ERR", &d, &o) == 0, "token retrieval failed: found");
	has_str(d.oauth_token.error, "Retrieval of OAuthToken failed", "the service's error kept");
	ok(d.oauth_token.value == NULL, "no token");
	dest_free(&d);
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_OAUTH_ERR", &d, &o) == 0 && d.cache_age == -1,
	   "a destination without its token is not cached");
	dest_free(&d);

	/* a 401 from the Destination Service: a new token, once */
	use_cache(cfg, 1);
	cfg->destination_cache_ttl = 0;		/* the token stays cached, the destination not */
	dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o);
	dest_free(&d);
	fs->revoked = 1;
	fs->token_requests = fs->find_requests = 0;
	if (!ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0, "401: new token, asked again"))
		printf("# %s\n", o.text);
	dest_free(&d);
	is_int(fs->token_requests, 1, "401: one new token");
	is_int(fs->find_requests, 2, "401: two Finds");
	is_str(fs->last_find_token, "tok456", "the second with the new token");
	fs->token_requests = fs->find_requests = 0;
	dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o);
	dest_free(&d);
	ok(fs->token_requests == 0 && fs->find_requests == 1, "the new token was cached");
	fs->revoked = 0;

	/* the routes' lists go through the same loop (dest_service_call): a 401, a new token, once */
	use_cache(cfg, 1);
	cfg->routes_cockpit = 1;
	memset(&t, 0, sizeof(t));
	dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o);	/* tok123 cached */
	dest_free(&d);
	fs->revoked = 1;
	fs->token_requests = fs->list_requests = 0;
	if (!ok(routes_collect(cfg, &b, &t, &o) == 0, "routes after a 401: listed with a new token"))
		printf("# %s\n", o.text);
	routes_free(&t);
	is_int(fs->token_requests, 1, "routes after a 401: one new token");
	is_int(fs->list_requests, 3, "routes after a 401: the instance list twice, the subaccount's once");
	is_str(fs->last_find_token, "tok456", "routes after a 401: the last with the new token");
	cfg->routes_cockpit = cockpit;
	cfg->destination_cache_ttl = 300;
}

/* cert_case - the status a certificates[] case deferred with, "" when it resolved */
static const char *cert_case(struct config *cfg, struct bindings *b, const char *name,
			     struct outcome *o)
{
	struct mail_destination d;

	if (dest_resolve(cfg, b, name, &d, o) == 0) {
		dest_free(&d);
		return "";
	}
	return o->status;
}

/* certificates[] of the Find response: parsed, bounded, checked, cached */
static void test_certificates(struct config *cfg)
{
	static const struct {
		const char *name;
		const char *text;	/* the 4.3.5 text, NULL = resolves */
	} cases[] = {
		{ "MAIL_CERT_64K", NULL },
		{ "MAIL_CERT_NULL", NULL },
		{ "MAIL_CERT_BIG", "destination MAIL_CERT_BIG: certificate BIG: larger than 64 KiB "
		  "decoded" },
		{ "MAIL_CERT_BAD64", "destination MAIL_CERT_BAD64: certificate bad.pem: Content is "
		  "not valid base64" },
		{ "MAIL_CERT_MANY", "destination MAIL_CERT_MANY: 17 certificates delivered with "
		  "it, at most 16 are accepted" },
		{ "MAIL_CERT_NOCONTENT", "destination MAIL_CERT_NOCONTENT: certificate x.pem: no "
		  "Content" },
		{ "MAIL_CERT_NOTARRAY", "destination MAIL_CERT_NOTARRAY: certificates is not an "
		  "array" },
		{ "MAIL_CERT_CTRL", "destination MAIL_CERT_CTRL: certificate x?.pem: Name too long "
		  "or with control characters" },
	};
	struct bindings b;
	struct mail_destination d;
	struct outcome o;
	struct cache_entry e;
	struct cache c;
	char tokurl[128], uri[128];
	const json_t *certs;
	size_t i;

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	cfg->http_retries = 0;
	cfg->destination_cache_ttl = 300;
	cfg->destination_stale_ttl = 3600;
	use_cache(cfg, 0);

	if (!ok(dest_resolve(cfg, &b, "MAIL_CERTS", &d, &o) == 0, "certificates[]: found"))
		printf("# %s\n", o.text);
	if (ok(d.ncertificates == 2 && d.certificates != NULL, "certificates[]: two kept")) {
		is_str(d.certificates[0].name, "relay-ca.pem", "certificates[0].Name");
		is_str(d.certificates[0].type, "CERTIFICATE", "certificates[0].Type");
		is_str(d.certificates[0].content, CERT_B64,
		       "certificates[0].Content, CR LF removed");
		is_str(d.certificates[1].name, "b.der", "certificates[1].Name");
		is_str(d.certificates[1].content, "AAEC", "certificates[1].Content");
	}
	dest_free(&d);
	ok(d.certificates == NULL && d.ncertificates == 0, "dest_free releases them");
	dest_free(&d);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *status = cert_case(cfg, &b, cases[i].name, &o);

		if (cases[i].text == NULL) {
			if (!ok(*status == '\0', "%s: resolves", cases[i].name))
				printf("# %s %s\n", o.status, o.text);
		} else {
			ok(strcmp(status, "4.3.5") == 0, "%s: deferred 4.3.5", cases[i].name);
			is_str(o.text, cases[i].text, "%s: text", cases[i].name);
		}
	}
	ok(dest_resolve(cfg, &b, "MAIL_CERT_NULL", &d, &o) == 0 && d.ncertificates == 0
	   && d.certificates == NULL, "certificates null: none");
	dest_free(&d);

	/* the cache keeps them */
	use_cache(cfg, 1);
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_CERTS", &d, &o) == 0 && d.cache_age == -1,
	   "certificates[]: from the service, cache on");
	dest_free(&d);
	ok(dest_resolve(cfg, &b, "MAIL_CERTS", &d, &o) == 0 && d.cache_age >= 0,
	   "certificates[]: from the cache");
	ok(d.ncertificates == 2 && strcmp(d.certificates[0].name, "relay-ca.pem") == 0
	   && strcmp(d.certificates[0].content, CERT_B64) == 0
	   && strcmp(d.certificates[0].type, "CERTIFICATE") == 0
	   && strcmp(d.certificates[1].content, "AAEC") == 0,
	   "certificates[]: the cache keeps Name, Type and Content");
	dest_free(&d);
	is_int(fs->find_requests, 1, "certificates[]: one Find");
	{
		char key[CACHE_KEY_SIZE];
		const char *parts[6] = { "MAIL_CERTS", uri, tokurl, "sb-dest", "",
					 "subscriberFirst" };

		cache_key(key, "destination", parts, 6);
		cache_open(&c, cachedir);
		if (ok(cache_load(&c, key, &e) == 0, "certificates[]: the cache entry")) {
			certs = json_object_get(e.data, "certificates");
			ok(json_array_size(certs) == 2
			   && strcmp(json_string_value(json_object_get(json_array_get(certs, 0),
									"Content")), CERT_B64) == 0,
			   "certificates[]: stored in the entry, without white space");
			cache_entry_free(&e);
		}
		cache_close(&c);
	}
	/* a cached entry whose certificates do not pass: asked again */
	ok(plant("destination-", "{\"properties\":{\"Name\":\"MAIL_CERTS\",\"Type\":\"MAIL\","
		 "\"mail.smtp.host\":\"c\",\"mail.smtp.port\":\"25\"},\"certificates\":"
		 "[{\"Name\":\"p.pem\",\"Content\":\"#!\"}]}"), "bad certificates planted");
	log_reset();
	ok(dest_resolve(cfg, &b, "MAIL_CERTS", &d, &o) == 0 && d.cache_age == -1
	   && d.ncertificates == 2, "a cached entry with bad certificates is asked for again");
	dest_free(&d);
	ok(log_has(logfile, "cached entry unusable"), "... logged as unusable");
	/* a bad answer is not cached, and the next lookup says the same */
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_CERT_BAD64", &d, &o) == -1
	   && strstr(o.text, "bad.pem") != NULL, "bad certificates with the cache on: deferred");
	ok(dest_resolve(cfg, &b, "MAIL_CERT_BAD64", &d, &o) == -1
	   && strstr(o.text, "bad.pem") != NULL, "... again, the same text");
	ok(fs->find_requests <= 2, "... never cached as found");
	use_cache(cfg, 0);
}

static void test_retries(struct config *cfg)
{
	struct bindings b;
	struct mail_destination d;
	struct http_options opt;
	struct oauth_token tok;
	struct oauth_client c;
	struct outcome o;
	char tokurl[128], uri[128], deadurl[128];
	double t0;

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	use_cache(cfg, 0);
	cfg->http_timeout = 1;
	cfg->http_retries = 2;
	fs->flaky = 0;
	fs->find_requests = 0;
	if (!ok(dest_resolve(cfg, &b, "MAIL_FLAKY", &d, &o) == 0, "503 twice, then 200: found"))
		printf("# %s\n", o.text);
	dest_free(&d);
	is_int(fs->find_requests, 3, "three tries");

	cfg->http_retries = 0;
	fs->flaky = 0;
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_FLAKY", &d, &o) == -1, "no retries: the 503 stands");
	has_str(o.text, "HTTP 503 (busy)", "503 text");
	is_str(o.status, "4.4.3", "503 defers 4.4.3");
	is_int(fs->find_requests, 1, "one try");

	cfg->http_retries = 2;
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_403", &d, &o) == -1 && fs->find_requests == 1,
	   "403: never tried again");
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_NONE", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND
	   && fs->find_requests == 1,
	   "404: never tried again");

	cfg->http_retries = 1;
	fs->find_requests = 0;
	ok(dest_resolve(cfg, &b, "MAIL_SLOW", &d, &o) == -1, "timeouts: tried again");
	has_str(o.text, "timed out after 1 s (after 2 tries)", "the text counts the tries");
	is_int(fs->find_requests, 2, "two tries");

	memset(&c, 0, sizeof(c));
	snprintf(deadurl, sizeof(deadurl), "http://127.0.0.1:%u", peer_free_port());
	c.token_url = deadurl;
	c.client_id = "x";
	c.client_secret = "y";
	cfg->http_retries = 2;
	http_options_init(&opt, cfg, 0);
	ok(oauth_token_get(&c, &opt, "connectivity", &tok, &o) == -1, "connection refused");
	has_str(o.text, "connection refused (after 3 tries)", "... three tries");

	/* every try ends by the deadline */
	cfg->http_timeout = 10;
	t0 = conn_now();
	ok(dest_resolve_until(cfg, &b, "MAIL_SLOW", conn_now() + 1.5, &d, &o) == -1,
	   "deadline: the slow service");
	ok(conn_now() - t0 < 2.5, "deadline: given up in time (%.1f s)", conn_now() - t0);
	has_str(o.text, "timed out", "deadline: a timeout");
	use_cache(cfg, 1);
	ok(dest_resolve_until(cfg, &b, "MAIL_ONPREM", conn_now() + 0.2, &d, &o) == -1,
	   "deadline already (nearly) passed: no request");
	has_str(o.text, "no time left before the delivery deadline", "says so");
	ok(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == 0,
	   "one process out of time does not make the others fail");
	dest_free(&d);
	use_cache(cfg, 0);

	opt.timeout = 10;
	opt.retries = 2;
	ok(http_budget(&opt) > 31.4 && http_budget(&opt) < 31.6, "budget: 3 x 10 s + 0.5 s + 1 s");
	cfg->http_timeout = 1;
	cfg->http_retries = 0;
}

static void test_config_destinations(void)
{
	struct config cfg;
	struct bindings none, b;
	struct mail_destination d;
	struct outcome o;
	char conf[700], err[512], want[2000], tokurl[128], uri[128];
	FILE *fp;

	snprintf(conf, sizeof(conf), "%s/btprelay.conf", dir);
	fp = fopen(conf, "w");
	fprintf(fp, "destinations_file = %s\n"
		"cache_dir =\n"
		"http_timeout = 1\n"
		"http_retries = 0\n"
		"destination.MAIL_CONF.mail.smtp.host = conf.example\n"
		"destination.MAIL_CONF.mail.smtp.port = 2525\n"
		"destination.MAIL_CONF.ProxyType = OnPremise\n"
		"destination.MAIL_CONF.CloudConnectorLocationId = LOC9\n"
		"destination.MAIL_CONF.mail.password = pw\n"
		"destination.MAIL_NOPORT.mail.smtp.host = x\n"
		"destination.MAIL_HTTP.Type = HTTP\n"
		"destination.MAIL_HTTP.mail.smtp.host = x\n"
		"destination.MAIL_HTTP.mail.smtp.port = 25\n"
		"destination.MAIL_ONPREM.mail.smtp.host = from-config\n"
		"destination.MAIL_ONPREM.mail.smtp.port = 25\n", file);
	fclose(fp);
	chmod(conf, 0600);
	write_file(file, "[{\"Name\":\"MAIL_FILE\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"f\","
		   "\"mail.smtp.port\":\"25\"}]", 0600);
	if (!ok(config_load(&cfg, conf, err, sizeof(err)) == 0, "configuration with destinations"))
		printf("# %s\n", err);
	memset(&none, 0, sizeof(none));

	if (!ok(dest_resolve(&cfg, &none, "MAIL_CONF", &d, &o) == 0, "declared in the configuration"))
		printf("# %s\n", o.text);
	snprintf(want, sizeof(want), "configuration file %s", conf);
	is_str(d.source, want, "source names the configuration file");
	is_str(d.host, "conf.example", "host");
	is_int(d.port, 2525, "port");
	is_int(d.onpremise, 1, "OnPremise");
	is_str(d.location_id, "LOC9", "location");
	is_str(d.password, "pw", "password");
	is_str(d.name, "MAIL_CONF", "name from the key");
	dest_free(&d);

	ok(dest_resolve(&cfg, &none, "MAIL_NOPORT", &d, &o) == -1, "declared without a port");
	is_str(o.text, "destination MAIL_NOPORT: no mail.smtp.port", "says what is missing");
	ok(dest_resolve(&cfg, &none, "MAIL_HTTP", &d, &o) == -1, "declared with Type HTTP");
	is_str(o.text, "destination MAIL_HTTP: Type is HTTP, not MAIL", "says so");

	write_file(file, "[{\"Name\":\"MAIL_CONF\",\"Type\":\"MAIL\",\"mail.smtp.host\":\"from-file\","
		   "\"mail.smtp.port\":\"25\"}]", 0600);
	ok(dest_resolve(&cfg, &none, "MAIL_CONF", &d, &o) == 0 && strcmp(d.host, "from-file") == 0,
	   "the destinations file comes first");
	dest_free(&d);

	ok(dest_resolve(&cfg, &none, "MAIL_X", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND, "in no source");
	snprintf(want, sizeof(want), "destination MAIL_X not found (destinations file %s, "
		 "configuration file %s, no Destination Service binding)", file, conf);
	is_str(o.text, want, "not found: every place named");

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	fs->find_requests = 0;
	ok(dest_resolve(&cfg, &b, "MAIL_ONPREM", &d, &o) == 0 && strcmp(d.host, "from-config") == 0,
	   "the configuration comes before the Destination Service");
	is_int(fs->find_requests, 0, "... which is not asked");
	dest_free(&d);
	ok(dest_resolve(&cfg, &b, "MAIL_NONE", &d, &o) < 0 && o.kind == OUTCOME_NOT_FOUND,
	   "in no source, with the service");
	snprintf(want, sizeof(want), "destination MAIL_NONE not found in the Destination Service "
		 "nor in destinations file %s nor in configuration file %s", file, conf);
	is_str(o.text, want, "not found: every place named");
	config_free(&cfg);
	unlink(conf);
	unlink(file);
}

static void test_burst(struct config *cfg)
{
	struct bindings b;
	char tokurl[128], uri[128];
	pid_t pids[20];
	int i, status, good = 0;

	bind_server(&b, tokurl, uri, sizeof(tokurl));
	use_cache(cfg, 1);
	cfg->http_timeout = 5;
	cfg->http_retries = 0;
	cfg->destination_cache_ttl = 300;
	fs->find_requests = fs->token_requests = 0;
	fflush(stdout);
	for (i = 0; i < 20; i++) {
		if ((pids[i] = fork()) == 0) {
			struct mail_destination d;
			struct http_options opt;
			struct oauth_token tok;
			struct outcome o;
			int rc;

			http_options_init(&opt, cfg, conn_now() + 30);
			rc = dest_resolve_until(cfg, &b, "MAIL_ONPREM", conn_now() + 30, &d, &o) == 0
			     && strcmp(d.host, "mail.corp.internal") == 0
			     && oauth_token_cached(cfg, &b.connectivity, &opt, "connectivity",
						   d.tenant_is_subscriber ? OAUTH_SUBSCRIBER : 0,
						   &tok, &o) == 0;
			_exit(rc ? 0 : 1);
		}
	}
	for (i = 0; i < 20; i++)
		if (waitpid(pids[i], &status, 0) > 0 && WIFEXITED(status)
		    && WEXITSTATUS(status) == 0)
			good++;
	is_int(good, 20, "20 deliveries at once: all resolved and got a token");
	is_int(fs->find_requests, 1, "20 deliveries at once: one Find request");
	is_int(fs->token_requests, 2, "20 deliveries at once: one destination and one "
	       "connectivity token request");

	/* the same when the service is down: one try for the burst that began before it failed */
	use_cache(cfg, 1);
	fs->down = 1;
	fs->find_requests = 0;
	fflush(stdout);
	cache_since(cache_clock());	/* inherited: every delivery began now */
	for (i = 0; i < 10; i++) {
		if ((pids[i] = fork()) == 0) {
			struct mail_destination d;
			struct outcome o;

			_exit(dest_resolve(cfg, &b, "MAIL_ONPREM", &d, &o) == -1
			      && strstr(o.text, "HTTP 500 (down)") != NULL ? 0 : 1);
		}
	}
	good = 0;
	for (i = 0; i < 10; i++)
		if (waitpid(pids[i], &status, 0) > 0 && WIFEXITED(status)
		    && WEXITSTATUS(status) == 0)
			good++;
	is_int(good, 10, "service down: 10 deliveries defer with its error");
	is_int(fs->find_requests, 1, "service down: one Find for 10 deliveries");
	cache_since(0);
	fs->down = 0;
	drop_fail_notes();
}

int main(void)
{
	struct config cfg;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(file, sizeof(file), "%s/destinations.json", dir);
	snprintf(cachedir, sizeof(cachedir), "%s/cache", dir);
	mkdir(cachedir, 0700);
	snprintf(logfile, sizeof(logfile), "%s/debug.log", dir);
	fs = mmap(NULL, sizeof(*fs), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fs == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	memset(fs, 0, sizeof(*fs));
	/* the tests look for the cache's debug lines */
	log_open("test-destination", logfile, LOG_LVL_DEBUG);
	http_global_init();
	config_defaults(&cfg);
	/* no shared cache unless a test asks for one: never the real /var/cache */
	free(cfg.cache_dir);
	cfg.cache_dir = strdup("");
	test_properties();
	test_property_errors();
	test_file(&cfg);
	if (server_start() == 0) {
		test_service(&cfg);
		set_str(&cfg.destinations_file, "");
		test_token_cache(&cfg);
		test_tenants(&cfg);
		test_service_cache(&cfg);
		test_certificates(&cfg);
		test_retries(&cfg);
		test_config_destinations();
		test_burst(&cfg);
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
		{
			char cmd[1300];

			snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cachedir);
			if (system(cmd) != 0)
				printf("# cannot remove %s\n", cachedir);
		}
	} else {
		ok(0, "cannot start the fake HTTP server");
	}
	config_free(&cfg);
	log_close();
	if (getenv("BTPRELAY_TEST_KEEP_LOG") == NULL) {	/* to read what was logged */
		unlink(logfile);
		rmdir(dir);
	}
	unlink(file);
	return tap_done();
}
