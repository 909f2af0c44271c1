/* Unit tests for gateway/khcrypto.c. The PKI (a national CA, a rogue CA, two
 * organisations' signing and encryption certificates, a rogue signer) is made
 * in-process with the OpenSSL API before the tests fork, so the test needs no
 * files other than the key files it writes to check khc_load_key. */
#include "khcrypto.h"
#include "khenv.h"

#include <check.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} pair;

static pair national, rogue_ca, a_sign, a_enc, b_sign, b_enc, rogue_sign, no_org, two_orgs;
static X509_STORE *trust;
static char tmpdir[] = "/tmp/test_crypto.XXXXXX";

/* memmem is a GNU extension; this is enough for the tests. */
static uint8_t *find_bytes(uint8_t *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; m <= n && i <= n - m; i++)
        if (memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}

/* ---- in-process PKI (made before Check forks: no ck_assert here) ---- */

#define NEED(x)                                                                                    \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "test setup failed at line %d: %s\n", __LINE__, #x);                   \
            ERR_print_errors_fp(stderr);                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    NEED(ext);
    NEED((X509_add_ext(cert, ext, -1)) == 1);
    X509_EXTENSION_free(ext);
}

/* A P-256 key and a certificate for it; issuer NULL = self-signed.
 * orgs: NULL-terminated list of O= values (may be empty). */
