/* gw_biz.c: the business API (business systems of the hosted tenants).
 *   POST /v1/replica   register or delete a reference copy (副本) version
 *   POST /v1/linkcode  obtain a link code for a local ID (flow 1)
 * Queries (/v1/query...) are in gw_query.c.
 * Every call: identify tenant + system from the client certificate, validate
 * the body, check permissions in the tenant's transaction, then act. */
#include "gw_state.h"
#include "khpb.h"
#include "gw_biz.h"
#include "gw_ident.h"
#include "gw_router.h"
#include "gw_req.h"
#include "gw_bulk.h"
#include "gw_lookup.h"
#include "gw_query.h"
#include "khid.h"

#include "idconv.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"
#include "refdb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct gw_call gw_call;
struct gw_call {
    struct evhttp_request *req; /* NULL once the client has gone */
    gw_tenant *t;
    char system[40];
    kh_err err;
    char msg[256];
    uint8_t msg_id[KH_MSG_ID_LEN];
    char msg_hex[2 * KH_MSG_ID_LEN + 1];
    /* register */
    Kh__RegisterRequest *reg;
    uint64_t version;
    /* link code */
    Kh__LinkCodeRequest *lc;
    char link_code[KH_ID_LINK_CODE_LEN + 1];
    struct timespec started;
    int timeout_ms;
};

static gw_call *call_new(struct evhttp_request *req, gw_tenant *t, const char *sys)
{
    gw_call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return NULL;
    call->t = t;
    snprintf(call->system, sizeof call->system, "%s", sys);
    gw_req_hold(&call->req, req);
    clock_gettime(CLOCK_MONOTONIC, &call->started);
    return call;
}

static void call_free(gw_call *call)
{
    if (call->reg)
        kh__register_request__free_unpacked(call->reg, NULL);
    if (call->lc) {
        /* the national reference must not outlive this call */
        khc_wipe(call->lc->resident_code, strlen(call->lc->resident_code));
        kh__link_code_request__free_unpacked(call->lc, NULL);
    }
    khc_wipe(call->link_code, sizeof call->link_code);
    free(call);
}

static void call_fail(gw_call *call)
{
    struct evhttp_request *req = gw_req_take(&call->req);
    if (req != NULL)
        kh_http_reply_err(req, call->err, "%s", call->msg);
    call_free(call);
}

#define call_set(call, e, ...)                                                                     \
    kh_err_set(&(call)->err, (call)->msg, sizeof(call)->msg, e, __VA_ARGS__)

static void submit(gw_call *call, kh_pool_work_fn w, kh_pool_done_fn d)
{
    if (kh_pool_submit_for(G.pool, call->t->id.code, w, d, call) != 0) {
        call_set(call, KH_E_OVERLOADED, "database queue full");
        call_fail(call);
    }
}

/* ---------------------------------------------------------------- replica */

static void reg_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    call->err = kh_db_tenant_begin(&c, call->t->id.code);
    if (call->err != KH_OK) {
        snprintf(call->msg, sizeof call->msg, "database unavailable");
        return;
    }
    /* an unknown item is named as such before permissions, to help integrators */
    const char *item = call->reg->item_code;
    PGresult *r = kh_db_exec(c, "SELECT count(*) FROM kh.item WHERE item_code = $1", 1, &item);
    if (r == NULL) {
        call->err = KH_E_DB;
    } else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
        call->err = KH_E_UNKNOWN_ITEM;
        snprintf(call->msg, sizeof call->msg, "item_code: not in the item catalogue");
    } else {
        call->err = gw_permitted(c, call->system, "register", item, call->msg, sizeof call->msg);
    }
    PQclear(r);
    if (call->err == KH_OK)
        call->err =
            refdb_register(c, call->system, call->reg, &call->version, call->msg, sizeof call->msg);
    if (call->err == KH_OK)
        call->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
}

static void reg_done(void *arg)
{
    gw_call *call = arg;
    if (call->err != KH_OK) {
        kh_info("biz", "tenant %s system %s: registration refused %s", call->t->id.code,
                call->system, kh_err_code(call->err));
        call_fail(call);
        return;
    }
    kh_info("biz", "tenant %s system %s: registered item %s version %llu", call->t->id.code,
            call->system, call->reg->item_code, (unsigned long long)call->version);
    struct evhttp_request *req = gw_req_take(&call->req);
    if (req != NULL) {
        Kh__Status st = KH__STATUS__INIT;
        st.code = "OK";
        st.message = "";
        Kh__RegisterResponse resp = KH__REGISTER_RESPONSE__INIT;
        resp.status = &st;
        resp.version = call->version;
        kh_http_reply_pb(req, &resp.base);
    }
    call_free(call);
}

