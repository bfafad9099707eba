/*
 * fuzz-imap - the mailbox server's replies to btprelay-fetch (imap.c,
 * pop3.c): the input is everything the server sends, played through a
 * socketpair. The first byte picks IMAP or POP3; the rest is one whole
 * session: greeting, login, SELECT / UIDL, SEARCH, the fetch of a message
 * streamed out in chunks, STORE / DELE, EXPUNGE / QUIT, IDLE and DONE. Each line of the
 * input also goes through the pure parsers (imap_parse_literal,
 * imap_parse_caps, imap_parse_code, pop3_parse_uidl).
 *
 * Properties: failures defer (never bounce) with a valid outcome; a
 * message read from a literal is never longer than the literal said, and
 * from RETR never longer than the input; UIDs are 1..2^32-1; a UIDL is 1
 * to 70 visible characters; the password and the token never appear in a
 * text unless the server sent them.
 */
#include <string.h>

#include "fuzz.h"
#include "imap.h"
#include "pop3.h"

#define PASSWORD "s3cret-Passw0rd"
#define TOKEN "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjoieCJ9.c2ln"

FUZZ_TARGET_PEER

/* secret_safe - o's text holds no secret the server did not send itself */
static void secret_safe(const struct outcome *o, const uint8_t *data, size_t size)
{
	if (memmem(data, size, PASSWORD, strlen(PASSWORD)) == NULL)
		fuzz_assert(strstr(o->text, PASSWORD) == NULL);
	if (memmem(data, size, TOKEN, strlen(TOKEN)) == NULL)
		fuzz_assert(strstr(o->text, TOKEN) == NULL);
}

/* check - a failed step: a valid deferral, no secret */
static void check(const struct outcome *o, const uint8_t *data, size_t size)
{
	fuzz_check_outcome(o, 0);
	secret_safe(o, data, size);
}

static void imap_session_run(const uint8_t *data, size_t size, int oauth)
{
	static struct conn c;
	struct fuzz_peer p;
	struct imap_session s;
	struct outcome o;
	unsigned long *uids = NULL, len = 0, total = 0, uid;
	size_t n = 0, i;
	char buf[777];
	ssize_t k;

	conn_init(&c, 2000, 0);
	if (fuzz_peer_start(&p, &c, 2000, data, size, 0) < 0)
		return;
	memset(&o, 0, sizeof(o));
	if (imap_open(&s, &c, "mail.corp.internal:993", &o) < 0
	    || (oauth ? imap_xoauth2(&s, "user@corp.example", TOKEN, &o)
		: imap_login(&s, "relayuser", PASSWORD, &o)) < 0
	    || imap_select(&s, "INBOX", &o) < 0 || imap_uid_search(&s, &uids, &n, &o) < 0) {
		check(&o, data, size);
		goto out;
	}
	for (i = 0; i < n; i++)
		fuzz_assert(uids[i] >= 1 && uids[i] <= 0xffffffffUL);
	uid = n ? uids[0] : 1;
	if (imap_fetch_begin(&s, uid, &len, &o) < 0) {
		check(&o, data, size);
		goto out;
	}
	while ((k = imap_fetch_read(&s, buf, sizeof(buf))) > 0)
		total += (unsigned long)k;
	fuzz_assert(total <= len);
	fuzz_assert(total <= size);
	if (k < 0) {
		fuzz_assert(s.broken);
		goto out;
	}
	if (imap_fetch_end(&s, &o) < 0 || imap_uid_store(&s, uid, "\\Deleted", &o) < 0
	    || imap_uid_move(&s, uid, "Archive", &o) < 0 || imap_expunge(&s, uids, n, &o) < 0) {
		check(&o, data, size);
		goto out;
	}
	{			/* IDLE and DONE without waiting: what the server says around them */
		static volatile sig_atomic_t stop;
		int r = imap_idle(&s, 0, &stop, &o);

		fuzz_assert(r >= -1 && r <= 1);
		if (r < 0)
			check(&o, data, size);
	}
out:
	imap_logout(&s);
	conn_close(&c);
	fuzz_peer_end(&p);
	fuzz_peer_free(&p);
	free(uids);
}

static void pop3_session_run(const uint8_t *data, size_t size, int oauth)
{
	static struct conn c;
	struct fuzz_peer p;
	struct pop3_session s;
	struct pop3_uidl *list = NULL;
	struct outcome o;
	size_t n = 0, i, total = 0;
	char buf[333];
	ssize_t k;

	conn_init(&c, 2000, 0);
	if (fuzz_peer_start(&p, &c, 2000, data, size, 0) < 0)
		return;
	memset(&o, 0, sizeof(o));
	if (pop3_open(&s, &c, "mail.corp.internal:995", &o) < 0 || pop3_capa(&s, &o) < 0
	    || (oauth ? pop3_xoauth2(&s, "user@corp.example", TOKEN, &o)
		: pop3_login(&s, "relayuser", PASSWORD, &o)) < 0
	    || pop3_uidl(&s, &list, &n, &o) < 0) {
		check(&o, data, size);
		goto out;
	}
	for (i = 0; i < n; i++) {
		size_t ul = strlen(list[i].uid);

		fuzz_assert(ul >= 1 && ul <= POP3_UIDL_MAX && !fuzz_has_ctl(list[i].uid));
		fuzz_assert(strchr(list[i].uid, ' ') == NULL);
	}
	if (pop3_retr_begin(&s, n ? list[0].number : 1, &o) < 0) {
		check(&o, data, size);
		goto out;
	}
	while ((k = pop3_retr_read(&s, buf, sizeof(buf))) > 0)
		total += (size_t)k;
	fuzz_assert(total <= size);
	if (k < 0) {
		fuzz_assert(s.broken);
		goto out;
	}
	if (pop3_dele(&s, 1, &o) < 0 || pop3_quit(&s, &o) < 0)
		check(&o, data, size);
out:
	conn_close(&c);
	fuzz_peer_end(&p);
	fuzz_peer_free(&p);
	free(list);
}

/* parsers - each input line through the pure parsers */
static void parsers(const uint8_t *data, size_t size)
{
	char line[1024];
	size_t start = 0, i, len;

	for (i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		len = i - start < sizeof(line) - 1 ? i - start : sizeof(line) - 1;
		memcpy(line, data + start, len);
		line[len] = '\0';
		len = strlen(line);
		{
			unsigned long lit = 0, v;
			struct pop3_uidl u;
			int r = imap_parse_literal(line, len, &lit);

			fuzz_assert(r >= -1 && r <= 1);
			if (r == 1)
				fuzz_assert(lit < (1UL << 40));
			(void)imap_parse_caps(line);
			v = imap_parse_code(line, "UIDVALIDITY");
			fuzz_assert(v <= 0xffffffffUL);
			if (pop3_parse_uidl(line, &u) == 0)
				fuzz_assert(u.number >= 1 && strlen(u.uid) >= 1
					    && strlen(u.uid) <= POP3_UIDL_MAX && !fuzz_has_ctl(u.uid));
		}
		start = i + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	parsers(data + 1, size - 1);
	if (data[0] & 1)
		pop3_session_run(data + 1, size - 1, (data[0] & 2) != 0);
	else
		imap_session_run(data + 1, size - 1, (data[0] & 2) != 0);
	return 0;
}
