/* khcrypto.c: the crypto module (see khcrypto.h). Every OpenSSL return value
 * is checked; failures drain the error queue into the operational log and
 * clean up through one exit path. Plaintext bodies and intermediate copies of
 * them (signed-data DER, decrypted content) are wiped before they are freed;
 * memory BIOs that receive plaintext are "secmem" BIOs, which wipe their
 * buffer on growth and on free. */
#include "khcrypto.h"
#include "khlog.h"

#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KHC_MAX_INPUT ((size_t)16 * 1024 * 1024) /* seal/open/sign/verify */
#define KHC_MAX_FILE ((size_t)1024 * 1024)       /* PEM files */

void khc_drain_errors(const char *what)
{
    unsigned long e;
    const char *file = NULL, *func = NULL, *data = NULL;
    int line = 0, flags = 0;
    while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        char reason[256];
        ERR_error_string_n(e, reason, sizeof reason);
        if ((flags & ERR_TXT_STRING) && data != NULL && *data != '\0')
            kh_warn("crypto", "%s: %s (%s)", what, reason, data);
        else
            kh_warn("crypto", "%s: %s", what, reason);
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Never prompt for a passphrase: an encrypted key is simply refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

EVP_PKEY *khc_load_key(const char *path, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    FILE *fp = NULL;
    struct stat st;

    if (path == NULL) {
        set_err(err, errlen, "no key file given");
        return NULL;
    }
    /* open first, then fstat the descriptor, so what is checked is what is read. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        set_err(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "cannot stat key file %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "key file %s is not a regular file (mode %06o)", path,
                (unsigned)st.st_mode);
        close(fd);
        return NULL;
    }
    if ((st.st_mode & 077) != 0) {
        set_err(err, errlen,
                "key file %s has mode %04o: it must not be accessible by group or others "
                "(chmod 600 it)",
                path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return NULL;
    }
    if ((size_t)st.st_size > KHC_MAX_FILE) {
        set_err(err, errlen, "key file %s is larger than 1 MiB", path);
        close(fd);
        return NULL;
    }
    fp = fdopen(fd, "r");
    if (fp == NULL) {
        set_err(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (key == NULL) {
        /* The error queue names the parse failure, never key material. */
        khc_drain_errors("load key");
        set_err(err, errlen,
                "key file %s holds no usable PEM private key (encrypted keys are not supported)",
                path);
    }
    return key;
}

int khc_read_file(const char *path, uint8_t **out, size_t *outlen)
{
    return khc_read_file_max(path, KHC_MAX_FILE, out, outlen);
}

int khc_read_file_max(const char *path, size_t max, uint8_t **out, size_t *outlen)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;

    if (path == NULL || out == NULL || outlen == NULL)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 || (size_t)st.st_size > max ||
        max >= SIZE_MAX)
        goto err;
    cap = (size_t)st.st_size + 1; /* +1: room for the NUL, and detects growth */
    buf = malloc(cap);
    if (buf == NULL)
        goto err;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto err;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n == cap) /* the file grew while it was read */
        goto err;
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
err:
    close(fd);
    khc_free_secret(buf, cap);
    return -1;
}

X509 *khc_cert_from_pem(const uint8_t *pem, size_t len)
{
    if (pem == NULL || len == 0 || len > KHC_MAX_FILE)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        khc_drain_errors("certificate from PEM");
        return NULL;
    }
    X509 *cert = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    if (cert == NULL)
        khc_drain_errors("certificate from PEM");
    BIO_free(bio);
    return cert;
}

X509 *khc_load_cert(const char *path, char *err, size_t errlen)
{
    uint8_t *pem = NULL;
    size_t len = 0;
    if (khc_read_file(path, &pem, &len) != 0) {
        set_err(err, errlen,
                "cannot read certificate file %s (missing, not a regular file, "
                "or larger than 1 MiB)",
                path ? path : "(null)");
        return NULL;
    }
    X509 *cert = khc_cert_from_pem(pem, len);
    free(pem);
    if (cert == NULL)
        set_err(err, errlen, "certificate file %s holds no PEM certificate", path);
    return cert;
}

X509_STORE *khc_store_from_file(const char *ca_path, char *err, size_t errlen)
{
    struct stat st;
    if (ca_path == NULL || stat(ca_path, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "CA certificate file %s is missing or not a regular file",
                ca_path ? ca_path : "(null)");
        return NULL;
    }
    X509_STORE *store = X509_STORE_new();
    if (store == NULL || X509_STORE_load_file(store, ca_path) != 1) {
        khc_drain_errors("load CA certificates");
        set_err(err, errlen, "CA certificate file %s holds no usable PEM certificate", ca_path);
        X509_STORE_free(store);
        return NULL;
    }
    return store;
}

/* A national CA's list may be long: 16 MiB is some 400,000 entries. */
#define KHC_MAX_CRL_FILE (16u << 20)

/* The CA certificate in store that signed crl, or NULL. */
static X509 *crl_issuer(X509_STORE *store, X509_CRL *crl)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *ca = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (ca != NULL && X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) == 0 &&
            X509_CRL_verify(crl, X509_get0_pubkey(ca)) == 1)
            return ca;
    }
    return NULL;
}

