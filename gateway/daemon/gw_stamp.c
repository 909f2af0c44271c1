/* gw_stamp.c: trusted time on the record chains (sql/tenant/016). After each
 * signing pass (gw_chain.c) the signed heads still without a token get an
 * RFC 3161 time-stamp from the time-stamping authority (TSA) of tsa_url:
 *
 * - on the worker of the signing pass, per tenant, the heads to stamp are
 *   read: per chain, those after its latest stamped head, oldest first (for
 *   a chain with none stamped yet, as after the upgrade that brought
 *   time-stamps, only its latest signed head, which pins every row before
 *   it); at most PER_CHAIN per chain, and a fair share of MAX_ITEMS per
 *   tenant so that every tenant is served at every pass;
 * - on the event loop, a request per head (imprint: SHA-256 of the head's
 *   signature, a random nonce) goes to the TSA over plain HTTP, WINDOW at a
 *   time, each within tsa_timeout_ms; after WINDOW requests in a row without
 *   a reply the rest of the pass is not asked (an unreachable TSA costs one
 *   timeout per pass, not one per head);
 * - on a worker again, each reply is checked (granted, signed by a
 *   certificate tsa_ca trusts for time-stamping, our imprint and nonce:
 *   khtsp_reply_check) and its token stored in chain_timestamp, in seq order
 *   per chain: after a head that got no token, the later heads of its chain
 *   are not stored in this pass, so that the chain's stamped heads never
 *   skip one (the next pass starts after the latest stamped head).
 *
 * The stamping runs beside the signing: a signing pass that finds the last
 * one still at work leaves it alone (gw_stamp_collect reads nothing), so a
 * slow TSA never delays the signatures. When the TSA is down or answers
 * wrongly nothing is lost: the heads wait and are asked for again at the next
 * pass; the outage is logged once when it starts and once when it ends, and
 * shown by the metrics (kakehashi_tsa_*) and the connectivity check. */
#include "gw_stamp.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtsp.h"

#include <event2/http.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PER_CHAIN 32
#define MAX_ITEMS 1024
#define WINDOW 8

typedef struct {
    const gw_tenant *t;
    char chain[24], seq[24];
    uint8_t *sig, *reply;
    size_t siglen, rlen;
    uint8_t nonce[KHTSP_NONCE_LEN];
    bool asked;    /* a request was sent (or could not be made) */
    bool failed;   /* no usable reply came (known on the loop) */
    bool stored;   /* its token is in chain_timestamp (by this node or another) */
    bool db_fault; /* not stored for the database's sake, not the TSA's */
    bool held;     /* not stored: an earlier head of its chain got none */
    char why[160]; /* why it was not stored */
} item;

/* The pass's heads: filled by gw_stamp_collect on the signing worker, then
 * used on the loop and the storing worker in turn. busy is set from the
 * sending until the stored pass is cleared: a collect meanwhile reads
 * nothing (the signing passes run one at a time, gw_chain.c). */
static item items[MAX_ITEMS];
static size_t nitems, next_send, outstanding, replied, noreply_row;
static long long waiting_seen; /* heads without a token seen by the pass */
static bool collecting, collected, in_pump, finishing;
static atomic_bool busy;

static X509_STORE *store; /* tsa_ca; NULL: no time-stamping */
static char hostport[80], path[128];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static gw_stamp_status st = {.up = true};

int gw_stamp_start(char *err, size_t errlen)
{
    char why[160];
    if (G.set.tsa_url == NULL)
        return 0;
    if (kh_http_url(G.set.tsa_url, hostport, sizeof hostport, path, sizeof path, why, sizeof why) !=
        0) {
        snprintf(err, errlen, "tsa_url: %s", why);
        return -1;
    }
    if ((store = khc_store_from_file(G.set.tsa_ca, why, sizeof why)) == NULL ||
        (G.tsa_ca = khc_load_cert(G.set.tsa_ca, why, sizeof why)) == NULL) {
        snprintf(err, errlen, "tsa_ca %s: %s", G.set.tsa_ca, why);
        return -1;
    }
    st.configured = true;
    kh_info("tsa", "signed chain heads are time-stamped by %s", G.set.tsa_url);
    return 0;
}

