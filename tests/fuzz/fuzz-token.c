/*
 * fuzz-token - the token service's answer (RFC 6749 section 5.1): the input is
 * the body of the HTTP response that a loopback server gives libcurl, and
 * oauth_token_get() parses it (access_token, expires_in; error and
 * error_description of a refusal). The status comes from a hash of the
 * input: 200 mostly, else 400, 401 (then the form and HTTP Basic tries)
 * or 500. The HTTP framing itself is libcurl's, not ours.
 *
 * Properties: a token is non-empty visible ASCII of at most 16 KiB that
 * expires in the future; every failure defers (4.4.3 or 4.7.0) with a
 * one-line text that never quotes the client secret or the token.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "http.h"
#include "oauth.h"

#define SECRET "fuzz-client-secret-7f3a9c"

static struct oauth_client client;
static struct http_options http;
static char url[64];
static struct fuzz_http_input in;	/* no token: the input is the token service's answer */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_http_setup(fuzz_http_input, &in, "/uaa", url, sizeof(url)) < 0)
		return 1;
	client.token_url = url;
	client.client_id = "sb-clone-conn!b2";
	client.client_secret = SECRET;
	client.instance = "conn-lite";
	http.timeout = 5;
	http.retries = 0;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[8] = { 200, 200, 200, 200, 200, 400, 401, 500 };
	struct oauth_token tok;
	struct outcome o;
	unsigned h = 2166136261u;
	const char *p;
	size_t i;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	in.data = data;
	in.len = size;
	in.status = statuses[h % 8];
	memset(&o, 0, sizeof(o));
	if (oauth_token_get(&client, &http, "connectivity", &tok, &o) == 0) {
		fuzz_assert(in.status == 200);
		fuzz_assert(tok.access_token != NULL && *tok.access_token != '\0');
		fuzz_assert(strlen(tok.access_token) <= 16 * 1024);
		for (p = tok.access_token; *p; p++)
			fuzz_assert(*p > 0x20 && *p < 0x7f);
		fuzz_assert(tok.expires_at >= time(NULL) - 1);
		oauth_token_free(&tok);
	} else {
		fuzz_check_outcome(&o, 0);
		fuzz_assert(strcmp(o.status, "4.4.3") == 0 || strcmp(o.status, "4.7.0") == 0);
		fuzz_assert(strstr(o.text, SECRET) == NULL);
		fuzz_assert(tok.access_token == NULL);
	}
	return 0;
}
