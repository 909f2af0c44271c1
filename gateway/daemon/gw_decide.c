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
 * (queued, delivered, failed) is kept with the row.
 * A held query nobody decided by its deadline (the tenant's hold_policy
 * when it arrived) expires: the outbox's scan sends the asker an EXPIRED
 * deferred answer (KH-2011) and records it; a decision after the deadline is
 * refused (KH-6011). */
#include "gw_decide.h"
#include "gw_record.h"
#include "gw_router.h"
#include "gw_answer.h"
#include "gw_dir.h"

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

/* A held query as pending_answer keeps it, and the answer to it in the
 * making (its fields point into the row's copies). */
typedef struct {
    char sender[16], procedure[KH_CODE_MAX + 1], subject[40], local_id[32], staff[40];
    char asked[KH_MAX_ITEMS][KH_CODE_MAX + 1];
    char *asked_p[KH_MAX_ITEMS];
    size_t nasked;
} held_row;

/* The row's first columns must be: sender, procedure, items::text, subject,
 * local_id, staff_id. Sets up a (zeroed first) to answer it for tenant t
 * under directory version dir. */
#define HELD_COLUMNS "sender, procedure, items::text, subject, local_id, staff_id"
static kh_err held_read(PGresult *r, held_row *h, gw_tenant *t, const kh_dir *dir, gw_answer *a)
{
    snprintf(h->sender, sizeof h->sender, "%s", PQgetvalue(r, 0, 0));
    snprintf(h->procedure, sizeof h->procedure, "%s", PQgetvalue(r, 0, 1));
    kh_err e = parse_codes(PQgetvalue(r, 0, 2), h->asked, &h->nasked);
    snprintf(h->subject, sizeof h->subject, "%s", PQgetvalue(r, 0, 3));
    snprintf(h->local_id, sizeof h->local_id, "%s", PQgetvalue(r, 0, 4));
    snprintf(h->staff, sizeof h->staff, "%s", PQgetvalue(r, 0, 5));
    for (size_t i = 0; i < h->nasked; i++)
        h->asked_p[i] = h->asked[i];
    memset(a, 0, sizeof *a);
    a->dir = dir;
    a->t = t;
    a->asker = h->sender;
    a->procedure = h->procedure;
    a->items = h->asked_p;
    a->nitems = h->nasked;
    a->subject = h->subject;
    return e;
}

/* Concludes a held query in the current tenant transaction: its row moves
 * to state (by whom, the items approved, why), the sealed answer (if any)
 * goes into the outbox, and the provision record is written with code. */
