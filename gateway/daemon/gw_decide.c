/* gw_decide.c: manual decisions on held queries and the delivery of deferred
 * answers (answering side).
 * A responder approves a held query (all items, or fewer: the others are
 * withheld) or refuses it (KH-2010). In one tenant transaction the decision
 * is taken once (the pending_answer row is locked), the reference copy is
 * read as of the query's date (non-disclosure and minimisation still apply),
 * the deferred answer is sealed to the asker and put in the outbox, and the
 * provision record and the audit log row are written. The outbox is
 * delivered through the router (POST /v1/envelope, header answer_state
 * DEFERRED) with backoff until the answer's validity ends; its state
 * (queued, delivered, failed) is kept with the row. */
#include "gw_decide.h"
#include "gw_record.h"
#include "gw_router.h"
#include "gw_answer.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OUTBOX_BATCH 8
#define OUTBOX_LEASE_S 60
#define OUTBOX_RETRY_MAX_S 60

/* ------------------------------------------------------------- deciding */

static kh_err parse_codes(const char *lit, char out[][KH_CODE_MAX + 1], size_t *n)
{
    char buf[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    snprintf(buf, sizeof buf, "%s", lit);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, "{},", &save); tok;
         tok = strtok_r(NULL, "{},", &save)) {
        if (*n >= KH_MAX_ITEMS || strlen(tok) > KH_CODE_MAX)
            return KH_E_INTERNAL;
        snprintf(out[(*n)++], KH_CODE_MAX + 1, "%s", tok);
    }
    return KH_OK;
}

