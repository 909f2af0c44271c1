/* khrouter_tls.c: the router's TLS contexts, read again while it runs
 * (khrouter_tls.h). The gateway's gw_tls.c does the same for a gateway; a
 * file that cannot be read, a key not matching its certificate, a CRL that
 * expired or that its CA did not sign: nothing is swapped, the log says why
 * and the contexts in use stay. */
#include "khrouter_tls.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (16u << 20) /* a national CA's CRL may be long */

typedef struct {
    uint8_t digest[32];
    bool changed;
    SSL_CTX *server, *client;
    char err[256];
} next_tls;

static struct {
    char pki[1024];
    uint8_t in_use[32];
    struct event_base *base;
    kh_pool *pool;
    struct evhttp *http;
    void (*took)(SSL_CTX *client);
    struct event *timer;
    bool busy;
    SSL_CTX **made; /* every context made, those replaced too: freed at exit */
    size_t nmade;
} T;

static void paths(char cert[1024], char key[1024], char ca[1024], char crl[1024])
{
    snprintf(cert, 1024, "%s/router/tls.crt", T.pki);
    snprintf(key, 1024, "%s/router/tls.key", T.pki);
    snprintf(ca, 1024, "%s/national-ca.crt", T.pki);
    snprintf(crl, 1024, "%s/national-ca.crl", T.pki);
}

static int digest(uint8_t out[32], char *err, size_t errlen)
{
    char f[4][1024];
    paths(f[0], f[1], f[2], f[3]);
    khc_sha256_ctx *h = khc_sha256_new();
    int rc = h != NULL ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < 4; i++)
        rc = khc_sha256_file(h, f[i], MAX_FILE, err, errlen);
    if (rc == 0)
        return khc_sha256_final(h, out);
    khc_sha256_free(h);
    return -1;
}

static int build(SSL_CTX **server, SSL_CTX **client, char *err, size_t errlen)
{
    char cert[1024], key[1024], ca[1024], crl[1024];
    paths(cert, key, ca, crl);
    *server = *client = NULL;
    if ((*server = kh_tls_server_ctx(cert, key, ca, err, errlen)) != NULL &&
        kh_tls_add_crls(*server, crl, NULL, err, errlen) == 0 &&
        (*client = kh_tls_client_ctx(cert, key, ca, err, errlen)) != NULL &&
        kh_tls_add_crls(*client, crl, NULL, err, errlen) == 0)
        return 0;
    kh_tls_ctx_free(*server);
    kh_tls_ctx_free(*client);
    *server = *client = NULL;
    return -1;
}

/* Room for two more in T.made. */
static bool room(void)
{
    SSL_CTX **more = realloc(T.made, (T.nmade + 2) * sizeof *more);
    if (more != NULL)
        T.made = more;
    return more != NULL;
}

int khr_tls_load(const char *pki, SSL_CTX **server, SSL_CTX **client, char *err, size_t errlen)
{
    snprintf(T.pki, sizeof T.pki, "%s", pki);
    if (!room()) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (digest(T.in_use, err, errlen) != 0 || build(server, client, err, errlen) != 0)
        return -1;
    T.made[T.nmade++] = *server;
    T.made[T.nmade++] = *client;
    return 0;
}

static void work(PGconn *c, void *arg)
{
    next_tls *n = arg;
    (void)c;
    if (digest(n->digest, n->err, sizeof n->err) != 0) {
        n->changed = true; /* and not built: said so */
        return;
    }
    if (memcmp(n->digest, T.in_use, sizeof n->digest) == 0) /* busy: in_use stays */
        return;
    n->changed = true;
    (void)build(&n->server, &n->client, n->err, sizeof n->err);
}

static void done(void *arg)
{
    next_tls *n = arg;
    T.busy = false;
    if (!n->changed) {
        /* the files are those in use */
    } else if (n->server == NULL) {
        kh_error("tls", "TLS unchanged, the certificates in use stay: %s", n->err);
    } else if (!room() || kh_http_set_ctx(T.http, n->server) != 0) {
        kh_error("tls", "TLS unchanged: the listener cannot take a new context");
    } else {
        T.made[T.nmade++] = n->server; /* the listener's now */
        T.made[T.nmade++] = n->client;
        T.took(n->client);
        memcpy(T.in_use, n->digest, sizeof T.in_use);
        n->server = n->client = NULL;
        kh_info("tls", "TLS reloaded: the router's certificate, key, national CA and its CRL read "
                       "again; new connections use them, an open one is checked again at its "
                       "next request");
    }
    kh_tls_ctx_free(n->server);
    kh_tls_ctx_free(n->client);
    free(n);
}

static void check_now(void)
{
    next_tls *n;
    if (T.busy || T.pool == NULL || (n = calloc(1, sizeof *n)) == NULL)
        return; /* the next tick reads them */
    if (kh_pool_submit(T.pool, work, done, n) != 0) {
        free(n);
        return;
    }
    T.busy = true;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    check_now();
}

static void arm(int interval_s)
{
    struct timeval tv = {.tv_sec = interval_s};
    if (T.timer == NULL && (T.timer = event_new(T.base, -1, EV_PERSIST, on_tick, NULL)) == NULL) {
        kh_error("tls", "no timer for the CRL refresh: out of memory");
        return;
    }
    evtimer_add(T.timer, &tv);
}

void khr_tls_start(struct event_base *base, kh_pool *pool, struct evhttp *http, int interval_s,
                   void (*took)(SSL_CTX *client))
{
    T.base = base;
    T.pool = pool;
    T.http = http;
    T.took = took;
    arm(interval_s);
}

void khr_tls_reload(int interval_s)
{
    if (T.base == NULL)
        return;
    arm(interval_s);
    check_now();
}

void khr_tls_free(void)
{
    if (T.timer != NULL)
        event_free(T.timer);
    T.timer = NULL;
    for (size_t i = 0; i < T.nmade; i++)
        kh_tls_ctx_free(T.made[i]);
    free(T.made);
    T.made = NULL;
    T.nmade = 0;
}