int khc_store_add_crls(X509_STORE *store, const char *path, int64_t *left, char *err, size_t errlen)
{
    uint8_t *pem = NULL;
    size_t len = 0;
    if (store == NULL || khc_read_file_max(path, KHC_MAX_CRL_FILE, &pem, &len) != 0) {
        set_err(err, errlen, "CRL file %s is missing, unreadable or over 16 MiB", path);
        return -1;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509_INFO) *infos = bio ? PEM_X509_INFO_read_bio(bio, NULL, NULL, NULL) : NULL;
    int rc = infos != NULL ? 0 : -1, ncrl = 0;
    int64_t first = INT64_MAX;
    if (rc != 0)
        set_err(err, errlen, "CRL file %s is not PEM", path);
    for (int i = 0; rc == 0 && i < sk_X509_INFO_num(infos); i++) {
        X509_CRL *crl = sk_X509_INFO_value(infos, i)->crl;
        int days = 0, secs = 0;
        const ASN1_TIME *next = crl ? X509_CRL_get0_nextUpdate(crl) : NULL;
        if (crl == NULL)
            continue;
        if (crl_issuer(store, crl) == NULL) {
            set_err(err, errlen, "CRL %d of %s is not signed by a CA this store trusts", ncrl + 1,
                    path);
            rc = -1;
        } else if (next == NULL || ASN1_TIME_diff(&days, &secs, NULL, next) != 1 ||
                   (int64_t)days * 86400 + secs <= 0) {
            set_err(err, errlen,
                    "CRL %d of %s has expired (its nextUpdate has passed): sign it anew", ncrl + 1,
                    path);
            rc = -1;
        } else if (X509_STORE_add_crl(store, crl) != 1) {
            set_err(err, errlen, "CRL %d of %s cannot be added", ncrl + 1, path);
            rc = -1;
        } else {
            ncrl++;
            if ((int64_t)days * 86400 + secs < first)
                first = (int64_t)days * 86400 + secs;
        }
    }
    if (rc == 0 && ncrl == 0) {
        set_err(err, errlen, "CRL file %s holds no CRL", path);
        rc = -1;
    }
    if (rc == 0 && X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK) != 1) {
        set_err(err, errlen, "cannot turn revocation checks on");
        rc = -1;
    }
    if (rc == 0 && left != NULL)
        *left = first;
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    BIO_free(bio);
    free(pem);
    khc_drain_errors("load CRLs");
    return rc;
}

/* The one subject attribute of type nid as UTF-8 without NUL; two of them
 * would make "the" value ambiguous, so they are refused. */
static int subject_attr(X509 *cert, int nid, const char *what, char *out, size_t outlen)
{
    if (cert == NULL || out == NULL || outlen == 0)
        return -1;
    const X509_NAME *name = X509_get_subject_name(cert);
    if (name == NULL)
        return -1;
    int idx = X509_NAME_get_index_by_NID(name, nid, -1);
    if (idx < 0)
        return -1;
    if (X509_NAME_get_index_by_NID(name, nid, idx) >= 0)
        return -1;
    const ASN1_STRING *val = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, val);
    if (n < 0) {
        khc_drain_errors(what);
        return -1;
    }
    int rc = -1;
    if ((size_t)n < outlen && memchr(utf8, '\0', (size_t)n) == NULL) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
        rc = 0;
    }
    OPENSSL_free(utf8);
    return rc;
}

void khc_cert_free(X509 *cert)
{
    X509_free(cert);
}

void khc_key_free(EVP_PKEY *key)
{
    EVP_PKEY_free(key);
}

void khc_store_free(X509_STORE *store)
{
    X509_STORE_free(store);
}

int khc_cert_org(X509 *cert, char *out, size_t outlen)
{
    return subject_attr(cert, NID_organizationName, "certificate organisation", out, outlen);
}

int khc_cert_cn(X509 *cert, char *out, size_t outlen)
{
    return subject_attr(cert, NID_commonName, "certificate common name", out, outlen);
}

void khc_cert_serial(const X509 *cert, char *out, size_t outlen)
{
    BIGNUM *bn = cert ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL) : NULL;
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(out, outlen, "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    khc_drain_errors("certificate serial");
}

int64_t khc_cert_left(const X509 *cert, bool *ok)
{
    int days = 0, secs = 0;
    *ok = cert != NULL && ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter((X509 *)cert)) == 1;
    return *ok ? (int64_t)days * 86400 + secs : 0;
}

/* ---- verified certificates ----
 * A gateway opens every payload with the sender's certificate from the
 * signed directory, and checked that certificate's chain when it loaded the
 * directory: checking the same chain again for every message (a signature
 * verification and OpenSSL's chain building, ~7 % of an answering gateway's
 * CPU) proves nothing new until a certificate of the chain expires. So a
 * successful verification is remembered, per trust store and certificate
 * (its SHA-256 fingerprint, never its address), until the first notAfter of
 * the chain it was verified through or VERIFIED_TTL seconds, whichever comes
 * first; past that the chain is verified again. A store is told apart from
 * a later one at the same address by a number kept in its ex_data. */
static const EVP_MD *sha256(void);

#define VERIFIED_MAX 64
#define VERIFIED_TTL 300

