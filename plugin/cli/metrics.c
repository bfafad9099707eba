/*
 * metrics - `btprelay metrics`: btprelay's counters and Postfix's figures
 * in the Prometheus text format (btprelay(8)).
 *
 *   btprelay metrics [--postfix-config DIR | --no-postfix]
 *       the text on stdout: the counters of metrics_dir/metrics (metrics.h),
 *       Postfix's queue sizes from `postqueue -j`, and whether it answered
 *   btprelay metrics --listen ADDR:PORT [...]
 *       the same text to each HTTP GET (any path), one client at a time,
 *       every read and write with a deadline, for Prometheus to scrape
 *   btprelay metrics --count-log
 *       copy Postfix's log from stdin to stdout, counting each delivery's
 *       status line (postfix_deliveries_total): a filter for a log stream
 *       (the relay image puts it between postlogd and the container's
 *       stdout; on a host, `tail -F /var/log/mail.log | btprelay metrics
 *       --count-log >/dev/null`)
 *
 * Run as root, --listen and --count-log become the owner of cache_dir
 * first (as `btprelay cache` does): the counters are that user's file, and
 * no network server of this program runs as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli.h"
#include "conn.h"
#include "metrics.h"
#include "util.h"

#define POSTQUEUE_SECONDS 10	/* one scrape: showq reads every queue file */
#define HTTP_TIMEOUT_MS 5000	/* each read and write of a scrape */
#define HTTP_DEADLINE 30	/* seconds for a whole scrape, postqueue included */
#define LOG_LINE_MAX 8192	/* longer log lines are copied whole, counted by their start */

struct metrics_opts {
	const char *postfix_config;	/* postqueue -c DIR; NULL: Postfix's default */
	int no_postfix;
};

/* Postfix's queues, as postqueue -j names them (showq(8)) */
static const char *const queues[] = { "maildrop", "incoming", "active", "deferred", "hold" };
#define NQUEUES (sizeof(queues) / sizeof(queues[0]))

/* queue_count_line - count one line of postqueue -j: {"queue_name": "deferred", ...} */
static void queue_count_line(const char *line, long counts[NQUEUES])
{
	const char *p = strstr(line, "\"queue_name\": \"");
	size_t i, n;

	if (p == NULL)
		return;
	p += strlen("\"queue_name\": \"");
	for (i = 0; i < NQUEUES; i++) {
		n = strlen(queues[i]);
		if (strncmp(p, queues[i], n) == 0 && p[n] == '"') {
			counts[i]++;
			return;
		}
	}
}

/*
 * postqueue_counts - run postqueue -j (killed after POSTQUEUE_SECONDS) and
 * count its messages by queue. Only the start of each line is looked at:
 * a message's line grows with its recipients, the buffer does not.
 */
