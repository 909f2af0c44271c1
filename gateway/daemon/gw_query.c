/* gw_query.c: queries on the asking side (flow 2) and their lifecycle.
 *   POST /v1/query         ask another organisation; wait for the answer up to
 *                          timeout_ms, or (async) return the handle at once
 * (The lookups by handle are gw_lookup.c; deferred answers gw_deferred.c.)
 * Every query gets a handle (its message id) and a row in the tenant's
 * `query` table before anything is sent: sent -> answered | pending |
 * refused | failed, and timed_out when the business system stopped waiting
 * (a late answer still moves it to answered). Delivery is retried with
 * backoff while the message is valid if the router or the answering gateway
 * cannot be reached; every attempt carries the same sealed envelope, so the
 * answering side recognises a retransmission by its message id and answers
 * it once. */
#include "gw_query.h"
#include "khpb.h"

#include "gw_ident.h"
#include "gw_dir.h"
#include "gw_qstate.h"
#include "gw_record.h"
#include "gw_req.h"
#include "gw_router.h"

#include "idconv.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khid.h"
#include "khlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_FIRST_MS 500
#define RETRY_MAX_MS 15000
#define ATTEMPT_MAX_MS 60000

typedef struct gw_query gw_query;
struct gw_query {
    struct evhttp_request *req; /* NULL once answered or the client has gone */
    gw_tenant *t;
    char system[40];
    kh_err err;
    char msg[256];
    uint8_t msg_id[KH_MSG_ID_LEN];
    char hex[2 * KH_MSG_ID_LEN + 1];
    Kh__QueryRequest *q;
    Kh__AnswerBody *ans;
    char link_code[KH_ID_LINK_CODE_LEN + 1];
    uint8_t *env; /* the sealed query: the same bytes on every attempt */
    size_t envlen;
    uint8_t *reply; /* the router's 200 reply, opened on a worker (record_work) */
    size_t replylen;
    int64_t expires_at;
    int timeout_ms;
    int attempts;
    bool in_flight;    /* an HTTP attempt is running */
    const kh_dir *dir; /* the directory version it started with (held: gw_dir.h) */
    const char *row;   /* the legal-basis row that allows the query (in dir) */
    const char *state;
    struct event *wait_ev, *retry_ev;
    gw_query *next, *prev; /* live queries, freed at shutdown */
};

static gw_query *live;
static size_t nlive;
#define MAX_LIVE 4096 /* queries in memory (waiting, sending, retrying) */

static void qc_free(gw_query *qc)
{
    gw_req_take(&qc->req);
    gw_dir_drop(qc->dir);
    if (qc->prev)
        qc->prev->next = qc->next;
    else if (live == qc)
        live = qc->next;
    if (qc->next)
        qc->next->prev = qc->prev;
    nlive--;
    if (qc->wait_ev)
        event_free(qc->wait_ev);
    if (qc->retry_ev)
        event_free(qc->retry_ev);
    if (qc->q)
        kh__query_request__free_unpacked(qc->q, NULL);
    if (qc->ans) {
        kh_items_wipe(qc->ans->data, qc->ans->n_data);
        kh__answer_body__free_unpacked(qc->ans, NULL);
    }
    if (qc->env != NULL) /* its header names the link code */
        khc_free_secret(qc->env, qc->envlen);
    if (qc->reply != NULL)
        khc_free_secret(qc->reply, qc->replylen);
    khc_wipe(qc->link_code, sizeof qc->link_code);
    free(qc);
}

static void live_add(gw_query *qc)
{
    qc->next = live;
    if (live)
        live->prev = qc;
    live = qc;
    nlive++;
}

void gw_query_stop(void)
{
    /* queries waiting for a retry or a client; those with an attempt in
     * flight are freed by the attempt's callback */
    for (gw_query *qc = live, *next; qc != NULL; qc = next) {
        next = qc->next;
        if (!qc->in_flight)
            qc_free(qc);
    }
}

#define qc_set(qc, e, ...) kh_err_set(&(qc)->err, (qc)->msg, sizeof(qc)->msg, e, __VA_ARGS__)

static void submit(gw_query *qc, kh_pool_work_fn w, kh_pool_done_fn d);

