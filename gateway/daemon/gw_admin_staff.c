/* gw_admin_staff.c: a tenant's registry through the admin API: staff, job
 * roles (職責) and the procedures each covers, role assignments with their
 * validity periods, business systems and their permissions. These tables
 * (sql/tenant/001_tenant.sql) decide every business request: a query needs
 * an active staff member with a current assignment of a role covering the
 * procedure (gw_query.c), and every call a registered system permitted for
 * the operation and its scope (gw_ident.c).
 *
 * Each change is one tenant transaction: the rows, then the audit_log row
 * (action, target, what changed; never a staff member's name), then the
 * commit; a failure leaves nothing. Setting is idempotent (create or
 * update); nothing is deleted: staff are made inactive, assignments ended
 * (valid_to), a role's procedures or a system's permissions replaced by a
 * smaller set, so the history the records refer to stays readable. */
#include "gw_adm.h"

#include "khadmin.h"
#include "khcrypto.h"
#include "khenv.h"
#include "khid.h"
#include "khjson.h"
#include "refdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REG_NAME_MAX 100 /* display names of staff, roles and systems, characters */
#define REG_LIST_MAX 64  /* procedures of a role, permissions of a system */

/* ------------------------------------------------------------- fields */

const char *adm_reg_id_why(const char *v)
{
    /* the first character a letter or digit: a leading - would read as a
     * formula in the CSV export (and be neutralised out of round trip) */
    bool lead = (*v >= '0' && *v <= '9') || (*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z');
    return lead && kh_id_token(v, 32)
               ? NULL
               : "1 to 32 of [A-Za-z0-9_-], beginning with a letter or digit";
}

const char *adm_reg_name_why(const char *v)
{
    long n = adm_text_chars(v);
    if (n < 1 || n > REG_NAME_MAX)
        return "1 to 100 characters, no control characters";
    /* names are exported as CSV for spreadsheets (gw_admin_import.c) */
    if (refdb_formula_lead(v))
        return "cannot begin with =, +, - or @ (a spreadsheet would read a formula)";
    return NULL;
}

bool adm_reg_id_ok(adm_call *call, const char *key, const char *v)
{
    const char *why = adm_reg_id_why(v);
    if (why != NULL)
        adm_set_err(call, KH_E_ADM_FIELD, "%s: %s", key, why);
    return why == NULL;
}

bool adm_reg_name_ok(adm_call *call, const char *key, const char *v)
{
    const char *why = adm_reg_name_why(v);
    if (why != NULL)
        adm_set_err(call, KH_E_ADM_FIELD, "%s: %s", key, why);
    return why == NULL;
}

/* An optional boolean field: absent leaves *out NULL, else "true"/"false". */
static bool body_bool(adm_call *call, const char *key, const char **out)
{
    const khj_val *v = khj_get(call->body, key);
    *out = NULL;
    if (v == NULL || khj_type_of(v) == KHJ_NULL)
        return true;
    if (khj_type_of(v) != KHJ_BOOL) {
        adm_set_err(call, KH_E_ADM_FIELD, "%s: must be true or false", key);
        return false;
    }
    *out = khj_bool(v) ? "true" : "false";
    return true;
}

/* --------------------------------------------------------- the answer */

/* Ends a change: its audit row (target, detail: a JSON object) in the same
 * transaction, the commit, and the answer {"tenant", key: json}; rolls back
 * on failure. */
static void change_commit(PGconn *c, adm_call *call, const char *target, const char *detail,
                          const char *key, const char *json, bool created)
{
    if (adm_tenant_audit(c, call, target, detail, KH_OK) != KH_OK || kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_kbool(&w, "created", created);
    khjw_key(&w, key);
    khjw_raw(&w, json, strlen(json));
    khjw_obj_end(&w);
    adm_set_out(call, &w, created ? 201 : 200);
}

/* Runs a statement whose one row is (created bool, audit detail, the row
 * as JSON) and ends the change with it. */
static void change_by(PGconn *c, adm_call *call, const char *target, const char *key,
                      const char *sql, int n, const char *const *p)
{
    PGresult *r = kh_db_exec(c, sql, n, p);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    change_commit(c, call, target, PQgetvalue(r, 0, 1), key, PQgetvalue(r, 0, 2),
                  strcmp(PQgetvalue(r, 0, 0), "t") == 0);
    /* the row may hold a staff member's name: PostgreSQL's copy is wiped too */
    khc_wipe(PQgetvalue(r, 0, 2), strlen(PQgetvalue(r, 0, 2)));
    PQclear(r);
}

/* -------------------------------------------------------------- staff */

#define STAFF_COLUMNS                                                                              \
    "s.staff_id, s.display_name, s.active, coalesce((SELECT json_agg(json_build_object("           \
    "'role_code', a.role_code, 'valid_from', a.valid_from, 'valid_to', a.valid_to) ORDER BY "      \
    "a.role_code, a.valid_from) FROM staff_role a WHERE a.staff_id = s.staff_id AND "              \
    "(a.valid_to IS NULL OR a.valid_to > current_date)), '[]') AS roles"

void adm_staff_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"active", "role_code", "staff_id", "limit", NULL};
    static const char *const bools[] = {"true", "false", NULL};
    const char *active, *role = adm_query_get(call, "role_code");
    const char *id = adm_query_get(call, "staff_id");
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_enum(call, "active", bools, &active) ||
        !adm_query_limit(call, limit) || (role && !adm_reg_id_ok(call, "role_code", role)) ||
        (id && !adm_reg_id_ok(call, "staff_id", id)))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql, "SELECT " STAFF_COLUMNS " FROM staff s WHERE true");
    adm_list_where(&l, "s.active = ", "::bool", active);
    adm_list_where(&l, "s.staff_id = ", "", id);
    adm_list_where(&l,
                   "EXISTS (SELECT 1 FROM staff_role a WHERE a.staff_id = s.staff_id AND "
                   "a.role_code = ",
                   " AND a.valid_from <= current_date AND (a.valid_to IS NULL OR a.valid_to > "
                   "current_date))",
                   role);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "staff_id", limit, "staff");
    kh_db_rollback(c);
}