static struct {
    uint64_t store_id;
    uint8_t fp[32];
    time_t until;
} verified[VERIFIED_MAX];
static size_t verified_next; /* the slot replaced next (round robin) */
static uint64_t store_ids;
static int store_idx = -1;
static pthread_mutex_t verified_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t store_idx_once = PTHREAD_ONCE_INIT;

static void store_id_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

static void store_idx_init(void)
{
    store_idx = X509_STORE_get_ex_new_index(0, NULL, NULL, NULL, store_id_free);
}

/* The store's number (given on first use; 0 if none can be kept). Under verified_mu. */
static uint64_t store_id(X509_STORE *store)
{
    if (store_idx < 0)
        return 0;
    uint64_t *id = X509_STORE_get_ex_data(store, store_idx);
    if (id == NULL) {
        id = malloc(sizeof *id);
        if (id == NULL)
            return 0;
        *id = ++store_ids;
        if (X509_STORE_set_ex_data(store, store_idx, id) != 1) {
            free(id);
            return 0;
        }
    }
    return *id;
}

/* Seconds from now to the earliest notAfter of chain (capped at cap). */
static long chain_left(STACK_OF(X509) * chain, long cap)
{
    long left = cap;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        int days = 0, secs = 0;
        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(sk_X509_value(chain, i))) != 1)
            return 0;
        long l = (long)days * 86400 + secs;
        if (l < left)
            left = l;
    }
    return left;
}

static int verify_chain(X509_STORE *store, X509 *cert, long *left)
{
    int rc = -1;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL || X509_STORE_CTX_init(ctx, store, cert, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY) != 1)
        goto out;
    if (X509_verify_cert(ctx) == 1) {
        rc = 0;
        if (left != NULL)
            *left = chain_left(X509_STORE_CTX_get0_chain(ctx), VERIFIED_TTL);
    } else {
        kh_warn("crypto", "certificate not trusted: %s",
                X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
out:
    X509_STORE_CTX_free(ctx);
    khc_drain_errors("certificate verification");
    return rc;
}

int khc_cert_verify(X509_STORE *store, X509 *cert)
{
    if (store == NULL || cert == NULL)
        return -1;
    return verify_chain(store, cert, NULL);
}

int khc_cert_verify_cached(X509_STORE *store, X509 *cert)
{
    if (store == NULL || cert == NULL)
        return -1;
    (void)pthread_once(&store_idx_once, store_idx_init);
    uint8_t fp[32];
    unsigned int fplen = 0;
    if (X509_digest(cert, sha256(), fp, &fplen) != 1 || fplen != sizeof fp) {
        khc_drain_errors("certificate fingerprint");
        return verify_chain(store, cert, NULL);
    }
    time_t now = time(NULL);
    pthread_mutex_lock(&verified_mu);
    uint64_t id = store_id(store);
    for (size_t i = 0; id != 0 && i < VERIFIED_MAX; i++)
        if (verified[i].store_id == id && now < verified[i].until &&
            memcmp(verified[i].fp, fp, sizeof fp) == 0) {
            pthread_mutex_unlock(&verified_mu);
            return 0;
        }
    pthread_mutex_unlock(&verified_mu);
    long left = 0;
    if (verify_chain(store, cert, &left) != 0)
        return -1;
    if (id != 0 && left > 0) {
        pthread_mutex_lock(&verified_mu);
        size_t k = verified_next++ % VERIFIED_MAX;
        verified[k].store_id = id;
        memcpy(verified[k].fp, fp, sizeof fp);
        verified[k].until = now + left;
        pthread_mutex_unlock(&verified_mu);
    }
    return 0;
}

bool khc_cert_equal(X509 *a, X509 *b)
{
    if (a == NULL || b == NULL)
        return false;
    unsigned char *da = NULL, *db = NULL;
    int la = i2d_X509(a, &da);
    int lb = i2d_X509(b, &db);
    bool eq = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    if (la <= 0 || lb <= 0)
        khc_drain_errors("certificate compare");
    return eq;
}

/* SHA-256 and HMAC fetched from the default provider once per process, not
 * looked up by name on every digest (OpenSSL 3's implicit fetch of
 * EVP_sha256() searches the provider store each time). Fall back to the
 * implicit form if the fetch failed. */
static EVP_MD *sha256_md;
static EVP_MAC *hmac_mac;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ERR_clear_error();
}

static const EVP_MD *sha256(void)
{
    pthread_once(&fetch_once, fetch_algorithms);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

int khc_sign(EVP_PKEY *key, const uint8_t *data, size_t len, uint8_t **sig, size_t *siglen)
{
    if (key == NULL || (data == NULL && len > 0) || sig == NULL || siglen == NULL ||
        len > KHC_MAX_INPUT)
        return -1;
    int rc = -1;
    uint8_t *buf = NULL;
    size_t n = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestSignInit(md, NULL, sha256(), NULL, key) != 1 ||
        EVP_DigestSignUpdate(md, data, len) != 1 || EVP_DigestSignFinal(md, NULL, &n) != 1 ||
        n == 0)
        goto out;
    buf = malloc(n);
    if (buf == NULL || EVP_DigestSignFinal(md, buf, &n) != 1)
        goto out;
    *sig = buf;
    *siglen = n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    EVP_MD_CTX_free(md);
    if (rc != 0)
        khc_drain_errors("sign");
    return rc;
}

