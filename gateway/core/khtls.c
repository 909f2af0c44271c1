/* khtls.c: TLS contexts and peer identity checks. */
#include "khtls.h"

#include "khcrypto.h"
#include "khlog.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Expected peer subject, attached to an SSL with ex_data. */
typedef struct {
    char org[64];
    char cn[64];
    bool check_cn;
} expect_peer;

static int expect_idx = -1;

static void expect_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

/* A certificate refused for its revocation status is named in the log:
 * only one its CA's key really signed (a forged certificate naming a
 * revoked serial is not worth a line, and must not crowd out the real ones),
 * and each (reason, serial) at most once every 10 s, the last 32 of them
 * remembered: a revoked client may knock again and again. */
#define REVOKE_LOG_SLOTS 32
static struct {
    pthread_mutex_t mu;
    struct {
        int reason;
        char serial[80];
        time_t at;
    } slot[REVOKE_LOG_SLOTS];
    size_t next;
} revlog = {.mu = PTHREAD_MUTEX_INITIALIZER};

static bool revlog_due(int reason, const char *serial)
{
    time_t now = time(NULL);
    bool due = true;
    pthread_mutex_lock(&revlog.mu);
    for (size_t i = 0; due && i < REVOKE_LOG_SLOTS; i++)
        if (revlog.slot[i].reason == reason && strcmp(revlog.slot[i].serial, serial) == 0 &&
            now - revlog.slot[i].at < 10)
            due = false;
    if (due) {
        size_t i = revlog.next++ % REVOKE_LOG_SLOTS;
        revlog.slot[i].reason = reason;
        snprintf(revlog.slot[i].serial, sizeof revlog.slot[i].serial, "%s", serial);
        revlog.slot[i].at = now;
    }
    pthread_mutex_unlock(&revlog.mu);
    return due;
}

static void log_revocation(X509_STORE_CTX *st)
{
    int e = X509_STORE_CTX_get_error(st);
    if (e != X509_V_ERR_CERT_REVOKED && e != X509_V_ERR_CRL_HAS_EXPIRED &&
        e != X509_V_ERR_UNABLE_TO_GET_CRL && e != X509_V_ERR_CRL_NOT_YET_VALID)
        return;
    X509 *cert = X509_STORE_CTX_get_current_cert(st);
    X509 *issuer = X509_STORE_CTX_get0_current_issuer(st);
    EVP_PKEY *ikey = issuer != NULL ? X509_get0_pubkey(issuer) : NULL;
    if (cert == NULL || ikey == NULL || X509_verify(cert, ikey) != 1) {
        khc_drain_errors("tls revocation log");
        return;
    }
    char org[64], cn[64], serial[80];
    khc_cert_serial(cert, serial, sizeof serial);
    if (!revlog_due(e, serial))
        return;
    if (khc_cert_org(cert, org, sizeof org) != 0)
        snprintf(org, sizeof org, "?");
    if (khc_cert_cn(cert, cn, sizeof cn) != 0)
        snprintf(cn, sizeof cn, "?");
    kh_warn("tls", "certificate O=%s CN=%s serial %s refused: %s", org, cn, serial,
            X509_verify_cert_error_string(e));
}

