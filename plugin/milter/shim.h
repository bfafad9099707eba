/*
 * shim - libmilter's signal wait and command reader, made safe (shim.c).
 */
#ifndef BTPRELAY_MILTER_SHIM_H
#define BTPRELAY_MILTER_SHIM_H

#include <stddef.h>
#include <sys/time.h>

/* the macro that stands for a macro packet that was not name/value pairs */
#define MILTER_BAD_MACROS "{btprelay_bad_macros}"

/* mi_rd_cmd - libmilter's command reader (its libmilter.h), wrapped in shim.c */
char *mi_rd_cmd(int sd, struct timeval *timeout, char *cmd, size_t *rlen, char *name);

/* shim_macros_ok - 1 when buf[0..len) (stage byte, strings) is whole name/value pairs */
int shim_macros_ok(const char *buf, size_t len);
/* shim_reads - milter commands read through the checked reader so far */
unsigned long shim_reads(void);
/* shim_bad_packets - macro packets replaced so far */
unsigned long shim_bad_packets(void);

#endif
