/* gw_biz.c: the business API (business systems of the hosted tenants).
 *   POST /v1/replica   register or delete a reference copy (副本) version
 *   POST /v1/linkcode  obtain a link code for a local ID (flow 1)
 *   POST /v1/query     ask another organisation (flow 2), wait for the answer
 * Every call: identify tenant + system from the client certificate, validate
 * the body, check permissions in the tenant's transaction, then act. */
#include "gw.h"
#include "gw_util.h"

#include "idconv.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"
#include "refdb.h"

#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    char link_code[IDCONV_LINK_CODE_LEN + 1];
    /* query */
    Kh__QueryRequest *q;
    Kh__AnswerBody *ans;
    struct timespec started;
    int timeout_ms;
};

static void on_client_close(struct evhttp_connection *conn, void *arg)
{
    gw_call *call = arg;
    call->req = NULL;
}

static gw_call *call_new(struct evhttp_request *req, gw_tenant *t, const char *sys)
{
    gw_call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return NULL;
    call->req = req;
    call->t = t;
    snprintf(call->system, sizeof call->system, "%s", sys);
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_client_close, call);
    clock_gettime(CLOCK_MONOTONIC, &call->started);
    return call;
}

static void call_free(gw_call *call)
{
    if (call->reg)
        kh__register_request__free_unpacked(call->reg, NULL);
    if (call->lc) {
        /* the national reference must not outlive this call */
        OPENSSL_cleanse(call->lc->resident_code, strlen(call->lc->resident_code));
        kh__link_code_request__free_unpacked(call->lc, NULL);
    }
    if (call->q)
        kh__query_request__free_unpacked(call->q, NULL);
    if (call->ans) {
        kh_items_wipe(call->ans->data, call->ans->n_data);
        kh__answer_body__free_unpacked(call->ans, NULL);
    }
    OPENSSL_cleanse(call->link_code, sizeof call->link_code);
    free(call);
}

/* Detaches from the connection and, if the client is still there, replies. */
static struct evhttp_request *call_take_req(gw_call *call)
{
    struct evhttp_request *req = call->req;
    if (req != NULL)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    call->req = NULL;
    return req;
}

static void call_fail(gw_call *call)
{
    struct evhttp_request *req = call_take_req(call);
    if (req != NULL)
        kh_http_reply_err(req, call->err, "%s", call->msg);
    call_free(call);
}

static void call_set(gw_call *call, kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_set(gw_call *call, kh_err e, const char *fmt, ...)
{
    va_list ap;
    call->err = e;
    va_start(ap, fmt);
    vsnprintf(call->msg, sizeof call->msg, fmt, ap);
    va_end(ap);
}

/* The tenant and system named by a verified client certificate: O= must be a
 * hosted tenant whose business CA issued the certificate; CN= is the system. */
static gw_tenant *identify(struct evhttp_request *req, char *sys, size_t syslen)
{
    SSL *ssl = kh_http_req_ssl(req);
    X509 *peer = kh_tls_peer_cert(ssl);
    char org[16];
    gw_tenant *t = NULL;
    if (peer == NULL || khc_cert_org(peer, org, sizeof org) != 0)
        goto out;
    t = gw_tenant_find(org);
    X509 *issuer = kh_tls_peer_issuer(ssl);
    if (t == NULL || issuer == NULL || !khc_cert_equal(issuer, t->business_ca)) {
        t = NULL;
        goto out;
    }
    int n =
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, sys, (int)syslen);
    if (n <= 0 || !gw_token_ok(sys, 32))
        t = NULL;
out:
    X509_free(peer);
    return t;
}

