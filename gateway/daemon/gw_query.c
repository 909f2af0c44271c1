/* gw_query.c: queries on the asking side (flow 2) and their lifecycle.
 *   POST /v1/query         ask another organisation; wait for the answer up to
 *                          timeout_ms, or (async) return the handle at once
 *   POST /v1/query/status  a query of this business system, by handle
 *   POST /v1/query/list    this business system's queries, with filters
 * Every query gets a handle (its message id) and a row in the tenant's
 * `query` table before anything is sent: sent -> answered | pending |
 * refused | failed, and timed_out when the business system stopped waiting
 * (a late answer still moves it to answered). Delivery is retried with
 * backoff while the message is valid if the router or the answering gateway
 * cannot be reached; every attempt carries the same sealed envelope, so the
 * answering side recognises a retransmission by its message id and answers
 * it once. */
#include "gw.h"
#include "gw_util.h"

#include "idconv.h"
#include "khcrypto.h"
#include "khhttp.h"
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
    int64_t expires_at;
    int timeout_ms;
    int attempts;
    bool in_flight;  /* an HTTP attempt is running */
    const char *row; /* the legal-basis row that allows the query (in G.dir) */
    const char *state;
    struct event *wait_ev, *retry_ev;
    gw_query *next, *prev; /* live queries, freed at shutdown */
};

static gw_query *live;
static size_t nlive;
#define MAX_LIVE 4096          /* queries in memory (waiting, sending, retrying) */
static struct event *sweep_ev; /* ends queries left unfinished (see sweep_work) */

static void on_client_close(struct evhttp_connection *conn, void *arg)
{
    ((gw_query *)arg)->req = NULL;
}

static struct evhttp_request *take_req(gw_query *qc)
{
    struct evhttp_request *req = qc->req;
    if (req != NULL)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    qc->req = NULL;
    return req;
}

static void qc_free(gw_query *qc)
{
    take_req(qc);
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
    free(qc->env);
    khc_wipe(qc->link_code, sizeof qc->link_code);
    free(qc);
}

void gw_query_stop(void)
{
    if (sweep_ev)
        event_free(sweep_ev);
    sweep_ev = NULL;
    /* queries waiting for a retry or a client; those with an attempt in
     * flight are freed by the attempt's callback */
    for (gw_query *qc = live, *next; qc != NULL; qc = next) {
        next = qc->next;
        if (!qc->in_flight)
            qc_free(qc);
    }
}