static void clear_items(void)
{
    for (size_t i = 0; i < nitems; i++) {
        free(items[i].sig);
        free(items[i].reply);
    }
    nitems = 0;
    waiting_seen = 0;
}

void gw_stamp_stop(void)
{
    clear_items();
    khc_store_free(store);
    store = NULL;
    khc_cert_free(G.tsa_ca);
    G.tsa_ca = NULL;
}

void gw_stamp_status_get(gw_stamp_status *out)
{
    pthread_mutex_lock(&mu);
    *out = st;
    pthread_mutex_unlock(&mu);
}

/* ------------------------------------------------ on the signing worker */

/* Per chain: the heads after the latest stamped one (or the latest signed
 * one alone if none is stamped), in order, at most $1; n: how many wait. */
static const char collect_sql[] =
    "SELECT h.chain, s.seq::text, encode(s.signature, 'hex'), w.n FROM chain_head h "
    "CROSS JOIN LATERAL (SELECT coalesce((SELECT max(t.seq) FROM chain_timestamp t "
    "  WHERE t.chain = h.chain), (SELECT max(x.seq) - 1 FROM chain_signature x "
    "  WHERE x.chain = h.chain), 0) AS after) a "
    "CROSS JOIN LATERAL (SELECT count(*) AS n FROM chain_signature c "
    "  WHERE c.chain = h.chain AND c.seq > a.after) w "
    "JOIN LATERAL (SELECT s.seq, s.signature FROM chain_signature s "
    "  WHERE s.chain = h.chain AND s.seq > a.after ORDER BY s.seq LIMIT $1::integer) s ON true "
    "ORDER BY h.chain, s.seq";

void gw_stamp_begin(void)
{
    /* once per pass: the last stamping still at work, the whole pass skips
     * (not only the tenants it passes before that work ends) */
    collecting = store != NULL && !atomic_load(&busy);
    collected = collecting;
}

void gw_stamp_collect(PGconn *c, const gw_tenant *t)
{
    if (!collecting)
        return;
    /* a fair share: every chain of every tenant gets at least one head */
    size_t nt = gw_tenant_count(), share = MAX_ITEMS / (3 * (nt ? nt : 1));
    char lim[16];
    snprintf(lim, sizeof lim, "%zu", share < 1 ? 1 : share > PER_CHAIN ? PER_CHAIN : share);
    if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
        return;
    const char *p[1] = {lim};
    PGresult *r = kh_db_exec(c, collect_sql, 1, p);
    int n = r ? PQntuples(r) : 0;
    for (int i = 0; i < n; i++) {
        const char *chain = PQgetvalue(r, i, 0), *sighex = PQgetvalue(r, i, 2);
        if (i == 0 || strcmp(chain, PQgetvalue(r, i - 1, 0)) != 0)
            waiting_seen += atoll(PQgetvalue(r, i, 3));
        size_t hl = strlen(sighex);
        if (nitems == MAX_ITEMS || strlen(chain) >= sizeof items[0].chain || hl == 0 || hl % 2 != 0)
            continue;
        item *it = &items[nitems];
        *it = (item){.t = t, .siglen = hl / 2};
        snprintf(it->chain, sizeof it->chain, "%s", chain);
        snprintf(it->seq, sizeof it->seq, "%s", PQgetvalue(r, i, 1));
        if ((it->sig = malloc(it->siglen)) == NULL ||
            khc_unhex(sighex, hl, it->sig, it->siglen) != 0) {
            free(it->sig);
            continue;
        }
        nitems++;
    }
    PQclear(r);
    kh_db_rollback(c);
}

/* --------------------------------------------------- on the event loop */

static void store_work(PGconn *c, void *arg);
static void store_done(void *arg);

static void finish_sends(void)
{
    if (finishing || outstanding > 0 || replied < nitems)
        return;
    finishing = true;
    if (kh_pool_submit(G.pool, store_work, store_done, NULL) != 0) {
        for (size_t i = 0; i < nitems; i++) {
            items[i].db_fault = true;
            snprintf(items[i].why, sizeof items[i].why, "the database queue is full");
        }
        store_done(NULL);
    }
}

