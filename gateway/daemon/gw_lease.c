/* gw_lease.c: leases on queries in flight, renewed and taken over
 * (gw_lease.h).
 *
 * A query's row is written with its sealed envelope, this node's name and a
 * lease of GW_LEASE_S (gw_query.c). Every GW_LEASE_TICK_S a worker, in each
 * tenant's transaction in turn:
 *   1. renews the leases this node holds on the queries it still has in
 *      memory (a query dropped without an outcome, say its answer could not
 *      be recorded, is left to run out and be taken over);
 *   2. takes over up to GW_LEASE_BATCH queries in flight whose lease ran out
 *      and whose message is still valid (FOR UPDATE SKIP LOCKED: two nodes
 *      never take the same one), with a lease of its own.
 * Back on the loop, each query taken over is sent again (gw_query_resume).
 * Sending it twice is harmless: the answering side recognises a
 * retransmission by its message id (a copy still being answered is refused
 * KH-4006, which the sender retries), and the row's state moves once, only
 * by the node that holds the lease, so the answer is recorded once. A node
 * that lost its lease (it could not renew for GW_LEASE_S) may still send,
 * but its outcome is not recorded. A node stopped with SIGTERM leaves its
 * queries in flight to the others the same way, but at once: once its loop
 * and its pool have stopped it ends their leases (gw_lease_hand_over).
 * One tick at a time; nothing is taken over while the node stops.
 * The sweeper (every 30 s) ends what nobody can finish any more: a query
 * still in flight a minute after its message expired. */
#include "gw_lease.h"
#include "gw_query.h"
#include "gw_state.h"

#include "khcrypto.h"
#include "khlog.h"
#include "khpb.h"
#include "khpool.h"
#include "khseen.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct taken {
    gw_tenant *t;
    char hex[2 * KH_MSG_ID_LEN + 1];
    char system[40];
    Kh__QueryRequest *q;
    uint8_t *env;
    size_t envlen;
    int64_t expires_at;
    int attempts;
    struct taken *next;
} taken;

static struct event *tick_ev;
static bool ticking;
static taken *found;   /* written by the worker, read by tick_done */
static char *live_ids; /* the renewals' text[] literal, made on the loop */

int gw_lease_node_init(void)
{
    uint8_t r[4];
    char host[64] = "?", hex[9];
    if (khc_random(r, sizeof r) != 0)
        return -1;
    khc_hex(r, sizeof r, hex);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    /* the random part: a restarted process may get the pid of an old one */
    snprintf(G.node, sizeof G.node, "%s/%s/%ld/%s", G.set.name, host, (long)getpid(), hex);
    return 0;
}

/* A QueryRequest from the columns of a query row, allocated as
 * kh__query_request__free_unpacked frees it; NULL on no memory. items is
 * "A,B": item codes never hold a comma (khid). */
static Kh__QueryRequest *request_of(const PGresult *r, int k)
{
    Kh__QueryRequest *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    kh__query_request__init(q);
    q->staff_id = strdup(PQgetvalue(r, k, 2));
    q->procedure = strdup(PQgetvalue(r, k, 3));
    q->provider = strdup(PQgetvalue(r, k, 4));
    q->local_id = strdup(PQgetvalue(r, k, 6));
    q->as_of = strdup(PQgetvalue(r, k, 7));
    q->async = true;
    const char *items = PQgetvalue(r, k, 5);
    size_t n = 1;
    for (const char *p = items; *p; p++)
        n += *p == ',';
    q->items = calloc(n, sizeof *q->items);
    bool ok = q->staff_id && q->procedure && q->provider && q->local_id && q->as_of && q->items;
    for (const char *p = items; ok && q->n_items < n;) {
        size_t len = strcspn(p, ",");
        ok = (q->items[q->n_items] = strndup(p, len)) != NULL;
        q->n_items += ok;
        p += len + (p[len] == ',');
    }
    if (!ok) {
        kh__query_request__free_unpacked(q, NULL);
        return NULL;
    }
    return q;
}

static void take_rows(gw_tenant *t, const PGresult *r)
{
    for (int k = 0; k < PQntuples(r); k++) {
        taken *tk = calloc(1, sizeof *tk);
        size_t n = 0;
        unsigned char *raw =
            tk ? PQunescapeBytea((const unsigned char *)PQgetvalue(r, k, 10), &n) : NULL;
        if (raw == NULL || n == 0 || (tk->env = malloc(n)) == NULL ||
            (tk->q = request_of(r, k)) == NULL) {
            /* not in memory, so not renewed: a later tick takes it over */
            if (raw != NULL)
                khc_wipe(raw, n); /* the header names the link code */
            PQfreemem(raw);
            if (tk != NULL && tk->env != NULL)
                khc_free_secret(tk->env, n);
            free(tk);
            continue;
        }
        memcpy(tk->env, raw, n);
        khc_wipe(raw, n);
        PQfreemem(raw);
        tk->envlen = n;
        tk->t = t;
        snprintf(tk->hex, sizeof tk->hex, "%s", PQgetvalue(r, k, 0));
        snprintf(tk->system, sizeof tk->system, "%s", PQgetvalue(r, k, 1));
        tk->expires_at = strtoll(PQgetvalue(r, k, 8), NULL, 10);
        tk->attempts = atoi(PQgetvalue(r, k, 9));
        tk->next = found;
        found = tk;
    }
}

