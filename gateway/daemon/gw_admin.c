/* gw_admin.c: the admin API (operators: platform admins, tenant admins,
 * responders, auditors). JSON over HTTP/1.1 on its own listener, mutual TLS
 * with client certificates of the operator CA only.
 *
 * Every request: route (method + path; KH-6009 if none), client certificate
 * CN (the operator's name), then on a database worker: the session named by
 * the bearer token must belong to that same operator and be alive (idle and
 * absolute limits); the operator must be assigned to the tenant in the path
 * (platform admins: every hosted tenant); the role must be allowed by the
 * route table below (deny by default); then the body and parameters are
 * validated and the route acts. Tenant data is touched only inside
 * kh_db_tenant_begin for that tenant; the operator tables only as
 * kh_operator_store. A change to a tenant writes its audit_log row in the
 * same transaction; a refusal on a hosted tenant is recorded there too, and
 * operator management and logins in kh.operator_audit.
 *
 * The login checks both factors: the CN of the connection's certificate
 * must be the operator named, and the password must verify (scrypt, on a
 * worker; at most ADM_MAX_HASHING at once so logins cannot take every
 * worker). Five failures in a row lock the operator for admin_lockout
 * seconds. Tokens are 32 random bytes, given to the client once in hex and
 * stored only as their SHA-256. The operational log gets routes, tenants
 * and codes: never passwords, tokens, operator names or request bodies. */
#include "gw_admin.h"
#include "gw_req.h"
#include "gw_adm.h"
#include "gw_console.h"
#include "gw_usage.h"
#include "gw_state.h"

#include "khid.h"
#include "khadmin.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khjson.h"
#include "khlog.h"
#include "khtls.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ----------------------------------------------------- authentication */

/* Reads the session named by the bearer token and checks it belongs to the
 * connection's operator and is alive; bumps last_seen; loads the tenants. */
static bool authenticate(PGconn *c, adm_call *call)
{
    uint8_t hash[32];
    char hash_hex[65], idle[16];
    if (!call->has_token) {
        adm_set_err(call, KH_E_ADM_UNAUTHENTICATED, "%s",
                    call->bad_cookie ? "the console's session cookie is malformed or sent twice; "
                                       "log in again"
                    : call->bad_token
                        ? "malformed Authorization header (expected Bearer and 64 hex)"
                        : "no Authorization: Bearer token; log in first");
        return false;
    }
    if (khc_sha256(call->token, sizeof call->token, NULL, 0, hash) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "cannot hash the token");
        return false;
    }
    khc_hex(hash, sizeof hash, hash_hex);
    snprintf(idle, sizeof idle, "%d", ADM.idle_secs);
    if (adm_platform_begin(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        return false;
    }
    const char *p[2] = {hash_hex, idle};
    PGresult *r = kh_db_exec(
        c,
        "SELECT encode(s.token_hash, 'hex'), s.operator, o.role, o.active, "
        "s.expires_at <= now() OR s.last_seen <= now() - make_interval(secs => $2::int), "
        "to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "to_char(s.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
        "FROM kh.operator_session s JOIN kh.operator o ON o.name = s.operator "
        "WHERE s.token_hash = decode($1, 'hex')",
        2, p);
    bool ok = false;
    if (adm_db_failed(call, r))
        goto out;
    /* the row was found by its hash; comparing again in constant time costs
     * nothing and keeps the one rule for secrets */
    if (PQntuples(r) != 1 || !khc_ct_equal(PQgetvalue(r, 0, 0), hash_hex, 64)) {
        adm_set_err(call, KH_E_ADM_UNAUTHENTICATED, "no valid session for this client certificate");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 1), call->cn) != 0) {
        kh_warn("admin", "%s: a session token was presented over another operator's connection",
                kh_err_code(KH_E_ADM_UNAUTHENTICATED));
        adm_set_err(call, KH_E_ADM_UNAUTHENTICATED, "no valid session for this client certificate");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 3), "t") != 0) {
        adm_set_err(call, KH_E_ADM_UNAUTHENTICATED, "no valid session for this client certificate");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 4), "t") == 0) {
        adm_set_err(call, KH_E_ADM_EXPIRED, "session expired (idle for %d s, or older than %d s)",
                    ADM.idle_secs, ADM.max_secs);
        goto out;
    }
    snprintf(call->op, sizeof call->op, "%s", PQgetvalue(r, 0, 1));
    snprintf(call->role_name, sizeof call->role_name, "%s", PQgetvalue(r, 0, 2));
    snprintf(call->session_created, sizeof call->session_created, "%s", PQgetvalue(r, 0, 5));
    snprintf(call->session_expires, sizeof call->session_expires, "%s", PQgetvalue(r, 0, 6));
    call->role = khadm_role(call->role_name);
    PQclear(r);
    r = kh_db_exec(c,
                   "UPDATE kh.operator_session SET last_seen = now() "
                   "WHERE token_hash = decode($1, 'hex')",
                   1, p);
    if (adm_db_failed(call, r))
        goto out;
    PQclear(r);
    const char *op = call->op;
    r = kh_db_exec(
        c, "SELECT org_code FROM kh.operator_tenant WHERE operator = $1 ORDER BY org_code", 1, &op);
    if (adm_db_failed(call, r))
        goto out;
    for (int i = 0; i < PQntuples(r) && call->ntenants < KHADM_MAX_TENANTS; i++)
        snprintf(call->tenants[call->ntenants++], sizeof call->tenants[0], "%s",
                 PQgetvalue(r, i, 0));
    ok = call->role != 0 && kh_db_commit(c) == KH_OK;
    if (!ok)
        adm_set_err(call, KH_E_DB, "database unavailable");
