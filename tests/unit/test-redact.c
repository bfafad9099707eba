/*
 * test-redact - masking what AUTH sent in peer texts: every form, cut-off
 * pieces, base64 words that hide a secret at any alignment, secrets that
 * look like the mask, texts that grow past their buffer, and the AUTH
 * arguments built here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redact.h"
#include "tap.h"

#define PASS "Pa55-w0rd!secret"
#define TOKEN "eyJhbGciOiJ.tok-SECRET-123"

static void test_forms(void)
{
	static const struct {
		int mech;		/* 0 PLAIN, 1 LOGIN, 2 XOAUTH2 */
		const char *in, *want, *name;
	} t[] = {
		{ 0, "535 failed for AHJlbGF5dXNlcgBQYTU1LXcwcmQhc2VjcmV0 now",
		  "535 failed for ******** now", "PLAIN argument" },
		{ 0, "535 password " PASS ".", "535 password ********.", "raw password" },
		{ 0, "535 b64 UGE1NS13MHJkIXNlY3JldA==", "535 b64 ********", "base64 of the password" },
		{ 0, "535 got AHJlbGF5dXNlcgBQYTU1...", "535 got ********...",
		  "the start of the PLAIN argument (a relay that cuts it)" },
		{ 0, "535 got AHJlbGF5dXNlcgBQYTU1", "535 got ********",
		  "the start of the PLAIN argument at the end of the text" },
		{ 0, "LXcwcmQhc2VjcmV0 rest", "******** rest",
		  "the end of the PLAIN argument at the start of the text" },
		{ 0, "535 got AHJlbGF5", "535 got ********", "8 bytes of a form: masked" },
		{ 0, "535 got AHJlbGF", "535 got AHJlbGF", "7 bytes of a form: left" },
		{ 0, "535 eDpQYTU1LXcwcmQhc2VjcmV0Onk= end", "535 ******** end",
		  "base64 of other bytes holding the password (another alignment)" },
		{ 0, "535 Pa55-w0rd!secre", "535 ********", "a cut-off raw password" },
		{ 0, "535-x dXNlcgBQYTU1LXcwcmQhc2Vj y", "535-x ******** y",
		  "a middle piece of the PLAIN argument (a quote wrapped over lines)" },
		{ 0, "535-x dXNlcgBQYTU1LXc y", "535-x dXNlcgBQYTU1LXc y",
		  "... but not a word that shares only 15 bytes with it" },
		{ 0, "250 2.0.0 Ok: queued as ABCD", "250 2.0.0 Ok: queued as ABCD",
		  "an ordinary text is left alone" },
		{ 1, "535 bad UGE1NS13MHJkIXNlY3JldA== for cmVsYXl1c2Vy",
		  "535 bad ******** for cmVsYXl1c2Vy", "LOGIN: the password line, not the user's" },
		{ 1, "535 AHJlbGF5dXNlcgBQYTU1LXcwcmQhc2VjcmV0",
		  "535 ********", "LOGIN: a base64 word that holds the password, masked whole" },
		{ 2, "535 dXNlcj1yZWxheXVzZXIBYXV0aD1CZWFyZXIgZXlKaGJHY2lPaUoudG9rLVNFQ1JFVC0xMjMBAQ==",
		  "535 ********", "XOAUTH2 argument" },
		{ 2, "535 " TOKEN " ZXlKaGJHY2lPaUoudG9rLVNFQ1JFVC0xMjM=", "535 ******** ********",
		  "raw token and its base64" },
		{ 2, "535 user=relayuser?auth=Bearer " TOKEN "??",
		  "535 user=relayuser?auth=Bearer ********??", "the XOAUTH2 string as printed" },
	};
	struct redact rd;
	char buf[256];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&rd, 0, sizeof(rd));
		if (t[i].mech == 0)
			redact_sent_plain(&rd, "relayuser", PASS);
		else if (t[i].mech == 1)
			redact_sent_login(&rd, PASS);
		else
			redact_sent_xoauth2(&rd, "relayuser", TOKEN);
		snprintf(buf, sizeof(buf), "%s", t[i].in);
		redact_text(&rd, buf, sizeof(buf));
		is_str(buf, t[i].want, "%s", t[i].name);
	}
	memset(&rd, 0, sizeof(rd));
	snprintf(buf, sizeof(buf), "535 " PASS);
	redact_text(&rd, buf, sizeof(buf));
	is_str(buf, "535 " PASS, "nothing sent: nothing masked");
	redact_text(NULL, buf, sizeof(buf));
	is_str(buf, "535 " PASS, "no redact: nothing masked");
}

static void test_edges(void)
{
	struct redact rd;
	char buf[128], small[12];

	/* a secret that looks like the mask must not loop */
	memset(&rd, 0, sizeof(rd));
	redact_sent_login(&rd, "****");
	snprintf(buf, sizeof(buf), "535 **** and ****");
	redact_text(&rd, buf, sizeof(buf));
	is_str(buf, "535 ******** and ********", "a password of stars: masked once each");

	/* the mask is longer than a 4-byte password: the text is cut to its buffer */
	redact_sent_login(&rd, "abcd");
	snprintf(small, sizeof(small), "abcdabcd");
	redact_text(&rd, small, sizeof(small));
	is_str(small, "***********", "a text that grows is cut to its buffer");
	ok(strlen(small) == sizeof(small) - 1, "... and terminated");

	/* secrets shorter than 4 bytes: not masked raw (they would mask words) */
	redact_sent_login(&rd, "abc");
	snprintf(buf, sizeof(buf), "535 abc YWJj");
	redact_text(&rd, buf, sizeof(buf));
	is_str(buf, "535 abc ********", "a 3-byte password: its base64 masked, the word not");

	/* redact_secret: raw, base64, URL-encoded */
	snprintf(buf, sizeof(buf), "a " PASS " b UGE1NS13MHJkIXNlY3JldA== c Pa55-w0rd%%21secret");
	redact_secret(buf, sizeof(buf), PASS);
	is_str(buf, "a ******** b ******** c ********", "redact_secret: raw, base64, URL-encoded");
	snprintf(buf, sizeof(buf), "abc");
	redact_secret(buf, sizeof(buf), "abc");
	is_str(buf, "abc", "redact_secret: shorter than 4 bytes, left alone");
}

static void test_sasl(void)
{
	size_t len;
	char *s;

	s = redact_sasl_plain("u", "pw", &len);
	ok(len == 5 && memcmp(s, "\0u\0pw", 5) == 0, "PLAIN argument: \\0user\\0password");
	free(s);
	s = redact_sasl_xoauth2("u", "t", &len);
	ok(len == 22 && memcmp(s, "user=u\001auth=Bearer t\001\001", 22) == 0,
	   "XOAUTH2 argument: user=U^Aauth=Bearer T^A^A");
	free(s);
}

int main(void)
{
	test_forms();
	test_edges();
	test_sasl();
	return tap_done();
}