int khc_verify(X509 *cert, const uint8_t *data, size_t len, const uint8_t *sig, size_t siglen)
{
    if (cert == NULL || (data == NULL && len > 0) || sig == NULL || siglen == 0 ||
        len > KHC_MAX_INPUT || siglen > KHC_MAX_INPUT)
        return -1;
    int rc = -1;
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (pub == NULL || md == NULL || EVP_DigestVerifyInit(md, NULL, sha256(), NULL, pub) != 1)
        goto out;
    if (EVP_DigestVerify(md, sig, siglen, data, len) == 1)
        rc = 0;
out:
    EVP_MD_CTX_free(md);
    if (rc != 0)
        khc_drain_errors("verify signature");
    return rc;
}

/* Wipes the attached content of a CMS structure (SignedData) before it is freed. */
static void wipe_cms_content(CMS_ContentInfo *cms)
{
    if (cms == NULL)
        return;
    ASN1_OCTET_STRING **pos = CMS_get0_content(cms);
    if (pos != NULL && *pos != NULL && (*pos)->data != NULL)
        OPENSSL_cleanse((*pos)->data, (size_t)(*pos)->length);
}

/* A memory BIO for plaintext: wiped on growth and on free. */
static BIO *secret_bio(void)
{
    return BIO_new(BIO_s_secmem());
}

/* The DER of a detached-certificate SignedData of body, for sealed_to. */
static int signed_der(const uint8_t *body, size_t len, X509 *sign_cert, EVP_PKEY *sign_key,
                      unsigned char **der, int *derlen)
{
    int rc = -1;
    CMS_ContentInfo *sd = NULL;
    /* SignedData, content attached, no certificates: the receiver takes
     * the signer's certificate from the signed directory (decoding one
     * carried in every message cost about a tenth of a gateway's CPU).
     * Signed attributes (content type, signing time, message digest) but no
     * S/MIME capabilities list: nobody here negotiates algorithms from it. */
    BIO *in = BIO_new_mem_buf(len > 0 ? (const void *)body : (const void *)"", (int)len);
    if (in == NULL)
        goto out;
    sd = CMS_sign(sign_cert, sign_key, NULL, in, CMS_BINARY | CMS_NOSMIMECAP | CMS_NOCERTS);
    if (sd == NULL)
        goto out;
    *derlen = i2d_CMS_ContentInfo(sd, der);
    if (*derlen <= 0)
        goto out;
    rc = 0;
out:
    BIO_free(in);
    wipe_cms_content(sd);
    CMS_ContentInfo_free(sd);
    return rc;
}

/* AuthEnvelopedData (AES-256-GCM, ECDH to recip_cert) of inner, a SignedData. */
static int sealed_to(const uint8_t *inner, size_t len, X509 *recip_cert, uint8_t **out,
                     size_t *outlen)
{
    int rc = -1, derlen = 0;
    BIO *sdin = NULL;
    unsigned char *der = NULL;
    uint8_t *res = NULL;
    CMS_ContentInfo *env = CMS_AuthEnvelopedData_create(EVP_aes_256_gcm());
    if (env == NULL)
        goto out;
    /* CMS_KEY_PARAM lets us set the ECDH KDF digest before CMS_final: OpenSSL
     * 3.0 otherwise uses dhSinglePass-stdDH-sha1kdf-scheme (X9.63 KDF with
     * SHA-1). SHA-256 gives ...-sha256kdf-scheme (RFC 5753), which the
     * openssl CLI decrypts as well. */
    CMS_RecipientInfo *ri = CMS_add1_recipient_cert(env, recip_cert, CMS_KEY_PARAM);
    if (ri == NULL || CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_AGREE)
        goto out;
    EVP_PKEY_CTX *kctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
    if (kctx == NULL || EVP_PKEY_CTX_set_ecdh_kdf_md(kctx, sha256()) <= 0)
        goto out;
    /* RFC 5652 §5.2: the inner content type names what is nested. */
    if (CMS_set1_eContentType(env, OBJ_nid2obj(NID_pkcs7_signed)) != 1)
        goto out;
    /* Quirk: CMS_AuthEnvelopedData_create leaves the encrypted content
     * detached (CMS_encrypt calls this too); without it the ciphertext is
     * silently dropped from the DER. */
    if (CMS_set_detached(env, 0) != 1)
        goto out;
    sdin = BIO_new_mem_buf(len > 0 ? (const void *)inner : (const void *)"", (int)len);
    if (sdin == NULL || CMS_final(env, sdin, NULL, CMS_BINARY) != 1)
        goto out;
    derlen = i2d_CMS_ContentInfo(env, &der);
    if (derlen <= 0)
        goto out;
    res = malloc((size_t)derlen);
    if (res == NULL)
        goto out;
    memcpy(res, der, (size_t)derlen);
    *out = res;
    *outlen = (size_t)derlen;
    rc = 0;
out:
    BIO_free(sdin);
    OPENSSL_free(der);
    CMS_ContentInfo_free(env);
    return rc;
}

