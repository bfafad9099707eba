/*
 * cafile - a CA file (PEM bundle) that an X509_STORE reads on demand.
 *
 * OpenSSL 3.0 decodes every certificate of a CA file when it is loaded:
 * the system bundle (about 150 certificates) costs some 20 ms of CPU and
 * megabytes of memory in every process, while a TLS session needs one or
 * two of them, and none when the relay offers no STARTTLS. A cafile lookup
 * splits the file into its certificates and decodes only their subjects
 * (a fraction of the cost); a certificate is decoded and added to the
 * store when the store asks for its subject, together with every other
 * certificate of the file with that subject. Chains and verification
 * results are those of a store that loaded the whole file.
 *
 * A file that holds anything but certificates (CRLs, keys, encrypted
 * blocks) is loaded whole, the usual way. Not thread-safe: a store with a
 * cafile lookup belongs to one thread at a time.
 */
#ifndef BTPRELAY_CAFILE_H
#define BTPRELAY_CAFILE_H

#include <openssl/x509.h>

/*
 * cafile_lookup_add - path as a lookup of store, asked before the lookups
 * added after it. now = 0: the file is read when the first subject is
 * asked for (and loaded whole if it is more than certificates; a file
 * that cannot be read adds nothing, as with SSL_CTX_set_default_verify_paths);
 * now = 1: read at once. Returns the lookup, or NULL when now = 1 and the
 * file cannot be read or is not certificates alone: then the caller loads
 * it the usual way, which reports an error in OpenSSL's words.
 */
X509_LOOKUP *cafile_lookup_add(X509_STORE *store, const char *path, int now);
/*
 * cafile_lookup_name - add the file's certificates with this subject to
 * the store now. Call it after adding a certificate to the store another
 * way: the store does not ask its lookups for a subject it already holds.
 */
void cafile_lookup_name(X509_LOOKUP *lookup, const X509_NAME *name);

#endif