/* ----------------------------------------------------------- the checks */

static kh_err staff_may(PGconn *c, const char *staff, const char *procedure, char *msg,
                        size_t msglen)
{
    const char *p[2] = {staff, procedure};
    PGresult *r = kh_db_exec(
        c,
        "SELECT (SELECT count(*) FROM staff WHERE staff_id = $1 AND active), "
        "(SELECT count(*) FROM staff_role sr JOIN role_procedure rp USING (role_code) "
        " WHERE sr.staff_id = $1 AND rp.procedure = $2 AND sr.valid_from <= current_date "
        " AND (sr.valid_to IS NULL OR sr.valid_to > current_date))",
        2, p);
    if (r == NULL)
        return KH_E_DB;
    bool active = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    bool role = strcmp(PQgetvalue(r, 0, 1), "0") != 0;
    PQclear(r);
    if (!active) {
        snprintf(msg, msglen, "staff_id '%s' is not an active staff member of this tenant", staff);
        return KH_E_STAFF_UNKNOWN;
    }
    if (!role) {
        snprintf(msg, msglen, "staff member '%s' has no current role covering procedure %s", staff,
                 procedure);
        return KH_E_ROLE;
    }
    return KH_OK;
}

/* The query's row, in the state its checks left it: sent, with its sealed
 * envelope and this node's lease (gw_lease.c), or refused (failed when it
 * could not be built). */
static kh_err insert_row(PGconn *c, gw_query *qc)
{
    Kh__QueryRequest *q = qc->q;
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4], exp[24];
    gw_codes_literal(q->items, q->n_items, lit, sizeof lit);
    snprintf(exp, sizeof exp, "%lld", (long long)qc->expires_at);
    bool refused = qc->err != KH_OK;
    char *env = refused ? NULL : gw_bytea_literal(qc->env, qc->envlen);
    if (!refused && env == NULL)
        return KH_E_DB; /* out of memory: the transaction is rolled back */
    const char *p[14] = {qc->hex,
                         qc->system,
                         q->staff_id,
                         q->procedure,
                         q->provider,
                         lit,
                         q->local_id,
                         q->as_of,
                         !refused                   ? "sent"
                         : qc->err == KH_E_INTERNAL ? "failed"
                                                    : "refused",
                         refused ? kh_err_code(qc->err) : NULL,
                         refused ? qc->msg : NULL,
                         exp,
                         env,
                         refused ? NULL : G.node};
    /* deferred: its outcome comes with the commit */
    kh_err e = kh_db_defer(c,
                           "INSERT INTO query (msg_id, system_id, staff_id, procedure, provider, "
                           "items, local_id, as_of, state, code, message, expires_at, envelope, "
                           "node, lease_until) VALUES ($1,$2,$3,$4,$5,$6::text[],$7,$8,$9,$10,$11,"
                           "to_timestamp($12),$13::bytea,$14,CASE WHEN $14::text IS NULL THEN "
                           "NULL ELSE now() + interval '" KH_STR(GW_LEASE_S) " seconds' END)",
                           14, p);
    if (env != NULL) /* its header names the link code (the row keeps it while in flight) */
        khc_free_secret(env, strlen(env));
    return e;
}

/* On the worker, in the query's transaction, before its row is written
 * (the row keeps it: another node can send it again, gw_lease.c): the
 * query's envelope, sealed to the provider; qc->env stays NULL if it cannot
 * be built. Sealing here keeps the signatures and the key agreement off the
 * event loop; the transaction has written nothing yet, so it holds no lock
 * meanwhile. */
