/*
 * btprelay-milter - refuse mail for destinations that cannot work, while
 * the SMTP client is still connected, and apply the destination's sender
 * policy at end of message.
 *
 * The decisions live in policy.c; this file is the libmilter side: the
 * command line, the socket (opened before privileges are dropped), the
 * daemon, the signals and the callbacks. Threads: libmilter runs one per
 * SMTP session plus its own signal thread; smfi_main() runs in a thread of
 * ours, because libmilter's signal thread takes SIGHUP as "stop". The main
 * thread waits for signals itself: Linux hands a process-directed signal
 * to the thread-group leader first when it does not block it, and sigwait
 * unblocks the signals it waits for, so SIGHUP reaches this thread and
 * becomes a reload (SIGUSR1, which libmilter leaves alone, does too). The
 * reload itself runs in a thread of its own, so that the main thread is
 * back in sigwait() at once.
 *
 * A reload builds a new policy (configuration, bindings, empty cache) and
 * swaps it in under a mutex; each message holds a reference to the policy
 * it started with, so a reload never changes the rules under a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <libmilter/mfapi.h>

#include "conf.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "shim.h"
#include "util.h"
#include "watch.h"

#define MILTER_NAME "btprelay-milter"
#define MILTER_TRACE_HEADER "X-BTPRelay-Destination"
#define MILTER_MAX_NAMES 16		/* destinations named in one trace header */
#define MILTER_RCPT_MACROS "i {rcpt_mailer} {rcpt_host} {rcpt_addr}"
#define MILTER_MACRO_MAX 512		/* longest macro value taken as it is */
#define MILTER_WATCH_INTERVAL 3		/* seconds between looks at the files (watch.c) */

static const char usage_text[] =
	"usage: btprelay-milter [-c FILE] [-p SOCKET] [-u USER] [-P PIDFILE] [-f] [-n]\n"
	"  -c FILE     configuration file (default " BTPRELAY_DEFAULT_CONFIG ")\n"
	"  -p SOCKET   unix:/path or inet:PORT@HOST (default: milter_socket)\n"
	"  -u USER     run as USER once the socket is open (default: milter_user)\n"
	"  -P PIDFILE  write the process id there (default: milter_pidfile)\n"
	"  -f          stay in the foreground (systemd, tests)\n"
	"  -n          check the configuration and the bindings, then exit\n"
	"  -h, --help  this text;  -V, --version  the version\n";

/* the policy in force; swapped on reload */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static struct policy *state_policy;

/* per connection, reset per message */
struct milter_msg {
	struct policy *pol;		/* the policy this message started with */
	char *sender;			/* envelope sender as the MTA gave it */
	char qid[64];			/* {i}, for log lines */
	unsigned ours;			/* recipients routed to btprelay and kept */
	unsigned others;		/* recipients routed elsewhere */
	char *names[MILTER_MAX_NAMES];	/* distinct destinations of this message */
	size_t nnames;
	char *from;			/* the destinations' common sender */
	int from_unknown;		/* a destination without a known sender, or two different ones */
};

static void watch_poll(void);

/* state_get - a reference to the policy in force */
static struct policy *state_get(void)
{
	struct policy *p;

	pthread_mutex_lock(&state_lock);
	p = state_policy != NULL ? policy_ref(state_policy) : NULL;
	pthread_mutex_unlock(&state_lock);
	return p;
}

/* state_swap - put p in force; the old one goes when its last message ends */
static void state_swap(struct policy *p)
{
	struct policy *old;

	pthread_mutex_lock(&state_lock);
	old = state_policy;
	state_policy = p;
	pthread_mutex_unlock(&state_lock);
	policy_unref(old);
}

/* msg_reset - forget the message, keep the allocation */
static void msg_reset(struct milter_msg *m)
{
	size_t i;

	policy_unref(m->pol);
	free(m->sender);
	free(m->from);
	for (i = 0; i < m->nnames; i++)
		free(m->names[i]);
	memset(m, 0, sizeof(*m));
}

/* msg_get - the connection's message data, created on first use */
static struct milter_msg *msg_get(SMFICTX *ctx)
{
	struct milter_msg *m = smfi_getpriv(ctx);

	if (m == NULL) {
		m = xcalloc(1, sizeof(*m));
		smfi_setpriv(ctx, m);
	}
	if (m->pol == NULL)
		m->pol = state_get();
	return m;
}

