/*
 * send - `btprelay send NAME --from A --to B [--to C]... [--subject S]
 * [--body-file F]`: a small test message through deliver(), the code path
 * of the transport, so what works here works for Postfix.
 *
 * The message (Date, Message-ID, From, To, Subject, MIME headers, the
 * body from F or a short default text) is built in an unlinked temporary
 * file and streamed from it like stdin is for the transport. A name found
 * in the `destinations` environment variable is handed to deliver() in an
 * in-memory copy of the configuration (cli_env_config).
 *
 * Output: the Message-ID, one line per recipient with its status and the
 * relay's or the failure's text, the request's result. Exit: as the
 * transport's for the worst outcome (dsn_exit_code: 0, 75, 69).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "address.h"
#include "cli.h"
#include "deliver.h"
#include "util.h"

#define SEND_MAX_RCPT 100
#define SEND_SUBJECT_MAX 900
#define SEND_B64_CHUNK 45	/* raw bytes per RFC 2047 encoded word: 60 base64 characters */

static const char usage[] = "usage: btprelay send NAME --from ADDR --to ADDR [--to ADDR]... "
			    "[--subject TEXT] [--body-file FILE]";

/* header_safe - a value that cannot break the header: no control bytes */
static int header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* put_subject - "Subject: " as is when ASCII, else RFC 2047 encoded words, folded */
static void put_subject(FILE *fp, const char *subject)
{
	const unsigned char *p = (const unsigned char *)subject;
	char b64[4 * SEND_B64_CHUNK / 3 + 4];
	size_t len = strlen(subject), n;
	int ascii = 1, first = 1;

	for (; *p; p++)
		if (*p >= 0x80)
			ascii = 0;
	if (ascii) {
		fprintf(fp, "Subject: %s\n", subject);
		return;
	}
	fputs("Subject:", fp);
	for (p = (const unsigned char *)subject; len > 0; p += n, len -= n) {
		n = len < SEND_B64_CHUNK ? len : SEND_B64_CHUNK;
		/* never split a UTF-8 sequence: back up to the start of a character */
		while (n < len && n > 1 && (p[n] & 0xc0) == 0x80)
			n--;
		base64_encode(p, n, b64, sizeof(b64));
		fprintf(fp, "%s=?UTF-8?B?%s?=", first ? " " : "\n ", b64);
		first = 0;
	}
	fputc('\n', fp);
}

/* write_message - headers and body into fp; -1 with the reason on stderr */
static int write_message(FILE *fp, const char *name, const char *from, char **to, size_t nto,
			 const char *subject, const char *body_file, const char *msgid)
{
	char date[64], buf[8192], def[256];
	time_t now = time(NULL);
	struct tm tm;
	FILE *in;
	size_t i, n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	fprintf(fp, "Date: %s\n", date);
	fprintf(fp, "Message-ID: %s\n", msgid);
	fprintf(fp, "From: %s\n", from);
	fputs("To: ", fp);
	for (i = 0; i < nto; i++)
		fprintf(fp, "%s%s", i ? ",\n " : "", to[i]);
	fputc('\n', fp);
	if (subject == NULL) {
		snprintf(def, sizeof(def), "btprelay test message via %s", name);
		subject = def;
	}
	put_subject(fp, subject);
	fputs("MIME-Version: 1.0\n", fp);
	fputs("Content-Type: text/plain; charset=UTF-8\n", fp);
	fputs("Content-Transfer-Encoding: 8bit\n", fp);
	fputs("\n", fp);
	if (body_file == NULL) {
		fprintf(fp, "This is a test message sent with \"btprelay send\" through the MAIL\n"
			"destination %s, by the code that delivers mail for Postfix.\n"
			"No action is needed.\n", name);
		return 0;
	}
	if ((in = fopen(body_file, "r")) == NULL) {
		cli_error("--body-file %s: cannot open", body_file);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, fp);
	if (ferror(in)) {
		cli_error("--body-file %s: read error", body_file);
		fclose(in);
		return -1;
	}
	fclose(in);
	return 0;
}

