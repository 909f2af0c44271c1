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
#include "gw.h"
#include "gw_decide.h"
#include "gw_usage.h"
#include "gw_util.h"

#include "khid.h"
#include "khadmin.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khjson.h"
#include "khlog.h"
#include "khprom.h"
#include "khtls.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ADM_MAX_BODY 65536   /* request bodies, before authentication */
#define ADM_FAIL_LIMIT 5     /* failed logins in a row before a lock */
#define ADM_MAX_HASHING 2    /* password checks and hashes in flight */
#define ADM_LIST_DEFAULT 100 /* rows of a listing */
#define ADM_LIST_MAX 1000

typedef struct adm_call adm_call;
typedef void (*adm_work_fn)(PGconn *c, adm_call *call);

/* One endpoint. path: the whole path, or for tenant routes the part after
 * /admin/v1/tenants/{org}/, where "#" stands for a flag id. */
typedef struct {
    enum evhttp_cmd_type method;
    bool tenant;
    const char *path;
    unsigned roles;
    const char *action; /* names it in audit rows and the operational log */
    adm_work_fn work;
    bool hashes; /* runs scrypt: counted against ADM_MAX_HASHING */
} adm_route;

struct adm_call {
    struct evhttp_request *req; /* NULL once the client has gone */
    const adm_route *route;
    char cn[KHADM_NAME_MAX + 1]; /* of the connection's client certificate */
    uint8_t token[32];
    bool has_token, bad_token;
    char org[8];   /* tenant routes: the code in the path */
    gw_tenant *t;  /* the hosted tenant, or NULL */
    int64_t id;    /* flag id in the path */
    khj_val *body; /* the request's JSON object, or NULL */
    bool bad_json;
    char json_err[160];
    struct evkeyvalq query; /* decoded query parameters */
    bool bad_query;
    /* the session, set by authenticate() on the worker */
    char op[KHADM_NAME_MAX + 1];
    char role_name[16];
    unsigned role;
    char tenants[KHADM_MAX_TENANTS][8];
    size_t ntenants;
    char session_created[32], session_expires[32];
    /* the outcome */
    kh_err err;
    char msg[256];
    int status; /* HTTP status of a success */
    char *out;  /* JSON of a success */
    size_t outlen;
    const char *content_type; /* of out if not JSON (a constant) */
};

static int idle_secs, max_secs, lockout_secs, hashing;

/* ------------------------------------------------------------ helpers */

static void set_err(adm_call *call, kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(adm_call *call, kh_err e, const char *fmt, ...)
{
    va_list ap;
    call->err = e;
    va_start(ap, fmt);
    vsnprintf(call->msg, sizeof call->msg, fmt, ap);
    va_end(ap);
}

static bool db_failed(adm_call *call, PGresult *r)
{
    if (r != NULL)
        return false;
    set_err(call, KH_E_DB, "database unavailable");
    return true;
}

/* A one-parameter query of one boolean: 1 true, 0 false, -1 failed (call->err set). */
static int db_true(PGconn *c, adm_call *call, const char *sql, const char *param)
{
    PGresult *r = kh_db_exec(c, sql, 1, &param);
    if (db_failed(call, r))
        return -1;
    int t = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return t;
}

/* Finishes the writer into the call's response, or an internal error. */
static void set_out(adm_call *call, khj_writer *w, int status)
{
    call->out = khjw_finish(w, &call->outlen);
    if (call->out == NULL) {
        set_err(call, KH_E_INTERNAL, "cannot build the response");
        return;
    }
    call->err = KH_OK;
    call->status = status;
}

/* YYYY-MM-DD, a real day of the Gregorian calendar. */
static bool digits_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Characters (not bytes) of valid UTF-8 text; -1 if it holds a control character. */
static long text_chars(const char *s)
{
    long n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return -1;
        if ((*p & 0xc0) != 0x80)
            n++;
    }
    return n;
}

static bool procedure_known(const char *code)
{
    for (size_t i = 0; G.dir && i < G.dir->pb->n_legal_basis; i++)
        if (strcmp(G.dir->pb->legal_basis[i]->procedure, code) == 0)
            return true;
    return false;
}

static bool has_tenant(const adm_call *call, const char *org)
{
    if (call->role == KHADM_PLATFORM_ADMIN)
        return true;
    for (size_t i = 0; i < call->ntenants; i++)
        if (strcmp(call->tenants[i], org) == 0)
            return true;
    return false;
}

/* ------------------------------------------------- body and parameters */

/* The body must be an object whose keys are all in known (NULL-terminated). */
static bool body_fields(adm_call *call, const char *const *known)
{
    if (call->body == NULL) {
        set_err(call, KH_E_ADM_JSON, "a JSON object body is required");
        return false;
    }
    for (size_t i = 0; i < khj_len(call->body); i++) {
        const char *k = khj_key_at(call->body, i);
        bool ok = false;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(k, known[j]) == 0;
        if (!ok) {
            bool plain = strlen(k) <= 32 && kh_id_token(k, 32);
            set_err(call, KH_E_ADM_FIELD, "unknown field%s%s%s", plain ? " '" : "", plain ? k : "",
                    plain ? "'" : "");
            return false;
        }
    }
    return true;
}

/* A string field: absent is NULL (an error if required); present it must
 * be a non-empty string. */
static bool body_str(adm_call *call, const char *key, bool required, const char **out)
{
    const khj_val *v = khj_get(call->body, key);
    *out = NULL;
    if (v == NULL || khj_type_of(v) == KHJ_NULL) {
        if (required)
            set_err(call, KH_E_ADM_FIELD, "%s: missing", key);
        return !required;
    }
    if (khj_type_of(v) != KHJ_STR) {
        set_err(call, KH_E_ADM_FIELD, "%s: must be a string, not %s", key,
                khj_type_name(khj_type_of(v)));
        return false;
    }
    if (khj_strlen(v) == 0) {
        set_err(call, KH_E_ADM_FIELD, "%s: empty", key);
        return false;
    }
    *out = khj_str(v);
    return true;
}

/* Query parameters must all be in known, each given once. */
static bool query_known(adm_call *call, const char *const *known)
{
    struct evkeyval *kv;
    if (call->bad_query) {
        set_err(call, KH_E_ADM_FIELD, "query string is not well-formed");
        return false;
    }
    TAILQ_FOREACH(kv, &call->query, next)
    {
        bool ok = false;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(kv->key, known[j]) == 0;
        bool plain = kh_id_token(kv->key, 32);
        if (!ok) {
            set_err(call, KH_E_ADM_FIELD, "unknown parameter%s%s%s", plain ? " '" : "",
                    plain ? kv->key : "", plain ? "'" : "");
            return false;
        }
        for (struct evkeyval *o = TAILQ_NEXT(kv, next); o; o = TAILQ_NEXT(o, next))
            if (strcmp(o->key, kv->key) == 0) {
                set_err(call, KH_E_ADM_FIELD, "%s: given twice", kv->key);
                return false;
            }
    }
    return true;
}

static const char *query_get(adm_call *call, const char *key)
{
    const char *v = evhttp_find_header(&call->query, key);
    return v != NULL && *v != '\0' ? v : NULL;
}

