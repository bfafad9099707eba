/*
 * test-bindings - VCAP_SERVICES and the bindings file: credentials of both
 * bindings, port as string or number, X.509 PEM newlines, instance choice,
 * missing keys, files other users can read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "bindings.h"
#include "conf.h"
#include "tap.h"
#include "../lib/files.h"

static char dir[] = "/tmp/btprelay-test-bindings-XXXXXX";
static char file[512];

static const char base_json[] =
	"{\"destination\":[{\"name\":\"dest-1\",\"label\":\"destination\",\"credentials\":{"
	"\"clientid\":\"sb-dest!b1|destination-xsappname!b9\",\"clientsecret\":\"dest-secret\","
	"\"url\":\"https://sub.authentication.eu10.hana.ondemand.com\","
	"\"uri\":\"https://destination-configuration.cfapps.eu10.hana.ondemand.com\"}}],"
	"\"connectivity\":[{\"name\":\"conn-1\",\"label\":\"connectivity\",\"credentials\":{"
	"\"clientid\":\"sb-conn!b2|connectivity!b17\",\"clientsecret\":\"conn-secret\","
	"\"url\":\"https://old.example\","
	"\"token_service_url\":\"https://sub.authentication.eu10.hana.ondemand.com\","
	"\"onpremise_proxy_host\":\"connectivityproxy.internal.cf.eu10.hana.ondemand.com\","
	"\"onpremise_socks5_proxy_port\":\"20004\"}}],"
	"\"xsuaa\":[{\"name\":\"uaa\",\"credentials\":{}}]}";

/* set_str - replace a config string */
static void set_str(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
}

