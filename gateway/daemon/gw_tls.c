/* gw_tls.c: the gateway's own TLS contexts and trust stores (gw_tls.h).
 *
 * A reload goes the way a tenant change does (gw_tenants.c runs both in
 * one change): the files are read and every context built on a worker, the
 * swap happens on the event loop. A file that cannot be read, a key that
 * does not match its certificate, a CA file without a certificate: nothing
 * is swapped, the log says why, and the contexts in use stay. Nothing is
 * freed while the process runs: a connection open on an old context, or a
 * worker that read an old store, keeps using it. */
#include "gw_tls.h"
#include "gw_state.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t in_use[32]; /* the digest of the files in use (event loop) */

/* replaced, kept until exit */
static SSL_CTX **old_ctx;
static size_t nold_ctx;
static X509_STORE **old_store;
static size_t nold_store;
static X509 **old_cert;
static size_t nold_cert;

void gw_tls_paths(char cert[1024], char key[1024])
{
    snprintf(cert, 1024, "%s/gw/%s/tls.crt", G.set.pki, G.set.name);
    snprintf(key, 1024, "%s/gw/%s/tls.key", G.set.pki, G.set.name);
}

static void ca_paths(char national[1024], char operator[1024])
{
    snprintf(national, 1024, "%s/national-ca.crt", G.set.pki);
    snprintf(operator, 1024, "%s/operator-ca.crt", G.set.pki);
}

/* The CRL beside a CA file: the same name, .crl for .crt. */
static void crl_path(const char *ca, char out[1024])
{
    size_t n = strlen(ca);
    snprintf(out, 1024, "%.*s.crl", (int)(n > 4 ? n - 4 : n), ca);
}

void gw_tls_business_crl(const char *org, char path[1024])
{
    snprintf(path, 1024, "%s/org/%s/business-ca.crl", G.set.pki, org);
}

/* SHA-256 over each file's name and bytes; -1 with err if one cannot be read. */
static int files_digest(uint8_t out[32], char *err, size_t errlen)
{
    char cert[1024], key[1024], nat[1024], op[1024], natcrl[1024], opcrl[1024], crl[1024];
    gw_tls_paths(cert, key);
    ca_paths(nat, op);
    crl_path(nat, natcrl);
    crl_path(op, opcrl);
    bool admin = G.set.admin_listen != NULL;
    const char *files[] = {cert, key, nat, natcrl, admin ? op : NULL, admin ? opcrl : NULL};
    khc_sha256_ctx *h = khc_sha256_new();
    int rc = h != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < sizeof files / sizeof files[0]; i++)
        if (files[i] != NULL)
            rc = khc_sha256_file(h, files[i], GW_TLS_MAX_FILE, err, errlen);
    /* the business listener trusts the hosted tenants' CAs with their CRLs */
    for (size_t i = 0, n = gw_tenant_count(); rc == 0 && i < n; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue;
        gw_tls_business_crl(t->id.code, crl);
        rc = khc_sha256_file(h, crl, GW_TLS_MAX_FILE, err, errlen);
    }
    if (rc == 0)
        rc = khc_sha256_final(h, out);
    else
        khc_sha256_free(h);
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errlen, "out of memory");
    return rc;
}

void gw_tls_next_clear(gw_tls_next *n)
{
    kh_tls_ctx_free(n->peer);
    kh_tls_ctx_free(n->client);
    kh_tls_ctx_free(n->admin);
    khc_store_free(n->national);
    khc_cert_free(n->national_ca);
    khc_cert_free(n->operator_ca);
    n->peer = n->client = n->admin = NULL;
    n->national = NULL;
    n->national_ca = n->operator_ca = NULL;
}

/* Every context from the files; false with n->err. */
static bool build(gw_tls_next *n)
{
    char cert[1024], key[1024], nat[1024], op[1024], natcrl[1024], opcrl[1024];
    char *err = n->err;
    size_t errlen = sizeof n->err;
    gw_tls_paths(cert, key);
    ca_paths(nat, op);
    crl_path(nat, natcrl);
    crl_path(op, opcrl);
    /* the router and the gateways' TLS certificates: revocation checked in
     * the handshake (the signature certificates are the signed directory's:
     * the router stops listing one that is revoked) */
    if ((n->peer = kh_tls_server_ctx(cert, key, nat, err, errlen)) == NULL ||
        kh_tls_add_crls(n->peer, natcrl, NULL, err, errlen) != 0 ||
        (n->client = kh_tls_client_ctx(cert, key, nat, err, errlen)) == NULL ||
        kh_tls_add_crls(n->client, natcrl, NULL, err, errlen) != 0 ||
        (n->national = khc_store_from_file(nat, err, errlen)) == NULL ||
        (n->national_ca = khc_load_cert(nat, err, errlen)) == NULL)
        return false;
    /* operators only on the admin listener: not the national CA, not the
     * tenants' business CAs */
    if (G.set.admin_listen != NULL &&
        ((n->admin = kh_tls_server_ctx(cert, key, op, err, errlen)) == NULL ||
         kh_tls_add_crls(n->admin, opcrl, NULL, err, errlen) != 0 ||
         (n->operator_ca = khc_load_cert(op, err, errlen)) == NULL))
        return false;
    return true;
}