/* One of the allowed values (NULL-terminated), or absent. */
static bool query_enum(adm_call *call, const char *key, const char *const *allowed,
                       const char **out)
{
    *out = query_get(call, key);
    if (*out == NULL)
        return true;
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(*out, allowed[i]) == 0)
            return true;
    char list[160] = "";
    for (size_t i = 0; allowed[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 allowed[i]);
    set_err(call, KH_E_ADM_FIELD, "%s: one of %s", key, list);
    *out = NULL;
    return false;
}

static bool query_date(adm_call *call, const char *key, const char **out)
{
    *out = query_get(call, key);
    if (*out != NULL && !kh_id_iso_date(*out)) {
        set_err(call, KH_E_ADM_FIELD, "%s: a date YYYY-MM-DD", key);
        return false;
    }
    return true;
}

static bool query_limit(adm_call *call, char out[8])
{
    const char *v = query_get(call, "limit");
    snprintf(out, 8, "%d", ADM_LIST_DEFAULT);
    if (v == NULL)
        return true;
    if (!digits_ok(v, 4) || atoi(v) < 1 || atoi(v) > ADM_LIST_MAX) {
        set_err(call, KH_E_ADM_FIELD, "limit: 1 to %d", ADM_LIST_MAX);
        return false;
    }
    snprintf(out, 8, "%d", atoi(v));
    return true;
}

/* since/until: the created day in [since, until], in the database's time zone. */
static bool query_period(adm_call *call, const char **since, const char **until)
{
    if (!query_date(call, "since", since) || !query_date(call, "until", until))
        return false;
    if (*since && *until && strcmp(*since, *until) > 0) {
        set_err(call, KH_E_ADM_FIELD, "until: before since");
        return false;
    }
    return true;
}

/* ------------------------------------------------------- SQL listings */

/* A listing query: fixed text with numbered parameters. */
typedef struct {
    char sql[1536];
    const char *p[10];
    int n;
} listing;

/* Appends " AND <before>$n<after>" with value as parameter n (nothing if
 * value is NULL). before/after are constants of the caller. */
static void list_where(listing *l, const char *before, const char *after, const char *value)
{
    if (value == NULL || l->n >= 9)
        return;
    l->p[l->n++] = value;
    snprintf(l->sql + strlen(l->sql), sizeof l->sql - strlen(l->sql), " AND %s$%d%s", before, l->n,
             after);
}

/* Runs SELECT cols FROM from WHERE conds ORDER BY order LIMIT limit as one
 * JSON array built by PostgreSQL, and answers {"tenant":..., key: [...]}. */
static void list_json(PGconn *c, adm_call *call, listing *l, const char *order, const char *limit,
                      const char *key)
{
    char full[1800];
    l->p[l->n++] = limit;
    snprintf(full, sizeof full,
             "SELECT coalesce(json_agg(x ORDER BY %s), '[]')::text FROM (%s ORDER BY %s "
             "LIMIT $%d::int) x",
             order, l->sql, order, l->n);
    PGresult *r = kh_db_exec(c, full, l->n, l->p);
    if (db_failed(call, r))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_key(&w, key);
    const char *json = PQgetvalue(r, 0, 0);
    khjw_raw(&w, json, strlen(json));
    khjw_obj_end(&w);
    /* listings carry personal data: PostgreSQL's copy is wiped too */
    khc_wipe(PQgetvalue(r, 0, 0), strlen(json));
    PQclear(r);
    set_out(call, &w, 200);
}

/* ------------------------------------------------------- audit records */

/* One audit row: sql inserts (who, action, target, detail, outcome, code). */
static kh_err audit_insert(PGconn *c, const char *sql, const char *who, const char *action,
                           const char *target, const char *detail, kh_err code)
{
    const char *p[6] = {who,
                        action,
                        target,
                        detail ? detail : "{}",
                        code ? "refused" : "ok",
                        code ? kh_err_code(code) : NULL};
    PGresult *r = kh_db_exec(c, sql, 6, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

/* A row of the tenant's audit_log in the current tenant transaction.
 * detail: a JSON object (text) or NULL; code: KH_OK or the refusal. */
static kh_err tenant_audit(PGconn *c, adm_call *call, const char *target, const char *detail,
                           kh_err code)
{
    return audit_insert(c,
                        "INSERT INTO audit_log (operator, action, target, detail, outcome, code) "
                        "VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
                        call->op, call->route->action, target, detail, code);
}

/* A row of kh.operator_audit in the current kh_operator_store transaction. */
static kh_err operator_audit(PGconn *c, const char *actor, const char *action, const char *target,
                             const char *detail, kh_err code)
{
    return audit_insert(c,
                        "INSERT INTO kh.operator_audit (actor, action, target, detail, outcome, "
                        "code) VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
                        actor, action, target, detail, code);
}

static kh_err platform_begin(PGconn *c)
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

/* Records call->err as a refusal: in the tenant's audit log for a hosted
 * tenant's route, in kh.operator_audit for the others. Best effort: the
 * refusal stands even if the record cannot be written. */
static void record_refusal(PGconn *c, adm_call *call)
{
    char detail[96];
    snprintf(detail, sizeof detail, "{\"method\": \"%s\"}",
             call->route->method == EVHTTP_REQ_GET ? "GET" : "POST");
    if (call->route->tenant) {
        if (call->t == NULL || kh_db_tenant_begin(c, call->t->id.code) != KH_OK)
            return;
        if (tenant_audit(c, call, NULL, detail, call->err) != KH_OK || kh_db_commit(c) != KH_OK)
            kh_db_rollback(c);
        return;
    }
    if (platform_begin(c) != KH_OK)
        return;
    if (operator_audit(c, call->op, call->route->action, NULL, detail, call->err) != KH_OK ||
        kh_db_commit(c) != KH_OK)
        kh_db_rollback(c);
}

/* ----------------------------------------------------- authentication */

/* Reads the session named by the bearer token and checks it belongs to the
 * connection's operator and is alive; bumps last_seen; loads the tenants. */
static bool authenticate(PGconn *c, adm_call *call)
{
    uint8_t hash[32];
    char hash_hex[65], idle[16];
    if (!call->has_token) {
        set_err(call, KH_E_ADM_UNAUTHENTICATED, "%s",
                call->bad_token ? "malformed Authorization header (expected Bearer and 64 hex)"
                                : "no Authorization: Bearer token; log in first");
        return false;
    }
    if (khc_sha256(call->token, sizeof call->token, NULL, 0, hash) != 0) {
        set_err(call, KH_E_INTERNAL, "cannot hash the token");
        return false;
    }
    khc_hex(hash, sizeof hash, hash_hex);
    snprintf(idle, sizeof idle, "%d", idle_secs);
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
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
    if (db_failed(call, r))
        goto out;
    /* the row was found by its hash; comparing again in constant time costs
     * nothing and keeps the one rule for secrets */
    if (PQntuples(r) != 1 || !khc_ct_equal(PQgetvalue(r, 0, 0), hash_hex, 64)) {
        set_err(call, KH_E_ADM_UNAUTHENTICATED, "no valid session for this client certificate");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 1), call->cn) != 0) {
        kh_warn("admin", "%s: a session token was presented over another operator's connection",
                kh_err_code(KH_E_ADM_UNAUTHENTICATED));
        set_err(call, KH_E_ADM_UNAUTHENTICATED, "no valid session for this client certificate");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 3), "t") != 0) {
        set_err(call, KH_E_ADM_UNAUTHENTICATED, "no valid session for this client certificate");
        goto out;
    }
    if (strcmp(PQgetvalue(r, 0, 4), "t") == 0) {
        set_err(call, KH_E_ADM_EXPIRED, "session expired (idle for %d s, or older than %d s)",
                idle_secs, max_secs);
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
    if (db_failed(call, r))
        goto out;
    PQclear(r);
    const char *op = call->op;
    r = kh_db_exec(
        c, "SELECT org_code FROM kh.operator_tenant WHERE operator = $1 ORDER BY org_code", 1, &op);
    if (db_failed(call, r))
        goto out;
    for (int i = 0; i < PQntuples(r) && call->ntenants < KHADM_MAX_TENANTS; i++)
        snprintf(call->tenants[call->ntenants++], sizeof call->tenants[0], "%s",
                 PQgetvalue(r, i, 0));
    ok = call->role != 0 && kh_db_commit(c) == KH_OK;
    if (!ok)
        set_err(call, KH_E_DB, "database unavailable");
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
        set_err(call, KH_E_ADM_NOT_FOUND, "the path names no organisation code");
    else if (call->route->tenant && !has_tenant(call, call->org))
        set_err(call, KH_E_ADM_TENANT, "tenant %s is not one of this operator's tenants",
                call->org);
    else if ((call->route->roles & call->role) == 0)
        set_err(call, KH_E_ADM_ROLE, "role %s may not use %s", call->role_name,
                call->route->action);
    else if (call->route->tenant && call->t == NULL)
        set_err(call, KH_E_ADM_NOT_FOUND, "tenant %s is not hosted by this gateway", call->org);
    else
        return true;
    if (call->err != KH_E_ADM_NOT_FOUND)
        record_refusal(c, call);
    return false;
}

