/*
 * lmtp - the server side of LMTP (RFC 2033), as Postfix's lmtp(8) client
 * speaks it to btprelay-lmtp: command lines parsed into a struct lmtp_cmd,
 * the message read back from its transparent form (dot-unstuffed, up to
 * the lone dot) as an smtp_body_reader, and outcomes written as replies.
 *
 * Nothing here trusts the client: a line is parsed in place and bounded by
 * the caller's buffer, paths with quoted '>' are understood, an address
 * that is no RFC 5321 mailbox (address_check) is refused, unknown
 * parameters are refused, and a message never ends but at its lone dot.
 */
#ifndef BTPRELAY_LMTP_H
#define BTPRELAY_LMTP_H

#include <stddef.h>
#include <sys/types.h>
#include "conn.h"
#include "dsn.h"

#define LMTP_LINE_MAX 2048	/* a command line, CR LF excluded (RFC 5321: 512, with parameters more) */

enum lmtp_verb {
	LMTP_BAD = 0,		/* a command we know, with a syntax error: reply is set */
	LMTP_UNKNOWN,		/* not a command we know */
	LMTP_LHLO, LMTP_MAIL, LMTP_RCPT, LMTP_DATA, LMTP_RSET, LMTP_NOOP, LMTP_QUIT,
	LMTP_XFORWARD,
};

struct lmtp_cmd {
	enum lmtp_verb verb;
	const char *arg;	/* MAIL, RCPT: the address without <> (quotes kept); others: the rest of the line */
	long size;		/* MAIL SIZE=, -1 when not given */
	const char *ident;	/* XFORWARD IDENT= (Postfix's queue id), NULL when not given */
	const char *reply;	/* LMTP_BAD: the reply to send, "501 5.5.4 ..." */
};

/*
 * lmtp_parse - parse one command line (without CR LF) in place: line is
 * modified, and cmd's strings point into it.
 */
void lmtp_parse(char *line, struct lmtp_cmd *cmd);

/*
 * lmtp_body - reads the message after DATA's 354 from the client's
 * connection: CR LF to LF, a leading dot removed, the end at the line
 * that is a lone dot. Bytes after the lone dot stay in the connection for
 * the next command. Use it through lmtp_body_read as an smtp_body_reader;
 * lmtp_body_drain reads what the relay did not take, for the replies to
 * follow in step.
 */
struct lmtp_body {
	struct conn *c;
	int state;		/* where in a line the next byte is (lmtp.c) */
	int done;		/* the lone dot was read */
	int failed;		/* the client's connection failed: c->err says how */
};
void lmtp_body_init(struct lmtp_body *b, struct conn *c);
/* lmtp_body_read - up to n bytes (n >= 2) of the message, 0 at its end, -1 with errno when the connection failed */
ssize_t lmtp_body_read(void *arg, char *buf, size_t n);
/*
 * lmtp_body_read_stuffed - the same, but the message stays in its
 * transparent form (RFC 5321 4.5.2: dot-stuffed, line ends as they came),
 * only the lone dot taken off: for an smtp_body_reader with .stuffed set,
 * so that the relay gets the bytes as they arrived instead of unstuffed
 * here and stuffed again there. Runs of a line are copied whole.
 */
ssize_t lmtp_body_read_stuffed(void *arg, char *buf, size_t n);
/* lmtp_body_drain - read to the lone dot; 0, or -1 when the connection failed */
int lmtp_body_drain(struct lmtp_body *b);

/*
 * lmtp_reply - one reply line for an outcome: 250 for delivered, 451 for a
 * temporary failure, 550 for a permanent one, then the enhanced status
 * code and the text ("relayed: " and the relay's reply on success), made
 * printable and cut to fit a reply line.
 */
void lmtp_reply(const struct outcome *o, char *buf, size_t size);

#endif