int khc_seal(const uint8_t *body, size_t len, X509 *sign_cert, EVP_PKEY *sign_key, X509 *recip_cert,
             uint8_t **out, size_t *outlen)
{
    if ((body == NULL && len > 0) || sign_cert == NULL || sign_key == NULL || recip_cert == NULL ||
        out == NULL || outlen == NULL)
        return -1;
    if (len > KHC_MAX_INPUT) {
        kh_warn("crypto", "seal: body of %zu bytes exceeds the %zu byte limit", len, KHC_MAX_INPUT);
        return -1;
    }
    unsigned char *sd = NULL;
    int sdlen = 0;
    int rc = signed_der(body, len, sign_cert, sign_key, &sd, &sdlen) == 0 &&
                     sealed_to(sd, (size_t)sdlen, recip_cert, out, outlen) == 0
                 ? 0
                 : -1;
    if (rc != 0)
        khc_drain_errors("seal");
    OPENSSL_clear_free(sd, sdlen > 0 ? (size_t)sdlen : 0);
    return rc;
}

int khc_seal_signed(const uint8_t *body, size_t len, X509 *sign_cert, EVP_PKEY *sign_key,
                    uint8_t **out, size_t *outlen)
{
    unsigned char *sd = NULL;
    int sdlen = 0;
    if ((body == NULL && len > 0) || sign_cert == NULL || sign_key == NULL || out == NULL ||
        outlen == NULL || len > KHC_MAX_INPUT)
        return -1;
    int rc = signed_der(body, len, sign_cert, sign_key, &sd, &sdlen) == 0 &&
                     (*out = malloc((size_t)sdlen)) != NULL
                 ? 0
                 : -1;
    if (rc == 0) {
        memcpy(*out, sd, (size_t)sdlen);
        *outlen = (size_t)sdlen;
    } else {
        khc_drain_errors("seal");
    }
    OPENSSL_clear_free(sd, sdlen > 0 ? (size_t)sdlen : 0);
    return rc;
}

int khc_seal_inner(const uint8_t *inner, size_t len, X509 *recip_cert, uint8_t **out,
                   size_t *outlen)
{
    if ((inner == NULL && len > 0) || recip_cert == NULL || out == NULL || outlen == NULL ||
        len > KHC_MAX_INPUT)
        return -1;
    if (sealed_to(inner, len, recip_cert, out, outlen) != 0) {
        khc_drain_errors("seal");
        return -1;
    }
    return 0;
}

/* The one recipient shape a payload may have (PROTOCOL.md section 5), checked
 * before any key is used: key agreement with dhSinglePass-stdDH-sha256kdf-
 * scheme and AES-256 key wrap (RFC 3394), no parameters, one encrypted key.
 * The sender does not pick the algorithms our CMS code runs: OpenSSL 3.0's
 * unwrap of AES key wrap with padding (RFC 5649) writes 8 bytes past its
 * buffer when a wrapped key fails to open (openssl/openssl#30663), and every
 * other choice a message could make is code we neither need nor test. */
static int recipient_shape_ok(CMS_ContentInfo *env)
{
    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(env);
    if (ris == NULL || sk_CMS_RecipientInfo_num(ris) != 1)
        return 0;
    CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, 0);
    X509_ALGOR *kea = NULL;
    ASN1_OCTET_STRING *ukm = NULL;
    STACK_OF(CMS_RecipientEncryptedKey) *reks = NULL;
    if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_AGREE ||
        CMS_RecipientInfo_kari_get0_alg(ri, &kea, &ukm) != 1 || kea == NULL ||
        (reks = CMS_RecipientInfo_kari_get0_reks(ri)) == NULL ||
        sk_CMS_RecipientEncryptedKey_num(reks) != 1)
        return 0;
    const ASN1_OBJECT *oid = NULL;
    const void *pval = NULL;
    int ptype = 0;
    X509_ALGOR_get0(&oid, &ptype, &pval, kea);
    if (OBJ_obj2nid(oid) != NID_dhSinglePass_stdDH_sha256kdf_scheme || ptype != V_ASN1_SEQUENCE ||
        pval == NULL)
        return 0;
    /* the parameter is the key-wrap AlgorithmIdentifier, DER, whole */
    const ASN1_STRING *seq = pval;
    const unsigned char *p = ASN1_STRING_get0_data(seq);
    long n = ASN1_STRING_length(seq);
    X509_ALGOR *wrap = d2i_X509_ALGOR(NULL, &p, n);
    int ok = 0;
    if (wrap != NULL && p == ASN1_STRING_get0_data(seq) + n) {
        X509_ALGOR_get0(&oid, &ptype, NULL, wrap);
        ok = OBJ_obj2nid(oid) == NID_id_aes256_wrap && ptype == V_ASN1_UNDEF;
    }
    X509_ALGOR_free(wrap);
    return ok;
}

