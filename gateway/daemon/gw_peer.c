/* gw_peer.c: the peer API, where only the router may connect.
 *   POST /v1/envelope  a query for one of the hosted tenants (flow 3); deferred
 *                      answers (gw_query.c) and disclosure requests (gw_disclose.c)
 *                      are handed on once the router's signature and the
 *                      recipient are checked
 * The answer goes back in the HTTP response as a sealed envelope. Checks, in
 * order: TLS peer is the router; header signed by the router; addressed to a
 * hosted tenant; fresh; lawful (legal basis re-checked here); payload
 * decrypts, is signed by the sender named in the header, and repeats the
 * header (no splicing); not a replay. Only then is the reference copy read.
 * The checks up to the legal basis run on the event loop; opening the payload
 * and everything after it on a database worker (answer_work). */
#include "gw_peer.h"
#include "gw_maint.h"
#include "khpb.h"
#include "gw_req.h"
#include "gw_state.h"
#include "gw_record.h"
#include "gw_deferred.h"
#include "gw_disclose.h"
#include "gw_health.h"
#include "khid.h"
#include "khseen.h"
#include "gw_answer.h"
#include "gw_dir.h"

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
    Kh__Envelope *env; /* until its payload is opened (open_query) */
    Kh__Header *h;
    Kh__QueryBody *qb;
    char msg_hex[2 * KH_MSG_ID_LEN + 1];
    uint8_t digest[32]; /* of the payload: the same on a retransmission */
    kh_err err;
    char msg[200];
    bool resent; /* a retransmission: the stored reply is sent again */
    gw_answer a;
} peer_call;

static void peer_free(peer_call *pc)
{
    gw_dir_drop(pc->a.dir);
    kh_env_free(pc->env, NULL);
    if (pc->h)
        kh__header__free_unpacked(pc->h, NULL);
    if (pc->qb)
        kh__query_body__free_unpacked(pc->qb, NULL);
    gw_answer_clear(&pc->a);
    free(pc);
}

static void refuse(struct evhttp_request *req, kh_err e, const char *what, const char *msg_hex)
{
    kh_info("peer", "refused message %s: %s %s", msg_hex ? msg_hex : "-", kh_err_code(e), what);
    kh_http_reply_err(req, e, "%s", what);
}

/* Replay protection (khseen.h): a retransmission of an answered message sets
 * pc->resent and the stored sealed answer; anything else seen before is a
 * replay (another payload, or the first one not answered yet). */
static kh_err seen(PGconn *c, peer_call *pc)
{
    kh_seen_verdict v;
    kh_err e = kh_seen_register(c, KH_SEEN_TENANT, pc->h->sender, pc->msg_hex, pc->h->expires_at,
                                pc->digest, &v, &pc->a.sealed, &pc->a.sealedlen);
    if (e == KH_OK && v != KH_SEEN_NEW && pc->a.sealed == NULL)
        e = KH_E_REPLAY;
    pc->resent = e == KH_OK && pc->a.sealed != NULL;
    return e;
}

static kh_err hold(PGconn *c, peer_call *pc, const char *local_id, const char *as_of,
                   const char *hold_ids)
{
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    gw_codes_literal(pc->h->items, pc->h->n_items, lit, sizeof lit);
    const char *p[9] = {pc->msg_hex,    pc->h->sender, pc->h->procedure, lit,
                        pc->h->subject, local_id,      pc->qb->staff_id, as_of,
                        hold_ids};
    /* the deadline is the tenant's policy now; the asker is told it */
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO pending_answer (msg_id, sender, procedure, items, "
                             "subject, local_id, staff_id, as_of, flags, deadline) VALUES ($1,$2,"
                             "$3,$4::text[],$5,$6,$7,$8,$9::bigint[], now() + make_interval(secs "
                             "=> coalesce((SELECT hold_deadline_s FROM hold_policy), 1209600))) "
                             "RETURNING floor(extract(epoch FROM deadline))::bigint",
                             9, p);
    if (r == NULL)
        return KH_E_DB;
    pc->a.decide_by = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return pc->a.decide_by > 0 ? KH_OK : KH_E_INTERNAL;
}

