/*
 * fuzz-config - btprelay.conf: the input is written to a private file
 * (0600) and read by config_load(); when it declares destinations
 * (destination.NAME.PROPERTY lines), the first one is resolved through
 * the lookup chain (config -> JSON properties -> dest_from_properties).
 *
 * Properties: a refused file gives "FILE:LINE: ..." or "FILE: ..." as one
 * printable line and leaves nothing to free; an accepted one has every
 * value inside its type's range (durations >= 1, deadline below Postfix's
 * transport_time_limit, ports, log target, tenant values that can go into
 * a host name and a header) and well-formed destination keys.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "conf.h"
#include "destination.h"
#include "fuzz-check.h"
#include "fuzz.h"

FUZZ_TARGET_QUIET

static int chars_ok(const char *s, const char *extra)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr(extra, *s) == NULL)
			return 0;
	return 1;
}

static void check_config(const struct config *c)
{
	size_t i;
	const char *p;

	fuzz_assert(c->http_timeout >= 1 && c->smtp_connect_timeout >= 1);
	fuzz_assert(c->smtp_command_timeout >= 1 && c->smtp_data_done_timeout >= 1);
	fuzz_assert(c->delivery_deadline >= 1 && c->delivery_deadline < 1000);
	fuzz_assert(c->http_retries >= 0 && c->http_retries <= 10);
	fuzz_assert(c->token_refresh_margin >= 0 && c->destination_cache_ttl >= 0);
	fuzz_assert(c->destination_stale_ttl >= 0);
	fuzz_assert(c->milter_lookup_timeout >= 1 && c->milter_cache_ttl >= 1);
	fuzz_assert(c->proxy_port <= 65535);
	fuzz_assert(c->log_level >= 0 && c->log_level <= 3);
	fuzz_assert(strcmp(c->log_target, "syslog") == 0 || strcmp(c->log_target, "stderr") == 0
		    || c->log_target[0] == '/');
	fuzz_assert(c->smtp_tls_level <= TLS_LEVEL_ENCRYPT);
	fuzz_assert(c->destination_selection <= DEST_SELECT_ALWAYS_SUBSCRIBER);
	fuzz_assert(strlen(c->tenant_subdomain) <= 63 && chars_ok(c->tenant_subdomain, "-"));
	fuzz_assert(chars_ok(c->tenant_id, "-._") && strlen(c->tenant_id) <= 200);
	fuzz_assert(c->milter_trace_header == 0 || c->milter_trace_header == 1);
	for (i = 0; i < c->ndest_props; i++) {
		const struct config_dest_prop *dp = &c->dest_props[i];

		fuzz_assert(*dp->destination != '\0' && strlen(dp->destination) <= 200);
		fuzz_assert(chars_ok(dp->destination, "_-"));
		fuzz_assert(*dp->property != '\0' && strcmp(dp->property, "Name") != 0);
		for (p = dp->property; *p; p++)
			fuzz_assert(*p > 0x20 && *p < 0x7f);
		/* getline() ends a line at LF; a CR inside a value stays (dest_check_values refuses it) */
		fuzz_assert(strchr(dp->value, '\n') == NULL);
		fuzz_assert(dp->line >= 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_tmpfile(".conf", data, size);
	struct config cfg;
	struct bindings b;
	struct mail_destination d;
	struct outcome o;
	char err[1024];

	err[0] = '\0';
	if (config_load(&cfg, path, err, sizeof(err)) < 0) {
		fuzz_assert(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':');
		fuzz_assert(!fuzz_has_ctl(err));
		fuzz_assert(cfg.path == NULL && cfg.dest_props == NULL);
		return 0;
	}
	check_config(&cfg);
	if (cfg.ndest_props > 0) {
		/* only the configuration's own destinations: no file, no service */
		free(cfg.destinations_file);
		cfg.destinations_file = strdup("");
		memset(&b, 0, sizeof(b));
		if (dest_resolve(&cfg, &b, cfg.dest_props[0].destination, &d, &o) == 0)
			fuzz_check_destination(&d);
		else
			fuzz_check_outcome(&o, 0);
		dest_free(&d);
	}
	config_free(&cfg);
	return 0;
}
