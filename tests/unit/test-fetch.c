/*
 * test-fetch - btprelay-fetch's pure pieces: the IMAP reply parsers
 * (literal, capabilities, response codes), POP3's UIDL lines and RETR
 * unstuffing (through a socketpair, in chunks), and the state file
 * (atomic save, 0600, reload, pruning, damaged files refused).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap.h"
#include "pop3.h"
#include "../../plugin/fetch/state.h"
#include "tap.h"

static void test_imap_parsers(void)
{
	static const struct { const char *line; int rc; unsigned long size; } lits[] = {
		{ "* 1 FETCH (UID 4 BODY[] {27}", 1, 27 },
		{ "* 1 FETCH (UID 4 BODY[] {0}", 1, 0 },
		{ "* 1 FETCH (UID 4 FLAGS (\\Seen))", 0, 0 },
		{ "* 1 FETCH (BODY[] {}", -1, 0 },
		{ "* 1 FETCH (BODY[] {99999999999999}", -1, 0 },
		{ "{5}", 1, 5 },
		{ "5}", 0, 0 },
	};
	unsigned long size;
	const char *p;
	size_t i;

	for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
		size = 0;
		is_int(imap_parse_literal(lits[i].line, strlen(lits[i].line), &size), lits[i].rc,
		       "imap_parse_literal \"%s\"", lits[i].line);
		if (lits[i].rc == 1)
			is_int(size, lits[i].size, "  its size");
	}
	is_int(imap_parse_caps("IMAP4rev1 STARTTLS UIDPLUS AUTH=PLAIN] ready"),
	       IMAP_CAP_IMAP4REV1 | IMAP_CAP_STARTTLS | IMAP_CAP_UIDPLUS, "capabilities up to ]");
	is_int(imap_parse_caps("imap4rev1 move auth=xoauth2 LOGINDISABLED"),
	       IMAP_CAP_IMAP4REV1 | IMAP_CAP_MOVE | IMAP_CAP_XOAUTH2 | IMAP_CAP_LOGINDISABLED,
	       "capabilities, any case");
	is_int(imap_parse_caps("STARTTLSX UIDPLUSS"), 0, "no prefix matches");
	is_int(imap_parse_caps("IMAP4rev1 IDLEX idle"), IMAP_CAP_IMAP4REV1 | IMAP_CAP_IDLE,
	       "IDLE (RFC 2177), not IDLEX");
	is_int(imap_parse_code("* OK [UIDVALIDITY 3857529045] UIDs valid", "UIDVALIDITY"),
	       3857529045UL, "UIDVALIDITY response code");
	is_int(imap_parse_code("* OK [UIDNEXT 4] x [UIDVALIDITY 7]", "UIDVALIDITY"), 7,
	       "the code anywhere in the line");
	is_int(imap_parse_code("* OK [UIDVALIDITY 4294967296] x", "UIDVALIDITY"), 0,
	       "UIDVALIDITY over 32 bits refused");
	p = "12x";
	is_int(imap_parse_number(&p), 12, "imap_parse_number");
	ok(*p == 'x', "  stops at the first non-digit");
}

static void test_pop3(void)
{
	static const char *const bad[] = { "0 abc", "1 ", "1  a", "x 1", "1 a b", "1 \x7f",
		"1 12345678901234567890123456789012345678901234567890123456789012345678901" };
	struct pop3_uidl u;
	struct pop3_session s;
	struct conn c;
	int sv[2];
	char out[64 * 1024], buf[7];
	size_t total = 0, i;
	ssize_t k;
	const char wire[] = "Subject: x\r\n\r\n..dot\r\n...two\r\n..\r\nnot end\r\n.x\r\n.\r\n+OK next";
	const char want[] = "Subject: x\r\n\r\n.dot\r\n..two\r\n.\r\nnot end\r\nx\r\n";

	ok(pop3_parse_uidl("1 1000.1", &u) == 0 && u.number == 1 && strcmp(u.uid, "1000.1") == 0,
	   "UIDL line");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(pop3_parse_uidl(bad[i], &u), -1, "UIDL line refused: \"%s\"", bad[i]);

	/* RETR: the wire form in 7-byte reads; a stuffed lone dot is a line, "\r\n.\r\n" the end */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return;
	conn_init(&c, 2000, 0);
	c.fd = sv[0];
	if (write(sv[1], wire, strlen(wire)) < 0)
		return;
	memset(&s, 0, sizeof(s));
	s.conn = &c;
	s.server = "test";
	s.body_open = 1;
	s.at_line_start = 1;
	while ((k = pop3_retr_read(&s, buf, sizeof(buf))) > 0 && total + (size_t)k < sizeof(out)) {
		memcpy(out + total, buf, (size_t)k);
		total += (size_t)k;
	}
	is_int(k, 0, "RETR body ends at CRLF.CRLF");
	ok(total == strlen(want) && memcmp(out, want, total) == 0, "RETR body unstuffed byte for byte");
	ok(conn_pending(&c) == strlen("+OK next"), "the next reply is left in the connection");
	close(sv[1]);
	conn_close(&c);
}

static int keep_odd(const char *id, void *arg)
{
	(void)arg;
	return atoi(id) % 2 == 1;
}

static void test_state(void)
{
	char dir[] = "/tmp/test-fetch.XXXXXX", path[128], err[256];
	struct fetch_state st, st2;
	struct stat sb;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		return;
	snprintf(path, sizeof(path), "%s/S.state", dir);
	is_int(state_load(&st, path, err, sizeof(err)), 0, "a missing state file is an empty state");
	st.uidvalidity = 42;
	state_add(&st, "3");
	state_add(&st, "1");
	state_add(&st, "2");
	state_add(&st, "1");
	is_int(st.n, 3, "ids are a set");
	state_sent_set(&st, "7", 1);
	state_sent_set(&st, "7", 2);
	state_sent_set(&st, "8", 1);
	state_sent_set(&st, "8", 0);
	is_int(state_sent_count(&st, "7"), 2, "interrupted hand-overs counted");
	is_int(state_sent_count(&st, "8"), 0, "a count set to 0 is forgotten");
	is_int(state_save(&st, err, sizeof(err)), 0, "state_save");
	ok(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600, "the state file is 0600");
	is_int(state_load(&st2, path, err, sizeof(err)), 0, "state_load");
	ok(st2.uidvalidity == 42 && st2.n == 3 && state_has(&st2, "2") && !state_has(&st2, "4"),
	   "reloaded: UIDVALIDITY and the ids");
	is_int(state_sent_count(&st2, "7"), 2, "reloaded: the interrupted hand-overs");
	state_keep(&st2, keep_odd, NULL);
	ok(st2.n == 2 && !state_has(&st2, "2") && state_has(&st2, "3"), "state_keep prunes");
	state_free(&st2);
	state_free(&st);
	snprintf(err, sizeof(err), "%s.tmp", path);
	ok(access(err, F_OK) != 0, "no temporary file left behind");
	if ((f = fopen(path, "a")) != NULL) {
		fputs("garbage here\n", f);
		fclose(f);
	}
	is_int(state_load(&st, path, err, sizeof(err)), -1, "a damaged state file is refused");
	ok(strstr(err, ":7: not a btprelay-fetch state line") != NULL, "  naming the line: %s", err);
	state_free(&st);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	test_imap_parsers();
	test_pop3();
	test_state();
	return tap_done();
}
