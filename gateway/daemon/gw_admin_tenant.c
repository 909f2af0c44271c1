/* gw_admin_tenant.c: what operators do with one tenant's data: holds and
 * non-disclosure flags (each change in the tenant's audit log in the same
 * transaction), the held answers and their decisions, the asking side's
 * queries, the audit log and usage counts. */
#include "gw_adm.h"
#include "gw_decide.h"
#include "gw_qstate.h"
#include "gw_usage.h"

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
#include "khprom.h"

/* -------------------------------------------------------------- flags */

#define FLAG_COLUMNS                                                                               \
    "id, kind, local_id, item_code, procedure, reason, valid_from, valid_to, created_by, "         \
    "created_at, revoked_by, revoked_at, (revoked_at IS NULL AND valid_from <= current_date AND "  \
    "(valid_to IS NULL OR current_date < valid_to)) AS active"

void adm_flags_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"kind", "active", "limit", NULL};
    static const char *const kinds[] = {"hold", "nondisclosure", NULL};
    static const char *const bools[] = {"true", "false", NULL};
    const char *kind, *active;
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_enum(call, "kind", kinds, &kind) ||
        !adm_query_enum(call, "active", bools, &active) || !adm_query_limit(call, limit))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql,
             "SELECT * FROM (SELECT " FLAG_COLUMNS " FROM answer_flag) f "
             "WHERE true");
    adm_list_where(&l, "kind = ", "", kind);
    if (active && strcmp(active, "true") == 0)
        snprintf(l.sql + strlen(l.sql), sizeof l.sql - strlen(l.sql), " AND active");
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "id DESC", limit, "flags");
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
    if (adm_tenant_audit(c, call, target, PQgetvalue(r, 0, 1), KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
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
    adm_set_out(call, &w, status);
}

static bool flag_fields_ok(adm_call *call, const char **kind, const char **local_id,
                           const char **item, const char **proc, const char **reason,
                           const char **from, const char **to)
{
    static const char *const known[] = {"kind",   "local_id",   "item_code", "procedure",
                                        "reason", "valid_from", "valid_to",  NULL};
    if (!adm_body_fields(call, known) || !adm_body_str(call, "kind", true, kind) ||
        !adm_body_str(call, "local_id", false, local_id) ||
        !adm_body_str(call, "item_code", false, item) ||
        !adm_body_str(call, "procedure", false, proc) ||
        !adm_body_str(call, "reason", true, reason) ||
        !adm_body_str(call, "valid_from", false, from) ||
        !adm_body_str(call, "valid_to", false, to))
        return false;
    long chars = adm_text_chars(*reason);
    if (strcmp(*kind, "hold") != 0 && strcmp(*kind, "nondisclosure") != 0)
        adm_set_err(call, KH_E_ADM_FIELD, "kind: hold or nondisclosure");
    else if (*local_id && !kh_id_local_id(*local_id))
        adm_set_err(call, KH_E_ADM_FIELD, "local_id: 1 to 15 digits");
    else if (*item && !kh_id_code(*item, 15))
        adm_set_err(call, KH_E_ADM_FIELD, "item_code: 1 to 15 of [0-9A-Z]");
    else if (*proc && !kh_id_code(*proc, 15))
        adm_set_err(call, KH_E_ADM_FIELD, "procedure: 1 to 15 of [0-9A-Z]");
    else if (*proc && !adm_procedure_known(*proc))
        adm_set_err(call, KH_E_ADM_FIELD, "procedure: %s is in no row of the legal-basis table",
                    *proc);
    else if (!*local_id && !*item && !*proc)
        adm_set_err(call, KH_E_ADM_FIELD,
                    "local_id, item_code, procedure: at least one is required");
    else if (chars < 1 || chars > 200)
        adm_set_err(call, KH_E_ADM_FIELD, "reason: 1 to 200 characters, no control characters");
    else if (*from && !adm_date_ok(*from))
        adm_set_err(call, KH_E_ADM_FIELD, "valid_from: a date YYYY-MM-DD");
    else if (*to && !adm_date_ok(*to))
        adm_set_err(call, KH_E_ADM_FIELD, "valid_to: a date YYYY-MM-DD");
    else if (*from && *to && strcmp(*to, *from) <= 0)
        adm_set_err(call, KH_E_ADM_FIELD, "valid_to: must be after valid_from");
    else
        return true;
    return false;
}

void adm_flags_add_work(PGconn *c, adm_call *call)
{
    const char *kind, *local_id, *item, *proc, *reason, *from, *to;
    if (!flag_fields_ok(call, &kind, &local_id, &item, &proc, &reason, &from, &to))
        return;
    if (!adm_tenant_begin(&c, call))
        return;
    int known = item ? adm_db_true(c, call,
                                   "SELECT EXISTS (SELECT 1 FROM kh.item "
                                   "WHERE item_code = $1)",
                                   item)
                     : 1;
    if (known == 0)
        adm_set_err(call, KH_E_ADM_FIELD, "item_code: %s is not in the item catalogue", item);
    int later =
        known == 1 && to && !from ? adm_db_true(c, call, "SELECT $1::date > current_date", to) : 1;
    if (later == 0)
        adm_set_err(call, KH_E_ADM_FIELD, "valid_to: must be after valid_from (today)");
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
    if (adm_db_failed(call, r))
        goto fail;
    flag_commit(c, call, r, 201);
    return;
fail:
    kh_db_rollback(c);
}

void adm_flags_revoke_work(PGconn *c, adm_call *call)
{
    char id[24];
    if (call->body != NULL && khj_len(call->body) > 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "revoke takes no fields");
        return;
    }
    snprintf(id, sizeof id, "%lld", (long long)call->id);
    if (!adm_tenant_begin(&c, call))
        return;
    const char *p[2] = {id, call->op};
    PGresult *r = kh_db_exec(c,
                             "SELECT revoked_at IS NOT NULL FROM answer_flag WHERE id = $1 "
                             "FOR UPDATE",
                             1, p);
    if (adm_db_failed(call, r))
        goto fail;
    if (PQntuples(r) == 0)
        adm_set_err(call, KH_E_ADM_NOT_FOUND, "no flag %s in tenant %s", id, call->org);
    else if (strcmp(PQgetvalue(r, 0, 0), "t") == 0)
        adm_set_err(call, KH_E_ADM_CONFLICT, "flag %s is already revoked", id);
    PQclear(r);
    if (call->err != KH_OK)
        goto fail;
    r = kh_db_exec(c,
                   "WITH f AS (UPDATE answer_flag SET revoked_by = $2, revoked_at = now() "
                   "WHERE id = $1 RETURNING *) SELECT f.id::text, " FLAG_DETAIL
                   ", (SELECT row_to_json(x)::text FROM (SELECT " FLAG_COLUMNS " FROM f) x) FROM f",
                   2, p);
    if (adm_db_failed(call, r))
        goto fail;
    flag_commit(c, call, r, 200);
    return;
fail:
    kh_db_rollback(c);
}

