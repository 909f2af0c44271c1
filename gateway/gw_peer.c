/* gw_peer.c: the peer API, where only the router may connect.
 *   POST /v1/envelope  a query for one of the hosted tenants (flow 3)
 * The answer goes back in the HTTP response as a sealed envelope. Checks, in
 * order: TLS peer is the router; header signed by the router; addressed to a
 * hosted tenant; fresh; lawful (legal basis re-checked here); payload
 * decrypts, is signed by the sender named in the header, and repeats the
 * header (no splicing); not a replay. Only then is the reference copy read. */
#include "gw.h"
#include "gw_util.h"

#include "idconv.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"
#include "refdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    struct evhttp_request *req;
    gw_tenant *t;
    Kh__Header *h;
    Kh__QueryBody *qb;
    char msg_hex[2 * KH_MSG_ID_LEN + 1];
    kh_err err;
    char msg[200];
    Kh__ItemData **data;
    size_t ndata;
} peer_call;

static void on_peer_close(struct evhttp_connection *conn, void *arg)
{
    ((peer_call *)arg)->req = NULL;
}

static void peer_free(peer_call *pc)
{
    if (pc->h)
        kh__header__free_unpacked(pc->h, NULL);
    if (pc->qb)
        kh__query_body__free_unpacked(pc->qb, NULL);
    kh_items_wipe(pc->data, pc->ndata);
    refdb_items_free(pc->data, pc->ndata);
    free(pc);
}

static struct evhttp_request *peer_take_req(peer_call *pc)
{
    struct evhttp_request *req = pc->req;
    if (req != NULL)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    pc->req = NULL;
    return req;
}

static void refuse(struct evhttp_request *req, kh_err e, const char *what, const char *msg_hex)
{
    kh_info("peer", "refused message %s: %s %s", msg_hex ? msg_hex : "-", kh_err_code(e), what);
    kh_http_reply_err(req, e, "%s", what);
}

static void answer_work(PGconn *c, void *arg)
{
    peer_call *pc = arg;
    char local_id[IDCONV_LOCAL_ID_MAX + 1] = "";
    const char *as_of = pc->qb->as_of;
    char today[9];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof today, "%Y%m%d", &tm);
    if (as_of[0] == '\0')
        as_of = today;

    pc->err = kh_db_tenant_begin(c, pc->t->id.code);
    if (pc->err != KH_OK)
        return;
    pc->err = kh_db_seen(c, "seen_msg", pc->h->sender, pc->msg_hex, pc->h->expires_at);
    if (pc->err != KH_OK) {
        snprintf(pc->msg, sizeof pc->msg, "message id already received");
        kh_db_rollback(c);
        return;
    }
    kh_err e = idconv_local_of(c, pc->h->subject, local_id, sizeof local_id);
    if (e == KH_OK) {
        pc->err = refdb_read_items(c, local_id, (const char *const *)pc->h->items, pc->h->n_items,
                                   as_of, &pc->data, &pc->ndata, pc->msg, sizeof pc->msg);
    } else if (e != KH_E_UNKNOWN_LINK_CODE) {
        pc->err = e;
    }
    if (pc->err == KH_OK)
        pc->err =
            gw_record(c, pc->msg_hex, "answered", pc->h->sender, pc->h->procedure, pc->h->items,
                      pc->h->n_items, local_id[0] ? local_id : NULL, pc->qb->staff_id,
                      pc->ndata ? "provided" : "not_found", KH_OK, pc->data, pc->ndata);
    if (pc->err == KH_OK)
        pc->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
    OPENSSL_cleanse(local_id, sizeof local_id);
}

static void answer_done(void *arg)
{
    peer_call *pc = arg;
    struct evhttp_request *req = peer_take_req(pc);
    if (pc->err != KH_OK) {
        if (req)
            refuse(req, pc->err, pc->msg[0] ? pc->msg : kh_err_get(pc->err)->meaning, pc->msg_hex);
        peer_free(pc);
        return;
    }
    const kh_org *asker = kh_dir_org(G.dir, pc->h->sender);
    uint8_t id[KH_MSG_ID_LEN];
    Kh__Header h;
    Kh__AnswerBody b = KH__ANSWER_BODY__INIT;
    uint8_t *body = NULL, *env = NULL;
    size_t blen = 0, elen = 0;
    if (asker == NULL || kh_header_init(&h, id, KH__MSG_TYPE__ANSWER, pc->t->id.code, pc->h->sender,
                                        pc->t->id.code, G.ttl) != 0)
        goto fail;
    h.procedure = pc->h->procedure;
    h.items = pc->h->items;
    h.n_items = pc->h->n_items;
    h.subject = pc->h->subject;
    h.in_reply_to = pc->h->msg_id;
    b.msg_id = h.msg_id;
    b.in_reply_to = pc->h->msg_id;
    b.sender = pc->t->id.code;
    b.recipient = pc->h->sender;
    b.procedure = pc->h->procedure;
    b.items = pc->h->items;
    b.n_items = pc->h->n_items;
    b.result = pc->ndata ? "FOUND" : "NOT_FOUND";
    b.data = pc->data;
    b.n_data = pc->ndata;
    if (kh_pb_pack(&b.base, &body, &blen) != 0 ||
        kh_env_seal(&h, &pc->t->id, body, blen, asker->enc_cert, &env, &elen) != 0)
        goto fail;
    khc_free_secret(body, blen);
    kh_info("peer", "tenant %s answered message %s from %s (%s)", pc->t->id.code, pc->msg_hex,
            pc->h->sender, b.result);
    if (req)
        kh_http_reply_raw(req, 200, env, elen);
    free(env);
    peer_free(pc);
    return;
fail:
    khc_free_secret(body, blen);
    free(env);
    if (req)
        refuse(req, KH_E_INTERNAL, "cannot build the answer", pc->msg_hex);
    peer_free(pc);
}