out:
    PQclear(r);
    if (!ok)
        kh_db_rollback(c);
    return ok;
}

/* Deny by default: the tenant in the path must be the operator's, the role
 * must be one the route allows, the tenant must be hosted here. Refusals on
 * a hosted tenant are recorded in its audit log. */
static bool authorise(PGconn *c, adm_call *call)
{
    if (call->route->tenant && strcmp(call->org, "?") == 0)
        adm_set_err(call, KH_E_ADM_NOT_FOUND, "the path names no organisation code");
    else if (call->route->tenant && !adm_has_tenant(call, call->org))
        adm_set_err(call, KH_E_ADM_TENANT, "tenant %s is not one of this operator's tenants",
                    call->org);
    else if ((call->route->roles & call->role) == 0)
        adm_set_err(call, KH_E_ADM_ROLE, "role %s may not use %s", call->role_name,
                    call->route->action);
    else if (call->route->tenant && call->t == NULL)
        adm_set_err(call, KH_E_ADM_NOT_FOUND, "tenant %s is not hosted by this gateway", call->org);
    else
        return true;
    if (call->err != KH_E_ADM_NOT_FOUND)
        adm_record_refusal(c, call);
    return false;
}

/* -------------------------------------------------------------- routes */

/* What each role may do; anything else is refused (KH-6005). A tenant's
 * registry (staff, roles, assignments, systems) is changed by its admins
 * and read by its auditors too; responders never see it. */
