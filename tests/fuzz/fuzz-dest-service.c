/*
 * fuzz-dest-service - the Destination Service's Find answer (SAP: "Calling the
 * Destination Service REST API", "Find a Destination - Response
 * Structure"): a loopback server issues a good token and answers the Find
 * with the input as body (200 mostly; else 404, 401, 403 or 500 from a
 * hash of the input, whose ErrorMessage is quoted), and dest_resolve()
 * takes the destination from it: destinationConfiguration through
 * dest_from_properties(), authTokens of OAuth2 destinations (fetched a
 * second time without $skipTokenRetrieval), the subscriber-then-provider
 * order when a tenant id is configured (hash), no cache.
 *
 * Properties: failures defer with a one-line text and leave nothing to
 * free; an accepted destination passes fuzz_check_destination (no CR/LF
 * in any value, host, port, a token of visible ASCII only); the client
 * secret never appears in a text unless the answer itself holds it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "fuzz-check.h"
#include "fuzz.h"
#include "http.h"

#define TOKEN_BODY "{\"access_token\":\"eyJhbGciOiJIUzI1NiJ9.eyJjaWQiOiJzYi1jbG9uZS1kZXN0IWIxIn0." \
	"c2ln\",\"token_type\":\"bearer\",\"expires_in\":43199}"

static struct config cfg, cfg_tenant;
static struct bindings b;
static char base[64];
static const uint8_t *cur_data;
static size_t cur_size;
static int cur_status;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void handler(const char *method, const char *path, struct fuzz_http_reply *r, void *arg)
{
	(void)method;
	(void)arg;
	if (strncmp(path, "/oauth/token", 12) == 0) {
		r->status = 200;
		r->body = TOKEN_BODY;
		r->len = strlen(TOKEN_BODY);
	} else {
		r->status = cur_status;
		r->body = (const char *)cur_data;
		r->len = cur_size;
	}
}

static void config_for_fuzz(struct config *c, const char *tenant_id)
{
	config_defaults(c);
	free(c->cache_dir);
	c->cache_dir = strdup("");
	free(c->tenant_id);
	c->tenant_id = strdup(tenant_id);
	c->http_timeout = 5;
	c->http_retries = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_http_setup(handler, "", base, sizeof(base)) < 0)
		return 1;
	config_for_fuzz(&cfg, "");
	config_for_fuzz(&cfg_tenant, "4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d");
	b.have_destination = 1;
	b.destination.token_url = base;
	b.destination.client_id = "sb-clone-dest!b1";
	b.destination.client_secret = "fuzz-dest-secret";
	b.destination.instance = "dest-lite";
	b.destination_uri = base;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[8] = { 200, 200, 200, 200, 404, 401, 403, 500 };
	struct mail_destination d;
	struct outcome o;
	unsigned h = 2166136261u;
	size_t i;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	cur_data = data;
	cur_size = size;
	cur_status = statuses[h % 8];
	memset(&o, 0, sizeof(o));
	if (dest_resolve((h >> 3) & 1 ? &cfg_tenant : &cfg, &b, "MAIL_ONPREM", &d, &o) == 0) {
		fuzz_assert(cur_status == 200);
		fuzz_check_destination(&d);
		fuzz_assert(d.cache_age == -1 && !d.stale);
	} else {
		fuzz_check_outcome(&o, 0);
		/* the secret never reaches a text, unless the service itself echoes it */
		if (memmem(data, size, "fuzz-dest-secret", 16) == NULL)
			fuzz_assert(strstr(o.text, "fuzz-dest-secret") == NULL);
	}
	dest_free(&d);
	return 0;
}