/*
 * macros_bad - 1 when the MTA sent a macro packet that was not name/value
 * pairs in this session (shim.c replaced it by the marker). A libmilter
 * that calls its reader without the dynamic linker (linked with
 * -Bsymbolic-functions) never reaches shim.c: then packets are not
 * checked, which is logged once as an error, and mail still flows; the
 * socket's permissions remain the defence.
 */
static int macros_bad(SMFICTX *ctx)
{
	static atomic_int warned;

	if (shim_reads() == 0) {
		if (atomic_exchange(&warned, 1) == 0)
			log_error("milter: libmilter reads commands without btprelay's macro check "
				  "(its mi_rd_cmd is bound inside the library): malformed macro "
				  "packets are not caught; keep the milter socket private");
		return 0;
	}
	return smfi_getsymval(ctx, MILTER_BAD_MACROS) != NULL;
}

/*
 * macro_get - a macro's value, or NULL when the MTA did not send it or
 * sent something no MTA would: longer than MILTER_MACRO_MAX or with
 * control characters (*bad set). Callers check macros_bad() first, so the
 * arrays smfi_getsymval() walks are whole pairs.
 */
static const char *macro_get(SMFICTX *ctx, const char *name, int *bad)
{
	const char *v = smfi_getsymval(ctx, (char *)name);
	size_t i, n;

	if (v == NULL)
		return NULL;
	n = strnlen(v, MILTER_MACRO_MAX + 1);
	for (i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			break;
	if (n > MILTER_MACRO_MAX || i < n) {
		*bad = 1;
		return NULL;
	}
	return v;
}

/* msg_qid - the queue id macro into m, "NOQUEUE" when the MTA did not send it */
static void msg_qid(SMFICTX *ctx, struct milter_msg *m)
{
	int bad = 0;
	const char *qid = macro_get(ctx, "i", &bad);

	if (qid != NULL && *qid != '\0')
		str_printable(m->qid, sizeof(m->qid), qid, strlen(qid));
	else if (m->qid[0] == '\0')
		str_copy(m->qid, "NOQUEUE", sizeof(m->qid));
}

/* msg_add - a kept btprelay recipient: its destination and the destination's sender */
static void msg_add(struct milter_msg *m, const char *name, const struct policy_decision *d)
{
	size_t i;

	m->ours++;
	for (i = 0; i < m->nnames; i++)
		if (strcmp(m->names[i], name) == 0)
			break;
	if (i == m->nnames && m->nnames < MILTER_MAX_NAMES)
		m->names[m->nnames++] = xstrdup(name);
	if (d->kind != POLICY_FOUND || d->from == NULL) {
		m->from_unknown = 1;
	} else if (m->from == NULL) {
		if (!m->from_unknown)
			m->from = xstrdup(d->from);
	} else if (strcasecmp(m->from, d->from) != 0) {
		m->from_unknown = 1;
	}
}

/* milter_escape - reply text for smfi_setreply: '%' doubled, as libmilter wants */
static void milter_escape(char *dst, size_t size, const char *src)
{
	size_t n = 0;

	for (; *src && n + 3 < size; src++) {
		if (*src == '%')
			dst[n++] = '%';
		dst[n++] = *src;
	}
	dst[n] = '\0';
}

/* mlfi_negotiate - ask only for what we use; request the routing macros at RCPT */
static sfsistat mlfi_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			       unsigned long f2, unsigned long f3, unsigned long *pf0,
			       unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	(void)f2;
	(void)f3;
	*pf0 = f0 & (SMFIF_CHGFROM | SMFIF_ADDHDRS | SMFIF_SETSYMLIST);
	/* steps we have no callback for: the MTA need not send them */
	*pf1 = f1 & (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOHDRS | SMFIP_NOEOH
		     | SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA);
	*pf2 = 0;
	*pf3 = 0;
	if ((f0 & SMFIF_SETSYMLIST) != 0
	    && smfi_setsymlist(ctx, SMFIM_ENVRCPT, MILTER_RCPT_MACROS) != MI_SUCCESS)
		log_warn("milter: cannot ask the MTA for the macros %s", MILTER_RCPT_MACROS);
	return SMFIS_CONTINUE;
}

