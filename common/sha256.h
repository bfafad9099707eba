/*
 * sha256.h - SHA-256 (FIPS 180-4), for the cache's file names.
 *
 * OpenSSL has SHA-256, but its first use in a process initialises the library
 * (reads openssl.cnf, builds its provider and algorithm tables): more than half of
 * the CPU of a delivery with warm caches that needs no TLS. The cache key is the
 * only hash such a delivery computes, so it has this one of its own.
 */
#ifndef BTPRELAY_SHA256_H
#define BTPRELAY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;		/* message length so far */
	unsigned char block[64];
	size_t used;		/* bytes in block */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, unsigned char out[SHA256_LEN]);

#endif