#define REG_READ (KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR)
#define REG_WRITE (KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN)
static const adm_route routes[] = {
    {EVHTTP_REQ_POST, false, "/admin/v1/login", KHADM_ANY_ROLE, "login", adm_login_work, true,
     false},
    {EVHTTP_REQ_POST, false, "/admin/v1/logout", KHADM_ANY_ROLE, "logout", adm_logout_work, false,
     false},
    {EVHTTP_REQ_GET, false, "/admin/v1/whoami", KHADM_ANY_ROLE, "whoami", adm_whoami_work, false,
     false},
    {EVHTTP_REQ_GET, false, "/admin/v1/operators", KHADM_PLATFORM_ADMIN, "operator.list",
     adm_operators_list_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators", KHADM_PLATFORM_ADMIN, "operator.add",
     adm_operators_add_work, true, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators/disable", KHADM_PLATFORM_ADMIN,
     "operator.disable", adm_operators_disable_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators/enable", KHADM_PLATFORM_ADMIN, "operator.enable",
     adm_operators_enable_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators/unlock", KHADM_PLATFORM_ADMIN, "operator.unlock",
     adm_operators_unlock_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators/password", KHADM_PLATFORM_ADMIN,
     "operator.reset_password", adm_operators_password_work, true, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/password", KHADM_ANY_ROLE, "operator.password",
     adm_password_work, true, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/sessions", KHADM_ANY_ROLE, "session.list",
     adm_sessions_list_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/sessions/end", KHADM_ANY_ROLE, "session.end",
     adm_sessions_end_work, false, false},
    {EVHTTP_REQ_GET, true, "flags", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN, "flag.list",
     adm_flags_list_work, false, false},
    {EVHTTP_REQ_POST, true, "flags", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN, "flag.add",
     adm_flags_add_work, false, false},
    {EVHTTP_REQ_POST, true, "flags/#/revoke", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN,
     "flag.revoke", adm_flags_revoke_work, false, false},
    {EVHTTP_REQ_GET, true, "pending", KHADM_ANY_ROLE & ~KHADM_METRICS, "pending.list",
     adm_pending_work, false, false},
    {EVHTTP_REQ_POST, true, "decide", KHADM_RESPONDER, "pending.decide", adm_decide_work, false,
     false},
    {EVHTTP_REQ_GET, true, "policy", KHADM_ANY_ROLE & ~KHADM_METRICS, "policy.read",
     adm_policy_read_work, false, false},
    {EVHTTP_REQ_POST, true, "policy", REG_WRITE, "policy.set", adm_policy_set_work, false, false},
    {EVHTTP_REQ_GET, true, "queries", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR,
     "query.list", adm_queries_work, false, false},
    {EVHTTP_REQ_GET, true, "audit", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR,
     "audit.list", adm_audit_work, false, false},
    {EVHTTP_REQ_GET, true, "status", REG_READ, "status.read", adm_status_work, false, false},
    {EVHTTP_REQ_GET, true, "bulk", REG_READ, "bulk.list", adm_bulk_uploads_work, false, false},
    {EVHTTP_REQ_GET, true, "bulk/files", REG_READ, "bulk.files", adm_bulk_files_work, false, false},
    {EVHTTP_REQ_GET, true, "bulk/report", REG_READ, "bulk.report", adm_bulk_report_work, false,
     false},
    {EVHTTP_REQ_GET, true, "usage", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR,
     "usage.read", adm_usage_work, false, false},
    {EVHTTP_REQ_GET, true, "staff", REG_READ, "staff.list", adm_staff_list_work, false, false},
    {EVHTTP_REQ_POST, true, "staff", REG_WRITE, "staff.set", adm_staff_set_work, false, false},
    {EVHTTP_REQ_GET, true, "roles", REG_READ, "role.list", adm_roles_list_work, false, false},
    {EVHTTP_REQ_POST, true, "roles", REG_WRITE, "role.set", adm_roles_set_work, false, false},
    {EVHTTP_REQ_GET, true, "assignments", REG_READ, "assignment.list", adm_assign_list_work, false,
     false},
    {EVHTTP_REQ_POST, true, "assignments", REG_WRITE, "assignment.set", adm_assign_set_work, false,
     false},
    {EVHTTP_REQ_POST, true, "staff/import", REG_WRITE, "staff.import", adm_staff_import_work, false,
     true},
    {EVHTTP_REQ_POST, true, "assignments/import", REG_WRITE, "assignment.import",
     adm_assign_import_work, false, true},
    {EVHTTP_REQ_GET, true, "staff/export", REG_READ, "staff.export", adm_staff_export_work, false,
     false},
    {EVHTTP_REQ_GET, true, "assignments/export", REG_READ, "assignment.export",
     adm_assign_export_work, false, false},
    {EVHTTP_REQ_GET, true, "systems", REG_READ, "system.list", adm_systems_list_work, false, false},
    {EVHTTP_REQ_POST, true, "systems", REG_WRITE, "system.set", adm_systems_set_work, false, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/usage", KHADM_PLATFORM_ADMIN, "usage.all",
     adm_usage_all_work, false, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/maintenance", KHADM_PLATFORM_ADMIN, "maintenance.list",
     adm_maint_list_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/maintenance", KHADM_PLATFORM_ADMIN, "maintenance.set",
     adm_maint_set_work, false, false},
    {EVHTTP_REQ_GET, true, "maintenance", KHADM_ANY_ROLE & ~KHADM_METRICS, "maintenance.read",
     adm_maint_tenant_list_work, false, false},
    {EVHTTP_REQ_POST, true, "maintenance", REG_WRITE, "maintenance.set", adm_maint_tenant_set_work,
     false, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/diagnose", KHADM_PLATFORM_ADMIN, "diagnose",
     adm_diagnose_work, false, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/directory",
     KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR, "directory.read",
     adm_directory_work, false, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/directory/refresh", KHADM_PLATFORM_ADMIN,
     "directory.refresh", adm_directory_refresh_work, false, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/tenants", KHADM_PLATFORM_ADMIN, "tenant.list",
     adm_tenants_work, false, false},
    {EVHTTP_REQ_GET, false, "/metrics", KHADM_PLATFORM_ADMIN | KHADM_AUDITOR | KHADM_METRICS,
     "metrics", adm_metrics_work, false, false},
};