/* mlfi_envfrom - a new message */
static sfsistat mlfi_envfrom(SMFICTX *ctx, char **argv)
{
	struct milter_msg *m = smfi_getpriv(ctx);

	if (m != NULL)
		msg_reset(m);
	watch_poll();	/* a changed bindings file is in force for this message already */
	m = msg_get(ctx);
	m->sender = xstrdup(argv[0] != NULL ? argv[0] : "<>");
	return SMFIS_CONTINUE;
}

/*
 * refuse_bad_macros - 451 for a session whose MTA sent macros no MTA
 * sends: the routing they describe cannot be trusted either way. r is
 * the recipient, NULL at end of message.
 */
static sfsistat refuse_bad_macros(SMFICTX *ctx, struct milter_msg *m, const char *r)
{
	if (m->qid[0] == '\0')
		str_copy(m->qid, "NOQUEUE", sizeof(m->qid));
	log_warn("%s: milter: %s%s: malformed macros from the MTA (not name/value pairs, "
		 "or values no MTA sends); action=tempfail", m->qid, r ? "to=" : "",
		 r ? r : "end of message");
	if (smfi_setreply(ctx, "451", "4.7.0", "malformed milter macros from the MTA")
	    != MI_SUCCESS)
		log_warn("%s: milter: the MTA did not take the reply text", m->qid);
	return SMFIS_TEMPFAIL;
}

/* mlfi_envrcpt - the decision for one recipient */
static sfsistat mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
	struct milter_msg *m = msg_get(ctx);
	const char *mailer, *host;
	const char *rcpt = argv[0] != NULL ? argv[0] : "<>";
	struct policy_decision d;
	char r[320], reply[2 * POLICY_REPLY_SIZE];
	sfsistat ret = SMFIS_CONTINUE;
	int bad = 0;

	if (m->pol == NULL)
		return SMFIS_CONTINUE;	/* not started yet: nothing to decide with */
	str_printable(r, sizeof(r), rcpt, strlen(rcpt));
	if (macros_bad(ctx))
		return refuse_bad_macros(ctx, m, r);
	msg_qid(ctx, m);
	mailer = macro_get(ctx, "{rcpt_mailer}", &bad);
	host = macro_get(ctx, "{rcpt_host}", &bad);
	if (bad)
		return refuse_bad_macros(ctx, m, r);
	policy_decide(m->pol, mailer, host, &d);
	if (d.kind == POLICY_NOT_OURS) {
		m->others++;
		if (host == NULL && mailer != NULL
		    && strcmp(mailer, policy_config(m->pol)->milter_transport_name) == 0)
			log_warn("%s: milter: to=%s: the MTA sent {rcpt_mailer} but no {rcpt_host}; "
				 "not checked (Postfix: milter_rcpt_macros)", m->qid, r);
		log_debug("%s: milter: to=%s, mailer=%s: not routed to %s", m->qid, r,
			  mailer != NULL ? mailer : "(none)",
			  policy_config(m->pol)->milter_transport_name);
		return SMFIS_CONTINUE;
	}

	switch (d.action) {
	case POLICY_CONTINUE:
		msg_add(m, d.dest, &d);
		if (d.stale)
			log_warn("%s: milter: to=%s, destination=%s: Destination Service failing; "
				 "using the expired cache entry", m->qid, r, d.dest);
		else
			log_debug("%s: milter: to=%s, destination=%s, result=found%s", m->qid, r,
				  d.dest, d.cached ? " (cached)" : "");
		break;
	case POLICY_ACCEPT:
		msg_add(m, d.dest, &d);
		log_msg(d.kind == POLICY_UNUSABLE ? LOG_LVL_WARN : LOG_LVL_INFO,
			"%s: milter: to=%s, destination=%s, result=%s, action=accept (%s)",
			m->qid, r, d.dest, policy_kind_name(d.kind), d.detail);
		break;
	case POLICY_REJECT:
	case POLICY_TEMPFAIL:
		milter_escape(reply, sizeof(reply), d.reply);
		if (smfi_setreply(ctx, d.code, d.status, reply) != MI_SUCCESS)
			log_warn("%s: milter: the MTA did not take the reply text", m->qid);
		log_msg(d.kind == POLICY_NOT_FOUND ? LOG_LVL_INFO : LOG_LVL_WARN,
			"%s: milter: to=%s, destination=%s, result=%s, action=%s, reply=%s %s %s%s%s%s",
			m->qid, r, d.dest, policy_kind_name(d.kind), policy_action_name(d.action),
			d.code, d.status, d.reply, d.cached ? " (cached)" : "",
			d.kind == POLICY_ERROR ? "; " : "", d.kind == POLICY_ERROR ? d.detail : "");
		ret = d.action == POLICY_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
		break;
	}
	policy_decision_free(&d);
	return ret;
}