/* POST staff {"staff_id", "display_name", "active"?}: creates the staff
 * member or changes their name or state (active defaults to true for a new
 * one and to unchanged for an existing one). */
void adm_staff_set_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"staff_id", "display_name", "active", NULL};
    const char *id, *name, *active;
    if (!adm_body_fields(call, known) || !adm_body_str(call, "staff_id", true, &id) ||
        !adm_body_str(call, "display_name", true, &name) || !body_bool(call, "active", &active) ||
        !adm_reg_id_ok(call, "staff_id", id) || !adm_reg_name_ok(call, "display_name", name))
        return;
    if (!adm_tenant_begin(&c, call))
        return;
    char target[48];
    snprintf(target, sizeof target, "staff/%s", id);
    const char *p[3] = {id, name, active};
    change_by(c, call, target, "staff",
              "WITH b AS (SELECT display_name, active FROM staff WHERE staff_id = $1), "
              "s AS (INSERT INTO staff AS o (staff_id, display_name, active) "
              "VALUES ($1, $2, coalesce($3::bool, true)) ON CONFLICT (staff_id) DO UPDATE "
              "SET display_name = EXCLUDED.display_name, active = coalesce($3::bool, o.active) "
              "RETURNING o.staff_id, o.display_name, o.active, (xmax = 0) AS created) "
              "SELECT s.created, json_build_object('staff_id', s.staff_id, 'created', "
              "s.created, 'active_before', b.active, 'active', s.active, 'name_changed', "
              "b.display_name IS DISTINCT FROM s.display_name)::text, json_build_object("
              "'staff_id', s.staff_id, 'display_name', s.display_name, 'active', s.active)::text "
              "FROM s LEFT JOIN b ON true",
              3, p);
}

/* -------------------------------------------------------------- roles */

#define ROLE_COLUMNS                                                                               \
    "r.role_code, r.name, coalesce((SELECT json_agg(p.procedure ORDER BY p.procedure) FROM "       \
    "role_procedure p WHERE p.role_code = r.role_code), '[]') AS procedures, (SELECT count(*) "    \
    "FROM staff_role a WHERE a.role_code = r.role_code AND a.valid_from <= current_date AND "      \
    "(a.valid_to IS NULL OR a.valid_to > current_date)) AS staff_current"

