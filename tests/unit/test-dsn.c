/* test-dsn - outcomes, enhanced status codes, the exit-code mapping */
#include <string.h>
#include <sysexits.h>
#include "tap.h"
#include "dsn.h"

static const struct {
	int code;
	const char *reply;
	enum dsn_stage stage;
	enum dsn_class cls;
	const char *status;
} replies[] = {
	{ 250, "250 2.0.0 Ok: queued as 5", DSN_STAGE_EOD, DSN_OK, "2.0.0" },
	{ 250, "250 Ok", DSN_STAGE_EOD, DSN_OK, "2.0.0" },
	{ 550, "550 5.1.1 <a@b>: User unknown", DSN_STAGE_RCPT, DSN_BOUNCE, "5.1.1" },
	{ 550, "550 User unknown", DSN_STAGE_RCPT, DSN_BOUNCE, "5.0.0" },
	{ 553, "553 sender rejected", DSN_STAGE_MAIL, DSN_BOUNCE, "5.0.0" },
	{ 451, "451 4.3.0 Try again later", DSN_STAGE_MAIL, DSN_DEFER, "4.3.0" },
	{ 451, "451 5.3.0 class mismatch", DSN_STAGE_DATA, DSN_DEFER, "4.0.0" },
	{ 421, "421 closing", DSN_STAGE_GREETING, DSN_DEFER, "4.0.0" },
	{ 354, "354 go ahead", DSN_STAGE_RCPT, DSN_DEFER, "4.0.0" },
	{ 502, "502 HELO refused", DSN_STAGE_HELO, DSN_BOUNCE, "5.0.0" },
	{ 554, "554 5.7.1 rejected", DSN_STAGE_EOD, DSN_BOUNCE, "5.7.1" },
};

int main(void)
{
	struct outcome o, d;
	size_t i;

	for (i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		dsn_from_reply(&o, "relay.example[1.2.3.4]:25", replies[i].code, replies[i].reply,
			       replies[i].stage);
		is_int(o.cls, replies[i].cls, "class of \"%s\"", replies[i].reply);
		is_str(o.status, replies[i].status, "status of \"%s\"", replies[i].reply);
		has_str(o.text, replies[i].reply, "text keeps the reply verbatim: %s", replies[i].reply);
	}
	dsn_from_reply(&o, "relay[1.2.3.4]:25", 550, "550 5.1.1 nope", DSN_STAGE_RCPT);
	is_str(o.text, "host relay[1.2.3.4]:25 said: 550 5.1.1 nope (in reply to RCPT TO command)",
	       "Postfix-style failure text");

	is_int(dsn_valid("4.4.1 text"), 5, "valid 4.4.1");
	is_int(dsn_valid("5.123.456"), 9, "valid 5.123.456");
	is_int(dsn_valid("3.0.0"), 0, "class 3 invalid");
	is_int(dsn_valid("4.4"), 0, "two parts invalid");
	is_int(dsn_valid("4.1234.1"), 0, "four digits invalid");
	is_int(dsn_valid("4.4.1x"), 0, "trailing garbage invalid");

	dsn_defer(&o, "4.4.1", "line\r\nbreak");
	is_str(o.text, "line  break", "control characters never reach a text");
	is_int(dsn_exit_code(&o), EX_TEMPFAIL, "defer exits 75");
	dsn_bounce(&d, "5.1.1", "x");
	is_int(dsn_exit_code(&d), EX_UNAVAILABLE, "bounce exits 69");
	ok(dsn_worse(&d, &o) && !dsn_worse(&o, &d), "bounce is worse than defer");
	dsn_ok(&d, "2.0.0", "ok");
	is_int(dsn_exit_code(&d), EX_OK, "ok exits 0");
	ok(dsn_worse(&o, &d), "defer is worse than ok");

	/* the kind is set by who fails, and decides what callers do */
	is_int(o.kind, OUTCOME_TRANSIENT, "dsn_defer: transient");
	is_int(dsn_operator_exit(&o), EX_TEMPFAIL, "transient: an operator's command exits 75");
	dsn_config(&o, "no host");
	ok(o.kind == OUTCOME_CONFIG && o.cls == DSN_DEFER && strcmp(o.status, "4.3.5") == 0,
	   "dsn_config: 4.3.5, configuration");
	is_int(dsn_exit_code(&o), EX_TEMPFAIL, "configuration: the transport defers (75)");
	is_int(dsn_operator_exit(&o), EX_CONFIG, "configuration: an operator's command exits 78");
	dsn_auth(&o, "HTTP 401");
	ok(o.kind == OUTCOME_AUTH && strcmp(o.status, "4.7.0") == 0, "dsn_auth: 4.7.0, auth");
	is_int(dsn_operator_exit(&o), EX_CONFIG, "refused credentials: exits 78");
	dsn_local(&o, "out of memory");
	ok(o.kind == OUTCOME_LOCAL && strcmp(o.status, "4.3.0") == 0, "dsn_local: 4.3.0, local");
	dsn_fail(&o, OUTCOME_NOT_FOUND, "4.3.5", "destination X not found");
	ok(o.kind == OUTCOME_NOT_FOUND && o.cls == DSN_DEFER, "dsn_fail: the kind given, deferred");
	dsn_fail(&o, OUTCOME_TRANSIENT, "4.4.3", "HTTP 500");
	is_int(dsn_operator_exit(&o), EX_TEMPFAIL, "a status of any text: the kind decides");
	dsn_from_reply(&o, "relay", 550, "550 5.1.1 no such user", DSN_STAGE_RCPT);
	ok(o.kind == OUTCOME_REFUSED && o.cls == DSN_BOUNCE, "a relay's 5xx: refused");
	is_int(dsn_operator_exit(&o), EX_UNAVAILABLE, "refused: exits 69 as the transport would");
	dsn_from_reply(&o, "relay", 451, "451 4.3.0 try later", DSN_STAGE_RCPT);
	is_int(o.kind, OUTCOME_TRANSIENT, "a relay's 4.3.0 is transient, whatever its status says");
	return tap_done();
}