static void record_replay(PGconn *c, peer_call *pc)
{
    /* the refusal is an access decision too */
    if (kh_db_tenant_begin(&c, pc->t->id.code) == KH_OK &&
        gw_access(c, pc->msg_hex, "peer", pc->h->sender, "answer", pc->qb->staff_id,
                  pc->h->procedure, pc->h->items, pc->h->n_items, KH_E_REPLAY) == KH_OK &&
        kh_db_commit(c) == KH_OK)
        return;
    kh_db_rollback(c);
    kh_warn("peer", "refusal of replayed message %s not recorded", pc->msg_hex);
}

/* On the worker, before any database work: the payload opened (key
 * agreement, decryption, the sender's signature and certificate) and checked
 * against the header the router signed. A refusal is recorded in the
 * tenant's access records, as every refusal of a query the router signed. */
static bool open_query(PGconn *c, peer_call *pc)
{
    const Kh__Header *h = pc->h;
    const kh_org *sender = kh_dir_org(pc->a.dir, h->sender);
    uint8_t *body = NULL;
    size_t blen = 0;
    kh_err e = kh_env_open(pc->env, &pc->t->id, G.national, sender ? sender->sign_cert : NULL,
                           &body, &blen);
    kh_env_free(pc->env, NULL);
    pc->env = NULL;
    if (e != KH_OK) {
        kh_err_set(&pc->err, pc->msg, sizeof pc->msg, e, "%s", kh_err_get(e)->meaning);
        goto refused;
    }
    char why[160];
    kh_err pe;
    Kh__QueryBody *qb = (Kh__QueryBody *)kh_pb_unpack(&kh__query_body__descriptor, body, blen, &pe,
                                                      why, sizeof why);
    khc_free_secret(body, blen);
    if (qb == NULL && pe == KH_E_FIELD) {
        kh_err_set(&pc->err, pc->msg, sizeof pc->msg, KH_E_FIELD, "%s", why);
        goto refused;
    }
    if (qb == NULL || qb->msg_id.len != KH_MSG_ID_LEN ||
        memcmp(qb->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) != 0 ||
        strcmp(qb->sender, h->sender) != 0 || strcmp(qb->recipient, h->recipient) != 0 ||
        strcmp(qb->procedure, h->procedure) != 0 ||
        !kh_items_equal(qb->items, qb->n_items, h->items, h->n_items) ||
        (qb->as_of[0] && !kh_id_date(qb->as_of))) {
        if (qb)
            kh__query_body__free_unpacked(qb, NULL);
        kh_err_set(&pc->err, pc->msg, sizeof pc->msg, KH_E_SPLICE,
                   "payload does not repeat this header");
        goto refused;
    }
    if (!kh_id_token(qb->staff_id, 32)) {
        kh__query_body__free_unpacked(qb, NULL);
        kh_err_set(&pc->err, pc->msg, sizeof pc->msg, KH_E_FIELD,
                   "staff_id: expected 1 to 32 of [A-Za-z0-9_-]");
        goto refused;
    }
    pc->qb = qb;
    return true;
refused:
    gw_access_refused(c, pc->t, pc->msg_hex, h->sender, "answer", h->procedure, h->items,
                      h->n_items, pc->err);
    return false;
}