static kh_err held_conclude(PGconn *c, const char *msg_id, const held_row *h, const gw_answer *a,
                            const char *state, const char *by, const char *approved,
                            const char *reason, kh_err code)
{
    char answer_id[2 * KH_MSG_ID_LEN + 1], exp[24];
    khc_hex(a->msg_id, KH_MSG_ID_LEN, answer_id);
    snprintf(exp, sizeof exp, "%lld", (long long)time(NULL) + G.ttl);
    char *env = a->sealed ? gw_bytea_literal(a->sealed, a->sealedlen) : NULL;
    const char *u[5] = {msg_id, state, by, approved, reason};
    const char *o[5] = {answer_id, msg_id, h->sender, env, exp};
    PGresult *r1 = NULL, *r2 = NULL;
    if (env != NULL || a->sealed == NULL)
        r1 =
            kh_db_exec(c,
                       "UPDATE pending_answer SET state = $2, decided_by = $3, decided_at = now(), "
                       "approved_items = $4::text[], reason = $5 WHERE msg_id = $1",
                       5, u);
    if (r1 != NULL && env != NULL)
        r2 = kh_db_exec(c,
                        "INSERT INTO outbox (msg_id, in_reply_to, recipient, envelope, expires_at) "
                        "VALUES ($1, $2, $3, $4::bytea, to_timestamp($5::bigint))",
                        5, o);
    kh_err e = r1 != NULL && (env == NULL || r2 != NULL) ? KH_OK : KH_E_DB;
    free(env);
    PQclear(r1);
    PQclear(r2);
    if (e == KH_OK)
        e = gw_record(c, msg_id, "answered", h->sender, h->procedure, h->asked_p, h->nasked,
                      h->local_id[0] ? h->local_id : NULL, h->staff, a->outcome, code, a->data,
                      a->ndata);
    return e;
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

static void decide(PGconn *c, gw_decision *d, const kh_dir *dir)
{
    held_row h;
    memset(&h, 0, sizeof h);
    gw_answer a;
    memset(&a, 0, sizeof a);
    char as_of[16] = "";
    if (kh_db_tenant_begin(&c, d->t->id.code) != KH_OK) {
        decide_set(d, KH_E_DB, "database unavailable");
        return;
    }
    const char *p[1] = {d->msg_id};
    PGresult *r = kh_db_exec(c,
                             "SELECT " HELD_COLUMNS
                             ", as_of, CASE WHEN state = 'pending' AND deadline <= now() THEN "
                             "'expired' ELSE state END FROM pending_answer WHERE msg_id = $1 FOR "
                             "UPDATE",
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
        if (strcmp(PQgetvalue(r, 0, 7), "expired") == 0)
            snprintf(d->msg, sizeof d->msg, "the held query expired at its deadline");
        else
            snprintf(d->msg, sizeof d->msg, "the query was already decided (%s)",
                     PQgetvalue(r, 0, 7));
        d->err = KH_E_ADM_CONFLICT;
        PQclear(r);
        goto refused;
    }
    kh_err e = held_read(r, &h, d->t, dir, &a);
    snprintf(as_of, sizeof as_of, "%s", PQgetvalue(r, 0, 6));
    PQclear(r);
    if (e != KH_OK) {
        decide_set(d, KH_E_INTERNAL, "stored items unreadable");
        goto fail;
    }
    /* the approved items must be items that were asked */
    for (size_t i = 0; d->approve && i < d->nitems; i++) {
        bool ok = false;
        for (size_t k = 0; k < h.nasked; k++)
            ok = ok || strcmp(d->items[i], h.asked[k]) == 0;
        if (!ok) {
            snprintf(d->msg, sizeof d->msg, "items: %s was not asked for by this query",
                     d->items[i]);
            d->err = KH_E_ADM_FIELD;
            goto refused;
        }
    }
    if (khc_unhex(d->msg_id, strlen(d->msg_id), a.in_reply_to, KH_MSG_ID_LEN) != 0 ||
        kh_dir_legal(dir, h.sender, h.procedure, d->t->id.code, h.asked_p, h.nasked, &a.row) !=
            KH_OK) {
        decide_set(d, KH_E_NO_LEGAL_BASIS, "no legal-basis row allows this query any more");
        goto refused;
    }
    char hold_ids[512];
    if (d->approve) {
        /* items not approved are withheld; non-disclosure still applies */
        for (size_t k = 0; d->nitems > 0 && k < h.nasked; k++) {
            bool approved = false;
            for (size_t i = 0; i < d->nitems; i++)
                approved = approved || strcmp(d->items[i], h.asked[k]) == 0;
            if (!approved)
                gw_answer_withhold(&a, h.asked[k]);
        }
        e = gw_answer_flags(c, &a, h.local_id, hold_ids, sizeof hold_ids);
        if (e == KH_OK)
            e = gw_answer_read(c, &a, h.local_id, as_of, d->msg, sizeof d->msg);
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
    char approved[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    char *ap[KH_MAX_ITEMS];
    size_t nap = 0;
    for (size_t k = 0; d->approve && k < h.nasked; k++) {
        bool w = false;
        for (size_t i = 0; i < a.nwithheld; i++)
            w = w || a.withheld[i] == h.asked_p[k];
        if (!w)
            ap[nap++] = h.asked_p[k];
    }
    gw_codes_literal(ap, nap, approved, sizeof approved);
    e = held_conclude(c, d->msg_id, &h, &a, d->approve ? "approved" : "refused", d->operator_name,
                      d->approve ? approved : NULL, d->reason[0] ? d->reason : NULL,
                      d->approve ? KH_OK : KH_E_MANUAL_REFUSAL);
    char detail[160];
    snprintf(detail, sizeof detail, "{\"decision\": \"%s\", \"result\": \"%s\", \"items\": %d}",
             d->approve ? "approve" : "refuse", a.result, (int)nap);
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
    khc_wipe(&h, sizeof h);
    return;
refused:
    /* nothing changed; the refused attempt is recorded in the audit log */
    kh_db_rollback(c);
    khc_wipe(&h, sizeof h);
    if (kh_db_tenant_begin(&c, d->t->id.code) == KH_OK && audit(c, d, "{}") == KH_OK &&
        kh_db_commit(c) == KH_OK)
        return;
fail:
    kh_db_rollback(c);
    gw_answer_clear(&a);
    khc_wipe(&h, sizeof h);
}

void gw_decide_run(PGconn *c, gw_decision *d)
{
    const kh_dir *dir = gw_dir_hold();
    decide(c, d, dir);
    gw_dir_drop(dir);
}

/* ------------------------------------------------------------- expiring */

/* One held query past its deadline, if any, other than those in skip (a
 * text[] literal of the ids this scan could not expire): in one tenant
 * transaction the row is taken (SKIP LOCKED: one node expires it), moved to
 * 'expired', recorded (answered, expired, KH-2011), and its EXPIRED deferred
 * answer put in the outbox. An asker no longer in the directory cannot be
 * sealed to: the row expires all the same, and the asker's gateway ends its
 * query itself after the deadline (gw_lease.c). Returns 1 (one expired), 0
 * (none left), -1 (one could not be expired: its id is added to skip, and the
 * next scan tries it again). */
static int expire_one(PGconn *c, gw_tenant *t, const kh_dir *dir, char *skip, size_t skiplen)
{
    char msg_id[2 * KH_MSG_ID_LEN + 1];
    held_row h;
    gw_answer a;
    if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
        return 0;
    const char *p[1] = {skip};
    PGresult *r = kh_db_exec(c,
                             "SELECT " HELD_COLUMNS ", msg_id FROM pending_answer WHERE state = "
                             "'pending' AND deadline <= now() AND msg_id <> ALL($1::text[]) ORDER "
                             "BY deadline LIMIT 1 FOR UPDATE SKIP LOCKED",
                             1, p);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        kh_db_rollback(c);
        return 0;
    }
    kh_err e = held_read(r, &h, t, dir, &a);
    snprintf(msg_id, sizeof msg_id, "%s", PQgetvalue(r, 0, 6));
    PQclear(r);
    a.result = "EXPIRED";
    a.outcome = "expired";
    /* only an asker unknown to the directory goes untold; any other failure
     * to seal leaves the row for the next scan */
    bool known = kh_dir_org(dir, h.sender) != NULL;
    if (e == KH_OK && known &&
        (khc_unhex(msg_id, strlen(msg_id), a.in_reply_to, KH_MSG_ID_LEN) != 0 ||
         gw_answer_seal(&a, "DEFERRED", kh_err_code(KH_E_HOLD_EXPIRED)) != KH_OK))
        e = KH_E_INTERNAL;
    bool ok = e == KH_OK &&
              held_conclude(c, msg_id, &h, &a, "expired", NULL, NULL,
                            "no decision before the deadline", KH_E_HOLD_EXPIRED) == KH_OK &&
              kh_db_commit(c) == KH_OK;
    gw_answer_clear(&a);
    if (!ok) {
        kh_db_rollback(c);
        kh_warn("decide", "tenant %s: held query %s past its deadline not expired yet (%s)",
                t->id.code, msg_id, e == KH_OK ? "database" : "answer not sealed");
        size_t n = strlen(skip);
        if (n + sizeof msg_id + 2 < skiplen) /* {a,b,...} */
            snprintf(skip + n - 1, skiplen - n + 1, "%s%s}", n > 2 ? "," : "", msg_id);
    } else if (known) {
        kh_info("decide", "tenant %s: held query %s expired (KH-2011)", t->id.code, msg_id);
    } else {
        kh_warn("decide",
                "tenant %s: held query %s expired; asker %s not in the directory, not told",
                t->id.code, msg_id, h.sender);
    }
    khc_wipe(&h, sizeof h);
    return ok ? 1 : -1;
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
    for (size_t i = 0, nt = gw_tenant_count(); i < nt && !G.stopping; i++) {
        gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        PGconn *c = home;
        const kh_dir *dir = gw_dir_hold();
        char skip[OUTBOX_BATCH * (2 * KH_MSG_ID_LEN + 1) + 4] = "{}";
        for (int n = 0; n < OUTBOX_BATCH && !G.stopping && expire_one(c, t, dir, skip, sizeof skip);
             n++)
            ;
        gw_dir_drop(dir);
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
