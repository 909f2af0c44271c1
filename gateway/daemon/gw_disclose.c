/* gw_disclose.c: records disclosure (flow 5), answering side. The router,
 * acting for the national portal on a person's behalf, asks a hosted tenant
 * for the provision records about the person whose link code the header
 * names and/or for the person's own information (自己情報).
 *
 * Checks (the router's TLS identity, its header signature and a hosted
 * recipient are checked by gw_peer.c first): the router is sender and signer;
 * fresh; the subject is a link code; the payload opens with the tenant's key,
 * is signed by the router's signing certificate from the directory, and
 * repeats the header (message id, sender, recipient, subject); the request
 * is well formed. Then, in one tenant transaction: not a replay (an identical
 * retransmission gets the stored answer again, nothing else), the link code
 * to the local ID, the reads, the access record, the sealed answer kept with
 * the message id, and the provision record of the disclosure itself.
 *
 * Policy (gateway/README.md says the same):
 * - No legal-basis row applies: the person asks for their own data. The
 *   router authorises the portal (its certificate) and vouches for the
 *   request with its signatures; the tenant trusts nobody else for it.
 * - Records: those whose local_id is the person's, oldest first, at most
 *   DISCLOSE_MAX_RECORDS (more_records says there are more). A record
 *   without a local ID (a query about a link code this tenant did not hold
 *   then, answered not_found) names nobody and is never disclosed. Staff IDs
 *   and local IDs are not part of a disclosed record.
 * - Own information: every item the person has in force today, every field:
 *   no minimisation (that limits what other organisations may learn), and
 *   holds and non-disclosure flags do not apply (they protect the person
 *   from others, e.g. a DV victim's address; the person seeing it is the
 *   point). Nothing of another person is ever read: every read is by this
 *   person's local ID. */
#include "gw_disclose.h"
#include "khpb.h"
#include "gw_dir.h"
#include "gw_req.h"
#include "gw_state.h"
#include "gw_record.h"
#include "khid.h"
#include "khseen.h"
#include "gw_answer.h"

#include "idconv.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "refdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DISCLOSE_MAX_RECORDS 1000

/* One disclosed record and the arrays it points to; the strings point into
 * the PGresult of the read. */
typedef struct {
    Kh__DisclosedRecord r;
    char *items[KH_MAX_ITEMS];
    Kh__ItemVersion pv[KH_MAX_ITEMS];
    Kh__ItemVersion *pvp[KH_MAX_ITEMS];
} rec_slot;

typedef struct {
    struct evhttp_request *req;
    gw_tenant *t;
    Kh__Header *h;
    Kh__DisclosureRequestBody *rb;
    char hex[2 * KH_MSG_ID_LEN + 1];
    uint8_t digest[32]; /* of the payload: the same on a retransmission */
    kh_err err;
    char msg[200];
    bool resent;
    /* the answer */
    const char *result;
    PGresult *rec_res;
    rec_slot *slots;
    Kh__DisclosedRecord **records;
    size_t nrecords;
    bool more_records;
    Kh__ItemData **items;
    size_t nitems;
    bool more_items;
    uint8_t *sealed;
    size_t sealedlen;
} disc_call;

/* Frees what the read left (item values wiped first); the sealed answer stays. */
static void disc_clear_read(disc_call *dc)
{
    kh_items_wipe(dc->items, dc->nitems);
    refdb_items_free(dc->items, dc->nitems);
    dc->items = NULL;
    dc->nitems = 0;
    free(dc->records);
    free(dc->slots);
    dc->records = NULL;
    dc->slots = NULL;
    dc->nrecords = 0;
    PQclear(dc->rec_res);
    dc->rec_res = NULL;
}

static void disc_free(disc_call *dc)
{
    disc_clear_read(dc);
    if (dc->h)
        kh__header__free_unpacked(dc->h, NULL);
    if (dc->rb)
        kh__disclosure_request_body__free_unpacked(dc->rb, NULL);
    free(dc->sealed);
    free(dc);
}

/* A "TK001=12,TK002=40" list into the slot's provided versions. */
static void parse_provided(rec_slot *s, char *list)
{
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && n < KH_MAX_ITEMS;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        kh__item_version__init(&s->pv[n]);
        s->pv[n].item_code = tok;
        s->pv[n].version = strtoull(eq + 1, NULL, 10);
        s->pvp[n] = &s->pv[n];
        n++;
    }
    s->r.provided = s->pvp;
    s->r.n_provided = n;
}

