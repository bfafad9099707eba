/*
 * fuzz-check - the invariants of a resolved destination, shared by the
 * targets that end in struct mail_destination (header-only).
 */
#ifndef BTPRELAY_FUZZ_CHECK_H
#define BTPRELAY_FUZZ_CHECK_H

#include <string.h>

#include "destination.h"
#include "fuzz.h"

/* no_crlf - NULL, or a string without CR and LF (it goes into SMTP commands) */
static inline int no_crlf(const char *s)
{
	return s == NULL || strpbrk(s, "\r\n") == NULL;
}

/* fuzz_check_destination - what deliver() relies on after dest_from_properties() said 0 */
static inline void fuzz_check_destination(const struct mail_destination *d)
{
	const char *p;

	fuzz_assert(d->name != NULL && *d->name != '\0' && strlen(d->name) <= 200);
	fuzz_assert(no_crlf(d->name));
	fuzz_assert(d->source != NULL);
	fuzz_assert(d->host != NULL && *d->host != '\0' && strlen(d->host) <= 255);
	/*
	 * What dest_fill() promises: no CR, LF, space or tab. Other control
	 * bytes (0x01, 0x7f) pass it and fail later at the resolver or proxy.
	 */
	fuzz_assert(no_crlf(d->host) && strpbrk(d->host, " \t") == NULL);
	fuzz_assert(d->port >= 1 && d->port <= 65535);
	fuzz_assert(d->onpremise == 0 || d->onpremise == 1);
	fuzz_assert(d->smtps == 0 || d->smtps == 1);
	fuzz_assert(d->auth >= -1 && d->auth <= 1);
	fuzz_assert(d->starttls_enable >= -1 && d->starttls_enable <= 1);
	fuzz_assert(d->starttls_required >= -1 && d->starttls_required <= 1);
	fuzz_assert(no_crlf(d->from) && no_crlf(d->user) && no_crlf(d->password));
	fuzz_assert(no_crlf(d->location_id) && no_crlf(d->authentication));
	fuzz_assert(d->location_id == NULL || strlen(d->location_id) <= 189);
	if (d->oauth_token.value != NULL) {
		for (p = d->oauth_token.value; *p; p++)
			fuzz_assert(*p > 0x20 && *p < 0x7f);
		fuzz_assert(d->oauth_token.type != NULL && no_crlf(d->oauth_token.type));
	}
	/* certificates[]: at most 16, base64 without white space, at most 64 KiB decoded */
	fuzz_assert(d->ncertificates <= 16 && (d->ncertificates == 0) == (d->certificates == NULL));
	for (size_t i = 0; i < d->ncertificates; i++) {
		const struct dest_certificate *c = &d->certificates[i];
		size_t len = c->content ? strlen(c->content) : 0;

		fuzz_assert(len > 0 && len % 4 == 0 && len <= 87384);
		fuzz_assert(strpbrk(c->content, " \t\r\n") == NULL);
		for (p = c->name; p != NULL && *p; p++)
			fuzz_assert((unsigned char)*p >= 0x20 && *p != 0x7f);
		fuzz_assert(c->name == NULL || strlen(c->name) <= 200);
	}
}

#endif
