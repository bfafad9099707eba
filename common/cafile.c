/*
 * cafile - a CA file (PEM bundle) that an X509_STORE reads on demand.
 *
 * The lookup (an X509_LOOKUP_METHOD of our own) holds the file's
 * certificates as DER, each with its decoded subject. OpenSSL asks a
 * store's lookups for a subject when the store's own objects have none:
 * cafile_by_subject() then decodes the file's certificates with that
 * subject, adds them to the store, and answers with the first. So the
 * store holds exactly what it would hold after loading the whole file, for
 * every subject it has asked about, which is all that chain building ever
 * sees. Adding a certificate by another way hides its subject from the
 * lookups: cafile_lookup_name() loads the file's certificates with that
 * subject too, as a whole-file load would have.
 *
 * What the index cannot stand for is loaded whole, as OpenSSL would: a
 * file with CRLs, keys or encrypted blocks, or one whose certificates do
 * not parse as far as their subject. One difference remains: a
 * certificate that is broken after its subject makes a whole-file load
 * fail, while here only that certificate is missing.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cafile.h"
#include "util.h"

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#define CAFILE_NAME const X509_NAME	/* the lookup callback's type changed in 3.0 */
#else
#define CAFILE_NAME X509_NAME
#endif

struct cafile_cert {
	X509_NAME *subject;
	unsigned char *der;
	long len;
	int trusted;		/* TRUSTED CERTIFICATE: with OpenSSL's trust settings */
	int added;		/* decoded and added to the store (or found broken) */
};

struct cafile {
	char *path;
	int state;		/* 0 = not read yet, 1 = indexed, -1 = nothing left to do */
	struct cafile_cert *certs;
	size_t n, cap;
};

/* cafile_free_index - the certificates held, and the file not indexed */
static void cafile_free_index(struct cafile *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		X509_NAME_free(f->certs[i].subject);
		OPENSSL_free(f->certs[i].der);
	}
	free(f->certs);
	f->certs = NULL;
	f->n = f->cap = 0;
}

/* der_step - into a SEQUENCE (over = 0), or over any element (1); -1 when malformed */
static int der_step(const unsigned char **p, const unsigned char *end, int over, int *tag,
		    int *xclass)
{
	long len;
	int ret = ASN1_get_object(p, &len, tag, xclass, (long)(end - *p));

	if (ret & 0x81)		/* an error, or indefinite length (not DER) */
		return -1;
	if (!over && (*tag != V_ASN1_SEQUENCE || *xclass != V_ASN1_UNIVERSAL
		      || !(ret & V_ASN1_CONSTRUCTED)))
		return -1;
	if (over)
		*p += len;
	return 0;
}

/*
 * cafile_subject - the subject of a DER certificate, without decoding the
 * rest: Certificate { tbsCertificate { [0] version OPTIONAL, serialNumber,
 * signature, issuer, validity, subject, ... } ... }
 */
static X509_NAME *cafile_subject(const unsigned char *der, long len)
{
	const unsigned char *p = der, *end = der + len, *subject;
	int tag, xclass, i;

	if (der_step(&p, end, 0, &tag, &xclass) < 0 || der_step(&p, end, 0, &tag, &xclass) < 0)
		return NULL;
	for (i = 0; i < 4; i++) {	/* over serialNumber, signature, issuer, validity */
		if (der_step(&p, end, 1, &tag, &xclass) < 0)
			return NULL;
		if (i == 0 && xclass == V_ASN1_CONTEXT_SPECIFIC && tag == 0)
			i--;	/* the version: the serial number follows */
	}
	subject = p;
	if (der_step(&p, end, 1, &tag, &xclass) < 0 || tag != V_ASN1_SEQUENCE)
		return NULL;
	len = (long)(p - subject);
	return d2i_X509_NAME(NULL, &subject, len);
}

/* cafile_index - split the file into certificates and their subjects; -1 when it is more */
static int cafile_index(struct cafile *f)
{
	BIO *bio = BIO_new_file(f->path, "r");
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	struct cafile_cert *c;
	unsigned long e;
	long len;
	int trusted, rc = -1;

	if (bio == NULL)
		return -1;
	for (;;) {
		if (!PEM_read_bio(bio, &name, &header, &data, &len)) {
			e = ERR_peek_last_error();
			if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE
			    && f->n > 0)
				rc = 0;		/* the end of the file */
			break;
		}
		trusted = strcmp(name, PEM_STRING_X509_TRUSTED) == 0;
		if ((!trusted && strcmp(name, PEM_STRING_X509) != 0
		     && strcmp(name, PEM_STRING_X509_OLD) != 0) || header[0] != '\0')
			break;
		if (f->n == f->cap) {
			struct cafile_cert *grown;

			f->cap = f->cap ? 2 * f->cap : 64;
			grown = xcalloc(f->cap, sizeof(*grown));
			if (f->n > 0)
				memcpy(grown, f->certs, f->n * sizeof(*grown));
			free(f->certs);
			f->certs = grown;
		}
		c = &f->certs[f->n];
		memset(c, 0, sizeof(*c));
		if ((c->subject = cafile_subject(data, len)) == NULL)
			break;
		c->der = data;
		c->len = len;
		c->trusted = trusted;
		f->n++;
		data = NULL;
		OPENSSL_free(name);
		OPENSSL_free(header);
		name = header = NULL;
	}
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(bio);
	ERR_clear_error();
	if (rc < 0)
		cafile_free_index(f);
	return rc;
}