/* The person's provision records in the period asked, oldest first. */
static kh_err read_records(PGconn *c, disc_call *dc, const char *local_id)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", DISCLOSE_MAX_RECORDS + 1);
    const char *p[4] = {local_id, dc->rb->from, dc->rb->to, limit};
    /* the period is in days of the database's time zone, like "today" */
    dc->rec_res = kh_db_exec(
        c,
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), msg_id, "
        "direction, coalesce(counterpart, ''), coalesce(procedure, ''), "
        "coalesce(array_to_string(items, ','), ''), coalesce(outcome, ''), coalesce(code, ''), "
        "coalesce((SELECT string_agg(key || '=' || value, ',' ORDER BY key) "
        "          FROM jsonb_each_text(provided)), '') "
        "FROM provision_record WHERE local_id = $1 "
        "AND at >= coalesce(to_date(nullif($2, ''), 'YYYYMMDD')::timestamptz, '-infinity') "
        "AND at < coalesce((to_date(nullif($3, ''), 'YYYYMMDD') + 1)::timestamptz, 'infinity') "
        "ORDER BY id LIMIT $4::int",
        4, p);
    if (dc->rec_res == NULL)
        return KH_E_DB;
    size_t n = (size_t)PQntuples(dc->rec_res);
    dc->more_records = n > DISCLOSE_MAX_RECORDS;
    if (dc->more_records)
        n = DISCLOSE_MAX_RECORDS;
    dc->slots = calloc(n ? n : 1, sizeof *dc->slots);
    dc->records = calloc(n ? n : 1, sizeof *dc->records);
    if (dc->slots == NULL || dc->records == NULL)
        return KH_E_INTERNAL;
    for (size_t i = 0; i < n; i++) {
        rec_slot *s = &dc->slots[i];
        PGresult *r = dc->rec_res;
        int row = (int)i;
        kh__disclosed_record__init(&s->r);
        s->r.at = PQgetvalue(r, row, 0);
        s->r.msg_id = PQgetvalue(r, row, 1);
        s->r.direction = PQgetvalue(r, row, 2);
        s->r.counterpart = PQgetvalue(r, row, 3);
        s->r.procedure = PQgetvalue(r, row, 4);
        size_t k = 0;
        for (char *save = NULL, *tok = strtok_r(PQgetvalue(r, row, 5), ",", &save);
             tok && k < KH_MAX_ITEMS; tok = strtok_r(NULL, ",", &save))
            s->items[k++] = tok;
        s->r.items = s->items;
        s->r.n_items = k;
        s->r.outcome = PQgetvalue(r, row, 6);
        s->r.code = PQgetvalue(r, row, 7);
        parse_provided(s, PQgetvalue(r, row, 8));
        dc->records[i] = &s->r;
    }
    dc->nrecords = n;
    return KH_OK;
}

/* The person's own information: every item with a version in force today,
 * all of its fields. */
static kh_err read_self_info(PGconn *c, disc_call *dc, const char *local_id, const char *today)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", KH_MAX_ITEMS + 1);
    const char *p[2] = {local_id, limit};
    PGresult *r = kh_db_exec(c,
                             "SELECT DISTINCT item_code FROM replica WHERE local_id = $1 "
                             "ORDER BY item_code LIMIT $2::int",
                             2, p);
    if (r == NULL)
        return KH_E_DB;
    const char *codes[KH_MAX_ITEMS];
    size_t n = (size_t)PQntuples(r);
    dc->more_items = n > KH_MAX_ITEMS;
    if (dc->more_items)
        n = KH_MAX_ITEMS;
    for (size_t i = 0; i < n; i++)
        codes[i] = PQgetvalue(r, (int)i, 0);
    kh_err e = n ? refdb_read_items(c, local_id, codes, n, today, &dc->items, &dc->nitems, dc->msg,
                                    sizeof dc->msg)
                 : KH_OK;
    PQclear(r);
    return e;
}