/* Checks in the tenant transaction that the system exists and may do op on scope. */
static kh_err permitted(PGconn *c, const char *sys, const char *op, const char *scope, char *msg,
                        size_t msglen)
{
    const char *p[3] = {sys, op, scope};
    PGresult *r = kh_db_exec(c,
                             "SELECT (SELECT count(*) FROM business_system WHERE system_id = $1), "
                             "(SELECT count(*) FROM system_permission WHERE system_id = $1 "
                             " AND operation = $2 AND scope IN ('*', $3))",
                             3, p);
    if (r == NULL)
        return KH_E_DB;
    bool known = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    bool allowed = strcmp(PQgetvalue(r, 0, 1), "0") != 0;
    PQclear(r);
    if (!known) {
        snprintf(msg, msglen, "business system '%s' is not registered for this tenant", sys);
        return KH_E_CLIENT_UNKNOWN;
    }
    if (!allowed) {
        snprintf(msg, msglen, "business system '%s' may not %s for %s", sys, op, scope);
        return KH_E_SYSTEM_PERMISSION;
    }
    return KH_OK;
}

static gw_tenant *identify_or_refuse(struct evhttp_request *req, char *sys, size_t syslen)
{
    gw_tenant *t = identify(req, sys, syslen);
    if (t == NULL) {
        kh_warn("biz", "refused a client certificate that names no hosted tenant/system");
        kh_http_reply_err(req, KH_E_CLIENT_UNKNOWN, "client certificate not recognised");
    }
    return t;
}

static void submit(gw_call *call, kh_pool_work_fn w, kh_pool_done_fn d)
{
    if (kh_pool_submit(G.pool, w, d, call) != 0) {
        call_set(call, KH_E_OVERLOADED, "database queue full");
        call_fail(call);
    }
}

/* ---------------------------------------------------------------- replica */

static void reg_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    call->err = kh_db_tenant_begin(c, call->t->id.code);
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
        call->err = permitted(c, call->system, "register", item, call->msg, sizeof call->msg);
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
    struct evhttp_request *req = call_take_req(call);
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
    gw_tenant *t = identify_or_refuse(req, sys, sizeof sys);
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
    call->err = kh_db_tenant_begin(c, call->t->id.code);
    if (call->err != KH_OK) {
        snprintf(call->msg, sizeof call->msg, "database unavailable");
        return;
    }
    call->err = permitted(c, call->system, "linkcode", "*", call->msg, sizeof call->msg);
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
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_POST, G.router, "/v1/envelope", env, elen,
                        G.default_timeout_ms, "ROUTER", "router", lc_sent, call) != 0)
        goto fail;
    free(env);
    return;
fail:
    khc_free_secret(body, blen);
    free(env);
    call_set(call, KH_E_INTERNAL, "cannot build the link-code request");
    call_fail(call);
}

/* Verifies a router answer envelope addressed to this call's tenant and
 * returns its opened body, or sets call->err. */
static uint8_t *open_router_reply(gw_call *call, int status, const uint8_t *buf, size_t len,
                                  Kh__MsgType want, X509 *expect_signer, const char *expect_sender,
                                  Kh__Header **hp, size_t *blen)
{
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    uint8_t *body = NULL;
    char why[160];
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
        char code[32];
        kh_http_parse_status(buf, len, code, sizeof code, call->msg, sizeof call->msg);
        kh_err e = kh_err_from_code(code);
        call->err = (e == KH_E__COUNT || e == KH_OK) ? KH_E_UPSTREAM : e;
        return NULL;
    }
    call->err = kh_env_parse(buf, len, &env, &h, why, sizeof why);
    if (call->err != KH_OK) {
        call_set(call, KH_E_UPSTREAM, "router reply unreadable: %s", why);
        return NULL;
    }
    if ((call->err = kh_env_verify(env, G.dir->router_sign)) != KH_OK ||
        strcmp(h->signer, "ROUTER") != 0) {
        call_set(call, KH_E_HEADER_SIG, "reply header not signed by the router");
        goto out;
    }
    if (h->type != want || strcmp(h->recipient, call->t->id.code) != 0 ||
        strcmp(h->sender, expect_sender) != 0 || h->in_reply_to.len != KH_MSG_ID_LEN ||
        memcmp(h->in_reply_to.data, call->msg_id, KH_MSG_ID_LEN) != 0) {
        call_set(call, KH_E_SPLICE, "reply header does not answer this request");
        goto out;
    }
    if ((call->err = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        call_set(call, call->err, "reply %s", kh_err_get(call->err)->meaning);
        goto out;
    }
    call->err = kh_env_open(env, &call->t->id, G.national, expect_signer, &body, blen);
    if (call->err != KH_OK)
        call_set(call, call->err, "reply payload refused: %s", kh_err_get(call->err)->meaning);
out:
    if (call->err != KH_OK || body == NULL) {
        kh_env_free(env, h);
        return NULL;
    }
    kh__envelope__free_unpacked(env, NULL);
    *hp = h;
    return body;
}

