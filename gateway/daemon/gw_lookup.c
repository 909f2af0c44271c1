/* gw_lookup.c: a business system's queries by handle (gw_lookup.h):
 *   POST /v1/query/status  one query: its state and stored answer
 *   POST /v1/query/list    the system's queries, newest first, with filters
 * Handles belong to the business system that asked: another system, or
 * another tenant, is told the handle is unknown (KH-1007). */
#include "gw_lookup.h"
#include "khpb.h"

#include "gw_ident.h"
#include "gw_qstate.h"
#include "gw_req.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khid.h"
#include "khlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    struct evhttp_request *req;
    gw_tenant *t;
    char system[40];
    Kh__QueryStatusRequest *sreq;
    Kh__QueryListRequest *lreq;
    PGresult *rows;
    kh_err err;
} lookup;

static void lookup_work(PGconn *c, void *arg)
{
    lookup *l = arg;
    if (kh_db_tenant_begin(&c, l->t->id.code) != KH_OK) {
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
            ans =
                (Kh__AnswerBody *)kh_pb_unpack(&kh__answer_body__descriptor, raw, n, NULL, NULL, 0);
            khc_wipe(raw, n);
            PQfreemem(raw);
        }
    }
    gw_qstate_reply(req, l->sreq->handle, state, code, PQgetvalue(r, 0, 2), ans);
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
        s->state = (char *)gw_qstate_upper(PQgetvalue(r, i, 1));
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
    struct evhttp_request *req = gw_req_take(&l->req);
    if (req != NULL) {
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
    bool state_ok = f->state[0] == '\0';
    for (size_t i = 0; gw_qstate_names[i] != NULL; i++)
        state_ok = state_ok || strcmp(f->state, gw_qstate_names[i]) == 0;
    if (!state_ok)
        return "state: expected sent, answered, pending, refused, expired, failed or timed_out";
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
    gw_tenant *t = gw_identify(req, sys, sizeof sys, false); /* reads: allowed in maintenance */
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
    gw_req_hold(&l->req, req);
    if (kh_pool_submit_for(G.pool, l->t->id.code, lookup_work, lookup_done, l) != 0) {
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

void gw_lookup_register(struct evhttp *http)
{
    kh_http_route(http, "/v1/query/status", on_status, NULL);
    kh_http_route(http, "/v1/query/list", on_list, NULL);
}
