/* test-routes - route sources, domain checks, conflicts, the map's values and file */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tap.h"
#include "log.h"
#include "routemap.h"

static const struct {
	const char *in;
	const char *want;	/* NULL: refused */
} domains[] = {
	{ "corp.example", "corp.example" },
	{ "Corp.Example.", "corp.example" },
	{ ".corp.example", ".corp.example" },
	{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
	{ "under_score.example", "under_score.example" },
	{ "localhost", "localhost" },
	{ "", NULL },
	{ ".", NULL },
	{ "corp..example", NULL },
	{ "..corp.example", NULL },
	{ "corp example", NULL },
	{ "corp.example#x", NULL },
	{ "b\xc3\xbc" "cher.example", NULL },
	{ "a\tb", NULL },
	{ "x.0123456789012345678901234567890123456789012345678901234567890123", NULL },
};

static const struct {
	const char *tmpl, *name, *want;	/* want NULL: refused */
} nexthops[] = {
	{ "btprelay:$destination", "MAIL_ONPREM", "btprelay:MAIL_ONPREM" },
	{ "lmtp:unix:private/btprelay-lmtp-${destination}", "M", "lmtp:unix:private/btprelay-lmtp-M" },
	{ "smtp:[relay.example]", "M", "smtp:[relay.example]" },
	{ "btprelay: $destination", "M", NULL },
	{ "", "M", NULL },
};

/* find - the destination of domain in t, or NULL */
static const struct route *find(const struct route_table *t, const char *domain)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (strcmp(t->v[i].domain, domain) == 0)
			return &t->v[i];
	return NULL;
}

