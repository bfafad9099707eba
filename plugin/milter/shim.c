/*
 * shim - two places where libmilter's own behaviour is unsafe for
 * btprelay-milter, fixed at the boundary between the library and the rest
 * of the process. Both are definitions that the dynamic linker prefers to
 * the ones libmilter would otherwise reach (the executable comes first in
 * the symbol lookup order, ld.so(8)): libmilter's calls to them go through
 * its procedure linkage table, so they land here.
 *
 * 1. sigwait(3). smfi_main() starts a thread that waits for SIGHUP, SIGTERM
 *    and SIGINT and stops the milter on any of them. btprelay-milter takes
 *    SIGHUP as a reload request, in its main thread (main.c). While two
 *    threads wait for one process-directed signal, the kernel hands each
 *    one to either (signal(7)), so one reload request in a few thousand
 *    stopped the milter. This sigwait() waits like the C library's, but
 *    never for SIGHUP or SIGUSR1: they stay blocked in libmilter's thread,
 *    and the main thread, which waits with sigwaitinfo(2), is the only one
 *    that can take them, however many arrive.
 *
 * 2. mi_rd_cmd, libmilter's reader of one milter command. The MTA sends
 *    macros (SMFIC_MACRO) as name/value strings; libmilter stores them as
 *    they come and smfi_getsymval() steps over them two at a time, so an
 *    odd number of strings makes it read past the end of the array (a
 *    crash, or a "value" from unrelated memory). This reader checks every
 *    macro packet, and replaces one that is not whole name/value pairs by
 *    a single marker macro, MILTER_BAD_MACROS: no string of the bad
 *    packet is kept, the stage's previous macros are dropped as usual,
 *    and the callbacks refuse the message (main.c). The calls are
 *    counted, so that the milter can tell when a libmilter build binds
 *    the reader internally and this check cannot run.
 *
 * Neither replaces a documented API: sigwait() is POSIX's; mi_rd_cmd is
 * libmilter's internal reader (comm.c, the same prototype since sendmail
 * 8.12). Linking libmilter statically makes the second a duplicate
 * definition: the build fails instead of losing the check.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "shim.h"

/* sigwait - the C library's, except that SIGHUP and SIGUSR1 are never waited for */
int sigwait(const sigset_t *set, int *sig)
{
	sigset_t s = *set;
	int r;

	sigdelset(&s, SIGHUP);
	sigdelset(&s, SIGUSR1);
	do
		r = sigwaitinfo(&s, NULL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno;
	*sig = r;
	return 0;
}

/* libmilter.h (not installed): a command byte below ' ' with no buffer ends the session */
#define SHIM_RD_ERROR ((char)6)		/* SMFIC_UNKNERR */

typedef char *(*rd_cmd_fn)(int, struct timeval *, char *, size_t *, char *);

static rd_cmd_fn real_rd_cmd;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;
static atomic_ulong rd_calls, bad_packets;

/* find_real - libmilter's own mi_rd_cmd, next in the lookup order after ours */
static void find_real(void)
{
	real_rd_cmd = (rd_cmd_fn)dlsym(RTLD_NEXT, "mi_rd_cmd");
}

/* shim_macros_ok - buf[0..len) of an SMFIC_MACRO: stage byte, then NUL-ended name/value pairs */
int shim_macros_ok(const char *buf, size_t len)
{
	size_t i, n = 0;

	if (len < 1)
		return 0;
	if (len == 1)
		return 1;	/* no macros at all: libmilter ignores the packet */
	if (buf[len - 1] != '\0')
		return 0;
	for (i = 1; i < len; i++)
		if (buf[i] == '\0')
			n++;
	return n % 2 == 0;
}

/* mi_rd_cmd - libmilter's reader, with macro packets checked */
char *mi_rd_cmd(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name)
{
	static const char marker[] = MILTER_BAD_MACROS "\0yes";	/* name NUL value NUL */
	char *buf, *repl;

	pthread_once(&real_once, find_real);
	if (real_rd_cmd == NULL) {
		*cmd = SHIM_RD_ERROR;
		*rlen = 0;
		return NULL;
	}
	atomic_fetch_add(&rd_calls, 1);
	buf = real_rd_cmd(sd, timeout, cmd, rlen, name);
	if (buf == NULL || *cmd != SMFIC_MACRO || shim_macros_ok(buf, *rlen))
		return buf;
	atomic_fetch_add(&bad_packets, 1);
	/* the stage byte, then the marker pair (sizeof counts both NULs) */
	if ((repl = malloc(1 + sizeof(marker) + 1)) == NULL) {
		free(buf);
		*cmd = SHIM_RD_ERROR;
		*rlen = 0;
		return NULL;
	}
	repl[0] = buf[0];
	memcpy(repl + 1, marker, sizeof(marker));
	repl[1 + sizeof(marker)] = '\0';	/* libmilter's own padding NUL, as in _FFR_ADD_NULL */
	*rlen = 1 + sizeof(marker);
	free(buf);
	return repl;
}

/* shim_reads - how many milter commands went through the checked reader */
unsigned long shim_reads(void)
{
	return atomic_load(&rd_calls);
}

/* shim_bad_packets - how many macro packets were replaced */
unsigned long shim_bad_packets(void)
{
	return atomic_load(&bad_packets);
}