static void lc_sent(int status, const uint8_t *buf, size_t len, void *arg)
{
    gw_call *call = arg;
    Kh__Header *h = NULL;
    size_t blen = 0;
    uint8_t *body = open_router_reply(call, status, buf, len, KH__MSG_TYPE__LINKCODE_ANSWER,
                                      G.dir->router_sign, "ROUTER", &h, &blen);
    if (body == NULL) {
        kh_info("biz", "tenant %s: link-code request %s refused %s", call->t->id.code,
                call->msg_hex, kh_err_code(call->err));
        call_fail(call);
        return;
    }
    Kh__LinkCodeAnswerBody *a = kh__link_code_answer_body__unpack(NULL, blen, body);
    khc_free_secret(body, blen);
    kh__header__free_unpacked(h, NULL);
    if (a == NULL || a->in_reply_to.len != KH_MSG_ID_LEN ||
        memcmp(a->in_reply_to.data, call->msg_id, KH_MSG_ID_LEN) != 0 ||
        strcmp(a->recipient, call->t->id.code) != 0 || !idconv_link_code_valid(a->link_code)) {
        if (a)
            kh__link_code_answer_body__free_unpacked(a, NULL);
        call_set(call, KH_E_SPLICE, "link-code answer does not match the request");
        call_fail(call);
        return;
    }
    snprintf(call->link_code, sizeof call->link_code, "%s", a->link_code);
    OPENSSL_cleanse(a->link_code, strlen(a->link_code));
    kh__link_code_answer_body__free_unpacked(a, NULL);
    /* the national reference has done its job: forget it now */
    OPENSSL_cleanse(call->lc->resident_code, strlen(call->lc->resident_code));
    submit(call, lc_store_work, lc_store_done);
}

static void lc_store_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    call->err = kh_db_tenant_begin(c, call->t->id.code);
    if (call->err == KH_OK)
        call->err = idconv_store(c, call->lc->local_id, call->link_code);
    if (call->err == KH_OK)
        call->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
    if (call->err != KH_OK)
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
    struct evhttp_request *req = call_take_req(call);
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
    gw_tenant *t = identify_or_refuse(req, sys, sizeof sys);
    if (t == NULL)
        return;
    Kh__LinkCodeRequest *r = gw_read_pb(req, &kh__link_code_request__descriptor);
    if (r == NULL)
        return;
    gw_call *call = call_new(req, t, sys);
    if (call == NULL) {
        OPENSSL_cleanse(r->resident_code, strlen(r->resident_code));
        kh__link_code_request__free_unpacked(r, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    call->lc = r;
    call->timeout_ms = G.default_timeout_ms;
    if (!idconv_local_id_valid(r->local_id)) {
        call_set(call, KH_E_FIELD, "local_id: expected 1 to 15 digits");
        call_fail(call);
        return;
    }
    if (!idconv_resident_code_valid(r->resident_code)) {
        call_set(call, KH_E_BAD_RESIDENT_CODE, "resident_code: expected exactly 11 digits");
        call_fail(call);
        return;
    }
    submit(call, lc_check_work, lc_check_done);
}

/* ------------------------------------------------------------------ query */

static void q_sent(int status, const uint8_t *body, size_t len, void *arg);
static void q_record_work(PGconn *c, void *arg);
static void q_record_done(void *arg);

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

/* Records a refused query (call->err) in the tenant's records; nothing was provided. */
static void q_record_refusal(PGconn *c, gw_call *call)
{
    Kh__QueryRequest *q = call->q;
    if (kh_db_tenant_begin(c, call->t->id.code) == KH_OK &&
        gw_record(c, call->msg_hex, "asked", q->provider, q->procedure, q->items, q->n_items,
                  q->local_id, q->staff_id, "refused", call->err, NULL, 0) == KH_OK)
        kh_db_commit(c);
    else
        kh_db_rollback(c);
}

static void q_check_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    Kh__QueryRequest *q = call->q;
    if (call->err != KH_OK) { /* refused before any database work */
        q_record_refusal(c, call);
        return;
    }
    call->err = kh_db_tenant_begin(c, call->t->id.code);
    if (call->err != KH_OK) {
        snprintf(call->msg, sizeof call->msg, "database unavailable");
        return;
    }
    call->err = permitted(c, call->system, "query", q->procedure, call->msg, sizeof call->msg);
    if (call->err == KH_OK)
        call->err = staff_may(c, q->staff_id, q->procedure, call->msg, sizeof call->msg);
    if (call->err == KH_OK) {
        call->err = idconv_link_of(c, q->local_id, call->link_code);
        if (call->err != KH_OK)
            snprintf(call->msg, sizeof call->msg, "local_id has no link code at this tenant");
    }
    if (call->err == KH_E_DB) {
        kh_db_rollback(c);
        return;
    }
    if (call->err != KH_OK) {
        kh_db_rollback(c);
        q_record_refusal(c, call);
        return;
    }
    kh_db_rollback(c); /* read-only so far */
}