static void qc_set(gw_query *qc, kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void qc_set(gw_query *qc, kh_err e, const char *fmt, ...)
{
    va_list ap;
    qc->err = e;
    va_start(ap, fmt);
    vsnprintf(qc->msg, sizeof qc->msg, fmt, ap);
    va_end(ap);
}

static void submit(gw_query *qc, kh_pool_work_fn w, kh_pool_done_fn d);

/* ------------------------------------------------------------- replying */

static const char *state_upper(const char *s)
{
    return strcmp(s, "answered") == 0    ? "ANSWERED"
           : strcmp(s, "pending") == 0   ? "PENDING"
           : strcmp(s, "refused") == 0   ? "REFUSED"
           : strcmp(s, "failed") == 0    ? "FAILED"
           : strcmp(s, "timed_out") == 0 ? "TIMED_OUT"
                                         : "SENT";
}

/* Replies with a QueryResponse: the handle, the state, and the answer if any. */
static void reply_state(struct evhttp_request *req, const char *handle, const char *state,
                        kh_err code, const char *msg, const Kh__AnswerBody *ans)
{
    Kh__Status st = KH__STATUS__INIT;
    st.code = (char *)(code == KH_OK ? "OK" : kh_err_code(code));
    st.message = (char *)(msg ? msg : "");
    Kh__QueryResponse resp = KH__QUERY_RESPONSE__INIT;
    resp.status = &st;
    resp.handle = (char *)handle;
    resp.state = (char *)state_upper(state);
    if (ans != NULL) {
        resp.result = ans->result;
        resp.data = ans->data;
        resp.n_data = ans->n_data;
        resp.withheld = ans->withheld;
        resp.n_withheld = ans->n_withheld;
        resp.deferred = ans->deferred;
    }
    kh_http_reply_pb(req, &resp.base);
}

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

/* The query's row, in the state its checks left it (sent or refused). */
static kh_err insert_row(PGconn *c, gw_query *qc)
{
    Kh__QueryRequest *q = qc->q;
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4], exp[24];
    gw_codes_literal(q->items, q->n_items, lit, sizeof lit);
    snprintf(exp, sizeof exp, "%lld", (long long)qc->expires_at);
    bool refused = qc->err != KH_OK;
    const char *p[12] = {qc->hex,
                         qc->system,
                         q->staff_id,
                         q->procedure,
                         q->provider,
                         lit,
                         q->local_id,
                         q->as_of,
                         refused ? "refused" : "sent",
                         refused ? kh_err_code(qc->err) : NULL,
                         refused ? qc->msg : NULL,
                         exp};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO query (msg_id, system_id, staff_id, procedure, provider, "
                             "items, local_id, as_of, state, code, message, expires_at) VALUES "
                             "($1,$2,$3,$4,$5,$6::text[],$7,$8,$9,$10,$11,to_timestamp($12))",
                             12, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

static void check_work(PGconn *c, void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
    if (kh_db_tenant_begin(c, qc->t->id.code) != KH_OK) {
        qc_set(qc, KH_E_DB, "database unavailable");
        return;
    }
    if (qc->err == KH_OK) /* legal basis was checked on the loop */
        qc->err = gw_permitted(c, qc->system, "query", q->procedure, qc->msg, sizeof qc->msg);
    if (qc->err == KH_OK)
        qc->err = staff_may(c, q->staff_id, q->procedure, qc->msg, sizeof qc->msg);
    if (qc->err == KH_OK && idconv_link_of(c, q->local_id, qc->link_code) != KH_OK)
        qc_set(qc, KH_E_UNKNOWN_LOCAL_ID, "local_id has no link code at this tenant");
    if (qc->err == KH_E_DB) {
        kh_db_rollback(c);
        return;
    }
    /* the decision, the query's row and (if refused) its provision record:
     * one transaction, so no decision goes unrecorded */
    kh_err e = gw_access(c, qc->hex, "business", qc->system, "query", q->staff_id, q->procedure,
                         q->items, q->n_items, qc->err);
    if (e == KH_OK)
        e = insert_row(c, qc);
    if (e == KH_OK && qc->err != KH_OK)
        e = gw_record(c, qc->hex, "asked", q->provider, q->procedure, q->items, q->n_items,
                      q->local_id, q->staff_id, "refused", qc->err, NULL, 0);
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
    if (kh_db_tenant_begin(c, j->tenant) != KH_OK)
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
    struct evhttp_request *req = take_req(qc);
    if (req == NULL)
        return;
    reply_state(req, qc->hex, "timed_out", KH_E_TIMEOUT,
                "no answer within the timeout; the query goes on: ask for it by handle", NULL);
    timed_out_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return;
    snprintf(j->tenant, sizeof j->tenant, "%s", qc->t->id.code);
    memcpy(j->hex, qc->hex, sizeof j->hex);
    if (kh_pool_submit(G.pool, timed_out_work, timed_out_done, j) != 0)
        free(j);
}

static void check_done(void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
    if (G.stopping && qc->err == KH_OK)
        qc_set(qc, KH_E_UPSTREAM, "gateway stopping");
    if (qc->err != KH_OK) {
        kh_info("biz", "tenant %s: query %s refused %s", qc->t->id.code, qc->hex,
                kh_err_code(qc->err));
        struct evhttp_request *req = take_req(qc);
        if (req != NULL)
            kh_http_reply_err(req, qc->err, "%s (handle %s)", qc->msg, qc->hex);
        qc_free(qc);
        return;
    }
    const kh_org *prov = kh_dir_org(G.dir, q->provider);
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
    qc->wait_ev = evtimer_new(G.base, on_wait_over, qc);
    qc->retry_ev = evtimer_new(G.base, on_retry, qc);
    if (qc->wait_ev == NULL || qc->retry_ev == NULL)
        goto fail;
    kh_info("biz", "tenant %s: query %s to %s procedure %s", qc->t->id.code, qc->hex, q->provider,
            q->procedure);
    if (q->async) {
        struct evhttp_request *req = take_req(qc);
        if (req != NULL)
            reply_state(req, qc->hex, "sent", KH_OK, NULL, NULL);
    } else {
        struct timeval tv = {qc->timeout_ms / 1000, (qc->timeout_ms % 1000) * 1000};
        evtimer_add(qc->wait_ev, &tv);
    }
    send_attempt(qc);
    return;
fail:
    khc_free_secret(body, blen);
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
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_POST, G.router, "/v1/envelope", qc->env,
                        qc->envlen, attempt_ms, "ROUTER", "router", on_sent, qc) != 0)
        on_sent(0, NULL, 0, qc);
}

static bool retryable(kh_err e)
{
    return e == KH_E_UPSTREAM || e == KH_E_OVERLOADED || e == KH_E_DB || e == KH_E_TIMEOUT;
}

/* The result agrees with what the answer carries, and the answer holds no
 * field this gateway does not know (it would be stored unchecked). */
static bool result_consistent(const Kh__AnswerBody *a)
{
    bool found = strcmp(a->result, "FOUND") == 0;
    if (found != (a->n_data > 0) || a->base.n_unknown_fields != 0)
        return false;
    if (strcmp(a->result, "WITHHELD") == 0 && a->n_withheld == 0)
        return false;
    for (size_t i = 0; i < a->n_data; i++) {
        if (a->data[i]->base.n_unknown_fields != 0)
            return false;
        for (size_t k = 0; k < a->data[i]->n_fields; k++)
            if (a->data[i]->fields[k]->base.n_unknown_fields != 0)
                return false;
    }
    return true;
}