void adm_roles_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"limit", NULL};
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_limit(call, limit))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql, "SELECT " ROLE_COLUMNS " FROM job_role r WHERE true");
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "role_code", limit, "roles");
    kh_db_rollback(c);
}

/* POST roles {"role_code", "name", "procedures": [CODE...]}: creates the
 * role or renames it, and makes its procedures exactly those listed (each
 * in a row of the legal-basis table; an empty list covers none). */
void adm_roles_set_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"role_code", "name", "procedures", NULL};
    const char *code, *name, *procs[REG_LIST_MAX];
    if (!adm_body_fields(call, known) || !adm_body_str(call, "role_code", true, &code) ||
        !adm_body_str(call, "name", true, &name) || !adm_reg_id_ok(call, "role_code", code) ||
        !adm_reg_name_ok(call, "name", name))
        return;
    const khj_val *pl = khj_get(call->body, "procedures");
    size_t n = khj_len(pl);
    if (khj_type_of(pl) != KHJ_ARR || n > REG_LIST_MAX) {
        adm_set_err(call, KH_E_ADM_FIELD, "procedures: an array of 0 to %d procedure codes",
                    REG_LIST_MAX);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        procs[i] = khj_str(khj_at(pl, i));
        if (procs[i] == NULL || !kh_id_code(procs[i], KH_CODE_MAX)) {
            adm_set_err(call, KH_E_ADM_FIELD, "procedures[%zu]: a procedure code such as JT001", i);
            return;
        }
        if (!adm_procedure_known(procs[i])) {
            adm_set_err(call, KH_E_ADM_FIELD,
                        "procedures[%zu]: %s is in no row of the legal-basis table", i, procs[i]);
            return;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(procs[k], procs[i]) == 0) {
                adm_set_err(call, KH_E_ADM_FIELD, "procedures: %s is listed twice", procs[i]);
                return;
            }
    }
    khj_writer lw;
    khjw_init(&lw, 0);
    khjw_arr(&lw);
    for (size_t i = 0; i < n; i++)
        khjw_str(&lw, procs[i]);
    khjw_arr_end(&lw);
    char *arr = khjw_finish(&lw, NULL);
    if (arr == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    if (!adm_tenant_begin(&c, call)) {
        free(arr);
        return;
    }
    char target[48];
    snprintf(target, sizeof target, "role/%s", code);
    const char *p[3] = {code, name, arr};
    change_by(c, call, target, "role",
              "WITH want AS (SELECT x FROM json_array_elements_text($3::json) x), "
              "before AS (SELECT coalesce(array_agg(procedure ORDER BY procedure), '{}') "
              "AS procs FROM role_procedure WHERE role_code = $1), "
              "r AS (INSERT INTO job_role AS o (role_code, name) VALUES ($1, $2) "
              "ON CONFLICT (role_code) DO UPDATE SET name = EXCLUDED.name "
              "RETURNING o.role_code, o.name, (xmax = 0) AS created), "
              "gone AS (DELETE FROM role_procedure WHERE role_code = $1 AND "
              "procedure NOT IN (SELECT x FROM want)), "
              "added AS (INSERT INTO role_procedure (role_code, procedure) "
              "SELECT (SELECT role_code FROM r), x FROM want ON CONFLICT DO NOTHING), "
              "now_ AS (SELECT coalesce(to_json(array_agg(x ORDER BY x)), '[]') AS procs "
              "FROM want) "
              "SELECT r.created, json_build_object('role_code', r.role_code, 'created', "
              "r.created, 'procedures_before', to_json(b.procs), 'procedures', n.procs)::text, "
              "json_build_object('role_code', r.role_code, 'name', r.name, 'procedures', "
              "n.procs)::text FROM r, before b, now_ n",
              3, p);
    free(arr);
}

/* -------------------------------------------------------- assignments */

#define ASSIGN_COLUMNS                                                                             \
    "a.staff_id, a.role_code, a.valid_from, a.valid_to, (a.valid_from <= current_date AND "        \
    "(a.valid_to IS NULL OR a.valid_to > current_date)) AS current"