/* The route for a request, with the tenant and id of the path. */
static const adm_route *find_route(enum evhttp_cmd_type method, const char *path, char org[8],
                                   int64_t *id)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const adm_route *r = &routes[i];
        if (r->method == method && khadm_path_match(r->path, r->tenant, path, org, id))
            return r;
    }
    return NULL;
}

/* ---------------------------------------------------- the event loop */

static void call_free(adm_call *call)
{
    khj_free(call->body);
    khc_free_secret(call->csv, call->csvlen);
    free(call->answers);
    adm_diag_free(call->diag);
    evhttp_clear_headers(&call->query);
    khc_free_secret(call->out, call->outlen);
    khc_wipe(call->token, sizeof call->token);
    khc_wipe(call->set_cookie, sizeof call->set_cookie);
    khc_wipe(call->csrf, sizeof call->csrf);
    free(call);
}

static void reply_and_free(adm_call *call)
{
    struct evhttp_request *req = gw_req_take(&call->req);
    const char *action = call->route ? call->route->action : "-";
    if (call->route && call->route->hashes)
        ADM.hashing--;
    if (req != NULL) {
        gw_console_headers(req, false);
        if (call->set_cookie[0] != '\0')
            evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie",
                              call->set_cookie);
        if (call->err == KH_OK)
            kh_http_reply_json(req, call->status, call->out, call->outlen, call->content_type);
        else if (call->report) /* a refusal with its report */
            kh_http_reply_json_refusal(req, call->err, call->out, call->outlen);
        else
            kh_http_reply_json_err(req, call->err, call->msg);
    }
    if (call->err == KH_OK)
        kh_info("admin", "%s%s%s: ok (%s)", action, call->org[0] ? " tenant " : "", call->org,
                call->role_name);
    else
        kh_info("admin", "%s%s%s: refused %s%s%s%s", action, call->org[0] ? " tenant " : "",
                call->org, kh_err_code(call->err), call->role_name[0] ? " (" : "", call->role_name,
                call->role_name[0] ? ")" : "");
    call_free(call);
}

static void admin_work(PGconn *c, void *arg)
{
    adm_call *call = arg;
    if (c == NULL) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    if (call->route->work == adm_login_work) {
        adm_login_work(c, call);
        return;
    }
    /* before the session is looked at (its idle time is not renewed) */
    if (call->by_cookie && call->post && !adm_csrf_ok(call)) {
        adm_set_err(call, KH_E_ADM_CSRF,
                    "a change with the console's cookie needs the session's token in X-KH-CSRF");
        return;
    }
    if (!authenticate(c, call) || !authorise(c, call))
        return;
    if (call->bad_json) {
        adm_set_err(call, KH_E_ADM_JSON, "%s", call->json_err);
        return;
    }
    call->route->work(c, call);
}