/* doc_without - base_json with one credential key removed, as a string */
static char *doc_without(const char *label, const char *key)
{
	json_t *root = json_loads(base_json, 0, NULL);
	json_t *creds = json_object_get(json_array_get(json_object_get(root, label), 0),
					"credentials");
	char *text;

	json_object_del(creds, key);
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

static void test_nothing_bound(struct config *cfg)
{
	struct bindings b;
	struct outcome o;

	unsetenv("VCAP_SERVICES");
	set_str(&cfg->bindings_file, "");
	ok(bindings_load(cfg, &b, &o) == 0, "no variable, no file name: ok");
	ok(!b.have_destination && !b.have_connectivity, "nothing bound");
	bindings_free(&b);

	set_str(&cfg->bindings_file, file);
	unlink(file);
	ok(bindings_load(cfg, &b, &o) == 0, "missing bindings file: ok");
	ok(!b.have_destination && !b.have_connectivity, "missing file: nothing bound");
	bindings_free(&b);

	/* a path written into the configuration by hand: missing is a typo */
	cfg->bindings_file_line = 7;
	set_str(&cfg->path, "/etc/btprelay/test.conf");
	{
		char want[700];

		snprintf(want, sizeof(want), "bindings file %s does not exist (bindings_file, "
			 "/etc/btprelay/test.conf line 7): fix the path, or set \"bindings_file =\" "
			 "for no bindings file", file);
		ok(bindings_load(cfg, &b, &o) == -1 && strcmp(o.status, "4.3.5") == 0,
		   "bindings_file set and missing: deferred 4.3.5");
		is_str(o.text, want, "... the text names the path and the line");
	}
	setenv("VCAP_SERVICES", "{}", 1);
	ok(bindings_load(cfg, &b, &o) == 0, "... VCAP_SERVICES still wins");
	bindings_free(&b);
	unsetenv("VCAP_SERVICES");
	cfg->bindings_file_line = 0;

	setenv("VCAP_SERVICES", "", 1);
	ok(bindings_load(cfg, &b, &o) == 0, "empty VCAP_SERVICES is ignored");
	bindings_free(&b);
	unsetenv("VCAP_SERVICES");

	write_file(file, "{}", 0600);
	ok(bindings_load(cfg, &b, &o) == 0, "file without our labels: ok");
	ok(!b.have_destination && !b.have_connectivity, "no labels: nothing bound");
	bindings_free(&b);
}

static void test_file(struct config *cfg)
{
	struct bindings b;
	struct outcome o;
	char want[600];

	unsetenv("VCAP_SERVICES");
	set_str(&cfg->bindings_file, file);
	write_file(file, base_json, 0600);
	if (!ok(bindings_load(cfg, &b, &o) == 0, "bindings file loads"))
		printf("# %s %s\n", o.status, o.text);
	is_str(b.source, file, "source is the file");
	ok(b.have_destination, "destination bound");
	is_str(b.destination.client_id, "sb-dest!b1|destination-xsappname!b9", "destination clientid");
	is_str(b.destination.client_secret, "dest-secret", "destination clientsecret");
	is_str(b.destination.token_url, "https://sub.authentication.eu10.hana.ondemand.com",
	       "destination token url");
	is_str(b.destination_uri, "https://destination-configuration.cfapps.eu10.hana.ondemand.com",
	       "destination uri");
	is_str(b.destination.instance, "dest-1", "destination instance name");
	ok(b.destination.cert_pem == NULL && b.destination.key_pem == NULL,
	   "no certificate for a secret binding");
	ok(b.have_connectivity, "connectivity bound");
	is_str(b.connectivity.client_id, "sb-conn!b2|connectivity!b17", "connectivity clientid");
	is_str(b.connectivity.client_secret, "conn-secret", "connectivity clientsecret");
	is_str(b.connectivity.token_url, "https://sub.authentication.eu10.hana.ondemand.com",
	       "token_service_url preferred over url");
	is_str(b.proxy_host, "connectivityproxy.internal.cf.eu10.hana.ondemand.com", "proxy host");
	is_int(b.proxy_port, 20004, "proxy port from a string");
	bindings_free(&b);
	bindings_free(&b);
	ok(b.destination.client_secret == NULL, "bindings_free twice is safe");

	/* other users may read it: refused */
	chmod(file, 0644);
	ok(bindings_load(cfg, &b, &o) == -1, "world-readable bindings file refused");
	is_str(o.status, "4.3.5", "refusal defers 4.3.5");
	has_str(o.text, file, "refusal names the file");
	has_str(o.text, "other users", "refusal says why");
	ok(!b.have_destination && b.source == NULL, "nothing left after a failure");
	chmod(file, 0604);
	ok(bindings_load(cfg, &b, &o) == -1, "world-readable (o+r only) refused");
	chmod(file, 0602);
	ok(bindings_load(cfg, &b, &o) == -1, "world-writable refused");
	chmod(file, 0640);
	ok(bindings_load(cfg, &b, &o) == 0, "group-readable accepted");
	bindings_free(&b);

	/* bad JSON names the file and the line */
	write_file(file, "{\n\"destination\": [\n{\"name\": \"x\",\n \"credentials\": {\"clientsecret\": \"abc\\q\"}}]}",
		   0600);
	ok(bindings_load(cfg, &b, &o) == -1, "bad JSON refused");
	snprintf(want, sizeof(want), "bindings file %s: bad JSON at line 4", file);
	has_str(o.text, want, "bad JSON: file and line");
	ok(strstr(o.text, "abc") == NULL, "bad JSON: no text near the error (could be a secret)");
	is_str(o.status, "4.3.5", "bad JSON defers 4.3.5");

	write_file(file, "[1,2]", 0600);
	ok(bindings_load(cfg, &b, &o) == -1, "a JSON array is not a bindings document");
	has_str(o.text, "not a JSON object", "says what is wrong");
}

static void test_env(struct config *cfg)
{
	struct bindings b;
	struct outcome o;
	json_t *root;
	char *text;

	set_str(&cfg->bindings_file, file);
	write_file(file, "{}", 0600);
	root = json_loads(base_json, 0, NULL);
	/* port as a JSON number */
	json_object_set_new(json_object_get(json_array_get(json_object_get(root, "connectivity"),
							  0), "credentials"),
			    "onpremise_socks5_proxy_port", json_integer(20003));
	json_object_del(json_object_get(json_array_get(json_object_get(root, "connectivity"), 0),
					"credentials"), "token_service_url");
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	setenv("VCAP_SERVICES", text, 1);
	free(text);

	ok(bindings_load(cfg, &b, &o) == 0, "VCAP_SERVICES loads");
	is_str(b.source, "VCAP_SERVICES", "VCAP_SERVICES wins over the file");
	ok(b.have_destination && b.have_connectivity, "both bound from the variable");
	is_int(b.proxy_port, 20003, "proxy port from a number");
	is_str(b.connectivity.token_url, "https://old.example", "url when no token_service_url");
	bindings_free(&b);

	/* configuration overrides the proxy (cf ssh -L tunnel) */
	set_str(&cfg->proxy_host, "127.0.0.1");
	cfg->proxy_port = 40004;
	ok(bindings_load(cfg, &b, &o) == 0, "proxy override loads");
	is_str(b.proxy_host, "127.0.0.1", "proxy_host override");
	is_int(b.proxy_port, 40004, "proxy_port override");
	bindings_free(&b);
	set_str(&cfg->proxy_host, "");
	cfg->proxy_port = 0;

	setenv("VCAP_SERVICES", "{\"destination\": 5}", 1);
	ok(bindings_load(cfg, &b, &o) == -1, "label not an array refused");
	has_str(o.text, "VCAP_SERVICES: \"destination\" is not an array", "names the source");

	setenv("VCAP_SERVICES", "{nope", 1);
	ok(bindings_load(cfg, &b, &o) == -1, "bad JSON in VCAP_SERVICES refused");
	has_str(o.text, "VCAP_SERVICES: bad JSON at line 1", "names the variable");
	unsetenv("VCAP_SERVICES");
}

static void test_x509(struct config *cfg)
{
	static const char doc[] =
		"{\"destination\":[{\"name\":\"dest-x\",\"credentials\":{"
		"\"credential-type\":\"X509_GENERATED\",\"clientid\":\"sb-x\","
		"\"certurl\":\"https://sub.authentication.cert.eu10.hana.ondemand.com\","
		"\"url\":\"https://sub.authentication.eu10.hana.ondemand.com\","
		"\"certificate\":\"-----BEGIN CERTIFICATE-----\\\\nMIIB\\\\n-----END CERTIFICATE-----\\\\n\","
		"\"key\":\"-----BEGIN PRIVATE KEY-----\\nMIIE\\\\n-----END PRIVATE KEY-----\","
		"\"uri\":\"https://destination.example\"}}],"
		"\"connectivity\":[{\"name\":\"conn-x\",\"credentials\":{"
		"\"credential-type\":\"x509\",\"clientid\":\"sb-cx\","
		"\"certurl\":\"https://cert.example/\",\"certificate\":\"C\",\"key\":\"K\","
		"\"onpremise_proxy_host\":\"proxy\",\"onpremise_socks5_proxy_port\":20004}}]}";
	struct bindings b;
	struct outcome o;

	setenv("VCAP_SERVICES", doc, 1);
	if (!ok(bindings_load(cfg, &b, &o) == 0, "X.509 bindings load"))
		printf("# %s\n", o.text);
	is_str(b.destination.token_url, "https://sub.authentication.cert.eu10.hana.ondemand.com",
	       "X.509: certurl, not url");
	ok(b.destination.client_secret == NULL, "X.509: no secret");
	is_str(b.destination.cert_pem,
	       "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	       "X.509: literal \\n in the certificate become newlines");
	is_str(b.destination.key_pem, "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
	       "X.509: key with real and literal newlines");
	is_str(b.connectivity.token_url, "https://cert.example/", "X.509 (lower case x509): certurl");
	is_str(b.connectivity.cert_pem, "C", "connectivity certificate");
	is_str(b.connectivity.key_pem, "K", "connectivity key");
	bindings_free(&b);

	setenv("VCAP_SERVICES", "{\"destination\":[{\"name\":\"d\",\"credentials\":{"
	       "\"credential-type\":\"X509_ATTESTED\",\"clientid\":\"c\",\"url\":\"https://u\","
	       "\"certificate\":\"C\",\"key\":\"K\",\"uri\":\"https://d\"}}]}", 1);
	ok(bindings_load(cfg, &b, &o) == -1, "X.509 without certurl refused");
	has_str(o.text, "destination binding (X.509) has no certurl", "names the key");

	setenv("VCAP_SERVICES", "{\"destination\":[{\"name\":\"d\",\"credentials\":{"
	       "\"credential-type\":\"x509_provided\",\"clientid\":\"c\",\"certurl\":\"https://u\","
	       "\"certificate\":\"C\",\"uri\":\"https://d\"}}]}", 1);
	ok(bindings_load(cfg, &b, &o) == -1, "X.509 without key refused");
	has_str(o.text, "destination binding (X.509) has no key", "names the key");

	setenv("VCAP_SERVICES", "{\"destination\":[{\"name\":\"d\",\"credentials\":{"
	       "\"credential-type\":\"binding-secret\",\"clientid\":\"c\",\"url\":\"https://u\","
	       "\"clientsecret\":\"s\",\"uri\":\"https://d\"}}]}", 1);
	ok(bindings_load(cfg, &b, &o) == 0, "credential-type binding-secret: a secret binding");
	is_str(b.destination.client_secret, "s", "binding-secret: secret kept");
	bindings_free(&b);
	unsetenv("VCAP_SERVICES");
}

static void test_instances(struct config *cfg)
{
	static const char doc[] =
		"{\"destination\":["
		"{\"name\":\"dest-a\",\"credentials\":{\"clientid\":\"a\",\"clientsecret\":\"s\","
		"\"url\":\"https://a\",\"uri\":\"https://da\"}},"
		"{\"name\":\"dest-b\",\"credentials\":{\"clientid\":\"b\",\"clientsecret\":\"s\","
		"\"url\":\"https://b\",\"uri\":\"https://db\"}},"
		"{\"name\":\"dest-b\",\"credentials\":{\"clientid\":\"b2\",\"clientsecret\":\"s\","
		"\"url\":\"https://b\",\"uri\":\"https://db\"}}]}";
	struct bindings b;
	struct outcome o;

	setenv("VCAP_SERVICES", doc, 1);
	ok(bindings_load(cfg, &b, &o) == -1, "several destination bindings, none chosen: error");
	has_str(o.text, "VCAP_SERVICES: 3 destination bindings (dest-a, dest-b, dest-b): "
		"set destination_instance", "lists them and names the key");

	set_str(&cfg->destination_instance, "dest-a");
	ok(bindings_load(cfg, &b, &o) == 0, "destination_instance picks one");
	is_str(b.destination.client_id, "a", "the named one");
	is_str(b.destination.instance, "dest-a", "instance name kept");
	ok(!b.have_connectivity, "connectivity not bound");
	bindings_free(&b);

	set_str(&cfg->destination_instance, "dest-b");
	ok(bindings_load(cfg, &b, &o) == -1, "two bindings with the chosen name: error");
	has_str(o.text, "2 destination bindings are named \"dest-b\"", "ambiguous");

	set_str(&cfg->destination_instance, "dest-c");
	ok(bindings_load(cfg, &b, &o) == -1, "chosen name not bound: error");
	has_str(o.text, "no destination binding named \"dest-c\" (destination_instance)",
		"not found");

	set_str(&cfg->destination_instance, "");
	set_str(&cfg->connectivity_instance, "conn-z");
	setenv("VCAP_SERVICES", base_json, 1);
	ok(bindings_load(cfg, &b, &o) == -1, "connectivity_instance not bound: error");
	has_str(o.text, "no connectivity binding named \"conn-z\"", "names the instance");
	set_str(&cfg->connectivity_instance, "conn-1");
	ok(bindings_load(cfg, &b, &o) == 0, "connectivity_instance matches the one bound");
	bindings_free(&b);
	set_str(&cfg->connectivity_instance, "");
	unsetenv("VCAP_SERVICES");
}

static void test_missing_keys(struct config *cfg)
{
	static const struct {
		const char *label, *key, *want;
	} cases[] = {
		{ "destination", "clientid", "destination binding has no clientid" },
		{ "destination", "clientsecret", "destination binding has no clientsecret" },
		{ "destination", "url", "destination binding has no url" },
		{ "destination", "uri", "destination binding has no uri" },
		{ "destination", "credentials", "destination binding has no credentials object" },
		{ "connectivity", "clientid", "connectivity binding has no clientid" },
		{ "connectivity", "clientsecret", "connectivity binding has no clientsecret" },
		{ "connectivity", "onpremise_proxy_host",
		  "connectivity binding has no onpremise_proxy_host" },
		{ "connectivity", "onpremise_socks5_proxy_port",
		  "connectivity binding has no onpremise_socks5_proxy_port" },
	};
	struct bindings b;
	struct outcome o;
	char want[700];
	size_t i;
	char *doc;

	unsetenv("VCAP_SERVICES");
	set_str(&cfg->bindings_file, file);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(cases[i].key, "credentials") == 0) {
			json_t *root = json_loads(base_json, 0, NULL);

			json_object_del(json_array_get(json_object_get(root, cases[i].label), 0),
					"credentials");
			doc = json_dumps(root, JSON_COMPACT);
			json_decref(root);
		} else {
			doc = doc_without(cases[i].label, cases[i].key);
		}
		write_file(file, doc, 0600);
		free(doc);
		snprintf(want, sizeof(want), "bindings file %s: %s", file, cases[i].want);
		ok(bindings_load(cfg, &b, &o) == -1, "without %s.%s: error", cases[i].label,
		   cases[i].key);
		is_str(o.text, want, "text: %s", cases[i].want);
		is_str(o.status, "4.3.5", "defers 4.3.5");
	}

	/* both token URLs missing from connectivity */
	{
		json_t *root = json_loads(base_json, 0, NULL);
		json_t *creds = json_object_get(json_array_get(json_object_get(root, "connectivity"),
							       0), "credentials");

		json_object_del(creds, "url");
		json_object_del(creds, "token_service_url");
		doc = json_dumps(root, JSON_COMPACT);
		json_decref(root);
		write_file(file, doc, 0600);
		free(doc);
		ok(bindings_load(cfg, &b, &o) == -1, "connectivity without a token URL: error");
		has_str(o.text, "connectivity binding has no token_service_url or url", "names both");
	}

	/* a missing proxy host is fine when the configuration gives one */
	doc = doc_without("connectivity", "onpremise_proxy_host");
	write_file(file, doc, 0600);
	free(doc);
	set_str(&cfg->proxy_host, "localhost");
	ok(bindings_load(cfg, &b, &o) == 0, "proxy_host from the configuration fills the gap");
	is_str(b.proxy_host, "localhost", "configured proxy host");
	bindings_free(&b);
	set_str(&cfg->proxy_host, "");

	/* bad ports */
	{
		static const char *const ports[] = { "\"abc\"", "\"0\"", "70000", "\"\"", "-1",
						     "\"20004 \"", "true" };

		for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
			json_t *root = json_loads(base_json, 0, NULL);
			json_t *creds = json_object_get(json_array_get(
				json_object_get(root, "connectivity"), 0), "credentials");

			json_object_set_new(creds, "onpremise_socks5_proxy_port",
					    json_loads(ports[i], JSON_DECODE_ANY, NULL));
			doc = json_dumps(root, JSON_COMPACT);
			json_decref(root);
			write_file(file, doc, 0600);
			free(doc);
			ok(bindings_load(cfg, &b, &o) == -1, "proxy port %s refused", ports[i]);
			has_str(o.text, "onpremise_socks5_proxy_port is not a port number",
				"says so");
		}
	}
}