static void q_check_done(void *arg)
{
    gw_call *call = arg;
    if (G.stopping && call->err == KH_OK)
        call_set(call, KH_E_UPSTREAM, "gateway stopping");
    Kh__QueryRequest *q = call->q;
    if (call->err != KH_OK) {
        kh_info("biz", "tenant %s: query %s refused %s", call->t->id.code, call->msg_hex,
                kh_err_code(call->err));
        call_fail(call);
        return;
    }
    const kh_org *prov = kh_dir_org(G.dir, q->provider);
    Kh__Header h;
    Kh__QueryBody b = KH__QUERY_BODY__INIT;
    uint8_t *body = NULL, *env = NULL;
    size_t blen = 0, elen = 0;
    uint8_t id[KH_MSG_ID_LEN];
    memcpy(id, call->msg_id, sizeof id);
    if (kh_header_init(&h, id, KH__MSG_TYPE__QUERY, call->t->id.code, q->provider, call->t->id.code,
                       G.ttl) != 0)
        goto fail;
    memcpy(h.msg_id.data, call->msg_id, KH_MSG_ID_LEN); /* keep the id the refusal path used */
    h.procedure = q->procedure;
    h.items = q->items;
    h.n_items = q->n_items;
    h.subject = call->link_code;
    b.msg_id = h.msg_id;
    b.sender = call->t->id.code;
    b.recipient = q->provider;
    b.procedure = q->procedure;
    b.items = q->items;
    b.n_items = q->n_items;
    b.staff_id = q->staff_id;
    b.as_of = q->as_of;
    if (kh_pb_pack(&b.base, &body, &blen) != 0 ||
        kh_env_seal(&h, &call->t->id, body, blen, prov->enc_cert, &env, &elen) != 0)
        goto fail;
    khc_free_secret(body, blen);
    body = NULL;
    kh_info("biz", "tenant %s: query %s to %s procedure %s", call->t->id.code, call->msg_hex,
            q->provider, q->procedure);
    /* q_sent may run before this returns (a refused connect): call is not ours after it */
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_POST, G.router, "/v1/envelope", env, elen,
                        call->timeout_ms, "ROUTER", "router", q_sent, call) != 0)
        goto fail;
    free(env);
    return;
fail:
    khc_free_secret(body, blen);
    free(env);
    call_set(call, KH_E_INTERNAL, "cannot build the query");
    call_fail(call);
}