static pair make_pair(const char *const *orgs, const char *ou, const char *cn, const pair *issuer,
                      bool ca)
{
    pair p;
    p.key = EVP_EC_gen("P-256");
    NEED(p.key);
    p.cert = X509_new();
    NEED(p.cert);
    NEED((X509_set_version(p.cert, X509_VERSION_3)) == 1);
    unsigned char serial[8];
    NEED((RAND_bytes(serial, sizeof serial)) == 1);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    NEED(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(p.cert)));
    BN_free(bn);
    NEED(X509_gmtime_adj(X509_getm_notBefore(p.cert), -60));
    NEED(X509_gmtime_adj(X509_getm_notAfter(p.cert), 86400L * 365));
    NEED((X509_set_pubkey(p.cert, p.key)) == 1);
    X509_NAME *name = X509_get_subject_name(p.cert);
    for (const char *const *o = orgs; *o != NULL; o++)
        NEED((X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)*o, -1,
                                         -1, 0)) == 1);
    if (ou != NULL)
        NEED((X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1,
                                         -1, 0)) == 1);
    NEED((X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                     0)) == 1);
    X509 *icert = issuer ? issuer->cert : p.cert;
    EVP_PKEY *ikey = issuer ? issuer->key : p.key;
    NEED((X509_set_issuer_name(p.cert, X509_get_subject_name(icert))) == 1);
    if (ca) {
        add_ext(p.cert, icert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(p.cert, icert, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(p.cert, icert, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(p.cert, icert, NID_key_usage,
                strcmp(ou ? ou : "", "enc") == 0 ? "critical,keyAgreement"
                                                 : "critical,digitalSignature,nonRepudiation");
    }
    NEED((X509_sign(p.cert, ikey, EVP_sha256())) > 0);
    return p;
}

static void free_pair(pair *p)
{
    EVP_PKEY_free(p->key);
    X509_free(p->cert);
}

#define ORGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void pki_setup(void)
{
    national = make_pair(ORGS("KH-NATIONAL"), NULL, "Test National CA", NULL, true);
    rogue_ca = make_pair(ORGS("ROGUE"), NULL, "Rogue CA", NULL, true);
    a_sign = make_pair(ORGS("131016"), "sign", "131016 sign", &national, false);
    a_enc = make_pair(ORGS("131016"), "enc", "131016 enc", &national, false);
    b_sign = make_pair(ORGS("271004"), "sign", "271004 sign", &national, false);
    b_enc = make_pair(ORGS("271004"), "enc", "271004 enc", &national, false);
    rogue_sign = make_pair(ORGS("271004"), "sign", "271004 sign", &rogue_ca, false);
    no_org = make_pair((const char *const[]){NULL}, NULL, "nobody", &national, false);
    two_orgs = make_pair(ORGS("131016", "271004"), "sign", "two", &national, false);
    trust = X509_STORE_new();
    NEED(trust);
    NEED((X509_STORE_add_cert(trust, national.cert)) == 1);
    NEED(mkdtemp(tmpdir));
}

static void pki_teardown(void)
{
    pair *all[] = {&national, &rogue_ca,   &a_sign, &a_enc,   &b_sign,
                   &b_enc,    &rogue_sign, &no_org, &two_orgs};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free_pair(all[i]);
    X509_STORE_free(trust);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* Envelopes arbitrary content the way khc_seal does (AuthEnvelopedData,
 * AES-256-GCM, ECDH to recip): for building hand-made bad payloads. */
static void envelope(const uint8_t *content, size_t len, X509 *recip, uint8_t **out, size_t *outlen)
{
    CMS_ContentInfo *env = CMS_AuthEnvelopedData_create(EVP_aes_256_gcm());
    ck_assert_ptr_nonnull(env);
    CMS_RecipientInfo *ri = CMS_add1_recipient_cert(env, recip, CMS_KEY_PARAM);
    ck_assert_ptr_nonnull(ri);
    ck_assert_int_gt(
        EVP_PKEY_CTX_set_ecdh_kdf_md(CMS_RecipientInfo_get0_pkey_ctx(ri), EVP_sha256()), 0);
    ck_assert_int_eq(CMS_set_detached(env, 0), 1);
    BIO *in = BIO_new_mem_buf(content, (int)len);
    ck_assert_ptr_nonnull(in);
    ck_assert_int_eq(CMS_final(env, in, NULL, CMS_BINARY), 1);
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(env, &der);
    ck_assert_int_gt(n, 0);
    *out = malloc((size_t)n);
    ck_assert_ptr_nonnull(*out);
    memcpy(*out, der, (size_t)n);
    *outlen = (size_t)n;
    OPENSSL_free(der);
    BIO_free(in);
    CMS_ContentInfo_free(env);
}

/* DER SignedData of content by signer (flags as CMS_sign). */
static unsigned char *signed_data(const char *content, const pair *signer, unsigned flags, int *len)
{
    BIO *in = BIO_new_mem_buf(content, (int)strlen(content));
    ck_assert_ptr_nonnull(in);
    CMS_ContentInfo *sd = CMS_sign(signer->cert, signer->key, NULL, in, flags);
    ck_assert_ptr_nonnull(sd);
    unsigned char *der = NULL;
    *len = i2d_CMS_ContentInfo(sd, &der);
    ck_assert_int_gt(*len, 0);
    CMS_ContentInfo_free(sd);
    BIO_free(in);
    return der;
}

/* Opens payload as b (271004) with the national CA as trust, expecting it
 * signed by `from`; frees outputs. */
static kh_err open_from(const uint8_t *payload, size_t len, X509 *from)
{
    uint8_t *body = NULL;
    size_t bodylen = 0;
    kh_err e = khc_open(payload, len, b_enc.cert, b_enc.key, trust, from, &body, &bodylen);
    if (e != KH_OK)
        ck_assert_ptr_null(body);
    khc_free_secret(body, bodylen);
    return e;
}

/* The same, expecting 131016's signature (what most tests seal). */
static kh_err open_as_b(const uint8_t *payload, size_t len)
{
    return open_from(payload, len, a_sign.cert);
}

static const char body_text[] =
    "{\"msg\":\"0123456789abcdef\",\"name\":\"\xe5\xb1\xb1\xe7\x94\xb0\"}";

/* ---- tests ---- */

START_TEST(sign_verify)
{
    uint8_t data[] = "header bytes to sign";
    uint8_t *sig = NULL;
    size_t siglen = 0;
    ck_assert_int_eq(khc_sign(a_sign.key, data, sizeof data, &sig, &siglen), 0);
    ck_assert_ptr_nonnull(sig);
    ck_assert_uint_gt(siglen, 8);
    ck_assert_uint_le(siglen, 72);
    ck_assert_int_eq(sig[0], 0x30); /* DER SEQUENCE */
    ck_assert_int_eq(khc_verify(a_sign.cert, data, sizeof data, sig, siglen), 0);
    ck_assert_int_ne(khc_verify(b_sign.cert, data, sizeof data, sig, siglen), 0);
    data[3] ^= 0x01;
    ck_assert_int_ne(khc_verify(a_sign.cert, data, sizeof data, sig, siglen), 0);
    data[3] ^= 0x01;
    sig[siglen - 1] ^= 0x80;
    ck_assert_int_ne(khc_verify(a_sign.cert, data, sizeof data, sig, siglen), 0);
    sig[siglen - 1] ^= 0x80;
    ck_assert_int_ne(khc_verify(a_sign.cert, data, sizeof data - 1, sig, siglen), 0);
    ck_assert_int_ne(khc_verify(a_sign.cert, data, sizeof data, sig, siglen - 1), 0);
    ck_assert_int_eq(khc_verify(a_sign.cert, data, sizeof data, sig, siglen), 0);
    free(sig);

    /* empty input is signable */
    ck_assert_int_eq(khc_sign(a_sign.key, NULL, 0, &sig, &siglen), 0);
    ck_assert_int_eq(khc_verify(a_sign.cert, NULL, 0, sig, siglen), 0);
    free(sig);
}
END_TEST

START_TEST(seal_open_round_trip)
{
    uint8_t *payload = NULL, *body = NULL;
    size_t plen = 0, blen = 0;
    ck_assert_int_eq(khc_seal((const uint8_t *)body_text, strlen(body_text), a_sign.cert,
                              a_sign.key, b_enc.cert, &payload, &plen),
                     0);
    ck_assert_ptr_nonnull(payload);
    /* the body is not visible in the payload */
    ck_assert_ptr_null(find_bytes(payload, plen, "0123456789abcdef", 16));
    ck_assert_int_eq(
        khc_open(payload, plen, b_enc.cert, b_enc.key, trust, a_sign.cert, &body, &blen), KH_OK);
    ck_assert_uint_eq(blen, strlen(body_text));
    ck_assert_mem_eq(body, body_text, blen);
    khc_free_secret(body, blen);
    /* expecting another (trusted) signer: refused, nothing returned */
    ck_assert_int_eq(open_from(payload, plen, b_sign.cert), KH_E_UNTRUSTED_SIGNER);
    /* no expected signer at all */
    body = NULL;
    ck_assert_int_eq(khc_open(payload, plen, b_enc.cert, b_enc.key, trust, NULL, &body, &blen),
                     KH_E_INTERNAL);
    ck_assert_ptr_null(body);
    free(payload);
}
END_TEST

START_TEST(seal_open_binary_and_empty)
{
    uint8_t bin[3000];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7);
    bin[10] = '\r';
    bin[11] = '\n';
    bin[12] = 0;
    size_t lens[] = {sizeof bin, 1, 0};
    for (size_t t = 0; t < 3; t++) {
        uint8_t *payload = NULL, *body = NULL;
        size_t plen = 0, blen = 0;
        ck_assert_int_eq(
            khc_seal(bin, lens[t], a_sign.cert, a_sign.key, b_enc.cert, &payload, &plen), 0);
        ck_assert_int_eq(
            khc_open(payload, plen, b_enc.cert, b_enc.key, trust, a_sign.cert, &body, &blen),
            KH_OK);
        ck_assert_uint_eq(blen, lens[t]);
        if (blen > 0)
            ck_assert_mem_eq(body, bin, blen);
        khc_free_secret(body, blen);
        free(payload);
    }
}
END_TEST

START_TEST(open_other_recipient)
{
    uint8_t *payload = NULL, *body = NULL;
    size_t plen = 0, blen = 0;
    ck_assert_int_eq(khc_seal((const uint8_t *)body_text, strlen(body_text), a_sign.cert,
                              a_sign.key, b_enc.cert, &payload, &plen),
                     0);
    /* another organisation's encryption key */
    ck_assert_int_eq(
        khc_open(payload, plen, a_enc.cert, a_enc.key, trust, a_sign.cert, &body, &blen),
        KH_E_DECRYPT);
    ck_assert_ptr_null(body);
    /* the right certificate with the wrong key */
    ck_assert_int_eq(
        khc_open(payload, plen, b_enc.cert, a_enc.key, trust, a_sign.cert, &body, &blen),
        KH_E_DECRYPT);
    ck_assert_ptr_null(body);
    free(payload);
}
END_TEST

START_TEST(open_tampered)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    ck_assert_int_eq(khc_seal((const uint8_t *)body_text, strlen(body_text), a_sign.cert,
                              a_sign.key, b_enc.cert, &payload, &plen),
                     0);
    ck_assert_int_eq(open_as_b(payload, plen), KH_OK);
    /* a byte of the ciphertext, well inside it */
    payload[plen - 200] ^= 0x01;
    ck_assert_int_eq(open_as_b(payload, plen), KH_E_DECRYPT);
    payload[plen - 200] ^= 0x01;
    /* the last byte: the GCM tag */
    payload[plen - 1] ^= 0x80;
    ck_assert_int_eq(open_as_b(payload, plen), KH_E_DECRYPT);
    payload[plen - 1] ^= 0x80;
    /* truncated, extended, empty, garbage */
    ck_assert_int_eq(open_as_b(payload, plen - 1), KH_E_DECRYPT);
    uint8_t *longer = malloc(plen + 1);
    ck_assert_ptr_nonnull(longer);
    memcpy(longer, payload, plen);
    longer[plen] = 0;
    ck_assert_int_eq(open_as_b(longer, plen + 1), KH_E_DECRYPT);
    free(longer);
    ck_assert_int_eq(open_as_b(payload, 0), KH_E_DECRYPT);
    ck_assert_int_eq(open_as_b((const uint8_t *)"garbage", 7), KH_E_DECRYPT);
    ck_assert_int_eq(open_as_b(payload, plen), KH_OK);
    free(payload);
}
END_TEST

/* Every single-byte change either is refused or leaves body and signer intact
 * (a few DER bytes, like the unauthenticated inner content-type OID, are not
 * covered by the GCM tag but carry no data). */
START_TEST(open_tampered_sweep)
{
    const char *msg = "sweep body";
    uint8_t *payload = NULL;
    size_t plen = 0;
    ck_assert_int_eq(khc_seal((const uint8_t *)msg, strlen(msg), a_sign.cert, a_sign.key,
                              b_enc.cert, &payload, &plen),
                     0);
    int refused = 0;
    for (size_t i = 0; i < plen; i++) {
        payload[i] ^= 0x04;
        uint8_t *body = NULL;
        size_t blen = 0;
        kh_err e = khc_open(payload, plen, b_enc.cert, b_enc.key, trust, a_sign.cert, &body, &blen);
        if (e == KH_OK) {
            ck_assert_uint_eq(blen, strlen(msg));
            ck_assert_mem_eq(body, msg, blen);
        } else {
            ck_assert_msg(e == KH_E_DECRYPT, "byte %zu: unexpected %s", i, kh_err_code(e));
            refused++;
        }
        khc_free_secret(body, blen);
        payload[i] ^= 0x04;
    }
    ck_assert_int_gt(refused, (int)plen * 9 / 10);
    free(payload);
}
END_TEST

START_TEST(open_altered_signed_content)
{
    /* SignedData whose content was changed after signing, then re-encrypted:
     * decrypts fine, but the messageDigest no longer matches. */
    int sdlen = 0;
    unsigned char *sd = signed_data("transfer 100 yen", &a_sign, CMS_BINARY, &sdlen);
    unsigned char *at = find_bytes(sd, (size_t)sdlen, "100", 3);
    ck_assert_ptr_nonnull(at);
    memcpy(at, "999", 3);
    uint8_t *payload = NULL;
    size_t plen = 0;
    envelope(sd, (size_t)sdlen, b_enc.cert, &payload, &plen);
    ck_assert_int_eq(open_as_b(payload, plen), KH_E_PAYLOAD_SIG);
    free(payload);
    OPENSSL_free(sd);
}
END_TEST

START_TEST(open_bad_inner_structures)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    /* not a SignedData at all */
    envelope((const uint8_t *)"plain text", 10, b_enc.cert, &payload, &plen);
    ck_assert_int_eq(open_as_b(payload, plen), KH_E_PAYLOAD_SIG);
    free(payload);

    /* SignedData without certificates (what khc_seal makes) opens with the
     * expected signer; one that carries its certificate (made before
     * payloads stopped carrying it, or by the openssl CLI) opens too, and
     * the certificate it carries is ignored */
    int sdlen = 0;
    unsigned char *sd = signed_data("no certs", &a_sign, CMS_BINARY | CMS_NOCERTS, &sdlen);
    envelope(sd, (size_t)sdlen, b_enc.cert, &payload, &plen);
    ck_assert_int_eq(open_as_b(payload, plen), KH_OK);
    ck_assert_int_eq(open_from(payload, plen, b_sign.cert), KH_E_UNTRUSTED_SIGNER);
    free(payload);
    OPENSSL_free(sd);
    sd = signed_data("with its cert", &a_sign, CMS_BINARY, &sdlen);
    envelope(sd, (size_t)sdlen, b_enc.cert, &payload, &plen);
    ck_assert_int_eq(open_as_b(payload, plen), KH_OK);
    ck_assert_int_eq(open_from(payload, plen, b_sign.cert), KH_E_UNTRUSTED_SIGNER);
    free(payload);
    OPENSSL_free(sd);

    /* detached SignedData (no content inside) */
    sd = signed_data("detached", &a_sign, CMS_BINARY | CMS_DETACHED, &sdlen);
    envelope(sd, (size_t)sdlen, b_enc.cert, &payload, &plen);
    ck_assert_int_eq(open_as_b(payload, plen), KH_E_PAYLOAD_SIG);
    free(payload);
    OPENSSL_free(sd);

    /* two signers */
    BIO *in = BIO_new_mem_buf("two signers", -1);
    CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, in, CMS_BINARY | CMS_PARTIAL);
    ck_assert_ptr_nonnull(cms);
    ck_assert_ptr_nonnull(CMS_add1_signer(cms, a_sign.cert, a_sign.key, EVP_sha256(), 0));
    ck_assert_ptr_nonnull(CMS_add1_signer(cms, b_sign.cert, b_sign.key, EVP_sha256(), 0));
    ck_assert_int_eq(CMS_final(cms, in, NULL, CMS_BINARY), 1);
    unsigned char *der = NULL;
    int dlen = i2d_CMS_ContentInfo(cms, &der);
    ck_assert_int_gt(dlen, 0);
    envelope(der, (size_t)dlen, b_enc.cert, &payload, &plen);
    ck_assert_int_eq(open_as_b(payload, plen), KH_E_PAYLOAD_SIG);
    free(payload);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);

    /* a plain EnvelopedData (not authenticated) is refused as undecryptable */
    in = BIO_new_mem_buf("enveloped", -1);
    STACK_OF(X509) *recips = sk_X509_new_null();
    ck_assert_int_gt(sk_X509_push(recips, b_enc.cert), 0);
    cms = CMS_encrypt(recips, in, EVP_aes_256_cbc(), CMS_BINARY);
    ck_assert_ptr_nonnull(cms);
    der = NULL;
    dlen = i2d_CMS_ContentInfo(cms, &der);
    ck_assert_int_gt(dlen, 0);
    ck_assert_int_eq(open_as_b(der, (size_t)dlen), KH_E_DECRYPT);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    sk_X509_free(recips);
    BIO_free(in);
}
END_TEST

