/* gw_chain.c: signs the heads of each tenant's hash chains (sql/tenant/
 * 004_chain.sql) with the tenant's signing key, every chain_sign_interval
 * seconds, on the worker pool. A signed head pins everything before it: an
 * edit, deletion, insertion or reordering of earlier rows no longer matches
 * it, even if whoever made it recomputed every hash. khctl verify checks.
 *
 * The signed message is
 *     "kakehashi-chain-head\n" TENANT "\n" CHAIN "\n" SEQ "\n" HASH-HEX "\n"
 * signed like a header (ECDSA P-256 / SHA-256, DER). */
#include "gw.h"

#include "khcrypto.h"
#include "khlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct event *sign_ev;
static bool signing;

int gw_chain_message(const char *tenant, const char *chain, const char *seq, const char *hash_hex,
                     char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "kakehashi-chain-head\n%s\n%s\n%s\n%s\n", tenant, chain, seq,
                     hash_hex);
    return n > 0 && (size_t)n < outlen ? n : -1;
}

static void sign_tenant(PGconn *c, gw_tenant *t)
{
    if (kh_db_tenant_begin(c, t->id.code) != KH_OK)
        return;
    /* heads not signed yet at their current position */
    PGresult *r = kh_db_exec(c,
                             "SELECT h.chain, h.seq::text, encode(h.hash, 'hex') FROM chain_head h "
                             "WHERE h.seq > 0 AND NOT EXISTS (SELECT 1 FROM chain_signature s "
                             "  WHERE s.chain = h.chain AND s.seq = h.seq) FOR UPDATE OF h",
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
        int mlen = gw_chain_message(t->id.code, chain, seq, hash, msg, sizeof msg);
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
                           "VALUES ($1, $2::bigint, decode($3, 'hex'), decode($4, 'hex'))",
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

static void sign_work(PGconn *c, void *arg)
{
    for (size_t i = 0; c != NULL && i < G.ntenants && !G.stopping; i++)
        sign_tenant(c, &G.tenants[i]);
}

static void sign_done(void *arg)
{
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
    int secs;
    if (kh_conf_int(G.conf, "chain_sign_interval", 60, 1, 86400, &secs, err, errlen) != 0)
        return -1;
    struct timeval tv = {secs, 0};
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