static void q_sent(int status, const uint8_t *buf, size_t len, void *arg)
{
    gw_call *call = arg;
    Kh__QueryRequest *q = call->q;
    const kh_org *prov = kh_dir_org(G.dir, q->provider);
    Kh__Header *h = NULL;
    size_t blen = 0;
    uint8_t *body = open_router_reply(call, status, buf, len, KH__MSG_TYPE__ANSWER,
                                      prov ? prov->sign_cert : NULL, q->provider, &h, &blen);
    if (body != NULL) {
        call->ans = kh__answer_body__unpack(NULL, blen, body);
        khc_free_secret(body, blen);
        bool ok = call->ans != NULL && call->ans->in_reply_to.len == KH_MSG_ID_LEN &&
                  memcmp(call->ans->in_reply_to.data, call->msg_id, KH_MSG_ID_LEN) == 0 &&
                  strcmp(call->ans->sender, q->provider) == 0 &&
                  strcmp(call->ans->recipient, call->t->id.code) == 0 &&
                  strcmp(call->ans->procedure, q->procedure) == 0 &&
                  kh_items_equal(call->ans->items, call->ans->n_items, h->items, h->n_items);
        /* an answer may carry only items that were asked for */
        for (size_t i = 0; ok && i < call->ans->n_data; i++) {
            bool asked = false;
            for (size_t k = 0; k < q->n_items; k++)
                asked = asked || strcmp(call->ans->data[i]->item_code, q->items[k]) == 0;
            ok = asked;
        }
        if (!ok)
            call_set(call, KH_E_SPLICE, "answer body does not match its header or query");
        kh__header__free_unpacked(h, NULL);
    }
    submit(call, q_record_work, q_record_done);
}

static void q_record_work(PGconn *c, void *arg)
{
    gw_call *call = arg;
    Kh__QueryRequest *q = call->q;
    const char *outcome = call->err != KH_OK                        ? "refused"
                          : strcmp(call->ans->result, "FOUND") == 0 ? "provided"
                                                                    : "not_found";
    if (call->err == KH_E_UPSTREAM || call->err == KH_E_TIMEOUT || call->err == KH_E_INTERNAL)
        outcome = "failed";
    if (kh_db_tenant_begin(c, call->t->id.code) != KH_OK)
        goto fail;
    if (gw_record(c, call->msg_hex, "asked", q->provider, q->procedure, q->items, q->n_items,
                  q->local_id, q->staff_id, outcome, call->err,
                  call->err == KH_OK ? call->ans->data : NULL,
                  call->err == KH_OK ? call->ans->n_data : 0) != KH_OK ||
        kh_db_commit(c) != KH_OK)
        goto fail;
    return;
fail:
    kh_db_rollback(c);
    if (call->err == KH_OK) {
        /* an answer we cannot record is not delivered */
        call->err = KH_E_DB;
        snprintf(call->msg, sizeof call->msg, "cannot record the answer");
    }
}

static void q_record_done(void *arg)
{
    gw_call *call = arg;
    if (call->err != KH_OK) {
        kh_info("biz", "tenant %s: query %s ended %s", call->t->id.code, call->msg_hex,
                kh_err_code(call->err));
        call_fail(call);
        return;
    }
    kh_info("biz", "tenant %s: query %s answered (%s)", call->t->id.code, call->msg_hex,
            call->ans->result);
    struct evhttp_request *req = call_take_req(call);
    if (req != NULL) {
        Kh__Status st = KH__STATUS__INIT;
        st.code = "OK";
        st.message = "";
        Kh__QueryResponse resp = KH__QUERY_RESPONSE__INIT;
        resp.status = &st;
        resp.handle = call->msg_hex;
        resp.result = call->ans->result;
        resp.data = call->ans->data;
        resp.n_data = call->ans->n_data;
        kh_http_reply_pb(req, &resp.base);
    }
    call_free(call);
}

