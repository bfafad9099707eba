/*
 * btprelay-lmtp - an LMTP server on stdin/stdout for Postfix's lmtp(8),
 * started by spawn(8) for each connection Postfix opens.
 *
 * Postfix's lmtp client keeps its connections open between messages (its
 * connection cache), so one run carries many transactions, and so does its
 * session with the relay: the route (destination, tunnel, TLS, AUTH) is
 * made once and reused, where btprelay-transport makes one per message.
 * Each transaction is delivered before its replies are given: one reply
 * per recipient after the message (RFC 2033), 250 only after the relay's
 * 2xx to the final dot, 451 for everything that defers.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "conn.h"
#include "deliver.h"
#include "dsn.h"
#include "lmtp.h"
#include "log.h"
#include "route.h"
#include "metrics.h"
#include "util.h"

#define CLIENT_TIMEOUT_MS (300 * 1000)	/* RFC 5321 4.5.3.2.7: a server waits 5 minutes for a command */

static const char usage_text[] =
	"usage: btprelay-lmtp [-c FILE] -d DESTINATION\n"
	"  runs one LMTP session on stdin/stdout, as Postfix's spawn(8) starts it\n"
	"  -c FILE         configuration file (default " BTPRELAY_DEFAULT_CONFIG ")\n"
	"  -d DESTINATION  the MAIL destination to relay through\n"
	"  -h, --help      this text;  -V, --version  the version\n";

static int reply(struct conn *c, const char *line)
{
	return conn_printf(c, "%s\r\n", line);
}

/*
 * data - the message and its delivery, after DATA's 354: the body streamed
 * to the relay as it arrives, then one reply per recipient. -1 when the
 * client's connection failed.
 */
static int data(const struct config *cfg, const char *dest, struct conn *c,
		struct lmtp_session *s, struct deliver_session **ds)
{
	struct outcome o, *out;
	struct lmtp_body body;
	/* the client's transparent form goes to the relay as it came (smtp.h) */
	struct smtp_body_reader rd = { lmtp_body_read_stuffed, &body, 1 };
	struct delivery dl = { 0 };
	char line[1024];
	size_t i;
	int rc = 0;

	if (conn_flush(c) < 0)
		return -1;
	lmtp_body_init(&body, c);
	dl.destination = dest;
	dl.sender = s->sender;
	dl.rcpt = (const char *const *)s->rcpt;
	dl.nrcpt = s->nrcpt;
	dl.size = s->size;
	dl.body_fd = -1;
	dl.body = &rd;
	dl.queue_id = s->ident[0] ? s->ident : NULL;
	log_set_queue_id(dl.queue_id);
	out = xcalloc(s->nrcpt, sizeof(*out));
	deliver_transaction(cfg, ds, &dl, out, &o);
	/* the relay may have taken none of it: the replies follow the whole message */
	if (!body.done && !body.failed)
		lmtp_body_drain(&body);
	if (body.failed) {
		log_warn("client connection lost while sending the message: %s", c->errtext);
		rc = -1;
	}
	for (i = 0; i < s->nrcpt && rc == 0; i++) {
		lmtp_reply(&out[i], line, sizeof(line));
		rc = reply(c, line);
	}
	free(out);
	log_set_queue_id(NULL);
	lmtp_session_done(s);
	return rc;
}

/*
 * session - the LMTP session with the client on c until QUIT or a
 * failure; lmtp_session_step() answers each command, and its state says
 * when a message follows and when the session is over
 */
static void session(const struct config *cfg, const char *dest, struct conn *c)
{
	struct lmtp_session s;
	struct deliver_session *ds = NULL;
	struct lmtp_cmd cmd;
	char line[LMTP_LINE_MAX + 1], helo[256];
	ssize_t n;
	int rc;

	route_helo_name(cfg, helo, sizeof(helo));
	lmtp_session_init(&s, helo);
	conn_printf(c, "220 %s LMTP btprelay-lmtp ready\r\n", helo);
	for (;;) {
		n = conn_read_line(c, line, sizeof(line));
		if (n < 0 && c->err == CONN_TOOLONG) {
			reply(c, "500 5.5.2 Line too long");
			continue;
		}
		if (n < 0) {
			if (c->err != CONN_CLOSED)
				log_warn("client connection: %s", c->errtext);
			break;
		}
		lmtp_parse(line, &cmd);
		rc = reply(c, lmtp_session_step(&s, &cmd));
		if (s.state == LMTP_STATE_DATA && (rc < 0 || data(cfg, dest, c, &s, &ds) < 0))
			break;
		if (s.state == LMTP_STATE_QUIT) {
			conn_flush(c);
			break;
		}
	}
	lmtp_session_free(&s);
	deliver_session_close(ds);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *dest = NULL;
	struct config cfg;
	struct conn *c;
	char err[512];
	int ch;

	signal(SIGPIPE, SIG_IGN);
	process_no_core();
	while ((ch = getopt_long(argc, argv, "c:d:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 'd': dest = optarg; break;
		case 'h': fputs(usage_text, stdout); return EX_OK;
		case 'V': printf("btprelay-lmtp %s\n", PACKAGE_VERSION); return EX_OK;
		default: fputs(usage_text, stderr); return EX_USAGE;
		}
	}
	if (dest == NULL || *dest == '\0' || optind != argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	/*
	 * The client sees a refusal it can log, and keeps the mail: a broken
	 * configuration is an operator's to fix.
	 */
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		char text[sizeof(err) + 64];

		snprintf(text, sizeof(text), "421 4.3.5 btprelay-lmtp: configuration error: %s\r\n", err);
		if (write(STDOUT_FILENO, text, strlen(text)) < 0)
			fprintf(stderr, "%s", text + 4);
		return EX_CONFIG;
	}
	log_open("btprelay-lmtp", cfg.log_target, (enum log_level)cfg.log_level);
	metrics_open(cfg.metrics_dir);

	/* stdin is the client's socket (spawn(8)); every read and write has a deadline */
	c = xcalloc(1, sizeof(*c));
	conn_init(c, CLIENT_TIMEOUT_MS, 0);
	c->fd = STDIN_FILENO;
	snprintf(c->peer, sizeof(c->peer), "lmtp client");
	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) {
		log_error("stdin: %s: btprelay-lmtp runs on a socket, as spawn(8) starts it", strerror(errno));
		return EX_USAGE;
	}
	session(&cfg, dest, c);
	conn_close(c);
	free(c);
	config_free(&cfg);
	log_close();
	return EX_OK;
}