/* Checks an answer body against the query and its header. */
static bool answer_ok(const gw_query *qc, const Kh__Header *h, const Kh__AnswerBody *a)
{
    const Kh__QueryRequest *q = qc->q;
    bool pending = strcmp(a->result, "PENDING") == 0;
    bool ok = a->msg_id.len == KH_MSG_ID_LEN && h->msg_id.len == KH_MSG_ID_LEN &&
              memcmp(a->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) == 0 &&
              a->in_reply_to.len == KH_MSG_ID_LEN &&
              memcmp(a->in_reply_to.data, qc->msg_id, KH_MSG_ID_LEN) == 0 && result_consistent(a) &&
              strcmp(a->sender, q->provider) == 0 && strcmp(a->recipient, qc->t->id.code) == 0 &&
              strcmp(a->procedure, q->procedure) == 0 &&
              kh_items_equal(a->items, a->n_items, h->items, h->n_items) &&
              kh_items_equal(a->items, a->n_items, q->items, q->n_items) && !a->deferred &&
              (strcmp(a->result, "FOUND") == 0 || strcmp(a->result, "NOT_FOUND") == 0 ||
               strcmp(a->result, "WITHHELD") == 0 || pending) &&
              pending == (strcmp(h->answer_state, "PENDING") == 0) &&
              (!pending || (a->n_data == 0 && a->n_withheld == 0));
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

/* Minimisation checked at this end too: every field is one the row allows. */
static bool within_basis(const gw_query *qc, const Kh__AnswerBody *a)
{
    for (size_t i = 0; i < a->n_data; i++)
        for (size_t k = 0; k < a->data[i]->n_fields; k++)
            if (!kh_dir_field_allowed(G.dir, qc->row, a->data[i]->item_code,
                                      a->data[i]->fields[k]->name))
                return false;
    return true;
}

static void on_sent(int status, const uint8_t *buf, size_t len, void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
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
        qc_set(qc, KH_E_UPSTREAM, "not delivered while the message was valid (%d attempts): %s",
               qc->attempts, qc->msg[0] ? qc->msg : "next hop unreachable");
        qc->state = "failed";
    } else if (qc->err != KH_OK) {
        qc->state = qc->err == KH_E_INTERNAL ? "failed" : "refused";
    } else {
        const kh_org *prov = kh_dir_org(G.dir, q->provider);
        Kh__Header *h = NULL;
        size_t blen = 0;
        uint8_t *body = gw_open_from_router(qc->t, buf, len, KH__MSG_TYPE__ANSWER, qc->msg_id,
                                            prov ? prov->sign_cert : NULL, q->provider, &h, &blen,
                                            &qc->err, qc->msg, sizeof qc->msg);
        if (body != NULL) {
            qc->ans = kh__answer_body__unpack(NULL, blen, body);
            khc_free_secret(body, blen);
            if (qc->ans == NULL || !answer_ok(qc, h, qc->ans))
                qc_set(qc, KH_E_SPLICE, "answer body does not match its header or query");
            else if (!within_basis(qc, qc->ans))
                qc_set(qc, KH_E_OVERSHARE,
                       "the answer carries a field legal-basis row %s does not allow", qc->row);
            kh__header__free_unpacked(h, NULL);
        }
        qc->state = qc->err != KH_OK                          ? "failed"
                    : strcmp(qc->ans->result, "PENDING") == 0 ? "pending"
                                                              : "answered";
    }
    submit(qc, record_work, record_done);
}

static const char *outcome_of(const char *state, const Kh__AnswerBody *a)
{
    if (strcmp(state, "answered") != 0)
        return state;
    /* as the provider records it: withheld if anything was withheld */
    return strcmp(a->result, "FOUND") == 0 ? "provided"
           : a->n_withheld > 0             ? "withheld"
                                           : "not_found";
}

/* bytea input: \x followed by hex */
static char *bytea_hex(const ProtobufCMessage *m)
{
    uint8_t *raw = NULL;
    size_t n = 0;
    if (kh_pb_pack(m, &raw, &n) != 0)
        return NULL;
    char *hex = malloc(2 * n + 3);
    if (hex != NULL) {
        memcpy(hex, "\\x", 2);
        khc_hex(raw, n, hex + 2);
    }
    khc_free_secret(raw, n);
    return hex;
}