/* ------------------------------------------------------------ listings */

/* expiring=SECONDS: held queries still pending whose deadline is at most
 * that far away, soonest first (what is about to expire) */
void adm_pending_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"state", "limit", "expiring", NULL};
    static const char *const states[] = {"pending", "approved", "refused", "expired", "all", NULL};
    const char *state, *expiring = adm_query_get(call, "expiring");
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_enum(call, "state", states, &state) ||
        !adm_query_limit(call, limit))
        return;
    if (expiring && (!adm_digits_ok(expiring, 8) || (state && strcmp(state, "pending") != 0))) {
        adm_set_err(call, KH_E_ADM_FIELD,
                    "expiring: seconds, 0 to 99999999 (held queries still pending only)");
        return;
    }
    if (state == NULL)
        state = "pending";
    adm_listing l = {.n = 0};
    /* the subject's link code stays out: a responder decides by local ID;
     * seconds_left: until the deadline, while pending */
    snprintf(l.sql, sizeof l.sql,
             "SELECT * FROM (SELECT msg_id, sender, procedure, items, local_id, staff_id, as_of, "
             "flags, received_at, deadline, CASE WHEN state = 'pending' THEN greatest(0, "
             "floor(extract(epoch FROM deadline - now())))::bigint END AS seconds_left, state, "
             "decided_by, decided_at, approved_items, reason FROM pending_answer) p WHERE true");
    adm_list_where(&l, "state = ", "", strcmp(state, "all") == 0 ? NULL : state);
    adm_list_where(&l, "deadline <= now() + make_interval(secs => ", "::int)", expiring);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, expiring ? "deadline, msg_id" : "received_at DESC", limit,
                  "pending");
    kh_db_rollback(c);
}