static void tick_work(PGconn *home, void *arg)
{
    const char *p[2] = {G.node, live_ids};
    (void)arg;
    for (size_t i = 0, nt = gw_tenant_count(); i < nt && !G.stopping; i++) {
        /* a retired tenant too: this node still waits on its queries in
         * flight and keeps their leases, but takes none over */
        gw_tenant *t = gw_tenant_slot(i);
        bool retired = gw_tenant_at(i) == NULL;
        PGconn *c = home;
        if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            continue;
        PGresult *renewed = kh_db_exec(
            c,
            "UPDATE query SET lease_until = now() + interval '" KH_STR(
                GW_LEASE_S) " seconds' WHERE node = $1 AND msg_id = ANY($2::text[]) AND state IN "
                            "('sent', 'timed_out') AND expires_at > now()",
            2, p);
        if (G.draining || retired) { /* a node about to stop renews its own, takes nothing over */
            bool ok = renewed != NULL;
            PQclear(renewed);
            if (!ok || kh_db_commit(c) != KH_OK)
                kh_db_rollback(c);
            continue;
        }
        PGresult *r =
            renewed == NULL
                ? NULL
                : kh_db_exec(c,
                             "UPDATE query SET node = $1, lease_until = now() + interval '" KH_STR(
                                 GW_LEASE_S) " seconds' WHERE msg_id IN (SELECT msg_id FROM "
                                             "query WHERE state IN ('sent', 'timed_out') AND "
                                             "lease_until < now() AND envelope IS NOT NULL AND "
                                             "expires_at > now() + interval '2 seconds' ORDER "
                                             "BY lease_until LIMIT " KH_STR(
                                                 GW_LEASE_BATCH) " FOR UPDATE SKIP LOCKED) "
                                                                 "RETURNING msg_id, system_id, "
                                                                 "staff_id, procedure, "
                                                                 "provider, "
                                                                 "array_to_string(items, ','), "
                                                                 "local_id, as_of, "
                                                                 "extract(epoch FROM "
                                                                 "expires_at)::bigint, "
                                                                 "attempts, envelope",
                             1, p);
        PQclear(renewed);
        if (r == NULL || kh_db_commit(c) != KH_OK) {
            PQclear(r);
            kh_db_rollback(c);
            continue;
        }
        if (PQntuples(r) > 0)
            kh_warn("lease",
                    "tenant %s: taking over %d queries in flight whose node stopped renewing "
                    "its lease",
                    t->id.code, PQntuples(r));
        take_rows(t, r);
        PQclear(r);
    }
}

static void tick_done(void *arg)
{
    (void)arg;
    ticking = false;
    free(live_ids);
    live_ids = NULL;
    taken *list = found;
    found = NULL;
    while (list != NULL) {
        taken *tk = list;
        list = tk->next;
        if (G.stopping) {
            kh__query_request__free_unpacked(tk->q, NULL);
            khc_free_secret(tk->env, tk->envlen);
        } else {
            gw_query_resume(tk->t, tk->hex, tk->system, tk->q, tk->env, tk->envlen, tk->expires_at,
                            tk->attempts);
        }
        free(tk);
    }
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (ticking || G.stopping || (live_ids = gw_query_live_ids()) == NULL)
        return;
    ticking = true;
    if (kh_pool_submit(G.pool, tick_work, tick_done, NULL) != 0) {
        /* the queue is full: renewed at the next tick (a lease outlasts
         * two ticks) */
        kh_warn("lease", "database queue full: leases not renewed at this tick");
        ticking = false;
        free(live_ids);
        live_ids = NULL;
    }
}

/* ---- the sweeper ---- */

/* A query still "sent" or "timed_out" a minute after its message expired can
 * no longer be answered (every attempt is bounded by the validity): it was
 * left by a gateway that stopped or crashed mid-flight. It ends failed, with
 * its provision record, so no query is lost silently. A query still
 * "pending" a message validity and a minute after the provider's deadline
 * (decide_by) can no longer get its deferred answer either: it ends expired
 * (KH-2011). */
static struct event *sweep_ev;
static bool sweeping;

