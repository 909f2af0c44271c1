/* khtsp.c: RFC 3161 time-stamps (see khtsp.h). Every OpenSSL TS_* call of
 * the project is here; each return value is checked and every object is
 * freed on one exit path. */
#include "khtsp.h"
#include "khcrypto.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ts.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* why = what + OpenSSL's last reason (its queue is emptied: the reason goes
 * to the caller, who says it where it belongs). */
static int fail(char *why, size_t whylen, const char *what)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    snprintf(why, whylen, "%s%s%s", what, r ? ": " : "", r ? r : "");
    return -1;
}

static int sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
    return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

static ASN1_INTEGER *nonce_int(const uint8_t nonce[KHTSP_NONCE_LEN])
{
    BIGNUM *bn = BN_bin2bn(nonce, KHTSP_NONCE_LEN, NULL);
    ASN1_INTEGER *n = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    return n;
}

/* The request for data with nonce (NULL: none); NULL on failure (OpenSSL's
 * reason queued). */
static TS_REQ *make_req(const uint8_t *data, size_t len, const uint8_t nonce[KHTSP_NONCE_LEN])
{
    uint8_t md[32];
    TS_REQ *req = TS_REQ_new();
    TS_MSG_IMPRINT *mi = TS_MSG_IMPRINT_new();
    X509_ALGOR *alg = X509_ALGOR_new();
    ASN1_INTEGER *nn = nonce ? nonce_int(nonce) : NULL;
    if (req == NULL || mi == NULL || alg == NULL || (nonce && !nn) || sha256(data, len, md) != 0 ||
        X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, NULL) != 1 ||
        TS_MSG_IMPRINT_set_algo(mi, alg) != 1 || TS_MSG_IMPRINT_set_msg(mi, md, 32) != 1 ||
        TS_REQ_set_version(req, 1) != 1 || TS_REQ_set_msg_imprint(req, mi) != 1 ||
        (nn && TS_REQ_set_nonce(req, nn) != 1) || TS_REQ_set_cert_req(req, 1) != 1) {
        TS_REQ_free(req);
        req = NULL;
    }
    ASN1_INTEGER_free(nn);
    X509_ALGOR_free(alg);
    TS_MSG_IMPRINT_free(mi);
    return req;
}

int khtsp_request(const uint8_t *data, size_t len, const uint8_t nonce[KHTSP_NONCE_LEN],
                  uint8_t **der, size_t *derlen, char *why, size_t whylen)
{
    int rc = -1, n = 0;
    unsigned char *out = NULL;
    TS_REQ *req = make_req(data, len, nonce);
    if (req == NULL || (n = i2d_TS_REQ(req, &out)) <= 0) {
        fail(why, whylen, "cannot make a time-stamp request");
        goto done;
    }
    *der = malloc((size_t)n);
    if (*der == NULL) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    memcpy(*der, out, (size_t)n);
    *derlen = (size_t)n;
    rc = 0;
done:
    OPENSSL_free(out);
    TS_REQ_free(req);
    return rc;
}

/* A verification context: signature trusted by store, imprint of data
 * (SHA-256, the algorithm compared too), version, and the nonce if given
 * (OpenSSL 3.0 sets a nonce only from a request: the context is made from
 * the request we sent, or would have). NULL on failure (out of memory). */
static TS_VERIFY_CTX *verify_ctx(const uint8_t *data, size_t len,
                                 const uint8_t nonce[KHTSP_NONCE_LEN], X509_STORE *store)
{
    TS_REQ *req = make_req(data, len, nonce);
    /* imprint, nonce (if any) and version; no policy (none asked) */
    TS_VERIFY_CTX *vc = req ? TS_REQ_to_TS_VERIFY_CTX(req, NULL) : NULL;
    TS_REQ_free(req);
    if (vc == NULL || X509_STORE_up_ref(store) != 1) {
        TS_VERIFY_CTX_free(vc);
        return NULL;
    }
    TS_VERIFY_CTX_set_store(vc, store); /* the context holds the reference taken */
    TS_VERIFY_CTX_add_flags(vc, TS_VFY_SIGNATURE);
    return vc;
}