/* -------------------------------------------------------------- login */

static void write_tenants(khj_writer *w, adm_call *call)
{
    khjw_key(w, "tenants");
    khjw_arr(w);
    if (call->role == KHADM_PLATFORM_ADMIN)
        for (size_t i = 0; i < G.ntenants; i++)
            khjw_str(w, G.tenants[i].id.code);
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
    set_err(call, e, "%s", msg);
    snprintf(detail, sizeof detail, "{\"reason\": \"%s\"}", why);
    if (platform_begin(c) != KH_OK)
        return;
    if (operator_audit(c, call->cn, "login", name, detail, e) != KH_OK || kh_db_commit(c) != KH_OK)
        kh_db_rollback(c);
}

static void login_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"operator", "password", NULL};
    const char *name, *pw;
    char secs[16];
    if (call->bad_json) {
        set_err(call, KH_E_ADM_JSON, "%s", call->json_err);
        return;
    }
    if (!body_fields(call, known) || !body_str(call, "operator", true, &name) ||
        !body_str(call, "password", true, &pw))
        return;
    size_t pwlen = khj_strlen(khj_get(call->body, "password"));
    if (!khadm_name_ok(name)) {
        set_err(call, KH_E_ADM_FIELD, "operator: [a-z0-9][a-z0-9._-]{0,31}");
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
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    PGresult *r = kh_db_exec(c,
                             "SELECT password_hash, active, coalesce(locked_until > now(), false), "
                             "to_char(locked_until AT TIME ZONE 'UTC', "
                             "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM kh.operator WHERE name = $1",
                             1, &name);
    if (db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    bool found = PQntuples(r) == 1;
    bool active = found && strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    char stored[KHC_PWHASH_LEN] = "", until[32] = "";
    if (found) {
        snprintf(stored, sizeof stored, "%s", PQgetvalue(r, 0, 0));
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
        if (found && active) {
            char limit[8];
            snprintf(secs, sizeof secs, "%d", lockout_secs);
            snprintf(limit, sizeof limit, "%d", ADM_FAIL_LIMIT);
            const char *p[3] = {name, secs, limit};
            if (platform_begin(c) == KH_OK) {
                r = kh_db_exec(c,
                               "UPDATE kh.operator SET "
                               "failed_logins = CASE WHEN failed_logins + 1 >= $3::int THEN 0 "
                               "  ELSE failed_logins + 1 END, "
                               "locked_until = CASE WHEN failed_logins + 1 >= $3::int "
                               "  THEN now() + make_interval(secs => $2::int) "
                               "  ELSE locked_until END "
                               "WHERE name = $1 AND active "
                               "AND (locked_until IS NULL OR locked_until <= now())",
                               3, p);
                bool counted = r != NULL;
                PQclear(r);
                if (!counted || kh_db_commit(c) != KH_OK)
                    kh_db_rollback(c);
            }
        }
        login_refused(c, call, name, why, KH_E_ADM_CREDENTIALS, "login refused");
        return;
    }
    /* both factors hold: a session, unless a lock or a disable came meanwhile */
    uint8_t token[32], hash[32];
    char hash_hex[65], max[16];
    if (khc_random(token, sizeof token) != 0 || khc_sha256(token, sizeof token, NULL, 0, hash)) {
        set_err(call, KH_E_INTERNAL, "cannot make a token");
        return;
    }
    khc_hex(hash, sizeof hash, hash_hex);
    snprintf(max, sizeof max, "%d", max_secs);
    snprintf(secs, sizeof secs, "%d", idle_secs);
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        goto wipe;
    }
    r = kh_db_exec(c,
                   "UPDATE kh.operator SET failed_logins = 0 WHERE name = $1 AND active "
                   "AND (locked_until IS NULL OR locked_until <= now()) RETURNING role",
                   1, &name);
    if (db_failed(call, r))
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
    if (db_failed(call, r))
        goto fail;
    PQclear(r);
    const char *ps[3] = {hash_hex, name, max};
    r = kh_db_exec(c,
                   "INSERT INTO kh.operator_session (token_hash, operator, expires_at) "
                   "VALUES (decode($1, 'hex'), $2, now() + make_interval(secs => $3::int)) "
                   "RETURNING to_char(expires_at AT TIME ZONE 'UTC', "
                   "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                   3, ps);
    if (db_failed(call, r))
        goto fail;
    snprintf(call->session_expires, sizeof call->session_expires, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    r = kh_db_exec(c,
                   "SELECT org_code FROM kh.operator_tenant WHERE operator = $1 ORDER BY org_code",
                   1, &name);
    if (db_failed(call, r))
        goto fail;
    for (int i = 0; i < PQntuples(r) && call->ntenants < KHADM_MAX_TENANTS; i++)
        snprintf(call->tenants[call->ntenants++], sizeof call->tenants[0], "%s",
                 PQgetvalue(r, i, 0));
    PQclear(r);
    if (call->role == 0 || operator_audit(c, name, "login", name, NULL, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        goto fail;
    }
    char token_hex[65];
    khc_hex(token, sizeof token, token_hex);
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "token", token_hex);
    khjw_kstr(&w, "operator", call->op);
    khjw_kstr(&w, "role", call->role_name);
    write_tenants(&w, call);
    khjw_kstr(&w, "expires_at", call->session_expires);
    khjw_kint(&w, "idle_timeout", idle_secs);
    khjw_obj_end(&w);
    set_out(call, &w, 200);
    khc_wipe(token_hex, sizeof token_hex);
    goto wipe;
fail:
    kh_db_rollback(c);
wipe:
    khc_wipe(token, sizeof token);
}

/* ------------------------------------------------ session endpoints */

static void whoami_work(PGconn *c, adm_call *call)
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
    khjw_kint(&w, "idle_timeout", idle_secs);
    khjw_obj_end(&w);
    khjw_kstr(&w, "gateway", G.name);
    khjw_obj_end(&w);
    set_out(call, &w, 200);
}

static void logout_work(PGconn *c, adm_call *call)
{
    uint8_t hash[32];
    char hash_hex[65];
    if (call->body != NULL && khj_len(call->body) > 0) {
        set_err(call, KH_E_ADM_FIELD, "logout takes no fields");
        return;
    }
    khc_sha256(call->token, sizeof call->token, NULL, 0, hash);
    khc_hex(hash, sizeof hash, hash_hex);
    const char *p[1] = {hash_hex};
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    PGresult *r =
        kh_db_exec(c, "DELETE FROM kh.operator_session WHERE token_hash = decode($1, 'hex')", 1, p);
    bool ok = r != NULL && operator_audit(c, call->op, "logout", call->op, NULL, KH_OK) == KH_OK &&
              kh_db_commit(c) == KH_OK;
    PQclear(r);
    if (!ok) {
        set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kbool(&w, "logged_out", true);
    khjw_obj_end(&w);
    set_out(call, &w, 200);
}

/* ---------------------------------------------------------- operators */

static void operators_list_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!query_known(call, none))
        return;
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    PGresult *r =
        kh_db_exec(c,
                   "SELECT coalesce(json_agg(x ORDER BY x.name), '[]')::text FROM ("
                   "SELECT o.name, o.role, o.active, o.created_at, o.created_by, o.failed_logins, "
                   "o.locked_until, coalesce(array_agg(t.org_code ORDER BY t.org_code) "
                   "FILTER (WHERE t.org_code IS NOT NULL), '{}') AS tenants "
                   "FROM kh.operator o LEFT JOIN kh.operator_tenant t ON t.operator = o.name "
                   "GROUP BY o.name) x",
                   0, NULL);
    kh_db_rollback(c);
    if (db_failed(call, r))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_key(&w, "operators");
    khjw_raw(&w, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
    khjw_obj_end(&w);
    PQclear(r);
    set_out(call, &w, 200);
}

/* {name, role, password, tenants}: validated, hashed (scrypt, here on the
 * worker), inserted with its tenants and an audit row in one transaction. */
static void operators_add_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"name", "role", "password", "tenants", NULL};
    const char *name, *role, *pw;
    char hash[KHC_PWHASH_LEN];
    if (!body_fields(call, known) || !body_str(call, "name", true, &name) ||
        !body_str(call, "role", true, &role) || !body_str(call, "password", true, &pw))
        return;
    size_t pwlen = khj_strlen(khj_get(call->body, "password"));
    const khj_val *tl = khj_get(call->body, "tenants");
    if (!khadm_name_ok(name)) {
        set_err(call, KH_E_ADM_FIELD, "name: [a-z0-9][a-z0-9._-]{0,31}");
        return;
    }
    unsigned bit = khadm_role(role);
    if (bit == 0) {
        set_err(call, KH_E_ADM_FIELD,
                "role: one of platform_admin, tenant_admin, responder, auditor");
        return;
    }
    if (pwlen < KHADM_PW_MIN || pwlen > KHC_PASSWORD_MAX) {
        set_err(call, KH_E_ADM_FIELD, "password: %d to %d bytes", KHADM_PW_MIN, KHC_PASSWORD_MAX);
        return;
    }
    if (tl != NULL && khj_type_of(tl) != KHJ_ARR && khj_type_of(tl) != KHJ_NULL) {
        set_err(call, KH_E_ADM_FIELD, "tenants: must be an array of organisation codes");
        return;
    }
    size_t nt = khj_len(tl);
    if (bit == KHADM_PLATFORM_ADMIN && nt > 0) {
        set_err(call, KH_E_ADM_FIELD, "tenants: a platform_admin has every tenant; leave it out");
        return;
    }
    if (bit != KHADM_PLATFORM_ADMIN && (nt == 0 || nt > KHADM_MAX_TENANTS)) {
        set_err(call, KH_E_ADM_FIELD, "tenants: 1 to %d tenants for role %s", KHADM_MAX_TENANTS,
                role);
        return;
    }
    for (size_t i = 0; i < nt; i++) {
        const char *org = khj_str(khj_at(tl, i));
        if (org == NULL || !kh_id_org(org)) {
            set_err(call, KH_E_ADM_FIELD, "tenants[%zu]: not an organisation code", i);
            return;
        }
        if (gw_tenant_find(org) == NULL) {
            set_err(call, KH_E_ADM_FIELD, "tenants[%zu]: %s is not hosted by this gateway", i, org);
            return;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(org, khj_str(khj_at(tl, j))) == 0) {
                set_err(call, KH_E_ADM_FIELD, "tenants[%zu]: %s listed twice", i, org);
                return;
            }
    }
    if (khc_password_hash(pw, pwlen, hash) != 0) {
        set_err(call, KH_E_INTERNAL, "cannot hash the password");
        return;
    }
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    const char *p[4] = {name, role, hash, call->op};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO kh.operator (name, role, password_hash, created_by) "
                             "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                             4, p);
    khc_wipe(hash, sizeof hash);
    if (db_failed(call, r))
        goto fail;
    bool created = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!created) {
        set_err(call, KH_E_ADM_CONFLICT, "operator %s already exists", name);
        goto fail;
    }
    for (size_t i = 0; i < nt; i++) {
        const char *pt[2] = {name, khj_str(khj_at(tl, i))};
        r = kh_db_exec(c, "INSERT INTO kh.operator_tenant (operator, org_code) VALUES ($1, $2)", 2,
                       pt);
        if (db_failed(call, r))
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
    if (detail == NULL || operator_audit(c, call->op, "operator.add", name, detail, KH_OK) ||
        kh_db_commit(c) != KH_OK) {
        free(detail);
        set_err(call, KH_E_DB, "database unavailable");
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

static void operators_disable_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"name", NULL};
    const char *name;
    if (!body_fields(call, known) || !body_str(call, "name", true, &name))
        return;
    if (!khadm_name_ok(name)) {
        set_err(call, KH_E_ADM_FIELD, "name: [a-z0-9][a-z0-9._-]{0,31}");
        return;
    }
    if (strcmp(name, call->op) == 0) {
        set_err(call, KH_E_ADM_FIELD, "name: an operator cannot disable themself");
        return;
    }
    if (platform_begin(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    PGresult *r =
        kh_db_exec(c, "SELECT active FROM kh.operator WHERE name = $1 FOR UPDATE", 1, &name);
    if (db_failed(call, r))
        goto fail;
    int n = PQntuples(r);
    bool active = n == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (n != 1) {
        set_err(call, KH_E_ADM_NOT_FOUND, "no operator %s", name);
        goto fail;
    }
    if (!active) {
        set_err(call, KH_E_ADM_CONFLICT, "operator %s is already disabled", name);
        goto fail;
    }
    r = kh_db_exec(c, "UPDATE kh.operator SET active = false WHERE name = $1", 1, &name);
    if (db_failed(call, r))
        goto fail;
    PQclear(r);
    r = kh_db_exec(c, "DELETE FROM kh.operator_session WHERE operator = $1", 1, &name);
    if (db_failed(call, r))
        goto fail;
    PQclear(r);
    if (operator_audit(c, call->op, "operator.disable", name, NULL, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        goto fail;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "name", name);
    khjw_kbool(&w, "active", false);
    khjw_obj_end(&w);
    set_out(call, &w, 200);
    return;
fail:
    kh_db_rollback(c);
}

/* -------------------------------------------------------------- flags */

#define FLAG_COLUMNS                                                                               \
    "id, kind, local_id, item_code, procedure, reason, valid_from, valid_to, created_by, "         \
    "created_at, revoked_by, revoked_at, (revoked_at IS NULL AND valid_from <= current_date AND "  \
    "(valid_to IS NULL OR current_date < valid_to)) AS active"

static void flags_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"kind", "active", "limit", NULL};
    static const char *const kinds[] = {"hold", "nondisclosure", NULL};
    static const char *const bools[] = {"true", "false", NULL};
    const char *kind, *active;
    char limit[8];
    if (!query_known(call, known) || !query_enum(call, "kind", kinds, &kind) ||
        !query_enum(call, "active", bools, &active) || !query_limit(call, limit))
        return;
    listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql,
             "SELECT * FROM (SELECT " FLAG_COLUMNS " FROM answer_flag) f "
             "WHERE true");
    list_where(&l, "kind = ", "", kind);
    if (active && strcmp(active, "true") == 0)
        snprintf(l.sql + strlen(l.sql), sizeof l.sql - strlen(l.sql), " AND active");
    if (kh_db_tenant_begin(c, call->org) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    list_json(c, call, &l, "id DESC", limit, "flags");
    kh_db_rollback(c);
}

/* The audit detail of a flag: what it covers, without the local ID or the
 * reason (personal data; the flag row keeps them). */
#define FLAG_DETAIL                                                                                \
    "json_build_object('id', f.id, 'kind', f.kind, 'item_code', f.item_code, 'procedure', "        \
    "f.procedure, 'valid_from', f.valid_from, 'valid_to', f.valid_to, 'local_id_given', "          \
    "f.local_id IS NOT NULL)::text"

/* Ends a change of a flag, given r: the flag's id, its audit detail and the
 * flag (JSON from PostgreSQL). Writes its audit row in the same
 * transaction, commits, and answers with the flag; on failure rolls back.
 * Frees r either way. */
static void flag_commit(PGconn *c, adm_call *call, PGresult *r, int status)
{
    char target[32];
    snprintf(target, sizeof target, "flag/%s", PQgetvalue(r, 0, 0));
    if (tenant_audit(c, call, target, PQgetvalue(r, 0, 1), KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        PQclear(r);
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_key(&w, "flag");
    khjw_raw(&w, PQgetvalue(r, 0, 2), strlen(PQgetvalue(r, 0, 2)));
    khjw_obj_end(&w);
    PQclear(r);
    set_out(call, &w, status);
}

static bool flag_fields_ok(adm_call *call, const char **kind, const char **local_id,
                           const char **item, const char **proc, const char **reason,
                           const char **from, const char **to)
{
    static const char *const known[] = {"kind",   "local_id",   "item_code", "procedure",
                                        "reason", "valid_from", "valid_to",  NULL};
    if (!body_fields(call, known) || !body_str(call, "kind", true, kind) ||
        !body_str(call, "local_id", false, local_id) || !body_str(call, "item_code", false, item) ||
        !body_str(call, "procedure", false, proc) || !body_str(call, "reason", true, reason) ||
        !body_str(call, "valid_from", false, from) || !body_str(call, "valid_to", false, to))
        return false;
    long chars = text_chars(*reason);
    if (strcmp(*kind, "hold") != 0 && strcmp(*kind, "nondisclosure") != 0)
        set_err(call, KH_E_ADM_FIELD, "kind: hold or nondisclosure");
    else if (*local_id && !kh_id_local_id(*local_id))
        set_err(call, KH_E_ADM_FIELD, "local_id: 1 to 15 digits");
    else if (*item && !kh_id_code(*item, 15))
        set_err(call, KH_E_ADM_FIELD, "item_code: 1 to 15 of [0-9A-Z]");
    else if (*proc && !kh_id_code(*proc, 15))
        set_err(call, KH_E_ADM_FIELD, "procedure: 1 to 15 of [0-9A-Z]");
    else if (*proc && !procedure_known(*proc))
        set_err(call, KH_E_ADM_FIELD, "procedure: %s is in no row of the legal-basis table", *proc);
    else if (!*local_id && !*item && !*proc)
        set_err(call, KH_E_ADM_FIELD, "local_id, item_code, procedure: at least one is required");
    else if (chars < 1 || chars > 200)
        set_err(call, KH_E_ADM_FIELD, "reason: 1 to 200 characters, no control characters");
    else if (*from && !kh_id_iso_date(*from))
        set_err(call, KH_E_ADM_FIELD, "valid_from: a date YYYY-MM-DD");
    else if (*to && !kh_id_iso_date(*to))
        set_err(call, KH_E_ADM_FIELD, "valid_to: a date YYYY-MM-DD");
    else if (*from && *to && strcmp(*to, *from) <= 0)
        set_err(call, KH_E_ADM_FIELD, "valid_to: must be after valid_from");
    else
        return true;
    return false;
}

static void flags_add_work(PGconn *c, adm_call *call)
{
    const char *kind, *local_id, *item, *proc, *reason, *from, *to;
    if (!flag_fields_ok(call, &kind, &local_id, &item, &proc, &reason, &from, &to))
        return;
    if (kh_db_tenant_begin(c, call->org) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    int known = item ? db_true(c, call,
                               "SELECT EXISTS (SELECT 1 FROM kh.item "
                               "WHERE item_code = $1)",
                               item)
                     : 1;
    if (known == 0)
        set_err(call, KH_E_ADM_FIELD, "item_code: %s is not in the item catalogue", item);
    int later =
        known == 1 && to && !from ? db_true(c, call, "SELECT $1::date > current_date", to) : 1;
    if (later == 0)
        set_err(call, KH_E_ADM_FIELD, "valid_to: must be after valid_from (today)");
    if (known != 1 || later != 1)
        goto fail;
    const char *p[8] = {kind, local_id, item, proc, reason, from, to, call->op};
    PGresult *r =
        kh_db_exec(c,
                   "WITH f AS (INSERT INTO answer_flag (kind, local_id, item_code, procedure, "
                   "reason, valid_from, valid_to, created_by) VALUES ($1, $2, $3, $4, $5, "
                   "coalesce($6::date, current_date), $7::date, $8) RETURNING *) "
                   "SELECT f.id::text, " FLAG_DETAIL ", (SELECT row_to_json(x)::text FROM "
                   "(SELECT " FLAG_COLUMNS " FROM f) x) FROM f",
                   8, p);
    if (db_failed(call, r))
        goto fail;
    flag_commit(c, call, r, 201);
    return;
fail:
    kh_db_rollback(c);
}

static void flags_revoke_work(PGconn *c, adm_call *call)
{
    char id[24];
    if (call->body != NULL && khj_len(call->body) > 0) {
        set_err(call, KH_E_ADM_FIELD, "revoke takes no fields");
        return;
    }
    snprintf(id, sizeof id, "%lld", (long long)call->id);
    if (kh_db_tenant_begin(c, call->org) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    const char *p[2] = {id, call->op};
    PGresult *r = kh_db_exec(c,
                             "SELECT revoked_at IS NOT NULL FROM answer_flag WHERE id = $1 "
                             "FOR UPDATE",
                             1, p);
    if (db_failed(call, r))
        goto fail;
    if (PQntuples(r) == 0)
        set_err(call, KH_E_ADM_NOT_FOUND, "no flag %s in tenant %s", id, call->org);
    else if (strcmp(PQgetvalue(r, 0, 0), "t") == 0)
        set_err(call, KH_E_ADM_CONFLICT, "flag %s is already revoked", id);
    PQclear(r);
    if (call->err != KH_OK)
        goto fail;
    r = kh_db_exec(c,
                   "WITH f AS (UPDATE answer_flag SET revoked_by = $2, revoked_at = now() "
                   "WHERE id = $1 RETURNING *) SELECT f.id::text, " FLAG_DETAIL
                   ", (SELECT row_to_json(x)::text FROM (SELECT " FLAG_COLUMNS " FROM f) x) FROM f",
                   2, p);
    if (db_failed(call, r))
        goto fail;
    flag_commit(c, call, r, 200);
    return;
fail:
    kh_db_rollback(c);
}

/* ------------------------------------------------------------ listings */

static void pending_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"state", "limit", NULL};
    static const char *const states[] = {"pending", "approved", "refused", "expired", "all", NULL};
    const char *state;
    char limit[8];
    if (!query_known(call, known) || !query_enum(call, "state", states, &state) ||
        !query_limit(call, limit))
        return;
    if (state == NULL)
        state = "pending";
    listing l = {.n = 0};
    /* the subject's link code stays out: a responder decides by local ID */
    snprintf(l.sql, sizeof l.sql,
             "SELECT msg_id, sender, procedure, items, local_id, staff_id, as_of, flags, "
             "received_at, state, decided_by, decided_at, approved_items, reason "
             "FROM pending_answer WHERE true");
    list_where(&l, "state = ", "", strcmp(state, "all") == 0 ? NULL : state);
    if (kh_db_tenant_begin(c, call->org) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    list_json(c, call, &l, "received_at DESC", limit, "pending");
    kh_db_rollback(c);
}

static void queries_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"state", "procedure", "provider", "since",
                                        "until", "limit",     NULL};
    static const char *const states[] = {"sent",   "answered",  "pending", "refused",
                                         "failed", "timed_out", NULL};
    const char *state, *proc, *provider, *since, *until;
    char limit[8];
    if (!query_known(call, known) || !query_enum(call, "state", states, &state) ||
        !query_period(call, &since, &until) || !query_limit(call, limit))
        return;
    proc = query_get(call, "procedure");
    provider = query_get(call, "provider");
    if (proc && !kh_id_code(proc, 15)) {
        set_err(call, KH_E_ADM_FIELD, "procedure: 1 to 15 of [0-9A-Z]");
        return;
    }
    if (provider && !kh_id_org(provider)) {
        set_err(call, KH_E_ADM_FIELD, "provider: not an organisation code");
        return;
    }
    listing l = {.n = 0};
    /* never the answer itself (the column answer): listings show the lifecycle */
    snprintf(l.sql, sizeof l.sql,
             "SELECT msg_id, created_at, updated_at, system_id, staff_id, procedure, provider, "
             "items, local_id, as_of, state, code, message, result, expires_at, attempts "
             "FROM query WHERE true");
    list_where(&l, "state = ", "", state);
    list_where(&l, "procedure = ", "", proc);
    list_where(&l, "provider = ", "", provider);
    list_where(&l, "created_at >= ", "::date", since);
    list_where(&l, "created_at < ", "::date + 1", until);
    if (kh_db_tenant_begin(c, call->org) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    list_json(c, call, &l, "created_at DESC", limit, "queries");
    kh_db_rollback(c);
}

static void audit_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"since", "until", "outcome", "limit", NULL};
    static const char *const outcomes[] = {"ok", "refused", NULL};
    const char *since, *until, *outcome;
    char limit[8];
    if (!query_known(call, known) || !query_period(call, &since, &until) ||
        !query_enum(call, "outcome", outcomes, &outcome) || !query_limit(call, limit))
        return;
    listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql,
             "SELECT id, at, operator, action, target, detail, outcome, code FROM audit_log "
             "WHERE true");
    list_where(&l, "outcome = ", "", outcome);
    list_where(&l, "at >= ", "::date", since);
    list_where(&l, "at < ", "::date + 1", until);
    if (kh_db_tenant_begin(c, call->org) != KH_OK) {
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    list_json(c, call, &l, "id DESC", limit, "audit");
    kh_db_rollback(c);
}

/* ----------------------------------------------------- usage, metrics */

/* since/until of a usage report (gw_usage_period): the defaults and the
 * length of the period are the database's to say (today is its day). */
static bool usage_period(PGconn *c, adm_call *call, char *since_out, char *until_out)
{
    static const char *const known[] = {"since", "until", NULL};
    const char *since, *until;
    if (!query_known(call, known) || !query_period(call, &since, &until))
        return false;
    kh_err e = gw_usage_period(c, since, until, since_out, until_out, call->msg, sizeof call->msg);
    if (e == KH_E_DB)
        set_err(call, e, "database unavailable");
    else
        call->err = e;
    return e == KH_OK;
}

/* GET tenants/{org}/usage?since&until: the tenant's usage counts, one row a
 * day, and their total (sql/tenant/008_usage.sql says what each counts). */
static void usage_work(PGconn *c, adm_call *call)
{
    char since[11], until[11];
    if (!usage_period(c, call, since, until))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_kstr(&w, "since", since);
    khjw_kstr(&w, "until", until);
    if (gw_usage_write(c, call->org, since, until, &w) != KH_OK) {
        khjw_discard(&w);
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    khjw_obj_end(&w);
    set_out(call, &w, 200);
}

/* GET /admin/v1/usage?since&until: every hosted tenant's report, each read
 * in its own tenant transaction (never two tenants in one statement). */
static void usage_all_work(PGconn *c, adm_call *call)
{
    char since[11], until[11];
    if (!usage_period(c, call, since, until))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "since", since);
    khjw_kstr(&w, "until", until);
    khjw_key(&w, "tenants");
    khjw_arr(&w);
    for (size_t i = 0; i < G.ntenants; i++) {
        khjw_obj(&w);
        khjw_kstr(&w, "tenant", G.tenants[i].id.code);
        if (gw_usage_write(c, G.tenants[i].id.code, since, until, &w) != KH_OK) {
            khjw_discard(&w);
            set_err(call, KH_E_DB, "database unavailable");
            return;
        }
        khjw_obj_end(&w);
    }
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    set_out(call, &w, 200);
}

/* GET /metrics: Prometheus text of the operator's tenants (a platform
 * admin's: every hosted tenant), from gw_usage_metrics. */
static void metrics_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!query_known(call, none))
        return;
    const char **orgs = calloc(G.ntenants ? G.ntenants : 1, sizeof *orgs);
    size_t n = 0;
    if (orgs == NULL) {
        set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < G.ntenants; i++)
        if (has_tenant(call, G.tenants[i].id.code))
            orgs[n++] = G.tenants[i].id.code;
    kh_err e = gw_usage_metrics(c, orgs, n, &call->out, &call->outlen);
    free(orgs);
    if (e != KH_OK) {
        set_err(call, e, "cannot build the metrics");
        return;
    }
    call->err = KH_OK;
    call->status = 200;
    call->content_type = KHPROM_CONTENT_TYPE;
}