static kh_err audit(PGconn *c, const gw_decision *d, const char *detail)
{
    const char *q[5] = {d->operator_name, d->msg_id, detail, d->err == KH_OK ? "ok" : "refused",
                        d->err == KH_OK ? NULL : kh_err_code(d->err)};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO audit_log (operator, action, target, detail, outcome, "
                             "code) VALUES ($1, 'pending.decide', $2, $3::jsonb, $4, $5)",
                             5, q);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

#define decide_set(d, e, m) kh_err_set(&(d)->err, (d)->msg, sizeof(d)->msg, e, "%s", m)

void gw_decide_run(PGconn *c, gw_decision *d)
{
    char asked[KH_MAX_ITEMS][KH_CODE_MAX + 1];
    char *asked_p[KH_MAX_ITEMS];
    size_t nasked = 0;
    gw_answer a;
    memset(&a, 0, sizeof a);
    char local_id[32] = "", sender[16] = "", procedure[KH_CODE_MAX + 1] = "", staff[40] = "";
    char subject[40] = "", as_of[16] = "";
    if (kh_db_tenant_begin(&c, d->t->id.code) != KH_OK) {
        decide_set(d, KH_E_DB, "database unavailable");
        return;
    }
    const char *p[1] = {d->msg_id};
    PGresult *r = kh_db_exec(c,
                             "SELECT sender, procedure, items::text, subject, local_id, staff_id, "
                             "as_of, state FROM pending_answer WHERE msg_id = $1 FOR UPDATE",
                             1, p);
    if (r == NULL) {
        decide_set(d, KH_E_DB, "database unavailable");
        goto fail;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        decide_set(d, KH_E_ADM_NOT_FOUND, "no held query with this msg_id at this tenant");
        goto refused;
    }
    if (strcmp(PQgetvalue(r, 0, 7), "pending") != 0) {
        snprintf(d->msg, sizeof d->msg, "the query was already decided (%s)", PQgetvalue(r, 0, 7));
        d->err = KH_E_ADM_CONFLICT;
        PQclear(r);
        goto refused;
    }
    snprintf(sender, sizeof sender, "%s", PQgetvalue(r, 0, 0));
    snprintf(procedure, sizeof procedure, "%s", PQgetvalue(r, 0, 1));
    kh_err e = parse_codes(PQgetvalue(r, 0, 2), asked, &nasked);
    snprintf(subject, sizeof subject, "%s", PQgetvalue(r, 0, 3));
    snprintf(local_id, sizeof local_id, "%s", PQgetvalue(r, 0, 4));
    snprintf(staff, sizeof staff, "%s", PQgetvalue(r, 0, 5));
    snprintf(as_of, sizeof as_of, "%s", PQgetvalue(r, 0, 6));
    PQclear(r);
    if (e != KH_OK) {
        decide_set(d, KH_E_INTERNAL, "stored items unreadable");
        goto fail;
    }
    for (size_t i = 0; i < nasked; i++)
        asked_p[i] = asked[i];
    /* the approved items must be items that were asked */
    for (size_t i = 0; d->approve && i < d->nitems; i++) {
        bool ok = false;
        for (size_t k = 0; k < nasked; k++)
            ok = ok || strcmp(d->items[i], asked[k]) == 0;
        if (!ok) {
            snprintf(d->msg, sizeof d->msg, "items: %s was not asked for by this query",
                     d->items[i]);
            d->err = KH_E_ADM_FIELD;
            goto refused;
        }
    }
    a.t = d->t;
    a.asker = sender;
    a.procedure = procedure;
    a.items = asked_p;
    a.nitems = nasked;
    a.subject = subject;
    if (khc_unhex(d->msg_id, strlen(d->msg_id), a.in_reply_to, KH_MSG_ID_LEN) != 0 ||
        kh_dir_legal(G.dir, sender, procedure, d->t->id.code, asked_p, nasked, &a.row) != KH_OK) {
        decide_set(d, KH_E_NO_LEGAL_BASIS, "no legal-basis row allows this query any more");
        goto refused;
    }
    char hold_ids[512];
    if (d->approve) {
        /* items not approved are withheld; non-disclosure still applies */
        for (size_t k = 0; d->nitems > 0 && k < nasked; k++) {
            bool approved = false;
            for (size_t i = 0; i < d->nitems; i++)
                approved = approved || strcmp(d->items[i], asked[k]) == 0;
            if (!approved)
                gw_answer_withhold(&a, asked[k]);
        }
        e = gw_answer_flags(c, &a, local_id, hold_ids, sizeof hold_ids);
        if (e == KH_OK)
            e = gw_answer_read(c, &a, local_id, as_of, d->msg, sizeof d->msg);
        if (e == KH_OK)
            e = gw_answer_seal(&a, "DEFERRED", NULL);
    } else {
        a.result = "REFUSED";
        a.outcome = "refused";
        e = gw_answer_seal(&a, "DEFERRED", kh_err_code(KH_E_MANUAL_REFUSAL));
    }
    if (e != KH_OK) {
        decide_set(d, e, "cannot build the answer");
        goto fail;
    }
    d->result = a.result;
    khc_hex(a.msg_id, KH_MSG_ID_LEN, d->answer_id);
    char approved[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4], exp[24];
    char *ap[KH_MAX_ITEMS];
    size_t nap = 0;
    for (size_t k = 0; d->approve && k < nasked; k++) {
        bool w = false;
        for (size_t i = 0; i < a.nwithheld; i++)
            w = w || a.withheld[i] == asked_p[k];
        if (!w)
            ap[nap++] = asked_p[k];
    }
    gw_codes_literal(ap, nap, approved, sizeof approved);
    snprintf(exp, sizeof exp, "%lld", (long long)time(NULL) + G.ttl);
    char *env = gw_bytea_literal(a.sealed, a.sealedlen);
    const char *u[5] = {d->msg_id, d->approve ? "approved" : "refused", d->operator_name,
                        d->approve ? approved : NULL, d->reason[0] ? d->reason : NULL};
    const char *o[5] = {d->answer_id, d->msg_id, sender, env, exp};
    PGresult *r1 = NULL, *r2 = NULL;
    if (env != NULL)
        r1 =
            kh_db_exec(c,
                       "UPDATE pending_answer SET state = $2, decided_by = $3, decided_at = now(), "
                       "approved_items = $4::text[], reason = $5 WHERE msg_id = $1",
                       5, u);
    if (r1 != NULL)
        r2 = kh_db_exec(c,
                        "INSERT INTO outbox (msg_id, in_reply_to, recipient, envelope, expires_at) "
                        "VALUES ($1, $2, $3, $4::bytea, to_timestamp($5::bigint))",
                        5, o);
    free(env);
    PQclear(r1);
    e = r2 != NULL ? KH_OK : KH_E_DB;
    PQclear(r2);
    char detail[160];
    snprintf(detail, sizeof detail, "{\"decision\": \"%s\", \"result\": \"%s\", \"items\": %d}",
             d->approve ? "approve" : "refuse", a.result, (int)nap);
    if (e == KH_OK)
        e = gw_record(c, d->msg_id, "answered", sender, procedure, asked_p, nasked,
                      local_id[0] ? local_id : NULL, staff, a.outcome,
                      d->approve ? KH_OK : KH_E_MANUAL_REFUSAL, a.data, a.ndata);
    if (e == KH_OK)
        e = audit(c, d, detail);
    if (e == KH_OK)
        e = kh_db_commit(c);
    if (e != KH_OK) {
        decide_set(d, KH_E_DB, "cannot record the decision");
        goto fail;
    }
    /* the operator is named in the audit log, not here */
    kh_info("decide", "tenant %s: held query %s %s (%s)", d->t->id.code, d->msg_id,
            d->approve ? "approved" : "refused", d->result);
    gw_answer_clear(&a);
    khc_wipe(local_id, sizeof local_id);
    return;
refused:
    /* nothing changed; the refused attempt is recorded in the audit log */
    kh_db_rollback(c);
    khc_wipe(local_id, sizeof local_id);
    if (kh_db_tenant_begin(&c, d->t->id.code) == KH_OK && audit(c, d, "{}") == KH_OK &&
        kh_db_commit(c) == KH_OK)
        return;
fail:
    kh_db_rollback(c);
    gw_answer_clear(&a);
    khc_wipe(local_id, sizeof local_id);
}

/* ------------------------------------------------------------ the outbox */

typedef struct delivery delivery;
struct delivery {
    gw_tenant *t;
    char msg_id[2 * KH_MSG_ID_LEN + 1];
    uint8_t *env;
    size_t envlen;
    int64_t expires_at;
    int attempts;
    kh_err err;
    char msg[160];
    delivery *next;
};

static struct event *outbox_ev;
static bool scanning;
static int in_flight;
static delivery *scanned;

static void delivery_free(delivery *dl)
{
    free(dl->env);
    free(dl);
}

static void scan_work(PGconn *home, void *arg)
{
    for (size_t i = 0; i < G.ntenants && !G.stopping; i++) {
        gw_tenant *t = &G.tenants[i];
        PGconn *c = home;
        if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            continue;
        PGresult *x = kh_db_exec(c,
                                 "WITH o AS (UPDATE outbox SET state = 'failed', last_code = "
                                 "'KH-4007' WHERE state = 'queued' AND expires_at < now() "
                                 "RETURNING *) INSERT INTO provision_record (msg_id, direction, "
                                 "counterpart, outcome, code) SELECT in_reply_to, 'answered', "
                                 "recipient, 'undelivered', 'KH-4007' FROM o",
                                 0, NULL);
        PQclear(x);
        PGresult *r = kh_db_exec(
            c,
            "UPDATE outbox SET next_attempt_at = now() + interval '" KH_STR(
                OUTBOX_LEASE_S) " seconds', attempts = attempts + 1 WHERE msg_id IN (SELECT msg_id "
                                "FROM outbox "
                                "WHERE state = 'queued' AND next_attempt_at <= now() ORDER BY "
                                "next_attempt_at "
                                "LIMIT " KH_STR(OUTBOX_BATCH) " FOR UPDATE SKIP LOCKED) RETURNING "
                                                              "msg_id, envelope, "
                                                              "extract(epoch FROM "
                                                              "expires_at)::bigint, attempts",
            0, NULL);
        if (r == NULL || kh_db_commit(c) != KH_OK) {
            PQclear(r);
            kh_db_rollback(c);
            continue;
        }
        for (int k = 0; k < PQntuples(r); k++) {
            delivery *dl = calloc(1, sizeof *dl);
            size_t n = 0;
            unsigned char *raw =
                dl ? PQunescapeBytea((const unsigned char *)PQgetvalue(r, k, 1), &n) : NULL;
            if (raw == NULL || (dl->env = malloc(n ? n : 1)) == NULL) {
                PQfreemem(raw);
                free(dl);
                continue;
            }
            memcpy(dl->env, raw, n);
            PQfreemem(raw);
            dl->envlen = n;
            dl->t = t;
            snprintf(dl->msg_id, sizeof dl->msg_id, "%s", PQgetvalue(r, k, 0));
            dl->expires_at = strtoll(PQgetvalue(r, k, 2), NULL, 10);
            dl->attempts = atoi(PQgetvalue(r, k, 3));
            dl->next = scanned;
            scanned = dl;
        }
        PQclear(r);
    }
}

static void mark_work(PGconn *c, void *arg)
{
    delivery *dl = arg;
    int backoff = 1 << (dl->attempts < 7 ? dl->attempts : 6);
    if (backoff > OUTBOX_RETRY_MAX_S)
        backoff = OUTBOX_RETRY_MAX_S;
    bool retry = dl->err == KH_E_UPSTREAM || dl->err == KH_E_OVERLOADED || dl->err == KH_E_DB ||
                 dl->err == KH_E_TIMEOUT;
    const char *state = dl->err == KH_OK ? "delivered" : retry ? "queued" : "failed";
    if (retry && (int64_t)time(NULL) + backoff >= dl->expires_at)
        state = "failed";
    char b[16];
    snprintf(b, sizeof b, "%d", backoff);
    const char *p[4] = {dl->msg_id, state, dl->err == KH_OK ? NULL : kh_err_code(dl->err), b};
    if (kh_db_tenant_begin(&c, dl->t->id.code) != KH_OK)
        return;
    /* a deferred answer given up is recorded as undelivered: the earlier
     * record of the decision says what was decided, this one that it never
     * reached the asker */
    PGresult *r = kh_db_exec(c,
                             "WITH o AS (UPDATE outbox SET state = $2, last_code = $3, "
                             "next_attempt_at = now() + make_interval(secs => $4::int) WHERE "
                             "msg_id = $1 RETURNING *) INSERT INTO provision_record (msg_id, "
                             "direction, counterpart, outcome, code) SELECT in_reply_to, "
                             "'answered', recipient, 'undelivered', last_code FROM o WHERE "
                             "state = 'failed'",
                             4, p);
    if (r != NULL && kh_db_commit(c) == KH_OK) {
        PQclear(r);
        if (strcmp(state, "queued") != 0)
            kh_info("outbox", "tenant %s: deferred answer %s %s %s", dl->t->id.code, dl->msg_id,
                    state, dl->err == KH_OK ? "" : kh_err_code(dl->err));
        return;
    }
    PQclear(r);
    kh_db_rollback(c);
}

static void mark_done(void *arg)
{
    delivery_free(arg);
    in_flight--;
}

static void on_delivered(int status, const uint8_t *buf, size_t len, void *arg)
{
    delivery *dl = arg;
    dl->err = KH_OK;
    if (status == 0)
        dl->err = KH_E_UPSTREAM;
    else if (status != 200)
        dl->err = gw_relayed_refusal(buf, len, dl->msg, sizeof dl->msg);
    if (kh_pool_submit(G.pool, mark_work, mark_done, dl) != 0) {
        delivery_free(dl); /* the lease runs out and the row is tried again */
        in_flight--;
    }
}

static void scan_done(void *arg)
{
    scanning = false;
    for (delivery *dl = scanned, *next; dl != NULL; dl = next) {
        next = dl->next;
        in_flight++;
        if (G.stopping || kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_POST, G.set.router,
                                          "/v1/envelope", dl->env, dl->envlen, 30000, "ROUTER",
                                          "router", on_delivered, dl) != 0) {
            delivery_free(dl);
            in_flight--;
        }
    }
    scanned = NULL;
}

static void on_outbox_timer(evutil_socket_t fd, short what, void *arg)
{
    if (scanning || in_flight > 0 || G.stopping)
        return;
    scanning = true;
    if (kh_pool_submit(G.pool, scan_work, scan_done, NULL) != 0)
        scanning = false;
}

int gw_outbox_start(char *err, size_t errlen)
{
    struct timeval tv = {1, 0};
    outbox_ev = event_new(G.base, -1, EV_PERSIST, on_outbox_timer, NULL);
    if (outbox_ev == NULL || event_add(outbox_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot start the outbox");
        return -1;
    }
    return 0;
}

void gw_outbox_stop(void)
{
    if (outbox_ev)
        event_free(outbox_ev);
    outbox_ev = NULL;
    for (delivery *dl = scanned, *next; dl != NULL; dl = next) {
        next = dl->next;
        delivery_free(dl);
    }
    scanned = NULL;
}
