/* khrouter_portal.c: see khrouter_portal.h. One request of the portal:
 *   1. on the event loop: the client certificate is a configured portal
 *      (O=PORTAL, CN in the router's `portal` list), the request is well
 *      formed; the person key is derived from the resident-record code,
 *      which is wiped at once;
 *   2. on a worker: the person's link codes (router.linkcode, at every
 *      organisation or the one named), one DISCLOSURE_REQUEST message id
 *      each, recorded as `sent` in router.query_record (with the portal);
 *      none: KH-3005, recorded as refused;
 *   3. on the event loop: each request sealed to its organisation, signed by
 *      the router, sent to the organisation's gateway, all at once; each
 *      answer verified (header and payload signed by the organisation, sealed
 *      to the router, answering this request about this link code) and
 *      opened;
 *   4. on a worker: the outcome of each message recorded; only then
 *   5. the portal gets what each organisation answered (a DisclosureResponse).
 * Nothing here logs a resident-record code, person key, link code or any
 * disclosed value; decrypted answers are wiped once sent. */
#include "khrouter_portal.h"
#include "khpb.h"

#include "khid.h"
#include "khcrypto.h"
#include "kakehashi.pb-c.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const khr_portal *P;

typedef struct dsc_req dsc_req;

/* One organisation asked. */
typedef struct {
    dsc_req *parent;
    char org[8];
    const char *gateway, *endpoint; /* the router's configuration: lives as long as it */
    char link[KH_ID_LINK_CODE_LEN + 1];
    uint8_t id[KH_MSG_ID_LEN];
    char hex[2 * KH_MSG_ID_LEN + 1];
    kh_err err;
    char msg[160];
    const char *outcome;
    Kh__DisclosureAnswerBody *ans;
} dsc_one;

struct dsc_req {
    struct evhttp_request *req;
    char portal[40];
    char person_key[65];
    char org[8]; /* the organisation named, or "" for all */
    bool records, self_info;
    char from[9], to[9];
    char hex[2 * KH_MSG_ID_LEN + 1]; /* the refused request's row, when nobody is found */
    dsc_one *ones;
    size_t n, pending;
    kh_err err;
    char msg[160];
};

bool khr_portal_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* YYYYMMDD, a real calendar date. */
static void req_close(struct evhttp_connection *conn, void *arg)
{
    ((dsc_req *)arg)->req = NULL;
}

static struct evhttp_request *req_take(dsc_req *dr)
{
    struct evhttp_request *req = dr->req;
    if (req)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    dr->req = NULL;
    return req;
}

static void answer_free(Kh__DisclosureAnswerBody *a)
{
    if (a == NULL)
        return;
    kh_items_wipe(a->self_info, a->n_self_info);
    kh__disclosure_answer_body__free_unpacked(a, NULL);
}

static void dsc_free(dsc_req *dr)
{
    for (size_t i = 0; dr->ones && i < dr->n; i++) {
        khc_wipe(dr->ones[i].link, sizeof dr->ones[i].link);
        answer_free(dr->ones[i].ans);
    }
    free(dr->ones);
    khc_wipe(dr->person_key, sizeof dr->person_key);
    free(dr);
}

/* Refuses before anything was asked (only the operational log knows). */
static void refuse(struct evhttp_request *req, dsc_req *dr, kh_err e, const char *why)
{
    kh_info("portal", "disclosure refused: %s %s", kh_err_code(e), why);
    kh_http_reply_err(req, e, "%s", why);
    if (dr)
        dsc_free(dr);
}