static void seal_query(gw_query *qc)
{
    Kh__QueryRequest *q = qc->q;
    const kh_org *prov = kh_dir_org(qc->dir, q->provider);
    Kh__Header h;
    Kh__QueryBody b = KH__QUERY_BODY__INIT;
    uint8_t *body = NULL;
    size_t blen = 0;
    uint8_t id[KH_MSG_ID_LEN];
    if (kh_header_init(&h, id, KH__MSG_TYPE__QUERY, qc->t->id.code, q->provider, qc->t->id.code,
                       G.ttl) != 0)
        goto fail;
    memcpy(h.msg_id.data, qc->msg_id, KH_MSG_ID_LEN); /* the handle the row already has */
    h.expires_at = qc->expires_at;
    h.procedure = q->procedure;
    h.items = q->items;
    h.n_items = q->n_items;
    h.subject = qc->link_code;
    b.msg_id = h.msg_id;
    b.sender = qc->t->id.code;
    b.recipient = q->provider;
    b.procedure = q->procedure;
    b.items = q->items;
    b.n_items = q->n_items;
    b.staff_id = q->staff_id;
    b.as_of = q->as_of;
    if (prov == NULL || kh_pb_pack(&b.base, &body, &blen) != 0 ||
        kh_env_seal(&h, &qc->t->id, body, blen, prov->enc_cert, &qc->env, &qc->envlen) != 0)
        goto fail;
    khc_free_secret(body, blen);
    khc_wipe(qc->link_code, sizeof qc->link_code);
    return;
fail:
    khc_free_secret(body, blen);
    khc_wipe(qc->link_code, sizeof qc->link_code);
    free(qc->env);
    qc->env = NULL;
}

static void check_work(PGconn *c, void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
    if (kh_db_tenant_begin(&c, qc->t->id.code) != KH_OK) {
        qc_set(qc, KH_E_DB, "database unavailable");
        return;
    }
    if (qc->err == KH_OK) /* legal basis was checked on the loop */
        qc->err = gw_permitted(c, qc->system, "query", q->procedure, qc->msg, sizeof qc->msg);
    if (qc->err == KH_OK)
        qc->err = staff_may(c, q->staff_id, q->procedure, qc->msg, sizeof qc->msg);
    if (qc->err == KH_OK) {
        /* only an absent link code is the client's: a failed lookup is ours */
        kh_err le = idconv_link_of(c, q->local_id, qc->link_code);
        if (le == KH_E_UNKNOWN_LOCAL_ID)
            qc_set(qc, le, "local_id has no link code at this tenant");
        else if (le != KH_OK)
            qc_set(qc, le, "cannot read the link code of local_id");
    }
    if (qc->err == KH_E_DB || qc->err == KH_E_INTERNAL) {
        /* a failed statement (or the deferred begin before it) says no more */
        if (qc->msg[0] == '\0')
            snprintf(qc->msg, sizeof qc->msg, "%s", kh_err_get(qc->err)->meaning);
        kh_db_rollback(c);
        return;
    }
    /* the decision, the query's row and (if refused) its provision record:
     * one transaction, so no decision goes unrecorded. The record chains are
     * appended last: each append locks its chain's head until the commit. */
    kh_err decision = qc->err; /* the access record's: a failure to seal is not one */
    if (qc->err == KH_OK) {
        seal_query(qc);
        if (qc->env == NULL)
            qc_set(qc, KH_E_INTERNAL, "cannot build the query");
    }
    kh_err e = insert_row(c, qc);
    if (e == KH_OK)
        e = gw_access(c, qc->hex, "business", qc->system, "query", q->staff_id, q->procedure,
                      q->items, q->n_items, decision);
    if (e == KH_OK && qc->err != KH_OK)
        e = gw_record(c, qc->hex, "asked", q->provider, q->procedure, q->items, q->n_items,
                      q->local_id, q->staff_id, qc->err == KH_E_INTERNAL ? "failed" : "refused",
                      qc->err, NULL, 0);
    if (e == KH_OK)
        e = kh_db_commit(c);
    if (e != KH_OK) {
        kh_db_rollback(c);
        qc_set(qc, KH_E_DB, "cannot record the query");
    }
}

/* ------------------------------------------------------------- sending */

static void send_attempt(gw_query *qc);
static void on_sent(int status, const uint8_t *buf, size_t len, void *arg);
static void record_work(PGconn *c, void *arg);
static void record_done(void *arg);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    send_attempt(arg);
}

typedef struct {
    char tenant[16];
    char hex[2 * KH_MSG_ID_LEN + 1];
} timed_out_job;