int gw_tls_load(char *err, size_t errlen)
{
    gw_tls_next n = {0};
    if (files_digest(in_use, n.err, sizeof n.err) != 0 || !build(&n)) {
        snprintf(err, errlen, "%s", n.err);
        gw_tls_next_clear(&n);
        return -1;
    }
    G.peer_ctx = n.peer;
    G.client_ctx = n.client;
    G.admin_ctx = n.admin;
    G.national = n.national;
    G.national_ca = n.national_ca;
    G.operator_ca = n.operator_ca;
    return 0;
}

void gw_tls_settle(void)
{
    char err[256] = "";
    uint8_t d[32];
    if (files_digest(d, err, sizeof err) == 0)
        memcpy(in_use, d, sizeof in_use);
}

void gw_tls_begin(gw_tls_next *n)
{
    memcpy(n->seen, in_use, sizeof n->seen);
}

void gw_tls_prepare(gw_tls_next *n)
{
    if (files_digest(n->digest, n->err, sizeof n->err) != 0) {
        n->changed = true; /* and not built: said so, nothing swapped */
        return;
    }
    if (memcmp(n->digest, n->seen, sizeof n->seen) == 0)
        return;
    n->changed = true;
    if (!build(n))
        gw_tls_next_clear(n);
}

/* The replaced ones (room() made the space; NULL: nothing to keep). */
static void keep_ctx(SSL_CTX *c)
{
    if (c != NULL)
        old_ctx[nold_ctx++] = c;
}

static void keep_store(X509_STORE *s)
{
    if (s != NULL)
        old_store[nold_store++] = s;
}

static void keep_cert(X509 *x)
{
    if (x != NULL)
        old_cert[nold_cert++] = x;
}

static bool room(size_t need)
{
    SSL_CTX **c = realloc(old_ctx, (nold_ctx + need) * sizeof *c);
    if (c != NULL)
        old_ctx = c;
    X509_STORE **s = realloc(old_store, (nold_store + need) * sizeof *s);
    if (s != NULL)
        old_store = s;
    X509 **x = realloc(old_cert, (nold_cert + need) * sizeof *x);
    if (x != NULL)
        old_cert = x;
    return c != NULL && s != NULL && x != NULL;
}

bool gw_tls_install(gw_tls_next *n)
{
    if (!room(3)) {
        snprintf(n->err, sizeof n->err, "out of memory");
        return false;
    }
    /* the listeners first: either refusal leaves everything as it was */
    if (kh_http_set_ctx(G.peer_http, n->peer) != 0 ||
        (G.admin_http != NULL && kh_http_set_ctx(G.admin_http, n->admin) != 0)) {
        if (kh_http_set_ctx(G.peer_http, G.peer_ctx) != 0) /* back, if it moved */
            kh_error("tls", "the peer listener cannot take its context back");
        snprintf(n->err, sizeof n->err, "a listener cannot take a new TLS context");
        return false;
    }
    keep_ctx(atomic_exchange(&G.peer_ctx, n->peer));
    keep_ctx(atomic_exchange(&G.admin_ctx, n->admin));
    /* the client's next connections (khhttp keeps one pool per context) */
    keep_ctx(atomic_exchange(&G.client_ctx, n->client));
    keep_store(atomic_exchange(&G.national, n->national));
    keep_cert(atomic_exchange(&G.national_ca, n->national_ca));
    keep_cert(atomic_exchange(&G.operator_ca, n->operator_ca));
    memcpy(in_use, n->digest, sizeof in_use);
    *n = (gw_tls_next){0};
    return true;
}

void gw_tls_free(void)
{
    for (size_t i = 0; i < nold_ctx; i++)
        kh_tls_ctx_free(old_ctx[i]);
    for (size_t i = 0; i < nold_store; i++)
        khc_store_free(old_store[i]);
    for (size_t i = 0; i < nold_cert; i++)
        khc_cert_free(old_cert[i]);
    free(old_ctx);
    free(old_store);
    free(old_cert);
    old_ctx = NULL;
    old_store = NULL;
    old_cert = NULL;
    nold_ctx = nold_store = nold_cert = 0;
    kh_tls_ctx_free(atomic_exchange(&G.peer_ctx, NULL));
    kh_tls_ctx_free(atomic_exchange(&G.client_ctx, NULL));
    kh_tls_ctx_free(atomic_exchange(&G.admin_ctx, NULL));
    khc_store_free(atomic_exchange(&G.national, NULL));
    khc_cert_free(atomic_exchange(&G.national_ca, NULL));
    khc_cert_free(atomic_exchange(&G.operator_ca, NULL));
}
