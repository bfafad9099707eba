/*
 * address - the syntax of an envelope address as RFC 5321 4.1.2 defines a
 * Mailbox: Local-part "@" (Domain / address-literal), the local part a
 * Dot-string or a Quoted-string (with quoted-pairs), and RFC 6531's UTF-8
 * in atoms, quoted strings and domain labels (whether the relay takes
 * UTF-8 is a separate question: SMTPUTF8).
 *
 * One check for every front end (btprelay-transport, btprelay-lmtp,
 * `btprelay send`), so that nothing they hand to a relay can end the path
 * early and add ESMTP parameters ("x> NOTIFY=...", an unbalanced quote, a
 * backslash outside quotes) or commands (CR, LF).
 */
#ifndef BTPRELAY_ADDRESS_H
#define BTPRELAY_ADDRESS_H

#define ADDRESS_MAX 986		/* RFC 5321 4.5.3.1: "RCPT TO:<" ">" CRLF in a 1000-byte line */

enum address_role {
	ADDRESS_SENDER,		/* MAIL FROM: "" (the null reverse-path) is valid */
	ADDRESS_RECIPIENT,	/* RCPT TO: "Postmaster" without a domain is valid (RFC 5321 4.1.1.3) */
};

/*
 * address_check - NULL when a (without the angle brackets) may be given
 * to a relay in the role, else why not, as a short text for outcomes:
 * "contains CR or LF", "an unbalanced double quote", ...
 */
const char *address_check(const char *a, enum address_role role);

#endif