/* POST tenants/{org}/decide {"msg_id", "decision": "approve"|"refuse",
 * "items": [...] (approve: the items approved, default all), "reason"}:
 * a responder's decision on a held query (gw_decide.c). */
static void decide_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"msg_id", "decision", "items", "reason", NULL};
    const char *msg_id, *decision, *reason;
    if (!body_fields(call, known) || !body_str(call, "msg_id", true, &msg_id) ||
        !body_str(call, "decision", true, &decision) || !body_str(call, "reason", false, &reason))
        return;
    bool hex = strlen(msg_id) == 2 * KH_MSG_ID_LEN;
    for (const char *p = msg_id; hex && *p; p++)
        hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    if (!hex) {
        set_err(call, KH_E_ADM_FIELD, "msg_id: expected 32 lower-case hex digits");
        return;
    }
    bool approve = strcmp(decision, "approve") == 0;
    if (!approve && strcmp(decision, "refuse") != 0) {
        set_err(call, KH_E_ADM_FIELD, "decision: expected approve or refuse");
        return;
    }
    if (reason != NULL && (text_chars(reason) < 0 || text_chars(reason) > 200)) {
        set_err(call, KH_E_ADM_FIELD, "reason: at most 200 characters, no control characters");
        return;
    }
    gw_decision *d = calloc(1, sizeof *d);
    if (d == NULL) {
        set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    const khj_val *items = khj_get(call->body, "items");
    if (items != NULL && khj_type_of(items) != KHJ_NULL) {
        if (!approve || khj_type_of(items) != KHJ_ARR || khj_len(items) == 0 ||
            khj_len(items) > KH_MAX_ITEMS) {
            set_err(call, KH_E_ADM_FIELD,
                    "items: with approve only, an array of 1 to 16 item codes");
            goto out;
        }
        for (size_t i = 0; i < khj_len(items); i++) {
            const khj_val *v = khj_at(items, i);
            const char *code = khj_type_of(v) == KHJ_STR ? khj_str(v) : NULL;
            if (code == NULL || !kh_id_code(code, KH_CODE_MAX)) {
                set_err(call, KH_E_ADM_FIELD, "items[%zu]: expected an item code such as TK001", i);
                goto out;
            }
            for (size_t k = 0; k < d->nitems; k++)
                if (strcmp(d->items[k], code) == 0) {
                    set_err(call, KH_E_ADM_FIELD, "items: %s is listed twice", code);
                    goto out;
                }
            snprintf(d->items[d->nitems++], KH_CODE_MAX + 1, "%s", code);
        }
    }
    d->t = call->t;
    d->approve = approve;
    snprintf(d->operator_name, sizeof d->operator_name, "%s", call->op);
    snprintf(d->msg_id, sizeof d->msg_id, "%s", msg_id);
    snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
    gw_decide_run(c, d);
    if (d->err != KH_OK) {
        set_err(call, d->err, "%s", d->msg);
        goto out;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "msg_id", d->msg_id);
    khjw_kstr(&w, "decision", approve ? "approved" : "refused");
    khjw_kstr(&w, "result", d->result);
    khjw_kstr(&w, "answer_id", d->answer_id);
    khjw_kstr(&w, "delivery", "queued");
    khjw_obj_end(&w);
    set_out(call, &w, 200);
out:
    free(d);
}

