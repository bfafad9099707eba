/*
 * dsn - delivery outcomes and the one place they become exit codes.
 *
 * The text of an outcome is one line: control characters are replaced, so
 * it can go into a log line and into the pipe(8) output unchanged.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "dsn.h"

/* dsn_vset - common body of the setters */
static void __attribute__((format(printf, 5, 0)))
dsn_vset(struct outcome *o, enum dsn_class cls, enum outcome_kind kind, const char *status,
	 const char *fmt, va_list ap)
{
	char *p;

	o->cls = cls;
	o->kind = kind;
	snprintf(o->status, sizeof(o->status), "%s", status);
	vsnprintf(o->text, sizeof(o->text), fmt, ap);
	for (p = o->text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

/* the kind of an outcome made by class alone */
static const enum outcome_kind class_kind[] = {
	[DSN_OK] = OUTCOME_OK, [DSN_DEFER] = OUTCOME_TRANSIENT, [DSN_BOUNCE] = OUTCOME_REFUSED,
};

/* dsn_set - fill an outcome of any class */
void dsn_set(struct outcome *o, enum dsn_class cls, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, cls, class_kind[cls], status, fmt, ap);
	va_end(ap);
}

/* dsn_fail - a temporary failure of a kind */
void dsn_fail(struct outcome *o, enum outcome_kind kind, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_DEFER, kind, status, fmt, ap);
	va_end(ap);
}

/* dsn_defer - temporary failure */
void dsn_defer(struct outcome *o, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_DEFER, OUTCOME_TRANSIENT, status, fmt, ap);
	va_end(ap);
}

/* dsn_config - configuration error, 4.3.5 */
void dsn_config(struct outcome *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_DEFER, OUTCOME_CONFIG, "4.3.5", fmt, ap);
	va_end(ap);
}

/* dsn_local - failure of this host, 4.3.0 */
void dsn_local(struct outcome *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_DEFER, OUTCOME_LOCAL, "4.3.0", fmt, ap);
	va_end(ap);
}

/* dsn_auth - credentials or a token refused, 4.7.0 */
void dsn_auth(struct outcome *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_DEFER, OUTCOME_AUTH, "4.7.0", fmt, ap);
	va_end(ap);
}

/* dsn_bounce - permanent failure */
void dsn_bounce(struct outcome *o, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_BOUNCE, OUTCOME_REFUSED, status, fmt, ap);
	va_end(ap);
}

/* dsn_ok - success */
void dsn_ok(struct outcome *o, const char *status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dsn_vset(o, DSN_OK, OUTCOME_OK, status, fmt, ap);
	va_end(ap);
}

/* dsn_valid - length of a leading "C.SSS.DDD" enhanced status code, or 0 */
size_t dsn_valid(const char *s)
{
	size_t i = 0, n;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.')
		return 0;
	for (i = 2, n = 0; isdigit((unsigned char)s[i]); i++, n++)
		;
	if (n < 1 || n > 3 || s[i] != '.')
		return 0;
	for (i++, n = 0; isdigit((unsigned char)s[i]); i++, n++)
		;
	if (n < 1 || n > 3)
		return 0;
	if (s[i] != 0 && s[i] != ' ' && s[i] != '\t')
		return 0;
	return i;
}

static const char *const stage_names[] = {
	[DSN_STAGE_GREETING] = "initial protocol greeting",
	[DSN_STAGE_EHLO] = "EHLO command",
	[DSN_STAGE_HELO] = "HELO command",
	[DSN_STAGE_STARTTLS] = "STARTTLS command",
	[DSN_STAGE_AUTH] = "AUTH command",
	[DSN_STAGE_MAIL] = "MAIL FROM command",
	[DSN_STAGE_RCPT] = "RCPT TO command",
	[DSN_STAGE_DATA] = "DATA command",
	[DSN_STAGE_EOD] = "end of DATA command",
	[DSN_STAGE_RSET] = "RSET command",
	[DSN_STAGE_QUIT] = "QUIT command",
};

/* dsn_stage_name - the stage as Postfix names it in "(in reply to ...)" */
const char *dsn_stage_name(enum dsn_stage stage)
{
	return stage_names[stage];
}

/* dsn_from_reply - an outcome from a relay's SMTP reply */
void dsn_from_reply(struct outcome *o, const char *relay, int code,
		    const char *reply, enum dsn_stage stage)
{
	int cls_digit = code / 100;
	enum dsn_class cls;
	char status[DSN_STATUS_SIZE];
	const char *p = reply;
	size_t n;

	cls = cls_digit == 2 ? DSN_OK : cls_digit == 5 ? DSN_BOUNCE : DSN_DEFER;
	if (cls == DSN_DEFER)
		cls_digit = 4;		/* 1xx/3xx where not expected: temporary */

	/* The enhanced code follows "DDD " or "DDD-" on the first line. */
	if (strlen(p) > 4)
		p += 4;
	n = dsn_valid(p);
	if (n > 0 && n < sizeof(status) && p[0] - '0' == cls_digit) {
		memcpy(status, p, n);
		status[n] = 0;
	} else {
		snprintf(status, sizeof(status), "%d.0.0", cls == DSN_OK ? 2 : cls_digit);
	}
	if (cls == DSN_OK)
		dsn_set(o, cls, status, "%s", reply);
	else
		dsn_set(o, cls, status, "host %s said: %s (in reply to %s)",
			relay, reply, dsn_stage_name(stage));
}

/* dsn_worse - bounce is worse than defer is worse than ok */
int dsn_worse(const struct outcome *a, const struct outcome *b)
{
	return a->cls > b->cls;
}

/* dsn_exit_code - the only mapping from outcome to sysexits */
int dsn_exit_code(const struct outcome *o)
{
	switch (o->cls) {
	case DSN_OK:
		return EX_OK;
	case DSN_BOUNCE:
		return EX_UNAVAILABLE;
	case DSN_DEFER:
	default:
		return EX_TEMPFAIL;
	}
}

/* dsn_operator_exit - dsn_exit_code, with EX_CONFIG for what an operator fixes */
int dsn_operator_exit(const struct outcome *o)
{
	switch (o->kind) {
	case OUTCOME_CONFIG:
	case OUTCOME_LOCAL:
	case OUTCOME_AUTH:
	case OUTCOME_TOKEN_REFUSED:
	case OUTCOME_TLS:
	case OUTCOME_TLS_REQUIRED:
	case OUTCOME_NOT_FOUND:
		return EX_CONFIG;
	default:
		return dsn_exit_code(o);
	}
}