static const char *query_invalid(const Kh__QueryRequest *q)
{
    if (!gw_token_ok(q->staff_id, 32))
        return "staff_id: expected 1 to 32 of [A-Za-z0-9_-]";
    if (!gw_code_ok(q->procedure, KH_CODE_MAX))
        return "procedure: expected a procedure code such as JT001";
    if (!idconv_org_code_valid(q->provider))
        return "provider: expected an organisation code (6 characters, check digit for "
               "municipalities)";
    if (q->n_items == 0 || q->n_items > KH_MAX_ITEMS)
        return "items: expected 1 to 16 item codes";
    for (size_t i = 0; i < q->n_items; i++) {
        if (!gw_code_ok(q->items[i], KH_CODE_MAX))
            return "items: expected item codes such as TK001";
        for (size_t k = 0; k < i; k++)
            if (strcmp(q->items[i], q->items[k]) == 0)
                return "items: an item is listed twice";
    }
    if (!idconv_local_id_valid(q->local_id))
        return "local_id: expected 1 to 15 digits";
    if (q->as_of[0] != '\0' && !gw_date_ok(q->as_of))
        return "as_of: expected YYYYMMDD";
    if (q->timeout_ms > 120000)
        return "timeout_ms: at most 120000";
    return NULL;
}

static void on_query(struct evhttp_request *req, void *arg)
{
    char sys[40];
    gw_tenant *t = identify_or_refuse(req, sys, sizeof sys);
    if (t == NULL)
        return;
    Kh__QueryRequest *q = gw_read_pb(req, &kh__query_request__descriptor);
    if (q == NULL)
        return;
    gw_call *call = call_new(req, t, sys);
    if (call == NULL) {
        kh__query_request__free_unpacked(q, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    call->q = q;
    call->timeout_ms = q->timeout_ms ? (int)q->timeout_ms : G.default_timeout_ms;
    if (khc_random(call->msg_id, KH_MSG_ID_LEN) != 0) {
        call_set(call, KH_E_INTERNAL, "no randomness");
        call_fail(call);
        return;
    }
    khc_hex(call->msg_id, KH_MSG_ID_LEN, call->msg_hex);
    const char *bad = query_invalid(q);
    if (bad != NULL) {
        call_set(call, KH_E_FIELD, "%s", bad);
        call_fail(call);
        return;
    }
    const char *row = NULL;
    kh_err e =
        kh_dir_legal(G.dir, t->id.code, q->procedure, q->provider, q->items, q->n_items, &row);
    if (e != KH_OK) {
        if (e == KH_E_UNKNOWN_ORG)
            call_set(call, e, "provider %s is not in the directory", q->provider);
        else
            call_set(call, e, "no legal-basis row allows procedure %s for these items from %s",
                     q->procedure, q->provider);
        /* record the refusal in the tenant's records */
        submit(call, q_check_work, q_check_done);
        return;
    }
    submit(call, q_check_work, q_check_done);
}

#define BULK_HANDLER(name, fn)                                                                     \
    static void name(struct evhttp_request *req, void *arg)                                        \
    {                                                                                              \
        char sys[40];                                                                              \
        gw_tenant *t = identify_or_refuse(req, sys, sizeof sys);                                   \
        if (t != NULL)                                                                             \
            fn(req, t, sys);                                                                       \
    }
BULK_HANDLER(on_bulk_open, gw_bulk_on_open)
BULK_HANDLER(on_bulk_part, gw_bulk_on_part)
BULK_HANDLER(on_bulk_commit, gw_bulk_on_commit)
BULK_HANDLER(on_bulk_status, gw_bulk_on_status)

void gw_biz_register(struct evhttp *http)
{
    evhttp_set_cb(http, "/v1/bulk/open", on_bulk_open, NULL);
    evhttp_set_cb(http, "/v1/bulk/part", on_bulk_part, NULL);
    evhttp_set_cb(http, "/v1/bulk/commit", on_bulk_commit, NULL);
    evhttp_set_cb(http, "/v1/bulk/status", on_bulk_status, NULL);
    evhttp_set_cb(http, "/v1/replica", on_replica, NULL);
    evhttp_set_cb(http, "/v1/linkcode", on_linkcode, NULL);
    evhttp_set_cb(http, "/v1/query", on_query, NULL);
}