/* -------------------------------------------------------------- routes */

/* What each role may do; anything else is refused (KH-6005). */
static const adm_route routes[] = {
    {EVHTTP_REQ_POST, false, "/admin/v1/login", KHADM_ANY_ROLE, "login", login_work, true},
    {EVHTTP_REQ_POST, false, "/admin/v1/logout", KHADM_ANY_ROLE, "logout", logout_work, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/whoami", KHADM_ANY_ROLE, "whoami", whoami_work, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/operators", KHADM_PLATFORM_ADMIN, "operator.list",
     operators_list_work, false},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators", KHADM_PLATFORM_ADMIN, "operator.add",
     operators_add_work, true},
    {EVHTTP_REQ_POST, false, "/admin/v1/operators/disable", KHADM_PLATFORM_ADMIN,
     "operator.disable", operators_disable_work, false},
    {EVHTTP_REQ_GET, true, "flags", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN, "flag.list",
     flags_list_work, false},
    {EVHTTP_REQ_POST, true, "flags", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN, "flag.add",
     flags_add_work, false},
    {EVHTTP_REQ_POST, true, "flags/#/revoke", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN,
     "flag.revoke", flags_revoke_work, false},
    {EVHTTP_REQ_GET, true, "pending", KHADM_ANY_ROLE, "pending.list", pending_work, false},
    {EVHTTP_REQ_POST, true, "decide", KHADM_RESPONDER, "pending.decide", decide_work, false},
    {EVHTTP_REQ_GET, true, "queries", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR,
     "query.list", queries_work, false},
    {EVHTTP_REQ_GET, true, "audit", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR,
     "audit.list", audit_work, false},
    {EVHTTP_REQ_GET, true, "usage", KHADM_PLATFORM_ADMIN | KHADM_TENANT_ADMIN | KHADM_AUDITOR,
     "usage.read", usage_work, false},
    {EVHTTP_REQ_GET, false, "/admin/v1/usage", KHADM_PLATFORM_ADMIN, "usage.all", usage_all_work,
     false},
    {EVHTTP_REQ_GET, false, "/metrics", KHADM_PLATFORM_ADMIN | KHADM_AUDITOR, "metrics",
     metrics_work, false},
};