static kh_err record(PGconn *c, const char *hex, const char *recipient, const char *outcome,
                     kh_err code, const char *portal)
{
    const char *p[5] = {hex, recipient, outcome, kh_err_code(code), portal};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO router.query_record (msg_id, type, sender, recipient, "
                             "outcome, code, requester) VALUES ($1, 'DISCLOSURE_REQUEST', "
                             "'ROUTER', $2, $3, $4, $5)",
                             5, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

/* ------------------------------------------------- 2. whom to ask (worker) */

static kh_err lookup(PGconn *c, dsc_req *dr)
{
    const char *p[2] = {dr->person_key, dr->org};
    PGresult *r = kh_db_exec(c,
                             "SELECT org, link_code FROM router.linkcode WHERE person_key = $1 "
                             "AND ($2 = '' OR org = $2) ORDER BY org",
                             2, p);
    if (r == NULL)
        return KH_E_DB;
    int rows = PQntuples(r);
    dr->ones = calloc(rows ? (size_t)rows : 1, sizeof *dr->ones);
    if (dr->ones == NULL) {
        PQclear(r);
        return KH_E_INTERNAL;
    }
    for (int i = 0; i < rows; i++) {
        dsc_one *o = &dr->ones[dr->n];
        const char *org = PQgetvalue(r, i, 0);
        /* an organisation no longer configured is not asked */
        if (strlen(org) >= sizeof o->org || !P->route(org, &o->gateway, &o->endpoint) ||
            kh_dir_org(P->dir(), org) == NULL)
            continue;
        o->parent = dr;
        snprintf(o->org, sizeof o->org, "%s", org);
        snprintf(o->link, sizeof o->link, "%s", PQgetvalue(r, i, 1));
        khc_wipe(PQgetvalue(r, i, 1), strlen(PQgetvalue(r, i, 1)));
        if (khc_random(o->id, sizeof o->id) != 0) {
            PQclear(r);
            return KH_E_INTERNAL;
        }
        khc_hex(o->id, sizeof o->id, o->hex);
        o->outcome = "sent";
        dr->n++;
    }
    PQclear(r);
    return KH_OK;
}

static void lookup_work(PGconn *c, void *arg)
{
    dsc_req *dr = arg;
    dr->err = kh_db_begin(c);
    if (dr->err == KH_OK)
        dr->err = lookup(c, dr);
    /* the person key is not needed any more */
    khc_wipe(dr->person_key, sizeof dr->person_key);
    if (dr->err == KH_OK && dr->n == 0) {
        uint8_t id[KH_MSG_ID_LEN];
        dr->err = khc_random(id, sizeof id) == 0 ? KH_OK : KH_E_INTERNAL;
        khc_hex(id, sizeof id, dr->hex);
        if (dr->err == KH_OK)
            dr->err = record(c, dr->hex, dr->org[0] ? dr->org : NULL, "refused",
                             KH_E_UNKNOWN_PERSON, dr->portal);
        if (dr->err == KH_OK)
            dr->err = kh_db_commit(c) == KH_OK ? KH_E_UNKNOWN_PERSON : KH_E_DB;
        else
            kh_db_rollback(c);
        return;
    }
    for (size_t i = 0; dr->err == KH_OK && i < dr->n; i++)
        dr->err = record(c, dr->ones[i].hex, dr->ones[i].org, "sent", KH_OK, dr->portal);
    if (dr->err == KH_OK)
        dr->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
}

/* --------------------------------------- 4, 5. record, then answer (worker) */

static void record_work(PGconn *c, void *arg)
{
    dsc_req *dr = arg;
    dr->err = kh_db_begin(c);
    for (size_t i = 0; dr->err == KH_OK && i < dr->n; i++) {
        const dsc_one *o = &dr->ones[i];
        dr->err = record(c, o->hex, o->org, o->outcome, o->err, dr->portal);
    }
    if (dr->err == KH_OK)
        dr->err = kh_db_commit(c);
    else
        kh_db_rollback(c);
}

static void record_done(void *arg)
{
    dsc_req *dr = arg;
    struct evhttp_request *req = req_take(dr);
    size_t answered = 0;
    for (size_t i = 0; i < dr->n; i++)
        answered += dr->ones[i].err == KH_OK;
    kh_info("portal", "disclosure for portal %s: %zu organisations asked, %zu answered: %s",
            dr->portal, dr->n, answered, kh_err_code(dr->err));
    if (dr->err != KH_OK) {
        /* not recorded: nothing is disclosed */
        if (req)
            kh_http_reply_err(req, dr->err, "the disclosure could not be recorded");
        dsc_free(dr);
        return;
    }
    Kh__Status ok = KH__STATUS__INIT;
    ok.code = "OK";
    Kh__DisclosureResponse resp = KH__DISCLOSURE_RESPONSE__INIT;
    Kh__OrgDisclosure *od = calloc(dr->n ? dr->n : 1, sizeof *od);
    Kh__OrgDisclosure **odp = calloc(dr->n ? dr->n : 1, sizeof *odp);
    Kh__Status *st = calloc(dr->n ? dr->n : 1, sizeof *st);
    if (od == NULL || odp == NULL || st == NULL) {
        if (req)
            kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < dr->n; i++) {
        dsc_one *o = &dr->ones[i];
        const kh_org *org = kh_dir_org(P->dir(), o->org);
        kh__org_disclosure__init(&od[i]);
        kh__status__init(&st[i]);
        st[i].code = (char *)kh_err_code(o->err);
        st[i].message = o->msg;
        od[i].org = o->org;
        od[i].name = (char *)(org ? org->name : "");
        od[i].msg_id = o->hex;
        od[i].status = &st[i];
        if (o->ans) {
            od[i].result = o->ans->result;
            od[i].records = o->ans->records;
            od[i].n_records = o->ans->n_records;
            od[i].more_records = o->ans->more_records;
            od[i].self_info = o->ans->self_info;
            od[i].n_self_info = o->ans->n_self_info;
            od[i].more_items = o->ans->more_items;
        }
        odp[i] = &od[i];
    }
    resp.status = &ok;
    resp.orgs = odp;
    resp.n_orgs = dr->n;
    if (req)
        kh_http_reply_pb(req, &resp.base); /* wipes its packed copy */
out:
    free(od);
    free(odp);
    free(st);
    dsc_free(dr);
}

static void one_finished(dsc_req *dr)
{
    if (--dr->pending > 0)
        return;
    if (kh_pool_submit(P->pool, record_work, record_done, dr) != 0) {
        dr->err = KH_E_OVERLOADED;
        record_done(dr);
    }
}

/* ------------------------------------------------- 3. ask (event loop) */

static void one_fail(dsc_one *o, kh_err e, const char *outcome, const char *msg)
{
    o->err = e;
    o->outcome = outcome;
    snprintf(o->msg, sizeof o->msg, "%s", msg);
}

/* Verifies and opens one organisation's answer into o->ans. */
static void open_answer(dsc_one *o, const uint8_t *buf, size_t len)
{
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    uint8_t *body = NULL;
    size_t blen = 0;
    char why[160];
    const kh_org *org = kh_dir_org(P->dir(), o->org);
    kh_err e = kh_env_parse(buf, len, &env, &h, why, sizeof why);
    if (e != KH_OK) {
        one_fail(o, KH_E_UPSTREAM, "failed", "answer unreadable");
        return;
    }
    if (org == NULL || strcmp(h->signer, o->org) != 0 || strcmp(h->sender, o->org) != 0 ||
        kh_env_verify(env, org->sign_cert) != KH_OK) {
        one_fail(o, KH_E_HEADER_SIG, "failed", "answer header not signed by the organisation");
    } else if (h->type != KH__MSG_TYPE__DISCLOSURE_ANSWER || strcmp(h->recipient, "ROUTER") != 0 ||
               h->in_reply_to.len != KH_MSG_ID_LEN ||
               memcmp(h->in_reply_to.data, o->id, KH_MSG_ID_LEN) != 0 ||
               strcmp(h->subject, o->link) != 0) {
        one_fail(o, KH_E_SPLICE, "failed", "answer does not answer this request");
    } else if ((e = kh_env_check_time(h, (int64_t)time(NULL), *P->skew, *P->ttl)) != KH_OK) {
        one_fail(o, e, "failed", kh_err_get(e)->meaning);
    } else if ((e = kh_env_open(env, P->id, P->national, org->sign_cert, &body, &blen)) != KH_OK) {
        one_fail(o, e, "failed", kh_err_get(e)->meaning);
    } else {
        Kh__DisclosureAnswerBody *a = (Kh__DisclosureAnswerBody *)kh_pb_unpack(
            &kh__disclosure_answer_body__descriptor, body, blen, NULL, NULL, 0);
        if (a == NULL || a->msg_id.len != KH_MSG_ID_LEN ||
            memcmp(a->msg_id.data, h->msg_id.data, KH_MSG_ID_LEN) != 0 ||
            a->in_reply_to.len != KH_MSG_ID_LEN ||
            memcmp(a->in_reply_to.data, o->id, KH_MSG_ID_LEN) != 0 ||
            strcmp(a->sender, o->org) != 0 || strcmp(a->recipient, "ROUTER") != 0 ||
            strcmp(a->subject, o->link) != 0 ||
            (strcmp(a->result, "FOUND") != 0 && strcmp(a->result, "NOT_FOUND") != 0)) {
            answer_free(a);
            one_fail(o, KH_E_SPLICE, "failed", "payload does not repeat the answer's header");
        } else {
            o->ans = a;
            o->err = KH_OK;
            o->outcome = strcmp(a->result, "FOUND") == 0 ? "disclosed" : "not_found";
        }
    }
    khc_free_secret(body, blen);
    kh_env_free(env, h);
}

static void on_answer(int status, const uint8_t *buf, size_t len, void *arg)
{
    dsc_one *o = arg;
    if (status == 0) {
        one_fail(o, KH_E_UPSTREAM, "failed", "gateway unreachable");
    } else if (status != 200) {
        char code[32], why[160];
        kh_http_parse_status(buf, len, code, sizeof code, why, sizeof why);
        kh_err e = kh_err_from_code(code);
        one_fail(o, e == KH_E__COUNT || e == KH_OK ? KH_E_UPSTREAM : e, "refused_by_provider", why);
    } else {
        open_answer(o, buf, len);
    }
    kh_info("portal", "disclosure request %s -> %s: %s %s", o->hex, o->org, o->outcome,
            kh_err_code(o->err));
    one_finished(o->parent);
}

/* Seals the request to the organisation and sends it; -1 if it cannot go. */
static int ask(dsc_one *o)
{
    const dsc_req *dr = o->parent;
    const kh_org *org = kh_dir_org(P->dir(), o->org);
    Kh__Header h;
    uint8_t unused[KH_MSG_ID_LEN];
    Kh__DisclosureRequestBody b = KH__DISCLOSURE_REQUEST_BODY__INIT;
    uint8_t *body = NULL, *env = NULL;
    size_t blen = 0, elen = 0;
    if (org == NULL || kh_header_init(&h, unused, KH__MSG_TYPE__DISCLOSURE_REQUEST, "ROUTER",
                                      o->org, "ROUTER", *P->ttl) != 0)
        return -1;
    h.msg_id.data = o->id; /* the id recorded as sent */
    h.subject = o->link;
    b.msg_id = h.msg_id;
    b.sender = "ROUTER";
    b.recipient = o->org;
    b.subject = o->link;
    b.records = dr->records;
    b.self_info = dr->self_info;
    b.from = (char *)dr->from;
    b.to = (char *)dr->to;
    b.requester = (char *)dr->portal;
    int rc = kh_pb_pack(&b.base, &body, &blen);
    if (rc == 0)
        rc = kh_env_seal(&h, P->id, body, blen, org->enc_cert, &env, &elen);
    khc_free_secret(body, blen);
    if (rc == 0)
        rc = kh_http_request(P->base, P->client_ctx, EVHTTP_REQ_POST, o->endpoint, "/v1/envelope",
                             env, elen, *P->timeout_ms, "KH-GW", o->gateway, on_answer, o);
    free(env);
    return rc;
}

static void lookup_done(void *arg)
{
    dsc_req *dr = arg;
    if (dr->err != KH_OK) {
        struct evhttp_request *req = req_take(dr);
        if (req)
            refuse(req, dr, dr->err,
                   dr->err == KH_E_UNKNOWN_PERSON
                       ? "no organisation holds a link code for this person"
                       : kh_err_get(dr->err)->meaning);
        else
            dsc_free(dr);
        return;
    }
    /* one more than the organisations: the last answer cannot finish the
     * request before every one of them is sent */
    dr->pending = dr->n + 1;
    for (size_t i = 0; i < dr->n; i++) {
        dsc_one *o = &dr->ones[i];
        if (*P->stopping || ask(o) != 0) {
            one_fail(o, KH_E_UPSTREAM, "failed", "cannot send to the organisation's gateway");
            dr->pending--;
        }
    }
    one_finished(dr);
}

/* ------------------------------------------------- 1. the portal (event loop) */

static bool is_portal(struct evhttp_request *req, char *name, size_t namelen)
{
    char org[16];
    X509 *peer = kh_tls_peer_cert(kh_http_req_ssl(req));
    bool ok = peer && khc_cert_org(peer, org, sizeof org) == 0 && strcmp(org, "PORTAL") == 0 &&
              khc_cert_cn(peer, name, namelen) == 0 && khr_portal_name_ok(name);
    khc_cert_free(peer);
    for (size_t i = 0; ok && i < P->nportals; i++)
        if (strcmp(P->portals[i], name) == 0)
            return true;
    return false;
}

static void on_disclose(struct evhttp_request *req, void *arg)
{
    char name[40];
    uint8_t *buf;
    size_t len;
    if (!is_portal(req, name, sizeof name)) {
        refuse(req, NULL, KH_E_PEER_NOT_ALLOWED, "only a portal the router serves may ask");
        return;
    }
    char bwhy[96];
    kh_err e =
        kh_http_body(req, (size_t)P->max_body, KH_PB_CONTENT_TYPE, &buf, &len, bwhy, sizeof bwhy);
    if (e != KH_OK) {
        refuse(req, NULL, e, bwhy);
        return;
    }
    Kh__DisclosureRequest *m = (Kh__DisclosureRequest *)kh_pb_unpack(
        &kh__disclosure_request__descriptor, buf, len, NULL, NULL, 0);
    khc_free_secret(buf, len); /* it holds the resident-record code */
    dsc_req *dr = calloc(1, sizeof *dr);
    const char *why = NULL;
    const char *gwn, *ep;
    if (m == NULL) {
        e = KH_E_BAD_REQUEST;
        why = "body is not a kh.DisclosureRequest";
    } else if (dr == NULL) {
        e = KH_E_INTERNAL;
        why = "out of memory";
    } else if (!kh_id_resident_code(m->resident_code)) {
        e = KH_E_BAD_RESIDENT_CODE;
        why = "resident_code: expects 11 digits";
    } else if (m->org[0] && (!kh_id_org(m->org) || !P->route(m->org, &gwn, &ep) ||
                             kh_dir_org(P->dir(), m->org) == NULL)) {
        e = KH_E_UNKNOWN_ORG;
        why = "org: not an organisation of the directory";
    } else if (!m->records && !m->self_info) {
        e = KH_E_FIELD;
        why = "records or self_info: ask for at least one";
    } else if ((m->from[0] && !kh_id_date(m->from)) || (m->to[0] && !kh_id_date(m->to)) ||
               (m->from[0] && m->to[0] && strcmp(m->from, m->to) > 0)) {
        e = KH_E_FIELD;
        why = "from/to: expects YYYYMMDD dates, from not after to";
    } else {
        P->person_key(m->resident_code, dr->person_key);
        snprintf(dr->portal, sizeof dr->portal, "%s", name);
        snprintf(dr->org, sizeof dr->org, "%s", m->org);
        snprintf(dr->from, sizeof dr->from, "%s", m->from);
        snprintf(dr->to, sizeof dr->to, "%s", m->to);
        dr->records = m->records;
        dr->self_info = m->self_info;
    }
    if (m) {
        khc_wipe(m->resident_code, strlen(m->resident_code));
        kh__disclosure_request__free_unpacked(m, NULL);
    }
    if (e != KH_OK) {
        refuse(req, dr, e, why);
        return;
    }
    dr->req = req;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), req_close, dr);
    if (kh_pool_submit(P->pool, lookup_work, lookup_done, dr) != 0) {
        req_take(dr);
        refuse(req, dr, KH_E_OVERLOADED, "database queue full");
    }
}

void khr_portal_register(struct evhttp *http, const khr_portal *p)
{
    P = p;
    kh_http_route(http, "/v1/portal/disclose", on_disclose, NULL);
}