static int gen_time_of(const TS_TST_INFO *ti, int64_t *out)
{
    const ASN1_GENERALIZEDTIME *gt = ti ? TS_TST_INFO_get_time(ti) : NULL;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    int ok = gt != NULL && epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, gt) == 1;
    ASN1_TIME_free(epoch);
    if (!ok)
        return -1;
    *out = (int64_t)days * 86400 + secs;
    return 0;
}

/* A copy of store's certificates whose chains are checked at time t (a
 * token's genTime: the TSA's certificate may have expired since). */
static X509_STORE *store_at(X509_STORE *src, int64_t t)
{
    X509_STORE *s = X509_STORE_new();
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(src);
    if (s == NULL || objs == NULL)
        goto bad;
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (x != NULL && X509_STORE_add_cert(s, x) != 1)
            goto bad;
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_get0_param(s), (time_t)t);
    return s;
bad:
    X509_STORE_free(s);
    return NULL;
}

static int copy_der(PKCS7 *tok, uint8_t **out, size_t *outlen)
{
    unsigned char *der = NULL;
    int n = tok ? i2d_PKCS7(tok, &der) : -1;
    if (n <= 0)
        return -1;
    *out = malloc((size_t)n);
    if (*out != NULL) {
        memcpy(*out, der, (size_t)n);
        *outlen = (size_t)n;
    }
    OPENSSL_free(der);
    return *out ? 0 : -1;
}

int khtsp_reply_check(const uint8_t *reply, size_t rlen, const uint8_t *data, size_t len,
                      const uint8_t nonce[KHTSP_NONCE_LEN], X509_STORE *store, uint8_t **token,
                      size_t *toklen, int64_t *gen_time, char *why, size_t whylen)
{
    int rc = -1;
    const unsigned char *p = reply;
    TS_RESP *r = NULL;
    TS_VERIFY_CTX *vc = NULL;
    if (rlen == 0 || rlen > KHTSP_MAX_REPLY || (r = d2i_TS_RESP(NULL, &p, (long)rlen)) == NULL ||
        p != reply + rlen) {
        fail(why, whylen, "the reply is not a time-stamp response (RFC 3161 TimeStampResp)");
        goto done;
    }
    if ((vc = verify_ctx(data, len, nonce, store)) == NULL) {
        fail(why, whylen, "cannot check the time-stamp response");
        goto done;
    }
    int64_t t;
    if (TS_RESP_verify_response(vc, r) != 1) {
        fail(why, whylen, "the time-stamp response does not verify");
        goto done;
    }
    if (gen_time_of(TS_RESP_get_tst_info(r), &t) != 0 ||
        copy_der(TS_RESP_get_token(r), token, toklen) != 0) {
        fail(why, whylen, "cannot read the time-stamp token");
        goto done;
    }
    *gen_time = t;
    rc = 0;
done:
    TS_VERIFY_CTX_free(vc);
    TS_RESP_free(r);
    return rc;
}

int khtsp_token_check(const uint8_t *token, size_t toklen, const uint8_t *data, size_t len,
                      X509_STORE *store, int64_t *gen_time, char *why, size_t whylen)
{
    int rc = -1;
    const unsigned char *p = token;
    PKCS7 *tok = NULL;
    TS_TST_INFO *ti = NULL;
    TS_VERIFY_CTX *vc = NULL;
    X509_STORE *then = NULL;
    int64_t t;
    if (toklen == 0 || toklen > KHTSP_MAX_REPLY ||
        (tok = d2i_PKCS7(NULL, &p, (long)toklen)) == NULL || p != token + toklen) {
        fail(why, whylen, "not a time-stamp token (RFC 3161 TimeStampToken)");
        goto done;
    }
    if ((ti = PKCS7_to_TS_TST_INFO(tok)) == NULL || gen_time_of(ti, &t) != 0) {
        fail(why, whylen, "not a time-stamp token (no time in it)");
        goto done;
    }
    if ((then = store_at(store, t)) == NULL || (vc = verify_ctx(data, len, NULL, then)) == NULL) {
        fail(why, whylen, "cannot check the time-stamp token");
        goto done;
    }
    if (TS_RESP_verify_token(vc, tok) != 1) {
        fail(why, whylen, "the time-stamp token does not verify");
        goto done;
    }
    *gen_time = t;
    rc = 0;
done:
    X509_STORE_free(then);
    TS_TST_INFO_free(ti);
    TS_VERIFY_CTX_free(vc);
    PKCS7_free(tok);
    return rc;
}

