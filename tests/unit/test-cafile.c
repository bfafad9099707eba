/*
 * test-cafile - a CA file read on demand (common/cafile.c) gives the same
 * verification results as the file loaded whole, for chains that end at
 * one of its certificates, at a certificate that shares a subject with
 * one (a renewed root: same name, new key), at a certificate added to the
 * store another way, and at nothing it holds; files that are more than
 * certificates, or missing, behave as OpenSSL's own loading does.
 * Certificates are made here (P-256 keys), in a temporary directory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cafile.h"
#include "tap.h"

struct cert {
	EVP_PKEY *key;
	X509 *x;
};

static char dir[] = "/tmp/test-cafile.XXXXXX";

/* key_new - a P-256 key */
static EVP_PKEY *key_new(void)
{
	EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
	EVP_PKEY *key = NULL;

	if (kctx == NULL || EVP_PKEY_keygen_init(kctx) <= 0
	    || EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1) <= 0
	    || EVP_PKEY_keygen(kctx, &key) <= 0) {
		fprintf(stderr, "cannot make a key\n");
		exit(99);
	}
	EVP_PKEY_CTX_free(kctx);
	return key;
}

/* cert_make - a certificate for cn, signed by issuer (NULL: self-signed); ca: basicConstraints CA */
static struct cert cert_make(const char *cn, const struct cert *issuer, int ca, long serial)
{
	struct cert c;
	X509_NAME *name = X509_NAME_new();
	X509_EXTENSION *ext;
	X509V3_CTX v3;

	c.key = key_new();
	c.x = X509_new();
	X509_set_version(c.x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c.x), serial);
	X509_gmtime_adj(X509_getm_notBefore(c.x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c.x), 86400);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(c.x, name);
	X509_set_issuer_name(c.x, issuer ? X509_get_subject_name(issuer->x) : name);
	X509_set_pubkey(c.x, c.key);
	X509V3_set_ctx(&v3, issuer ? issuer->x : c.x, c.x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(c.x, ext, -1);
	X509_EXTENSION_free(ext);
	if (ca) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
		X509_add_ext(c.x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	/* key identifiers: how OpenSSL tells two issuers with one name apart */
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
	X509_add_ext(c.x, ext, -1);
	X509_EXTENSION_free(ext);
	if (issuer) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
		X509_add_ext(c.x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	X509_sign(c.x, issuer ? issuer->key : c.key, EVP_sha256());
	X509_NAME_free(name);
	return c;
}

static void cert_free(struct cert *c)
{
	X509_free(c->x);
	EVP_PKEY_free(c->key);
}

/* write_pem - name in the temporary directory with the PEM of certs (and extra text) */
static const char *write_pem(const char *name, X509 *const *certs, size_t n, const char *extra)
{
	static char path[4][256];
	static int slot;
	char *p = path[slot++ % 4];
	FILE *f;
	size_t i;

	snprintf(p, 256, "%s/%s", dir, name);
	f = fopen(p, "w");
	for (i = 0; f && i < n; i++) {
		fprintf(f, "# certificate %zu\n", i);	/* text between blocks, as in RHEL's bundle */
		PEM_write_X509(f, certs[i]);
	}
	if (f && extra)
		fputs(extra, f);
	if (f == NULL || fclose(f) != 0) {
		perror(p);
		exit(99);
	}
	return p;
}

/* crl_pem - a valid, empty CRL of issuer as PEM text (static) */
static const char *crl_pem(const struct cert *issuer)
{
	static char text[4096];
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_new();
	BIO *bio = BIO_new(BIO_s_mem());
	int n;

	X509_CRL_set_version(crl, 1);
	X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->x));
	X509_gmtime_adj(t, 0);
	X509_CRL_set1_lastUpdate(crl, t);
	X509_gmtime_adj(t, 86400);
	X509_CRL_set1_nextUpdate(crl, t);
	X509_CRL_sign(crl, issuer->key, EVP_sha256());
	PEM_write_bio_X509_CRL(bio, crl);
	n = BIO_read(bio, text, sizeof(text) - 1);
	text[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	return text;
}

/* verify - X509_verify_cert of leaf (+ untrusted chain) against store: X509_V_OK or the error */
static int verify(X509_STORE *store, X509 *leaf, X509 *untrusted)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *chain = sk_X509_new_null();
	int rc;

	if (untrusted)
		sk_X509_push(chain, untrusted);
	X509_STORE_CTX_init(ctx, store, leaf, chain);
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	X509_STORE_CTX_free(ctx);
	sk_X509_free(chain);
	ERR_clear_error();
	return rc;
}

