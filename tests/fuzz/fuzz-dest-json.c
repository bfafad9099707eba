/*
 * fuzz-dest-json - destinations as JSON: the input is a destinations file
 * (btprelay.conf(5) destinations_file: an array of raw property objects or of
 * {name,type,originalProperties}) or one destination object.
 * dest_from_properties() runs on the parsed value and on each array entry,
 * then dest_resolve() reads the input as the configured destinations_file
 * (0600) and looks up MAIL_ONPREM and the first entry's name.
 *
 * Properties: failures defer 4.3.5 with a one-line text; a destination
 * that is accepted has everything deliver() relies on (name, host without
 * spaces, port 1-65535, booleans) and no CR or LF in any value that can
 * reach an SMTP command or the proxy handshake (header injection).
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "fuzz-check.h"
#include "fuzz.h"

#define ENTRIES_MAX 64

static struct config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	fuzz_config(&cfg);
	return 0;
}

/* props - dest_from_properties on one value */
static void props(const json_t *v)
{
	struct mail_destination d;
	struct outcome o;

	if (dest_from_properties(v, "fuzz input", &d, &o) == 0) {
		fuzz_check_destination(&d);
		dest_free(&d);
	} else {
		fuzz_check_outcome(&o, 0);
		fuzz_assert(strcmp(o.status, "4.3.5") == 0);
		fuzz_assert(d.name == NULL && d.host == NULL && d.password == NULL);
	}
}

/* resolve - the lookup chain with the input as destinations_file */
static void resolve(const char *name)
{
	struct bindings b;
	struct mail_destination d;
	struct outcome o;

	memset(&b, 0, sizeof(b));
	if (dest_resolve(&cfg, &b, name, &d, &o) == 0) {
		fuzz_check_destination(&d);
		fuzz_assert(strcmp(d.name, name) == 0);
		dest_free(&d);
	} else {
		fuzz_check_outcome(&o, 0);
		dest_free(&d);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *root, *v, *orig;
	const char *first = NULL;
	char name[256];
	size_t i;

	root = json_loadb((const char *)data, size, 0, NULL);
	if (root != NULL) {
		props(root);
		if (json_is_array(root)) {
			json_array_foreach(root, i, v) {
				if (i >= ENTRIES_MAX)
					break;
				props(v);
				if (first == NULL) {
					first = json_string_value(json_object_get(v, "Name"));
					orig = json_object_get(v, "originalProperties");
					if (first == NULL)
						first = json_string_value(json_object_get(orig, "Name"));
					if (first == NULL)
						first = json_string_value(json_object_get(v, "name"));
				}
			}
		}
	}
	snprintf(name, sizeof(name), "%s", first && *first && strlen(first) < 200 ? first : "");
	json_decref(root);

	free(cfg.destinations_file);
	cfg.destinations_file = strdup(fuzz_tmpfile(".json", data, size));
	resolve("MAIL_ONPREM");
	if (name[0] != '\0' && strcmp(name, "MAIL_ONPREM") != 0)
		resolve(name);
	return 0;
}