static void timed_out_work(PGconn *c, void *arg)
{
    timed_out_job *j = arg;
    const char *p[1] = {j->hex};
    if (kh_db_tenant_begin(&c, j->tenant) != KH_OK)
        return;
    PGresult *r = kh_db_exec(c,
                             "UPDATE query SET state = 'timed_out', code = 'KH-5005', "
                             "updated_at = now() WHERE msg_id = $1 AND state = 'sent'",
                             1, p);
    if (r != NULL && kh_db_commit(c) == KH_OK) {
        PQclear(r);
        return;
    }
    PQclear(r);
    kh_db_rollback(c);
}

static void timed_out_done(void *arg)
{
    free(arg);
}

/* The business system stopped waiting: it gets the handle, the query goes on. */
static void on_wait_over(evutil_socket_t fd, short what, void *arg)
{
    gw_query *qc = arg;
    struct evhttp_request *req = gw_req_take(&qc->req);
    if (req == NULL)
        return;
    gw_qstate_reply(req, qc->hex, "timed_out", KH_E_TIMEOUT,
                    "no answer within the timeout; the query goes on: ask for it by handle", NULL);
    timed_out_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return;
    snprintf(j->tenant, sizeof j->tenant, "%s", qc->t->id.code);
    memcpy(j->hex, qc->hex, sizeof j->hex);
    if (kh_pool_submit(G.pool, timed_out_work, timed_out_done, j) != 0)
        free(j);
}

void gw_query_release_waiters(void)
{
    for (gw_query *qc = live; qc != NULL; qc = qc->next)
        on_wait_over(-1, 0, qc); /* nothing if no business system waits on it */
}

static void check_done(void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
    if (G.stopping && qc->err == KH_OK) {
        /* its row is committed, sent, with this node's lease: another node
         * (or this one restarted) sends it once the lease is handed over at
         * the end of the stop (gw_lease_hand_over), or runs out */
        kh_info("biz", "tenant %s: query %s left to another node (stopping)", qc->t->id.code,
                qc->hex);
        struct evhttp_request *req = gw_req_take(&qc->req);
        if (req != NULL)
            gw_qstate_reply(req, qc->hex, "sent", KH_OK, NULL, NULL);
        qc_free(qc);
        return;
    }
    if (qc->err != KH_OK) {
        kh_info("biz", "tenant %s: query %s refused %s", qc->t->id.code, qc->hex,
                kh_err_code(qc->err));
        struct evhttp_request *req = gw_req_take(&qc->req);
        if (req != NULL)
            kh_http_reply_err(req, qc->err, "%s (handle %s)", qc->msg, qc->hex);
        qc_free(qc);
        return;
    }
    qc->wait_ev = evtimer_new(G.base, on_wait_over, qc);
    qc->retry_ev = evtimer_new(G.base, on_retry, qc);
    if (qc->wait_ev == NULL || qc->retry_ev == NULL)
        goto fail;
    kh_info("biz", "tenant %s: query %s to %s procedure %s", qc->t->id.code, qc->hex, q->provider,
            q->procedure);
    if (q->async) {
        struct evhttp_request *req = gw_req_take(&qc->req);
        if (req != NULL)
            gw_qstate_reply(req, qc->hex, "sent", KH_OK, NULL, NULL);
    } else {
        struct timeval tv = {qc->timeout_ms / 1000, (qc->timeout_ms % 1000) * 1000};
        evtimer_add(qc->wait_ev, &tv);
    }
    send_attempt(qc);
    return;
fail:
    /* the row says sent: it must not stay so */
    qc_set(qc, KH_E_INTERNAL, "cannot build the query");
    qc->state = "failed";
    submit(qc, record_work, record_done);
}

static void send_attempt(gw_query *qc)
{
    int64_t left_ms = (qc->expires_at - (int64_t)time(NULL)) * 1000;
    int attempt_ms = left_ms < ATTEMPT_MAX_MS ? (int)left_ms : ATTEMPT_MAX_MS;
    if (attempt_ms < 1000)
        attempt_ms = 1000;
    qc->attempts++;
    qc->in_flight = true;
    /* on_sent may run before this returns (a refused connect) */
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_POST, G.set.router, "/v1/envelope",
                        qc->env, qc->envlen, attempt_ms, "ROUTER", "router", on_sent, qc) != 0)
        on_sent(0, NULL, 0, qc);
}