/* mlfi_eom - sender policy and trace header, only for mail routed to btprelay */
static sfsistat mlfi_eom(SMFICTX *ctx)
{
	struct milter_msg *m = smfi_getpriv(ctx);
	const struct config *cfg;
	char header[MILTER_MAX_NAMES * 202], sender[600], s[320];
	size_t i, n = 0;

	if (m == NULL || m->pol == NULL || m->ours == 0)
		return SMFIS_CONTINUE;
	if (macros_bad(ctx))
		return refuse_bad_macros(ctx, m, NULL);
	cfg = policy_config(m->pol);
	msg_qid(ctx, m);
	if (cfg->milter_trace_header) {
		header[0] = '\0';
		for (i = 0; i < m->nnames; i++)
			n += (size_t)snprintf(header + n, n < sizeof(header) ? sizeof(header) - n : 0,
					      "%s%s", i ? ", " : "", m->names[i]);
		if (n < sizeof(header) && smfi_addheader(ctx, MILTER_TRACE_HEADER, header) != MI_SUCCESS)
			log_warn("%s: milter: cannot add header %s", m->qid, MILTER_TRACE_HEADER);
	}
	if (strcasecmp(cfg->milter_sender_policy, "rewrite") != 0)
		return SMFIS_CONTINUE;
	str_printable(s, sizeof(s), m->sender ? m->sender : "<>", strlen(m->sender ? m->sender : "<>"));
	if (m->from == NULL || m->from_unknown || m->others > 0) {
		log_info("%s: milter: from=%s kept: %s", m->qid, s,
			 m->others > 0 ? "the message also goes elsewhere"
			 : m->from_unknown && m->nnames > 1 ? "its destinations disagree on the sender"
			 : "the destination names no sender");
		return SMFIS_CONTINUE;
	}
	if (m->sender == NULL || strcmp(m->sender, "<>") == 0 || m->sender[0] == '\0') {
		log_info("%s: milter: from=<> kept: a bounce keeps the null sender", m->qid);
		return SMFIS_CONTINUE;
	}
	snprintf(sender, sizeof(sender), "<%s>", m->from);
	if (strcasecmp(sender, m->sender) == 0)
		return SMFIS_CONTINUE;
	if (smfi_chgfrom(ctx, sender, NULL) != MI_SUCCESS) {
		log_warn("%s: milter: from=%s: the MTA refused the sender change to %s", m->qid, s,
			 sender);
		return SMFIS_CONTINUE;
	}
	log_info("%s: milter: from=%s rewritten to %s (destination %s)", m->qid, s, sender,
		 m->names[0]);
	return SMFIS_CONTINUE;
}

/* mlfi_abort - the message is gone; the connection may carry another */
static sfsistat mlfi_abort(SMFICTX *ctx)
{
	struct milter_msg *m = smfi_getpriv(ctx);

	if (m != NULL)
		msg_reset(m);
	return SMFIS_CONTINUE;
}

/* mlfi_close - the connection is gone */
static sfsistat mlfi_close(SMFICTX *ctx)
{
	struct milter_msg *m = smfi_getpriv(ctx);

	if (m != NULL) {
		msg_reset(m);
		free(m);
		smfi_setpriv(ctx, NULL);
	}
	return SMFIS_CONTINUE;
}

static struct smfiDesc milter_desc = {
	.xxfi_name = MILTER_NAME,
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_CHGFROM | SMFIF_ADDHDRS | SMFIF_SETSYMLIST,
	.xxfi_envfrom = mlfi_envfrom,
	.xxfi_envrcpt = mlfi_envrcpt,
	.xxfi_eom = mlfi_eom,
	.xxfi_abort = mlfi_abort,
	.xxfi_close = mlfi_close,
	.xxfi_negotiate = mlfi_negotiate,
};

/* load_config - the file plus the command-line overrides; 0, or -1 with errbuf */
struct overrides {
	const char *socket, *user, *pidfile;
};