static int postqueue_counts(const struct metrics_opts *mo, long counts[NQUEUES], char *why,
			    size_t size)
{
	const char *argv[5] = { "postqueue", "-j", NULL, NULL, NULL };
	char buf[4096], line[512];
	size_t llen = 0;
	int fds[2], status, devnull, rc = -1, done = 0;
	double deadline = conn_now() + POSTQUEUE_SECONDS;
	ssize_t n;
	pid_t pid;

	memset(counts, 0, NQUEUES * sizeof(counts[0]));
	if (mo->postfix_config != NULL) {
		argv[1] = "-c";
		argv[2] = mo->postfix_config;
		argv[3] = "-j";
	}
	snprintf(why, size, "cannot run it: %s", strerror(errno));
	if (pipe(fds) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		snprintf(why, size, "cannot run it: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		devnull = open("/dev/null", O_RDWR);
		dup2(fds[1], STDOUT_FILENO);
		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
			dup2(devnull, STDERR_FILENO);
		}
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], (char *const *)argv);
		execv("/usr/sbin/postqueue", (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	while (!done) {
		struct pollfd pfd = { fds[0], POLLIN, 0 };
		double left = deadline - conn_now();
		char *p, *end;

		if (left <= 0 || poll(&pfd, 1, (int)(left * 1000) + 1) == 0)
			break;
		n = read(fds[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			done = 1;
			break;
		}
		for (p = buf, end = buf + n; p < end; p++) {
			if (*p == '\n') {
				line[llen] = '\0';
				queue_count_line(line, counts);
				llen = 0;
			} else if (llen < sizeof(line) - 1) {
				line[llen++] = *p;
			}
		}
	}
	close(fds[0]);
	if (!done)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!done)
		snprintf(why, size, "no answer within %d s", POSTQUEUE_SECONDS);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = 0;
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		snprintf(why, size, "not found (PATH, /usr/sbin)");
	else
		snprintf(why, size, "%s %d%s", WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
			 mo->postfix_config != NULL && geteuid() != 0
			 ? " (postqueue -c DIR for a user other than root: DIR must be in "
			   "alternate_config_directories)" : "");
	return rc;
}

/* metrics_text - everything a scrape gets */
static void metrics_text(const struct cli *cli, const struct metrics_opts *mo, FILE *fp)
{
	struct metrics_snapshot s;
	long counts[NQUEUES];
	char err[4400];
	size_t i;
	int up;

	if (metrics_read(cli->cfg.metrics_dir, &s, err, sizeof(err)) < 0) {
		str_sanitize(err, '?');
		fprintf(fp, "# btprelay counters: %s\n", err);
	}
	metrics_format(fp, &s);
	if (mo->no_postfix)
		return;
	up = postqueue_counts(mo, counts, err, sizeof(err)) == 0;
	fprintf(fp, "# HELP postfix_up Whether postqueue -j answered (1) or not (0).\n"
		"# TYPE postfix_up gauge\npostfix_up %d\n", up);
	if (!up) {
		fprintf(fp, "# postqueue: %s\n", err);
		return;
	}
	fprintf(fp, "# HELP postfix_queue_messages Messages in Postfix's queues.\n"
		"# TYPE postfix_queue_messages gauge\n");
	for (i = 0; i < NQUEUES; i++)
		fprintf(fp, "postfix_queue_messages{queue=\"%s\"} %ld\n", queues[i], counts[i]);
}

/* become_owner - as root, become the owner of cache_dir; -1 when that failed */
static int become_owner(const struct cli *cli)
{
	struct stat st;
	const char *dir = cli->cfg.cache_dir;

	if (dir[0] == '\0' || stat(dir, &st) < 0)
		return 0;
	return cli_become_owner(cli, &st, dir);
}

/* write_all - all of buf to fd; -1 when it cannot be written */
static int write_all(int fd, const char *buf, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * count_log - stdin to stdout, counting Postfix's status lines. Each chunk
 * is counted before it is written, so whoever reads a status line from
 * our output finds it counted. A stdout that went away does not stop the
 * copy: the writer (postlogd) must never block on us, so the lines are
 * still read and counted.
 */
static int count_log(void)
{
	char buf[65536], line[LOG_LINE_MAX];
	size_t llen = 0, i;
	int out_ok = 1;
	ssize_t n;

	for (;;) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (i = 0; i < (size_t)n; i++) {
			if (buf[i] == '\n') {
				metrics_postfix_line(line, llen);
				llen = 0;
			} else if (llen < sizeof(line)) {
				line[llen++] = buf[i];
			}
		}
		if (out_ok && write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
			out_ok = 0;
	}
	if (llen > 0)
		metrics_postfix_line(line, llen);
	return n < 0 ? EX_IOERR : EX_OK;
}

/* listen_on - a listening socket for "ADDR:PORT", "[V6]:PORT" or ":PORT" (every address) */
static int listen_on(const char *spec)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	const char *colon = strrchr(spec, ':');
	size_t hlen;
	int fd, one = 1, rc;

	if (colon == NULL || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port)
	    || (hlen = (size_t)(colon - spec)) >= sizeof(host)) {
		cli_error("metrics --listen %s: want ADDR:PORT, [ADDR]:PORT or :PORT", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
		cli_error("metrics --listen %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0
	    || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		cli_error("metrics --listen %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* http_reply - status line, headers, body; HTTP/1.1 with Connection: close */
static void http_reply(struct conn *c, const char *status, const char *type, const char *body,
		       size_t len, int head)
{
	conn_printf(c, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		    "Connection: close\r\n\r\n", status, type, len);
	if (!head)
		conn_write(c, body, len);
	conn_flush(c);
}

/*
 * serve_one - one scrape: the request line and headers (each line at most
 * a buffer, 100 lines at most), then the text. Any method but GET or HEAD
 * gets 405; the path is not looked at.
 */
static void serve_one(const struct cli *cli, const struct metrics_opts *mo, int fd)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	char line[2048], *body = NULL;
	size_t len = 0;
	int i, head;
	FILE *fp;

	conn_init(c, HTTP_TIMEOUT_MS, conn_now() + HTTP_DEADLINE);
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "metrics client");
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0
	    || conn_read_line(c, line, sizeof(line)) < 0)
		goto out;
	head = strncmp(line, "HEAD ", 5) == 0;
	for (i = 0; i < 100; i++) {
		char h[2048];
		ssize_t n = conn_read_line(c, h, sizeof(h));

		if (n < 0)
			goto out;
		if (n == 0 || (n == 1 && h[0] == '\r'))
			break;
	}
	if (i == 100)
		goto out;
	if (strncmp(line, "GET ", 4) != 0 && !head) {
		http_reply(c, "405 Method Not Allowed", "text/plain", "GET only\n", 9, 0);
		goto out;
	}
	if ((fp = open_memstream(&body, &len)) == NULL)
		goto out;
	metrics_text(cli, mo, fp);
	fclose(fp);
	http_reply(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, len, head);
out:
	free(body);
	conn_close(c);
	free(c);
}

/* serve - accept and answer, one client at a time, until killed */
static int serve(const struct cli *cli, const struct metrics_opts *mo, const char *spec)
{
	int lfd = listen_on(spec), fd;

	if (lfd < 0)
		return EX_UNAVAILABLE;
	if (become_owner(cli) < 0)
		return EX_OSERR;
	if (geteuid() == 0) {
		cli_error("metrics --listen: will not serve as root: cache_dir %s should belong "
			  "to the transport's user", cli->cfg.cache_dir);
		return EX_NOPERM;
	}
	fprintf(stderr, "btprelay: metrics on %s (GET any path)\n", spec);
	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE
			    || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				if (errno != EINTR)
					usleep(100000);
				continue;
			}
			cli_error("metrics --listen: accept: %s", strerror(errno));
			return EX_OSERR;
		}
		serve_one(cli, mo, fd);
	}
}