static int verify_cb(int ok, X509_STORE_CTX *st)
{
    if (!ok) {
        log_revocation(st);
        return 0;
    }
    if (X509_STORE_CTX_get_error_depth(st) != 0)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
    expect_peer *e = ssl && expect_idx >= 0 ? SSL_get_ex_data(ssl, expect_idx) : NULL;
    if (e == NULL)
        return ok;
    X509 *leaf = X509_STORE_CTX_get_current_cert(st);
    char org[64], cn[64];
    /* the names are read by the one strict reader (khc_cert_org/cn) */
    if (khc_cert_org(leaf, org, sizeof org) != 0 || strcmp(org, e->org) != 0)
        goto bad;
    if (e->check_cn && (khc_cert_cn(leaf, cn, sizeof cn) != 0 || strcmp(cn, e->cn) != 0))
        goto bad;
    return 1;
bad:
    X509_STORE_CTX_set_error(st, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static SSL_CTX *make_ctx(const SSL_METHOD *m, const char *cert, const char *key, const char *ca,
                         char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(m);
    EVP_PKEY *pk = NULL;
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "cannot load certificate %s", cert);
        goto fail;
    }
    /* load through khc_load_key so the key file's permissions are checked */
    pk = khc_load_key(key, err, errlen);
    if (pk == NULL)
        goto fail;
    if (SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
        goto fail;
    }
    EVP_PKEY_free(pk);
    pk = NULL;
    if (ca != NULL && SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        snprintf(err, errlen, "cannot load CA file %s", ca);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_verify_depth(ctx, 3);
    return ctx;
fail:
    khc_drain_errors("tls setup");
    EVP_PKEY_free(pk);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *kh_tls_server_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen)
{
    SSL_CTX *ctx = make_ctx(TLS_server_method(), cert, key, ca, err, errlen);
    if (ctx != NULL) {
        /* no resumption: every connection proves its client certificate anew,
         * so the verified chain the handlers read is always there */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (ctx != NULL && ca != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    return ctx;
}

typedef struct {
    kh_tls_hello_gate gate;
    void *arg;
} hello_gate;

/* ex_data indexes, made once (kh_tls_indexes) */
static int gate_idx = -1, owner_idx = -1, gated_idx = -1;

static void gate_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static int kh_tls_indexes(void)
{
    if (gate_idx < 0)
        gate_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, gate_free);
    if (owner_idx < 0)
        owner_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (gated_idx < 0)
        gated_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return gate_idx >= 0 && owner_idx >= 0 && gated_idx >= 0 ? 0 : -1;
}

static int on_hello(SSL *ssl, int *al, void *arg)
{
    static char gated; /* its address marks a connection already let through */
    const hello_gate *g = arg;
    if (SSL_get_ex_data(ssl, gated_idx) == &gated)
        return SSL_CLIENT_HELLO_SUCCESS; /* the second hello after a HelloRetryRequest */
    if (g->gate(SSL_get_fd(ssl), g->arg) && SSL_set_ex_data(ssl, gated_idx, &gated) == 1)
        return SSL_CLIENT_HELLO_SUCCESS;
    *al = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR;
}

int kh_tls_set_hello_gate(SSL_CTX *ctx, kh_tls_hello_gate gate, void *arg)
{
    if (kh_tls_indexes() != 0)
        return -1;
    const hello_gate *had = SSL_CTX_get_ex_data(ctx, gate_idx);
    if (had != NULL) /* the same gate again (a listener taking its context back): kept */
        return had->gate == gate && had->arg == arg ? 0 : -1;
    hello_gate *g = calloc(1, sizeof *g);
    if (g == NULL)
        return -1;
    g->gate = gate;
    g->arg = arg;
    /* the context owns g from here (freed with it) */
    if (SSL_CTX_set_ex_data(ctx, gate_idx, g) != 1) {
        free(g);
        return -1;
    }
    SSL_CTX_set_client_hello_cb(ctx, on_hello, g);
    return 0;
}

int kh_tls_set_owner(SSL *ssl, void *owner)
{
    if (ssl == NULL || kh_tls_indexes() != 0 || SSL_set_ex_data(ssl, owner_idx, owner) != 1)
        return -1;
    return 0;
}

void kh_tls_clear_owner(SSL *ssl)
{
    if (ssl != NULL && owner_idx >= 0)
        SSL_set_ex_data(ssl, owner_idx, NULL); /* cannot fail: the slot exists */
}

void *kh_tls_owner(SSL *ssl)
{
    return ssl != NULL && owner_idx >= 0 ? SSL_get_ex_data(ssl, owner_idx) : NULL;
}

int kh_tls_add_ca_cert(SSL_CTX *ctx, X509 *ca, char *err, size_t errlen)
{
    if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca) != 1 ||
        SSL_CTX_add_client_CA(ctx, ca) != 1) {
        char name[256] = "?";
        X509_NAME_oneline(X509_get_subject_name(ca), name, sizeof name);
        snprintf(err, errlen, "cannot trust CA %s", name);
        khc_drain_errors("tls add ca");
        return -1;
    }
    return 0;
}

int kh_tls_add_crls(SSL_CTX *ctx, const char *path, int64_t *left, char *err, size_t errlen)
{
    if (khc_store_add_crls(SSL_CTX_get_cert_store(ctx), path, left, err, errlen) != 0)
        return -1;
    /* the handshake verifies with the context's parameters */
    if (X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK) != 1) {
        snprintf(err, errlen, "cannot turn revocation checks on");
        khc_drain_errors("tls crl");
        return -1;
    }
    return 0;
}

int kh_tls_recheck(SSL *ssl, SSL_CTX *ctx, bool *revoked, char *why, size_t whylen)
{
    X509 *leaf = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    X509_STORE_CTX *st = X509_STORE_CTX_new();
    int rc = -1;
    *revoked = false;
    snprintf(why, whylen, "no peer certificate");
    if (leaf != NULL && st != NULL &&
        X509_STORE_CTX_init(st, SSL_CTX_get_cert_store(ctx), leaf, SSL_get_peer_cert_chain(ssl)) ==
            1 &&
        X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(st), SSL_CTX_get0_param(ctx)) == 1 &&
        X509_STORE_CTX_set_purpose(st, X509_PURPOSE_SSL_CLIENT) == 1) {
        if (X509_verify_cert(st) == 1) {
            rc = 0;
            why[0] = '\0';
        } else {
            int e = X509_STORE_CTX_get_error(st);
            *revoked = e == X509_V_ERR_CERT_REVOKED;
            snprintf(why, whylen, "%s", X509_verify_cert_error_string(e));
        }
    }
    X509_STORE_CTX_free(st);
    khc_drain_errors("tls recheck");
    return rc;
}