static int load_config(struct config *cfg, const char *path, const struct overrides *ov,
		       char *errbuf, size_t errlen)
{
	if (config_load(cfg, path, errbuf, errlen) < 0)
		return -1;
	if (ov->socket != NULL) {
		free(cfg->milter_socket);
		cfg->milter_socket = xstrdup(ov->socket);
	}
	if (ov->user != NULL) {
		free(cfg->milter_user);
		cfg->milter_user = xstrdup(ov->user);
	}
	if (ov->pidfile != NULL) {
		free(cfg->milter_pidfile);
		cfg->milter_pidfile = xstrdup(ov->pidfile);
	}
	if (policy_check_config(cfg, errbuf, errlen) < 0) {
		config_free(cfg);
		return -1;
	}
	return 0;
}

/* socket_path - the file of a unix:/local: socket, NULL for inet */
static const char *socket_path(const char *spec)
{
	if (strncmp(spec, "unix:", 5) == 0)
		return spec + 5;
	if (strncmp(spec, "local:", 6) == 0)
		return spec + 6;
	return spec[0] == '/' ? spec : NULL;
}

/*
 * socket_warn_public - a warning when others than the MTA can reach the
 * socket: whoever can connect speaks the milter protocol to us (makes the
 * milter look up any destination name, sends it packets no MTA sends).
 */
static void socket_warn_public(const char *spec, const char *sockfile)
{
	struct stat st;
	const char *host;

	if (sockfile != NULL) {
		if (stat(sockfile, &st) == 0 && (st.st_mode & S_IWOTH) != 0)
			log_warn("milter socket %s is writable by every local user (mode %04o): "
				 "give it mode 0660 (umask 0117) in a directory of group postfix; "
				 "see btprelay-milter(8)", sockfile, (unsigned)(st.st_mode & 07777));
		return;
	}
	host = strrchr(spec, '@');	/* inet:PORT without @HOST: every address */
	if (host != NULL && (strcmp(host + 1, "127.0.0.1") == 0 || strcmp(host + 1, "localhost") == 0
	    || strcmp(host + 1, "::1") == 0 || strcmp(host + 1, "[::1]") == 0))
		return;
	log_warn("milter socket %s is not on loopback: every host that reaches it can speak "
		 "the milter protocol to it; see btprelay-milter(8)", spec);
}

/* socket_dir_setgid - 1 when the socket's directory hands its group to new files */
static int socket_dir_setgid(const char *sock)
{
	char dir[4096];
	const char *slash = strrchr(sock, '/');
	struct stat st;

	if (slash == NULL)
		return stat(".", &st) == 0 && (st.st_mode & S_ISGID) != 0;
	if ((size_t)(slash - sock) >= sizeof(dir))
		return 0;
	memcpy(dir, sock, (size_t)(slash - sock));
	dir[slash - sock] = '\0';
	return stat(dir[0] != '\0' ? dir : "/", &st) == 0 && (st.st_mode & S_ISGID) != 0;
}

/* drop_privileges - become user (groups first); 0 or -1 with errbuf */
static int drop_privileges(const char *user, const char *sock, char *errbuf, size_t errlen)
{
	struct passwd *pw;

	if (user == NULL || *user == '\0') {
		if (geteuid() == 0)
			log_warn("running as root: set milter_user or -u USER");
		return 0;
	}
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(errbuf, errlen, "unknown user %s", user);
		return -1;
	}
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
		return 0;
	if (geteuid() != 0) {
		snprintf(errbuf, errlen, "cannot become user %s: not started as root", user);
		return -1;
	}
	/*
	 * The milter removes its own socket at stop. Its group: in a set-group-ID
	 * directory (/var/spool/postfix/btprelay, group postfix) the one it got
	 * there, the MTA's; elsewhere the user's, which the MTA's user may join.
	 */
	if (sock != NULL && chown(sock, pw->pw_uid, socket_dir_setgid(sock) ? (gid_t)-1
				  : pw->pw_gid) < 0)
		log_warn("cannot chown %s to %s: %s", sock, user, strerror(errno));
	if (setgid(pw->pw_gid) < 0 || initgroups(pw->pw_name, pw->pw_gid) < 0
	    || setuid(pw->pw_uid) < 0) {
		snprintf(errbuf, errlen, "cannot become user %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		snprintf(errbuf, errlen, "could regain root after becoming %s", user);
		return -1;
	}
	process_no_core();
	return 0;
}

/*
 * daemonize - detach from the terminal. The parent waits until the child
 * reports how its start-up went (daemon_ready) and exits with that status,
 * so an init script sees a configuration error. Returns 0 in the child.
 */
