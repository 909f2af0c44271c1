/* gw_admin_maint.c: maintenance mode through the admin API (gw_maint.c
 * says what it refuses and what it lets finish).
 *
 *   GET  /admin/v1/maintenance                 every row (platform admins)
 *   POST /admin/v1/maintenance {"on", "reason"}  the gateway's (every node of
 *                                              its name; platform admins)
 *   GET  /admin/v1/tenants/{org}/maintenance   the tenant's and the gateway's
 *   POST /admin/v1/tenants/{org}/maintenance {"on", "reason"}  the tenant's
 *
 * A change is a row of kh.maintenance set or deleted and its
 * kh.operator_audit row, in one transaction; this node applies it at once,
 * the others at their next health check (a second or two). */
#include "gw_adm.h"
#include "gw_maint.h"

#include "khjson.h"

#include <stdio.h>
#include <string.h>

#define MAINT_COLUMNS                                                                              \
    "scope, reason, set_by, to_char(set_at AT TIME ZONE 'UTC', "                                   \
    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS set_at"

/* Answers {"maintenance": [rows]}: every row, or those of two scopes. */
static void list(PGconn *c, adm_call *call, const char *scope1, const char *scope2)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none))
        return;
    const char *p[2] = {scope1, scope2};
    adm_platform_list(c, call,
                      "SELECT coalesce(json_agg(x ORDER BY x.scope), '[]')::text FROM "
                      "(SELECT " MAINT_COLUMNS " FROM kh.maintenance WHERE $1::text IS "
                      "NULL OR scope IN ($1, $2)) x",
                      2, p, "maintenance");
}

void adm_maint_list_work(PGconn *c, adm_call *call)
{
    list(c, call, NULL, NULL);
}

void adm_maint_tenant_list_work(PGconn *c, adm_call *call)
{
    char t[16], g[80];
    snprintf(t, sizeof t, "tenant:%s", call->org);
    snprintf(g, sizeof g, "gateway:%s", G.set.name);
    list(c, call, t, g);
}

/* {"on": true, "reason"} sets the mode (a new reason replaces the old),
 * {"on": false} ends it. */
static void set(PGconn *c, adm_call *call, const char *scope, const char *org)
{
    static const char *const known[] = {"on", "reason", NULL};
    const char *reason;
    const khj_val *on = khj_get(call->body, "on");
    if (!adm_body_fields(call, known) || !adm_body_str(call, "reason", false, &reason))
        return;
    if (khj_type_of(on) != KHJ_BOOL) {
        adm_set_err(call, KH_E_ADM_FIELD, "on: true or false");
        return;
    }
    bool want = khj_bool(on);
    long chars = reason ? adm_text_chars(reason) : 0;
    if (want && (chars < 1 || chars > 200)) {
        adm_set_err(call, KH_E_ADM_FIELD,
                    "reason: 1 to 200 characters, no control characters (required with on)");
        return;
    }
    if (!want && reason != NULL) {
        adm_set_err(call, KH_E_ADM_FIELD, "reason: only with on");
        return;
    }
    if (!adm_platform_open(c, call))
        return;
    const char *p[3] = {scope, reason, call->op};
    PGresult *r = kh_db_exec(c,
                             want ? "INSERT INTO kh.maintenance (scope, reason, set_by) VALUES "
                                    "($1, $2, $3) ON CONFLICT (scope) DO UPDATE SET reason = "
                                    "EXCLUDED.reason, set_by = EXCLUDED.set_by, set_at = now()"
                                  : "DELETE FROM kh.maintenance WHERE scope = $1",
                             want ? 3 : 1, p);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    bool changed = strcmp(PQcmdTuples(r), "0") != 0;
    PQclear(r);
    if (!want && !changed) {
        adm_set_err(call, KH_E_ADM_CONFLICT, "%s is not in maintenance", scope);
        kh_db_rollback(c);
        return;
    }
    char detail[32];
    snprintf(detail, sizeof detail, "{\"on\": %s}", want ? "true" : "false");
    if (adm_operator_audit(c, call->op, call->route->action, scope, detail, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    gw_maint_set_local(org, want); /* this node at once; the others within seconds */
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "scope", scope);
    khjw_kbool(&w, "maintenance", want);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

void adm_maint_set_work(PGconn *c, adm_call *call)
{
    char g[80];
    snprintf(g, sizeof g, "gateway:%s", G.set.name);
    set(c, call, g, NULL);
}

void adm_maint_tenant_set_work(PGconn *c, adm_call *call)
{
    char t[16];
    snprintf(t, sizeof t, "tenant:%s", call->org);
    set(c, call, t, call->org);
}
