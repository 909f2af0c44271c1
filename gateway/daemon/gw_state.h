/* gw_state.h: the gateway daemon's shared state (gw_state.c). One process
 * serves several tenants (municipalities); each has its own keys and its own
 * database role. Set up by gw_main.c before the event loop runs; read by
 * every handler; the workers read it too (never write). */
#ifndef KH_GW_STATE_H
#define KH_GW_STATE_H

#include "gw_conf.h"

#include "khconf.h"
#include "khenv.h"
#include "khpool.h"
#include "khtls.h"

#include <event2/event.h>
#include <event2/http.h>
#include <stdatomic.h>
#include <stdbool.h>

/* A number as a string literal, for SQL texts built at compile time. */
#define KH_STR_(x) #x
#define KH_STR(x) KH_STR_(x)

/* At most this many tenants per process (the configuration's list limit). */
#define GW_MAX_TENANTS KH_OPT_LIST_MAX

typedef struct {
    kh_identity id;    /* id.code is the organisation code */
    X509 *business_ca; /* issues this tenant's business-system client certs */
    const char *db;    /* conninfo of the database with its schema (G.set.db or its tenant_db) */
    char *db_copy;     /* db's own copy, for a tenant added while running (else NULL) */
    bool own_db;       /* db is a tenant_db, not G.set.db */
    atomic_bool maintenance; /* new work refused (gw_maint.c) */
    /* no longer hosted (gw_tenants.c): found by no look-up and skipped by
     * every pass; kept, keys and all, for the work that holds it, until exit */
    atomic_bool retired;
    int64_t added_at, retired_at; /* unix seconds; added_at 0: at the start */
} gw_tenant;

typedef struct {
    struct event_base *base;
    kh_conf *conf;   /* the file set was read from (set's strings point into it) */
    gw_settings set; /* every option (gw_conf.h) */
    /* the options that may change at run time (SIGHUP), read by every thread */
    atomic_int skew, ttl, default_timeout_ms;
    /* biz_ctx trusts the hosted tenants' business CAs: replaced (on the
     * event loop) when a tenant is added or retired; the old ones are kept
     * until exit, as workers and open connections may still read them */
    _Atomic(SSL_CTX *) biz_ctx;
    /* the gateway's own (gw_tls.c): replaced on the event loop when their
     * files change (SIGHUP), the old ones kept until exit the same way */
    _Atomic(SSL_CTX *) peer_ctx, client_ctx;
    _Atomic(SSL_CTX *) admin_ctx; /* trusts only pki/operator-ca.crt; NULL without admin_listen */
    _Atomic(X509_STORE *) national;
    /* the CAs' certificates, for their remaining validity (gw_own_certs):
     * pki/national-ca.crt, pki/operator-ca.crt (with admin_listen), tsa_ca */
    _Atomic(X509 *) national_ca, operator_ca;
    X509 *tsa_ca;
    kh_dir *dir; /* the version in use: read on the event loop; a worker holds one (gw_dir.h) */
    kh_pool *pool;
    /* the tenants (gw_tenant_count, gw_tenant_at): slots filled in order and
     * never moved or emptied while the process runs, so that a pointer to a
     * tenant stays good for the work holding it; ntenants is published
     * after its slot is filled (release), read with acquire */
    gw_tenant *tenants[GW_MAX_TENANTS];
    atomic_size_t ntenants;
    struct evhttp *biz_http, *peer_http, *admin_http;
    struct event *retry_ev, *sig_ev[3]; /* SIGTERM, SIGINT, SIGHUP */
    int dir_attempts;
    /* this process among the nodes serving the same tenants from the same
     * database: NAME/HOST/PID/RANDOM, set at start; the owner of the leases
     * on its queries in flight (gw_lease.c) */
    char node[160];
    atomic_bool stopping;    /* set at shutdown: nothing new starts (read by workers too) */
    atomic_bool draining;    /* a stop signal came and drain_s runs (gw_main.c; read by workers) */
    atomic_bool maintenance; /* the gateway's maintenance mode (gw_maint.c) */
} gw;

extern gw G;

/* The hosted tenant with this organisation code, or NULL. */
gw_tenant *gw_tenant_find(const char *code);
/* The tenants as any thread sees them now: gw_tenant_at(i) for i below
 * gw_tenant_count() (read the count once per pass; a tenant may be added
 * while it runs, in the next slot), NULL for a retired one; gw_tenant_slot
 * the same with the retired ones (for what ends with the process). */
size_t gw_tenant_count(void);
gw_tenant *gw_tenant_at(size_t i);
gw_tenant *gw_tenant_slot(size_t i);
/* Fills the next slot with t (allocated by the caller, complete) and
 * publishes it: 0, or -1 if every slot is taken. On the event loop only. */
int gw_tenant_publish(gw_tenant *t);

/* A tenant's certificates, each with its metric label (key) and its name in
 * the diagnosis (label): what the metrics, the connectivity check and the
 * admin API's status report on. */
#define GW_TENANT_CERTS 3
typedef struct {
    const char *key, *label;
    X509 *cert;
} gw_tenant_cert;
void gw_tenant_certs(const gw_tenant *t, gw_tenant_cert out[GW_TENANT_CERTS]);
/* The gateway's own certificates: its TLS certificate as each listener and
 * its client present it, the router's from the directory dir (NULL: none),
 * and the CAs it trusts (national, operator, TSA). An entry's cert is NULL
 * when the gateway has none such (no admin listener, no TSA, no directory). */
#define GW_OWN_CERTS 9
void gw_own_certs(const kh_dir *dir, gw_tenant_cert out[GW_OWN_CERTS]);
/* A certificate ending sooner is a warning: in the diagnosis, the log
 * (gw_expiry.c) and the console. */
#define GW_CERT_WARN_DAYS 30
/* For a thread of its own (not a pool worker) going through the tenants:
 * *c connected to t's database, made anew when the previous tenant's (*at,
 * NULL at first) was another or the connection was lost; NULL, logged, if it
 * cannot be reached (and for the next tenants of that database). The
 * thread closes *c and calls kh_db_forget when done. */
PGconn *gw_tenant_conn(PGconn **c, const char **at, const gw_tenant *t);

#endif