int main(void)
{
	char out[300], value[300], dir[] = "/tmp/test-routes.XXXXXX", map[400], path[400];
	const char *why, *list;
	struct route_table t;
	struct outcome o;
	const struct route *r;
	json_t *acc;
	size_t i;
	int rc, changed;

	log_open("test-routes", "stderr", LOG_LVL_ERROR);
	for (i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
		rc = routes_domain_norm(domains[i].in, strlen(domains[i].in), out, sizeof(out), &why);
		if (domains[i].want != NULL)
			ok(rc == 0 && strcmp(out, domains[i].want) == 0, "domain \"%s\" -> %s",
			   domains[i].in, domains[i].want);
		else
			ok(rc < 0, "domain \"%s\" refused (%s)", domains[i].in, rc < 0 ? why : "-");
	}
	ok(routes_name_ok("MAIL_ONPREM") && routes_name_ok("a.b-c_d"), "usable destination names");
	ok(!routes_name_ok("") && !routes_name_ok("MAIL ONPREM") && !routes_name_ok("a:b"),
	   "names with space, colon or nothing refused");
	for (i = 0; i < sizeof(nexthops) / sizeof(nexthops[0]); i++) {
		rc = routemap_value(nexthops[i].tmpl, nexthops[i].name, value, sizeof(value));
		if (nexthops[i].want != NULL)
			is_str(rc == 0 ? value : "(refused)", nexthops[i].want, "nexthop %s",
			       nexthops[i].tmpl);
		else
			ok(rc < 0, "nexthop \"%s\" refused", nexthops[i].tmpl);
	}

	/* the BTPRELAY_ROUTES and routes_file formats */
	memset(&t, 0, sizeof(t));
	memset(&o, 0, sizeof(o));
	rc = routes_parse_spec(&t, "corp.example=MAIL_ONPREM, .corp.example = MAIL_ONPREM,,",
			       ROUTE_ENV, ROUTES_ENV, &o);
	ok(rc == 0 && t.n == 2, "env: two entries, blanks and empty entries skipped");
	ok(t.n == 2 && strcmp(t.v[1].domain, ".corp.example") == 0
	   && strcmp(t.v[1].destination, "MAIL_ONPREM") == 0
	   && strcmp(t.v[1].origin, ROUTES_ENV) == 0, "env: domain, destination and origin");
	rc = routes_parse_spec(&t, "# routes\nfile.example  MAIL_F\n\nother.example=MAIL_G # x\n",
			       ROUTE_FILE, "/etc/btprelay/routes", &o);
	ok(rc == 0 && t.n == 4 && strcmp(t.v[3].origin, "/etc/btprelay/routes:4") == 0,
	   "file: comments, both forms, FILE:LINE as origin");
	routes_free(&t);
	rc = routes_parse_spec(&t, "a.example=M1,bad..example=M2", ROUTE_ENV, ROUTES_ENV, &o);
	ok(rc < 0 && strcmp(o.status, "4.3.5") == 0, "env: a bad domain is an error (4.3.5)");
	has_str(o.text, "BTPRELAY_ROUTES: entry 2 \"bad..example=M2\": bad domain", "the text names the entry");
	routes_free(&t);
	rc = routes_parse_spec(&t, "x\ny.example\n", ROUTE_FILE, "/r", &o);
	ok(rc < 0, "file: a domain without destination is an error");
	has_str(o.text, "/r:1", "the text names the line");
	routes_free(&t);
	rc = routes_parse_spec(&t, "a.example=MAIL X", ROUTE_ENV, ROUTES_ENV, &o);
	ok(rc < 0, "env: a destination name with a space is an error");
	routes_free(&t);

	/* list answers: properties, precedence of an earlier list, no secrets kept */
	acc = json_array();
	list = "[{\"Name\":\"MAIL_A\",\"Type\":\"MAIL\",\"mail.password\":\"s3cret\","
	       "\"btprelay.domains\":\"a.example, .a.example\"},"
	       "{\"Name\":\"MAIL_N\",\"Type\":\"MAIL\"},"
	       "{\"Name\":\"MAIL_M\",\"Type\":\"MAIL\",\"mail.btprelay.domains\":\"m.example\"},"
	       "7, {\"Name\":3}]";
	rc = routes_parse_list(list, strlen(list), "instance", acc, &o);
	ok(rc == 0 && json_array_size(acc) == 2, "list: the two destinations with the property");
	list = "[{\"Name\":\"MAIL_A\",\"Type\":\"MAIL\",\"btprelay.domains\":\"z.example\"},"
	       "{\"Name\":\"MAIL_B\",\"Type\":\"HTTP\",\"btprelay.domains\":\"b.example\"}]";
	rc = routes_parse_list(list, strlen(list), "subaccount", acc, &o);
	ok(rc == 0 && json_array_size(acc) == 3, "list: a name already listed is not taken again");
	{
		char *dump = json_dumps(acc, 0);

		ok(dump != NULL && strstr(dump, "s3cret") == NULL && strstr(dump, "password") == NULL,
		   "list: nothing but name, type, level and domains is kept");
		free(dump);
	}
	ok(routes_parse_list("{\"ErrorMessage\":\"x\"}", 20, "subaccount", acc, &o) < 0
	   && strcmp(o.status, "4.4.3") == 0, "list: not an array is a 4.4.3 failure");
	memset(&t, 0, sizeof(t));
	ok(routes_add_cockpit(&t, acc) == 2, "cockpit: two destinations give routes (not the HTTP one)");
	ok(t.n == 3 && find(&t, ".a.example") != NULL && find(&t, "z.example") == NULL
	   && find(&t, "b.example") == NULL, "cockpit: instance-level MAIL_A, MAIL_M; not HTTP");
	json_decref(acc);

	/* conflicts: the same winner whatever the order */
	routes_parse_spec(&t, "m.example=MAIL_C", ROUTE_FILE, "/r", &o);
	acc = json_pack("[{s:s,s:s,s:s,s:s}]", "name", "MAIL_0", "type", "MAIL", "level",
			"subaccount", "domains", "a.example m.example");
	routes_add_cockpit(&t, acc);
	json_decref(acc);
	routes_resolve(&t);
	r = find(&t, "a.example");
	ok(r != NULL && strcmp(r->destination, "MAIL_0") == 0 && t.conflicts == 2,
	   "conflict in the cockpit: first by name wins (MAIL_0 before MAIL_A)");
	r = find(&t, "m.example");
	ok(r != NULL && strcmp(r->destination, "MAIL_C") == 0 && r->source == ROUTE_FILE,
	   "conflict across sources: the file wins over the cockpit");
	for (i = 1; i < t.n; i++)
		if (strcmp(t.v[i - 1].domain, t.v[i].domain) >= 0)
			break;
	ok(i == t.n, "resolved: sorted, one route per domain");

	/* the map file */
	ok(mkdtemp(dir) != NULL, "temporary directory");
	snprintf(map, sizeof(map), "nosuch:%s/routes", dir);
	ok(routemap_write(&t, "btprelay:$destination", map, &changed, &o) < 0
	   && strcmp(o.status, "4.3.5") == 0, "an unknown table type is refused");
	ok(routemap_write(&t, "btprelay:$destination", "hash:relative", &changed, &o) < 0,
	   "a relative path is refused");
	snprintf(map, sizeof(map), "hash:%s/routes", dir);
	snprintf(path, sizeof(path), "%s/routes.db", dir);
	if (access("/usr/sbin/postmap", X_OK) == 0) {
		struct stat st;
		FILE *f;

		/* postmap reads main.cf: an empty one of its own, not the host's */
		snprintf(path, sizeof(path), "%s/main.cf", dir);
		if ((f = fopen(path, "w")) != NULL)
			fclose(f);
		setenv("MAIL_CONFIG", dir, 1);
		snprintf(path, sizeof(path), "%s/routes.db", dir);
		rc = routemap_write(&t, "btprelay:$destination", map, &changed, &o);
		ok(rc == 0 && changed && stat(path, &st) == 0, "the map and its .db written");
		rc = routemap_write(&t, "btprelay:$destination", map, &changed, &o);
		ok(rc == 0 && !changed, "the same routes again: nothing rewritten");
		rc = routemap_write(&t, "btprelay x", map, &changed, &o);
		ok(rc < 0 && !changed && strcmp(o.status, "4.3.5") == 0,
		   "a routes_transport with a space: refused, the map stays");
		unlink(path);
	} else {
		ok(1, "# SKIP postmap not installed");
		ok(1, "# SKIP postmap not installed");
		ok(1, "# SKIP postmap not installed");
	}
	snprintf(path, sizeof(path), "%s/routes", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/main.cf", dir);
	unlink(path);
	rmdir(dir);
	routes_free(&t);
	return tap_done();
}
