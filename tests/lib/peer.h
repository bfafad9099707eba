/*
 * peer - the other end of a connection, for the unit tests and the fuzz
 * targets: a scripted TCP server (a thread on a loopback listener that
 * accepts one client and plays a list of steps: expect these bytes, send
 * those, stay silent, close), a connection on one end of a socketpair,
 * and the small socket chores every fake server repeats.
 *
 * Every wait for the client has a deadline (PEER_WAIT_MS each, the whole
 * script PEER_SCRIPT_MS); what the client sent is kept, at most
 * PEER_GOT_MAX bytes. A script that goes wrong never fails by itself: it
 * stops and says why in p->why, which the test asserts is "".
 */
#ifndef BTPRELAY_TEST_PEER_H
#define BTPRELAY_TEST_PEER_H

#include <pthread.h>
#include <stddef.h>

#include "conn.h"

#define PEER_WAIT_MS 3000		/* for each step: the client's bytes, or the client */
#define PEER_SCRIPT_MS 60000		/* for the whole script, the final reading included */
#define PEER_GOT_MAX (16u << 20)	/* what the client may send in all */
#define PEER_STEPS_MAX 48

enum peer_op {
	PEER_EXPECT = 1,	/* read exactly these bytes */
	PEER_ALONE,		/* nothing more arrives for a while (no pipelining) */
	PEER_SEND,
	PEER_CLOSE,		/* close the connection, end the script */
	PEER_PAUSE,		/* sleep len milliseconds */
	PEER_EOF,		/* close fd len: the end of a message the client reads from a pipe */
	PEER_REQUEST,		/* read one HTTP/1.1 request: head, then Content-Length bytes */
	PEER_ACCEPT,		/* close the connection, accept the client's next one */
};

struct peer_step {
	enum peer_op op;
	const void *data;
	size_t len;
};

struct peer {
	int lfd;
	unsigned port;		/* where the client connects to (127.0.0.1) */
	pthread_t th;
	struct peer_step steps[PEER_STEPS_MAX];
	size_t nsteps;
	char *got;		/* every byte the client sent, NUL-terminated */
	size_t gotlen, gotcap;
	char why[512];		/* the first mismatch, "" if none */
};

/* peer_add - append a step; a len of 0 with data means strlen(data) */
void peer_add(struct peer *p, enum peer_op op, const void *data, size_t len);
/* peer_start - listen on 127.0.0.1, an ephemeral port, and play the script in a thread */
void peer_start(struct peer *p);
/* peer_finish - wait for the script to end (the client has closed its end) */
void peer_finish(struct peer *p);
/* peer_free - the transcript; p is zeroed for the next script */
void peer_free(struct peer *p);
/* peer_count - how often the client sent text (requests, commands) */
int peer_count(const struct peer *p, const char *text);

/*
 * peer_listen - a listening socket on 127.0.0.1, an ephemeral port (in
 * *port), with the backlog; -1 when none
 */
int peer_listen(int backlog, unsigned *port);
/* peer_free_port - a loopback port nobody listens on (refused connections) */
unsigned peer_free_port(void);
/*
 * peer_pair - c (conn_init'ed with timeout_ms and deadline) on the
 * non-blocking end of a socketpair; returns the other end, or -1
 */
int peer_pair(struct conn *c, int timeout_ms, double deadline);
/* peer_send_all - len bytes to fd; 0, or -1 when the other side went away */
int peer_send_all(int fd, const void *data, size_t len);
/*
 * peer_http_length - the length of the HTTP/1.1 request at req (a C
 * string of what has arrived): its head and Content-Length bytes; 0 while
 * the head is not complete
 */
size_t peer_http_length(const char *req);
/*
 * peer_http_read - one HTTP/1.1 request from fd into buf, NUL-terminated,
 * each read within PEER_WAIT_MS; its length, or -1 when the connection
 * ends or goes silent first, or the request does not fit
 */
long peer_http_read(int fd, char *buf, size_t size);

#endif
