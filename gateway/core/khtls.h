/* khtls.h: TLS contexts for every listener and client. Mutual TLS always:
 * a server demands a client certificate that chains to its trust store; a
 * client verifies the server against its trust store and, optionally, an
 * expected subject (O= and CN=) checked during the handshake. TLS 1.3 only
 * (1.2 is not offered: every peer here is ours). */
#ifndef KH_TLS_H
#define KH_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>

/* cert/key: our identity; ca: PEM file (may hold several CAs) trusted for peers. */
SSL_CTX *kh_tls_server_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen);
SSL_CTX *kh_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen);
/* ca may be NULL for a server whose trusted CAs are added one by one: */
int kh_tls_add_ca(SSL_CTX *ctx, const char *path, char *err, size_t errlen);
/* Requires the server's leaf certificate to carry these O= and (if cn != NULL)
 * CN= values; checked inside the handshake, so a wrong peer never gets a request. */
int kh_tls_expect_peer(SSL *ssl, const char *org, const char *cn);
/* The verified peer certificate of an established connection (caller frees), or NULL. */
X509 *kh_tls_peer_cert(SSL *ssl);
/* The certificate that issued the peer's leaf in the verified chain (not up-ref'd), or NULL. */
X509 *kh_tls_peer_issuer(SSL *ssl);

#endif