void adm_assign_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"staff_id", "role_code", "current", "limit", NULL};
    static const char *const bools[] = {"true", "false", NULL};
    const char *id = adm_query_get(call, "staff_id"), *role = adm_query_get(call, "role_code");
    const char *current;
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_enum(call, "current", bools, &current) ||
        !adm_query_limit(call, limit) || (role && !adm_reg_id_ok(call, "role_code", role)) ||
        (id && !adm_reg_id_ok(call, "staff_id", id)))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql,
             "SELECT * FROM (SELECT " ASSIGN_COLUMNS " FROM staff_role a) a WHERE true");
    adm_list_where(&l, "a.staff_id = ", "", id);
    adm_list_where(&l, "a.role_code = ", "", role);
    adm_list_where(&l, "a.current = ", "::bool", current);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "staff_id, role_code, valid_from", limit, "assignments");
    kh_db_rollback(c);
}

/* POST assignments {"staff_id", "role_code", "valid_from"?, "valid_to"?}:
 * assigns the role from valid_from (default today) until valid_to (the
 * first day it no longer holds; none: open-ended). The same staff, role and
 * valid_from again changes valid_to: that is how an assignment is ended
 * (valid_to = valid_from withdraws one that has not started). */
void adm_assign_set_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"staff_id", "role_code", "valid_from", "valid_to", NULL};
    const char *id, *role, *from, *to;
    if (!adm_body_fields(call, known) || !adm_body_str(call, "staff_id", true, &id) ||
        !adm_body_str(call, "role_code", true, &role) ||
        !adm_body_str(call, "valid_from", false, &from) ||
        !adm_body_str(call, "valid_to", false, &to) || !adm_reg_id_ok(call, "staff_id", id) ||
        !adm_reg_id_ok(call, "role_code", role))
        return;
    if (from && !adm_date_ok(from))
        adm_set_err(call, KH_E_ADM_FIELD, "valid_from: a date YYYY-MM-DD");
    else if (to && !adm_date_ok(to))
        adm_set_err(call, KH_E_ADM_FIELD, "valid_to: a date YYYY-MM-DD");
    else if (from && to && strcmp(to, from) < 0)
        adm_set_err(call, KH_E_ADM_FIELD, "valid_to: before valid_from");
    if (call->err != KH_OK)
        return;
    if (!adm_tenant_begin(&c, call))
        return;
    const char *p[4] = {id, role, from, to};
    PGresult *r =
        kh_db_exec(c,
                   "SELECT EXISTS (SELECT 1 FROM staff WHERE staff_id = $1), "
                   "EXISTS (SELECT 1 FROM job_role WHERE role_code = $2), "
                   "$4::date IS NULL OR $4::date >= coalesce($3::date, current_date), "
                   /* valid_to without valid_from, meant to end a current assignment
                    * that began earlier, would add a second one from today */
                   "(SELECT min(valid_from)::text FROM staff_role WHERE $3::date IS NULL AND "
                   "$4::date IS NOT NULL AND staff_id = $1 AND role_code = $2 AND valid_from < "
                   "current_date AND (valid_to IS NULL OR valid_to > current_date))",
                   4, p);
    if (adm_db_failed(call, r))
        goto fail;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
        adm_set_err(call, KH_E_ADM_NOT_FOUND, "no staff member %s in tenant %s", id, call->org);
    else if (strcmp(PQgetvalue(r, 0, 1), "t") != 0)
        adm_set_err(call, KH_E_ADM_NOT_FOUND, "no job role %s in tenant %s", role, call->org);
    else if (strcmp(PQgetvalue(r, 0, 2), "t") != 0)
        adm_set_err(call, KH_E_ADM_FIELD, "valid_to: before valid_from (today)");
    else if (!PQgetisnull(r, 0, 3))
        adm_set_err(call, KH_E_ADM_CONFLICT,
                    "%s holds %s from %s: give that valid_from to end it (without it, this "
                    "would be a second assignment from today)",
                    id, role, PQgetvalue(r, 0, 3));
    PQclear(r);
    if (call->err != KH_OK)
        goto fail;
    char target[80];
    snprintf(target, sizeof target, "assignment/%s/%s", id, role);
    change_by(c, call, target, "assignment",
              "WITH b AS (SELECT valid_to FROM staff_role WHERE staff_id = $1 AND role_code = $2 "
              "AND valid_from = coalesce($3::date, current_date)), "
              "a AS (INSERT INTO staff_role AS o (staff_id, role_code, valid_from, "
              "valid_to) VALUES ($1, $2, coalesce($3::date, current_date), $4::date) "
              "ON CONFLICT (staff_id, role_code, valid_from) DO UPDATE SET valid_to = "
              "EXCLUDED.valid_to RETURNING o.*, (xmax = 0) AS created) "
              "SELECT a.created, json_build_object('staff_id', a.staff_id, 'role_code', "
              "a.role_code, 'valid_from', a.valid_from, 'valid_to_before', b.valid_to, "
              "'valid_to', a.valid_to, 'created', a.created)::text, json_build_object('staff_id', "
              "a.staff_id, 'role_code', "
              "a.role_code, 'valid_from', a.valid_from, 'valid_to', a.valid_to)::text FROM a "
              "LEFT JOIN b ON true",
              4, p);
    return;