kh_err khc_open(const uint8_t *payload, size_t len, X509 *recip_cert, EVP_PKEY *recip_key,
                X509_STORE *trust, X509 *signer, uint8_t **body, size_t *bodylen)
{
    if (payload == NULL || recip_cert == NULL || recip_key == NULL || trust == NULL ||
        signer == NULL || body == NULL || bodylen == NULL)
        return KH_E_INTERNAL;
    if (len > KHC_MAX_INPUT) {
        kh_warn("crypto", "open: payload of %zu bytes exceeds the %zu byte limit", len,
                KHC_MAX_INPUT);
        return KH_E_TOO_LARGE;
    }
    if (len == 0)
        return KH_E_DECRYPT;

    kh_err rc = KH_E_DECRYPT;
    CMS_ContentInfo *env = NULL, *sd = NULL;
    BIO *dec = NULL, *content = NULL;
    STACK_OF(X509) *certs = NULL;
    uint8_t *res = NULL;
    const char *stage = "open: decrypt";

    /* 1. Decrypt the AuthEnvelopedData. Every failure here is KH_E_DECRYPT. */
    const unsigned char *p = payload;
    env = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    if (env == NULL || p != payload + len)
        goto out;
    if (OBJ_obj2nid(CMS_get0_type(env)) != NID_id_smime_ct_authEnvelopedData) {
        kh_warn("crypto", "open: payload is not CMS AuthEnvelopedData");
        goto out;
    }
    if (!recipient_shape_ok(env)) {
        kh_warn("crypto",
                "open: payload recipient is not ECDH (SHA-256 KDF) with AES-256 key wrap");
        goto out;
    }
    dec = secret_bio();
    if (dec == NULL) {
        rc = KH_E_INTERNAL;
        goto out;
    }
    if (CMS_decrypt_set1_pkey_and_peer(env, recip_key, recip_cert, NULL) != 1 ||
        CMS_decrypt(env, NULL, NULL, NULL, dec, CMS_BINARY) != 1)
        goto out;

    /* 2. The SignedData inside: signature over the content. */
    rc = KH_E_PAYLOAD_SIG;
    stage = "open: payload signature";
    const unsigned char *sdp = NULL;
    long sdlen = BIO_get_mem_data(dec, (char **)&sdp);
    if (sdlen <= 0 || sdp == NULL)
        goto out;
    const unsigned char *q = sdp;
    sd = d2i_CMS_ContentInfo(NULL, &q, sdlen);
    if (sd == NULL || q != sdp + sdlen)
        goto out;
    if (OBJ_obj2nid(CMS_get0_type(sd)) != NID_pkcs7_signed) {
        kh_warn("crypto", "open: decrypted payload is not CMS SignedData");
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(sd);
    if (sis == NULL || sk_CMS_SignerInfo_num(sis) != 1) {
        kh_warn("crypto", "open: payload must have exactly one signer");
        goto out;
    }
    content = secret_bio();
    if (content == NULL) {
        rc = KH_E_INTERNAL;
        goto out;
    }
    /* the one signer must be the expected one: its identifier (issuer and
     * serial) names signer, whatever certificates the message may carry */
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);
    if (CMS_SignerInfo_cert_cmp(si, signer) != 0) {
        rc = KH_E_UNTRUSTED_SIGNER;
        stage = "open: signer is not the expected one";
        goto out;
    }
    /* ... and sign as the protocol says, ECDSA with SHA-256: a message does
     * not choose a weaker digest for its signer */
    X509_ALGOR *dig = NULL, *sig = NULL;
    const ASN1_OBJECT *dig_oid = NULL, *sig_oid = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
    if (dig != NULL)
        X509_ALGOR_get0(&dig_oid, NULL, NULL, dig);
    if (sig != NULL)
        X509_ALGOR_get0(&sig_oid, NULL, NULL, sig);
    if (OBJ_obj2nid(dig_oid) != NID_sha256 || OBJ_obj2nid(sig_oid) != NID_ecdsa_with_SHA256) {
        kh_warn("crypto", "open: payload signature is not ECDSA with SHA-256");
        goto out;
    }
    certs = sk_X509_new_null();
    if (certs == NULL || !sk_X509_push(certs, signer)) {
        rc = KH_E_INTERNAL;
        goto out;
    }
    if (CMS_verify(sd, certs, NULL, NULL, content,
                   CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN | CMS_BINARY) != 1)
        goto out;

    /* 3. The signer's certificate against the trust store (a chain verified
     * a moment ago is not built again: khc_cert_verify_cached). */
    rc = KH_E_UNTRUSTED_SIGNER;
    stage = "open: signer certificate";
    if (khc_cert_verify_cached(trust, signer) != 0)
        goto out;

    rc = KH_E_INTERNAL;
    stage = "open";
    const unsigned char *cp = NULL;
    long clen = BIO_get_mem_data(content, (char **)&cp);
    if (clen < 0 || (clen > 0 && cp == NULL))
        goto out;
    res = malloc(clen > 0 ? (size_t)clen : 1);
    if (res == NULL)
        goto out;
    if (clen > 0)
        memcpy(res, cp, (size_t)clen);
    *body = res;
    *bodylen = (size_t)clen;
    res = NULL;
    rc = KH_OK;
out:
    if (rc != KH_OK)
        khc_drain_errors(stage);
    free(res); /* only reached with res != NULL before anything was copied */
    sk_X509_free(certs);
    wipe_cms_content(sd);
    CMS_ContentInfo_free(sd);
    CMS_ContentInfo_free(env);
    BIO_free(content); /* secmem: wiped */
    BIO_free(dec);     /* secmem: wiped */
    return rc;
}

