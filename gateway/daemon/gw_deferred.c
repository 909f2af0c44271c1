/* gw_deferred.c: deferred answers to our queries (flow 4's return leg): a
 * responder at the provider decided a held query later, and the router
 * forwards that decision to us through the peer API. The answer is checked
 * against its header, the legal basis and minimisation, and moves the query
 * (by its handle) to answered, refused or expired (no responder decided
 * before the provider's deadline), with its provision record, once:
 * a retransmission after a lost acknowledgement is acknowledged again. */
#include "gw_deferred.h"
#include "khpb.h"

#include "gw_qstate.h"
#include "gw_record.h"
#include "gw_req.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khseen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    bool expired = strcmp(a->result, "EXPIRED") == 0;
    bool ok = a->msg_id.len == KH_MSG_ID_LEN &&
              memcmp(a->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) == 0 &&
              a->in_reply_to.len == KH_MSG_ID_LEN &&
              memcmp(a->in_reply_to.data, h->in_reply_to.data, KH_MSG_ID_LEN) == 0 &&
              strcmp(a->sender, h->sender) == 0 && strcmp(a->recipient, df->t->id.code) == 0 &&
              strcmp(a->procedure, h->procedure) == 0 &&
              kh_items_equal(a->items, a->n_items, h->items, h->n_items) && a->deferred &&
              (strcmp(a->result, "FOUND") == 0 || strcmp(a->result, "NOT_FOUND") == 0 ||
               strcmp(a->result, "WITHHELD") == 0 || refused || expired) &&
              (!refused || (a->n_data == 0 && kh_err_from_code(a->code) == KH_E_MANUAL_REFUSAL)) &&
              (!expired || (a->n_data == 0 && kh_err_from_code(a->code) == KH_E_HOLD_EXPIRED)) &&
              (refused || expired || a->code[0] == '\0') && a->decide_by == 0;
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
    /* a refusal or an expiry carries no data and withholds nothing */
    if (refused || expired)
        return ok && a->n_withheld == 0 && a->base.n_unknown_fields == 0;
    return ok && gw_answer_consistent(a);
}

static void deferred_work(PGconn *c, void *arg)
{
    deferred *df = arg;
    Kh__AnswerBody *a = df->ans;
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    gw_codes_literal(df->h->items, df->h->n_items, lit, sizeof lit);
    if (kh_db_tenant_begin(&c, df->t->id.code) != KH_OK) {
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
    kh_seen_verdict v;
    kh_err e = kh_seen_register(c, KH_SEEN_TENANT, df->h->sender, df->hex, df->h->expires_at, NULL,
                                &v, NULL, NULL);
    if (e == KH_OK && v != KH_SEEN_NEW)
        e = KH_E_REPLAY;
    bool final = strcmp(state, "answered") == 0 || strcmp(state, "refused") == 0 ||
                 strcmp(state, "expired") == 0;
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
    if (strcmp(state, "expired") == 0 && strcmp(a->result, "EXPIRED") == 0) {
        /* our sweeper ended it first (gw_lease.c): the provider says the
         * same; acknowledged, nothing recorded twice */
        df->again = true;
        kh_db_rollback(c);
        khc_wipe(local_id, sizeof local_id);
        return;
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
        /* answered, refused, expired or failed: final states stay final */
        khc_wipe(local_id, sizeof local_id);
        df->err = KH_E_UNEXPECTED_ANSWER;
        snprintf(df->msg, sizeof df->msg, "the query is %s, not waiting for a decision", state);
        goto fail;
    }
    bool refused = strcmp(a->result, "REFUSED") == 0;
    bool expired = strcmp(a->result, "EXPIRED") == 0;
    const char *to = refused ? "refused" : expired ? "expired" : "answered";
    char *bytes = gw_pb_bytea(&a->base);
    const char *u[6] = {df->irt,
                        to,
                        refused || expired ? a->code : NULL,
                        refused   ? "refused by the provider's responder"
                        : expired ? "no responder decided before the provider's deadline"
                                  : NULL,
                        a->result,
                        bytes};
    r = bytes ? kh_db_exec(c,
                           "UPDATE query SET state = $2, code = $3, message = $4, result = $5, "
                           "answer = $6::bytea, updated_at = now(), envelope = NULL, node = NULL, "
                           "lease_until = NULL WHERE msg_id = $1",
                           6, u)
              : NULL;
    if (bytes)
        khc_wipe(bytes, strlen(bytes));
    free(bytes);
    e = r ? KH_OK : KH_E_DB;
    PQclear(r);
    const char *outcome = refused || expired ? to : gw_answer_outcome("answered", a);
    if (e == KH_OK)
        e = gw_access(c, df->hex, "peer", df->h->sender, "deferred_answer", staff, df->h->procedure,
                      df->h->items, df->h->n_items, KH_OK);
    if (e == KH_OK)
        e = gw_record(c, df->irt, "asked", df->h->sender, df->h->procedure, df->h->items,
                      df->h->n_items, local_id, staff, outcome,
                      refused   ? KH_E_MANUAL_REFUSAL
                      : expired ? KH_E_HOLD_EXPIRED
                                : KH_OK,
                      a->data, a->n_data);
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
    struct evhttp_request *req = gw_req_take(&df->req);
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

void gw_deferred_on_answer(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
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
        df->ans =
            (Kh__AnswerBody *)kh_pb_unpack(&kh__answer_body__descriptor, body, blen, NULL, NULL, 0);
        if (df->ans == NULL || !deferred_ok(df)) {
            e = KH_E_SPLICE;
            why = "deferred answer does not match its header";
        } else if (!gw_answer_within_basis(G.dir, row, df->ans)) {
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
    gw_req_hold(&df->req, req);
    if (kh_pool_submit_for(G.pool, df->t->id.code, deferred_work, deferred_done, df) != 0) {
        df->err = KH_E_OVERLOADED;
        snprintf(df->msg, sizeof df->msg, "database queue full");
        deferred_done(df);
    }
}