fail:
    kh_db_rollback(c);
}

/* ------------------------------------------------------------ systems */

#define SYSTEM_COLUMNS                                                                             \
    "b.system_id, b.name, coalesce((SELECT json_agg(json_build_object('operation', p.operation, "  \
    "'scope', p.scope) ORDER BY p.operation, p.scope) FROM system_permission p WHERE "             \
    "p.system_id = b.system_id), '[]') AS permissions"

void adm_systems_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"limit", NULL};
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_limit(call, limit))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql, "SELECT " SYSTEM_COLUMNS " FROM business_system b WHERE true");
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "system_id", limit, "systems");
    kh_db_rollback(c);
}

/* One permission {"operation", "scope"?} of a system: query (a procedure
 * of the legal-basis table, or *), register (a catalogue item, or *),
 * linkcode (*). Item codes are checked against the catalogue later, in
 * the transaction. */
static bool permission_ok(adm_call *call, size_t i, const khj_val *v, const char **op,
                          const char **scope)
{
    const char *o = khj_get_str(v, "operation"), *s = khj_get_str(v, "scope");
    bool shape = khj_type_of(v) == KHJ_OBJ && o != NULL &&
                 khj_len(v) == (khj_get(v, "scope") != NULL ? 2u : 1u) &&
                 (khj_get(v, "scope") == NULL || s != NULL);
    *op = o;
    *scope = s ? s : "*";
    if (!shape)
        adm_set_err(call, KH_E_ADM_FIELD,
                    "permissions[%zu]: an object {\"operation\", \"scope\"} (scope a string)", i);
    else if (strcmp(o, "query") != 0 && strcmp(o, "register") != 0 && strcmp(o, "linkcode") != 0)
        adm_set_err(call, KH_E_ADM_FIELD, "permissions[%zu].operation: query, register or linkcode",
                    i);
    else if (strcmp(*scope, "*") == 0)
        return true;
    else if (strcmp(o, "linkcode") == 0)
        adm_set_err(call, KH_E_ADM_FIELD, "permissions[%zu].scope: linkcode takes only *", i);
    else if (!kh_id_code(*scope, KH_CODE_MAX))
        adm_set_err(call, KH_E_ADM_FIELD, "permissions[%zu].scope: * or a code such as %s", i,
                    o[0] == 'q' ? "JT001" : "TK001");
    else if (o[0] == 'q' && !adm_procedure_known(*scope))
        adm_set_err(call, KH_E_ADM_FIELD,
                    "permissions[%zu].scope: %s is in no row of the legal-basis table", i, *scope);
    else
        return true;
    return false;
}

/* POST systems {"system_id", "name", "permissions": [{"operation",
 * "scope"}...]}: registers the business system (system_id: the CN of its
 * client certificate, issued by the tenant's business CA) or renames it,
 * and makes its permissions exactly those listed. */