/* put - a file under the binding root with content and mode */
static void put(const char *rel, const char *content, mode_t mode)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/root/%s", dir, rel);
	unlink(path);
	write_file(path, content, mode);
}

/* mkd - a directory under the binding root */
static void mkd(const char *rel, mode_t mode)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/root/%s", dir, rel);
	mkdir(path, mode);
	chmod(path, mode);
}

/* root_path - a path under the binding root */
static const char *root_path(const char *rel)
{
	static char path[1024];

	snprintf(path, sizeof(path), "%s/root%s%s", dir, *rel ? "/" : "", rel);
	return path;
}

/* kyma_tree - a destination and a connectivity binding as SAP BTP Kyma mounts them */
static void kyma_tree(void)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s/root'", dir);
	if (system(cmd) != 0)
		exit(2);
	mkd("", 0755);
	mkd("dest-1", 01777);	/* a Kubernetes secret volume's mount point */
	put("dest-1/type", "destination", 0644);	/* not a secret */
	put("dest-1/clientid", "sb-dest!b1", 0440);
	put("dest-1/clientsecret", "kyma-secret\n", 0400);
	put("dest-1/url", "https://sub.authentication.eu10.hana.ondemand.com", 0440);
	put("dest-1/uri", "https://destination-configuration.cfapps.eu10.hana.ondemand.com",
	    0440);
	put("dest-1/instance_name", "dest-1", 0440);
	mkd("conn-1", 0755);
	put("conn-1/type", "connectivity\n", 0600);
	put("conn-1/clientid", "sb-conn!b2", 0600);
	put("conn-1/clientsecret", "conn-secret", 0600);
	put("conn-1/token_service_url", "https://sub.authentication.eu10.hana.ondemand.com", 0600);
	put("conn-1/onpremise_proxy_host", "connectivityproxy.kyma-system.svc.cluster.local", 0600);
	put("conn-1/onpremise_socks5_proxy_port", "20004", 0600);
	/* another service's binding, world-readable: not ours, skipped */
	mkd("uaa-1", 0755);
	put("uaa-1/type", "xsuaa", 0644);
	put("uaa-1/clientsecret", "other", 0644);
	/* a directory without a type file: not a binding */
	mkd("lost+found", 0700);
}

