/* gw_adm.c: the admin API's shared helpers (gw_adm.h): outcomes, the body's
 * and the query string's parameters (every one validated, unknown ones
 * refused), listings as JSON, and the audit rows of tenants and operators. */
#include "gw_adm.h"
#include "gw_console.h"
#include "gw_dir.h"
#include "gw_maint.h"

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

adm_state ADM;

/* ------------------------------------------------------------ helpers */

bool adm_date_ok(const char *s)
{
    return kh_id_iso_date(s) && strncmp(s, "1900", 4) >= 0;
}

bool adm_tenant_begin(PGconn **c, adm_call *call)
{
    if (kh_db_tenant_begin(c, call->org) == KH_OK)
        return true;
    adm_set_err(call, KH_E_DB, "database unavailable");
    return false;
}

bool adm_platform_open(PGconn *c, adm_call *call)
{
    if (adm_platform_begin(c) == KH_OK)
        return true;
    adm_set_err(call, KH_E_DB, "database unavailable");
    return false;
}

bool adm_db_failed(adm_call *call, PGresult *r)
{
    if (r != NULL)
        return false;
    adm_set_err(call, KH_E_DB, "database unavailable");
    return true;
}

/* A one-parameter query of one boolean: 1 true, 0 false, -1 failed (call->err set). */
int adm_db_true(PGconn *c, adm_call *call, const char *sql, const char *param)
{
    PGresult *r = kh_db_exec(c, sql, 1, &param);
    if (adm_db_failed(call, r))
        return -1;
    int t = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return t;
}

/* Finishes the writer into the call's response, or an internal error. */
void adm_set_out(adm_call *call, khj_writer *w, int status)
{
    call->out = khjw_finish(w, &call->outlen);
    if (call->out == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "cannot build the response");
        return;
    }
    call->err = KH_OK;
    call->status = status;
}

/* YYYY-MM-DD, a real day of the Gregorian calendar. */
bool adm_digits_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Characters (not bytes) of valid UTF-8 text; -1 if it is not UTF-8 or
 * holds a character that would make it read otherwise than it shows: a C0
 * or C1 control, DEL, a zero-width character or joiner, a line or paragraph
 * separator, a bidirectional embedding, override or isolate, a BOM. */
long adm_text_chars(const char *s)
{
    long n = 0;
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end) {
        size_t len = kh_utf8_seq(p, end);
        if (len == 0)
            return -1;
        uint32_t cp = len == 1 ? p[0] : (uint32_t)p[0] & (0x7fu >> len);
        for (size_t i = 1; i < len; i++)
            cp = cp << 6 | ((uint32_t)p[i] & 0x3fu);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x200b && cp <= 0x200f) ||
            (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff)
            return -1;
        p += len;
        n++;
    }
    return n;
}

void adm_csrf_of(const uint8_t token[32], char out[65])
{
    static const char label[] = "kakehashi console csrf";
    uint8_t mac[32];
    if (khc_hmac_sha256(token, 32, (const uint8_t *)label, sizeof label - 1, mac) != 0) {
        khc_wipe(mac, sizeof mac);
        memset(out, 0, 65); /* matches nothing (adm_csrf_ok wants 64 hex digits) */
        return;
    }
    khc_hex(mac, sizeof mac, out);
    khc_wipe(mac, sizeof mac);
}

bool adm_csrf_ok(const adm_call *call)
{
    char want[65];
    adm_csrf_of(call->token, want);
    bool ok = want[0] != '\0' && strlen(call->csrf) == 64 && khc_ct_equal(want, call->csrf, 64);
    khc_wipe(want, sizeof want);
    return ok;
}

void adm_set_cookie(adm_call *call, const char *token_hex)
{
    snprintf(call->set_cookie, sizeof call->set_cookie,
             "%s=%s; Path=/; Secure; HttpOnly; SameSite=Strict%s", gw_console_cookie(),
             token_hex ? token_hex : "", token_hex ? "" : "; Max-Age=0");
}

bool adm_procedure_known(const char *code)
{
    const kh_dir *dir = gw_dir_hold();
    bool known = false;
    for (size_t i = 0; dir && !known && i < dir->pb->n_legal_basis; i++)
        known = strcmp(dir->pb->legal_basis[i]->procedure, code) == 0;
    gw_dir_drop(dir);
    return known;
}

