/*
 * fuzz - what the libFuzzer targets of tests/fuzz share: a peer on the
 * other end of a socketpair that plays the fuzz input as a server's byte
 * stream, a private temporary file for parsers that read files, a
 * loopback HTTP server for the parsers behind libcurl, and the checks
 * every outcome must pass whatever the input.
 *
 * A failed property check aborts (fuzz_assert), so libFuzzer saves the
 * input as a crash like any sanitizer report.
 */
#ifndef BTPRELAY_FUZZ_H
#define BTPRELAY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "bindings.h"
#include "conf.h"
#include "conn.h"
#include "dsn.h"

/* fuzz_assert - a property that must hold for every input: abort with the line when not */
#define fuzz_assert(cond) \
	((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

/* fuzz_quiet - log to /dev/null at debug level (the log formatting runs, nothing is shown) */
void fuzz_quiet(void);

/* fuzz_peer_quiet - fuzz_quiet(), and SIGPIPE ignored: for a target whose peer may go away */
void fuzz_peer_quiet(void);

/*
 * FUZZ_TARGET_INIT(setup) - the entry points' prototypes and an
 * LLVMFuzzerInitialize() that only calls setup(); FUZZ_TARGET_QUIET for a
 * target that needs no other set-up, FUZZ_TARGET_PEER for one that plays
 * a peer (fuzz_peer_quiet)
 */
#define FUZZ_TARGET_INIT(setup) \
	int LLVMFuzzerInitialize(int *argc, char ***argv); \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); \
	int LLVMFuzzerInitialize(int *argc, char ***argv) \
	{ \
		(void)argc; \
		(void)argv; \
		setup(); \
		return 0; \
	}
#define FUZZ_TARGET_QUIET FUZZ_TARGET_INIT(fuzz_quiet)
#define FUZZ_TARGET_PEER FUZZ_TARGET_INIT(fuzz_peer_quiet)

/*
 * struct fuzz_peer - the server side of a socketpair. A thread writes the
 * input (then half-closes), and reads what the client sends until the
 * client closes, keeping the first `keep` bytes of it in sent/nsent.
 */
struct fuzz_peer {
	int fd;			/* the server's end */
	pthread_t thread;
	const uint8_t *data;
	size_t len;
	char *sent;		/* what the client wrote (NUL-terminated), NULL when keep == 0 */
	size_t nsent, keep;
	int write_error;	/* the client closed before it read everything */
};

/*
 * fuzz_peer_start - connect c (conn_init'ed with timeout_ms) to a peer
 * that sends data[0..len). Returns 0, or -1 when no socketpair/thread.
 */
int fuzz_peer_start(struct fuzz_peer *p, struct conn *c, int timeout_ms, const uint8_t *data,
		    size_t len, size_t keep);
/*
 * fuzz_peer_hold_354 - set by SMTP targets: a peer stops after the first
 * input line that starts with 354 until the client has sent its final dot
 * (a relay says nothing in between), then sends the rest
 */
extern int fuzz_peer_hold_354;
/* fuzz_peer_end - after conn_close(): wait for the peer; free p->sent with fuzz_peer_free */
void fuzz_peer_end(struct fuzz_peer *p);
void fuzz_peer_free(struct fuzz_peer *p);

/*
 * fuzz_tmpfile - one private file (0600) per process, rewritten with
 * data on every call; returns its path
 */
const char *fuzz_tmpfile(const char *suffix, const uint8_t *data, size_t len);

/* fuzz_body_fd - a pipe whose reader yields text, then EOF (text must fit a pipe buffer) */
int fuzz_body_fd(const char *text);

/*
 * A loopback HTTP/1.1 server (one thread, one connection at a time,
 * Connection: close). fuzz_http_start() once; every request is answered by
 * the handler with a status and a body.
 */
struct fuzz_http_reply {
	int status;
	const char *body;
	size_t len;
};
typedef void (*fuzz_http_handler)(const char *method, const char *path,
				  struct fuzz_http_reply *r, void *arg);
/* fuzz_http_start - listen on 127.0.0.1; returns the port, or 0 */
unsigned fuzz_http_start(fuzz_http_handler handler, void *arg);
/*
 * fuzz_http_setup - fuzz_peer_quiet(), libcurl initialised, and
 * fuzz_http_start(handler, arg): url is "http://127.0.0.1:PORT" and path.
 * 0, or -1 (said on stderr) when there is no server.
 */
int fuzz_http_setup(fuzz_http_handler handler, void *arg, const char *path, char *url,
		    size_t size);

/* a token service's answer with a JWT that is no secret (client sb-clone-dest!b1) */
#define FUZZ_TOKEN_BODY "{\"access_token\":\"eyJhbGciOiJIUzI1NiJ9.eyJjaWQiOiJzYi1jbG9uZS1kZXN0IWIxIn0." \
	"c2ln\",\"token_type\":\"bearer\",\"expires_in\":43199}"

/* what fuzz_http_input() answers; a target sets status, data and len for each input */
struct fuzz_http_input {
	const char *token;	/* the token service's JSON for /oauth/token, NULL: none */
	int status;
	const uint8_t *data;
	size_t len;
};
/*
 * fuzz_http_input - a fuzz_http_handler for a struct fuzz_http_input at
 * arg: the token for a token request when one is set, else the status and
 * the input as the body
 */
void fuzz_http_input(const char *method, const char *path, struct fuzz_http_reply *r, void *arg);
/*
 * fuzz_config - the configuration's defaults, but no cache, no service
 * binding directories, and HTTP calls of at most 5 s without retries
 */
void fuzz_config(struct config *cfg);
/* fuzz_dest_bindings - a Destination Service binding whose token service and API are at base */
void fuzz_dest_bindings(struct bindings *b, char *base);
/* fuzz_http_requests - requests answered so far */
unsigned long fuzz_http_requests(void);

/*
 * fuzz_check_outcome - the contract of struct outcome: a valid enhanced
 * status code of the class, one line of printable text. bounce_ok: 0 when
 * this step may only defer (nothing but a relay's 5xx bounces).
 */
void fuzz_check_outcome(const struct outcome *o, int bounce_ok);

/* fuzz_has_ctl - whether s holds CR, LF or another control byte */
int fuzz_has_ctl(const char *s);

#endif