/* KH-4006 too: our envelopes are never reused for another payload, so a
 * "replay" of ours is a copy the answering side is still answering (two
 * nodes sent it, gw_lease.c); the next attempt gets the answer it kept. */
static bool retryable(kh_err e)
{
    return e == KH_E_UPSTREAM || e == KH_E_OVERLOADED || e == KH_E_DB || e == KH_E_TIMEOUT ||
           e == KH_E_REPLAY;
}

/* Checks an answer body against the query and its header. */
static bool answer_ok(const gw_query *qc, const Kh__Header *h, const Kh__AnswerBody *a)
{
    const Kh__QueryRequest *q = qc->q;
    bool pending = strcmp(a->result, "PENDING") == 0;
    bool ok =
        a->msg_id.len == KH_MSG_ID_LEN && h->msg_id.len == KH_MSG_ID_LEN &&
        memcmp(a->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) == 0 &&
        a->in_reply_to.len == KH_MSG_ID_LEN &&
        memcmp(a->in_reply_to.data, qc->msg_id, KH_MSG_ID_LEN) == 0 && gw_answer_consistent(a) &&
        strcmp(a->sender, q->provider) == 0 && strcmp(a->recipient, qc->t->id.code) == 0 &&
        strcmp(a->procedure, q->procedure) == 0 &&
        kh_items_equal(a->items, a->n_items, h->items, h->n_items) &&
        kh_items_equal(a->items, a->n_items, q->items, q->n_items) && !a->deferred &&
        (strcmp(a->result, "FOUND") == 0 || strcmp(a->result, "NOT_FOUND") == 0 ||
         strcmp(a->result, "WITHHELD") == 0 || pending) &&
        pending == (strcmp(h->answer_state, "PENDING") == 0) &&
        (!pending || (a->n_data == 0 && a->n_withheld == 0)) && (pending || a->decide_by == 0) &&
        a->code[0] == '\0' && (a->decide_by == 0 || gw_decide_by_plausible(a->decide_by));
    /* an answer may carry only items that were asked for, each once, and
     * never an item it says is withheld */
    for (size_t i = 0; ok && i < a->n_data + a->n_withheld; i++) {
        const char *code = i < a->n_data ? a->data[i]->item_code : a->withheld[i - a->n_data];
        bool asked = false;
        for (size_t k = 0; k < q->n_items; k++)
            asked = asked || strcmp(code, q->items[k]) == 0;
        for (size_t k = 0; k < i; k++) {
            const char *o = k < a->n_data ? a->data[k]->item_code : a->withheld[k - a->n_data];
            ok = ok && strcmp(o, code) != 0;
        }
        ok = ok && asked;
    }
    return ok;
}

static void on_sent(int status, const uint8_t *buf, size_t len, void *arg)
{
    gw_query *qc = arg;
    qc->in_flight = false;
    if (status == 200)
        evtimer_del(qc->wait_ev); /* the client gets what arrived, not TIMED_OUT */
    qc->err = KH_OK;
    if (status == 0)
        qc_set(qc, KH_E_UPSTREAM, "router unreachable");
    else if (status != 200)
        qc->err = gw_relayed_refusal(buf, len, qc->msg, sizeof qc->msg);
    if (qc->err != KH_OK && retryable(qc->err)) {
        int delay = RETRY_FIRST_MS << (qc->attempts < 6 ? qc->attempts - 1 : 5);
        if (delay > RETRY_MAX_MS)
            delay = RETRY_MAX_MS;
        int64_t now = (int64_t)time(NULL);
        if (!G.stopping && now + (delay + 1999) / 1000 < qc->expires_at) {
            kh_info("biz", "tenant %s: query %s attempt %d: %s; retrying in %d ms", qc->t->id.code,
                    qc->hex, qc->attempts, kh_err_code(qc->err), delay);
            struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
            evtimer_add(qc->retry_ev, &tv);
            return;
        }
        char last[sizeof qc->msg]; /* the message is formatted into qc->msg: not from it */
        snprintf(last, sizeof last, "%s", qc->msg[0] ? qc->msg : "next hop unreachable");
        qc_set(qc, KH_E_UPSTREAM, "not delivered while the message was valid (%d attempts): %s",
               qc->attempts, last);
        qc->state = "failed";
    } else if (qc->err != KH_OK) {
        qc->state = qc->err == KH_E_INTERNAL ? "failed" : "refused";
    } else {
        /* opened on the worker (record_work), off the event loop */
        qc->reply = malloc(len ? len : 1);
        if (qc->reply == NULL) {
            qc_set(qc, KH_E_INTERNAL, "out of memory");
            qc->state = "failed";
        } else {
            memcpy(qc->reply, buf, len);
            qc->replylen = len;
            qc->state = "answered"; /* until open_answer says otherwise */
        }
    }
    submit(qc, record_work, record_done);
}