/* On the worker: sealed to the router's certificate in the directory in use. */
static kh_err seal_with(disc_call *dc, const kh_dir *dir)
{
    Kh__Header h;
    Kh__DisclosureAnswerBody b = KH__DISCLOSURE_ANSWER_BODY__INIT;
    uint8_t id[KH_MSG_ID_LEN];
    uint8_t *body = NULL;
    size_t blen = 0;
    if (dir == NULL || dir->router_enc == NULL ||
        kh_header_init(&h, id, KH__MSG_TYPE__DISCLOSURE_ANSWER, dc->t->id.code, "ROUTER",
                       dc->t->id.code, G.ttl) != 0)
        return KH_E_INTERNAL;
    h.subject = dc->h->subject;
    h.in_reply_to = dc->h->msg_id;
    b.msg_id = h.msg_id;
    b.in_reply_to = dc->h->msg_id;
    b.sender = dc->t->id.code;
    b.recipient = "ROUTER";
    b.subject = dc->h->subject;
    b.result = (char *)dc->result;
    b.records = dc->records;
    b.n_records = dc->nrecords;
    b.more_records = dc->more_records;
    b.self_info = dc->items;
    b.n_self_info = dc->nitems;
    b.more_items = dc->more_items;
    int rc = kh_pb_pack(&b.base, &body, &blen);
    if (rc == 0)
        rc = kh_env_seal(&h, &dc->t->id, body, blen, dir->router_enc, &dc->sealed, &dc->sealedlen);
    khc_free_secret(body, blen);
    return rc == 0 ? KH_OK : KH_E_INTERNAL;
}

static kh_err seal(disc_call *dc)
{
    const kh_dir *dir = gw_dir_hold();
    kh_err e = seal_with(dc, dir);
    gw_dir_drop(dir);
    return e;
}

static void disc_work(PGconn *c, void *arg)
{
    disc_call *dc = arg;
    char local_id[KH_ID_LOCAL_ID_MAX + 1] = "";
    char today[16] = "";
    char *codes[KH_MAX_ITEMS];

    /* "today" is the database's day (Asia/Tokyo), as for answers */
    dc->err = kh_db_tenant_begin_day(&c, dc->t->id.code, today);
    if (dc->err != KH_OK)
        return;
    kh_seen_verdict v;
    dc->err = kh_seen_register(c, KH_SEEN_TENANT, "ROUTER", dc->hex, dc->h->expires_at, dc->digest,
                               &v, &dc->sealed, &dc->sealedlen);
    if (dc->err == KH_OK && v != KH_SEEN_NEW && dc->sealed == NULL)
        dc->err = KH_E_REPLAY;
    if (dc->err != KH_OK || dc->sealed != NULL) {
        dc->resent = dc->err == KH_OK;
        kh_db_rollback(c);
        if (dc->err == KH_E_REPLAY) {
            snprintf(dc->msg, sizeof dc->msg, "message id already received");
            gw_access_refused(c, dc->t, dc->hex, "ROUTER", "disclose", NULL, NULL, 0, KH_E_REPLAY);
        }
        return;
    }
    if (dc->err == KH_OK) {
        kh_err e = idconv_local_of(c, dc->h->subject, local_id, sizeof local_id);
        if (e != KH_OK && e != KH_E_UNKNOWN_LINK_CODE)
            dc->err = e;
    }
    dc->result = local_id[0] ? "FOUND" : "NOT_FOUND";
    if (dc->err == KH_OK && local_id[0] && dc->rb->records)
        dc->err = read_records(c, dc, local_id);
    if (dc->err == KH_OK && local_id[0] && dc->rb->self_info)
        dc->err = read_self_info(c, dc, local_id, today);
    for (size_t i = 0; i < dc->nitems; i++)
        codes[i] = dc->items[i]->item_code;
    if (dc->err == KH_OK)
        dc->err = gw_access(c, dc->hex, "peer", "ROUTER", "disclose", dc->rb->requester, NULL,
                            codes, dc->nitems, KH_OK);
    if (dc->err == KH_OK)
        dc->err = seal(dc);
    if (dc->err == KH_OK)
        dc->err =
            kh_seen_keep_reply(c, KH_SEEN_TENANT, "ROUTER", dc->hex, dc->sealed, dc->sealedlen);
    /* the disclosure is a provision record of its own: what was disclosed
     * (the item versions), to whom (the router, for the portal), about whom */
    if (dc->err == KH_OK)
        dc->err = gw_record(c, dc->hex, "disclosed", "ROUTER", NULL, codes, dc->nitems,
                            local_id[0] ? local_id : NULL, dc->rb->requester,
                            local_id[0] ? "disclosed" : "not_found", KH_OK, dc->items, dc->nitems);
    if (dc->err == KH_OK)
        dc->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
    disc_clear_read(dc);
    khc_wipe(local_id, sizeof local_id);
}

