/*
 * redact - mask what AUTH sent in the texts a peer sends back (redact.h).
 *
 * One pass over the text: at each position the longest form that starts
 * there is masked, or its longest piece of REDACT_PIECE_MIN bytes or more
 * (a relay that quotes only the start of a long argument, or a text cut
 * short by us); at the very start also a piece that ends a form (a quote
 * whose start was cut). What is masked is never looked at again, so a
 * secret that looks like the mask cannot loop. A longer result is cut to
 * the buffer. Then every base64 word of the text is masked whole when it
 * decodes to bytes holding a raw secret (a peer's own base64 of it, at any
 * alignment) or holds REDACT_RUN_MIN bytes in a row of a form (a middle
 * piece: a quote wrapped over several reply lines).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"
#include "util.h"

#define REDACT_FORMS_MAX 8
#define REDACT_RAW_MIN 4	/* shorter secrets are not masked raw: they would mask words */
#define REDACT_RUN_MIN 16	/* a base64 word sharing this many bytes in a row with a form */

struct forms {
	char *form[REDACT_FORMS_MAX];
	size_t len[REDACT_FORMS_MAX];
	int raw[REDACT_FORMS_MAX];	/* the secret itself, looked for inside base64 words */
	size_t n;
};

/* forms_add - keep an allocated form (taken over; NULL is ignored) */
static void forms_add(struct forms *f, char *form, size_t len)
{
	if (form == NULL)
		return;
	if (f->n >= REDACT_FORMS_MAX || len < REDACT_RAW_MIN) {
		explicit_bzero(form, len);
		free(form);
		return;
	}
	f->form[f->n] = form;
	f->raw[f->n] = 0;
	f->len[f->n++] = len;
}

/* forms_base64 - the base64 of data as a new form */
static void forms_base64(struct forms *f, const void *data, size_t len)
{
	size_t size = (len + 2) / 3 * 4 + 1;
	char *b;

	if (len == 0)
		return;
	b = xmalloc(size);
	if (base64_encode(data, len, b, size) == 0) {
		free(b);
		return;
	}
	forms_add(f, b, size - 1);
}

/* forms_raw - a copy of s as a new form */
static void forms_raw(struct forms *f, const char *s)
{
	size_t n = f->n;

	if (s == NULL)
		return;
	forms_add(f, xstrdup(s), strlen(s));
	if (f->n > n)
		f->raw[n] = 1;
}

/* forms_urlencoded - s percent-encoded (RFC 3986 unreserved kept), when that differs from s */
static void forms_urlencoded(struct forms *f, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s), i, n = 0;
	char *u = xmalloc(3 * len + 1);

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
		    || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			u[n++] = (char)ch;
		} else {
			u[n++] = '%';
			u[n++] = hex[ch >> 4];
			u[n++] = hex[ch & 15];
		}
	}
	u[n] = '\0';
	if (n == len) {
		free(u);
		return;
	}
	forms_add(f, u, n);
}

/* forms_free - wipe and release every form */
static void forms_free(struct forms *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		explicit_bzero(f->form[i], f->len[i]);
		free(f->form[i]);
	}
	f->n = 0;
}

/* piece_at - how many bytes of a form start at p: all, a piece long enough, or 0 */
static size_t piece_at(const struct forms *f, const char *p, size_t left)
{
	size_t i, m, best = 0;

	for (i = 0; i < f->n; i++) {
		if (f->form[i][0] != p[0])
			continue;
		for (m = 0; m < f->len[i] && m < left && p[m] == f->form[i][m]; m++)
			;
		if ((m == f->len[i] || m >= REDACT_PIECE_MIN) && m > best)
			best = m;
	}
	return best;
}

/* piece_ending - how many bytes at the start of text end a form (a cut-off quote) */
static size_t piece_ending(const struct forms *f, const char *text, size_t len)
{
	size_t i, k, best = 0;

	for (i = 0; i < f->n; i++)
		for (k = f->len[i] - 1 < len ? f->len[i] - 1 : len; k >= REDACT_PIECE_MIN && k > best;
		     k--)
			if (memcmp(text, f->form[i] + f->len[i] - k, k) == 0) {
				best = k;
				break;
			}
	return best;
}

/* is_b64 - a byte of the base64 alphabet (RFC 4648 section 4), padding included */
static int is_b64(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
	       || ch == '+' || ch == '/' || ch == '=';
}

/*
 * word_hides - whether a base64 word decodes to bytes that hold a raw
 * secret: a peer's own base64 (an XOAUTH2 error, a quoted SASL exchange)
 * that carries it at any alignment
 */
static int word_hides(const struct forms *f, const char *w, size_t len)
{
	size_t i, cap = len / 4 * 3 + 1;
	unsigned char *dec;
	ssize_t n;
	int found = 0;

	if (len < REDACT_PIECE_MIN || len % 4 != 0)
		return 0;
	dec = xmalloc(cap);
	n = base64_decode(w, len, dec, cap);
	for (i = 0; n > 0 && i < f->n && !found; i++)
		found = f->raw[i] && memmem(dec, (size_t)n, f->form[i], f->len[i]) != NULL;
	explicit_bzero(dec, cap);
	free(dec);
	return found;
}