static void record_work(PGconn *c, void *arg)
{
    gw_query *qc = arg;
    Kh__QueryRequest *q = qc->q;
    bool answered = strcmp(qc->state, "answered") == 0 || strcmp(qc->state, "pending") == 0;
    char *ans = answered ? bytea_hex(&qc->ans->base) : NULL;
    char att[16];
    snprintf(att, sizeof att, "%d", qc->attempts);
    const char *p[7] = {qc->hex,
                        qc->state,
                        qc->err == KH_OK ? NULL : kh_err_code(qc->err),
                        qc->err == KH_OK ? NULL : qc->msg,
                        answered ? qc->ans->result : NULL,
                        ans,
                        att};
    if (answered && ans == NULL)
        goto fail;
    if (kh_db_tenant_begin(c, qc->t->id.code) != KH_OK)
        goto fail;
    PGresult *r = kh_db_exec(c,
                             "UPDATE query SET state = $2, code = $3, message = $4, result = $5, "
                             "answer = $6::bytea, attempts = $7::int, updated_at = now() "
                             "WHERE msg_id = $1 AND state IN ('sent', 'timed_out')",
                             7, p);
    if (r == NULL)
        goto fail;
    bool moved = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (!moved) {
        /* the query ended meanwhile (a deferred answer, the sweeper): its
         * row and records stand; nothing is recorded twice */
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
                  q->staff_id, outcome_of(qc->state, qc->ans), qc->err,
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
    struct evhttp_request *req = take_req(qc);
    if (req != NULL) {
        bool answered = strcmp(qc->state, "answered") == 0 || strcmp(qc->state, "pending") == 0;
        if (answered)
            reply_state(req, qc->hex, qc->state, KH_OK, NULL, qc->ans);
        else
            kh_http_reply_err(req, qc->err, "%s (handle %s)", qc->msg, qc->hex);
    }
    qc_free(qc);
}

static void submit(gw_query *qc, kh_pool_work_fn w, kh_pool_done_fn d)
{
    if (kh_pool_submit(G.pool, w, d, qc) != 0) {
        kh_warn("biz", "tenant %s: query %s: database queue full", qc->t->id.code, qc->hex);
        struct evhttp_request *req = take_req(qc);
        if (req != NULL)
            kh_http_reply_err(req, KH_E_OVERLOADED, "database queue full");
        qc_free(qc);
    }
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
    gw_tenant *t = gw_identify(req, sys, sizeof sys);
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
    qc->next = live;
    if (live)
        live->prev = qc;
    live = qc;
    nlive++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_close, qc);
    kh_err e =
        kh_dir_legal(G.dir, t->id.code, q->procedure, q->provider, q->items, q->n_items, &qc->row);
    if (e == KH_E_UNKNOWN_ORG)
        qc_set(qc, e, "provider %s is not in the directory", q->provider);
    else if (e != KH_OK)
        qc_set(qc, e, "no legal-basis row allows procedure %s for these items from %s",
               q->procedure, q->provider);
    /* refused or not, the decision is recorded in the tenant's records */
    submit(qc, check_work, check_done);
}

/* ------------------------------------------------- /v1/query/status, list */

typedef struct {
    struct evhttp_request *req;
    gw_tenant *t;
    char system[40];
    Kh__QueryStatusRequest *sreq;
    Kh__QueryListRequest *lreq;
    PGresult *rows;
    kh_err err;
} lookup;

static void lookup_close(struct evhttp_connection *conn, void *arg)
{
    ((lookup *)arg)->req = NULL;
}

static void lookup_work(PGconn *c, void *arg)
{
    lookup *l = arg;
    if (kh_db_tenant_begin(c, l->t->id.code) != KH_OK) {
        l->err = KH_E_DB;
        return;
    }
    if (l->sreq != NULL) {
        const char *p[2] = {l->sreq->handle, l->system};
        l->rows = kh_db_exec(c,
                             "SELECT state, code, message, answer FROM query "
                             "WHERE msg_id = $1 AND system_id = $2",
                             2, p);
    } else {
        const Kh__QueryListRequest *f = l->lreq;
        char lim[16];
        snprintf(lim, sizeof lim, "%u", f->limit ? f->limit : 100);
        const char *p[7] = {l->system,
                            f->state[0] ? f->state : NULL,
                            f->procedure[0] ? f->procedure : NULL,
                            f->provider[0] ? f->provider : NULL,
                            f->since[0] ? f->since : NULL,
                            f->until[0] ? f->until : NULL,
                            lim};
        l->rows = kh_db_exec(
            c,
            "SELECT msg_id, state, procedure, provider, items, staff_id, "
            "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "coalesce(code, ''), coalesce(result, '') FROM query WHERE system_id = $1 "
            "AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR procedure = $3) "
            "AND ($4::text IS NULL OR provider = $4) "
            "AND ($5::date IS NULL OR created_at >= $5::date) "
            "AND ($6::date IS NULL OR created_at < $6::date + 1) "
            "ORDER BY created_at DESC, msg_id LIMIT $7::int",
            7, p);
    }
    l->err = l->rows ? KH_OK : KH_E_DB;
    kh_db_rollback(c);
}