int khc_random(uint8_t *buf, size_t n)
{
    if (buf == NULL && n > 0)
        return -1;
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(buf, chunk) != 1) {
            khc_drain_errors("random");
            return -1;
        }
        buf += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

int khc_sha256(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, sha256(), NULL) == 1 &&
             (alen == 0 || EVP_DigestUpdate(ctx, a, alen) == 1) &&
             (blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1) &&
             EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

struct khc_sha256_ctx {
    EVP_MD_CTX *md;
};

khc_sha256_ctx *khc_sha256_new(void)
{
    khc_sha256_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    if ((ctx->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(ctx->md, sha256(), NULL) != 1) {
        khc_drain_errors("sha-256");
        khc_sha256_free(ctx);
        return NULL;
    }
    return ctx;
}

int khc_sha256_update(khc_sha256_ctx *ctx, const void *data, size_t len)
{
    if (ctx == NULL || (data == NULL && len > 0))
        return -1;
    if (len > 0 && EVP_DigestUpdate(ctx->md, data, len) != 1) {
        khc_drain_errors("sha-256");
        return -1;
    }
    return 0;
}

int khc_sha256_peek(const khc_sha256_ctx *ctx, uint8_t out[32])
{
    if (ctx == NULL)
        return -1;
    unsigned int n = 0;
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    int ok = copy != NULL && EVP_MD_CTX_copy_ex(copy, ctx->md) == 1 &&
             EVP_DigestFinal_ex(copy, out, &n) == 1 && n == 32;
    EVP_MD_CTX_free(copy);
    if (!ok)
        khc_drain_errors("sha-256");
    return ok ? 0 : -1;
}

int khc_sha256_final(khc_sha256_ctx *ctx, uint8_t out[32])
{
    if (ctx == NULL)
        return -1;
    unsigned int n = 0;
    int ok = EVP_DigestFinal_ex(ctx->md, out, &n) == 1 && n == 32;
    if (!ok)
        khc_drain_errors("sha-256");
    khc_sha256_free(ctx);
    return ok ? 0 : -1;
}

int khc_sha256_pair(khc_sha256_ctx *ctx, const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen, uint8_t out[32])
{
    unsigned int n = 0;
    if (ctx == NULL)
        return -1;
    int ok = EVP_DigestInit_ex(ctx->md, sha256(), NULL) == 1 &&
             (alen == 0 || EVP_DigestUpdate(ctx->md, a, alen) == 1) &&
             (blen == 0 || EVP_DigestUpdate(ctx->md, b, blen) == 1) &&
             EVP_DigestFinal_ex(ctx->md, out, &n) == 1 && n == 32;
    if (!ok)
        khc_drain_errors("sha-256");
    return ok ? 0 : -1;
}

void khc_sha256_free(khc_sha256_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int khc_sha256_file(khc_sha256_ctx *ctx, const char *path, size_t max, char *err, size_t errlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (khc_read_file_max(path, max, &data, &len) != 0) {
        set_err(err, errlen, "cannot read %s", path);
        return -1;
    }
    int rc = khc_sha256_update(ctx, path, strlen(path) + 1) != 0 ||
                     khc_sha256_update(ctx, data, len) != 0
                 ? -1
                 : 0;
    if (rc != 0)
        set_err(err, errlen, "cannot digest %s", path);
    khc_free_secret(data, len);
    return rc;
}

int khc_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len,
                    uint8_t out[32])
{
    static const uint8_t empty[1] = {0};
    if ((key == NULL && keylen > 0) || (data == NULL && len > 0) || out == NULL)
        return -1;
    size_t n = 0;
    pthread_once(&fetch_once, fetch_algorithms);
    if (hmac_mac == NULL) { /* not fetched: the implicit form */
        if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, keylen > 0 ? key : empty, keylen,
                      len > 0 ? data : empty, len, out, 32, &n) == NULL ||
            n != 32) {
            khc_drain_errors("hmac");
            return -1;
        }
        return 0;
    }
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_mac);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA2-256", 0),
                           OSSL_PARAM_construct_end()};
    /* A NULL key means "keep the previous key" to EVP_MAC_init: pass a real pointer. */
    int ok = ctx != NULL && EVP_MAC_init(ctx, keylen > 0 ? key : empty, keylen, params) == 1 &&
             EVP_MAC_update(ctx, len > 0 ? data : empty, len) == 1 &&
             EVP_MAC_final(ctx, out, &n, 32) == 1 && n == 32;
    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        khc_drain_errors("hmac");
        return -1;
    }
    return 0;
}

bool khc_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return true;
    if (a == NULL || b == NULL)
        return false;
    return CRYPTO_memcmp(a, b, n) == 0;
}

void khc_wipe(void *p, size_t n)
{
    if (p != NULL)
        OPENSSL_cleanse(p, n);
}

void khc_free_secret(void *p, size_t n)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, n);
    free(p);
}

void khc_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* hex digit -> value + 1; 0 for every byte that is not one */
static const uint8_t hexval1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16};

int khc_unhex(const char *s, size_t slen, uint8_t *out, size_t n)
{
    if (s == NULL || out == NULL || slen != 2 * n)
        return -1;
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = hexval1[(unsigned char)s[2 * i]], lo = hexval1[(unsigned char)s[2 * i + 1]];
        bad |= (hi == 0) | (lo == 0);
        out[i] = (uint8_t)((hi - 1) << 4 | ((lo - 1) & 0x0f));
    }
    return bad ? -1 : 0;
}