static void test_dirs(struct config *cfg)
{
	struct bindings b;
	struct outcome o;
	char want[1200];

	unsetenv("VCAP_SERVICES");
	unsetenv("SERVICE_BINDING_ROOT");
	set_str(&cfg->bindings_file, file);
	unlink(file);
	kyma_tree();
	set_str(&cfg->service_binding_root, root_path(""));
	if (!ok(bindings_load(cfg, &b, &o) == 0, "service binding directories load"))
		printf("# %s\n", o.text);
	is_str(b.source, root_path(""), "source is the directory");
	ok(b.have_destination && b.have_connectivity, "both bound");
	is_str(b.destination.client_id, "sb-dest!b1", "clientid from its file");
	is_str(b.destination.client_secret, "kyma-secret", "trailing newline dropped");
	is_str(b.destination_uri, "https://destination-configuration.cfapps.eu10.hana.ondemand.com",
	       "uri");
	is_str(b.destination.instance, "dest-1", "instance name: the directory's name");
	is_str(b.connectivity.token_url, "https://sub.authentication.eu10.hana.ondemand.com",
	       "token_service_url");
	is_str(b.proxy_host, "connectivityproxy.kyma-system.svc.cluster.local", "proxy host");
	is_int(b.proxy_port, 20004, "proxy port from a file");
	bindings_free(&b);

	/* the environment variable wins over the configuration */
	set_str(&cfg->service_binding_root, "/nonexistent");
	setenv("SERVICE_BINDING_ROOT", root_path(""), 1);
	ok(bindings_load(cfg, &b, &o) == 0, "SERVICE_BINDING_ROOT wins over service_binding_root");
	bindings_free(&b);
	unsetenv("SERVICE_BINDING_ROOT");
	ok(bindings_load(cfg, &b, &o) == -1, "a configured root that does not exist: error");
	has_str(o.text, "service bindings /nonexistent: No such file or directory", "says so");
	set_str(&cfg->service_binding_root, root_path(""));

	/* the bindings file, when it exists, comes first; VCAP_SERVICES before both */
	write_file(file, base_json, 0600);
	ok(bindings_load(cfg, &b, &o) == 0 && strcmp(b.source, file) == 0,
	   "an existing bindings file wins over the directories");
	is_str(b.destination.client_secret, "dest-secret", "... its credentials");
	bindings_free(&b);
	unlink(file);
	setenv("VCAP_SERVICES", "{}", 1);
	ok(bindings_load(cfg, &b, &o) == 0 && strcmp(b.source, "VCAP_SERVICES") == 0
	   && !b.have_destination, "VCAP_SERVICES wins over the directories");
	bindings_free(&b);
	unsetenv("VCAP_SERVICES");

	/* Kubernetes' atomic-writer layout: ..data links, .metadata, a JSON "uaa" */
	{
		char target[1200], link[1200];

		mkd("dest-1/..2024_01_01", 0755);
		put("dest-1/..2024_01_01/uaa", "{\"clientid\":\"from-uaa\",\"clientsecret\":"
		    "\"uaa-secret\",\"url\":\"https://uaa.example\"}\n", 0400);
		snprintf(target, sizeof(target), "%s", root_path("dest-1/..2024_01_01"));
		snprintf(link, sizeof(link), "%s", root_path("dest-1/..data"));
		unlink(link);
		if (symlink(target, link) != 0)
			perror(link);
		snprintf(link, sizeof(link), "%s", root_path("dest-1/uaa"));
		if (symlink("..data/uaa", link) != 0)
			perror(link);
		put("dest-1/.metadata", "{\"credentialProperties\":[{\"name\":\"uaa\","
		    "\"format\":\"json\"},{\"name\":\"uri\",\"format\":\"text\"}]}", 0400);
		unlink(root_path("dest-1/clientid"));
		unlink(root_path("dest-1/clientsecret"));
		unlink(root_path("dest-1/url"));
	}
	if (!ok(bindings_load(cfg, &b, &o) == 0, "symbolic links, .metadata, uaa JSON: load"))
		printf("# %s\n", o.text);
	is_str(b.destination.client_id, "from-uaa", "client from the uaa object");
	is_str(b.destination.client_secret, "uaa-secret", "secret from the uaa object");
	is_str(b.destination.token_url, "https://uaa.example", "token URL from the uaa object");
	is_str(b.destination_uri, "https://destination-configuration.cfapps.eu10.hana.ondemand.com",
	       "uri stays at the top");
	bindings_free(&b);
	put("dest-1/.metadata", "{\"credentialProperties\":[{\"name\":\"uri\",\"format\":"
	    "\"json\"}]}", 0400);
	ok(bindings_load(cfg, &b, &o) == -1, ".metadata says JSON, the file is not: error");
	has_str(o.text, "dest-1/uri: not the JSON value .metadata announces", "names the file");

	/* the secretKey layout: all credentials as one JSON object */
	kyma_tree();
	unlink(root_path("dest-1/clientid"));
	unlink(root_path("dest-1/clientsecret"));
	unlink(root_path("dest-1/url"));
	unlink(root_path("dest-1/uri"));
	put("dest-1/credentials", "{\"clientid\":\"k\",\"clientsecret\":\"s\",\"url\":"
	    "\"https://u.example\",\"uri\":\"https://d.example\"}", 0400);
	if (!ok(bindings_load(cfg, &b, &o) == 0, "secretKey layout loads"))
		printf("# %s\n", o.text);
	is_str(b.destination.client_id, "k", "secretKey: clientid");
	is_str(b.destination_uri, "https://d.example", "secretKey: uri");
	bindings_free(&b);

	/* permissions */
	kyma_tree();
	chmod(root_path("dest-1/clientsecret"), 0444);
	ok(bindings_load(cfg, &b, &o) == -1, "a credential file readable by others: refused");
	snprintf(want, sizeof(want), "%s: accessible by other users (mode 0444)",
		 root_path("dest-1/clientsecret"));
	has_str(o.text, want, "names the file and the mode");
	has_str(o.text, "defaultMode", "says how to fix it on Kubernetes");
	is_str(o.status, "4.3.5", "defers 4.3.5");
	ok(!b.have_destination && b.source == NULL, "nothing left after a failure");
	kyma_tree();
	chmod(root_path("conn-1"), 0777);
	ok(bindings_load(cfg, &b, &o) == -1, "a binding directory writable by others: refused");
	has_str(o.text, "writable by other users (mode 0777)", "says why");
	chmod(root_path("conn-1"), 0755);
	put("conn-1/extra", "x", 0604);
	ok(bindings_load(cfg, &b, &o) == -1, "any file of our binding counts");
	unlink(root_path("conn-1/extra"));
	put("conn-1/latin1", "caf\xe9", 0600);
	ok(bindings_load(cfg, &b, &o) == -1, "a file that is not UTF-8: refused");
	has_str(o.text, "not UTF-8", "says so");
	unlink(root_path("conn-1/latin1"));
	if (geteuid() == 0) {
		if (chown(root_path("conn-1/clientid"), 65534, 65534) == 0) {
			ok(bindings_load(cfg, &b, &o) == -1, "a file of another user: refused");
			has_str(o.text, "owned by uid 65534", "says whose");
		}
		kyma_tree();
		if (chown(root_path("conn-1"), 65534, 65534) == 0) {
			ok(bindings_load(cfg, &b, &o) == -1, "a directory of another user: refused");
			has_str(o.text, "conn-1: owned by uid 65534", "says whose");
		}
	} else {
		ok(1, "# SKIP ownership checks need root");
	}

	/* several bindings of one kind */
	kyma_tree();
	mkd("dest-2", 0700);
	put("dest-2/type", "destination", 0600);
	put("dest-2/clientid", "two", 0600);
	put("dest-2/clientsecret", "s2", 0600);
	put("dest-2/url", "https://two.example", 0600);
	put("dest-2/uri", "https://d2.example", 0600);
	ok(bindings_load(cfg, &b, &o) == -1, "two destination binding directories: error");
	snprintf(want, sizeof(want), "service bindings %s: 2 destination bindings (dest-1, dest-2): "
		 "set destination_instance", root_path(""));
	has_str(o.text, want, "lists them");
	set_str(&cfg->destination_instance, "dest-2");
	ok(bindings_load(cfg, &b, &o) == 0, "destination_instance picks a directory");
	is_str(b.destination.client_id, "two", "the named one");
	bindings_free(&b);
	set_str(&cfg->destination_instance, "");

	/* nothing configured at all */
	set_str(&cfg->service_binding_root, "");
	ok(bindings_load(cfg, &b, &o) == 0 && !b.have_destination, "no directory configured: "
	   "nothing bound");
	bindings_free(&b);
	{
		char cmd[1200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s/root'", dir);
		if (system(cmd) != 0)
			exit(2);
	}
}

int main(void)
{
	struct config cfg;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(file, sizeof(file), "%s/bindings.json", dir);
	config_defaults(&cfg);
	test_nothing_bound(&cfg);
	test_file(&cfg);
	test_env(&cfg);
	test_x509(&cfg);
	test_instances(&cfg);
	test_missing_keys(&cfg);
	test_dirs(&cfg);
	config_free(&cfg);
	unlink(file);
	rmdir(dir);
	return tap_done();
}