/* On the worker, before the answer is recorded: the router's reply opened
 * (header signature, freshness, payload opened and its signer checked) and
 * checked against the query; qc->state and qc->err say the outcome. */
static void open_answer(gw_query *qc)
{
    Kh__QueryRequest *q = qc->q;
    const kh_org *prov = kh_dir_org(qc->dir, q->provider);
    Kh__Header *h = NULL;
    size_t blen = 0;
    uint8_t *body = gw_open_from_router(
        qc->t, qc->dir, qc->reply, qc->replylen, KH__MSG_TYPE__ANSWER, qc->msg_id,
        prov ? prov->sign_cert : NULL, q->provider, &h, &blen, &qc->err, qc->msg, sizeof qc->msg);
    if (body != NULL) {
        qc->ans =
            (Kh__AnswerBody *)kh_pb_unpack(&kh__answer_body__descriptor, body, blen, NULL, NULL, 0);
        khc_free_secret(body, blen);
        if (qc->ans == NULL || !answer_ok(qc, h, qc->ans))
            qc_set(qc, KH_E_SPLICE, "answer body does not match its header or query");
        else if (!gw_answer_within_basis(qc->dir, qc->row, qc->ans))
            qc_set(qc, KH_E_OVERSHARE,
                   "the answer carries a field legal-basis row %s does not allow", qc->row);
        kh__header__free_unpacked(h, NULL);
    }
    qc->state = qc->err != KH_OK                          ? "failed"
                : strcmp(qc->ans->result, "PENDING") == 0 ? "pending"
                                                          : "answered";
    khc_free_secret(qc->reply, qc->replylen);
    qc->reply = NULL;
}

static void record_work(PGconn *c, void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
    if (qc->reply != NULL)
        open_answer(qc);
    bool answered = strcmp(qc->state, "answered") == 0 || strcmp(qc->state, "pending") == 0;
    char *ans = answered ? gw_pb_bytea(&qc->ans->base) : NULL;
    char att[16], decide_by[24] = "";
    snprintf(att, sizeof att, "%d", qc->attempts);
    /* a provider of an earlier version gives no deadline: NULL */
    if (strcmp(qc->state, "pending") == 0 && qc->ans->decide_by > 0)
        snprintf(decide_by, sizeof decide_by, "%lld", (long long)qc->ans->decide_by);
    const char *p[9] = {qc->hex,
                        qc->state,
                        qc->err == KH_OK ? NULL : kh_err_code(qc->err),
                        qc->err == KH_OK ? NULL : qc->msg,
                        answered ? qc->ans->result : NULL,
                        ans,
                        att,
                        G.node,
                        decide_by[0] ? decide_by : NULL};
    if (answered && ans == NULL)
        goto fail;
    if (kh_db_tenant_begin(&c, qc->t->id.code) != KH_OK)
        goto fail;
    /* only while this node holds its lease: one that lost it (another node
     * took it over, gw_lease.c) leaves the outcome to that one. The final
     * state drops the envelope (its header names the person's link code)
     * and the lease. */
    PGresult *r = kh_db_exec(c,
                             "UPDATE query SET state = $2, code = $3, message = $4, result = $5, "
                             "answer = $6::bytea, attempts = $7::int, updated_at = now(), "
                             "envelope = NULL, node = NULL, lease_until = NULL, decide_by = "
                             "to_timestamp($9::bigint) WHERE msg_id = $1 AND state IN ('sent', "
                             "'timed_out') AND node = $8",
                             9, p);
    if (r == NULL)
        goto fail;
    bool moved = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!moved) {
        /* the query ended meanwhile (a deferred answer, the sweeper,
         * another node that took it over): its row and records stand;
         * nothing is recorded twice */
        kh_db_rollback(c);
        if (ans)
            khc_wipe(ans, strlen(ans));
        free(ans);
        qc_set(qc, KH_E_UNEXPECTED_ANSWER,
               "the query was completed meanwhile; read its state by handle");
        qc->state = "stale";
        return;
    }
    if (gw_record(c, qc->hex, "asked", q->provider, q->procedure, q->items, q->n_items, q->local_id,
                  q->staff_id, gw_answer_outcome(qc->state, qc->ans), qc->err,
                  answered ? qc->ans->data : NULL, answered ? qc->ans->n_data : 0) != KH_OK ||
        kh_db_commit(c) != KH_OK)
        goto fail;
    if (ans)
        khc_wipe(ans, strlen(ans));
    free(ans);
    return;
