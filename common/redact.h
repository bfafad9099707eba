/*
 * redact - keep what AUTH sent out of the texts a peer sends back.
 *
 * A relay that refuses AUTH may quote what it got ("535 5.7.8 failed for
 * AHVzZXIA..."): the base64 of "\0user\0password" (PLAIN, RFC 4616), of
 * the password (LOGIN), of "user=U^Aauth=Bearer T^A^A" (XOAUTH2). Such a
 * text would reach the maillog, mailq and a bounce. The SMTP client tells
 * a struct redact what it sent, where it sends it; redact_text() then masks
 * every form of it in a peer text before that text is logged or returned:
 * the raw password and token, the base64 of each, the base64 of each AUTH
 * argument, and a cut-off piece of one of them (at least REDACT_PIECE_MIN
 * bytes) at the start or the end of the text. Masked parts read "********".
 *
 * The AUTH arguments are built here (redact_sasl_plain, redact_sasl_xoauth2)
 * so that what is masked is exactly what was sent. Nothing is copied: the
 * struct points at the caller's secrets, which must outlive it; the forms
 * are computed when a text is checked, and wiped after.
 */
#ifndef BTPRELAY_REDACT_H
#define BTPRELAY_REDACT_H

#include <stddef.h>

#define REDACT_MASK "********"
#define REDACT_PIECE_MIN 8	/* a cut-off piece of a form this long is masked too */

struct redact {
	const char *user;		/* for the PLAIN and XOAUTH2 arguments */
	const char *password;		/* sent with AUTH PLAIN or LOGIN, NULL = not sent */
	const char *token;		/* sent with AUTH XOAUTH2, NULL = not sent */
	int plain;			/* the PLAIN argument was sent */
	int xoauth2;			/* the XOAUTH2 argument was sent */
};

/* redact_sent_plain - AUTH PLAIN went out with user and password */
void redact_sent_plain(struct redact *rd, const char *user, const char *password);
/* redact_sent_login - AUTH LOGIN went out with this password */
void redact_sent_login(struct redact *rd, const char *password);
/* redact_sent_xoauth2 - AUTH XOAUTH2 went out with user and token */
void redact_sent_xoauth2(struct redact *rd, const char *user, const char *token);

/* redact_text - mask in text (NUL-terminated, in a buffer of size) every form of what was sent */
void redact_text(const struct redact *rd, char *text, size_t size);
/*
 * redact_secret - mask one secret in text: raw, base64, URL-encoded
 * (secrets shorter than 4 bytes are left alone: masking them would mask words)
 */
void redact_secret(char *text, size_t size, const char *secret);

/* redact_sasl_plain - "\0user\0password" (RFC 4616), allocated; its length in *len */
char *redact_sasl_plain(const char *user, const char *password, size_t *len);
/* redact_sasl_xoauth2 - "user=U\001auth=Bearer T\001\001", allocated; its length in *len */
char *redact_sasl_xoauth2(const char *user, const char *token, size_t *len);

#endif
