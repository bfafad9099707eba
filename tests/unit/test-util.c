/* test-util - base64 both ways, printable copies, the secrets-file check */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tap.h"
#include "util.h"

int main(void)
{
	static const char *const vec[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "cloud-sdk-js", "Y2xvdWQtc2RrLWpz" }, { "LOC1", "TE9DMQ==" },
	};
	static const char *const bad[] = { "Zg=", "Z===", "Zg==Zg==", "Zm9v!", "=Zm9", "Zm=v" };
	char buf[64], path[] = "/tmp/test-util.XXXXXX", err[256];
	size_t i;
	ssize_t n;
	int fd;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		is_int(base64_encode(vec[i][0], strlen(vec[i][0]), buf, sizeof(buf)), strlen(vec[i][1]),
		       "encode length \"%s\"", vec[i][0]);
		is_str(buf, vec[i][1], "encode \"%s\"", vec[i][0]);
		n = base64_decode(vec[i][1], strlen(vec[i][1]), buf, sizeof(buf));
		ok(n == (ssize_t)strlen(vec[i][0]) && memcmp(buf, vec[i][0], (size_t)n) == 0,
		   "decode \"%s\"", vec[i][1]);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(base64_decode(bad[i], strlen(bad[i]), buf, sizeof(buf)), -1, "reject \"%s\"", bad[i]);
	is_int(base64_encode("foo", 3, buf, 4), 0, "encode refuses a small buffer");
	is_int(base64_decode("Zm9v", 4, buf, 2), -1, "decode refuses a small buffer");

	str_printable(buf, sizeof(buf), "a\r\nb\0c", 6);
	is_str(buf, "a??b?c", "control bytes become ?");
	{
		/* what a hostile destination property would send to an operator's terminal */
		static const char *const term[][2] = {
			{ "relay\x1b]0;owned\x07.example", "relay?]0;owned?.example" },
			{ "\x1b[31mred\x1b[0m", "?[31mred?[0m" },
			{ "csi \xc2\x9b" "2J c1", "csi ?2J c1" },	/* U+009B, CSI */
			{ "raw \x9b" "2J 8-bit", "raw ?2J 8-bit" },	/* 0x9B alone: not UTF-8 */
			{ "del\x7f", "del?" },
			{ "bidi \xe2\x80\xaetxt.exe", "bidi ?txt.exe" },	/* U+202E */
			{ "isolate \xe2\x81\xa6x", "isolate ?x" },	/* U+2066 */
			{ "overlong \xc0\xafx", "overlong ??x" },
			{ "surrogate \xed\xa0\x80", "surrogate ???" },
			{ "cut \xe2\x82", "cut ??" },
			{ "Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x93\xa7", "Gr\xc3\xbc\xc3\x9f" "e \xe2\x82\xac \xf0\x9f\x93\xa7" },
			{ "plain ASCII ~!", "plain ASCII ~!" },
		};
		char t[64];

		for (i = 0; i < sizeof(term) / sizeof(term[0]); i++) {
			str_copy(t, term[i][0], sizeof(t));
			str_sanitize(t, '?');
			is_str(t, term[i][1], "str_sanitize #%zu", i + 1);
		}
		str_copy(t, "a\tb\x1b[2Jc", sizeof(t));
		str_sanitize(t, ' ');
		is_str(t, "a b [2Jc", "str_sanitize with a space, as the log writes");
		str_printable(buf, sizeof(buf), "x\xc2\x9b\0y", 5);
		is_str(buf, "x??y", "str_printable: C1 and NUL");
	}
	is_int(str_copy(buf, "abcdef", 4), 6, "str_copy returns the source length");
	is_str(buf, "abc", "str_copy truncates and terminates");

	{
		char t[64] = "535 bad pass s3cretpw for s3cretpw";

		str_redact(t, sizeof(t), "s3cretpw");
		is_str(t, "535 bad pass ******** for ********", "str_redact masks every occurrence");
		str_redact(t, sizeof(t), "abc");
		ok(strstr(t, "535") != NULL, "str_redact ignores secrets shorter than 4 bytes");
		snprintf(t, sizeof(t), "535 **** x");
		str_redact(t, sizeof(t), "****");
		is_str(t, "535 ******** x", "str_redact: a secret that looks like the mask, once");
	}
	fd = mkstemp(path);
	if (write(fd, "secret", 6) != 6)
		return 1;
	close(fd);
	chmod(path, 0600);
	is_int(file_check_private(path, err, sizeof(err)), 0, "0600 file accepted");
	chmod(path, 0644);
	is_int(file_check_private(path, err, sizeof(err)), -1, "0644 file refused");
	has_str(err, "mode 0644", "refusal names the mode");
	has_str(err, "chmod o-rwx", "refusal says how to fix it");
	char *all = file_read_all(path, 100, NULL, err, sizeof(err));
	is_str(all, "secret", "file_read_all");
	free(all);
	ok(file_read_all(path, 3, NULL, err, sizeof(err)) == NULL, "file_read_all refuses a file over the limit");
	unlink(path);
	ok(file_read_all(path, 100, NULL, err, sizeof(err)) == NULL, "missing file");
	has_str(err, "No such file", "missing file text");
	{	/* strbuf: grows without a limit; with one, cut with "..." and then left alone */
		struct strbuf b;
		size_t k;

		strbuf_init(&b, 0);
		is_str(b.str, "", "strbuf: empty is \"\"");
		for (k = 0; k < 500; k++)
			strbuf_printf(&b, "%s", "0123456789");
		ok(b.len == 5000 && strlen(b.str) == 5000, "strbuf: grows to 5000 bytes");
		strbuf_free(&b);
		strbuf_init(&b, 20);
		strbuf_printf(&b, "%s", "0123456789");
		strbuf_printf(&b, "%s", "0123456789abc");
		is_str(b.str, "01234567890123456...", "strbuf: cut at the limit with \"...\"");
		strbuf_printf(&b, "more");
		is_int((int)b.len, 20, "strbuf: nothing appended past the limit");
		strbuf_free(&b);
	}
	return tap_done();
}