/* ------------------------------------------------------------- policy */

#define POLICY_COLUMNS                                                                             \
    "hold_deadline_s, set_by, to_char(set_at AT TIME ZONE 'UTC', "                                 \
    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS set_at"

static void policy_reply(PGconn *c, adm_call *call, const char *sql, int n, const char *const *p,
                         const char *detail)
{
    PGresult *r = kh_db_exec(c, sql, n, p);
    if (adm_db_failed(call, r))
        goto fail;
    if (PQntuples(r) != 1) {
        adm_set_err(call, KH_E_INTERNAL, "the tenant has no hold_policy row (migration 015)");
        PQclear(r);
        goto fail;
    }
    if (detail &&
        (adm_tenant_audit(c, call, "policy", detail, KH_OK) != KH_OK || kh_db_commit(c) != KH_OK)) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        PQclear(r);
        goto fail;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_key(&w, "policy");
    khjw_raw(&w, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
    khjw_obj_end(&w);
    PQclear(r);
    adm_set_out(call, &w, 200);
fail:
    kh_db_rollback(c);
}

void adm_policy_read_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none) || !adm_tenant_begin(&c, call))
        return;
    policy_reply(c, call,
                 "SELECT row_to_json(x)::text FROM (SELECT " POLICY_COLUMNS " FROM hold_policy) x",
                 0, NULL, NULL);
}

/* {"hold_deadline_s": N}: the deadline of queries held from now on; the
 * ones waiting keep theirs (their askers were told it). */
void adm_policy_set_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"hold_deadline_s", NULL};
    int64_t secs = 0;
    if (!adm_body_fields(call, known))
        return;
    if (!khj_get_int(call->body, "hold_deadline_s", &secs) || secs < 1 ||
        secs > GW_HOLD_DEADLINE_MAX_S) {
        adm_set_err(call, KH_E_ADM_FIELD,
                    "hold_deadline_s: an integer of seconds, 1 to %d (90 days)",
                    GW_HOLD_DEADLINE_MAX_S);
        return;
    }
    if (!adm_tenant_begin(&c, call))
        return;
    char v[24], detail[96];
    snprintf(v, sizeof v, "%lld", (long long)secs);
    const char *p[2] = {v, call->op};
    PGresult *r = kh_db_exec(c, "SELECT hold_deadline_s FROM hold_policy FOR UPDATE", 0, NULL);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    snprintf(detail, sizeof detail, "{\"hold_deadline_s\": %lld, \"before\": %s}", (long long)secs,
             PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "null");
    PQclear(r);
    policy_reply(c, call,
                 "WITH u AS (INSERT INTO hold_policy (one, hold_deadline_s, set_by) VALUES (true, "
                 "$1::int, $2) ON CONFLICT (one) DO UPDATE SET hold_deadline_s = "
                 "EXCLUDED.hold_deadline_s, set_by = EXCLUDED.set_by, set_at = now() RETURNING *) "
                 "SELECT row_to_json(x)::text FROM (SELECT " POLICY_COLUMNS " FROM u) x",
                 2, p, detail);
}