void adm_systems_set_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"system_id", "name", "permissions", NULL};
    const char *id, *name, *ops[REG_LIST_MAX], *scopes[REG_LIST_MAX];
    if (!adm_body_fields(call, known) || !adm_body_str(call, "system_id", true, &id) ||
        !adm_body_str(call, "name", true, &name) || !adm_reg_id_ok(call, "system_id", id) ||
        !adm_reg_name_ok(call, "name", name))
        return;
    const khj_val *pl = khj_get(call->body, "permissions");
    size_t n = khj_len(pl);
    if (khj_type_of(pl) != KHJ_ARR || n > REG_LIST_MAX) {
        adm_set_err(call, KH_E_ADM_FIELD, "permissions: an array of 0 to %d permissions",
                    REG_LIST_MAX);
        return;
    }
    khj_writer pw;
    khjw_init(&pw, 0);
    khjw_arr(&pw);
    for (size_t i = 0; i < n; i++) {
        if (!permission_ok(call, i, khj_at(pl, i), &ops[i], &scopes[i]))
            goto bad;
        for (size_t k = 0; k < i; k++)
            if (strcmp(ops[k], ops[i]) == 0 && strcmp(scopes[k], scopes[i]) == 0) {
                adm_set_err(call, KH_E_ADM_FIELD, "permissions: %s %s is listed twice", ops[i],
                            scopes[i]);
                goto bad;
            }
        khjw_obj(&pw);
        khjw_kstr(&pw, "operation", ops[i]);
        khjw_kstr(&pw, "scope", scopes[i]);
        khjw_obj_end(&pw);
    }
    khjw_arr_end(&pw);
    char *perms = khjw_finish(&pw, NULL);
    if (perms == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    if (!adm_tenant_begin(&c, call))
        goto out;
    const char *p[3] = {id, name, perms};
    PGresult *r = kh_db_exec(c,
                             "SELECT x.scope FROM json_to_recordset($1::json) AS "
                             "x(operation text, scope text) WHERE x.operation = 'register' AND "
                             "x.scope <> '*' AND NOT EXISTS (SELECT 1 FROM kh.item i WHERE "
                             "i.item_code = x.scope) LIMIT 1",
                             1, &p[2]);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        goto out;
    }
    if (PQntuples(r) > 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "permissions: register %s: not in the item catalogue",
                    PQgetvalue(r, 0, 0));
        PQclear(r);
        kh_db_rollback(c);
        goto out;
    }
    PQclear(r);
    char target[48];
    snprintf(target, sizeof target, "system/%s", id);
    change_by(c, call, target, "system",
              "WITH before AS (SELECT coalesce(json_agg(json_build_object('operation', "
              "operation, 'scope', scope) ORDER BY operation, scope), '[]') AS perms FROM "
              "system_permission WHERE system_id = $1), "
              "s AS (INSERT INTO business_system AS o (system_id, name) VALUES ($1, $2) "
              "ON CONFLICT (system_id) DO UPDATE SET name = EXCLUDED.name "
              "RETURNING o.system_id, o.name, (xmax = 0) AS created), "
              "want AS (SELECT x.operation, x.scope FROM json_to_recordset($3::json) AS "
              "x(operation text, scope text)), "
              "gone AS (DELETE FROM system_permission d WHERE d.system_id = $1 AND NOT EXISTS "
              "(SELECT 1 FROM want w WHERE w.operation = d.operation AND w.scope = d.scope)), "
              "added AS (INSERT INTO system_permission (system_id, operation, scope) "
              "SELECT (SELECT system_id FROM s), w.operation, w.scope FROM want w "
              "ON CONFLICT DO NOTHING), "
              "now_ AS (SELECT coalesce(json_agg(json_build_object('operation', operation, "
              "'scope', scope) ORDER BY operation, scope), '[]') AS perms FROM want) "
              "SELECT s.created, json_build_object('system_id', s.system_id, 'created', "
              "s.created, 'permissions_before', b.perms, 'permissions', n.perms)::text, "
              "json_build_object('system_id', s.system_id, 'name', s.name, 'permissions', "
              "n.perms)::text FROM s, before b, now_ n",
              3, p);
out:
    free(perms);
    return;
bad:
    khjw_discard(&pw);
}