/* ------------------------------------------------------------ passwords */

#define PW_N 32768u /* 2^15 */
#define PW_R 8u
#define PW_P 1u
#define PW_SALT 16
#define PW_HASH 32
/* what a stored string may ask for: at least today's strength, at most 256 MiB */
#define PW_MIN_N 16384u
#define PW_MAX_MEM ((uint64_t)256 << 20)

static int scrypt(const char *pw, size_t len, const uint8_t *salt, size_t saltlen, uint64_t n,
                  uint32_t r, uint32_t p, uint8_t out[PW_HASH])
{
    static const char empty[1] = {0};
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    uint64_t maxmem = PW_MAX_MEM + ((uint64_t)1 << 20);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)(len ? pw : empty), len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
        OSSL_PARAM_construct_end()};
    int rc = ctx != NULL && EVP_KDF_derive(ctx, out, PW_HASH, params) == 1 ? 0 : -1;
    if (rc != 0)
        khc_drain_errors("scrypt");
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

static int b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    if (4 * ((n + 2) / 3) + 1 > outlen)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    return 0;
}

/* Decodes exactly want bytes of standard base64 (with padding). */
static int b64_decode(const char *in, size_t inlen, uint8_t *out, size_t want)
{
    uint8_t buf[64];
    if (inlen == 0 || inlen % 4 != 0 || inlen / 4 * 3 > sizeof buf || 4 * ((want + 2) / 3) != inlen)
        return -1;
    for (size_t i = 0; i < inlen; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || (c == '=' && i >= inlen - 2)))
            return -1;
    }
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)inlen);
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (n < 0 || (size_t)n < want) {
        OPENSSL_cleanse(buf, sizeof buf);
        return -1;
    }
    memcpy(out, buf, want);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

int khc_password_hash(const char *pw, size_t len, char out[KHC_PWHASH_LEN])
{
    uint8_t salt[PW_SALT], hash[PW_HASH];
    char salt64[32], hash64[48];
    if (pw == NULL || len == 0 || len > KHC_PASSWORD_MAX || khc_random(salt, sizeof salt) != 0 ||
        scrypt(pw, len, salt, sizeof salt, PW_N, PW_R, PW_P, hash) != 0)
        return -1;
    int rc = -1;
    if (b64_encode(salt, sizeof salt, salt64, sizeof salt64) == 0 &&
        b64_encode(hash, sizeof hash, hash64, sizeof hash64) == 0) {
        int n = snprintf(out, KHC_PWHASH_LEN, "scrypt$%u$%u$%u$%s$%s", PW_N, PW_R, PW_P, salt64,
                         hash64);
        rc = n > 0 && n < KHC_PWHASH_LEN ? 0 : -1;
    }
    OPENSSL_cleanse(hash, sizeof hash);
    return rc;
}

/* Parses a stored string; 0 if it is ours and within bounds. */
static int pw_parse(const char *stored, uint64_t *n, uint32_t *r, uint32_t *p, uint8_t *salt,
                    uint8_t *hash)
{
    char salt64[64], hash64[64];
    unsigned long long nn;
    unsigned rr, pp;
    int used = 0;
    if (stored == NULL || strlen(stored) >= KHC_PWHASH_LEN ||
        sscanf(stored, "scrypt$%llu$%u$%u$%63[A-Za-z0-9+/=]$%63[A-Za-z0-9+/=]%n", &nn, &rr, &pp,
               salt64, hash64, &used) != 5 ||
        stored[used] != '\0')
        return -1;
    /* N a power of two, at least today's; r and p small; memory 128*r*N bounded */
    if (nn < PW_MIN_N || (nn & (nn - 1)) != 0 || rr < 1 || rr > 32 || pp < 1 || pp > 16 ||
        (uint64_t)128 * rr * nn > PW_MAX_MEM)
        return -1;
    if (b64_decode(salt64, strlen(salt64), salt, PW_SALT) != 0 ||
        b64_decode(hash64, strlen(hash64), hash, PW_HASH) != 0)
        return -1;
    *n = nn;
    *r = rr;
    *p = pp;
    return 0;
}

bool khc_password_verify(const char *pw, size_t len, const char *stored)
{
    static const uint8_t dummy_salt[PW_SALT] = "kakehashi-dummy";
    uint8_t salt[PW_SALT], want[PW_HASH], got[PW_HASH];
    uint64_t n = PW_N;
    uint32_t r = PW_R, p = PW_P;
    bool real = pw_parse(stored, &n, &r, &p, salt, want) == 0;
    if (!real) {
        /* the same work as a real check, for the same time */
        n = PW_N;
        r = PW_R;
        p = PW_P;
        memcpy(salt, dummy_salt, sizeof salt);
        memset(want, 0, sizeof want);
    }
    bool ok = pw != NULL && len > 0 && len <= KHC_PASSWORD_MAX &&
              scrypt(pw, len, salt, sizeof salt, n, r, p, got) == 0 &&
              CRYPTO_memcmp(got, want, sizeof got) == 0 && real;
    OPENSSL_cleanse(got, sizeof got);
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}