static void on_envelope(struct evhttp_request *req, void *arg)
{
    uint8_t *buf;
    size_t len;
    char why[200], org[16];
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    uint8_t *body = NULL;
    size_t blen = 0;
    peer_call *pc = NULL;
    char hex[2 * KH_MSG_ID_LEN + 1] = "-";

    X509 *peer = kh_tls_peer_cert(kh_http_req_ssl(req));
    bool is_router = peer && khc_cert_org(peer, org, sizeof org) == 0 && strcmp(org, "ROUTER") == 0;
    X509_free(peer);
    if (!is_router) {
        refuse(req, KH_E_PEER_NOT_ALLOWED, "only the router may use the peer API", NULL);
        return;
    }
    kh_err e = kh_http_body(req, (size_t)G.max_body, &buf, &len);
    if (e != KH_OK) {
        refuse(req, e, "expected POST with an envelope within the size limit", NULL);
        return;
    }
    e = kh_env_parse(buf, len, &env, &h, why, sizeof why);
    khc_free_secret(buf, len);
    if (e != KH_OK) {
        refuse(req, e, why, NULL);
        return;
    }
    kh_msgid_hex(&h->msg_id, hex);
    gw_tenant *t = gw_tenant_find(h->recipient);
    if ((e = kh_env_verify(env, G.dir->router_sign)) != KH_OK || strcmp(h->signer, "ROUTER") != 0) {
        refuse(req, KH_E_HEADER_SIG, "header not signed by the router", hex);
        goto out;
    }
    if (h->type != KH__MSG_TYPE__QUERY) {
        refuse(req, KH_E_BAD_REQUEST, "the peer API accepts queries only", hex);
        goto out;
    }
    if (t == NULL) {
        refuse(req, KH_E_WRONG_RECIPIENT, "recipient is not hosted on this gateway", hex);
        goto out;
    }
    if ((e = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        refuse(req, e, kh_err_get(e)->meaning, hex);
        goto out;
    }
    if ((e = kh_dir_legal(G.dir, h->sender, h->procedure, t->id.code, h->items, h->n_items,
                          NULL)) != KH_OK) {
        refuse(req, e, "no legal-basis row allows this query", hex);
        goto out;
    }
    if (!idconv_link_code_valid(h->subject)) {
        refuse(req, KH_E_BAD_REQUEST, "header.subject is not a link code", hex);
        goto out;
    }
    const kh_org *sender = kh_dir_org(G.dir, h->sender);
    if ((e = kh_env_open(env, &t->id, G.national, sender ? sender->sign_cert : NULL, &body,
                         &blen)) != KH_OK) {
        refuse(req, e, kh_err_get(e)->meaning, hex);
        goto out;
    }
    Kh__QueryBody *qb = kh__query_body__unpack(NULL, blen, body);
    khc_free_secret(body, blen);
    if (qb == NULL || qb->msg_id.len != KH_MSG_ID_LEN ||
        memcmp(qb->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) != 0 ||
        strcmp(qb->sender, h->sender) != 0 || strcmp(qb->recipient, h->recipient) != 0 ||
        strcmp(qb->procedure, h->procedure) != 0 ||
        !kh_items_equal(qb->items, qb->n_items, h->items, h->n_items) ||
        (qb->as_of[0] && !gw_date_ok(qb->as_of))) {
        if (qb)
            kh__query_body__free_unpacked(qb, NULL);
        refuse(req, KH_E_SPLICE, "payload does not repeat this header", hex);
        goto out;
    }
    pc = calloc(1, sizeof *pc);
    if (pc == NULL) {
        kh__query_body__free_unpacked(qb, NULL);
        refuse(req, KH_E_INTERNAL, "out of memory", hex);
        goto out;
    }
    pc->req = req;
    pc->t = t;
    pc->h = h;
    pc->qb = qb;
    memcpy(pc->msg_hex, hex, sizeof hex);
    h = NULL;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_peer_close, pc);
    if (kh_pool_submit(G.pool, answer_work, answer_done, pc) != 0) {
        peer_take_req(pc);
        refuse(req, KH_E_OVERLOADED, "database queue full", hex);
        peer_free(pc);
    }
out:
    kh_env_free(env, h);
}

void gw_peer_register(struct evhttp *http)
{
    evhttp_set_cb(http, "/v1/envelope", on_envelope, NULL);
}