/* message_id - "<time.pid.random.btprelay@host>" */
static void message_id(const struct config *cfg, char *buf, size_t size)
{
	unsigned char r[8] = { 0 };
	char host[256];

	if (cfg->smtp_helo_name[0] != '\0')
		str_copy(host, cfg->smtp_helo_name, sizeof(host));
	else if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		str_copy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	/* time and pid keep it unique should the random bytes fail */
	if (RAND_bytes(r, sizeof(r)) != 1)
		memset(r, 0, sizeof(r));
	snprintf(buf, size, "<%lld.%ld.%02x%02x%02x%02x%02x%02x%02x%02x.btprelay@%s>",
		 (long long)time(NULL), (long)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6],
		 r[7], host);
}

/* cmd_send - send NAME --from A --to B ... */
int cmd_send(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "subject", required_argument, NULL, 's' },
		{ "body-file", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const status[] = { "sent", "deferred", "bounced" };
	const char *from = NULL, *subject = NULL, *body_file = NULL, *name, *why;
	char *to[SEND_MAX_RCPT], msgid[400];
	struct outcome o, *rcpt_out, *worst;
	struct delivery dl;
	struct config run;
	size_t nto = 0, i;
	long size;
	FILE *fp;
	int ch, rc, changed;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "f:t:s:b:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f': from = optarg; break;
		case 's': subject = optarg; break;
		case 'b': body_file = optarg; break;
		case 't':
			if (nto == SEND_MAX_RCPT) {
				cli_error("at most %d recipients", SEND_MAX_RCPT);
				return EX_USAGE;
			}
			to[nto++] = optarg;
			break;
		default:
			cli_error("%s", usage);
			return EX_USAGE;
		}
	}
	if (optind != argc - 1 || from == NULL || nto == 0) {
		cli_error("%s", usage);
		return EX_USAGE;
	}
	name = argv[optind];
	/* the transport's own check (RFC 5321), with its status codes: 5.1.7 sender, 5.1.3 recipient */
	if (*from == '\0' || (why = address_check(from, ADDRESS_SENDER)) != NULL) {
		cli_error("5.1.7 --from: invalid address: %s", *from ? why : "empty");
		return EX_USAGE;
	}
	for (i = 0; i < nto; i++) {
		if ((why = address_check(to[i], ADDRESS_RECIPIENT)) != NULL) {
			cli_error("5.1.3 --to: invalid address: %s", why);
			return EX_USAGE;
		}
	}
	if (subject != NULL && (!header_safe(subject) || strlen(subject) > SEND_SUBJECT_MAX)) {
		cli_error("--subject: control characters, or longer than %d bytes",
			  SEND_SUBJECT_MAX);
		return EX_USAGE;
	}
	if ((rc = cli_config(cli)) != 0)
		return rc;
	if ((fp = tmpfile()) == NULL) {
		cli_error("cannot create a temporary file for the message");
		return EX_OSERR;
	}
	message_id(&cli->cfg, msgid, sizeof(msgid));
	if (write_message(fp, name, from, to, nto, subject, body_file, msgid) < 0) {
		fclose(fp);
		return EX_NOINPUT;
	}
	if (fflush(fp) != 0 || (size = ftell(fp)) < 0 || lseek(fileno(fp), 0, SEEK_SET) < 0) {
		cli_error("cannot write the message to a temporary file");
		fclose(fp);
		return EX_IOERR;
	}

	rcpt_out = xcalloc(nto, sizeof(*rcpt_out));
	if (cli_env_config(&cli->cfg, name, &run, &changed, &o) == 0) {
		memset(&dl, 0, sizeof(dl));
		dl.destination = name;
		dl.sender = from;
		dl.rcpt = (const char *const *)to;
		dl.nrcpt = nto;
		dl.size = size;
		dl.body_fd = fileno(fp);
		deliver(&run, &dl, rcpt_out, &o);
		cli_env_config_free(&cli->cfg, &run);
	} else {
		for (i = 0; i < nto; i++)
			rcpt_out[i] = o;
	}
	fclose(fp);

	cli_fact("message_id", "%s", msgid);
	worst = &o;
	for (i = 0; i < nto; i++) {
		cli_fact("recipient", "<%s> %s %s (%s)", to[i], rcpt_out[i].status,
			 status[rcpt_out[i].cls], rcpt_out[i].text);
		if (dsn_worse(&rcpt_out[i], worst))
			worst = &rcpt_out[i];
	}
	cli_fact("result", "%s %s", worst->status, status[worst->cls]);
	if (worst->cls != DSN_OK)
		cli_error("send %s: %s %s", name, worst->status, worst->text);
	rc = dsn_exit_code(worst);
	free(rcpt_out);
	return rc;
}