/* store_whole - the file loaded the usual way */
static X509_STORE *store_whole(const char *path)
{
	X509_STORE *s = X509_STORE_new();

	X509_LOOKUP_load_file(X509_STORE_add_lookup(s, X509_LOOKUP_file()), path, X509_FILETYPE_PEM);
	ERR_clear_error();
	return s;
}

/* store_lazy - the file as a cafile lookup; *lu gets it (NULL when refused) */
static X509_STORE *store_lazy(const char *path, int now, X509_LOOKUP **lu)
{
	X509_STORE *s = X509_STORE_new();

	*lu = cafile_lookup_add(s, path, now);
	return s;
}

int main(void)
{
	struct cert root_a, root_a2, root_b, other, inter, leaf_a, leaf_a2, leaf_b, leaf_i,
		leaf_other, self;
	X509_STORE *whole, *lazy;
	X509_LOOKUP *lu;
	const char *bundle, *withcrl, *empty;
	struct {
		const char *name;
		X509 *leaf, *untrusted;
	} cases[6];
	size_t i;
	int now, w, l;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 99;
	}
	root_a = cert_make("Root A", NULL, 1, 1);
	root_a2 = cert_make("Root A", NULL, 1, 2);	/* renewed: same subject, new key */
	root_b = cert_make("Root B", NULL, 1, 3);
	other = cert_make("Other Root", NULL, 1, 4);	/* not in the file */
	inter = cert_make("Intermediate B1", &root_b, 1, 5);
	leaf_a = cert_make("relay-a.example", &root_a, 0, 10);
	leaf_a2 = cert_make("relay-a2.example", &root_a2, 0, 11);
	leaf_b = cert_make("relay-b.example", &root_b, 0, 12);
	leaf_i = cert_make("relay-i.example", &inter, 0, 13);
	leaf_other = cert_make("relay-o.example", &other, 0, 14);
	self = cert_make("self.example", NULL, 0, 15);
	{
		X509 *in_file[] = { root_a.x, root_b.x, root_a2.x };

		bundle = write_pem("bundle.pem", in_file, 3, NULL);
		withcrl = write_pem("with-crl.pem", in_file, 3, crl_pem(&root_b));
		empty = write_pem("empty.pem", NULL, 0, "no certificates here\n");
	}
	cases[0].name = "leaf of a root in the file";
	cases[0].leaf = leaf_a.x, cases[0].untrusted = NULL;
	cases[1].name = "leaf of the renewed root (same subject, other key)";
	cases[1].leaf = leaf_a2.x, cases[1].untrusted = NULL;
	cases[2].name = "leaf of an intermediate, sent along, of a root in the file";
	cases[2].leaf = leaf_i.x, cases[2].untrusted = inter.x;
	cases[3].name = "leaf of an intermediate not sent";
	cases[3].leaf = leaf_i.x, cases[3].untrusted = NULL;
	cases[4].name = "leaf of a root not in the file";
	cases[4].leaf = leaf_other.x, cases[4].untrusted = NULL;
	cases[5].name = "self-signed leaf";
	cases[5].leaf = self.x, cases[5].untrusted = NULL;

	/* every case, the file read at once and on demand: the result of the whole file */
	for (now = 0; now <= 1; now++) {
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			whole = store_whole(bundle);
			lazy = store_lazy(bundle, now, &lu);
			w = verify(whole, cases[i].leaf, cases[i].untrusted);
			l = verify(lazy, cases[i].leaf, cases[i].untrusted);
			ok(lu != NULL && w == l, "%s, read %s: %s (%s)", cases[i].name,
			   now ? "at once" : "on demand", X509_verify_cert_error_string(l),
			   w == l ? "same" : X509_verify_cert_error_string(w));
			X509_STORE_free(whole);
			X509_STORE_free(lazy);
		}
	}
	/* the expected results themselves, so "same" is not "both broken" */
	whole = store_whole(bundle);
	is_int(verify(whole, leaf_a.x, NULL), X509_V_OK, "whole file: leaf of Root A verifies");
	is_int(verify(whole, leaf_a2.x, NULL), X509_V_OK, "whole file: leaf of the renewed Root A verifies");
	is_int(verify(whole, leaf_other.x, NULL), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
	       "whole file: leaf of another root does not");
	X509_STORE_free(whole);

	/* several verifications with one store: each subject loaded once, still the same */
	lazy = store_lazy(bundle, 0, &lu);
	for (i = 0; i < 3; i++) {
		ok(verify(lazy, leaf_a.x, NULL) == X509_V_OK && verify(lazy, leaf_a2.x, NULL) == X509_V_OK
		   && verify(lazy, leaf_b.x, NULL) == X509_V_OK
		   && verify(lazy, leaf_other.x, NULL) != X509_V_OK,
		   "one store, round %zu: the same results again", i + 1);
	}
	X509_STORE_free(lazy);

	/*
	 * Root A (the renewed one) added another way hides "Root A" from the
	 * lookups: cafile_lookup_name loads the file's other Root A, as a whole
	 * load would have had it.
	 */
	lazy = store_lazy(bundle, 0, &lu);
	X509_STORE_add_cert(lazy, root_a2.x);
	cafile_lookup_name(lu, X509_get_subject_name(root_a2.x));
	is_int(verify(lazy, leaf_a.x, NULL), X509_V_OK,
	       "a certificate added another way: the file's one with its subject still trusted");
	X509_STORE_free(lazy);

	/* more than certificates: refused when read at once, loaded whole on demand */
	lazy = store_lazy(withcrl, 1, &lu);
	ok(lu == NULL, "a file with a CRL: not taken when read at once");
	X509_STORE_free(lazy);
	lazy = store_lazy(withcrl, 0, &lu);
	whole = store_whole(withcrl);
	w = verify(whole, leaf_a.x, NULL);
	l = verify(lazy, leaf_a.x, NULL);
	ok(lu != NULL && w == l && l == X509_V_OK,
	   "a file with a CRL, on demand: loaded whole, same result (%s)",
	   X509_verify_cert_error_string(l));
	X509_STORE_free(lazy);
	X509_STORE_free(whole);

	/* no certificates, or no file: refused at once; on demand nothing is trusted */
	lazy = store_lazy(empty, 1, &lu);
	ok(lu == NULL, "a file without certificates: not taken when read at once");
	X509_STORE_free(lazy);
	lazy = store_lazy("/nonexistent/ca.pem", 1, &lu);
	ok(lu == NULL, "a missing file: not taken when read at once");
	X509_STORE_free(lazy);
	lazy = store_lazy("/nonexistent/ca.pem", 0, &lu);
	is_int(verify(lazy, leaf_a.x, NULL), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
	       "a missing file, on demand: nothing trusted, no error before");
	X509_STORE_free(lazy);

	/* one per store */
	lazy = store_lazy(bundle, 0, &lu);
	ok(lu != NULL && cafile_lookup_add(lazy, bundle, 0) == NULL, "a second cafile lookup is refused");
	X509_STORE_free(lazy);

	cert_free(&root_a);
	cert_free(&root_a2);
	cert_free(&root_b);
	cert_free(&other);
	cert_free(&inter);
	cert_free(&leaf_a);
	cert_free(&leaf_a2);
	cert_free(&leaf_b);
	cert_free(&leaf_i);
	cert_free(&leaf_other);
	cert_free(&self);
	unlink(bundle);
	unlink(withcrl);
	unlink(empty);
	rmdir(dir);
	return tap_done();
}