bool adm_has_tenant(const adm_call *call, const char *org)
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
bool adm_body_fields(adm_call *call, const char *const *known)
{
    if (call->body == NULL) {
        adm_set_err(call, KH_E_ADM_JSON, "a JSON object body is required");
        return false;
    }
    for (size_t i = 0; i < khj_len(call->body); i++) {
        const char *k = khj_key_at(call->body, i);
        bool ok = false;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(k, known[j]) == 0;
        if (!ok) {
            bool plain = strlen(k) <= 32 && kh_id_token(k, 32);
            adm_set_err(call, KH_E_ADM_FIELD, "unknown field%s%s%s", plain ? " '" : "",
                        plain ? k : "", plain ? "'" : "");
            return false;
        }
    }
    return true;
}

/* A string field: absent is NULL (an error if required); present it must
 * be a non-empty string. */
bool adm_body_str(adm_call *call, const char *key, bool required, const char **out)
{
    const khj_val *v = khj_get(call->body, key);
    *out = NULL;
    if (v == NULL || khj_type_of(v) == KHJ_NULL) {
        if (required)
            adm_set_err(call, KH_E_ADM_FIELD, "%s: missing", key);
        return !required;
    }
    if (khj_type_of(v) != KHJ_STR) {
        adm_set_err(call, KH_E_ADM_FIELD, "%s: must be a string, not %s", key,
                    khj_type_name(khj_type_of(v)));
        return false;
    }
    if (khj_strlen(v) == 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "%s: empty", key);
        return false;
    }
    *out = khj_str(v);
    return true;
}

/* Query parameters must all be in known, each given once. */
bool adm_query_known(adm_call *call, const char *const *known)
{
    struct evkeyval *kv;
    if (call->bad_query) {
        adm_set_err(call, KH_E_ADM_FIELD, "%s", call->query_err);
        return false;
    }
    TAILQ_FOREACH(kv, &call->query, next)
    {
        bool ok = false;
        for (size_t j = 0; known[j] && !ok; j++)
            ok = strcmp(kv->key, known[j]) == 0;
        bool plain = kh_id_token(kv->key, 32);
        if (!ok) {
            adm_set_err(call, KH_E_ADM_FIELD, "unknown parameter%s%s%s", plain ? " '" : "",
                        plain ? kv->key : "", plain ? "'" : "");
            return false;
        }
        for (struct evkeyval *o = TAILQ_NEXT(kv, next); o; o = TAILQ_NEXT(o, next))
            if (strcmp(o->key, kv->key) == 0) {
                adm_set_err(call, KH_E_ADM_FIELD, "%s: given twice", kv->key);
                return false;
            }
    }
    return true;
}

const char *adm_query_get(adm_call *call, const char *key)
{
    const char *v = evhttp_find_header(&call->query, key);
    return v != NULL && *v != '\0' ? v : NULL;
}

/* One of the allowed values (NULL-terminated), or absent. */
bool adm_query_enum(adm_call *call, const char *key, const char *const *allowed, const char **out)
{
    *out = adm_query_get(call, key);
    if (*out == NULL)
        return true;
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(*out, allowed[i]) == 0)
            return true;
    char list[160] = "";
    for (size_t i = 0; allowed[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 allowed[i]);
    adm_set_err(call, KH_E_ADM_FIELD, "%s: one of %s", key, list);
    *out = NULL;
    return false;
}

bool adm_query_date(adm_call *call, const char *key, const char **out)
{
    *out = adm_query_get(call, key);
    if (*out != NULL && !adm_date_ok(*out)) {
        adm_set_err(call, KH_E_ADM_FIELD, "%s: a date YYYY-MM-DD", key);
        return false;
    }
    return true;
}

bool adm_query_limit(adm_call *call, char out[8])
{
    const char *v = adm_query_get(call, "limit");
    snprintf(out, 8, "%d", ADM_LIST_DEFAULT);
    if (v == NULL)
        return true;
    if (!adm_digits_ok(v, 4) || atoi(v) < 1 || atoi(v) > ADM_LIST_MAX) {
        adm_set_err(call, KH_E_ADM_FIELD, "limit: 1 to %d", ADM_LIST_MAX);
        return false;
    }
    snprintf(out, 8, "%d", atoi(v));
    return true;
}