/* word_shares - whether a word holds REDACT_RUN_MIN bytes in a row of any form (a middle piece) */
static int word_shares(const struct forms *f, const char *w, size_t len)
{
	size_t i, k;

	for (k = 0; k + REDACT_RUN_MIN <= len; k++)
		for (i = 0; i < f->n; i++)
			if (f->len[i] >= REDACT_RUN_MIN
			    && memmem(f->form[i], f->len[i], w + k, REDACT_RUN_MIN) != NULL)
				return 1;
	return 0;
}

/* words_mask - mask each base64 word of text that hides a raw secret or holds a piece of a form */
static void words_mask(const struct forms *f, char *text, size_t size)
{
	size_t mlen = strlen(REDACT_MASK), len = strlen(text), i = 0, w, tail;

	while (i < len) {
		if (!is_b64(text[i])) {
			i++;
			continue;
		}
		for (w = i; w < len && is_b64(text[w]); w++)
			;
		if (w - i >= REDACT_PIECE_MIN
		    && (word_hides(f, text + i, w - i) || word_shares(f, text + i, w - i))) {
			/* the mask is never longer than the word (REDACT_PIECE_MIN bytes or more) */
			tail = len - w + 1;
			memcpy(text + i, REDACT_MASK, mlen);
			memmove(text + i + mlen, text + w, tail);
			len = strlen(text);
			i += mlen;
		} else {
			i = w;
		}
	}
	(void)size;
}

/* forms_mask - the one pass over text */
static void forms_mask(const struct forms *f, char *text, size_t size)
{
	size_t len, i = 0, n = 0, m, mlen = strlen(REDACT_MASK);
	char *out;

	if (f->n == 0 || size == 0)
		return;
	len = strlen(text);
	out = xmalloc(len + len / REDACT_RAW_MIN * mlen + mlen + 1);
	if ((m = piece_ending(f, text, len)) > 0) {
		memcpy(out, REDACT_MASK, mlen);
		n = mlen;
		i = m;
	}
	while (i < len) {
		if ((m = piece_at(f, text + i, len - i)) > 0) {
			memcpy(out + n, REDACT_MASK, mlen);
			n += mlen;
			i += m;
		} else {
			out[n++] = text[i++];
		}
	}
	out[n] = '\0';
	str_copy(text, out, size);
	explicit_bzero(out, n);
	free(out);
	words_mask(f, text, size);
}

/* redact_sent_plain - AUTH PLAIN went out with user and password */
void redact_sent_plain(struct redact *rd, const char *user, const char *password)
{
	rd->user = user;
	rd->password = password;
	rd->plain = 1;
}

/* redact_sent_login - AUTH LOGIN went out with this password */
void redact_sent_login(struct redact *rd, const char *password)
{
	rd->password = password;
}

/* redact_sent_xoauth2 - AUTH XOAUTH2 went out with user and token */
void redact_sent_xoauth2(struct redact *rd, const char *user, const char *token)
{
	rd->user = user;
	rd->token = token;
	rd->xoauth2 = 1;
}

/* redact_text - mask every form of what was sent */
void redact_text(const struct redact *rd, char *text, size_t size)
{
	struct forms f;
	size_t len;
	char *arg;

	memset(&f, 0, sizeof(f));
	if (rd == NULL || text == NULL || (rd->password == NULL && rd->token == NULL))
		return;
	if (rd->password != NULL) {
		forms_raw(&f, rd->password);
		forms_base64(&f, rd->password, strlen(rd->password));
	}
	if (rd->token != NULL) {
		forms_raw(&f, rd->token);
		forms_base64(&f, rd->token, strlen(rd->token));
	}
	if (rd->plain && rd->user != NULL && rd->password != NULL) {
		arg = redact_sasl_plain(rd->user, rd->password, &len);
		forms_base64(&f, arg, len);
		explicit_bzero(arg, len);
		free(arg);
	}
	if (rd->xoauth2 && rd->user != NULL && rd->token != NULL) {
		arg = redact_sasl_xoauth2(rd->user, rd->token, &len);
		forms_base64(&f, arg, len);
		explicit_bzero(arg, len);
		free(arg);
	}
	forms_mask(&f, text, size);
	forms_free(&f);
}

/* redact_secret - mask one secret: raw, base64, URL-encoded */
void redact_secret(char *text, size_t size, const char *secret)
{
	struct forms f;

	memset(&f, 0, sizeof(f));
	if (text == NULL || secret == NULL || strlen(secret) < REDACT_RAW_MIN)
		return;
	forms_raw(&f, secret);
	forms_base64(&f, secret, strlen(secret));
	forms_urlencoded(&f, secret);
	forms_mask(&f, text, size);
	forms_free(&f);
}

/* redact_sasl_plain - "\0user\0password" */
char *redact_sasl_plain(const char *user, const char *password, size_t *len)
{
	size_t ulen = strlen(user), plen = strlen(password);
	char *raw = xmalloc(ulen + plen + 3);

	raw[0] = '\0';
	memcpy(raw + 1, user, ulen);
	raw[1 + ulen] = '\0';
	memcpy(raw + 2 + ulen, password, plen + 1);
	*len = 2 + ulen + plen;
	return raw;
}

/* redact_sasl_xoauth2 - "user=U\001auth=Bearer T\001\001" */
char *redact_sasl_xoauth2(const char *user, const char *token, size_t *len)
{
	size_t n = 5 + strlen(user) + 1 + 12 + strlen(token) + 2;
	char *raw = xmalloc(n + 1);

	snprintf(raw, n + 1, "user=%s\001auth=Bearer %s\001\001", user, token);
	*len = n;
	return raw;
}
