/* gw_state.c: the daemon's one instance of its shared state (gw_state.h). */
#include "gw_state.h"

#include "khtls.h"

#include <string.h>

gw G;

gw_tenant *gw_tenant_find(const char *code)
{
    for (size_t i = 0, n = gw_tenant_count(); code && i < n; i++)
        if (gw_tenant_at(i) != NULL && strcmp(G.tenants[i]->id.code, code) == 0)
            return G.tenants[i];
    return NULL;
}

size_t gw_tenant_count(void)
{
    return atomic_load_explicit(&G.ntenants, memory_order_acquire);
}

gw_tenant *gw_tenant_at(size_t i)
{
    return atomic_load(&G.tenants[i]->retired) ? NULL : G.tenants[i];
}

gw_tenant *gw_tenant_slot(size_t i)
{
    return G.tenants[i];
}

int gw_tenant_publish(gw_tenant *t)
{
    size_t n = atomic_load_explicit(&G.ntenants, memory_order_relaxed);
    if (n == GW_MAX_TENANTS)
        return -1;
    G.tenants[n] = t;
    atomic_store_explicit(&G.ntenants, n + 1, memory_order_release);
    return 0;
}

void gw_tenant_certs(const gw_tenant *t, gw_tenant_cert out[GW_TENANT_CERTS])
{
    out[0] = (gw_tenant_cert){"sign", "sign", t->id.sign_cert};
    out[1] = (gw_tenant_cert){"enc", "enc", t->id.enc_cert};
    out[2] = (gw_tenant_cert){"business_ca", "business CA", t->business_ca};
}

void gw_own_certs(const kh_dir *dir, gw_tenant_cert out[GW_OWN_CERTS])
{
    out[0] = (gw_tenant_cert){"tls_business", "gateway TLS (business)",
                              kh_tls_ctx_cert(atomic_load(&G.biz_ctx))};
    out[1] = (gw_tenant_cert){"tls_peer", "gateway TLS (peer)", kh_tls_ctx_cert(G.peer_ctx)};
    out[2] = (gw_tenant_cert){"tls_admin", "gateway TLS (admin)", kh_tls_ctx_cert(G.admin_ctx)};
    out[3] = (gw_tenant_cert){"tls_client", "gateway TLS (client)", kh_tls_ctx_cert(G.client_ctx)};
    out[4] = (gw_tenant_cert){"router_sign", "router signing", dir ? dir->router_sign : NULL};
    out[5] = (gw_tenant_cert){"router_enc", "router encryption", dir ? dir->router_enc : NULL};
    out[6] = (gw_tenant_cert){"national_ca", "national CA", G.national_ca};
    out[7] = (gw_tenant_cert){"operator_ca", "operator CA", G.operator_ca};
    out[8] = (gw_tenant_cert){"tsa_ca", "TSA CA", G.tsa_ca};
}

PGconn *gw_tenant_conn(PGconn **c, const char **at, const gw_tenant *t)
{
    /* the same database as the previous tenant's: its connection, or NULL
     * if it could not be reached a moment ago (not waited for again) */
    if (*at != NULL && strcmp(*at, t->db) == 0 && (*c == NULL || PQstatus(*c) == CONNECTION_OK))
        return *c;
    kh_db_forget();
    PQfinish(*c);
    *c = kh_db_connect(t->db);
    *at = t->db;
    return *c;
}