/* ---------------------------------------------------------- the TSA's side */

struct khtsp_tsa {
    TS_RESP_CTX *ctx;
    X509 *cert;
    EVP_PKEY *key;
    uint64_t serial; /* of the reply being made */
};

static ASN1_INTEGER *serial_cb(TS_RESP_CTX *ctx, void *arg)
{
    const khtsp_tsa *tsa = arg;
    ASN1_INTEGER *s = ASN1_INTEGER_new();
    if (s != NULL && ASN1_INTEGER_set_uint64(s, tsa->serial) != 1) {
        ASN1_INTEGER_free(s);
        s = NULL;
    }
    if (s == NULL)
        TS_RESP_CTX_set_status_info(ctx, TS_STATUS_REJECTION, "no serial number");
    return s;
}

khtsp_tsa *khtsp_tsa_new(const char *cert, const char *key, const char *policy, char *why,
                         size_t whylen)
{
    khtsp_tsa *tsa = calloc(1, sizeof *tsa);
    ASN1_OBJECT *pol = NULL;
    if (tsa == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if ((tsa->cert = khc_load_cert(cert, why, whylen)) == NULL ||
        (tsa->key = khc_load_key(key, why, whylen)) == NULL)
        goto bad;
    if ((pol = OBJ_txt2obj(policy, 1)) == NULL) {
        snprintf(why, whylen, "the policy '%s' is not a dotted OID", policy);
        goto bad;
    }
    if ((tsa->ctx = TS_RESP_CTX_new()) == NULL ||
        TS_RESP_CTX_set_signer_cert(tsa->ctx, tsa->cert) != 1 ||
        TS_RESP_CTX_set_signer_key(tsa->ctx, tsa->key) != 1 ||
        TS_RESP_CTX_set_signer_digest(tsa->ctx, EVP_sha256()) != 1 ||
        TS_RESP_CTX_set_ess_cert_id_digest(tsa->ctx, EVP_sha256()) != 1 ||
        TS_RESP_CTX_set_def_policy(tsa->ctx, pol) != 1 ||
        TS_RESP_CTX_add_md(tsa->ctx, EVP_sha256()) != 1 ||
        TS_RESP_CTX_set_accuracy(tsa->ctx, 1, 0, 0) != 1) {
        fail(why, whylen, "the TSA's certificate or key cannot sign time-stamps");
        goto bad;
    }
    TS_RESP_CTX_set_serial_cb(tsa->ctx, serial_cb, tsa);
    ASN1_OBJECT_free(pol);
    return tsa;
bad:
    ASN1_OBJECT_free(pol);
    khtsp_tsa_free(tsa);
    return NULL;
}

int khtsp_tsa_reply(khtsp_tsa *tsa, const uint8_t *req, size_t len, uint64_t serial, uint8_t **der,
                    size_t *derlen, int *granted)
{
    int rc = -1, n;
    unsigned char *out = NULL;
    tsa->serial = serial;
    BIO *in = BIO_new_mem_buf(req, (int)(len > KHTSP_MAX_REPLY ? KHTSP_MAX_REPLY : len));
    TS_RESP *r = in ? TS_RESP_create_response(tsa->ctx, in) : NULL;
    if (r == NULL || (n = i2d_TS_RESP(r, &out)) <= 0 || (*der = malloc((size_t)n)) == NULL) {
        khc_drain_errors("time-stamp reply");
        goto done;
    }
    memcpy(*der, out, (size_t)n);
    *derlen = (size_t)n;
    *granted = ASN1_INTEGER_get(TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(r))) ==
               TS_STATUS_GRANTED;
    ERR_clear_error(); /* a rejection leaves its reason queued */
    rc = 0;
done:
    OPENSSL_free(out);
    TS_RESP_free(r);
    BIO_free(in);
    return rc;
}

void khtsp_tsa_free(khtsp_tsa *tsa)
{
    if (tsa == NULL)
        return;
    TS_RESP_CTX_free(tsa->ctx);
    khc_cert_free(tsa->cert);
    khc_key_free(tsa->key);
    free(tsa);
}