static void status_reply(struct evhttp_request *req, lookup *l)
{
    PGresult *r = l->rows;
    if (PQntuples(r) != 1) {
        kh_http_reply_err(req, KH_E_UNKNOWN_HANDLE, "handle: no query %s of this system",
                          l->sreq->handle);
        return;
    }
    const char *state = PQgetvalue(r, 0, 0);
    kh_err code = PQgetisnull(r, 0, 1) ? KH_OK : kh_err_from_code(PQgetvalue(r, 0, 1));
    if (code == KH_E__COUNT)
        code = KH_E_INTERNAL;
    Kh__AnswerBody *ans = NULL;
    if (!PQgetisnull(r, 0, 3)) {
        size_t n = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 3), &n);
        if (raw != NULL) {
            ans = kh__answer_body__unpack(NULL, n, raw);
            khc_wipe(raw, n);
            PQfreemem(raw);
        }
    }
    reply_state(req, l->sreq->handle, state, code, PQgetvalue(r, 0, 2), ans);
    if (ans) {
        kh_items_wipe(ans->data, ans->n_data);
        kh__answer_body__free_unpacked(ans, NULL);
    }
}

static void list_reply(struct evhttp_request *req, lookup *l)
{
    PGresult *r = l->rows;
    int n = PQntuples(r);
    Kh__QuerySummary *sums = calloc((size_t)n + 1, sizeof *sums);
    Kh__QuerySummary **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    char **items = calloc((size_t)n * KH_MAX_ITEMS + 1, sizeof *items);
    char *itembuf = calloc((size_t)n + 1, KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4);
    if (!sums || !ptrs || !items || !itembuf) {
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        Kh__QuerySummary *s = &sums[i];
        kh__query_summary__init(s);
        s->handle = PQgetvalue(r, i, 0);
        s->state = (char *)state_upper(PQgetvalue(r, i, 1));
        s->procedure = PQgetvalue(r, i, 2);
        s->provider = PQgetvalue(r, i, 3);
        /* items: a text[] literal of validated codes, {A,B} */
        char *buf = itembuf + (size_t)i * (KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4);
        snprintf(buf, KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4, "%s", PQgetvalue(r, i, 4));
        s->items = items + (size_t)i * KH_MAX_ITEMS;
        char *save = NULL;
        for (char *tok = strtok_r(buf, "{},", &save); tok && s->n_items < KH_MAX_ITEMS;
             tok = strtok_r(NULL, "{},", &save))
            s->items[s->n_items++] = tok;
        s->staff_id = PQgetvalue(r, i, 5);
        s->created_at = PQgetvalue(r, i, 6);
        s->updated_at = PQgetvalue(r, i, 7);
        s->code = PQgetvalue(r, i, 8);
        s->result = PQgetvalue(r, i, 9);
        ptrs[i] = s;
    }
    Kh__Status st = KH__STATUS__INIT;
    st.code = "OK";
    st.message = "";
    Kh__QueryList list = KH__QUERY_LIST__INIT;
    list.status = &st;
    list.queries = ptrs;
    list.n_queries = (size_t)n;
    kh_http_reply_pb(req, &list.base);
out:
    free(sums);
    free(ptrs);
    free(items);
    free(itembuf);
}

static void lookup_done(void *arg)
{
    lookup *l = arg;
    struct evhttp_request *req = l->req;
    if (req != NULL) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
        if (l->err != KH_OK)
            kh_http_reply_err(req, l->err, "%s", kh_err_get(l->err)->meaning);
        else if (l->sreq != NULL)
            status_reply(req, l);
        else
            list_reply(req, l);
    }
    PQclear(l->rows);
    if (l->sreq)
        kh__query_status_request__free_unpacked(l->sreq, NULL);
    if (l->lreq)
        kh__query_list_request__free_unpacked(l->lreq, NULL);
    free(l);
}

static const char *list_invalid(const Kh__QueryListRequest *f)
{
    static const char *const states[] = {"",        "sent",   "answered", "pending",
                                         "refused", "failed", "timed_out"};
    bool state_ok = false;
    for (size_t i = 0; i < sizeof states / sizeof *states; i++)
        state_ok = state_ok || strcmp(f->state, states[i]) == 0;
    if (!state_ok)
        return "state: expected sent, answered, pending, refused, failed or timed_out";
    if (f->procedure[0] && !kh_id_code(f->procedure, KH_CODE_MAX))
        return "procedure: expected a procedure code such as JT001";
    if (f->provider[0] && !kh_id_org(f->provider))
        return "provider: expected an organisation code";
    if ((f->since[0] && !kh_id_date(f->since)) || (f->until[0] && !kh_id_date(f->until)))
        return "since/until: expected YYYYMMDD";
    if (f->limit > 1000)
        return "limit: at most 1000";
    return NULL;
}