static void answer_work(PGconn *c, void *arg)
{
    peer_call *pc = arg;
    gw_answer *a = &pc->a;
    char local_id[KH_ID_LOCAL_ID_MAX + 1] = "";
    char hold_ids[512] = "";
    char today[16] = "";

    if (!open_query(c, pc))
        return;
    const char *as_of = pc->qb->as_of;
    /* "today" is the database's day (Asia/Tokyo), as for roles and flags */
    pc->err = kh_db_tenant_begin_day(&c, pc->t->id.code, today);
    if (pc->err != KH_OK)
        return;
    if (as_of[0] == '\0')
        as_of = today;
    pc->err = seen(c, pc);
    if (pc->err != KH_OK || pc->resent) {
        kh_db_rollback(c);
        if (pc->err == KH_E_REPLAY) {
            snprintf(pc->msg, sizeof pc->msg, "message id already received");
            record_replay(c, pc);
        }
        return;
    }
    kh_err e = idconv_local_of(c, pc->h->subject, local_id, sizeof local_id);
    if (e != KH_OK && e != KH_E_UNKNOWN_LINK_CODE)
        pc->err = e;
    if (pc->err == KH_OK)
        pc->err = gw_answer_flags(c, a, local_id, hold_ids, sizeof hold_ids);
    if (pc->err == KH_OK && hold_ids[0] != '\0') {
        /* a hold: nothing is read now; a responder decides */
        a->result = "PENDING";
        a->outcome = "held";
        a->nwithheld = 0;
        pc->err = hold(c, pc, local_id, as_of, hold_ids);
    } else if (pc->err == KH_OK) {
        pc->err = gw_answer_read(c, a, local_id, as_of, pc->msg, sizeof pc->msg);
    }
    if (pc->err == KH_OK)
        pc->err = gw_answer_seal(a, strcmp(a->result, "PENDING") == 0 ? "PENDING" : "", NULL);
    if (pc->err == KH_OK)
        pc->err = kh_seen_keep_reply(c, KH_SEEN_TENANT, pc->h->sender, pc->msg_hex, a->sealed,
                                     a->sealedlen);
    /* the record chains (access, provision) are appended last, after
     * sealing: each append locks its chain's head until the commit, and
     * sealing (two signatures and a key agreement) must not run under it */
    if (pc->err == KH_OK)
        pc->err = gw_access(c, pc->msg_hex, "peer", pc->h->sender, "answer", pc->qb->staff_id,
                            pc->h->procedure, pc->h->items, pc->h->n_items, KH_OK);
    if (pc->err == KH_OK)
        pc->err = gw_record(c, pc->msg_hex, "answered", pc->h->sender, pc->h->procedure,
                            pc->h->items, pc->h->n_items, local_id[0] ? local_id : NULL,
                            pc->qb->staff_id, a->outcome, KH_OK, a->data, a->ndata);
    if (pc->err == KH_OK)
        pc->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
    khc_wipe(local_id, sizeof local_id);
}

static void answer_done(void *arg)
{
    peer_call *pc = arg;
    struct evhttp_request *req = gw_req_take(&pc->req);
    if (pc->err != KH_OK) {
        if (req)
            refuse(req, pc->err, pc->msg[0] ? pc->msg : kh_err_get(pc->err)->meaning, pc->msg_hex);
        peer_free(pc);
        return;
    }
    kh_info("peer", "tenant %s answered message %s from %s (%s)", pc->t->id.code, pc->msg_hex,
            pc->h->sender, pc->resent ? "retransmission: same answer again" : pc->a.result);
    if (req)
        kh_http_reply_raw(req, 200, pc->a.sealed, pc->a.sealedlen);
    peer_free(pc);
}

/* A refusal of a query to a hosted tenant whose header the router signed:
 * an authorisation decision of this layer, so it is recorded in the
 * tenant's access records too (best effort: a full queue only logs), with
 * the header's fields as the router signed them. */
static void refuse_recorded(struct evhttp_request *req, gw_tenant *t, const Kh__Header *h, kh_err e,
                            const char *what, const char *hex)
{
    refuse(req, e, what, hex);
    gw_access_refused_later(t, hex, h->sender, "answer", h->procedure, h->items, h->n_items, e);
}