fail:
    kh_db_rollback(c);
    if (ans)
        khc_wipe(ans, strlen(ans));
    free(ans);
    /* an answer we cannot record is not delivered */
    qc_set(qc, KH_E_DB, "cannot record the answer");
    qc->state = "failed";
}

static void record_done(void *arg)
{
    gw_query *qc = arg;
    kh_info("biz", "tenant %s: query %s %s %s", qc->t->id.code, qc->hex, qc->state,
            qc->err == KH_OK ? qc->ans->result : kh_err_code(qc->err));
    struct evhttp_request *req = gw_req_take(&qc->req);
    if (req != NULL) {
        bool answered = strcmp(qc->state, "answered") == 0 || strcmp(qc->state, "pending") == 0;
        if (answered)
            gw_qstate_reply(req, qc->hex, qc->state, KH_OK, NULL, qc->ans);
        else
            kh_http_reply_err(req, qc->err, "%s (handle %s)", qc->msg, qc->hex);
    }
    qc_free(qc);
}

static void submit(gw_query *qc, kh_pool_work_fn w, kh_pool_done_fn d)
{
    if (kh_pool_submit_for(G.pool, qc->t->id.code, w, d, qc) != 0) {
        kh_warn("biz", "tenant %s: query %s: database queue full", qc->t->id.code, qc->hex);
        struct evhttp_request *req = gw_req_take(&qc->req);
        if (req != NULL)
            kh_http_reply_err(req, KH_E_OVERLOADED, "database queue full");
        qc_free(qc);
    }
}

char *gw_query_live_ids(void)
{
    char *out = malloc(3 + nlive * (2 * KH_MSG_ID_LEN + 1));
    size_t n = 0;
    if (out == NULL)
        return NULL;
    out[n++] = '{';
    for (const gw_query *qc = live; qc != NULL; qc = qc->next) {
        if (n > 1)
            out[n++] = ',';
        memcpy(out + n, qc->hex, 2 * KH_MSG_ID_LEN);
        n += 2 * KH_MSG_ID_LEN;
    }
    out[n++] = '}';
    out[n] = '\0';
    return out;
}

void gw_query_resume(gw_tenant *t, const char *hex, const char *system, Kh__QueryRequest *q,
                     uint8_t *env, size_t envlen, int64_t expires_at, int attempts)
{
    gw_query *qc = calloc(1, sizeof *qc);
    if (qc == NULL || khc_unhex(hex, strlen(hex), qc->msg_id, KH_MSG_ID_LEN) != 0) {
        /* its lease runs out again: another tick takes it over */
        free(qc);
        kh__query_request__free_unpacked(q, NULL);
        khc_free_secret(env, envlen);
        return;
    }
    qc->t = t;
    qc->q = q;
    qc->env = env;
    qc->envlen = envlen;
    snprintf(qc->system, sizeof qc->system, "%s", system);
    khc_hex(qc->msg_id, KH_MSG_ID_LEN, qc->hex);
    qc->expires_at = expires_at;
    qc->attempts = attempts;
    qc->state = "sent";
    live_add(qc);
    qc->wait_ev = evtimer_new(G.base, on_wait_over, qc); /* never armed: nobody waits */
    qc->retry_ev = evtimer_new(G.base, on_retry, qc);
    if (qc->wait_ev == NULL || qc->retry_ev == NULL) {
        qc_free(qc);
        return;
    }
    /* the answer is checked against the row of the directory in use now */
    qc->dir = gw_dir_hold();
    kh_err e = kh_dir_legal(qc->dir, t->id.code, q->procedure, q->provider, q->items, q->n_items,
                            &qc->row);
    if (e != KH_OK) {
        qc_set(qc, e, "taken over from a stopped node, but no legal-basis row allows it now");
        qc->state = "failed";
        submit(qc, record_work, record_done);
        return;
    }
    kh_info("biz", "tenant %s: query %s taken over from a stopped node (attempt %d)", t->id.code,
            qc->hex, attempts + 1);
    send_attempt(qc);
}