static int daemon_fd = -1;

static int daemonize(void)
{
	unsigned char status = EX_OSERR;
	int fds[2], fd;
	pid_t pid;

	if (pipe(fds) < 0 || (pid = fork()) < 0)
		return -1;
	if (pid > 0) {
		close(fds[1]);
		if (read(fds[0], &status, 1) != 1)
			status = EX_SOFTWARE;	/* the child died before it said anything */
		_exit(status);
	}
	close(fds[0]);
	daemon_fd = fds[1];
	if (setsid() < 0 || chdir("/") < 0)
		return -1;
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}

/* daemon_ready - tell the waiting parent (if any) the start-up status; returns it */
static int daemon_ready(int status)
{
	unsigned char b = (unsigned char)status;

	if (daemon_fd >= 0) {
		if (write(daemon_fd, &b, 1) != 1) {
			/* the parent is gone: nobody to tell */
		}
		close(daemon_fd);
		daemon_fd = -1;
	}
	return status;
}

/* write_pidfile - our pid, one line */
static int write_pidfile(const char *path)
{
	FILE *fp;

	if (path == NULL || *path == '\0')
		return 0;
	if ((fp = fopen(path, "w")) == NULL)
		return -1;
	fprintf(fp, "%ld\n", (long)getpid());
	return fclose(fp);
}

/*
 * Reloads, from SIGHUP or SIGUSR1 (the reload thread) and from a changed
 * file (watch_poll, in a session thread), one at a time. reload_watch holds
 * the stamps of the files the policy in force was built from, or of the
 * files as they were when a reload last failed, so that a broken file is
 * not tried again until it changes again.
 */
static pthread_mutex_t reload_run = PTHREAD_MUTEX_INITIALIZER;
static struct watch reload_watch;		/* under reload_run */
static const char *reload_path;			/* -c, for every reload */
static const struct overrides *reload_ov;
static atomic_llong watch_next;			/* CLOCK_MONOTONIC second of the next check */

/* reload_locked - a new configuration and an empty cache; the old ones stay on error */
static void reload_locked(void)
{
	struct watch before, after;
	struct config cfg;
	struct policy *p;
	char err[1024];

	/* stamps first: a file that changes while it is read is read again next time */
	watch_again(&reload_watch, &before);
	if (load_config(&cfg, reload_path, reload_ov, err, sizeof(err)) < 0) {
		log_error("reload failed, keeping the running configuration: %s", err);
		watch_move(&reload_watch, &before);
		return;
	}
	watch_take(&after, &cfg);
	if ((p = policy_new(&cfg, err, sizeof(err))) == NULL) {
		log_error("reload failed, keeping the running configuration: %s", err);
		watch_free(&after);
		watch_move(&reload_watch, &before);
		return;
	}
	if (watch_same_files(&before, &after) && watch_changed(&before, &after) != NULL)
		watch_move(&reload_watch, &before);
	else
		watch_move(&reload_watch, &after);
	watch_free(&before);
	watch_free(&after);
	/* the log target and level stay: the log file may not be reopenable as this user */
	state_swap(p);
	log_info("configuration reloaded from %s; destination cache cleared",
		 policy_config(p)->path);
}

/* reload - reload_locked() under the reload lock */
static void reload(void)
{
	pthread_mutex_lock(&reload_run);
	reload_locked();
	pthread_mutex_unlock(&reload_run);
}

/*
 * watch_poll - at most every MILTER_WATCH_INTERVAL seconds, on the request
 * path: when the configuration, bindings or destinations file changed,
 * reload now, in this thread, so that this message already sees it. A
 * reload already running (a signal's) makes this a no-op.
 */
static void watch_poll(void)
{
	struct timespec ts;
	struct watch now;
	long long next = atomic_load(&watch_next);
	const char *what;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if ((long long)ts.tv_sec < next
	    || !atomic_compare_exchange_strong(&watch_next, &next,
					       (long long)ts.tv_sec + MILTER_WATCH_INTERVAL))
		return;
	if (pthread_mutex_trylock(&reload_run) != 0)
		return;
	watch_again(&reload_watch, &now);
	if ((what = watch_changed(&reload_watch, &now)) != NULL) {
		log_info("%s changed: reloading", what);
		reload_locked();
	}
	watch_free(&now);
	pthread_mutex_unlock(&reload_run);
}

static pthread_t main_thread;