static void pump(void);

static void on_reply(int status, const uint8_t *body, size_t len, void *arg)
{
    item *it = arg;
    outstanding--;
    replied++;
    noreply_row = status == 0 ? noreply_row + 1 : 0;
    it->failed = status != 200;
    if (status == 0)
        snprintf(it->why, sizeof it->why, "no reply within tsa_timeout_ms (unreachable?)");
    else if (status != 200)
        snprintf(it->why, sizeof it->why, "HTTP status %d", status);
    else if (len == 0 || len > KHTSP_MAX_REPLY || (it->reply = malloc(len)) == NULL) {
        it->failed = true;
        snprintf(it->why, sizeof it->why, "a reply of %zu bytes", len);
    } else {
        memcpy(it->reply, body, len);
        it->rlen = len;
    }
    if (!in_pump)
        pump();
}

static void pump(void)
{
    static const char *const hdrs[] = {"Content-Type", "application/timestamp-query", "Accept",
                                       "application/timestamp-reply", NULL};
    in_pump = true;
    while (outstanding < WINDOW && next_send < nitems && noreply_row < WINDOW && !G.stopping) {
        item *it = &items[next_send++];
        const item *prev = it > items ? it - 1 : NULL;
        uint8_t *der = NULL;
        size_t dlen = 0;
        if (prev != NULL && prev->t == it->t && strcmp(prev->chain, it->chain) == 0 &&
            (prev->failed || !prev->asked)) {
            replied++; /* its token would not be kept (seq order): not asked */
            continue;
        }
        it->asked = true;
        outstanding++;
        if (khc_random(it->nonce, sizeof it->nonce) != 0) {
            outstanding--;
            replied++;
            it->failed = true;
            snprintf(it->why, sizeof it->why, "no randomness for a nonce");
        } else if (khtsp_request(it->sig, it->siglen, it->nonce, &der, &dlen, it->why,
                                 sizeof it->why) != 0) {
            outstanding--;
            replied++;
            it->failed = true;
        } else if (kh_http_request_hdrs(G.base, NULL, EVHTTP_REQ_POST, hostport, path, der, dlen,
                                        G.set.tsa_timeout_ms, NULL, NULL, hdrs, on_reply,
                                        it) != 0) {
            outstanding--;
            replied++;
            it->failed = true;
            snprintf(it->why, sizeof it->why, "cannot send a request (out of memory)");
        }
        free(der);
    }
    /* the TSA does not answer, or the gateway stops: the rest waits for the
     * next pass, not asked (nor counted as failed) */
    if (outstanding == 0 && next_send < nitems && (noreply_row >= WINDOW || G.stopping)) {
        replied += nitems - next_send;
        next_send = nitems;
    }
    in_pump = false;
    finish_sends();
}

void gw_stamp_send(void)
{
    if (store == NULL || !collected)
        return; /* nothing configured, or the last pass is still at work */
    collected = false;
    if (nitems == 0) {
        pthread_mutex_lock(&mu);
        st.waiting = waiting_seen;
        pthread_mutex_unlock(&mu);
        waiting_seen = 0;
        return;
    }
    atomic_store(&busy, true);
    next_send = outstanding = replied = noreply_row = 0;
    finishing = false;
    pump();
}

/* ---------------------------------------------------- the worker again */

static void store_one(PGconn *c, item *it)
{
    uint8_t *tok = NULL;
    size_t toklen = 0;
    int64_t gen = 0;
    if (it->reply == NULL ||
        khtsp_reply_check(it->reply, it->rlen, it->sig, it->siglen, it->nonce, store, &tok, &toklen,
                          &gen, it->why, sizeof it->why) != 0)
        return;
    char *hex = malloc(2 * toklen + 1), gens[24];
    snprintf(gens, sizeof gens, "%lld", (long long)gen);
    PGresult *w = NULL;
    if (hex != NULL) {
        khc_hex(tok, toklen, hex);
        const char *p[4] = {it->chain, it->seq, hex, gens};
        w = kh_db_exec(c,
                       "INSERT INTO chain_timestamp (chain, seq, token, gen_time) "
                       "SELECT $1, $2::bigint, decode($3, 'hex'), to_timestamp($4::bigint) "
                       /* removed by retention meanwhile: nothing to stamp */
                       "WHERE EXISTS (SELECT 1 FROM chain_signature s "
                       "  WHERE s.chain = $1 AND s.seq = $2::bigint) "
                       "ON CONFLICT DO NOTHING", /* another node of the gateway stamped it */
                       4, p);
    }
    it->stored = w != NULL;
    if (w == NULL) {
        it->db_fault = true;
        snprintf(it->why, sizeof it->why, "the token could not be stored");
    }
    PQclear(w);
    free(hex);
    free(tok);
}

