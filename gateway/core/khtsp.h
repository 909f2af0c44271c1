/* khtsp.h: the time-stamp protocol of RFC 3161, the one home of OpenSSL's
 * TS_* calls: a request for a time-stamp over some bytes, the check of a
 * time-stamping authority's (TSA's) reply and of a token kept since, and the
 * reply a TSA makes (tools/khtsa, the TSA simulator).
 *
 * What is stamped is a SHA-256 message imprint of the bytes given; a token
 * proves that those bytes existed at the token's genTime, to whoever trusts
 * the TSA's certificate (its chain to a CA of the store given, with the
 * critical extended key usage timeStamping). Such a token verifies on its own
 * with `openssl ts -verify -data FILE -in TOKEN -token_in -CAfile CA`.
 *
 * All functions return 0 on success and -1 on failure with the reason in
 * why (no secret in it); outputs are malloc'd and set only on success. */
#ifndef KH_TSP_H
#define KH_TSP_H

#include "kherr.h"

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>

/* A TSA's reply or token is read only up to this size. */
#define KHTSP_MAX_REPLY ((size_t)64 * 1024)
#define KHTSP_NONCE_LEN 8

/* A TimeStampReq (DER) for data: SHA-256 imprint, certReq true (the TSA's
 * certificate comes with the token), the nonce given (random, from
 * khc_random). */
KH_MUST_CHECK int khtsp_request(const uint8_t *data, size_t len,
                                const uint8_t nonce[KHTSP_NONCE_LEN], uint8_t **der, size_t *derlen,
                                char *why, size_t whylen);

/* Checks a TimeStampResp (DER) to the request above: status granted, the
 * signature by a certificate that store trusts for time-stamping, the imprint
 * of data, the nonce. On success the TimeStampToken (DER, a CMS SignedData)
 * and its genTime (seconds since 1970). */
KH_MUST_CHECK int khtsp_reply_check(const uint8_t *reply, size_t rlen, const uint8_t *data,
                                    size_t len, const uint8_t nonce[KHTSP_NONCE_LEN],
                                    X509_STORE *store, uint8_t **token, size_t *toklen,
                                    int64_t *gen_time, char *why, size_t whylen);

/* Checks a token kept since (no nonce): signature trusted by store for
 * time-stamping, the certificates' validity taken at the token's own genTime
 * (a TSA's certificate that expired since still vouches for its old tokens),
 * imprint of data (SHA-256). Its genTime on success. */
KH_MUST_CHECK int khtsp_token_check(const uint8_t *token, size_t toklen, const uint8_t *data,
                                    size_t len, X509_STORE *store, int64_t *gen_time, char *why,
                                    size_t whylen);

/* ---------------------------------------------------------- the TSA's side */

typedef struct khtsp_tsa khtsp_tsa;

/* A TSA signing with cert and key (PEM files; the key file private to its
 * owner, khc_load_key) under the policy OID given (dotted), with SHA-256,
 * accuracy 1 s and the signing certificate named by its SHA-256 (ESSCertIDv2).
 * NULL with why on failure. Not thread-safe: one thread answers. */
khtsp_tsa *khtsp_tsa_new(const char *cert, const char *key, const char *policy, char *why,
                         size_t whylen);
/* The TimeStampResp (DER) to a request (DER): granted, or a rejection with
 * its failure info for a request that cannot be read or asks for another
 * digest; -1 only if no reply at all could be made (out of memory). serial:
 * the token's serial number (unique per TSA). */
KH_MUST_CHECK int khtsp_tsa_reply(khtsp_tsa *tsa, const uint8_t *req, size_t len, uint64_t serial,
                                  uint8_t **der, size_t *derlen, int *granted);
void khtsp_tsa_free(khtsp_tsa *tsa);

#endif
