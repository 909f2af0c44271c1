/* gw_chain.c: keeps each tenant's record chains (sql/tenant/004_chain.sql,
 * 006_chains.sql: provision_record, access_record, audit_log) on a worker of
 * the pool, every chain_sign_interval seconds:
 *
 * - signs every chain head that moved with the tenant's signing key. A signed
 *   head pins everything before it: an edit, deletion, insertion or
 *   reordering of earlier rows no longer matches it, even if whoever made it
 *   recomputed every hash. khctl verify checks. The signed message is
 *       "kakehashi-chain-head\n" TENANT "\n" CHAIN "\n" SEQ "\n" HASH-HEX "\n"
 *   signed like a header (ECDSA P-256 / SHA-256, DER).
 * - then has the signed heads time-stamped by the TSA of tsa_url, if one is
 *   set (gw_stamp.c), beside the signing.
 * - once an hour (and at the first tick), asks the database for the monthly
 *   partitions of the record tables up to PARTITIONS_AHEAD months ahead
 *   (record_partitions_ensure), one chain per transaction and with a short
 *   lock_timeout, so that creating a partition never holds up appends for
 *   long. A row never waits for a partition: a DEFAULT partition takes what
 *   has no month yet, and the next run moves it into its month.
 *
 * Retention is not done here: removing records is left to an operator's
 * scheduled `khctl retain`, with a role the gateway does not hold
 * (sql/README.md). */
#include "gw_chain.h"
#include "gw_stamp.h"
#include "gw_state.h"

#include "khchain.h"
#include "khcrypto.h"
#include "khlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monthly partitions kept ready ahead of the current month, and how often. */
#define PARTITIONS_AHEAD "3"
#define PARTITIONS_EVERY 3600

static const char *const chains[] = {"provision_record", "access_record", "audit_log"};

static struct event *sign_ev;
static bool signing;
/* when partitions were last ensured; only the one sign job touches it */
static time_t partitions_at[GW_MAX_TENANTS]; /* per tenant (gw_tenant_at's order) */

static void sign_tenant(PGconn *c, gw_tenant *t)
{
    if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
        return;
    /* heads not signed yet at their current position; a head read here is
     * committed, so its rows are too (the tenant role may only read heads) */
    PGresult *r = kh_db_exec(c,
                             "SELECT h.chain, h.seq::text, encode(h.hash, 'hex') FROM chain_head h "
                             "WHERE h.seq > 0 AND NOT EXISTS (SELECT 1 FROM chain_signature s "
                             "  WHERE s.chain = h.chain AND s.seq = h.seq)",
                             0, NULL);
    if (r == NULL) {
        kh_db_rollback(c);
        return;
    }
    int n = PQntuples(r), signed_n = 0;
    for (int i = 0; i < n; i++) {
        char msg[512];
        uint8_t *sig = NULL;
        size_t slen = 0;
        const char *chain = PQgetvalue(r, i, 0), *seq = PQgetvalue(r, i, 1),
                   *hash = PQgetvalue(r, i, 2);
        int mlen = kh_chain_head_message(t->id.code, chain, seq, hash, msg, sizeof msg);
        if (mlen < 0 ||
            khc_sign(t->id.sign_key, (const uint8_t *)msg, (size_t)mlen, &sig, &slen) != 0)
            continue;
        char *sig_hex = malloc(2 * slen + 1);
        if (sig_hex != NULL) {
            khc_hex(sig, slen, sig_hex);
            const char *p[4] = {chain, seq, hash, sig_hex};
            PGresult *w =
                kh_db_exec(c,
                           "INSERT INTO chain_signature (chain, seq, hash, signature) "
                           "VALUES ($1, $2::bigint, decode($3, 'hex'), decode($4, 'hex')) "
                           "ON CONFLICT DO NOTHING", /* another gateway signed it */
                           4, p);
            if (w != NULL)
                signed_n++;
            PQclear(w);
        }
        free(sig_hex);
        free(sig);
    }
    PQclear(r);
    if (kh_db_commit(c) != KH_OK)
        kh_db_rollback(c);
    else if (signed_n > 0)
        kh_debug("chain", "tenant %s: %d chain head(s) signed", t->id.code, signed_n);
}

static bool ensure_partitions(PGconn *c, gw_tenant *t)
{
    int created = 0;
    bool all = true;
    for (size_t i = 0; i < sizeof chains / sizeof chains[0]; i++) {
        if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            return false;
        const char *p[2] = {PARTITIONS_AHEAD, chains[i]};
        PGresult *r = kh_db_exec(c, "SET LOCAL lock_timeout = '2s'", 0, NULL);
        if (r != NULL) {
            PQclear(r);
            r = kh_db_exec(c, "SELECT record_partitions_ensure($1::integer, $2)", 2, p);
        }
        bool ok = r != NULL;
        int n = ok && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
        PQclear(r);
        if (ok && kh_db_commit(c) == KH_OK) {
            created += n;
        } else {
            kh_db_rollback(c);
            kh_warn("chain", "tenant %s: cannot create the partitions of %s (retried later)",
                    t->id.code, chains[i]);
            all = false;
        }
    }
    if (created > 0)
        kh_info("chain", "tenant %s: %d record partition(s) created", t->id.code, created);
    return all;
}

static void sign_work(PGconn *c, void *arg)
{
    time_t now = time(NULL);
    gw_stamp_begin();
    /* c: the home database's; each tenant's work goes to its own (its begin
     * fails if that database is down: tried again at the next signing) */
    for (size_t i = 0, nt = gw_tenant_count(); i < nt && !G.stopping; i++) {
        gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        if (now - partitions_at[i] >= PARTITIONS_EVERY && ensure_partitions(c, t))
            partitions_at[i] = now;
        sign_tenant(c, t);
        gw_stamp_collect(c, t);
    }
}

static void sign_done(void *arg)
{
    /* then the heads without a trusted time (gw_stamp.c), if a TSA is set:
     * beside the signing, which goes on */
    gw_stamp_send();
    signing = false;
}

static void on_sign_timer(evutil_socket_t fd, short what, void *arg)
{
    if (signing || G.stopping)
        return;
    signing = true;
    if (kh_pool_submit(G.pool, sign_work, sign_done, NULL) != 0)
        signing = false;
}

int gw_chain_start(char *err, size_t errlen)
{
    struct timeval tv = {G.set.chain_sign_interval, 0};
    sign_ev = event_new(G.base, -1, EV_PERSIST, on_sign_timer, NULL);
    if (sign_ev == NULL || event_add(sign_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot start the chain-head signer");
        return -1;
    }
    return 0;
}

void gw_chain_stop(void)
{
    if (sign_ev)
        event_free(sign_ev);
    sign_ev = NULL;
}
