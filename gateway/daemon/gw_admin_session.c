/* gw_admin_session.c: logins (both factors: the client certificate's CN and
 * the password, scrypt on a worker), sessions (bearer tokens stored as their
 * SHA-256, idle and absolute expiry, lockout after ADM_FAIL_LIMIT failures)
 * and operators added and listed by platform admins (their accounts later:
 * gw_admin_account.c). */
#include "gw_adm.h"

#include "khadmin.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khid.h"
#include "khjson.h"
#include "khlog.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* -------------------------------------------------------------- login */

static void write_tenants(khj_writer *w, adm_call *call)
{
    khjw_key(w, "tenants");
    khjw_arr(w);
    if (call->role == KHADM_PLATFORM_ADMIN)
        for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++) {
            const gw_tenant *t = gw_tenant_at(i);
            if (t != NULL)
                khjw_str(w, t->id.code);
        }
    else
        for (size_t i = 0; i < call->ntenants; i++)
            khjw_str(w, call->tenants[i]);
    khjw_arr_end(w);
}

/* A refused login, recorded in kh.operator_audit with why (no secrets). */
static void login_refused(PGconn *c, adm_call *call, const char *name, const char *why, kh_err e,
                          const char *msg)
{
    char detail[160];
    adm_set_err(call, e, "%s", msg);
    snprintf(detail, sizeof detail, "{\"reason\": \"%s\"}", why);
    if (adm_platform_begin(c) != KH_OK)
        return;
    if (adm_operator_audit(c, call->cn, "login", name, detail, e) != KH_OK ||
        kh_db_commit(c) != KH_OK)
        kh_db_rollback(c);
}

/* One failed password check of an active operator not locked yet: the
 * ADM_FAIL_LIMIT-th in a row locks it for admin_lockout seconds. In the
 * caller's kh_operator_store transaction. */