static void on_envelope(struct evhttp_request *req, void *arg)
{
    uint8_t *buf;
    size_t len;
    char why[200], org[16];
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    peer_call *pc = NULL;
    char hex[2 * KH_MSG_ID_LEN + 1] = "-";

    X509 *peer = kh_tls_peer_cert(kh_http_req_ssl(req));
    bool is_router = peer && khc_cert_org(peer, org, sizeof org) == 0 && strcmp(org, "ROUTER") == 0;
    khc_cert_free(peer);
    if (!is_router) {
        refuse(req, KH_E_PEER_NOT_ALLOWED, "only the router may use the peer API", NULL);
        return;
    }
    kh_err e =
        kh_http_body(req, (size_t)G.set.max_body, KH_PB_CONTENT_TYPE, &buf, &len, why, sizeof why);
    if (e != KH_OK) {
        refuse(req, e, why, NULL);
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
    /* admitted by its tenant (khhttp.h) before the signature is checked, so
     * that a refusal for overload costs no verification: the client is the
     * router (its certificate), and a place taken for a header that then
     * fails its check is given back with the refusal. Refused, it was
     * replied to. */
    if (t != NULL && !kh_http_admit_for(req, t->id.code))
        goto out;
    if ((e = kh_env_verify(env, G.dir->router_sign)) != KH_OK || strcmp(h->signer, "ROUTER") != 0) {
        refuse(req, KH_E_HEADER_SIG, "header not signed by the router", hex);
        goto out;
    }
    if (h->type != KH__MSG_TYPE__QUERY && h->type != KH__MSG_TYPE__ANSWER &&
        h->type != KH__MSG_TYPE__DISCLOSURE_REQUEST) {
        refuse(req, KH_E_BAD_REQUEST,
               "the peer API accepts queries, deferred answers and disclosure requests only", hex);
        goto out;
    }
    if (t == NULL) {
        refuse(req, KH_E_WRONG_RECIPIENT, "recipient is not hosted on this gateway", hex);
        goto out;
    }
    /* maintenance: no new query or disclosure; a deferred answer to one of
     * the tenant's queries is work in flight and comes in */
    char mmsg[160];
    if (h->type != KH__MSG_TYPE__ANSWER && gw_maint_check(t, mmsg, sizeof mmsg) != KH_OK) {
        refuse(req, KH_E_MAINTENANCE, mmsg, hex);
        goto out;
    }
    if (h->type == KH__MSG_TYPE__DISCLOSURE_REQUEST) {
        /* records disclosure for the national portal (gw_disclose.c) */
        gw_disclose_on_request(req, t, env, h);
        return;
    }
    if (h->type == KH__MSG_TYPE__ANSWER) {
        /* a deferred answer to one of our tenants' queries (asking side) */
        gw_deferred_on_answer(req, t, env, h);
        return;
    }
    if ((e = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        refuse_recorded(req, t, h, e, kh_err_get(e)->meaning, hex);
        goto out;
    }
    const char *row = NULL;
    if ((e = kh_dir_legal(G.dir, h->sender, h->procedure, t->id.code, h->items, h->n_items,
                          &row)) != KH_OK) {
        refuse_recorded(req, t, h, e, "no legal-basis row allows this query", hex);
        goto out;
    }
    for (size_t i = 0; i < h->n_items; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(h->items[i], h->items[k]) == 0) {
                refuse_recorded(req, t, h, KH_E_FIELD, "items: an item is listed twice", hex);
                goto out;
            }
    if (!kh_id_link_code(h->subject)) {
        refuse_recorded(req, t, h, KH_E_BAD_REQUEST, "header.subject is not a link code", hex);
        goto out;
    }
    pc = calloc(1, sizeof *pc);
    if (pc == NULL) {
        refuse(req, KH_E_INTERNAL, "out of memory", hex);
        goto out;
    }
    pc->req = req;
    pc->t = t;
    pc->h = h;
    pc->a.dir = gw_dir_hold(); /* the version row is from: G.dir, on this loop */
    pc->a.t = t;
    pc->a.asker = h->sender;
    pc->a.procedure = h->procedure;
    pc->a.items = h->items;
    pc->a.nitems = h->n_items;
    pc->a.subject = h->subject;
    pc->a.row = row;
    memcpy(pc->a.in_reply_to, h->msg_id.data, KH_MSG_ID_LEN);
    memcpy(pc->msg_hex, hex, sizeof hex);
    h = NULL;
    if (khc_sha256(env->payload.data, env->payload.len, NULL, 0, pc->digest) != 0) {
        refuse(req, KH_E_INTERNAL, "cannot digest the payload", hex);
        peer_free(pc);
        goto out;
    }
    pc->env = env; /* opened on the worker (open_query) */
    env = NULL;
    gw_req_hold(&pc->req, req);
    if (kh_pool_submit_for(G.pool, pc->h->sender, answer_work, answer_done, pc) != 0) {
        gw_req_take(&pc->req);
        refuse(req, KH_E_OVERLOADED, "database queue full", hex);
        peer_free(pc);
    }
out:
    kh_env_free(env, h);
}

void gw_peer_register(struct evhttp *http)
{
    kh_http_route(http, "/v1/envelope", on_envelope, NULL);
    kh_http_route(http, "/v1/ready", gw_health_ready, NULL);
}