static void start_lookup(struct evhttp_request *req, bool status)
{
    char sys[40];
    gw_tenant *t = gw_identify(req, sys, sizeof sys);
    if (t == NULL)
        return;
    lookup *l = calloc(1, sizeof *l);
    if (l == NULL) {
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    const char *bad = NULL;
    if (status) {
        l->sreq = gw_read_pb(req, &kh__query_status_request__descriptor);
        if (l->sreq && !kh_id_hex(l->sreq->handle, 2 * KH_MSG_ID_LEN))
            bad = "handle: expected 32 lower-case hex digits";
    } else {
        l->lreq = gw_read_pb(req, &kh__query_list_request__descriptor);
        if (l->lreq)
            bad = list_invalid(l->lreq);
    }
    if (l->sreq == NULL && l->lreq == NULL) {
        free(l);
        return;
    }
    l->req = req;
    l->t = t;
    snprintf(l->system, sizeof l->system, "%s", sys);
    if (bad != NULL) {
        kh_http_reply_err(req, KH_E_FIELD, "%s", bad);
        l->req = NULL;
        lookup_done(l);
        return;
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), lookup_close, l);
    if (kh_pool_submit(G.pool, lookup_work, lookup_done, l) != 0) {
        l->err = KH_E_OVERLOADED;
        lookup_done(l);
    }
}

static void on_status(struct evhttp_request *req, void *arg)
{
    start_lookup(req, true);
}

static void on_list(struct evhttp_request *req, void *arg)
{
    start_lookup(req, false);
}

/* ---------------------------------------------------------------- sweeper */

/* A query still "sent" or "timed_out" a minute after its message expired can
 * no longer be answered (every attempt is bounded by the validity): it was
 * left by a gateway that stopped or crashed mid-flight. It ends failed, with
 * its provision record, so no query is lost silently. */
static bool sweeping;

static void sweep_work(PGconn *c, void *arg)
{
    for (size_t i = 0; c != NULL && i < G.ntenants && !G.stopping; i++) {
        if (kh_db_tenant_begin(c, G.tenants[i].id.code) != KH_OK)
            continue;
        PGresult *r = kh_db_exec(
            c,
            "WITH q AS (UPDATE query SET state = 'failed', code = 'KH-5004', "
            "message = 'no answer before the message expired (the gateway stopped or the "
            "next hop was unreachable)', updated_at = now() WHERE state IN ('sent', "
            "'timed_out') AND expires_at < now() - interval '1 minute' RETURNING *) "
            "INSERT INTO provision_record (msg_id, direction, counterpart, procedure, items, "
            "local_id, staff_id, outcome, code) SELECT msg_id, 'asked', provider, procedure, "
            "items, local_id, staff_id, 'failed', 'KH-5004' FROM q",
            0, NULL);
        /* replay protection needs an id only while its message is valid */
        PGresult *x = r ? kh_db_exec(c,
                                     "DELETE FROM seen_msg WHERE expires_at < now() - "
                                     "interval '1 hour'",
                                     0, NULL)
                        : NULL;
        bool purged = x != NULL;
        PQclear(x);
        if (r != NULL && purged && kh_db_commit(c) == KH_OK) {
            if (strcmp(PQcmdTuples(r), "0") != 0)
                kh_warn("biz", "tenant %s: %s unfinished queries ended failed",
                        G.tenants[i].id.code, PQcmdTuples(r));
        } else {
            kh_db_rollback(c);
        }
        PQclear(r);
    }
}

static void sweep_done(void *arg)
{
    sweeping = false;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    if (sweeping || G.stopping)
        return;
    sweeping = true;
    if (kh_pool_submit(G.pool, sweep_work, sweep_done, NULL) != 0)
        sweeping = false;
}

void gw_query_register(struct evhttp *http)
{
    struct timeval tv = {30, 0};
    sweep_ev = event_new(G.base, -1, EV_PERSIST, on_sweep, NULL);
    if (sweep_ev != NULL)
        event_add(sweep_ev, &tv);
    on_sweep(-1, 0, NULL); /* at start: what a previous run left */
    evhttp_set_cb(http, "/v1/query", on_query, NULL);
    evhttp_set_cb(http, "/v1/query/status", on_status, NULL);
    evhttp_set_cb(http, "/v1/query/list", on_list, NULL);
}

/* ------------------------------------------------------- deferred answers */

typedef struct {
    struct evhttp_request *req;
    gw_tenant *t;
    Kh__Header *h;
    Kh__AnswerBody *ans;
    char hex[2 * KH_MSG_ID_LEN + 1]; /* the deferred answer's id */
    char irt[2 * KH_MSG_ID_LEN + 1]; /* the query's handle */
    kh_err err;
    char msg[200];
    bool again; /* a retransmission of a deferred answer already stored */
} deferred;

static void deferred_close(struct evhttp_connection *conn, void *arg)
{
    ((deferred *)arg)->req = NULL;
}

static void deferred_free(deferred *df)
{
    if (df->h)
        kh__header__free_unpacked(df->h, NULL);
    if (df->ans) {
        kh_items_wipe(df->ans->data, df->ans->n_data);
        kh__answer_body__free_unpacked(df->ans, NULL);
    }
    free(df);
}

