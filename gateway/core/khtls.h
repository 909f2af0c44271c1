/* khtls.h: TLS contexts for every listener and client. Mutual TLS always:
 * a server demands a client certificate that chains to its trust store; a
 * client verifies the server against its trust store and, optionally, an
 * expected subject (O= and CN=) checked during the handshake. TLS 1.3 only
 * (1.2 is not offered: every peer here is ours). */
#ifndef KH_TLS_H
#define KH_TLS_H

#include "kherr.h"

/* only OpenSSL's opaque type names (SSL, SSL_CTX, X509): calls go here */
#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* cert/key: our identity; ca: PEM file (may hold several CAs) trusted for peers. */
SSL_CTX *kh_tls_server_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen);
SSL_CTX *kh_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen);
/* ca may be NULL for a server whose trusted CAs are added one by one: */
KH_MUST_CHECK int kh_tls_add_ca(SSL_CTX *ctx, const char *path, char *err, size_t errlen);
/* The same with the certificate in hand (the caller keeps its reference). */
KH_MUST_CHECK int kh_tls_add_ca_cert(SSL_CTX *ctx, X509 *ca, char *err, size_t errlen);
/* The CRLs of a PEM file for CAs ctx trusts (khc_store_add_crls): from then
 * on a peer whose certificate is revoked, or whose CA's CRL has expired, is
 * refused in the handshake (alert certificate_revoked, or another). */
KH_MUST_CHECK int kh_tls_add_crls(SSL_CTX *ctx, const char *path, int64_t *left, char *err,
                                  size_t errlen);
/* A connection's peer certificate and the chain it sent, verified again
 * against ctx's trust (its CAs and CRLs, now): 0 if still trusted, else -1
 * with why (revoked: *revoked true). For a connection opened before its
 * listener took a new context. */
KH_MUST_CHECK int kh_tls_recheck(SSL *ssl, SSL_CTX *ctx, bool *revoked, char *why, size_t whylen);
/* Requires the server's leaf certificate to carry these O= and (if cn != NULL)
 * CN= values; checked inside the handshake, so a wrong peer never gets a request. */
KH_MUST_CHECK int kh_tls_expect_peer(SSL *ssl, const char *org, const char *cn);
/* The verified peer certificate of an established connection (caller frees), or NULL. */
X509 *kh_tls_peer_cert(SSL *ssl);
/* The certificate that issued the peer's leaf in the verified chain (not up-ref'd), or NULL. */
X509 *kh_tls_peer_issuer(SSL *ssl);

/* A gate a server context runs when a client's hello arrives, before any
 * costly step of the handshake (no key exchange, signature or certificate
 * check yet): gate(fd, arg) false ends the handshake at once with a
 * handshake_failure alert (fd: the connection's socket). Once per
 * connection (a second hello, after a HelloRetryRequest, passes). Once per
 * context: -1 if it has another one already (the same gate and arg: 0);
 * arg outlives the context. */
typedef bool (*kh_tls_hello_gate)(int fd, void *arg);
KH_MUST_CHECK int kh_tls_set_hello_gate(SSL_CTX *ctx, kh_tls_hello_gate gate, void *arg);

/* A pointer of the caller's kept with a connection (NULL: none; it is not
 * freed with the connection). kh_tls_set_owner: 0, or -1 (the caller must
 * then not use the connection). */
KH_MUST_CHECK int kh_tls_set_owner(SSL *ssl, void *owner);
void kh_tls_clear_owner(SSL *ssl);
void *kh_tls_owner(SSL *ssl);

/* Frees a context (NULL ok). */
void kh_tls_ctx_free(SSL_CTX *ctx);
/* The certificate ctx presents (not a new reference), or NULL. */
X509 *kh_tls_ctx_cert(SSL_CTX *ctx);
/* A connection object of ctx for libevent's bufferevent_openssl, or NULL;
 * kh_tls_free frees one that no bufferevent took (NULL ok). */
SSL *kh_tls_new(SSL_CTX *ctx);
void kh_tls_free(SSL *ssl);
/* Whether the connection's TLS handshake has completed (NULL: no). */
bool kh_tls_handshake_done(SSL *ssl);

/* Blocking client connections for the command-line tools (never inside an
 * event loop). kh_tls_connect_fd runs the handshake on a connected socket,
 * with the expected peer (org NULL: any the CA issued); NULL and err set on
 * failure. kh_tls_read returns the bytes read (> 0), or -1 with err
 * ("what: reason"); kh_tls_write writes everything or returns -1 the same
 * way. kh_tls_close shuts the connection down and frees it (NULL ok); the
 * socket stays the caller's. */
SSL *kh_tls_connect_fd(SSL_CTX *ctx, int fd, const char *org, const char *cn, char *err,
                       size_t errlen);
KH_MUST_CHECK int kh_tls_read(SSL *ssl, void *buf, size_t len, const char *what, char *err,
                              size_t errlen);
KH_MUST_CHECK int kh_tls_write(SSL *ssl, const void *buf, size_t len, const char *what, char *err,
                               size_t errlen);
void kh_tls_close(SSL *ssl);

#endif
