/*
 * dsn - the outcome of a delivery step: class, kind, enhanced status code
 * (RFC 3463), text.
 *
 * A failure is described once, where it happens, as a struct outcome, and
 * travels up unchanged. Its kind says what callers do about it (a stale
 * cache entry may stand in, the milter calls the destination unusable, an
 * operator's command exits EX_CONFIG); nobody reads that from the status
 * text. Only dsn_exit_code() turns an outcome into a process exit status
 * (sysexits), the contract of btprelay-transport(8) in one place:
 * temporary (4.X.X) -> EX_TEMPFAIL, permanent (5.X.X) -> EX_UNAVAILABLE;
 * dsn_operator_exit() refines it for btprelay(8).
 */
#ifndef BTPRELAY_DSN_H
#define BTPRELAY_DSN_H

#include <stddef.h>

enum dsn_class {
	DSN_OK = 0,		/* 2.X.X: delivered */
	DSN_DEFER,		/* 4.X.X: try again later, keep queued */
	DSN_BOUNCE,		/* 5.X.X: never deliverable */
};

/* outcome_kind - what failed, set where it failed; what callers act on */
enum outcome_kind {
	OUTCOME_OK = 0,		/* delivered, found, fetched */
	OUTCOME_TRANSIENT,	/* may go away by itself: a service or the network failed or
				   was slow, the relay said 4xx (a stale cache entry may
				   stand in). The kind of dsn_defer() */
	OUTCOME_OUT_OF_TIME,	/* this process's own deadline ran out: as TRANSIENT, but
				   not noted for other processes */
	OUTCOME_CONFIG,		/* an operator fixes it: configuration, bindings, destination
				   properties (4.3.5, dsn_config) */
	OUTCOME_LOCAL,		/* this host failed: out of memory, no libcurl (4.3.0, dsn_local) */
	OUTCOME_AUTH,		/* credentials or a token refused, by a service, the proxy or
				   the relay (4.7.0, dsn_auth) */
	OUTCOME_TOKEN_REFUSED,	/* a service refused our OAuth token (HTTP 401): as AUTH,
				   and worth one more try with a new token */
	OUTCOME_TLS,		/* TLS with the relay failed: handshake, certificate (4.7.5) */
	OUTCOME_TLS_REQUIRED,	/* TLS is required and cannot be had: not offered, refused,
				   no context */
	OUTCOME_NOT_FOUND,	/* no destination of that name in any source */
	OUTCOME_REFUSED,	/* permanent: the relay refused (5xx), or the message can
				   never go as it is. The kind of dsn_bounce() */
};

#define DSN_STATUS_SIZE 16
#define DSN_TEXT_SIZE 1024

struct outcome {
	enum dsn_class cls;
	enum outcome_kind kind;
	char status[DSN_STATUS_SIZE];	/* enhanced status code, "4.4.1" */
	char text[DSN_TEXT_SIZE];	/* one line, no CR/LF: what happened */
};

/*
 * dsn_set - fill an outcome; status must be a valid X.Y.Z of the class.
 * The kind is the class's: OK, TRANSIENT or REFUSED.
 */
void dsn_set(struct outcome *o, enum dsn_class cls, const char *status,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* dsn_fail - a temporary failure (status 4.X.X) of this kind */
void dsn_fail(struct outcome *o, enum outcome_kind kind, const char *status,
	      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* dsn_defer - temporary failure with status 4.X.X, kind OUTCOME_TRANSIENT */
void dsn_defer(struct outcome *o, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* dsn_config - a configuration error an operator fixes: 4.3.5, OUTCOME_CONFIG */
void dsn_config(struct outcome *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* dsn_local - a failure of this host: 4.3.0, OUTCOME_LOCAL */
void dsn_local(struct outcome *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* dsn_auth - credentials or a token refused: 4.7.0, OUTCOME_AUTH */
void dsn_auth(struct outcome *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
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
/*
 * dsn_operator_exit - the exit status of an operator's command
 * (btprelay(8)): dsn_exit_code(), except that what the operator fixes
 * (configuration, a missing destination, credentials, this host, TLS) is
 * EX_CONFIG
 */
int dsn_operator_exit(const struct outcome *o);

#endif