/* The deferred answer's body against its header and the rules. */
static bool deferred_ok(const deferred *df)
{
    const Kh__Header *h = df->h;
    const Kh__AnswerBody *a = df->ans;
    bool refused = strcmp(a->result, "REFUSED") == 0;
    bool ok = a->msg_id.len == KH_MSG_ID_LEN &&
              memcmp(a->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) == 0 &&
              a->in_reply_to.len == KH_MSG_ID_LEN &&
              memcmp(a->in_reply_to.data, h->in_reply_to.data, KH_MSG_ID_LEN) == 0 &&
              strcmp(a->sender, h->sender) == 0 && strcmp(a->recipient, df->t->id.code) == 0 &&
              strcmp(a->procedure, h->procedure) == 0 &&
              kh_items_equal(a->items, a->n_items, h->items, h->n_items) && a->deferred &&
              (strcmp(a->result, "FOUND") == 0 || strcmp(a->result, "NOT_FOUND") == 0 ||
               strcmp(a->result, "WITHHELD") == 0 || refused) &&
              (!refused || (a->n_data == 0 && kh_err_from_code(a->code) == KH_E_MANUAL_REFUSAL));
    for (size_t i = 0; ok && i < a->n_data + a->n_withheld; i++) {
        const char *code = i < a->n_data ? a->data[i]->item_code : a->withheld[i - a->n_data];
        bool asked = false;
        for (size_t k = 0; k < h->n_items; k++)
            asked = asked || strcmp(code, h->items[k]) == 0;
        for (size_t k = 0; k < i; k++) {
            const char *o = k < a->n_data ? a->data[k]->item_code : a->withheld[k - a->n_data];
            ok = ok && strcmp(o, code) != 0;
        }
        ok = ok && asked;
    }
    return ok && (refused || result_consistent(a)) && a->base.n_unknown_fields == 0;
}

/* Minimisation, checked on a deferred answer too. */
static bool deferred_within_basis(const Kh__AnswerBody *a, const char *row)
{
    for (size_t i = 0; i < a->n_data; i++)
        for (size_t k = 0; k < a->data[i]->n_fields; k++)
            if (!kh_dir_field_allowed(G.dir, row, a->data[i]->item_code,
                                      a->data[i]->fields[k]->name))
                return false;
    return true;
}