#define TENANT_PREFIX "/admin/v1/tenants/"

/* Matches rest against a tenant route's pattern ("#": a flag id, 1 to 18
 * digits, no leading zero). */
static bool match_tenant_path(const char *pattern, const char *rest, int64_t *id)
{
    const char *hash = strchr(pattern, '#');
    if (hash == NULL)
        return strcmp(pattern, rest) == 0;
    size_t pre = (size_t)(hash - pattern);
    if (strncmp(pattern, rest, pre) != 0)
        return false;
    const char *d = rest + pre, *e = d;
    while (*e >= '0' && *e <= '9')
        e++;
    if (e == d || e - d > 18 || *d == '0' || strcmp(e, hash + 1) != 0)
        return false;
    *id = strtoll(d, NULL, 10);
    return true;
}

/* The route for a request, with the tenant and id of the path. */
static const adm_route *find_route(enum evhttp_cmd_type method, const char *path, char org[8],
                                   int64_t *id)
{
    const char *rest = NULL;
    if (strncmp(path, TENANT_PREFIX, strlen(TENANT_PREFIX)) == 0) {
        const char *o = path + strlen(TENANT_PREFIX), *slash = strchr(o, '/');
        if (slash == NULL || slash - o > 7)
            return NULL;
        memcpy(org, o, (size_t)(slash - o));
        org[slash - o] = '\0';
        rest = slash + 1;
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const adm_route *r = &routes[i];
        if (r->method != method || r->tenant != (rest != NULL))
            continue;
        if (rest ? match_tenant_path(r->path, rest, id) : strcmp(r->path, path) == 0)
            return r;
    }
    return NULL;
}