static void on_replica(struct evhttp_request *req, void *arg)
{
    char sys[40];
    gw_tenant *t = gw_identify(req, sys, sizeof sys, true);
    if (t == NULL)
        return;
    Kh__RegisterRequest *r = gw_read_pb(req, &kh__register_request__descriptor);
    if (r == NULL)
        return;
    gw_call *call = call_new(req, t, sys);
    if (call == NULL) {
        kh__register_request__free_unpacked(r, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    call->reg = r;
    submit(call, reg_work, reg_done);
}

/* --------------------------------------------------------------- linkcode */

static void lc_sent(int status, const uint8_t *body, size_t len, void *arg);
static void lc_store_work(PGconn *c, void *arg);
static void lc_store_done(void *arg);

static void lc_check_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    call->err = kh_db_tenant_begin(&c, call->t->id.code);
    if (call->err != KH_OK) {
        snprintf(call->msg, sizeof call->msg, "database unavailable");
        return;
    }
    call->err = gw_permitted(c, call->system, "linkcode", "*", call->msg, sizeof call->msg);
    kh_db_rollback(c);
}

static void lc_check_done(void *arg)
{
    gw_call *call = arg;
    if (G.stopping && call->err == KH_OK)
        call_set(call, KH_E_UPSTREAM, "gateway stopping");
    if (call->err != KH_OK) {
        call_fail(call);
        return;
    }
    Kh__Header h;
    Kh__LinkCodeRequestBody b = KH__LINK_CODE_REQUEST_BODY__INIT;
    uint8_t *body = NULL, *env = NULL;
    size_t blen = 0, elen = 0;
    if (kh_header_init(&h, call->msg_id, KH__MSG_TYPE__LINKCODE_REQUEST, call->t->id.code, "ROUTER",
                       call->t->id.code, G.ttl) != 0)
        goto fail;
    khc_hex(call->msg_id, KH_MSG_ID_LEN, call->msg_hex);
    b.msg_id = h.msg_id;
    b.sender = call->t->id.code;
    b.resident_code = call->lc->resident_code;
    if (kh_pb_pack(&b.base, &body, &blen) != 0 ||
        kh_env_seal(&h, &call->t->id, body, blen, G.dir->router_enc, &env, &elen) != 0)
        goto fail;
    khc_free_secret(body, blen);
    body = NULL;
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_POST, G.set.router, "/v1/envelope", env,
                        elen, G.default_timeout_ms, "ROUTER", "router", lc_sent, call) != 0)
        goto fail;
    free(env);
    return;
fail:
    khc_free_secret(body, blen);
    free(env);
    call_set(call, KH_E_INTERNAL, "cannot build the link-code request");
    call_fail(call);
}

/* The router's reply to call: verified and opened, or NULL with call->err set. */
static uint8_t *open_router_reply(gw_call *call, int status, const uint8_t *buf, size_t len,
                                  Kh__Header **hp, size_t *blen)
{
    if (status == 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - call->started.tv_sec) * 1000 +
                  (now.tv_nsec - call->started.tv_nsec) / 1000000;
        bool late = call->timeout_ms > 0 && ms >= call->timeout_ms;
        call_set(call, late ? KH_E_TIMEOUT : KH_E_UPSTREAM, "%s",
                 late ? "no answer within the timeout" : "router unreachable");
        return NULL;
    }
    if (status != 200) {
        call->err = gw_relayed_refusal(buf, len, call->msg, sizeof call->msg);
        return NULL;
    }
    return gw_open_from_router(call->t, G.dir, buf, len, KH__MSG_TYPE__LINKCODE_ANSWER,
                               call->msg_id, G.dir->router_sign, "ROUTER", hp, blen, &call->err,
                               call->msg, sizeof call->msg);
}