static void sweep_work(PGconn *home, void *arg)
{
    for (size_t i = 0, nt = gw_tenant_count(); i < nt && !G.stopping; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        PGconn *c = home;
        if (t == NULL || kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            continue;
        PGresult *r = kh_db_exec(
            c,
            "WITH q AS (UPDATE query SET state = 'failed', code = 'KH-5004', "
            "message = 'no answer before the message expired (the gateway stopped or the "
            "next hop was unreachable)', updated_at = now(), envelope = NULL, node = NULL, "
            "lease_until = NULL WHERE state IN ('sent', "
            "'timed_out') AND expires_at < now() - interval '1 minute' RETURNING *) "
            "INSERT INTO provision_record (msg_id, direction, counterpart, procedure, items, "
            "local_id, staff_id, outcome, code) SELECT msg_id, 'asked', provider, procedure, "
            "items, local_id, staff_id, 'failed', 'KH-5004' FROM q",
            0, NULL);
        /* a held query whose EXPIRED answer (or decision) never came: the
         * provider's outbox gave up a message validity after the deadline */
        char ttl[16];
        snprintf(ttl, sizeof ttl, "%d", G.ttl);
        const char *p[1] = {ttl};
        PGresult *x =
            r == NULL ? NULL
                      : kh_db_exec(c,
                                   "WITH q AS (UPDATE query SET state = 'expired', code = "
                                   "'KH-2011', message = 'no decision arrived by the provider''s "
                                   "deadline', result = NULL, answer = NULL, updated_at = now() "
                                   "WHERE state = 'pending' AND "
                                   "decide_by < now() - make_interval(secs => $1::int + 60) "
                                   "RETURNING *) INSERT INTO provision_record (msg_id, direction, "
                                   "counterpart, procedure, items, local_id, staff_id, outcome, "
                                   "code) SELECT msg_id, 'asked', provider, procedure, items, "
                                   "local_id, staff_id, 'expired', 'KH-2011' FROM q",
                                   1, p);
        /* replay protection needs an id only while its message is valid */
        bool purged = x != NULL && kh_seen_purge(c, KH_SEEN_TENANT, NULL) == KH_OK;
        if (purged && kh_db_commit(c) == KH_OK) {
            if (strcmp(PQcmdTuples(r), "0") != 0)
                kh_warn("biz", "tenant %s: %s unfinished queries ended failed", t->id.code,
                        PQcmdTuples(r));
            if (strcmp(PQcmdTuples(x), "0") != 0)
                kh_warn("biz", "tenant %s: %s held queries ended expired without an answer",
                        t->id.code, PQcmdTuples(x));
        } else {
            kh_db_rollback(c);
        }
        PQclear(r);
        PQclear(x);
    }
}

static void sweep_done(void *arg)
{
    sweeping = false;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    if (sweeping || G.stopping)
        return;
    sweeping = true;
    if (kh_pool_submit(G.pool, sweep_work, sweep_done, NULL) != 0)
        sweeping = false;
}

/* ---- a clean stop ---- */

/* The event loop has ended and the pool has stopped: this node sends and
 * records nothing more. Its queries in flight are handed over now (their
 * lease ends), so the other nodes take them at their next tick instead of a
 * lease later. On a connection of its own, after every job of the pool (a
 * query row committed by a last job is handed over too). */
void gw_lease_hand_over(void)
{
    PGconn *c = NULL;
    const char *at = NULL, *p[1] = {G.node};
    size_t missed = 0;
    /* retired tenants too: this node's leases on their queries end with it */
    for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++) {
        const gw_tenant *t = gw_tenant_slot(i);
        if (gw_tenant_conn(&c, &at, t) == NULL) {
            missed++;
            continue;
        }
        if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            continue;
        PGresult *r = kh_db_exec(c,
                                 "UPDATE query SET lease_until = now() WHERE node = $1 AND state "
                                 "IN ('sent', 'timed_out') AND lease_until > now()",
                                 1, p);
        if (r == NULL || kh_db_commit(c) != KH_OK)
            kh_db_rollback(c); /* the lease runs out instead */
        else if (strcmp(PQcmdTuples(r), "0") != 0)
            kh_info("lease", "tenant %s: %s queries in flight handed over to the other nodes",
                    t->id.code, PQcmdTuples(r));
        PQclear(r);
    }
    if (missed > 0)
        kh_warn("lease",
                "cannot hand over the queries in flight of %zu tenants: their lease runs "
                "out instead",
                missed);
    PQfinish(c);
    kh_db_forget();
}

int gw_lease_start(char *err, size_t errlen)
{
    struct timeval tv = {GW_LEASE_TICK_S, 0}, sweep_tv = {30, 0};
    tick_ev = event_new(G.base, -1, EV_PERSIST, tick, NULL);
    sweep_ev = event_new(G.base, -1, EV_PERSIST, on_sweep, NULL);
    if (tick_ev == NULL || event_add(tick_ev, &tv) != 0 || sweep_ev == NULL ||
        event_add(sweep_ev, &sweep_tv) != 0) {
        snprintf(err, errlen, "cannot start the lease and sweeper timers");
        return -1;
    }
    on_sweep(-1, 0, NULL); /* at start: what a previous run left */
    tick(-1, 0, NULL);
    return 0;
}

void gw_lease_stop(void)
{
    if (tick_ev != NULL)
        event_free(tick_ev);
    if (sweep_ev != NULL)
        event_free(sweep_ev);
    tick_ev = sweep_ev = NULL;
    /* a tick still running hands its queries to tick_done, which frees them
     * while stopping; one that never ends (the pool stopped first) leaves
     * them to the next node */
}