START_TEST(open_untrusted_signer)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    ck_assert_int_eq(khc_seal((const uint8_t *)body_text, strlen(body_text), rogue_sign.cert,
                              rogue_sign.key, b_enc.cert, &payload, &plen),
                     0);
    /* expected as the rogue signer: its certificate does not chain to trust */
    ck_assert_int_eq(open_from(payload, plen, rogue_sign.cert), KH_E_UNTRUSTED_SIGNER);
    /* expected as 271004's real signer (same subject, another issuer) */
    ck_assert_int_eq(open_from(payload, plen, b_sign.cert), KH_E_UNTRUSTED_SIGNER);
    /* trusting the rogue CA instead makes it open */
    X509_STORE *rs = X509_STORE_new();
    ck_assert_int_eq(X509_STORE_add_cert(rs, rogue_ca.cert), 1);
    uint8_t *body = NULL;
    size_t blen = 0;
    ck_assert_int_eq(
        khc_open(payload, plen, b_enc.cert, b_enc.key, rs, rogue_sign.cert, &body, &blen), KH_OK);
    khc_free_secret(body, blen);
    X509_STORE_free(rs);
    free(payload);
}
END_TEST

START_TEST(size_limits)
{
    static const uint8_t small[16];
    const size_t big = (size_t)16 * 1024 * 1024 + 1; /* never read: refused up front */
    uint8_t *out = NULL, *body = NULL;
    size_t outlen = 0, blen = 0;
    ck_assert_int_ne(khc_seal(small, big, a_sign.cert, a_sign.key, b_enc.cert, &out, &outlen), 0);
    ck_assert_int_ne(khc_sign(a_sign.key, small, big, &out, &outlen), 0);
    ck_assert_int_ne(khc_verify(a_sign.cert, small, big, small, sizeof small), 0);
    ck_assert_int_eq(khc_open(small, big, b_enc.cert, b_enc.key, trust, a_sign.cert, &body, &blen),
                     KH_E_TOO_LARGE);
    ck_assert_ptr_null(out);
    ck_assert_ptr_null(body);
}
END_TEST

