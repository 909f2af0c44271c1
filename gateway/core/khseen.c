/* khseen.c: replay protection (khseen.h). The table names come from a fixed
 * list, never from input. */
#include "khseen.h"

#include "khcrypto.h"
#include "khpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *table_name(kh_seen_table t)
{
    return t == KH_SEEN_ROUTER ? "router.seen_msg" : "seen_msg";
}

kh_err kh_seen_register(PGconn *c, kh_seen_table table, const char *sender, const char *msg_hex,
                        int64_t expires_at, const uint8_t digest[32], kh_seen_verdict *v,
                        uint8_t **reply, size_t *replylen)
{
    char dig[2 + 64 + 1] = "\\x", exp[24], sql[320];
    const char *tn = table_name(table);
    if (reply != NULL) {
        *reply = NULL;
        *replylen = 0;
    }
    if (digest != NULL)
        khc_hex(digest, 32, dig + 2);
    snprintf(exp, sizeof exp, "%lld", (long long)expires_at);
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (sender, msg_id, expires_at, digest) VALUES ($1, $2, "
             "to_timestamp($3::bigint), $4::bytea) ON CONFLICT DO NOTHING",
             tn);
    const char *p[4] = {sender, msg_hex, exp, digest ? dig : NULL};
    PGresult *r = kh_db_exec(c, sql, 4, p);
    if (r == NULL)
        return KH_E_DB;
    bool fresh = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (fresh) {
        *v = KH_SEEN_NEW;
        return KH_OK;
    }
    *v = KH_SEEN_REPLAY;
    if (digest == NULL)
        return KH_OK;
    snprintf(sql, sizeof sql,
             "SELECT %s FROM %s WHERE sender = $1 AND msg_id = $2 AND digest = $3::bytea",
             reply != NULL && table == KH_SEEN_TENANT ? "reply" : "NULL", tn);
    const char *q[3] = {sender, msg_hex, dig};
    r = kh_db_exec(c, sql, 3, q);
    if (r == NULL)
        return KH_E_DB;
    if (PQntuples(r) == 1) {
        *v = KH_SEEN_AGAIN;
        if (reply != NULL && !PQgetisnull(r, 0, 0)) {
            size_t n = 0;
            unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n);
            if (raw != NULL && (*reply = malloc(n ? n : 1)) != NULL) {
                memcpy(*reply, raw, n);
                *replylen = n;
            }
            PQfreemem(raw);
        }
    }
    PQclear(r);
    return KH_OK;
}

kh_err kh_seen_keep_reply(PGconn *c, kh_seen_table table, const char *sender, const char *msg_hex,
                          const uint8_t *reply, size_t len)
{
    char sql[160];
    char *hex = malloc(2 * len + 3);
    if (hex == NULL)
        return KH_E_DB;
    memcpy(hex, "\\x", 2);
    khc_hex(reply, len, hex + 2);
    snprintf(sql, sizeof sql, "UPDATE %s SET reply = $3::bytea WHERE sender = $1 AND msg_id = $2",
             table_name(table));
    const char *p[3] = {sender, msg_hex, hex};
    /* deferred: its outcome comes with the commit (the parameters are
     * copied into libpq's buffer as it is sent) */
    kh_err e = kh_db_defer(c, sql, 3, p);
    free(hex);
    return e;
}

kh_err kh_seen_purge(PGconn *c, kh_seen_table table, long *removed)
{
    char sql[160];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE expires_at < now() - interval '1 hour'",
             table_name(table));
    PGresult *r = kh_db_exec(c, sql, 0, NULL);
    if (r == NULL)
        return KH_E_DB;
    if (removed != NULL)
        *removed = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return KH_OK;
}