void adm_queries_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"msg_id", "state", "procedure", "provider",
                                        "since",  "until", "limit",     NULL};
    const char *msg_id, *state, *proc, *provider, *since, *until;
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_enum(call, "state", gw_qstate_names, &state) ||
        !adm_query_period(call, &since, &until) || !adm_query_limit(call, limit))
        return;
    proc = adm_query_get(call, "procedure");
    provider = adm_query_get(call, "provider");
    msg_id = adm_query_get(call, "msg_id");
    if (msg_id && !kh_id_hex(msg_id, 32)) {
        adm_set_err(call, KH_E_ADM_FIELD, "msg_id: the query's handle, 32 hex digits");
        return;
    }
    if (proc && !kh_id_code(proc, 15)) {
        adm_set_err(call, KH_E_ADM_FIELD, "procedure: 1 to 15 of [0-9A-Z]");
        return;
    }
    if (provider && !kh_id_org(provider)) {
        adm_set_err(call, KH_E_ADM_FIELD, "provider: not an organisation code");
        return;
    }
    adm_listing l = {.n = 0};
    /* never the answer itself (the column answer): listings show the lifecycle */
    snprintf(l.sql, sizeof l.sql,
             "SELECT msg_id, created_at, updated_at, system_id, staff_id, procedure, provider, "
             "items, local_id, as_of, state, code, message, result, expires_at, attempts "
             "FROM query WHERE true");
    adm_list_where(&l, "msg_id = ", "", msg_id);
    adm_list_where(&l, "state = ", "", state);
    adm_list_where(&l, "procedure = ", "", proc);
    adm_list_where(&l, "provider = ", "", provider);
    adm_list_where(&l, "created_at >= ", "::date", since);
    adm_list_where(&l, "created_at < ", "::date + 1", until);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "created_at DESC", limit, "queries");
    kh_db_rollback(c);
}

void adm_audit_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"since", "until", "outcome", "limit", NULL};
    static const char *const outcomes[] = {"ok", "refused", NULL};
    const char *since, *until, *outcome;
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_period(call, &since, &until) ||
        !adm_query_enum(call, "outcome", outcomes, &outcome) || !adm_query_limit(call, limit))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql,
             "SELECT id, at, operator, action, target, detail, outcome, code FROM audit_log "
             "WHERE true");
    adm_list_where(&l, "outcome = ", "", outcome);
    adm_list_where(&l, "at >= ", "::date", since);
    adm_list_where(&l, "at < ", "::date + 1", until);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "id DESC", limit, "audit");
    kh_db_rollback(c);
}

/* ------------------------------------------------------------- status */

/* What a tenant's dashboard shows beyond the counts: each record chain's
 * head and the last head signed with the tenant's key (records not signed
 * yet wait for the signer; a number that keeps growing says it is stuck),
 * and the seconds left of the tenant's certificates. */
void adm_status_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {NULL};
    if (!adm_query_known(call, known) || !adm_tenant_begin(&c, call))
        return;
    PGresult *r = kh_db_exec(
        c,
        "SELECT coalesce(json_agg(json_build_object('chain', h.chain, 'seq', h.seq, "
        "'signed_seq', coalesce(s.seq, 0), 'signed_at', s.signed_at, 'unsigned', h.seq - "
        "coalesce(s.seq, 0)) ORDER BY h.chain), '[]')::text FROM chain_head h LEFT JOIN LATERAL "
        "(SELECT g.seq, g.signed_at FROM chain_signature g WHERE g.chain = h.chain ORDER BY "
        "g.seq DESC LIMIT 1) s ON true",
        0, NULL);
    kh_db_rollback(c);
    if (adm_db_failed(call, r))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_key(&w, "chains");
    khjw_raw(&w, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
    PQclear(r);
    khjw_key(&w, "certificates");
    khjw_arr(&w);
    gw_tenant_cert certs[GW_TENANT_CERTS];
    gw_tenant_certs(call->t, certs);
    for (size_t k = 0; k < GW_TENANT_CERTS; k++) {
        bool ok;
        int64_t left = khc_cert_left(certs[k].cert, &ok);
        khjw_obj(&w);
        khjw_kstr(&w, "cert", certs[k].key);
        if (ok)
            khjw_kint(&w, "seconds_left", left);
        khjw_obj_end(&w);
    }
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

/* -------------------------------------------------------------- usage */

/* since/until of a usage report (gw_usage_period): the defaults and the
 * length of the period are the database's to say (today is its day). */
static bool usage_period(PGconn *c, adm_call *call, char *since_out, char *until_out)
{
    static const char *const known[] = {"since", "until", NULL};
    const char *since, *until;
    if (!adm_query_known(call, known) || !adm_query_period(call, &since, &until))
        return false;
    kh_err e = gw_usage_period(c, since, until, since_out, until_out, call->msg, sizeof call->msg);
    if (e == KH_E_DB)
        adm_set_err(call, e, "database unavailable");
    else
        call->err = e;
    return e == KH_OK;
}

/* GET tenants/{org}/usage?since&until: the tenant's usage counts, one row a
 * day, and their total (sql/tenant/015_hold_expiry.sql says what each counts). */
void adm_usage_work(PGconn *c, adm_call *call)
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
        adm_set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

/* GET /admin/v1/usage?since&until: every hosted tenant's report, each read
 * in its own tenant transaction (never two tenants in one statement). */
void adm_usage_all_work(PGconn *c, adm_call *call)
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
    for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        khjw_obj(&w);
        khjw_kstr(&w, "tenant", t->id.code);
        if (gw_usage_write(c, t->id.code, since, until, &w) != KH_OK) {
            khjw_discard(&w);
            adm_set_err(call, KH_E_DB, "database unavailable");
            return;
        }
        khjw_obj_end(&w);
    }
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