static void store_tenant(PGconn *c, size_t from, size_t to)
{
    if (kh_db_tenant_begin(&c, items[from].t->id.code) != KH_OK) {
        for (size_t i = from; i < to; i++) {
            items[i].db_fault = true;
            snprintf(items[i].why, sizeof items[i].why, "the tenant's database is unreachable");
        }
        return;
    }
    size_t stored = 0;
    for (size_t i = from; i < to; i++) {
        item *it = &items[i];
        bool held = i > from && strcmp(it->chain, items[i - 1].chain) == 0 && !items[i - 1].stored;
        if (held) { /* in seq order: no stamped head skips one */
            it->held = true;
            snprintf(it->why, sizeof it->why, "an earlier head of its chain got no token");
        } else if (it->asked) {
            store_one(c, it);
            stored += it->stored;
        }
    }
    if (kh_db_commit(c) != KH_OK) {
        kh_db_rollback(c);
        for (size_t i = from; i < to; i++)
            if (items[i].stored) {
                items[i].stored = false;
                items[i].db_fault = true;
                snprintf(items[i].why, sizeof items[i].why, "the tokens could not be committed");
            }
    } else if (stored > 0) {
        kh_debug("tsa", "tenant %s: %zu chain head(s) time-stamped", items[from].t->id.code,
                 stored);
    }
}

static void store_work(PGconn *c, void *arg)
{
    (void)arg;
    for (size_t from = 0, to; from < nitems; from = to) {
        for (to = from + 1; to < nitems && items[to].t == items[from].t; to++)
            ;
        store_tenant(c, from, to);
    }
}

static void store_done(void *arg)
{
    (void)arg;
    size_t ok = 0, failed = 0, unsaved = 0;
    const char *why = NULL, *dbwhy = NULL;
    for (size_t i = 0; i < nitems; i++) {
        const item *it = &items[i];
        if (it->stored) {
            ok++;
        } else if (it->db_fault) { /* the TSA did its part: not an outage */
            unsaved++;
            dbwhy = dbwhy ? dbwhy : it->why;
        } else if (it->asked && !it->held) {
            failed++;
            why = why ? why : it->why;
        }
    }
    bool quiet = G.stopping; /* what a stop cut short is no news */
    if (unsaved > 0 && !quiet)
        kh_warn("tsa", "%zu time-stamp token(s) not kept (%s): asked for again at the next pass",
                unsaved, dbwhy);
    int64_t now = time(NULL);
    pthread_mutex_lock(&mu);
    st.stamped += ok;
    st.failures += failed;
    st.waiting = waiting_seen - (long long)ok;
    if (ok > 0)
        st.last_ok = now;
    if (failed > 0)
        snprintf(st.last_error, sizeof st.last_error, "%s", why);
    if (failed > 0 && ok == 0 && !quiet) {
        if (st.up)
            kh_warn("tsa",
                    "the TSA at %s cannot time-stamp (%s): signed chain heads wait for their "
                    "tokens (%lld waiting) and are asked for again at every signing",
                    G.set.tsa_url, why, st.waiting);
        st.up = false;
        if (st.down_since == 0)
            st.down_since = now;
    } else if (ok > 0 && !st.up) {
        kh_info("tsa",
                "the TSA at %s time-stamps again after %lld s (%zu head(s) stamped, %lld waiting)",
                G.set.tsa_url, (long long)(now - st.down_since), ok, st.waiting);
        st.up = true;
        st.down_since = 0;
    }
    pthread_mutex_unlock(&mu);
    clear_items();
    atomic_store(&busy, false);
}