static void admin_done(void *arg)
{
    adm_call *call = arg;
    /* the diagnosis, a directory refresh ask the router next (they reply
     * when answered) */
    if (call->then != NULL && call->err == KH_OK && call->then(call, reply_and_free))
        return;
    reply_and_free(call);
}

/* 64 hex digits into 32 bytes (false, out wiped, if it is not that). */
static bool hex32(const char *h, uint8_t out[32])
{
    if (strlen(h) != 64 || khc_unhex(h, 64, out, 32) != 0) {
        khc_wipe(out, 32);
        return false;
    }
    return true;
}

/* The session: the bearer token of the Authorization header ("Bearer " and
 * 64 hex digits), or else the console's cookie (kh_session=64 hex), whose
 * changes must also carry the session's CSRF token in X-KH-CSRF. */
static void read_token(adm_call *call, struct evhttp_request *req)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *h = evhttp_find_header(in, "Authorization");
    if (h != NULL) {
        call->bad_token = true;
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return;
        h += 7;
        while (*h == ' ')
            h++;
        call->has_token = call->bad_token = false;
        if (hex32(h, call->token))
            call->has_token = true;
        else
            call->bad_token = true;
        return;
    }
    /* the cookie of this gateway's console, once: two are refused */
    const char *cookies = evhttp_find_header(in, "Cookie"), *name = gw_console_cookie();
    size_t klen = strlen(name), seen = 0;
    for (const char *p = cookies; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t n = strcspn(p, ";");
        if (n > klen && strncmp(p, name, klen) == 0 && p[klen] == '=') {
            char v[65] = "";
            if (n == klen + 1 + 64)
                memcpy(v, p + klen + 1, 64);
            call->has_token = call->by_cookie = ++seen == 1 && hex32(v, call->token);
            call->bad_cookie = !call->has_token;
            khc_wipe(v, sizeof v);
        }
        p += n;
    }
    if (!call->has_token)
        khc_wipe(call->token, sizeof call->token);
    const char *csrf = evhttp_find_header(in, "X-KH-CSRF");
    if (call->by_cookie && csrf != NULL && strlen(csrf) == 64)
        memcpy(call->csrf, csrf, 65);
}

/* The body as a JSON object. Errors are kept and reported after the
 * session is checked: an unauthenticated client learns only KH-6001. */
static void read_body(adm_call *call, struct evhttp_request *req)
{
    uint8_t *body;
    size_t len;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return;
    size_t max = call->route->csv ? ADM_MAX_CSV : ADM_MAX_BODY;
    kh_err e = kh_http_body(req, max, NULL, &body, &len, NULL, 0);
    if (e != KH_OK) {
        call->bad_json = true;
        snprintf(call->json_err, sizeof call->json_err, "body over %zu bytes", max);
        return;
    }
    if (call->route->csv) {
        /* the file as it came; gw_admin_import.c reads it */
        if (!kh_http_ctype_is(req, "text/csv")) {
            call->bad_json = true;
            snprintf(call->json_err, sizeof call->json_err, "Content-Type must be text/csv");
            khc_free_secret(body, len);
            return;
        }
        call->csv = body;
        call->csvlen = len;
        return;
    }
    khj_error je;
    if (len == 0) {
        /* no body: only for endpoints that take no fields (they say so) */
    } else if (!kh_http_ctype_is(req, "application/json")) {
        call->bad_json = true;
        snprintf(call->json_err, sizeof call->json_err, "Content-Type must be application/json");
    } else if ((call->body = khj_parse((const char *)body, len, ADM_MAX_BODY, 0, &je)) == NULL) {
        call->bad_json = true;
        snprintf(call->json_err, sizeof call->json_err, "body is not valid JSON: %s at byte %zu",
                 je.msg, je.offset);
    } else if (khj_type_of(call->body) != KHJ_OBJ) {
        call->bad_json = true;
        snprintf(call->json_err, sizeof call->json_err, "body must be a JSON object, not %s",
                 khj_type_name(khj_type_of(call->body)));
    }
    khc_free_secret(body, len); /* passwords, local IDs */
}