static void write_key(const char *path, EVP_PKEY *key, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(load_key_permissions)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/k.pem", tmpdir);
    write_key(path, a_sign.key, 0644);
    err[0] = '\0';
    EVP_PKEY *k = khc_load_key(path, err, sizeof err);
    ck_assert_ptr_null(k);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, "0644"));
    ck_assert_ptr_null(strstr(err, "PRIVATE")); /* no key material in the message */

    ck_assert_int_eq(chmod(path, 0640), 0);
    ck_assert_ptr_null(khc_load_key(path, err, sizeof err));
    ck_assert_int_eq(chmod(path, 0604), 0);
    ck_assert_ptr_null(khc_load_key(path, err, sizeof err));

    ck_assert_int_eq(chmod(path, 0600), 0);
    k = khc_load_key(path, err, sizeof err);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(EVP_PKEY_eq(k, a_sign.key), 1);
    EVP_PKEY_free(k);

    ck_assert_int_eq(chmod(path, 0400), 0);
    k = khc_load_key(path, err, sizeof err);
    ck_assert_ptr_nonnull(k);
    EVP_PKEY_free(k);

    /* not a regular file, missing, not a key */
    ck_assert_ptr_null(khc_load_key(tmpdir, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    snprintf(path, sizeof path, "%s/missing.pem", tmpdir);
    ck_assert_ptr_null(khc_load_key(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, path));
    snprintf(path, sizeof path, "%s/junk.pem", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a key\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0600), 0);
    ck_assert_ptr_null(khc_load_key(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(load_cert_and_store)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/ca.pem", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(PEM_write_X509(f, national.cert), 1);
    ck_assert_int_eq(PEM_write_X509(f, rogue_ca.cert), 1);
    ck_assert_int_eq(fclose(f), 0);

    X509 *c = khc_load_cert(path, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert(khc_cert_equal(c, national.cert)); /* the first one */
    X509_free(c);

    uint8_t *pem = NULL;
    size_t len = 0;
    ck_assert_int_eq(khc_read_file(path, &pem, &len), 0);
    ck_assert_uint_eq(strlen((char *)pem), len);
    c = khc_cert_from_pem(pem, len);
    ck_assert_ptr_nonnull(c);
    X509_free(c);
    ck_assert_ptr_null(khc_cert_from_pem((const uint8_t *)"junk", 4));
    free(pem);

    X509_STORE *s = khc_store_from_file(path, err, sizeof err);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(khc_cert_verify(s, a_sign.cert), 0);
    ck_assert_int_eq(khc_cert_verify(s, rogue_sign.cert), 0); /* both CAs in this file */
    X509_STORE_free(s);

    snprintf(path, sizeof path, "%s/none.pem", tmpdir);
    ck_assert_ptr_null(khc_store_from_file(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_null(khc_load_cert(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

START_TEST(cert_verify)
{
    ck_assert_int_eq(khc_cert_verify(trust, a_sign.cert), 0);
    ck_assert_int_eq(khc_cert_verify(trust, b_enc.cert), 0);
    ck_assert_int_eq(khc_cert_verify(trust, national.cert), 0);
    ck_assert_int_ne(khc_cert_verify(trust, rogue_sign.cert), 0);
    ck_assert_int_ne(khc_cert_verify(trust, rogue_ca.cert), 0);
}
END_TEST

/* khc_cert_verify_cached: a success is remembered per store and certificate
 * content, never a failure, and never past the chain's first notAfter. */
START_TEST(cert_verify_cached)
{
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(khc_cert_verify_cached(trust, a_sign.cert), 0);
        ck_assert_int_ne(khc_cert_verify_cached(trust, rogue_sign.cert), 0);
    }
    /* trusted by another store: not by this one */
    X509_STORE *rs = X509_STORE_new();
    ck_assert_int_eq(X509_STORE_add_cert(rs, rogue_ca.cert), 1);
    ck_assert_int_eq(khc_cert_verify_cached(rs, rogue_sign.cert), 0);
    ck_assert_int_ne(khc_cert_verify_cached(trust, rogue_sign.cert), 0);
    X509_STORE_free(rs);
    /* a new store (perhaps at the freed one's address) starts afresh */
    for (int i = 0; i < 8; i++) {
        X509_STORE *s2 = X509_STORE_new();
        ck_assert_int_eq(X509_STORE_add_cert(s2, national.cert), 1);
        ck_assert_int_ne(khc_cert_verify_cached(s2, rogue_sign.cert), 0);
        ck_assert_int_eq(khc_cert_verify_cached(s2, a_sign.cert), 0);
        X509_STORE_free(s2);
    }
    /* a certificate that expires in 2 s is trusted until then, not after */
    pair brief = make_pair(ORGS("131016"), "sign", "131016 brief", &national, false);
    ck_assert_int_eq(X509_gmtime_adj(X509_getm_notAfter(brief.cert), 2) != NULL, 1);
    ck_assert_int_gt(X509_sign(brief.cert, national.key, EVP_sha256()), 0);
    ck_assert_int_eq(khc_cert_verify_cached(trust, brief.cert), 0);
    ck_assert_int_eq(khc_cert_verify_cached(trust, brief.cert), 0);
    sleep(3);
    ck_assert_int_ne(khc_cert_verify_cached(trust, brief.cert), 0);
    free_pair(&brief);
}
END_TEST

START_TEST(cert_org)
{
    char org[16];
    ck_assert_int_eq(khc_cert_org(a_sign.cert, org, sizeof org), 0);
    ck_assert_str_eq(org, "131016");
    ck_assert_int_eq(khc_cert_org(national.cert, org, sizeof org), 0);
    ck_assert_str_eq(org, "KH-NATIONAL");
    ck_assert_int_eq(khc_cert_org(a_sign.cert, org, 7), 0); /* exactly fits */
    ck_assert_int_ne(khc_cert_org(a_sign.cert, org, 6), 0); /* too long */
    ck_assert_int_ne(khc_cert_org(no_org.cert, org, sizeof org), 0);
    ck_assert_int_ne(khc_cert_org(two_orgs.cert, org, sizeof org), 0); /* ambiguous */
    ck_assert_int_ne(khc_cert_org(NULL, org, sizeof org), 0);
}
END_TEST

START_TEST(cert_cn)
{
    char cn[32];
    ck_assert_int_eq(khc_cert_cn(a_sign.cert, cn, sizeof cn), 0);
    ck_assert_str_eq(cn, "131016 sign");
    ck_assert_int_eq(khc_cert_cn(no_org.cert, cn, sizeof cn), 0);
    ck_assert_str_eq(cn, "nobody");
    ck_assert_int_eq(khc_cert_cn(no_org.cert, cn, 7), 0); /* exactly fits */
    ck_assert_int_ne(khc_cert_cn(no_org.cert, cn, 6), 0); /* too long */
    ck_assert_int_ne(khc_cert_cn(NULL, cn, sizeof cn), 0);
}
END_TEST

/* Decodes standard base64 of a stored password string's field. */
static size_t b64(const char *in, size_t n, uint8_t *out)
{
    int k = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    ck_assert_int_ge(k, 0);
    while (n > 0 && in[n - 1] == '=') {
        n--;
        k--;
    }
    return (size_t)k;
}

START_TEST(password_hash_verify)
{
    char h1[KHC_PWHASH_LEN], h2[KHC_PWHASH_LEN], bad[KHC_PWHASH_LEN + 16];
    const char *pw = "correct horse battery staple";
    ck_assert_int_eq(khc_password_hash(pw, strlen(pw), h1), 0);
    ck_assert_int_eq(khc_password_hash(pw, strlen(pw), h2), 0);
    ck_assert_str_ne(h1, h2); /* a fresh salt each time */
    ck_assert(strncmp(h1, "scrypt$32768$8$1$", 17) == 0);
    ck_assert(khc_password_verify(pw, strlen(pw), h1));
    ck_assert(khc_password_verify(pw, strlen(pw), h2));
    ck_assert(!khc_password_verify(pw, strlen(pw) - 1, h1));
    ck_assert(!khc_password_verify("correct horse battery stapl3", strlen(pw), h1));
    ck_assert(!khc_password_verify(pw, strlen(pw), NULL)); /* the dummy check */
    ck_assert(!khc_password_verify(pw, strlen(pw), ""));
    ck_assert(!khc_password_verify("", 0, h1));
    /* a password with a NUL and non-ASCII bytes is hashed as bytes */
    const char bin[] = "p\0\xe6\x97\xa5";
    ck_assert_int_eq(khc_password_hash(bin, sizeof bin - 1, h2), 0);
    ck_assert(khc_password_verify(bin, sizeof bin - 1, h2));
    ck_assert(!khc_password_verify(bin, 1, h2));
    ck_assert_int_ne(khc_password_hash(pw, 0, h2), 0);
    ck_assert_int_ne(khc_password_hash(pw, KHC_PASSWORD_MAX + 1, h2), 0);

    /* the stored string means what it says: scrypt(N, r, p, salt) = hash */
    char salt64[64], hash64[64];
    ck_assert_int_eq(sscanf(h1, "scrypt$32768$8$1$%63[^$]$%63s", salt64, hash64), 2);
    uint8_t salt[48], want[48], got[32];
    ck_assert_uint_eq(b64(salt64, strlen(salt64), salt), 16);
    ck_assert_uint_eq(b64(hash64, strlen(hash64), want), 32);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
    uint64_t n = 32768;
    uint32_t r = 8, p = 1;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string("pass", (void *)pw, strlen(pw)),
                           OSSL_PARAM_construct_octet_string("salt", salt, 16),
                           OSSL_PARAM_construct_uint64("n", &n),
                           OSSL_PARAM_construct_uint32("r", &r),
                           OSSL_PARAM_construct_uint32("p", &p),
                           OSSL_PARAM_construct_end()};
    ck_assert_int_eq(EVP_KDF_derive(kctx, got, sizeof got, params), 1);
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    ck_assert_mem_eq(got, want, 32);

    /* altered or foreign strings never verify, and cannot ask for huge memory */
    static const struct {
        const char *head; /* up to the salt */
        int saltlen;      /* characters of the salt kept */
        const char *tail; /* after the hash */
    } alt[] = {
        {"scrypt$1048576$8$1$", 24, ""}, /* 1 GiB */
        {"scrypt$32768$64$1$", 24, ""},  /* r too large */
        {"scrypt$32769$8$1$", 24, ""},   /* N not a power of two */
        {"scrypt$1024$8$1$", 24, ""},    /* weaker than we accept */
        {"scrypt$32768$8$0$", 24, ""},   /* p = 0 */
        {"bcrypt$32768$8$1$", 24, ""},   /* not ours */
        {"scrypt$32768$8$1$", 24, "A"},  /* hash too long */
        {"scrypt$32768$8$1$", 24, "$"},  /* trailing data */
        {"scrypt$32768$8$1$", 20, ""},   /* salt cut */
    };
    for (size_t i = 0; i < sizeof alt / sizeof alt[0]; i++) {
        snprintf(bad, sizeof bad, "%s%.*s$%s%s", alt[i].head, alt[i].saltlen, salt64, hash64,
                 alt[i].tail);
        ck_assert_msg(!khc_password_verify(pw, strlen(pw), bad), "accepted %s", bad);
    }
    /* one changed character of the hash */
    snprintf(bad, sizeof bad, "%s", h1);
    bad[strlen(bad) - 3] = bad[strlen(bad) - 3] == 'A' ? 'B' : 'A';
    ck_assert(!khc_password_verify(pw, strlen(pw), bad));
}
END_TEST

START_TEST(ct_equal)
{
    uint8_t a[32], b[32];
    memset(a, 0x5a, sizeof a);
    memcpy(b, a, sizeof b);
    ck_assert(khc_ct_equal(a, b, sizeof a));
    b[31] ^= 1;
    ck_assert(!khc_ct_equal(a, b, sizeof a));
    ck_assert(khc_ct_equal(a, b, 31));
    b[0] ^= 1;
    ck_assert(!khc_ct_equal(a, b, 31));
    ck_assert(khc_ct_equal(a, b, 0));
}
END_TEST

START_TEST(unhex_strict)
{
    uint8_t out[4];
    ck_assert_int_eq(khc_unhex("00ff7A9b", 8, out, 4), 0);
    ck_assert_mem_eq(out, "\x00\xff\x7a\x9b", 4);
    char hex[9];
    khc_hex(out, 4, hex);
    ck_assert_str_eq(hex, "00ff7a9b"); /* the round trip, lowercase */
    /* what sscanf("%2x") let through, and the rest: refused */
    static const char *const bad[] = {"0x01", " 1", "+1", "-1", "1 ", "g0", "0\n", "\0001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(khc_unhex(bad[i], 2, out, 1) != 0, "accepted bad[%zu]", i);
    ck_assert_int_ne(khc_unhex("abc", 3, out, 1), 0);  /* odd length */
    ck_assert_int_ne(khc_unhex("abcd", 4, out, 1), 0); /* longer than wanted */
    ck_assert_int_ne(khc_unhex(NULL, 0, out, 0), 0);
}
END_TEST

START_TEST(hmac_rfc4231_case2)
{
    const char *key = "Jefe", *data = "what do ya want for nothing?";
    uint8_t mac[32];
    char hex[65];
    ck_assert_int_eq(
        khc_hmac_sha256((const uint8_t *)key, 4, (const uint8_t *)data, strlen(data), mac), 0);
    khc_hex(mac, sizeof mac, hex);
    ck_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 has no empty-key case; this is HMAC-SHA-256("", "") */
    ck_assert_int_eq(khc_hmac_sha256(NULL, 0, NULL, 0, mac), 0);
    khc_hex(mac, sizeof mac, hex);
    ck_assert_str_eq(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}
END_TEST

START_TEST(random_and_hex)
{
    uint8_t r1[32], r2[32];
    ck_assert_int_eq(khc_random(r1, sizeof r1), 0);
    ck_assert_int_eq(khc_random(r2, sizeof r2), 0);
    ck_assert(!khc_ct_equal(r1, r2, sizeof r1));
    char hex[9];
    khc_hex((const uint8_t *)"\x00\xab\xcd\xff", 4, hex);
    ck_assert_str_eq(hex, "00abcdff");
    khc_free_secret(NULL, 10);
    uint8_t *s = malloc(8);
    ck_assert_ptr_nonnull(s);
    khc_free_secret(s, 8);
}
END_TEST

/* The rule for replacing the directory in use (gw_dir.c): the same spec
 * version, issued strictly after it, not in the future beyond the skew. */
START_TEST(directory_successor)
{
    Kh__Directory pa = KH__DIRECTORY__INIT, pb = KH__DIRECTORY__INIT;
    kh_dir a = {.pb = &pa}, b = {.pb = &pb};
    char why[200];
    int64_t now = 1800000000;
    pa.spec_version = pb.spec_version = 1;
    pa.issued_at = now - 600;
    pb.issued_at = now - 10;
    ck_assert_ptr_null(kh_dir_successor_why(&a, &b, now, 120, why, sizeof why));
    ck_assert_ptr_null(kh_dir_successor_why(NULL, &b, now, 120, why, sizeof why));
    /* an older one, or the same issue time: a replay */
    ck_assert_ptr_nonnull(kh_dir_successor_why(&b, &a, now, 120, why, sizeof why));
    ck_assert_ptr_nonnull(strstr(why, "not after the version in use"));
    pb.issued_at = pa.issued_at;
    ck_assert_ptr_nonnull(kh_dir_successor_why(&a, &b, now, 120, why, sizeof why));
    /* from the future, beyond the skew; within it is taken */
    pb.issued_at = now + 121;
    ck_assert_ptr_nonnull(kh_dir_successor_why(&a, &b, now, 120, why, sizeof why));
    ck_assert_ptr_nonnull(strstr(why, "in the future"));
    ck_assert_ptr_nonnull(kh_dir_successor_why(NULL, &b, now, 120, why, sizeof why));
    pb.issued_at = now + 120;
    ck_assert_ptr_null(kh_dir_successor_why(&a, &b, now, 120, why, sizeof why));
    /* another spec version */
    pb.spec_version = 2;
    ck_assert_ptr_nonnull(kh_dir_successor_why(&a, &b, now, 120, why, sizeof why));
    ck_assert_ptr_nonnull(strstr(why, "spec version 2"));
}
END_TEST

int main(void)
{
    pki_setup();
    Suite *s = suite_create("khcrypto");
    TCase *tc = tcase_create("crypto");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sign_verify);
    tcase_add_test(tc, seal_open_round_trip);
    tcase_add_test(tc, seal_open_binary_and_empty);
    tcase_add_test(tc, open_other_recipient);
    tcase_add_test(tc, open_tampered);
    tcase_add_test(tc, open_tampered_sweep);
    tcase_add_test(tc, open_altered_signed_content);
    tcase_add_test(tc, open_bad_inner_structures);
    tcase_add_test(tc, open_untrusted_signer);
    tcase_add_test(tc, size_limits);
    tcase_add_test(tc, load_key_permissions);
    tcase_add_test(tc, load_cert_and_store);
    tcase_add_test(tc, cert_verify);
    tcase_add_test(tc, cert_verify_cached);
    tcase_add_test(tc, cert_org);
    tcase_add_test(tc, cert_cn);
    tcase_add_test(tc, password_hash_verify);
    tcase_add_test(tc, ct_equal);
    tcase_add_test(tc, hmac_rfc4231_case2);
    tcase_add_test(tc, unhex_strict);
    tcase_add_test(tc, random_and_hex);
    tcase_add_test(tc, directory_successor);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    pki_teardown();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
