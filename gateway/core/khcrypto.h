/* khcrypto.h: every use of OpenSSL's crypto outside TLS goes through here:
 * key and certificate loading (with permission checks), header signatures,
 * the CMS payload (SignedData inside AuthEnvelopedData), certificate checks
 * against the national CA, randomness, HMAC and constant-time comparison.
 * OpenSSL's error queue is drained and logged in one place (khc_drain_errors).
 *
 * All functions return 0 on success and -1 (or a kh_err) on failure; outputs
 * are only set on success. Buffers returned through uint8_t ** are malloc'd;
 * the caller frees them (khc_free_secret for plaintext bodies). */
#ifndef KH_CRYPTO_H
#define KH_CRYPTO_H

#include "kherr.h"

/* only OpenSSL's opaque type names (X509, EVP_PKEY, X509_STORE...): every
 * call into OpenSSL is made in khcrypto.c or khtls.c */
#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Loads a PEM private key. Refuses (returns NULL, explains in err) a key file
 * that is readable or writable by group or others, or not a regular file. */
EVP_PKEY *khc_load_key(const char *path, char *err, size_t errlen);
/* Loads one PEM certificate from a file / from memory. */
X509 *khc_load_cert(const char *path, char *err, size_t errlen);
X509 *khc_cert_from_pem(const uint8_t *pem, size_t len);
/* Reads a whole regular file (PEM) into a malloc'd buffer, NUL-terminated;
 * limit 1 MiB. khc_read_file_max: the same with a limit of max bytes. */
KH_MUST_CHECK int khc_read_file(const char *path, uint8_t **out, size_t *outlen);
KH_MUST_CHECK int khc_read_file_max(const char *path, size_t max, uint8_t **out, size_t *outlen);
/* A trust store holding the given CA certificate file(s) (PEM, may hold several). */
X509_STORE *khc_store_from_file(const char *ca_path, char *err, size_t errlen);

/* Adds the certificate revocation lists of a PEM file (one or more) to
 * store, and makes every verification through store check the leaf's
 * revocation. Each CRL must be signed by a CA certificate already in store
 * and be current (its nextUpdate ahead). Fail-closed from then on: a leaf
 * whose issuer has no CRL in the store, or whose CRL has passed its
 * nextUpdate, does not verify. *left: seconds until the earliest nextUpdate
 * of the file's CRLs. 0, or -1 with err (the store may hold some of them:
 * free it). */
KH_MUST_CHECK int khc_store_add_crls(X509_STORE *store, const char *path, int64_t *left, char *err,
                                     size_t errlen);

/* Frees a certificate, a key (OpenSSL wipes its material) or a trust store
 * (NULL ok). */
void khc_cert_free(X509 *cert);
void khc_key_free(EVP_PKEY *key);
void khc_store_free(X509_STORE *store);

/* The one reader of names in certificates. The organisation (subject O=)
 * and the common name (subject CN=) of a certificate: exactly one such
 * attribute, no NUL inside, shorter than outlen; 0 on success, -1 otherwise
 * (a certificate with two O= or a "131016\0x" O= names nobody). */
KH_MUST_CHECK int khc_cert_org(X509 *cert, char *out, size_t outlen);
KH_MUST_CHECK int khc_cert_cn(X509 *cert, char *out, size_t outlen);
/* The certificate's serial number in upper-case hex, as openssl x509
 * -serial prints it ("?" if it cannot be read). */
void khc_cert_serial(const X509 *cert, char *out, size_t outlen);
/* Seconds from now until cert's notAfter (negative once expired); 0 with
 * *ok false if it cannot be read. */
int64_t khc_cert_left(const X509 *cert, bool *ok);
/* Verifies cert against store (chain, validity now). 0 if trusted. */
KH_MUST_CHECK int khc_cert_verify(X509_STORE *store, X509 *cert);
/* The same, but a success is remembered (per store and certificate content)
 * until the earliest notAfter of the chain or 5 minutes, whichever comes
 * first, and not verified again until then. For certificates checked over and
 * over (a directory's, on every message); thread-safe. */
KH_MUST_CHECK int khc_cert_verify_cached(X509_STORE *store, X509 *cert);
/* True if the two certificates are the same (DER equal). */
bool khc_cert_equal(X509 *a, X509 *b);

/* ECDSA/SHA-256 detached signature over data (DER encoded), verifiable with
 * `openssl dgst -sha256 -verify pub.pem -signature sig data`. */
KH_MUST_CHECK int khc_sign(EVP_PKEY *key, const uint8_t *data, size_t len, uint8_t **sig,
                           size_t *siglen);
KH_MUST_CHECK int khc_verify(X509 *cert, const uint8_t *data, size_t len, const uint8_t *sig,
                             size_t siglen);

/* Seals a body for one recipient: DER of CMS AuthEnvelopedData (AES-256-GCM,
 * ECDH key agreement to recip_cert) whose content is DER CMS SignedData
 * (no certificates, content attached, binary) of body.
 * recip_cert must hold an EC key; the ECDH KDF is X9.63 with SHA-256. Bodies
 * over 16 MiB are refused (as are sign/verify inputs over 16 MiB).
 * Readable with: openssl cms -decrypt -inform DER -recip C -inkey K | openssl cms -verify -inform
 * DER -certfile SIGNER.crt ... */
KH_MUST_CHECK int khc_seal(const uint8_t *body, size_t len, X509 *sign_cert, EVP_PKEY *sign_key,
                           X509 *recip_cert, uint8_t **out, size_t *outlen);