static void deferred_work(PGconn *c, void *arg)
{
    deferred *df = arg;
    Kh__AnswerBody *a = df->ans;
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    gw_codes_literal(df->h->items, df->h->n_items, lit, sizeof lit);
    if (kh_db_tenant_begin(c, df->t->id.code) != KH_OK) {
        df->err = KH_E_DB;
        snprintf(df->msg, sizeof df->msg, "database unavailable");
        return;
    }
    const char *p[4] = {df->irt, df->h->sender, df->h->procedure, lit};
    PGresult *r = kh_db_exec(c,
                             "SELECT state, local_id, staff_id FROM query WHERE msg_id = $1 "
                             "AND provider = $2 AND procedure = $3 AND items = $4::text[] "
                             "FOR UPDATE",
                             4, p);
    if (r == NULL) {
        df->err = KH_E_DB;
        goto fail;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        df->err = KH_E_UNEXPECTED_ANSWER;
        snprintf(df->msg, sizeof df->msg, "no query of this tenant matches the deferred answer");
        goto fail;
    }
    char state[16], local_id[32], staff[40];
    snprintf(state, sizeof state, "%s", PQgetvalue(r, 0, 0));
    snprintf(local_id, sizeof local_id, "%s", PQgetvalue(r, 0, 1));
    snprintf(staff, sizeof staff, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    kh_err e = kh_db_seen(c, "seen_msg", df->h->sender, df->hex, df->h->expires_at);
    bool final = strcmp(state, "answered") == 0 || strcmp(state, "refused") == 0;
    if (e == KH_E_REPLAY && final) {
        df->again = true; /* our acknowledgement was lost: acknowledge again */
        kh_db_rollback(c);
        khc_wipe(local_id, sizeof local_id);
        return;
    }
    if (e != KH_OK) {
        khc_wipe(local_id, sizeof local_id);
        df->err = e;
        snprintf(df->msg, sizeof df->msg, "%s",
                 e == KH_E_REPLAY ? "deferred answer already received" : "database unavailable");
        goto fail;
    }
    if (strcmp(state, "sent") == 0 || strcmp(state, "timed_out") == 0) {
        /* the PENDING reply is not recorded here yet: the provider's outbox
         * retries (KH-5003 is retryable) */
        khc_wipe(local_id, sizeof local_id);
        df->err = KH_E_OVERLOADED;
        snprintf(df->msg, sizeof df->msg, "the query is not recorded as pending yet; retry");
        goto fail;
    }
    if (strcmp(state, "pending") != 0) {
        /* answered, refused, or failed: final states stay final */
        khc_wipe(local_id, sizeof local_id);
        df->err = KH_E_UNEXPECTED_ANSWER;
        snprintf(df->msg, sizeof df->msg, "the query is %s, not waiting for a decision", state);
        goto fail;
    }
    bool refused = strcmp(a->result, "REFUSED") == 0;
    char *bytes = bytea_hex(&a->base);
    const char *u[6] = {df->irt,
                        refused ? "refused" : "answered",
                        refused ? a->code : NULL,
                        refused ? "refused by the provider's responder" : NULL,
                        a->result,
                        bytes};
    r = bytes ? kh_db_exec(c,
                           "UPDATE query SET state = $2, code = $3, message = $4, result = $5, "
                           "answer = $6::bytea, updated_at = now() WHERE msg_id = $1",
                           6, u)
              : NULL;
    if (bytes)
        khc_wipe(bytes, strlen(bytes));
    free(bytes);
    e = r ? KH_OK : KH_E_DB;
    PQclear(r);
    const char *outcome = refused ? "refused" : outcome_of("answered", a);
    if (e == KH_OK)
        e = gw_access(c, df->hex, "peer", df->h->sender, "deferred_answer", staff, df->h->procedure,
                      df->h->items, df->h->n_items, KH_OK);
    if (e == KH_OK)
        e = gw_record(c, df->irt, "asked", df->h->sender, df->h->procedure, df->h->items,
                      df->h->n_items, local_id, staff, outcome,
                      refused ? KH_E_MANUAL_REFUSAL : KH_OK, a->data, a->n_data);
    khc_wipe(local_id, sizeof local_id);
    if (e == KH_OK)
        e = kh_db_commit(c);
    if (e == KH_OK)
        return;
    df->err = KH_E_DB;
    snprintf(df->msg, sizeof df->msg, "cannot record the deferred answer");
fail:
    kh_db_rollback(c);
}

static void deferred_done(void *arg)
{
    deferred *df = arg;
    struct evhttp_request *req = df->req;
    if (req != NULL)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    if (df->err != KH_OK) {
        kh_info("peer", "tenant %s: deferred answer %s refused %s", df->t->id.code, df->hex,
                kh_err_code(df->err));
        if (req)
            kh_http_reply_err(req, df->err, "%s", df->msg);
    } else {
        kh_info("peer", "tenant %s: query %s answered by deferred answer %s (%s)%s", df->t->id.code,
                df->irt, df->hex, df->ans->result, df->again ? " again" : "");
        if (req) {
            Kh__Status st = KH__STATUS__INIT;
            st.code = "OK";
            st.message = "";
            kh_http_reply_pb(req, &st.base);
        }
    }
    deferred_free(df);
}

void gw_query_on_deferred(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
                          Kh__Header *h)
{
    char hex[2 * KH_MSG_ID_LEN + 1];
    kh_msgid_hex(&h->msg_id, hex);
    kh_err e = KH_OK;
    const char *why = NULL, *row = NULL;
    uint8_t *body = NULL;
    size_t blen = 0;
    deferred *df = NULL;
    const kh_org *prov = kh_dir_org(G.dir, h->sender);
    if (strcmp(h->answer_state, "DEFERRED") != 0 || h->in_reply_to.len != KH_MSG_ID_LEN) {
        e = KH_E_BAD_REQUEST;
        why = "an answer on its own must be a deferred answer to a query";
    } else if ((e = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        why = kh_err_get(e)->meaning;
    } else if ((e = kh_dir_legal(G.dir, t->id.code, h->procedure, h->sender, h->items, h->n_items,
                                 &row)) != KH_OK) {
        why = "no legal-basis row allows this answer";
    } else if ((e = kh_env_open(env, &t->id, G.national, prov ? prov->sign_cert : NULL, &body,
                                &blen)) != KH_OK) {
        why = kh_err_get(e)->meaning;
    } else if ((df = calloc(1, sizeof *df)) == NULL) {
        e = KH_E_INTERNAL;
        why = "out of memory";
    } else {
        df->t = t;
        df->h = h;
        h = NULL;
        memcpy(df->hex, hex, sizeof hex);
        kh_msgid_hex(&df->h->in_reply_to, df->irt);
        df->ans = kh__answer_body__unpack(NULL, blen, body);
        if (df->ans == NULL || !deferred_ok(df)) {
            e = KH_E_SPLICE;
            why = "deferred answer does not match its header";
        } else if (!deferred_within_basis(df->ans, row)) {
            e = KH_E_OVERSHARE;
            why = "the deferred answer carries a field the legal-basis row does not allow";
        }
    }
    khc_free_secret(body, blen);
    kh__envelope__free_unpacked(env, NULL);
    if (h)
        kh__header__free_unpacked(h, NULL);
    if (e != KH_OK) {
        kh_info("peer", "refused deferred answer %s: %s", hex, kh_err_code(e));
        kh_http_reply_err(req, e, "%s", why);
        if (df)
            deferred_free(df);
        return;
    }
    df->req = req;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), deferred_close, df);
    if (kh_pool_submit(G.pool, deferred_work, deferred_done, df) != 0) {
        df->err = KH_E_OVERLOADED;
        snprintf(df->msg, sizeof df->msg, "database queue full");
        deferred_done(df);
    }
}