/* reload requests, handed from the signal loop to the reload thread */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reload_cond = PTHREAD_COND_INITIALIZER;
static int reload_pending, reload_quit;

/*
 * reload_thread - does the reloads, so that the main thread is back in
 * sigwait() at once: a SIGHUP that arrives while no thread of ours waits
 * for it goes to libmilter's signal thread, which stops the milter.
 */
static void *reload_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&reload_lock);
	for (;;) {
		while (!reload_pending && !reload_quit)
			pthread_cond_wait(&reload_cond, &reload_lock);
		if (reload_quit)
			break;
		reload_pending = 0;
		pthread_mutex_unlock(&reload_lock);
		reload();
		pthread_mutex_lock(&reload_lock);
	}
	pthread_mutex_unlock(&reload_lock);
	return NULL;
}

/* reload_request - wake the reload thread (several requests may become one reload) */
static void reload_request(int quit)
{
	pthread_mutex_lock(&reload_lock);
	if (quit)
		reload_quit = 1;
	else
		reload_pending = 1;
	pthread_cond_signal(&reload_cond);
	pthread_mutex_unlock(&reload_lock);
}

/*
 * block_reload_signals - SIGHUP and SIGUSR1 blocked from the start: one that
 * arrives while the milter starts stays pending until serve()'s sigwait(),
 * and becomes a reload instead of killing the milter half-started (SIGHUP's
 * default action). serve() blocks them too, with the others it waits for.
 */
static void block_reload_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* milter_thread - libmilter's main loop; tells the main thread when it returns */
static void *milter_thread(void *arg)
{
	int *rc = arg;

	*rc = smfi_main();
	pthread_kill(main_thread, SIGUSR2);
	return NULL;
}

