/*
 * fuzz-routes-list - the Destination Service's list answers
 * (subaccountDestinations, instanceDestinations: a JSON array of flat
 * configurations) through routes_collect(): a loopback server issues a good
 * token and answers both lists with the input (200 mostly; else 404, 401,
 * 403 or 500 from a hash of the input; the instance list 404 half the
 * time), no cache. The same input is also read as BTPRELAY_ROUTES and as a
 * routes_file (routes_parse_spec).
 *
 * Properties: failures defer with a one-line text; a table that comes
 * back is sorted with one route per domain, every domain normalizes to
 * itself (no white space or control bytes: it is a Postfix map key), every
 * destination name is usable in a map value, and the default
 * routes_transport makes a value of it; the client secret never appears in
 * a text, nor does a mail.password of the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "conf.h"
#include "fuzz.h"
#include "http.h"
#include "routemap.h"

static struct config cfg;
static struct bindings b;
static char base[64];
static struct fuzz_http_input in = { FUZZ_TOKEN_BODY, 0, NULL, 0 };
static int instance_404;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* handler - fuzz_http_input, but the instance level may have no list (404) */
static void handler(const char *method, const char *path, struct fuzz_http_reply *r, void *arg)
{
	if (instance_404 && strstr(path, "instanceDestinations") != NULL) {
		r->status = 404;
		r->body = "{}";
		r->len = 2;
	} else {
		fuzz_http_input(method, path, r, arg);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_http_setup(handler, &in, "", base, sizeof(base)) < 0)
		return 1;
	fuzz_config(&cfg);
	fuzz_dest_bindings(&b, base);
	return 0;
}

/* check_table - the properties of a table that came back */
static void check_table(const struct route_table *t)
{
	char norm[ROUTES_DOMAIN_MAX + 2], value[600];
	const char *why;
	size_t i;

	fuzz_assert(t->n <= ROUTES_MAX);
	for (i = 0; i < t->n; i++) {
		fuzz_assert(routes_domain_norm(t->v[i].domain, strlen(t->v[i].domain), norm,
					       sizeof(norm), &why) == 0);
		fuzz_assert(strcmp(norm, t->v[i].domain) == 0);
		fuzz_assert(strcspn(norm, " \t\r\n#") == strlen(norm));
		fuzz_assert(routes_name_ok(t->v[i].destination));
		fuzz_assert(routemap_value("btprelay:$destination", t->v[i].destination, value,
					   sizeof(value)) == 0);
		fuzz_assert(!fuzz_has_ctl(t->v[i].origin));
		if (i > 0)
			fuzz_assert(strcmp(t->v[i - 1].domain, t->v[i].domain) < 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[8] = { 200, 200, 200, 200, 404, 401, 403, 500 };
	struct route_table t;
	struct outcome o;
	unsigned h = 2166136261u;
	char *text;
	size_t i;

	for (i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	in.data = data;
	in.len = size;
	in.status = statuses[h % 8];
	instance_404 = (h >> 3) & 1;
	memset(&o, 0, sizeof(o));
	unsetenv(ROUTES_ENV);
	if (routes_collect(&cfg, &b, &t, &o) == 0) {
		fuzz_assert(in.status == 200 || in.status == 404);
		check_table(&t);
	} else {
		fuzz_check_outcome(&o, 0);
		if (memmem(data, size, "fuzz-dest-secret", 16) == NULL)
			fuzz_assert(strstr(o.text, "fuzz-dest-secret") == NULL);
		fuzz_assert(strstr(o.text, "s3cret-relay") == NULL);
	}
	routes_free(&t);

	/* the same bytes as BTPRELAY_ROUTES and as a routes file */
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	for (i = 0; i < 2; i++) {
		memset(&t, 0, sizeof(t));
		memset(&o, 0, sizeof(o));
		if (routes_parse_spec(&t, text, i == 0 ? ROUTE_ENV : ROUTE_FILE, "fuzz", &o) == 0) {
			routes_resolve(&t);
			check_table(&t);
		} else {
			fuzz_check_outcome(&o, 0);
		}
		routes_free(&t);
	}
	free(text);
	return 0;
}