kh_err adm_count_failure(PGconn *c, const char *name)
{
    char limit[8], secs[16];
    snprintf(secs, sizeof secs, "%d", ADM.lockout_secs);
    snprintf(limit, sizeof limit, "%d", ADM_FAIL_LIMIT);
    const char *p[3] = {name, secs, limit};
    PGresult *r = kh_db_exec(c,
                             "UPDATE kh.operator SET "
                             "failed_logins = CASE WHEN failed_logins + 1 >= $3::int THEN 0 "
                             "  ELSE failed_logins + 1 END, "
                             "locked_until = CASE WHEN failed_logins + 1 >= $3::int "
                             "  THEN now() + make_interval(secs => $2::int) "
                             "  ELSE locked_until END "
                             "WHERE name = $1 AND active "
                             "AND (locked_until IS NULL OR locked_until <= now())",
                             3, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

void adm_login_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"operator", "password", "cookie", NULL};
    const char *name, *pw;
    char secs[16];
    if (call->bad_json) {
        adm_set_err(call, KH_E_ADM_JSON, "%s", call->json_err);
        return;
    }
    if (!adm_body_fields(call, known) || !adm_body_str(call, "operator", true, &name) ||
        !adm_body_str(call, "password", true, &pw))
        return;
    /* the console's login: the session in a cookie the page cannot read */
    const khj_val *cookie = khj_get(call->body, "cookie");
    if (cookie != NULL && khj_type_of(cookie) != KHJ_BOOL) {
        adm_set_err(call, KH_E_ADM_FIELD, "cookie: true or false");
        return;
    }
    bool in_cookie = cookie != NULL && khj_bool(cookie);
    size_t pwlen = khj_strlen(khj_get(call->body, "password"));
    if (!khadm_name_ok(name)) {
        adm_set_err(call, KH_E_ADM_FIELD, "operator: [a-z0-9][a-z0-9._-]{0,31}");
        return;
    }
    /* factor one: the certificate is the operator's own */
    if (strcmp(name, call->cn) != 0) {
        kh_warn("admin", "%s: login with another operator's certificate",
                kh_err_code(KH_E_ADM_CREDENTIALS));
        login_refused(c, call, name, "certificate of another operator", KH_E_ADM_CREDENTIALS,
                      "login refused");
        return;
    }
    if (!adm_platform_open(c, call))
        return;
    PGresult *r = kh_db_exec(c,
                             "SELECT password_hash, active, coalesce(locked_until > now(), false), "
                             "to_char(locked_until AT TIME ZONE 'UTC', "
                             "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM kh.operator WHERE name = $1",
                             1, &name);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    bool found = PQntuples(r) == 1;
    bool active = found && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    char stored[KHC_PWHASH_LEN] = "", until[32] = "";
    if (found) {
        snprintf(stored, sizeof stored, "%s", PQgetvalue(r, 0, 0));
        khc_wipe(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
        snprintf(until, sizeof until, "%s", PQgetvalue(r, 0, 3));
    }
    bool locked = found && strcmp(PQgetvalue(r, 0, 2), "t") == 0;
    PQclear(r);
    kh_db_rollback(c); /* nothing held while scrypt runs */
    if (locked) {
        char msg[96];
        snprintf(msg, sizeof msg, "operator locked until %s after %d failed logins", until,
                 ADM_FAIL_LIMIT);
        login_refused(c, call, name, "locked", KH_E_ADM_LOCKED, msg);
        return;
    }
    /* factor two: the password (the dummy check for an unknown operator) */
    bool ok = khc_password_verify(pw, pwlen, found ? stored : NULL);
    khc_wipe(stored, sizeof stored);
    if (!ok || !active) {
        const char *why = !found ? "unknown operator" : !active ? "disabled" : "wrong password";
        if (found && active && adm_platform_begin(c) == KH_OK) {
            if (adm_count_failure(c, name) != KH_OK || kh_db_commit(c) != KH_OK)
                kh_db_rollback(c);
        }
        login_refused(c, call, name, why, KH_E_ADM_CREDENTIALS, "login refused");
        return;
    }
    /* both factors hold: a session, unless a lock or a disable came meanwhile */
    uint8_t token[32], hash[32];
    char hash_hex[65], max[16];
    if (khc_random(token, sizeof token) != 0 || khc_sha256(token, sizeof token, NULL, 0, hash)) {
        adm_set_err(call, KH_E_INTERNAL, "cannot make a token");
        return;
    }
    khc_hex(hash, sizeof hash, hash_hex);
    snprintf(max, sizeof max, "%d", ADM.max_secs);
    snprintf(secs, sizeof secs, "%d", ADM.idle_secs);
    if (!adm_platform_open(c, call))
        goto wipe;
    r = kh_db_exec(c,
                   "UPDATE kh.operator SET failed_logins = 0 WHERE name = $1 AND active "
                   "AND (locked_until IS NULL OR locked_until <= now()) RETURNING role",
                   1, &name);
    if (adm_db_failed(call, r))
        goto fail;
    if (PQntuples(r) != 1) {
        PQclear(r);
        kh_db_rollback(c);
        login_refused(c, call, name, "locked or disabled meanwhile", KH_E_ADM_CREDENTIALS,
                      "login refused");
        goto wipe;
    }
    snprintf(call->role_name, sizeof call->role_name, "%s", PQgetvalue(r, 0, 0));
    call->role = khadm_role(call->role_name);
    snprintf(call->op, sizeof call->op, "%s", name);
    PQclear(r);
    /* sessions a day past their end are of no use, not even to say "expired" */
    r = kh_db_exec(c,
                   "DELETE FROM kh.operator_session WHERE expires_at < now() - interval '1 day' "
                   "OR last_seen < now() - make_interval(secs => $1::int) - interval '1 day'",
                   1, (const char *const[]){secs});
    if (adm_db_failed(call, r))
        goto fail;
    PQclear(r);
    const char *ps[3] = {hash_hex, name, max};
    r = kh_db_exec(c,
                   "INSERT INTO kh.operator_session (token_hash, operator, expires_at) "
                   "VALUES (decode($1, 'hex'), $2, now() + make_interval(secs => $3::int)) "
                   "RETURNING to_char(expires_at AT TIME ZONE 'UTC', "
                   "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                   3, ps);
    if (adm_db_failed(call, r))
        goto fail;
    snprintf(call->session_expires, sizeof call->session_expires, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = kh_db_exec(c,
                   "SELECT org_code FROM kh.operator_tenant WHERE operator = $1 ORDER BY org_code",
                   1, &name);
    if (adm_db_failed(call, r))
        goto fail;
    for (int i = 0; i < PQntuples(r) && call->ntenants < KHADM_MAX_TENANTS; i++)
        snprintf(call->tenants[call->ntenants++], sizeof call->tenants[0], "%s",
                 PQgetvalue(r, i, 0));
    PQclear(r);
    if (call->role == 0 || adm_operator_audit(c, name, "login", name, NULL, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        goto fail;
    }
    char token_hex[65];
    khc_hex(token, sizeof token, token_hex);
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    if (in_cookie) {
        char csrf[65];
        adm_set_cookie(call, token_hex);
        adm_csrf_of(token, csrf);
        khjw_kstr(&w, "csrf", csrf);
        khc_wipe(csrf, sizeof csrf);
    } else {
        khjw_kstr(&w, "token", token_hex);
    }
    khjw_kstr(&w, "operator", call->op);
    khjw_kstr(&w, "role", call->role_name);
    write_tenants(&w, call);
    khjw_kstr(&w, "expires_at", call->session_expires);
    khjw_kint(&w, "idle_timeout", ADM.idle_secs);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
    khc_wipe(token_hex, sizeof token_hex);
    goto wipe;
fail:
    kh_db_rollback(c);
wipe:
    khc_wipe(token, sizeof token);
}

/* ------------------------------------------------ session endpoints */

void adm_whoami_work(PGconn *c, adm_call *call)
{
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "operator", call->op);
    khjw_kstr(&w, "role", call->role_name);
    write_tenants(&w, call);
    khjw_key(&w, "session");
    khjw_obj(&w);
    khjw_kstr(&w, "created_at", call->session_created);
    khjw_kstr(&w, "expires_at", call->session_expires);
    khjw_kint(&w, "idle_timeout", ADM.idle_secs);
    khjw_obj_end(&w);
    khjw_kstr(&w, "gateway", G.set.name);
    if (call->by_cookie) { /* the console reloaded: its CSRF token again */
        char csrf[65];
        adm_csrf_of(call->token, csrf);
        khjw_kstr(&w, "csrf", csrf);
        khc_wipe(csrf, sizeof csrf);
    }
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

void adm_logout_work(PGconn *c, adm_call *call)
{
    uint8_t hash[32];
    char hash_hex[65];
    if (call->body != NULL && khj_len(call->body) > 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "logout takes no fields");
        return;
    }
    if (khc_sha256(call->token, sizeof call->token, NULL, 0, hash) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "cannot digest the token");
        return;
    }
    khc_hex(hash, sizeof hash, hash_hex);
    const char *p[1] = {hash_hex};
    if (!adm_platform_open(c, call))
        return;
    PGresult *r =
        kh_db_exec(c, "DELETE FROM kh.operator_session WHERE token_hash = decode($1, 'hex')", 1, p);
    bool ok = r != NULL &&
              adm_operator_audit(c, call->op, "logout", call->op, NULL, KH_OK) == KH_OK &&
              kh_db_commit(c) == KH_OK;
    PQclear(r);
    if (!ok) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kbool(&w, "logged_out", true);
    khjw_obj_end(&w);
    if (call->by_cookie)
        adm_set_cookie(call, NULL);
    adm_set_out(call, &w, 200);
}

/* ---------------------------------------------------------- operators */

void adm_operators_list_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none))
        return;
    adm_platform_list(
        c, call,
        "SELECT coalesce(json_agg(x ORDER BY x.name), '[]')::text FROM ("
        "SELECT o.name, o.role, o.active, o.created_at, o.created_by, o.failed_logins, "
        "o.locked_until, o.password_changed_at, coalesce(array_agg(t.org_code ORDER BY t.org_code) "
        "FILTER (WHERE t.org_code IS NOT NULL), '{}') AS tenants "
        "FROM kh.operator o LEFT JOIN kh.operator_tenant t ON t.operator = o.name "
        "GROUP BY o.name) x",
        0, NULL, "operators");
}