int kh_tls_add_ca(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    X509 *ca = khc_load_cert(path, err, errlen);
    if (ca == NULL)
        return -1;
    int rc = kh_tls_add_ca_cert(ctx, ca, err, errlen);
    X509_free(ca);
    return rc;
}

/* An outgoing request goes out as its head and then its body: without
 * TCP_NODELAY, Nagle's algorithm holds the second segment until the peer's
 * delayed ACK, about 40 ms per hop. libevent opens outgoing sockets itself,
 * so the option is set when the TLS handshake starts on the socket. */
static void client_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_HANDSHAKE_START))
        return;
    int fd = SSL_get_fd(ssl), one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

SSL_CTX *kh_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err,
                           size_t errlen)
{
    SSL_CTX *ctx = make_ctx(TLS_client_method(), cert, key, ca, err, errlen);
    if (ctx != NULL)
        SSL_CTX_set_info_callback(ctx, client_info);
    return ctx;
}

int kh_tls_expect_peer(SSL *ssl, const char *org, const char *cn)
{
    if (expect_idx < 0) {
        /* first use happens on the event-loop thread before any worker exists */
        expect_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, expect_free);
        if (expect_idx < 0)
            return -1;
    }
    expect_peer *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -1;
    snprintf(e->org, sizeof e->org, "%s", org);
    if (cn != NULL) {
        snprintf(e->cn, sizeof e->cn, "%s", cn);
        e->check_cn = true;
    }
    if (SSL_set_ex_data(ssl, expect_idx, e) != 1) {
        free(e);
        return -1;
    }
    return 0;
}

X509 *kh_tls_peer_cert(SSL *ssl)
{
    if (ssl == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return NULL;
    return SSL_get1_peer_certificate(ssl);
}

X509 *kh_tls_peer_issuer(SSL *ssl)
{
    STACK_OF(X509) *chain = ssl ? SSL_get0_verified_chain(ssl) : NULL;
    if (chain == NULL || sk_X509_num(chain) < 2)
        return NULL;
    return sk_X509_value(chain, 1);
}

X509 *kh_tls_ctx_cert(SSL_CTX *ctx)
{
    return ctx != NULL ? SSL_CTX_get0_certificate(ctx) : NULL;
}

void kh_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

SSL *kh_tls_new(SSL_CTX *ctx)
{
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (ssl == NULL)
        khc_drain_errors("tls new connection");
    return ssl;
}

void kh_tls_free(SSL *ssl)
{
    SSL_free(ssl);
}

bool kh_tls_handshake_done(SSL *ssl)
{
    return ssl != NULL && SSL_is_init_finished(ssl) == 1;
}

/* The reason of the last TLS failure from OpenSSL's queue (which is then
 * emptied) after what, into out. */
static void last_error(const char *what, char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    char buf[200] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(out, outlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
    ERR_clear_error();
}

SSL *kh_tls_connect_fd(SSL_CTX *ctx, int fd, const char *org, const char *cn, char *err,
                       size_t errlen)
{
    SSL *ssl = kh_tls_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 ||
        (org != NULL && kh_tls_expect_peer(ssl, org, cn) != 0)) {
        snprintf(err, errlen, "cannot set up TLS");
        SSL_free(ssl);
        return NULL;
    }
    if (SSL_connect(ssl) != 1) {
        last_error("TLS handshake failed (or the server is not who we expected)", err, errlen);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int kh_tls_read(SSL *ssl, void *buf, size_t len, const char *what, char *err, size_t errlen)
{
    int r = SSL_read(ssl, buf, len > (1u << 30) ? (1 << 30) : (int)len);
    if (r <= 0) {
        last_error(what, err, errlen);
        return -1;
    }
    return r;
}

int kh_tls_write(SSL *ssl, const void *buf, size_t len, const char *what, char *err, size_t errlen)
{
    const uint8_t *p = buf;
    while (len > 0) {
        int n = SSL_write(ssl, p, len > (1u << 30) ? (1 << 30) : (int)len);
        if (n <= 0) {
            last_error(what, err, errlen);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void kh_tls_close(SSL *ssl)
{
    if (ssl == NULL)
        return;
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ERR_clear_error();
}
