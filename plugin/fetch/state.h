/*
 * state - what btprelay-fetch remembers about one source: the mailbox's
 * UIDVALIDITY (IMAP), the ids (IMAP UIDs, POP3 UIDLs) of the messages
 * the MTA has accepted and the server may still hold, and per message how
 * many hand-overs were interrupted after the end of the message went out
 * (the MTA may have a copy of each).
 *
 * The file is private (0600) and replaced atomically: written to a
 * temporary file beside it, fsync'ed, renamed over it, the directory
 * fsync'ed. A crash leaves the old or the new file, never a mix. Ids are
 * kept sorted; lookups are binary searches.
 */
#ifndef BTPRELAY_FETCH_STATE_H
#define BTPRELAY_FETCH_STATE_H

#include <stddef.h>

struct fetch_state {
	char *path;
	unsigned long uidvalidity;	/* 0 = none yet (and always for POP3) */
	char **ids;			/* sorted */
	size_t n, cap;
	/*
	 * hand-overs whose final dot was about to go out but whose 250 was
	 * never recorded (interrupted): the MTA may hold that many copies
	 */
	struct state_sent {
		char *id;
		unsigned count;
	} *sent;
	size_t nsent;
};

/* state_load - read path; a missing file is an empty state. -1 with err set otherwise */
int state_load(struct fetch_state *st, const char *path, char *err, size_t errlen);
/* state_save - the atomic replacement; -1 with err set */
int state_save(const struct fetch_state *st, char *err, size_t errlen);
int state_has(const struct fetch_state *st, const char *id);
void state_add(struct fetch_state *st, const char *id);
/* state_keep - forget every id for which keep(id, arg) is 0 (gone from the server) */
void state_keep(struct fetch_state *st, int (*keep)(const char *id, void *arg), void *arg);
void state_clear(struct fetch_state *st);
/* state_sent_count - interrupted hand-overs of id (0: none) */
unsigned state_sent_count(const struct fetch_state *st, const char *id);
/* state_sent_set - set them (0 forgets id) */
void state_sent_set(struct fetch_state *st, const char *id, unsigned count);
void state_free(struct fetch_state *st);

#endif