/* -------------------------------------------------------------- /v1/query */

static const char *query_invalid(const Kh__QueryRequest *q)
{
    if (!kh_id_token(q->staff_id, 32))
        return "staff_id: expected 1 to 32 of [A-Za-z0-9_-]";
    if (!kh_id_code(q->procedure, KH_CODE_MAX))
        return "procedure: expected a procedure code such as JT001";
    if (!kh_id_org(q->provider))
        return "provider: expected an organisation code (6 characters, check digit for "
               "municipalities)";
    if (q->n_items == 0 || q->n_items > KH_MAX_ITEMS)
        return "items: expected 1 to 16 item codes";
    for (size_t i = 0; i < q->n_items; i++) {
        if (!kh_id_code(q->items[i], KH_CODE_MAX))
            return "items: expected item codes such as TK001";
        for (size_t k = 0; k < i; k++)
            if (strcmp(q->items[i], q->items[k]) == 0)
                return "items: an item is listed twice";
    }
    if (!kh_id_local_id(q->local_id))
        return "local_id: expected 1 to 15 digits";
    if (q->as_of[0] != '\0' && !kh_id_date(q->as_of))
        return "as_of: expected YYYYMMDD";
    if (q->timeout_ms > 120000)
        return "timeout_ms: at most 120000";
    return NULL;
}

static void on_query(struct evhttp_request *req, void *arg)
{
    char sys[40];
    gw_tenant *t = gw_identify(req, sys, sizeof sys, true);
    if (t == NULL)
        return;
    Kh__QueryRequest *q = gw_read_pb(req, &kh__query_request__descriptor);
    if (q == NULL)
        return;
    const char *bad = query_invalid(q);
    if (bad != NULL || nlive >= MAX_LIVE) {
        if (bad != NULL)
            kh_http_reply_err(req, KH_E_FIELD, "%s", bad);
        else
            kh_http_reply_err(req, KH_E_OVERLOADED, "%d queries in progress; retry later",
                              MAX_LIVE);
        kh__query_request__free_unpacked(q, NULL);
        return;
    }
    gw_query *qc = calloc(1, sizeof *qc);
    if (qc == NULL || khc_random(qc->msg_id, KH_MSG_ID_LEN) != 0) {
        free(qc);
        kh__query_request__free_unpacked(q, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory or randomness");
        return;
    }
    qc->req = req;
    qc->t = t;
    qc->q = q;
    snprintf(qc->system, sizeof qc->system, "%s", sys);
    khc_hex(qc->msg_id, KH_MSG_ID_LEN, qc->hex);
    qc->timeout_ms = q->timeout_ms ? (int)q->timeout_ms : G.default_timeout_ms;
    qc->expires_at = (int64_t)time(NULL) + G.ttl;
    qc->state = "sent";
    live_add(qc);
    gw_req_hold(&qc->req, req);
    qc->dir = gw_dir_hold();
    kh_err e = kh_dir_legal(qc->dir, t->id.code, q->procedure, q->provider, q->items, q->n_items,
                            &qc->row);
    if (e == KH_E_UNKNOWN_ORG)
        qc_set(qc, e, "provider %s is not in the directory", q->provider);
    else if (e != KH_OK)
        qc_set(qc, e, "no legal-basis row allows procedure %s for these items from %s",
               q->procedure, q->provider);
    /* refused or not, the decision is recorded in the tenant's records */
    submit(qc, check_work, check_done);
}

void gw_query_register(struct evhttp *http)
{
    kh_http_route(http, "/v1/query", on_query, NULL);
}
