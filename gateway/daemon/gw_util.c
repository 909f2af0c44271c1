/* gw_util.c: validation and record helpers for the gateway handlers. */
#include "gw_util.h"
#include "gw_answer.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void gw_codes_literal(char *const *items, size_t n, char *out, size_t outlen)
{
    size_t pos = 0;
    pos += (size_t)snprintf(out, outlen, "{");
    for (size_t i = 0; i < n && pos < outlen; i++)
        pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "", items[i]);
    if (pos < outlen)
        snprintf(out + pos, outlen - pos, "}");
}

kh_err gw_record(PGconn *c, const char *msg_id, const char *direction, const char *counterpart,
                 const char *procedure, char *const *items, size_t nitems, const char *local_id,
                 const char *staff_id, const char *outcome, kh_err code, Kh__ItemData *const *data,
                 size_t ndata)
{
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    char provided[KH_MAX_ITEMS * (KH_CODE_MAX + 32) + 4];
    size_t pos = 0;
    gw_codes_literal(items, nitems, lit, sizeof lit);
    /* item codes are validated codes and versions numbers: no escaping needed */
    pos += (size_t)snprintf(provided, sizeof provided, "{");
    for (size_t i = 0; i < ndata && i < KH_MAX_ITEMS && pos < sizeof provided; i++)
        pos +=
            (size_t)snprintf(provided + pos, sizeof provided - pos, "%s\"%s\": %llu", i ? ", " : "",
                             data[i]->item_code, (unsigned long long)data[i]->version);
    if (pos < sizeof provided)
        snprintf(provided + pos, sizeof provided - pos, "}");
    const char *p[10] = {
        msg_id,   direction, counterpart, procedure,         lit,
        local_id, staff_id,  outcome,     kh_err_code(code), ndata ? provided : NULL};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO provision_record (msg_id, direction, counterpart, "
                             "procedure, items, local_id, staff_id, outcome, code, provided) "
                             "VALUES ($1,$2,$3,$4,$5::text[],$6,$7,$8,$9,$10::jsonb)",
                             10, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

void *gw_read_pb(struct evhttp_request *req, const ProtobufCMessageDescriptor *d)
{
    uint8_t *body;
    size_t len;
    kh_err e = kh_http_body(req, (size_t)G.max_body, &body, &len);
    if (e != KH_OK) {
        kh_http_reply_err(req, e, "expected POST with a protobuf body of at most %d bytes",
                          G.max_body);
        return NULL;
    }
    void *m = protobuf_c_message_unpack(d, NULL, len, body);
    /* the raw body may hold a national reference or personal data */
    khc_free_secret(body, len);
    if (m == NULL)
        kh_http_reply_err(req, KH_E_BAD_REQUEST, "body is not a %s", d->name);
    return m;
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
    if (khc_cert_cn(peer, sys, syslen) != 0 || !kh_id_token(sys, 32))
        t = NULL;
out:
    khc_cert_free(peer);
    return t;
}

/* Checks in the tenant transaction that the system exists and may do op on scope. */
kh_err gw_permitted(PGconn *c, const char *sys, const char *op, const char *scope, char *msg,
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

gw_tenant *gw_identify(struct evhttp_request *req, char *sys, size_t syslen)
{
    gw_tenant *t = identify(req, sys, syslen);
    if (t == NULL) {
        kh_warn("biz", "refused a client certificate that names no hosted tenant/system");
        kh_http_reply_err(req, KH_E_CLIENT_UNKNOWN, "client certificate not recognised");
    }
    return t;
}

kh_err gw_relayed_refusal(const uint8_t *buf, size_t len, char *msg, size_t msglen)
{
    char code[32];
    kh_http_parse_status(buf, len, code, sizeof code, msg, msglen);
    kh_err e = kh_err_from_code(code);
    return (e == KH_E__COUNT || e == KH_OK) ? KH_E_UPSTREAM : e;
}

uint8_t *gw_open_from_router(gw_tenant *t, const uint8_t *buf, size_t len, Kh__MsgType want,
                             const uint8_t *in_reply_to, X509 *expect_signer,
                             const char *expect_sender, Kh__Header **hp, size_t *blen, kh_err *err,
                             char *msg, size_t msglen)
{
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    uint8_t *body = NULL;
    char why[160];
    *err = kh_env_parse(buf, len, &env, &h, why, sizeof why);
    if (*err != KH_OK) {
        *err = KH_E_UPSTREAM;
        snprintf(msg, msglen, "router message unreadable: %s", why);
        return NULL;
    }
    if ((*err = kh_env_verify(env, G.dir->router_sign)) != KH_OK ||
        strcmp(h->signer, "ROUTER") != 0) {
        *err = KH_E_HEADER_SIG;
        snprintf(msg, msglen, "header not signed by the router");
        goto out;
    }
    if (h->type != want || strcmp(h->recipient, t->id.code) != 0 ||
        (expect_sender != NULL && strcmp(h->sender, expect_sender) != 0) ||
        h->in_reply_to.len != KH_MSG_ID_LEN ||
        (in_reply_to != NULL && memcmp(h->in_reply_to.data, in_reply_to, KH_MSG_ID_LEN) != 0)) {
        *err = KH_E_SPLICE;
        snprintf(msg, msglen, "header does not answer this request");
        goto out;
    }
    if ((*err = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        snprintf(msg, msglen, "%s", kh_err_get(*err)->meaning);
        goto out;
    }
    if (expect_signer == NULL) {
        const kh_org *o = kh_dir_org(G.dir, h->sender);
        expect_signer = o ? o->sign_cert : NULL;
    }
    *err = kh_env_open(env, &t->id, G.national, expect_signer, &body, blen);
    if (*err != KH_OK)
        snprintf(msg, msglen, "payload refused: %s", kh_err_get(*err)->meaning);
out:
    if (*err != KH_OK || body == NULL) {
        kh_env_free(env, h);
        return NULL;
    }
    kh__envelope__free_unpacked(env, NULL);
    *hp = h;
    return body;
}

kh_err gw_access(PGconn *c, const char *msg_id, const char *direction, const char *actor,
                 const char *operation, const char *staff_id, const char *procedure,
                 char *const *items, size_t nitems, kh_err code)
{
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    gw_codes_literal(items, nitems, lit, sizeof lit);
    const char *p[9] = {msg_id,
                        direction,
                        actor,
                        operation,
                        staff_id,
                        procedure,
                        nitems ? lit : NULL,
                        code == KH_OK ? "allowed" : "refused",
                        code == KH_OK ? NULL : kh_err_code(code)};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO access_record (msg_id, direction, actor, operation, "
                             "staff_id, procedure, items, decision, code) VALUES "
                             "($1,$2,$3,$4,$5,$6,$7::text[],$8,$9)",
                             9, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

kh_err gw_seen(PGconn *c, const char *sender, const char *msg_hex, int64_t expires_at,
               const uint8_t digest[32], uint8_t **reply, size_t *replylen)
{
    char dig[2 + 64 + 1] = "\\x", exp[24];
    khc_hex(digest, 32, dig + 2);
    snprintf(exp, sizeof exp, "%lld", (long long)expires_at);
    *reply = NULL;
    *replylen = 0;
    /* expired entries are purged by the sweeper in gw_query.c */
    const char *p[4] = {sender, msg_hex, exp, dig};
    PGresult *r =
        kh_db_exec(c,
                   "INSERT INTO seen_msg (sender, msg_id, expires_at, digest) VALUES ($1, $2, "
                   "to_timestamp($3::bigint), $4::bytea) ON CONFLICT DO NOTHING",
                   4, p);
    if (r == NULL)
        return KH_E_DB;
    bool fresh = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (fresh)
        return KH_OK;
    const char *q[3] = {sender, msg_hex, dig};
    r = kh_db_exec(c,
                   "SELECT reply FROM seen_msg WHERE sender = $1 AND msg_id = $2 "
                   "AND digest = $3::bytea AND reply IS NOT NULL",
                   3, q);
    if (r == NULL)
        return KH_E_DB;
    if (PQntuples(r) == 1) {
        size_t n = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n);
        if (raw != NULL && (*reply = malloc(n ? n : 1)) != NULL) {
            memcpy(*reply, raw, n);
            *replylen = n;
        }
        PQfreemem(raw);
    }
    PQclear(r);
    return *reply != NULL ? KH_OK : KH_E_REPLAY;
}

kh_err gw_seen_reply(PGconn *c, const char *sender, const char *msg_hex, const uint8_t *reply,
                     size_t len)
{
    char *hex = gw_bytea_literal(reply, len);
    const char *p[3] = {sender, msg_hex, hex};
    PGresult *r = hex ? kh_db_exec(c,
                                   "UPDATE seen_msg SET reply = $3::bytea WHERE sender = $1 "
                                   "AND msg_id = $2",
                                   3, p)
                      : NULL;
    free(hex);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

void gw_access_refused(PGconn *c, gw_tenant *t, const char *msg_hex, const char *actor,
                       const char *operation, const char *procedure, char *const *items,
                       size_t nitems, kh_err e)
{
    if (kh_db_tenant_begin(c, t->id.code) == KH_OK &&
        gw_access(c, msg_hex, "peer", actor, operation, NULL, procedure, items, nitems, e) ==
            KH_OK &&
        kh_db_commit(c) == KH_OK)
        return;
    kh_db_rollback(c);
    kh_warn("peer", "refusal of message %s not recorded", msg_hex);
}

/* A refusal waiting for a worker: the header's fields copied, cut to size. */
typedef struct {
    gw_tenant *t;
    char hex[2 * KH_MSG_ID_LEN + 1];
    char actor[16], operation[32], procedure[KH_CODE_MAX + 1];
    char items[KH_MAX_ITEMS][KH_CODE_MAX + 1];
    size_t nitems;
    kh_err e;
} refusal;

static void refusal_work(PGconn *c, void *arg)
{
    refusal *rf = arg;
    char *items[KH_MAX_ITEMS];
    for (size_t i = 0; i < rf->nitems; i++)
        items[i] = rf->items[i];
    gw_access_refused(c, rf->t, rf->hex, rf->actor, rf->operation,
                      rf->procedure[0] ? rf->procedure : NULL, items, rf->nitems, rf->e);
}

static void refusal_done(void *arg)
{
    free(arg);
}

void gw_access_refused_later(gw_tenant *t, const char *msg_hex, const char *actor,
                             const char *operation, const char *procedure, char *const *items,
                             size_t nitems, kh_err e)
{
    refusal *rf = calloc(1, sizeof *rf);
    if (rf == NULL)
        return;
    rf->t = t;
    rf->e = e;
    snprintf(rf->hex, sizeof rf->hex, "%s", msg_hex);
    snprintf(rf->actor, sizeof rf->actor, "%s", actor);
    snprintf(rf->operation, sizeof rf->operation, "%s", operation);
    snprintf(rf->procedure, sizeof rf->procedure, "%s", procedure ? procedure : "");
    for (size_t i = 0; i < nitems && rf->nitems < KH_MAX_ITEMS; i++)
        if (kh_id_code(items[i], KH_CODE_MAX))
            snprintf(rf->items[rf->nitems++], KH_CODE_MAX + 1, "%s", items[i]);
    if (kh_pool_submit(G.pool, refusal_work, refusal_done, rf) != 0) {
        kh_warn("peer", "refusal of message %s not recorded: database queue full", msg_hex);
        free(rf);
    }
}