/* cafile_load - the file's certificates with this subject into the store */
static void cafile_load(X509_LOOKUP *lu, struct cafile *f, const X509_NAME *name)
{
	X509_STORE *store = X509_LOOKUP_get_store(lu);
	const unsigned char *p;
	size_t i;
	X509 *x;

	if (f->state == 0) {
		f->state = cafile_index(f) == 0 ? 1 : -1;
		if (f->state < 0) {
			/* more than certificates, or unreadable: the whole file, errors ignored */
			X509_load_cert_crl_file(lu, f->path, X509_FILETYPE_PEM);
			ERR_clear_error();
		}
	}
	for (i = 0; f->state > 0 && i < f->n; i++) {
		if (f->certs[i].added || X509_NAME_cmp(f->certs[i].subject, name) != 0)
			continue;
		f->certs[i].added = 1;
		p = f->certs[i].der;
		x = f->certs[i].trusted ? d2i_X509_AUX(NULL, &p, f->certs[i].len)
			: d2i_X509(NULL, &p, f->certs[i].len);
		if (x != NULL) {
			X509_STORE_add_cert(store, x);	/* a duplicate is not an error */
			X509_free(x);
		}
		ERR_clear_error();
	}
}

/* cafile_by_subject - the lookup: load the subject's certificates, answer with one */
static int cafile_by_subject(X509_LOOKUP *lu, X509_LOOKUP_TYPE type, CAFILE_NAME *name,
			     X509_OBJECT *ret)
{
	struct cafile *f = X509_LOOKUP_get_method_data(lu);
	X509_STORE *store = X509_LOOKUP_get_store(lu);
	X509_OBJECT *obj;
	X509 *x = NULL;

	if (f == NULL || store == NULL || type != X509_LU_X509)
		return 0;
	cafile_load(lu, f, name);
	if (!X509_STORE_lock(store))
		return 0;
	obj = X509_OBJECT_retrieve_by_subject(X509_STORE_get0_objects(store), X509_LU_X509,
					      (X509_NAME *)name);
	if (obj != NULL)
		x = X509_OBJECT_get0_X509(obj);
	X509_STORE_unlock(store);
	if (x == NULL || !X509_OBJECT_set1_X509(ret, x))
		return 0;
	/* ret borrows the store's reference, as OpenSSL's own lookups' answers do:
	   the caller takes a reference of its own and never frees ret */
	X509_free(x);
	return 1;
}

/* cafile_free - the lookup is freed with its store */
static void cafile_free(X509_LOOKUP *lu)
{
	struct cafile *f = X509_LOOKUP_get_method_data(lu);

	if (f != NULL) {
		cafile_free_index(f);
		free(f->path);
		free(f);
	}
	X509_LOOKUP_set_method_data(lu, NULL);
}

/* cafile_method - the lookup method, made once */
static X509_LOOKUP_METHOD *cafile_method(void)
{
	static X509_LOOKUP_METHOD *m;

	if (m == NULL && (m = X509_LOOKUP_meth_new("btprelay CA file on demand")) != NULL) {
		X509_LOOKUP_meth_set_get_by_subject(m, cafile_by_subject);
		X509_LOOKUP_meth_set_free(m, cafile_free);
	}
	return m;
}

/* cafile_lookup_add - the file as a lookup of the store */
X509_LOOKUP *cafile_lookup_add(X509_STORE *store, const char *path, int now)
{
	X509_LOOKUP_METHOD *m = cafile_method();
	struct cafile *f;
	X509_LOOKUP *lu;

	if (m == NULL)
		return NULL;
	f = xcalloc(1, sizeof(*f));
	f->path = xstrdup(path);
	if (now && (f->state = cafile_index(f) == 0 ? 1 : -1) < 0) {
		free(f->path);
		free(f);
		return NULL;
	}
	if ((lu = X509_STORE_add_lookup(store, m)) == NULL
	    || X509_LOOKUP_get_method_data(lu) != NULL) {	/* one per store */
		cafile_free_index(f);
		free(f->path);
		free(f);
		return NULL;
	}
	X509_LOOKUP_set_method_data(lu, f);
	return lu;
}

/* cafile_lookup_name - the file's certificates with this subject, now */
void cafile_lookup_name(X509_LOOKUP *lu, const X509_NAME *name)
{
	struct cafile *f = lu != NULL ? X509_LOOKUP_get_method_data(lu) : NULL;

	if (f != NULL)
		cafile_load(lu, f, name);
}
