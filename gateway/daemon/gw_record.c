/* gw_record.c: the records every decision leaves in the tenant's schema
 * (gw_record.h): provision records and access records, and the refusals of
 * messages recorded from the event loop through a worker. */
#include "gw_record.h"
#include "khid.h"

#include "khcrypto.h"
#include "khlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_codes_literal(char *const *items, size_t n, char *out, size_t outlen)
{
    size_t pos = 0;
    pos += (size_t)snprintf(out, outlen, "{");
    for (size_t i = 0; i < n && pos < outlen; i++)
        pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "", items[i]);
    if (pos < outlen)
        snprintf(out + pos, outlen - pos, "}");
}

char *gw_bytea_literal(const uint8_t *b, size_t n)
{
    char *hex = malloc(2 * n + 3);
    if (hex != NULL) {
        memcpy(hex, "\\x", 2);
        khc_hex(b, n, hex + 2);
    }
    return hex;
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
    /* deferred: its outcome comes with the commit or the next statement */
    return kh_db_defer(c,
                       "INSERT INTO provision_record (msg_id, direction, counterpart, "
                       "procedure, items, local_id, staff_id, outcome, code, provided) "
                       "VALUES ($1,$2,$3,$4,$5::text[],$6,$7,$8,$9,$10::jsonb)",
                       10, p);
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
    /* deferred: its outcome comes with the commit or the next statement */
    return kh_db_defer(c,
                       "INSERT INTO access_record (msg_id, direction, actor, operation, "
                       "staff_id, procedure, items, decision, code) VALUES "
                       "($1,$2,$3,$4,$5,$6,$7::text[],$8,$9)",
                       9, p);
}

void gw_access_refused(PGconn *c, gw_tenant *t, const char *msg_hex, const char *actor,
                       const char *operation, const char *procedure, char *const *items,
                       size_t nitems, kh_err e)
{
    if (kh_db_tenant_begin(&c, t->id.code) == KH_OK &&
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
    /* in the lane of the organisation whose message was refused (khpool.h) */
    if (kh_pool_submit_for(G.pool, rf->actor, refusal_work, refusal_done, rf) != 0) {
        kh_warn("peer", "refusal of message %s not recorded: database queue full", msg_hex);
        free(rf);
    }
}