/* check_only - -n: the configuration and the bindings */
static int check_only(const char *path, const struct overrides *ov)
{
	struct config cfg;
	struct policy *p;
	char err[1024];

	if (load_config(&cfg, path, ov, err, sizeof(err)) < 0
	    || (p = policy_new(&cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, MILTER_NAME ": %s\n", err);
		return EX_CONFIG;
	}
	printf(MILTER_NAME ": configuration OK: %s (socket %s, transport %s)\n",
	       policy_config(p)->path, policy_config(p)->milter_socket,
	       policy_config(p)->milter_transport_name);
	policy_unref(p);
	return EX_OK;
}

/*
 * serve - start the reload and libmilter threads, then turn signals into
 * reloads and a stop until libmilter returns. Returns the exit status.
 */
static int serve(void)
{
	int sig, milter_rc = MI_FAILURE, stopping = 0;
	pthread_t tid, reloader;
	sigset_t set;

	/* every thread created from here on inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	process_no_core();
	main_thread = pthread_self();
	if (pthread_create(&reloader, NULL, reload_thread, NULL) != 0
	    || pthread_create(&tid, NULL, milter_thread, &milter_rc) != 0) {
		log_error("cannot start the milter threads");
		return daemon_ready(EX_OSERR);
	}
	daemon_ready(EX_OK);

	for (;;) {
		/* not sigwait(): shim.c's never returns SIGHUP, which is ours to take */
		if ((sig = sigwaitinfo(&set, NULL)) < 0)
			continue;
		if (sig == SIGHUP || sig == SIGUSR1) {
			if (!stopping)
				reload_request(0);
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (!stopping)
				log_info("stopping on signal %d", sig);
			stopping = 1;
			smfi_stop();
		} else if (sig == SIGUSR2) {
			break;
		}
	}
	pthread_join(tid, NULL);
	reload_request(1);
	pthread_join(reloader, NULL);
	if (!stopping)
		log_error("libmilter stopped on its own (%s)",
			  milter_rc == MI_SUCCESS ? "signal" : "failure");
	/* stopped by anything but our own SIGTERM: let a supervisor restart it */
	return stopping && milter_rc == MI_SUCCESS ? EX_OK : EX_SOFTWARE;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct overrides ov = { NULL, NULL, NULL };
	const char *config_path = NULL;
	char *sockfile, *pidfile, *config_abs = NULL;
	int ch, foreground = 0, check = 0, sock_known, status;
	struct stat sock_st;
	struct config cfg;
	struct policy *p;
	char err[1024];

	block_reload_signals();
	while ((ch = getopt_long(argc, argv, "c:p:u:P:fnhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': config_path = optarg; break;
		case 'p': ov.socket = optarg; break;
		case 'u': ov.user = optarg; break;
		case 'P': ov.pidfile = optarg; break;
		case 'f': foreground = 1; break;
		case 'n': check = 1; break;
		case 'h': fputs(usage_text, stdout); return EX_OK;
		case 'V': printf(MILTER_NAME " %s (libmilter %u.%u.%u)\n", PACKAGE_VERSION,
				 SM_LM_VRS_MAJOR(SMFI_VERSION), SM_LM_VRS_MINOR(SMFI_VERSION),
				 SM_LM_VRS_PLVL(SMFI_VERSION));
			  return EX_OK;
		default: fputs(usage_text, stderr); return EX_USAGE;
		}
	}
	if (optind != argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	http_global_init();
	json_object_seed(0);
	if (check)
		return check_only(config_path, &ov);
	/* a reload after daemonize (chdir /) must find the same file */
	if (config_path != NULL && config_path[0] != '/'
	    && (config_abs = realpath(config_path, NULL)) != NULL)
		config_path = config_abs;

	if (load_config(&cfg, config_path, &ov, err, sizeof(err)) < 0) {
		fprintf(stderr, MILTER_NAME ": %s\n", err);
		return EX_CONFIG;
	}
	log_open(MILTER_NAME, cfg.log_target, (enum log_level)cfg.log_level);
	/* copies: cfg moves into the policy, and a reload frees that */
	sockfile = socket_path(cfg.milter_socket) != NULL
		? xstrdup(socket_path(cfg.milter_socket)) : NULL;

	/* the socket first, while we may still be root */
	if (smfi_register(milter_desc) != MI_SUCCESS
	    || smfi_setconn(cfg.milter_socket) != MI_SUCCESS
	    || smfi_opensocket(1) != MI_SUCCESS) {
		fprintf(stderr, MILTER_NAME ": cannot open milter socket %s\n", cfg.milter_socket);
		log_error("cannot open milter socket %s", cfg.milter_socket);
		config_free(&cfg);
		return EX_UNAVAILABLE;
	}
	sock_known = sockfile != NULL && stat(sockfile, &sock_st) == 0;
	socket_warn_public(cfg.milter_socket, sockfile);
	if (!foreground && daemonize() < 0) {
		log_error("cannot become a daemon: %s", strerror(errno));
		return daemon_ready(EX_OSERR);
	}
	pidfile = xstrdup(cfg.milter_pidfile);
	if (*pidfile != '\0' && write_pidfile(pidfile) < 0)
		log_warn("cannot write pid file %s: %s", pidfile, strerror(errno));
	if (drop_privileges(cfg.milter_user, sockfile, err, sizeof(err)) < 0) {
		fprintf(stderr, MILTER_NAME ": %s\n", err);
		log_error("%s", err);
		unlink(pidfile);
		return daemon_ready(EX_NOPERM);
	}
	/* counted as the user the transports run as (cache_dir's owner) */
	metrics_open(cfg.metrics_dir);
	/* bindings are read as the user that will read them again on reload */
	reload_path = config_path;
	reload_ov = &ov;
	watch_take(&reload_watch, &cfg);
	if ((p = policy_new(&cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, MILTER_NAME ": %s\n", err);
		log_error("%s", err);
		unlink(pidfile);
		return daemon_ready(EX_CONFIG);
	}
	state_swap(p);
	log_info("started on %s (transport %s, lookup timeout %d s, cache %d s, negative %d s, "
		 "sender %s, trace header %s)", policy_config(p)->milter_socket,
		 policy_config(p)->milter_transport_name, policy_config(p)->milter_lookup_timeout,
		 policy_config(p)->milter_cache_ttl, policy_config(p)->milter_negative_ttl,
		 policy_config(p)->milter_sender_policy,
		 policy_config(p)->milter_trace_header ? "yes" : "no");

	status = serve();
	if (*pidfile != '\0')
		unlink(pidfile);
	/* libmilter leaves the socket in place when running as root: remove ours */
	if (sock_known && geteuid() == 0) {
		struct stat st;

		if (stat(sockfile, &st) == 0 && st.st_ino == sock_st.st_ino
		    && st.st_dev == sock_st.st_dev)
			unlink(sockfile);
	}
	free(config_abs);
	free(sockfile);
	free(pidfile);
	state_swap(NULL);
	watch_free(&reload_watch);
	log_info("stopped");
	log_close();
	return status;
}