/* since/until: the created day in [since, until], in the database's time zone. */
bool adm_query_period(adm_call *call, const char **since, const char **until)
{
    if (!adm_query_date(call, "since", since) || !adm_query_date(call, "until", until))
        return false;
    if (*since && *until && strcmp(*since, *until) > 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "until: before since");
        return false;
    }
    return true;
}

/* ------------------------------------------------------- SQL listings */

/* Appends " AND <before>$n<after>" with value as parameter n (nothing if
 * value is NULL). before/after are constants of the caller. */
void adm_list_where(adm_listing *l, const char *before, const char *after, const char *value)
{
    if (value == NULL || l->n >= 9)
        return;
    l->p[l->n++] = value;
    snprintf(l->sql + strlen(l->sql), sizeof l->sql - strlen(l->sql), " AND %s$%d%s", before, l->n,
             after);
}

/* Runs SELECT cols FROM from WHERE conds ORDER BY order LIMIT limit as one
 * JSON array built by PostgreSQL, and answers {"tenant":..., key: [...]}. */
void adm_list_json(PGconn *c, adm_call *call, adm_listing *l, const char *order, const char *limit,
                   const char *key)
{
    char full[1800];
    l->p[l->n++] = limit;
    snprintf(full, sizeof full,
             "SELECT coalesce(json_agg(x ORDER BY %s), '[]')::text FROM (%s ORDER BY %s "
             "LIMIT $%d::int) x",
             order, l->sql, order, l->n);
    PGresult *r = kh_db_exec(c, full, l->n, l->p);
    if (adm_db_failed(call, r))
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
    adm_set_out(call, &w, 200);
}

/* ------------------------------------------------------- audit records */

/* One audit row: sql inserts (who, action, target, detail, outcome, code). */
kh_err adm_audit_insert(PGconn *c, const char *sql, const char *who, const char *action,
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
kh_err adm_tenant_audit(PGconn *c, adm_call *call, const char *target, const char *detail,
                        kh_err code)
{
    return adm_audit_insert(
        c,
        "INSERT INTO audit_log (operator, action, target, detail, outcome, code) "
        "VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
        call->op, call->route->action, target, detail, code);
}

/* A row of kh.operator_audit in the current kh_operator_store transaction. */
kh_err adm_operator_audit(PGconn *c, const char *actor, const char *action, const char *target,
                          const char *detail, kh_err code)
{
    return adm_audit_insert(
        c,
        "INSERT INTO kh.operator_audit (actor, action, target, detail, outcome, "
        "code) VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
        actor, action, target, detail, code);
}

void adm_platform_list(PGconn *c, adm_call *call, const char *sql, int n, const char *const *p,
                       const char *key)
{
    if (!adm_platform_open(c, call))
        return;
    PGresult *r = kh_db_exec(c, sql, n, p);
    kh_db_rollback(c);
    if (adm_db_failed(call, r))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_key(&w, key);
    khjw_raw(&w, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
    khjw_obj_end(&w);
    PQclear(r);
    adm_set_out(call, &w, 200);
}

kh_err adm_platform_begin(PGconn *c)
{
    return gw_operator_store_begin(c);
}

/* Records call->err as a refusal: in the tenant's audit log for a hosted
 * tenant's route, in kh.operator_audit for the others. Best effort: the
 * refusal stands even if the record cannot be written. */
void adm_record_refusal(PGconn *c, adm_call *call)
{
    char detail[96];
    snprintf(detail, sizeof detail, "{\"method\": \"%s\"}",
             call->route->method == EVHTTP_REQ_GET ? "GET" : "POST");
    if (call->route->tenant) {
        if (call->t == NULL || kh_db_tenant_begin(&c, call->t->id.code) != KH_OK)
            return;
        if (adm_tenant_audit(c, call, NULL, detail, call->err) != KH_OK || kh_db_commit(c) != KH_OK)
            kh_db_rollback(c);
        return;
    }
    if (adm_platform_begin(c) != KH_OK)
        return;
    if (adm_operator_audit(c, call->op, call->route->action, NULL, detail, call->err) != KH_OK ||
        kh_db_commit(c) != KH_OK)
        kh_db_rollback(c);
}