/* {name, role, password, tenants}: validated, hashed (scrypt, here on the
 * worker), inserted with its tenants and an audit row in one transaction. */
void adm_operators_add_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"name", "role", "password", "tenants", NULL};
    const char *name, *role, *pw;
    char hash[KHC_PWHASH_LEN];
    if (!adm_body_fields(call, known) || !adm_body_str(call, "name", true, &name) ||
        !adm_body_str(call, "role", true, &role) || !adm_body_str(call, "password", true, &pw))
        return;
    size_t pwlen = khj_strlen(khj_get(call->body, "password"));
    const khj_val *tl = khj_get(call->body, "tenants");
    if (!khadm_name_ok(name)) {
        adm_set_err(call, KH_E_ADM_FIELD, "name: [a-z0-9][a-z0-9._-]{0,31}");
        return;
    }
    unsigned bit = khadm_role(role);
    if (bit == 0) {
        adm_set_err(call, KH_E_ADM_FIELD,
                    "role: one of platform_admin, tenant_admin, responder, auditor, metrics");
        return;
    }
    if (pwlen < KHADM_PW_MIN || pwlen > KHC_PASSWORD_MAX) {
        adm_set_err(call, KH_E_ADM_FIELD, "password: %d to %d bytes", KHADM_PW_MIN,
                    KHC_PASSWORD_MAX);
        return;
    }
    if (tl != NULL && khj_type_of(tl) != KHJ_ARR && khj_type_of(tl) != KHJ_NULL) {
        adm_set_err(call, KH_E_ADM_FIELD, "tenants: must be an array of organisation codes");
        return;
    }
    size_t nt = khj_len(tl);
    if (bit == KHADM_PLATFORM_ADMIN && nt > 0) {
        adm_set_err(call, KH_E_ADM_FIELD,
                    "tenants: a platform_admin has every tenant; leave it out");
        return;
    }
    if (bit != KHADM_PLATFORM_ADMIN && (nt == 0 || nt > KHADM_MAX_TENANTS)) {
        adm_set_err(call, KH_E_ADM_FIELD, "tenants: 1 to %d tenants for role %s", KHADM_MAX_TENANTS,
                    role);
        return;
    }
    for (size_t i = 0; i < nt; i++) {
        const char *org = khj_str(khj_at(tl, i));
        if (org == NULL || !kh_id_org(org)) {
            adm_set_err(call, KH_E_ADM_FIELD, "tenants[%zu]: not an organisation code", i);
            return;
        }
        if (gw_tenant_find(org) == NULL) {
            adm_set_err(call, KH_E_ADM_FIELD, "tenants[%zu]: %s is not hosted by this gateway", i,
                        org);
            return;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(org, khj_str(khj_at(tl, j))) == 0) {
                adm_set_err(call, KH_E_ADM_FIELD, "tenants[%zu]: %s listed twice", i, org);
                return;
            }
    }
    if (khc_password_hash(pw, pwlen, hash) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "cannot hash the password");
        return;
    }
    if (!adm_platform_open(c, call))
        return;
    const char *p[4] = {name, role, hash, call->op};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO kh.operator (name, role, password_hash, created_by) "
                             "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                             4, p);
    khc_wipe(hash, sizeof hash);
    if (adm_db_failed(call, r))
        goto fail;
    bool created = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!created) {
        adm_set_err(call, KH_E_ADM_CONFLICT, "operator %s already exists", name);
        goto fail;
    }
    for (size_t i = 0; i < nt; i++) {
        const char *pt[2] = {name, khj_str(khj_at(tl, i))};
        r = kh_db_exec(c, "INSERT INTO kh.operator_tenant (operator, org_code) VALUES ($1, $2)", 2,
                       pt);
        if (adm_db_failed(call, r))
            goto fail;
        PQclear(r);
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "name", name);
    khjw_kstr(&w, "role", role);
    khjw_key(&w, "tenants");
    khjw_arr(&w);
    for (size_t i = 0; i < nt; i++)
        khjw_str(&w, khj_str(khj_at(tl, i)));
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    /* the response without the password is the audit row's detail */
    size_t dlen;
    char *detail = khjw_finish(&w, &dlen);
    if (detail == NULL || adm_operator_audit(c, call->op, "operator.add", name, detail, KH_OK) ||
        kh_db_commit(c) != KH_OK) {
        free(detail);
        adm_set_err(call, KH_E_DB, "database unavailable");
        goto fail;
    }
    call->out = detail;
    call->outlen = dlen;
    call->status = 201;
    call->err = KH_OK;
    return;
fail:
    kh_db_rollback(c);
}