/* cmd_metrics - btprelay metrics [--postfix-config DIR | --no-postfix] [--listen ADDR:PORT | --count-log] */
int cmd_metrics(struct cli *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "postfix-config", required_argument, NULL, 'C' },
		{ "no-postfix", no_argument, NULL, 'N' },
		{ "listen", required_argument, NULL, 'l' },
		{ "count-log", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	struct metrics_opts mo = { NULL, 0 };
	const char *listen_spec = NULL;
	int ch, count = 0, code;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': mo.postfix_config = optarg; break;
		case 'N': mo.no_postfix = 1; break;
		case 'l': listen_spec = optarg; break;
		case 'L': count = 1; break;
		default:
			cli_error("usage: btprelay metrics [--postfix-config DIR | --no-postfix] "
				  "[--listen ADDR:PORT | --count-log]");
			return EX_USAGE;
		}
	}
	if (optind != argc || (count && listen_spec != NULL)) {
		cli_error("usage: btprelay metrics [--postfix-config DIR | --no-postfix] "
			  "[--listen ADDR:PORT | --count-log]");
		return EX_USAGE;
	}
	if ((code = cli_config(cli)) != 0)
		return code;
	if (count) {
		if (become_owner(cli) < 0)
			return EX_OSERR;
		if (metrics_open(cli->cfg.metrics_dir) < 0)
			cli_error("metrics --count-log: %s/%s cannot be written by this "
				  "user: copying without counting", cli->cfg.metrics_dir, METRICS_FILE);
		return count_log();
	}
	if (listen_spec != NULL)
		return serve(cli, &mo, listen_spec);
	metrics_text(cli, &mo, stdout);
	return EX_OK;
}