/* ---------------------------------------------------- the event loop */

static void json_reply(struct evhttp_request *req, int status, const char *body, size_t len,
                       const char *content_type)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type",
                      content_type ? content_type : "application/json; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (out == NULL) {
        evhttp_send_reply(req, 500, "Internal error", NULL);
        return;
    }
    evbuffer_add(out, body, len);
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Refused", out);
    evbuffer_free(out);
}

static void json_error(struct evhttp_request *req, kh_err e, const char *msg)
{
    const kh_err_info *info = kh_err_get(e);
    khj_writer w;
    size_t len;
    khjw_init(&w, 4096);
    khjw_obj(&w);
    khjw_kstr(&w, "code", info->code);
    khjw_kstr(&w, "message", msg);
    khjw_obj_end(&w);
    char *body = khjw_finish(&w, &len);
    if (body == NULL)
        evhttp_send_reply(req, 500, "Internal error", NULL);
    else
        json_reply(req, info->http_status, body, len, NULL);
    free(body);
}

static void on_client_close(struct evhttp_connection *conn, void *arg)
{
    adm_call *call = arg;
    call->req = NULL;
}

static void call_free(adm_call *call)
{
    khj_free(call->body);
    evhttp_clear_headers(&call->query);
    khc_free_secret(call->out, call->outlen);
    khc_wipe(call->token, sizeof call->token);
    free(call);
}