/* The two halves of khc_seal, for tests and fuzzing (khc_open must treat
 * what it decrypts as hostile: encryption certificates are public, so
 * anyone can encrypt any inner content to a gateway):
 * khc_seal_signed gives the inner layer (the DER SignedData of body),
 * khc_seal_inner encrypts an inner layer, whatever it is, to recip_cert.
 * Both: 0, or -1; free *out with khc_free_secret. */
KH_MUST_CHECK int khc_seal_signed(const uint8_t *body, size_t len, X509 *sign_cert,
                                  EVP_PKEY *sign_key, uint8_t **out, size_t *outlen);
KH_MUST_CHECK int khc_seal_inner(const uint8_t *inner, size_t len, X509 *recip_cert, uint8_t **out,
                                 size_t *outlen);
/* Opens a sealed payload: decrypts with the recipient's key, checks that the
 * one signer is `signer` (the expected sender's certificate, from the
 * directory: payloads carry no certificate, and any they carry is ignored),
 * verifies the signature over the content with it and checks `signer`
 * against trust. On success returns KH_OK and the body (free with
 * khc_free_secret). Failures:
 *   KH_E_DECRYPT (not decryptable: altered, truncated, other recipient),
 *   KH_E_PAYLOAD_SIG (signature does not verify over the content),
 *   KH_E_UNTRUSTED_SIGNER (signed by someone else, or signer not issued by
 *   a CA in trust), KH_E_TOO_LARGE (payload over 16 MiB), KH_E_INTERNAL
 *   (NULL argument, no memory). */
KH_MUST_CHECK kh_err khc_open(const uint8_t *payload, size_t len, X509 *recip_cert,
                              EVP_PKEY *recip_key, X509_STORE *trust, X509 *signer, uint8_t **body,
                              size_t *bodylen);

KH_MUST_CHECK int khc_random(uint8_t *buf, size_t n);
/* SHA-256 of a followed by b (either may be empty) into out[32]. */
KH_MUST_CHECK int khc_sha256(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                             uint8_t out[32]);
/* SHA-256 over a stream (a file read in parts, an upload part by part):
 * new, update as often as needed, final (which frees the context). peek
 * gives the digest of what was added so far and lets updates go on. 0 on
 * success, -1 on failure (then the context is unusable: free it). */
typedef struct khc_sha256_ctx khc_sha256_ctx;
khc_sha256_ctx *khc_sha256_new(void);
KH_MUST_CHECK int khc_sha256_update(khc_sha256_ctx *ctx, const void *data, size_t len);
KH_MUST_CHECK int khc_sha256_peek(const khc_sha256_ctx *ctx, uint8_t out[32]);
KH_MUST_CHECK int khc_sha256_final(khc_sha256_ctx *ctx, uint8_t out[32]);
void khc_sha256_free(khc_sha256_ctx *ctx);
/* Adds a file's path and its bytes (at most max) to ctx, the bytes wiped
 * after (a key file among them): the digest of a set of files tells whether
 * any changed. -1 with err if it cannot be read. */
KH_MUST_CHECK int khc_sha256_file(khc_sha256_ctx *ctx, const char *path, size_t max, char *err,
                                  size_t errlen);
/* SHA-256 of a followed by b, like khc_sha256, reusing ctx (from
 * khc_sha256_new, nothing added to it) for many digests in a row: a loop
 * over millions of rows then allocates nothing. ctx is ready for the next. */
KH_MUST_CHECK int khc_sha256_pair(khc_sha256_ctx *ctx, const uint8_t *a, size_t alen,
                                  const uint8_t *b, size_t blen, uint8_t out[32]);
/* HMAC-SHA-256 into out[32]. */
KH_MUST_CHECK int khc_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data,
                                  size_t len, uint8_t out[32]);
/* Constant-time equality for secrets and MACs. The only comparison to use on them. */
bool khc_ct_equal(const void *a, const void *b, size_t n);
/* Wipes a buffer that held a secret or personal data (NULL ok). */
void khc_wipe(void *p, size_t n);
/* Wipes and frees a buffer that held a secret or personal data (NULL ok). */
void khc_free_secret(void *p, size_t n);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void khc_hex(const uint8_t *in, size_t n, char *out);
/* The n bytes written as exactly 2n hex digits (either case, nothing else:
 * no sign, space or 0x) in s[0..slen) into out: 0, or -1 (out then undefined). */
KH_MUST_CHECK int khc_unhex(const char *s, size_t slen, uint8_t *out, size_t n);

/* Operator passwords: scrypt (OpenSSL EVP_KDF "SCRYPT", memory-hard), a
 * fresh 16-byte random salt per password, a 32-byte hash, stored as the
 * self-describing string
 *     scrypt$N$r$p$SALT$HASH      (SALT and HASH in standard base64)
 * with N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s): slow on purpose, so run
 * it on a worker thread, never on an event loop. Passwords are 1 to
 * KHC_PASSWORD_MAX bytes. */
#define KHC_PASSWORD_MAX 1024
#define KHC_PWHASH_LEN 128 /* room for the stored string and its NUL */
/* 0 and out set, or -1. */
KH_MUST_CHECK int khc_password_hash(const char *pw, size_t len, char out[KHC_PWHASH_LEN]);
/* True if pw matches stored. A stored string that is not ours, or parameters
 * outside the accepted range (so that a row cannot make us allocate
 * gigabytes), are false. stored NULL runs the same work against a fixed
 * dummy and returns false: the time of a login does not tell whether the
 * operator exists. The hashes are compared in constant time. */
bool khc_password_verify(const char *pw, size_t len, const char *stored);

/* Drains OpenSSL's error queue into the operational log under `what`. */
void khc_drain_errors(const char *what);

#endif