static void lc_sent(int status, const uint8_t *buf, size_t len, void *arg)
{
    gw_call *call = arg;
    Kh__Header *h = NULL;
    size_t blen = 0;
    uint8_t *body = open_router_reply(call, status, buf, len, &h, &blen);
    if (body == NULL) {
        kh_info("biz", "tenant %s: link-code request %s refused %s", call->t->id.code,
                call->msg_hex, kh_err_code(call->err));
        call_fail(call);
        return;
    }
    Kh__LinkCodeAnswerBody *a = (Kh__LinkCodeAnswerBody *)kh_pb_unpack(
        &kh__link_code_answer_body__descriptor, body, blen, NULL, NULL, 0);
    khc_free_secret(body, blen);
    kh__header__free_unpacked(h, NULL);
    if (a == NULL || a->in_reply_to.len != KH_MSG_ID_LEN ||
        memcmp(a->in_reply_to.data, call->msg_id, KH_MSG_ID_LEN) != 0 ||
        strcmp(a->recipient, call->t->id.code) != 0 || !kh_id_link_code(a->link_code)) {
        if (a)
            kh__link_code_answer_body__free_unpacked(a, NULL);
        call_set(call, KH_E_SPLICE, "link-code answer does not match the request");
        call_fail(call);
        return;
    }
    snprintf(call->link_code, sizeof call->link_code, "%s", a->link_code);
    khc_wipe(a->link_code, strlen(a->link_code));
    kh__link_code_answer_body__free_unpacked(a, NULL);
    /* the national reference has done its job: forget it now */
    khc_wipe(call->lc->resident_code, strlen(call->lc->resident_code));
    submit(call, lc_store_work, lc_store_done);
}

static void lc_store_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    call->err = kh_db_tenant_begin(&c, call->t->id.code);
    if (call->err == KH_OK)
        call->err = idconv_store(c, call->lc->local_id, call->link_code);
    if (call->err == KH_OK)
        call->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
    if (call->err == KH_E_LINK_TAKEN)
        snprintf(call->msg, sizeof call->msg,
                 "this resident already has a link code here under another local ID");
    else if (call->err != KH_OK)
        snprintf(call->msg, sizeof call->msg, "cannot store the link code");
}

static void lc_store_done(void *arg)
{
    gw_call *call = arg;
    if (call->err != KH_OK) {
        call_fail(call);
        return;
    }
    kh_info("biz", "tenant %s: link code acquired (message %s)", call->t->id.code, call->msg_hex);
    struct evhttp_request *req = gw_req_take(&call->req);
    if (req != NULL) {
        Kh__Status st = KH__STATUS__INIT;
        st.code = "OK";
        st.message = "";
        Kh__LinkCodeResponse resp = KH__LINK_CODE_RESPONSE__INIT;
        resp.status = &st;
        kh_http_reply_pb(req, &resp.base);
    }
    call_free(call);
}

static void on_linkcode(struct evhttp_request *req, void *arg)
{
    char sys[40];
    gw_tenant *t = gw_identify(req, sys, sizeof sys, true);
    if (t == NULL)
        return;
    Kh__LinkCodeRequest *r = gw_read_pb(req, &kh__link_code_request__descriptor);
    if (r == NULL)
        return;
    gw_call *call = call_new(req, t, sys);
    if (call == NULL) {
        khc_wipe(r->resident_code, strlen(r->resident_code));
        kh__link_code_request__free_unpacked(r, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    call->lc = r;
    call->timeout_ms = G.default_timeout_ms;
    if (!kh_id_local_id(r->local_id)) {
        call_set(call, KH_E_FIELD, "local_id: expected 1 to 15 digits");
        call_fail(call);
        return;
    }
    if (!kh_id_resident_code(r->resident_code)) {
        call_set(call, KH_E_BAD_RESIDENT_CODE, "resident_code: expected exactly 11 digits");
        call_fail(call);
        return;
    }
    submit(call, lc_check_work, lc_check_done);
}

/* new_work: an upload begins (its parts, commit and status are work in
 * flight, which maintenance lets finish) */
#define BULK_HANDLER(name, fn, new_work)                                                           \
    static void name(struct evhttp_request *req, void *arg)                                        \
    {                                                                                              \
        char sys[40];                                                                              \
        gw_tenant *t = gw_identify(req, sys, sizeof sys, new_work);                                \
        if (t != NULL)                                                                             \
            fn(req, t, sys);                                                                       \
    }
BULK_HANDLER(on_bulk_open, gw_bulk_on_open, true)
BULK_HANDLER(on_bulk_part, gw_bulk_on_part, false)
BULK_HANDLER(on_bulk_commit, gw_bulk_on_commit, false)
BULK_HANDLER(on_bulk_status, gw_bulk_on_status, false)

void gw_biz_register(struct evhttp *http)
{
    kh_http_route(http, "/v1/bulk/open", on_bulk_open, NULL);
    kh_http_route(http, "/v1/bulk/part", on_bulk_part, NULL);
    kh_http_route(http, "/v1/bulk/commit", on_bulk_commit, NULL);
    kh_http_route(http, "/v1/bulk/status", on_bulk_status, NULL);
    kh_http_route(http, "/v1/replica", on_replica, NULL);
    kh_http_route(http, "/v1/linkcode", on_linkcode, NULL);
    gw_query_register(http);
    gw_lookup_register(http);
}
