/*
 * fuzz-bindings - the bindings file (VCAP_SERVICES shape: label -> array
 * of {name, label, credentials}; btprelay.conf(5), BINDINGS FILE). The input is written
 * to a private file (0600) named by bindings_file, and bindings_load()
 * reads it twice: without instance names, and with dest-lite/conn-lite.
 *
 * Properties: failures defer 4.3.5 with a one-line text and leave nothing
 * to free; a bound service has every credential the token fetch and the
 * proxy need (token URL, client id, a secret or a certificate and key,
 * the Destination Service URI, the proxy host and a port 1-65535).
 */
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "conf.h"
#include "fuzz.h"

static struct config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	unsetenv("VCAP_SERVICES");
	unsetenv("SERVICE_BINDING_ROOT");
	fuzz_config(&cfg);
	return 0;
}

static void check_client(const struct oauth_client *c)
{
	fuzz_assert(c->token_url != NULL && *c->token_url != '\0');
	fuzz_assert(c->client_id != NULL && *c->client_id != '\0');
	fuzz_assert(c->instance != NULL);
	fuzz_assert(c->client_secret != NULL || (c->cert_pem != NULL && c->key_pem != NULL));
}

static void load(const char *dest_instance, const char *conn_instance)
{
	struct bindings b;
	struct outcome o;

	free(cfg.destination_instance);
	free(cfg.connectivity_instance);
	cfg.destination_instance = strdup(dest_instance);
	cfg.connectivity_instance = strdup(conn_instance);
	if (bindings_load(&cfg, &b, &o) == 0) {
		fuzz_assert(b.source != NULL);
		if (b.have_destination) {
			check_client(&b.destination);
			fuzz_assert(b.destination_uri != NULL && *b.destination_uri != '\0');
		}
		if (b.have_connectivity) {
			check_client(&b.connectivity);
			fuzz_assert(b.proxy_host != NULL && *b.proxy_host != '\0');
			fuzz_assert(b.proxy_port >= 1 && b.proxy_port <= 65535);
		}
	} else {
		fuzz_check_outcome(&o, 0);
		fuzz_assert(strcmp(o.status, "4.3.5") == 0);
		fuzz_assert(b.source == NULL && b.destination.client_secret == NULL);
	}
	bindings_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	free(cfg.bindings_file);
	cfg.bindings_file = strdup(fuzz_tmpfile(".json", data, size));
	load("", "");
	load("dest-lite", "conn-lite");
	return 0;
}