static void disc_done(void *arg)
{
    disc_call *dc = arg;
    struct evhttp_request *req = gw_req_take(&dc->req);
    dc->req = NULL;
    if (dc->err != KH_OK) {
        kh_info("peer", "refused disclosure request %s: %s", dc->hex, kh_err_code(dc->err));
        if (req)
            kh_http_reply_err(req, dc->err, "%s",
                              dc->msg[0] ? dc->msg : kh_err_get(dc->err)->meaning);
    } else {
        kh_info("peer", "tenant %s answered disclosure request %s (%s)", dc->t->id.code, dc->hex,
                dc->resent ? "retransmission: same answer again" : dc->result);
        if (req)
            kh_http_reply_raw(req, 200, dc->sealed, dc->sealedlen);
    }
    disc_free(dc);
}

/* The body must repeat the header and ask for something sensible. */
static kh_err body_ok(const Kh__Header *h, const Kh__DisclosureRequestBody *b, const char **why)
{
    if (b->msg_id.len != KH_MSG_ID_LEN ||
        memcmp(b->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) != 0 ||
        strcmp(b->sender, h->sender) != 0 || strcmp(b->recipient, h->recipient) != 0 ||
        strcmp(b->subject, h->subject) != 0) {
        *why = "payload does not repeat this header";
        return KH_E_SPLICE;
    }
    if (!b->records && !b->self_info) {
        *why = "records or self_info: ask for at least one";
        return KH_E_FIELD;
    }
    if ((b->from[0] && !kh_id_date(b->from)) || (b->to[0] && !kh_id_date(b->to)) ||
        (b->from[0] && b->to[0] && strcmp(b->from, b->to) > 0)) {
        *why = "from/to: expects YYYYMMDD dates, from not after to";
        return KH_E_FIELD;
    }
    if (!kh_id_token(b->requester, 32)) {
        *why = "requester: expects 1..32 of [A-Za-z0-9_-]";
        return KH_E_FIELD;
    }
    return KH_OK;
}

void gw_disclose_on_request(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
                            Kh__Header *h)
{
    char hex[2 * KH_MSG_ID_LEN + 1];
    kh_msgid_hex(&h->msg_id, hex);
    kh_err e = KH_OK;
    const char *why = NULL;
    uint8_t *body = NULL;
    size_t blen = 0;
    disc_call *dc = NULL;
    Kh__DisclosureRequestBody *rb = NULL;
    if (strcmp(h->sender, "ROUTER") != 0) {
        e = KH_E_PEER_NOT_ALLOWED;
        why = "only the router may ask for a disclosure";
    } else if ((e = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        why = kh_err_get(e)->meaning;
    } else if (!kh_id_link_code(h->subject)) {
        e = KH_E_BAD_REQUEST;
        why = "header.subject is not a link code";
    } else if ((e = kh_env_open(env, &t->id, G.national, G.dir->router_sign, &body, &blen)) !=
               KH_OK) {
        why = kh_err_get(e)->meaning;
    } else if ((rb = (Kh__DisclosureRequestBody *)kh_pb_unpack(
                    &kh__disclosure_request_body__descriptor, body, blen, NULL, NULL, 0)) == NULL) {
        e = KH_E_SPLICE;
        why = "payload is not a disclosure request";
    } else if ((e = body_ok(h, rb, &why)) != KH_OK) {
        /* why is set */
    } else if ((dc = calloc(1, sizeof *dc)) == NULL) {
        e = KH_E_INTERNAL;
        why = "out of memory";
    }
    khc_free_secret(body, blen);
    if (e != KH_OK) {
        kh_info("peer", "refused disclosure request %s: %s %s", hex, kh_err_code(e), why);
        kh_http_reply_err(req, e, "%s", why);
        /* a refusal of a message the router signed to a hosted tenant is an
         * access decision of this layer */
        if (strcmp(h->sender, "ROUTER") == 0)
            gw_access_refused_later(t, hex, "ROUTER", "disclose", NULL, NULL, 0, e);
        if (rb)
            kh__disclosure_request_body__free_unpacked(rb, NULL);
        kh_env_free(env, h);
        return;
    }
    dc->t = t;
    dc->h = h;
    dc->rb = rb;
    memcpy(dc->hex, hex, sizeof hex);
    bool digested = khc_sha256(env->payload.data, env->payload.len, NULL, 0, dc->digest) == 0;
    kh__envelope__free_unpacked(env, NULL);
    gw_req_hold(&dc->req, req);
    if (!digested) {
        dc->err = KH_E_INTERNAL;
        snprintf(dc->msg, sizeof dc->msg, "cannot digest the payload");
        disc_done(dc);
    } else if (kh_pool_submit_for(G.pool, dc->t->id.code, disc_work, disc_done, dc) != 0) {
        dc->err = KH_E_OVERLOADED;
        snprintf(dc->msg, sizeof dc->msg, "database queue full");
        disc_done(dc);
    }
}
