/* gw_maint.c: maintenance mode. A tenant, or the whole gateway (every node
 * of its name), refuses new work with KH-5008 while it is on: business
 * requests that start something (a registration, a link code, a query, a
 * bulk upload) and queries and disclosure requests from the router. What is
 * already in flight finishes, and reads go on: query status and lists, the parts and
 * commit of an upload begun before, deferred answers, held queries and
 * their decisions, the outbox, the admin API. The gateway's own
 * maintenance also makes GET /ready answer 503, so that load balancers and
 * the router send nothing new.
 *
 * The state is the rows of kh.maintenance (sql/platform/008), set by the
 * admin API; every node reads them with its health check, once a second,
 * into atomics that the event loop and the workers read. */
#include "gw_maint.h"

#include "khlog.h"
#include "khpool.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

kh_err gw_operator_store_begin(PGconn *c)
{
    kh_err e = kh_db_begin(c);
    if (e != KH_OK)
        return e;
    PGresult *r = kh_db_exec(c, "SET LOCAL ROLE kh_operator_store", 0, NULL);
    if (r == NULL) {
        kh_db_rollback(c);
        return KH_E_DB;
    }
    PQclear(r);
    return KH_OK;
}

void gw_maint_read(PGconn *c)
{
    if (c == NULL || gw_operator_store_begin(c) != KH_OK)
        return;
    PGresult *r = kh_db_exec(c, "SELECT scope FROM kh.maintenance", 0, NULL);
    kh_db_rollback(c);
    if (r == NULL)
        return;
    char mine[80];
    snprintf(mine, sizeof mine, "gateway:%s", G.set.name);
    bool whole = false;
    for (int i = 0; i < PQntuples(r); i++)
        whole = whole || strcmp(PQgetvalue(r, i, 0), mine) == 0;
    if (atomic_exchange(&G.maintenance, whole) != whole)
        kh_info("maint", "gateway maintenance %s", whole ? "on: new work is refused" : "off");
    for (size_t k = 0, nt = gw_tenant_count(); k < nt; k++) {
        gw_tenant *t = gw_tenant_at(k);
        if (t == NULL)
            continue; /* retired */
        bool on = false;
        for (int i = 0; i < PQntuples(r) && !on; i++) {
            const char *s = PQgetvalue(r, i, 0);
            on = strncmp(s, "tenant:", 7) == 0 && strcmp(s + 7, t->id.code) == 0;
        }
        if (atomic_exchange(&t->maintenance, on) != on)
            kh_info("maint", "tenant %s maintenance %s", t->id.code,
                    on ? "on: new work is refused" : "off");
    }
    PQclear(r);
}

void gw_maint_set_local(const char *org, bool on)
{
    if (org == NULL) {
        atomic_store(&G.maintenance, on);
        return;
    }
    gw_tenant *t = gw_tenant_find(org);
    if (t != NULL)
        atomic_store(&t->maintenance, on);
}

kh_err gw_maint_check(const gw_tenant *t, char *msg, size_t msglen)
{
    if (atomic_load(&G.maintenance)) {
        snprintf(msg, msglen, "gateway %s is in maintenance: no new work until it ends",
                 G.set.name);
        return KH_E_MAINTENANCE;
    }
    if (t != NULL && atomic_load(&t->maintenance)) {
        snprintf(msg, msglen, "tenant %s is in maintenance: no new work until it ends", t->id.code);
        return KH_E_MAINTENANCE;
    }
    return KH_OK;
}
