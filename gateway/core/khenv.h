/* khenv.h: envelopes and the router's signed directory.
 * An envelope is a signed outer header (readable by the router) plus a sealed
 * payload (khc_seal: only the final recipient can read it, and it proves the
 * originator). This module packs, parses, bounds-checks and verifies them;
 * it does not decide authorisation. */
#ifndef KH_ENV_H
#define KH_ENV_H

#include "kakehashi.pb-c.h"
#include "kherr.h"
#include "khcrypto.h"
#include "khpb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KH_MSG_ID_LEN 16
#define KH_MAX_ITEMS 16
#define KH_CODE_MAX 16 /* procedure and item codes */

/* --- envelopes --- */

/* Packs header, signs it with key, and wraps it with payload into a
 * serialized Envelope. */
KH_MUST_CHECK int kh_env_pack(const Kh__Header *h, EVP_PKEY *key, const uint8_t *payload,
                              size_t plen, uint8_t **out, size_t *outlen);
/* Parses an Envelope and its Header and checks the header's shape (sizes,
 * codes, spec version). On success the caller frees both with kh_env_free. */
KH_MUST_CHECK kh_err kh_env_parse(const uint8_t *buf, size_t len, Kh__Envelope **env,
                                  Kh__Header **h, char *why, size_t whylen);
void kh_env_free(Kh__Envelope *env, Kh__Header *h);
/* KH_OK if env->header_sig verifies over env->header with cert. */
KH_MUST_CHECK kh_err kh_env_verify(const Kh__Envelope *env, X509 *cert);
/* Freshness: KH_E_EXPIRED if expired, KH_E_CLOCK_SKEW if issued in the future
 * beyond skew or valid for longer than max_ttl. */
KH_MUST_CHECK kh_err kh_env_check_time(const Kh__Header *h, int64_t now, int skew, int max_ttl);
/* True if the two item lists are equal as ordered lists. */
bool kh_items_equal(char *const *a, size_t na, char *const *b, size_t nb);
/* Wipes the field values of answered items before they are freed. */
void kh_items_wipe(Kh__ItemData *const *items, size_t n);
/* A short printable form of a message ID for logs (hex). */
void kh_msgid_hex(const ProtobufCBinaryData *id, char out[2 * KH_MSG_ID_LEN + 1]);

/* --- directory --- */

typedef struct {
    const char *code, *name, *org_class, *endpoint; /* point into the parsed directory */
    X509 *sign_cert, *enc_cert;
} kh_org;

typedef struct {
    uint8_t *raw; /* SignedDirectory as received, served again as is */
    size_t rawlen;
    Kh__Directory *pb;
    kh_org *orgs;
    size_t norgs;
    X509 *router_sign, *router_enc;
} kh_dir;

/* Verifies and loads a SignedDirectory: the router's signing certificate must
 * chain to the national CA (trust) and carry O=ROUTER, and must sign it. */
kh_dir *kh_dir_load(const uint8_t *buf, size_t len, X509_STORE *trust, char *err, size_t errlen);
void kh_dir_free(kh_dir *d);
/* Why fresh may not replace cur, the version in use (NULL: it may): another
 * spec version, issued at or before cur (an older directory, however well
 * signed, is a replay), or issued more than skew seconds after now. cur may
 * be NULL (the first one). */
const char *kh_dir_successor_why(const kh_dir *cur, const kh_dir *fresh, int64_t now, int skew,
                                 char *why, size_t whylen);
const kh_org *kh_dir_org(const kh_dir *d, const char *code);
/* Legal-basis check: KH_OK if a row allows asker's class to ask provider's
 * class for all these items under procedure; *row gets the row id. */
KH_MUST_CHECK kh_err kh_dir_legal(const kh_dir *d, const char *asker, const char *procedure,
                                  const char *provider, char *const *items, size_t n,
                                  const char **row);
/* Minimisation: may an answer under legal-basis row row_id carry the field
 * flat_name (a flattened name: name, name[i] or group[i].name) of item? */
bool kh_dir_field_allowed(const kh_dir *d, const char *row_id, const char *item,
                          const char *flat_name);

/* --- sealing and opening with identities --- */

/* A party's keys and certificates as loaded from the PKI folder. */
typedef struct {
    char code[16];
    X509 *sign_cert, *enc_cert;
    EVP_PKEY *sign_key, *enc_key;
} kh_identity;

/* Loads DIR/sign.{crt,key} and DIR/enc.{crt,key}; keys must be mode 0600. */
KH_MUST_CHECK int kh_identity_load(kh_identity *id, const char *code, const char *dir, char *err,
                                   size_t errlen);
void kh_identity_clear(kh_identity *id);

/* Seals body (signed by `from`, encrypted to recip) and packs it with the
 * header signed by `from` into a serialized Envelope. The header's signer
 * field must already name `from`. */
KH_MUST_CHECK int kh_env_seal(const Kh__Header *h, const kh_identity *from, const uint8_t *body,
                              size_t blen, X509 *recip, uint8_t **out, size_t *outlen);
/* Opens env's payload with `to`'s keys, checks that the signer chains to
 * trust and is exactly expect_signer (from the directory). Body is freed
 * with khc_free_secret(body, len). */
KH_MUST_CHECK kh_err kh_env_open(const Kh__Envelope *env, const kh_identity *to, X509_STORE *trust,
                                 X509 *expect_signer, uint8_t **body, size_t *len);
/* Fills a header with a fresh random msg_id and times; strings are borrowed. */
KH_MUST_CHECK int kh_header_init(Kh__Header *h, uint8_t msg_id[KH_MSG_ID_LEN], Kh__MsgType type,
                                 const char *sender, const char *recipient, const char *signer,
                                 int ttl);

#endif