static void on_admin_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (path != NULL && gw_console_serve(req, path))
        return; /* the console's files: no data, no session */
    adm_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        kh_http_reply_json_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    TAILQ_INIT(&call->query);
    call->req = req;
    call->post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    call->route =
        path ? find_route(evhttp_request_get_command(req), path, call->org, &call->id) : NULL;
    if (call->route == NULL) {
        adm_set_err(call, KH_E_ADM_ENDPOINT, "no such admin endpoint (check the path and method)");
        call->org[0] = '\0';
        reply_and_free(call);
        return;
    }
    kh_http_set_endpoint(req, call->route->action);
    if (call->route->work == adm_metrics_work) {
        call->load[0] = kh_http_load_of(G.biz_http);
        call->load[1] = kh_http_load_of(G.peer_http);
        call->load[2] = kh_http_load_of(G.admin_http);
        call->answers = malloc(3 * sizeof *call->answers);
        if (call->answers != NULL) {
            kh_http_answers_of(G.biz_http, &call->answers[0]);
            kh_http_answers_of(G.peer_http, &call->answers[1]);
            kh_http_answers_of(G.admin_http, &call->answers[2]);
        }
    }
    if (call->route->tenant && kh_id_org(call->org))
        call->t = gw_tenant_find(call->org);
    else if (call->route->tenant)
        snprintf(call->org, sizeof call->org, "%s", "?"); /* never echo a bad code */
    /* the verified certificate chains to the operator CA (the only one the
     * listener trusts); its CN is the operator */
    X509 *peer = kh_tls_peer_cert(kh_http_req_ssl(req));
    bool cn_ok = peer != NULL && khc_cert_cn(peer, call->cn, sizeof call->cn) == 0 &&
                 khadm_name_ok(call->cn);
    khc_cert_free(peer);
    if (!cn_ok) {
        adm_set_err(call, KH_E_ADM_UNAUTHENTICATED, "client certificate names no operator");
        reply_and_free(call);
        return;
    }
    read_token(call, req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (q != NULL && kh_http_query(q, &call->query, call->query_err, sizeof call->query_err) != 0) {
        /* whatever the endpoint: a value cut short must never be read */
        call->bad_query = true;
        adm_set_err(call, KH_E_ADM_FIELD, "%s", call->query_err);
        call->route = NULL; /* not counted */
        reply_and_free(call);
        return;
    }
    read_body(call, req);
    if (call->route->hashes && ADM.hashing >= ADM_MAX_HASHING) {
        adm_set_err(call, KH_E_OVERLOADED, "too many logins at once; retry");
        call->route = NULL; /* not counted */
        reply_and_free(call);
        return;
    }
    if (call->route->hashes)
        ADM.hashing++;
    gw_req_hold(&call->req, req);
    /* a lane per operator (khpool.h): one operator's script does not queue
     * its backlog in front of the others' requests or the tenants' */
    char lane[KH_POOL_KEY_MAX];
    snprintf(lane, sizeof lane, "admin:%s", call->cn);
    if (G.stopping || kh_pool_submit_for(G.pool, lane, admin_work, admin_done, call) != 0) {
        adm_set_err(call, KH_E_OVERLOADED, "database queue full");
        reply_and_free(call);
    }
}

/* ------------------------------------------------------------- set-up */

void gw_admin_reload(const gw_settings *s)
{
    ADM.idle_secs = s->admin_session_idle;
    ADM.max_secs = s->admin_session_max;
    ADM.lockout_secs = s->admin_lockout;
}

void gw_admin_register(struct evhttp *http)
{
    kh_http_route_other(http, on_admin_request, NULL);
    kh_http_set_refuser(http, kh_http_reply_json_err);
}

void gw_admin_stop(void)
{
    gw_usage_stop();
}
