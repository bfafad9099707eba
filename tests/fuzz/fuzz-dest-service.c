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

static struct config cfg, cfg_tenant;
static struct bindings b;
static char base[64];
static struct fuzz_http_input in = { FUZZ_TOKEN_BODY, 0, NULL, 0 };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_http_setup(fuzz_http_input, &in, "", base, sizeof(base)) < 0)
		return 1;
	fuzz_config(&cfg);
	fuzz_config(&cfg_tenant);
	free(cfg_tenant.tenant_id);
	cfg_tenant.tenant_id = strdup("4f1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d");
	fuzz_dest_bindings(&b, base);
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
	in.data = data;
	in.len = size;
	in.status = statuses[h % 8];
	memset(&o, 0, sizeof(o));
	if (dest_resolve((h >> 3) & 1 ? &cfg_tenant : &cfg, &b, "MAIL_ONPREM", &d, &o) == 0) {
		fuzz_assert(in.status == 200);
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
