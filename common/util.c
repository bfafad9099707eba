/*
 * util - allocation that cannot fail silently, bounded string copies,
 * base64, and the permission check for files that hold secrets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>

#include "util.h"

/* oom - out of memory is not a delivery outcome: die, and let the MTA retry (signal deaths defer) */
static void oom(void)
{
	static const char msg[] = "4.3.0 btprelay: out of memory\n";

	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing else to do */
	}
	_exit(75);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom();
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		oom();
	return p;
}

/* str_copy - bounded copy, always terminated */
size_t str_copy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = 0;
	}
	return len;
}

/* utf8_seq - length of the valid UTF-8 sequence at s with its code point in *cp; 0 if invalid */
static size_t utf8_seq(const unsigned char *s, unsigned long *cp)
{
	static const unsigned long min[] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t n, i;
	unsigned long c;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)	/* also stops at the NUL */
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/*
 * str_sanitize - what a terminal or a log reader would act on: C0 controls
 * (ESC starts every escape sequence), DEL, C1 controls (U+0080..U+009F:
 * U+009B is CSI), the bidirectional overrides and isolates (text shown in
 * another order than it is), and bytes that are not UTF-8 (an 8-bit
 * terminal takes 0x9B for CSI) each become one repl. Printable ASCII and
 * other valid UTF-8 stay.
 */
void str_sanitize(char *s, char repl)
{
	unsigned char *r = (unsigned char *)s, *w = (unsigned char *)s;
	unsigned long cp;
	size_t n;

	while (*r != 0) {
		if (*r < 0x20 || *r == 0x7f) {
			*w++ = (unsigned char)repl;
			r++;
		} else if (*r < 0x80) {
			*w++ = *r++;
		} else if ((n = utf8_seq(r, &cp)) == 0 || cp <= 0x9f
			   || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
			*w++ = (unsigned char)repl;
			r += n ? n : 1;
		} else {
			while (n-- > 0)
				*w++ = *r++;
		}
	}
	*w = 0;
}

/* str_printable - a bounded copy through str_sanitize(), NUL bytes included */
void str_printable(char *dst, size_t size, const char *s, size_t len)
{
	size_t i, n = 0;

	if (size == 0)
		return;
	for (i = 0; i < len && n + 1 < size; i++)
		dst[n++] = s[i] != 0 ? s[i] : '?';
	dst[n] = 0;
	str_sanitize(dst, '?');
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* base64_encode - RFC 4648 with padding */
size_t base64_encode(const void *src, size_t len, char *dst, size_t dstsize)
{
	const unsigned char *in = src;
	size_t need = (len + 2) / 3 * 4, i, o = 0;

	if (dstsize < need + 1)
		return 0;
	for (i = 0; i + 2 < len; i += 3) {
		dst[o++] = b64[in[i] >> 2];
		dst[o++] = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		dst[o++] = b64[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		dst[o++] = b64[in[i + 2] & 63];
	}
	if (i < len) {
		dst[o++] = b64[in[i] >> 2];
		if (i + 1 < len) {
			dst[o++] = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
			dst[o++] = b64[(in[i + 1] & 15) << 2];
		} else {
			dst[o++] = b64[(in[i] & 3) << 4];
			dst[o++] = '=';
		}
		dst[o++] = '=';
	}
	dst[o] = 0;
	return o;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;

	return p ? (int)(p - b64) : -1;
}

/* base64_decode - strict: length a multiple of 4, padding only at the end */
ssize_t base64_decode(const char *src, size_t len, void *dst, size_t dstsize)
{
	unsigned char *out = dst;
	size_t i, o = 0;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		int v[4], k, pad = 0;

		for (k = 0; k < 4; k++) {
			if (src[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad || (v[k] = b64_value(src[i + k])) < 0) {
				return -1;
			}
		}
		if (o + 3 - (size_t)pad > dstsize)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (ssize_t)o;
}

/* file_check_private - refuse secrets files that other users can read or write */
int file_check_private(const char *path, char *errbuf, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_mode & 007) {
		snprintf(errbuf, errlen,
			 "%s: accessible by other users (mode %04o); it holds secrets: chmod o-rwx %s",
			 path, (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

/* file_read_all - a small file into memory; a file over max bytes is refused */
char *file_read_all(const char *path, size_t max, size_t *len, char *errbuf, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0, cap = max + 1 < 4096 ? max + 1 : 4096;
	char *buf;
	ssize_t r;

	if (fd < 0) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(cap + 1);
	for (;;) {
		if (n == cap) {
			if (cap > max) {
				snprintf(errbuf, errlen, "%s: larger than %zu bytes", path, max);
				goto fail;
			}
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			buf = realloc(buf, cap + 1);
			if (buf == NULL)
				oom();
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > max) {
		snprintf(errbuf, errlen, "%s: larger than %zu bytes", path, max);
		goto fail;
	}
	close(fd);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

/* json_wipe - explicit_bzero every string in v, recursively */
void json_wipe(json_t *v)
{
	const char *k;
	json_t *item;
	size_t i;

	if (json_is_string(v)) {
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
	} else if (json_is_object(v)) {
		json_object_foreach(v, k, item)
			json_wipe(item);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, item)
			json_wipe(item);
	}
}

/* process_no_core - keep secrets out of core files */
void process_no_core(void)
{
	struct rlimit none = { 0, 0 };

	setrlimit(RLIMIT_CORE, &none);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* str_redact - a peer that echoes a secret must not put it into our texts */
void str_redact(char *text, size_t size, const char *secret)
{
	static const char mask[] = "********";
	size_t slen = secret ? strlen(secret) : 0, mlen = sizeof(mask) - 1;
	char *p = text;

	if (slen < 4)
		return;
	/* from after each mask: a secret that looks like the mask must not loop */
	while ((size_t)(p - text) + mlen < size && (p = strstr(p, secret)) != NULL) {
		size_t tail = strlen(p + slen) + 1;

		if ((size_t)(p - text) + mlen >= size)
			break;
		if (mlen > slen && (size_t)(p - text) + mlen + tail > size)
			tail = size - (size_t)(p - text) - mlen;	/* cut the end to fit */
		memmove(p + mlen, p + slen, tail);
		memcpy(p, mask, mlen);
		text[size - 1] = 0;
		p += mlen;
	}
}

/* strbuf_init - empty, with an optional limit */
void strbuf_init(struct strbuf *b, size_t limit)
{
	b->size = 64;
	b->str = xmalloc(b->size);
	b->str[0] = '\0';
	b->len = 0;
	b->limit = limit;
}

/* strbuf_printf - append, growing as needed; cut with "..." at the limit */
void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	size_t need;
	int n;

	if (b->limit > 0 && b->len >= b->limit)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->str + b->len, b->size - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	need = b->len + (size_t)n + 1;
	if (need > b->size) {
		while (b->size < need)
			b->size *= 2;
		b->str = xrealloc(b->str, b->size);
		va_start(ap, fmt);
		vsnprintf(b->str + b->len, b->size - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
	if (b->limit >= 3 && b->len >= b->limit) {
		b->len = b->limit;
		memcpy(b->str + b->limit - 3, "...", 4);
	}
}

/* strbuf_free - release; the buffer may be initialized again */
void strbuf_free(struct strbuf *b)
{
	free(b->str);
	b->str = NULL;
	b->len = b->size = 0;
}
