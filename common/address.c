/*
 * address - RFC 5321 Mailbox syntax (4.1.2), with RFC 6531's UTF-8.
 *
 * Mailbox       = Local-part "@" ( Domain / address-literal )
 * Local-part    = Dot-string / Quoted-string
 * Dot-string    = Atom *("." Atom), Atom = 1*atext
 * Quoted-string = DQUOTE *(qtextSMTP / "\" %d32-126) DQUOTE
 * Domain        = sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]
 * address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" 1*dcontent ) "]"
 *
 * A byte >= 0x80 counts as UTF8-non-ascii wherever RFC 6531 allows it
 * (atext, qtext, labels): whether the relay takes it is SMTPUTF8's
 * question. The checks that name the worst problems (CR/LF, length,
 * control characters) come first, so that the text says what matters.
 */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "address.h"

/* address_atext - RFC 5322 atext, and UTF-8 */
static int address_atext(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
	       || ch >= 0x80 || (ch != 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/* address_letdig - a letter, a digit, or UTF-8 (a U-label) */
static int address_letdig(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
	       || ch >= 0x80;
}

/*
 * address_local - the local part at *p: a Dot-string or a Quoted-string.
 * NULL with *p at the '@' (or the end), else why it is malformed.
 */
static const char *address_local(const char **p)
{
	const char *s = *p;

	if (*s == '"') {
		for (s++; *s != '"'; s++) {
			if (*s == '\0')
				return "an unbalanced double quote";
			if (*s == '\\') {
				s++;
				if (*s == '\0')
					return "an unbalanced double quote";
			}
		}
		s++;
		if (*s != '@' && *s != '\0')
			return "text after the quoted local part";
		*p = s;
		return NULL;
	}
	for (;;) {
		if (!address_atext((unsigned char)*s)) {
			if (*s == '.' || *s == '@' || *s == '\0')
				return "an empty part in the local part (a dot at its start or end, "
				       "or two in a row)";
			return *s == '"' ? "a double quote inside the local part"
			       : "a character that must be quoted in the local part";
		}
		while (address_atext((unsigned char)*s))
			s++;
		if (*s != '.')
			break;
		s++;
	}
	if (*s != '@' && *s != '\0')
		return *s == '"' ? "a double quote inside the local part"
		       : "a character that must be quoted in the local part";
	*p = s;
	return NULL;
}

/*
 * address_domain - Domain: labels of letters, digits and inner hyphens,
 * dot-separated (RFC 5321 4.1.2). An underscore is taken too, as Postfix
 * takes it: DNS names may hold one, and it cannot inject anything.
 */
static const char *address_domain(const char *s)
{
	for (;;) {
		const char *label = s;

		if (!address_letdig((unsigned char)*s) && *s != '_')
			return "an invalid domain";
		while (address_letdig((unsigned char)*s) || *s == '-' || *s == '_')
			s++;
		if (s[-1] == '-' || s - label > 63)
			return "an invalid domain";
		if (*s == '\0')
			return NULL;
		if (*s != '.')
			return "an invalid domain";
		s++;
	}
}

/* address_literal - "[...]": IPv4, "IPv6:" IPv6, or a standardized tag ":" dcontent */
static const char *address_literal(const char *s)
{
	char buf[64];
	unsigned char a[16];
	size_t len = strlen(s), i, tag;

	if (len < 3 || s[len - 1] != ']')
		return "an invalid address literal";
	s++;
	len -= 2;
	if (len < sizeof(buf)) {
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (inet_pton(AF_INET, buf, a) == 1)
			return NULL;
		if (len > 5 && strncasecmp(buf, "IPv6:", 5) == 0)
			return inet_pton(AF_INET6, buf + 5, a) == 1 ? NULL
			       : "an invalid address literal";
	}
	/* General-address-literal: Ldh-str ":" 1*dcontent (printable, no "[", "\", "]") */
	for (tag = 0; tag < len && (address_letdig((unsigned char)s[tag]) || s[tag] == '-'); tag++)
		;
	if (tag == 0 || tag >= len - 1 || s[tag] != ':' || s[tag - 1] == '-')
		return "an invalid address literal";
	for (i = tag + 1; i < len; i++)
		if (s[i] < 33 || s[i] > 126 || s[i] == '[' || s[i] == '\\' || s[i] == ']')
			return "an invalid address literal";
	return NULL;
}

const char *address_check(const char *a, enum address_role role)
{
	const char *p;
	const char *why;

	if (strpbrk(a, "\r\n"))
		return "contains CR or LF";
	if (strlen(a) > ADDRESS_MAX)
		return "longer than 986 bytes";
	for (p = a; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "contains a control character";
	if (*a == '\0')
		return role == ADDRESS_SENDER ? NULL : "empty";
	p = a;
	if ((why = address_local(&p)) != NULL)
		return why;
	if (*p == '\0') {
		if (role == ADDRESS_RECIPIENT && strcasecmp(a, "postmaster") == 0)
			return NULL;
		return "no @domain";
	}
	p++;
	return *p == '[' ? address_literal(p) : address_domain(p);
}