/* POST tenants/{org}/decide {"msg_id", "decision": "approve"|"refuse",
 * "items": [...] (approve: the items approved, default all), "reason"}:
 * a responder's decision on a held query (gw_decide.c). */
void adm_decide_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"msg_id", "decision", "items", "reason", NULL};
    const char *msg_id, *decision, *reason;
    if (!adm_body_fields(call, known) || !adm_body_str(call, "msg_id", true, &msg_id) ||
        !adm_body_str(call, "decision", true, &decision) ||
        !adm_body_str(call, "reason", false, &reason))
        return;
    bool hex = strlen(msg_id) == 2 * KH_MSG_ID_LEN;
    for (const char *p = msg_id; hex && *p; p++)
        hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
    if (!hex) {
        adm_set_err(call, KH_E_ADM_FIELD, "msg_id: expected 32 lower-case hex digits");
        return;
    }
    bool approve = strcmp(decision, "approve") == 0;
    if (!approve && strcmp(decision, "refuse") != 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "decision: expected approve or refuse");
        return;
    }
    if (reason != NULL && (adm_text_chars(reason) < 0 || adm_text_chars(reason) > 200)) {
        adm_set_err(call, KH_E_ADM_FIELD, "reason: at most 200 characters, no control characters");
        return;
    }
    gw_decision *d = calloc(1, sizeof *d);
    if (d == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    const khj_val *items = khj_get(call->body, "items");
    if (items != NULL && khj_type_of(items) != KHJ_NULL) {
        if (!approve || khj_type_of(items) != KHJ_ARR || khj_len(items) == 0 ||
            khj_len(items) > KH_MAX_ITEMS) {
            adm_set_err(call, KH_E_ADM_FIELD,
                        "items: with approve only, an array of 1 to 16 item codes");
            goto out;
        }
        for (size_t i = 0; i < khj_len(items); i++) {
            const khj_val *v = khj_at(items, i);
            const char *code = khj_type_of(v) == KHJ_STR ? khj_str(v) : NULL;
            if (code == NULL || !kh_id_code(code, KH_CODE_MAX)) {
                adm_set_err(call, KH_E_ADM_FIELD, "items[%zu]: expected an item code such as TK001",
                            i);
                goto out;
            }
            for (size_t k = 0; k < d->nitems; k++)
                if (strcmp(d->items[k], code) == 0) {
                    adm_set_err(call, KH_E_ADM_FIELD, "items: %s is listed twice", code);
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
        adm_set_err(call, d->err, "%s", d->msg);
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
    adm_set_out(call, &w, 200);
out:
    free(d);
}
