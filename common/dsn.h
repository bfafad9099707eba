/*
 * dsn - the outcome of a delivery step: class, enhanced status code, text.
 *
 * A failure is described once, where it happens, as a struct outcome, and
 * travels up unchanged. Only dsn_exit_code() turns it into a process exit
 * status (sysexits), so the failure contract of DESIGN.md lives in one place:
 * temporary (4.X.X) -> EX_TEMPFAIL, permanent (5.X.X) -> EX_UNAVAILABLE.
 */
#ifndef BTPRELAY_DSN_H
#define BTPRELAY_DSN_H

#include <stddef.h>

enum dsn_class {
	DSN_OK = 0,		/* 2.X.X: delivered */
	DSN_DEFER,		/* 4.X.X: try again later, keep queued */
	DSN_BOUNCE,		/* 5.X.X: never deliverable */
};

#define DSN_STATUS_SIZE 16
#define DSN_TEXT_SIZE 1024

struct outcome {
	enum dsn_class cls;
	char status[DSN_STATUS_SIZE];	/* enhanced status code, "4.4.1" */
	char text[DSN_TEXT_SIZE];	/* one line, no CR/LF: what happened */
};

/* dsn_set - fill an outcome; status must be a valid X.Y.Z of the class */
void dsn_set(struct outcome *o, enum dsn_class cls, const char *status,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* dsn_defer - temporary failure with status 4.X.X */
void dsn_defer(struct outcome *o, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* dsn_bounce - permanent failure with status 5.X.X */
void dsn_bounce(struct outcome *o, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* dsn_ok - success, status 2.X.X */
void dsn_ok(struct outcome *o, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * dsn_from_reply - outcome for an SMTP reply from the relay at a stage.
 * code is the 3-digit reply code, reply the reply text verbatim (lines
 * joined by spaces, code included). The enhanced status code is taken from
 * the reply when present and of the same class, otherwise X.0.0 of the
 * reply's class, as Postfix's smtp client does (2xx -> 2.0.0, 4xx -> 4.0.0,
 * 5xx -> 5.0.0; anything else is temporary). The text is "host said: <reply> (in reply to <stage>)".
 */
enum dsn_stage {
	DSN_STAGE_GREETING, DSN_STAGE_EHLO, DSN_STAGE_HELO, DSN_STAGE_STARTTLS, DSN_STAGE_AUTH,
	DSN_STAGE_MAIL, DSN_STAGE_RCPT, DSN_STAGE_DATA, DSN_STAGE_EOD,
	DSN_STAGE_RSET, DSN_STAGE_QUIT,
};
const char *dsn_stage_name(enum dsn_stage stage);	/* "RCPT TO command" */
void dsn_from_reply(struct outcome *o, const char *relay, int code,
		    const char *reply, enum dsn_stage stage);

/* dsn_valid - whether s starts with a valid enhanced status code; returns its length or 0 */
size_t dsn_valid(const char *s);
/* dsn_worse - nonzero when a is worse than b (bounce > defer > ok) */
int dsn_worse(const struct outcome *a, const struct outcome *b);
/* dsn_exit_code - the sysexits code for an outcome: 0, EX_TEMPFAIL or EX_UNAVAILABLE */
int dsn_exit_code(const struct outcome *o);

#endif