static void reply_and_free(adm_call *call)
{
    struct evhttp_request *req = call->req;
    const char *action = call->route ? call->route->action : "-";
    if (call->route && call->route->hashes)
        hashing--;
    if (req != NULL) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
        if (call->err == KH_OK)
            json_reply(req, call->status, call->out, call->outlen, call->content_type);
        else
            json_error(req, call->err, call->msg);
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
        set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    if (call->route->work == login_work) {
        login_work(c, call);
        return;
    }
    if (!authenticate(c, call) || !authorise(c, call))
        return;
    if (call->bad_json) {
        set_err(call, KH_E_ADM_JSON, "%s", call->json_err);
        return;
    }
    call->route->work(c, call);
}

static void admin_done(void *arg)
{
    reply_and_free(arg);
}

/* The bearer token of the Authorization header: "Bearer " and 64 hex digits. */
static void read_token(adm_call *call, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h == NULL)
        return;
    call->bad_token = true;
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return;
    h += 7;
    while (*h == ' ')
        h++;
    if (strlen(h) != 64)
        return;
    for (size_t i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = h[2 * i + (size_t)k];
            unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                         : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                         : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                                  : 16;
            if (d == 16) {
                khc_wipe(call->token, sizeof call->token);
                return;
            }
            v = v * 16 + d;
        }
        call->token[i] = (uint8_t)v;
    }
    call->has_token = true;
    call->bad_token = false;
}

/* The body as a JSON object. Errors are kept and reported after the
 * session is checked: an unauthenticated client learns only KH-6001. */
static void read_body(adm_call *call, struct evhttp_request *req)
{
    uint8_t *body;
    size_t len;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return;
    kh_err e = kh_http_body(req, ADM_MAX_BODY, &body, &len);
    if (e != KH_OK) {
        call->bad_json = true;
        snprintf(call->json_err, sizeof call->json_err, "body over %d bytes", ADM_MAX_BODY);
        return;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    khj_error je;
    if (len == 0) {
        /* no body: only for endpoints that take no fields (they say so) */
    } else if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
               (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
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
    adm_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        json_error(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    TAILQ_INIT(&call->query);
    call->req = req;
    call->route =
        path ? find_route(evhttp_request_get_command(req), path, call->org, &call->id) : NULL;
    if (call->route == NULL) {
        set_err(call, KH_E_ADM_ENDPOINT, "no such admin endpoint (check the path and method)");
        call->org[0] = '\0';
        reply_and_free(call);
        return;
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
        set_err(call, KH_E_ADM_UNAUTHENTICATED, "client certificate names no operator");
        reply_and_free(call);
        return;
    }
    read_token(call, req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (q != NULL && evhttp_parse_query_str(q, &call->query) != 0)
        call->bad_query = true;
    read_body(call, req);
    if (call->route->hashes && hashing >= ADM_MAX_HASHING) {
        set_err(call, KH_E_OVERLOADED, "too many logins at once; retry");
        call->route = NULL; /* not counted */
        reply_and_free(call);
        return;
    }
    if (call->route->hashes)
        hashing++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_close, call);
    if (G.stopping || kh_pool_submit(G.pool, admin_work, admin_done, call) != 0) {
        set_err(call, KH_E_OVERLOADED, "database queue full");
        reply_and_free(call);
    }
}

/* ------------------------------------------------------------- set-up */

int gw_admin_setup(char *err, size_t errlen)
{
    char cert[1024], key[1024], ca[1024];
    if (kh_conf_int(G.conf, "admin_session_idle", 1800, 60, 86400, &idle_secs, err, errlen) ||
        kh_conf_int(G.conf, "admin_session_max", 28800, 60, 7 * 86400, &max_secs, err, errlen) ||
        kh_conf_int(G.conf, "admin_lockout", 900, 1, 86400, &lockout_secs, err, errlen))
        return -1;
    if (idle_secs > max_secs) {
        snprintf(err, errlen, "admin_session_idle (%d) is longer than admin_session_max (%d)",
                 idle_secs, max_secs);
        return -1;
    }
    if (kh_conf_str(G.conf, "admin_listen", NULL) == NULL)
        return 0;
    snprintf(cert, sizeof cert, "%s/gw/%s/tls.crt", G.pki, G.name);
    snprintf(key, sizeof key, "%s/gw/%s/tls.key", G.pki, G.name);
    snprintf(ca, sizeof ca, "%s/operator-ca.crt", G.pki);
    /* operators only: not the national CA, not the tenants' business CAs */
    G.admin_ctx = kh_tls_server_ctx(cert, key, ca, err, errlen);
    return G.admin_ctx != NULL ? 0 : -1;
}

void gw_admin_register(struct evhttp *http)
{
    evhttp_set_gencb(http, on_admin_request, NULL);
}

void gw_admin_stop(void)
{
    gw_usage_stop();
    kh_tls_ctx_free(G.admin_ctx);
    G.admin_ctx = NULL;
}
