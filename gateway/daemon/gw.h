/* gw.h: the gateway daemon's shared state. One process serves several
 * tenants (municipalities); each has its own keys and its own database role. */
#ifndef KH_GW_H
#define KH_GW_H

#include "khconf.h"
#include "khenv.h"
#include "khpool.h"

#include <event2/event.h>
#include <event2/http.h>
#include "khtls.h"
#include <stdatomic.h>
#include <stdbool.h>

typedef struct {
    kh_identity id;    /* id.code is the organisation code */
    X509 *business_ca; /* issues this tenant's business-system client certs */
} gw_tenant;

typedef struct {
    struct event_base *base;
    kh_conf *conf;
    const char *name;   /* this gateway host's name (its TLS cert CN) */
    const char *router; /* host:port of the router */
    const char *pki;
    int skew, ttl, max_body, default_timeout_ms;
    SSL_CTX *biz_ctx, *peer_ctx, *client_ctx;
    SSL_CTX *admin_ctx; /* trusts only pki/operator-ca.crt; NULL without admin_listen */
    X509_STORE *national;
    kh_dir *dir;
    kh_pool *pool;
    gw_tenant *tenants;
    size_t ntenants;
    struct evhttp *biz_http, *peer_http, *admin_http;
    struct event *retry_ev, *sig_ev[2];
    int dir_attempts;
    atomic_bool stopping; /* set at shutdown: nothing new starts (read by workers too) */
} gw;

extern gw G;

gw_tenant *gw_tenant_find(const char *code);
/* The organisation class of a hosted tenant from the directory ("" if unknown). */
void gw_biz_register(struct evhttp *http);
void gw_peer_register(struct evhttp *http);

/* Bulk registration (gw_bulk.c): handlers called by the business API once the
 * client is identified, and the drop-folder watcher. */
void gw_bulk_on_open(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_part(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_commit(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_status(struct evhttp_request *req, gw_tenant *t, const char *system);
int gw_bulk_start(char *err, size_t errlen);
void gw_bulk_stop(void);

/* The admin API (gw_admin.c): operators with roles and tenant scopes.
 * gw_admin_setup reads the admin_* options and, if admin_listen is set,
 * builds the TLS context that trusts only the operator CA (run by -t too);
 * gw_admin_register serves the API on a listener made with it. */
int gw_admin_setup(char *err, size_t errlen);
void gw_admin_register(struct evhttp *http);
void gw_admin_stop(void);

/* Signing of the tenants' chain heads (gw_chain.c). */
int gw_chain_start(char *err, size_t errlen);
void gw_chain_stop(void);
/* The message a chain head's signature covers; its length, or -1. */
int gw_chain_message(const char *tenant, const char *chain, const char *seq, const char *hash_hex,
                     char *out, size_t outlen);

/* A business request waiting for asynchronous work. The HTTP request may
 * vanish if the client disconnects: then `req` is NULL and no reply is sent. */
typedef struct gw_call gw_call;

#endif
