/* gw_bulkq.c: the loads of committed bulk uploads (gw_bulkq.h).
 *
 * A node has db_workers - 1 load slots (one fewer with a drop folder): a load
 * holds a worker for its whole duration, so online calls always find one.
 * Claims: every GW_LEASE_TICK_S, at once after a commit on this node (from
 * that tenant) and after a load ends, one job on the platform's lane claims
 * as many uploads as slots are free, tenant after tenant in turn: QUEUED ones
 * (in commit order, once their back-off has passed) and LOADING ones whose
 * lease ran out (their node died), if they were started fewer than
 * GW_BULK_ATTEMPTS times; FOR UPDATE SKIP LOCKED, so two nodes never claim
 * the same one. A claim is the row's node, a lease of GW_LEASE_S and
 * attempts + 1; the pair (node, attempts) fences every later write, so an
 * attempt that lost its lease can write nothing.
 * A load (on the tenant's lane) has a keeper: a thread with a connection of
 * its own that renews the lease every GW_LEASE_TICK_S and writes the figures
 * so far (for a status read on another node), whatever the load is doing
 * (waiting for another load of the item, say), until the load ends. The load
 * copies the stored parts into an unnamed file in spool_dir, checks their
 * SHA-256 again, and applies the file through gw_load.c. An applied file is
 * marked APPLIED in the load's own transaction (applied and marked together,
 * or neither); the other outcomes are written in a transaction right after.
 * A load that failed on the database or on this node's spool_dir is queued
 * again (with a back-off) while attempts remain; refdb's claim on the file's
 * content makes a second application a DUPLICATE anyway.
 * The sweeper (every minute) fails the loads started GW_BULK_ATTEMPTS times
 * without an outcome and forgets uploads left receiving for an hour and
 * finished uploads an hour after they finished. Nothing is claimed while the
 * node drains or stops; a claim this node cannot start is given back. */
#include "gw_bulkq.h"
#include "gw_load.h"
#include "gw_lease.h"
#include "gw_query.h"

#include "khcrypto.h"
#include "khlog.h"
#include "khpool.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define IDLE_S "3600"  /* an upload left receiving, or finished, is kept this long */
#define BACKOFF_S "10" /* a load queued again waits this long times its attempts */

typedef struct {
    bool used; /* loop only */
    gw_tenant *t;
    char id[33], system[40], item[17], mode[8], as_of[9], file_name[201], sha256[65];
    char attempts[12]; /* as claimed: with the node, the fence */
    uint32_t parts;
    refdb_file_stats st; /* under mu: the figures so far */
    /* the keeper of the lease (a thread) */
    pthread_t keeper;
    pthread_mutex_t km;
    pthread_cond_t kcv;
    bool kstop, kept, lost;
    /* the worker's own: the outcome, read by load_done */
    char state[12];
    char msg[256];
} load_slot;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static load_slot *slots;
static int nslots;
static struct event *tick_ev, *sweep_ev;

/* One tick job at a time: it gives back release[0..nrelease), then claims up
 * to want uploads into claimed[0..nclaimed). Written on the loop before the
 * job, by the job, and read on the loop after it. */
static bool ticking, again;
static gw_tenant *only; /* claim from this tenant only (a kick), or all */
static int want;
static load_slot *claimed, *release;
static int nclaimed, nrelease;
static size_t next_tenant; /* claims start here: tenants in turn */

static void start_tick(gw_tenant *t);

/* ---------------------------------------------------------------- claims */

/* Gives back a claim this node will not load: queued again as it was. */
static void give_back(PGconn *c, const load_slot *s)
{
    const char *p[3] = {s->id, G.node, s->attempts};
    if (kh_db_tenant_begin(&c, s->t->id.code) != KH_OK)
        return;
    PGresult *u = kh_db_exec(c,
                             "UPDATE bulk_upload SET state = 'QUEUED', node = NULL, lease_until "
                             "= NULL, attempts = attempts - 1 WHERE upload_id = $1 AND node = $2 "
                             "AND attempts = $3::int AND state = 'LOADING'",
                             3, p);
    if (u == NULL || kh_db_commit(c) != KH_OK)
        kh_db_rollback(c); /* its lease runs out instead */
    PQclear(u);
}

static void claim_rows(gw_tenant *t, const PGresult *r)
{
    for (int k = 0; k < PQntuples(r) && nclaimed < want; k++) {
        load_slot *s = &claimed[nclaimed++];
        memset(s, 0, sizeof *s);
        s->t = t;
        snprintf(s->id, sizeof s->id, "%s", PQgetvalue(r, k, 0));
        snprintf(s->system, sizeof s->system, "%s", PQgetvalue(r, k, 1));
        snprintf(s->item, sizeof s->item, "%s", PQgetvalue(r, k, 2));
        snprintf(s->mode, sizeof s->mode, "%s", PQgetvalue(r, k, 3));
        snprintf(s->as_of, sizeof s->as_of, "%s", PQgetvalue(r, k, 4));
        snprintf(s->file_name, sizeof s->file_name, "%s", PQgetvalue(r, k, 5));
        snprintf(s->sha256, sizeof s->sha256, "%s", PQgetvalue(r, k, 6));
        s->parts = (uint32_t)strtoul(PQgetvalue(r, k, 7), NULL, 10);
        snprintf(s->attempts, sizeof s->attempts, "%s", PQgetvalue(r, k, 8));
    }
}

static void claim(PGconn *c)
{
    size_t nt = gw_tenant_count(), n = only != NULL ? 1 : nt;
    for (size_t i = 0; i < n && nclaimed < want && !G.stopping && !G.draining; i++) {
        size_t k = (next_tenant + i) % nt;
        gw_tenant *t = only != NULL ? only : gw_tenant_at(k);
        if (t == NULL)
            continue; /* retired */
        char lim[16];
        snprintf(lim, sizeof lim, "%d", want - nclaimed);
        const char *p[2] = {G.node, lim};
        if (kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            continue;
        PGresult *r =
            kh_db_exec(c,
                       "UPDATE bulk_upload SET state = 'LOADING', node = $1, lease_until = now() + "
                       "interval '" KH_STR(
                           GW_LEASE_S) " seconds', attempts = attempts + 1, not_before = "
                                       "NULL, read_bytes = 0, records = 0, bad_records = "
                                       "0, issues = 0, persons = 0, touched_at = now() "
                                       "WHERE upload_id IN (SELECT upload_id FROM "
                                       "bulk_upload WHERE ((state = 'QUEUED' AND "
                                       "coalesce(not_before <= now(), true)) OR (state = "
                                       "'LOADING' AND lease_until < now())) AND attempts "
                                       "< " KH_STR(GW_BULK_ATTEMPTS) " ORDER BY committed_at "
                                                                     "LIMIT $2::int FOR UPDATE "
                                                                     "SKIP LOCKED) RETURNING "
                                                                     "upload_id, system_id, "
                                                                     "item_code, mode, as_of, "
                                                                     "file_name, sha256, next_seq "
                                                                     "- 1, attempts",
                       2, p);
        if (r == NULL || kh_db_commit(c) != KH_OK) {
            PQclear(r);
            kh_db_rollback(c);
            continue;
        }
        if (PQntuples(r) > 0 && only == NULL)
            next_tenant = (k + 1) % nt; /* the next claim starts after this tenant */
        claim_rows(t, r);
        PQclear(r);
    }
}

static void tick_work(PGconn *c, void *arg)
{
    (void)arg;
    /* c: the home database's connection; each tenant's work goes to its own */
    for (int i = 0; i < nrelease; i++)
        give_back(c, &release[i]);
    if (want > 0 && gw_tenant_count() > 0)
        claim(c);
}

static void load_work(PGconn *c, void *arg);
static void load_done(void *arg);

static void tick_done(void *arg)
{
    (void)arg;
    ticking = false;
    nrelease = 0;
    for (int i = 0; i < nclaimed; i++) {
        load_slot *s = NULL;
        for (int k = 0; k < nslots && s == NULL; k++)
            if (!slots[k].used)
                s = &slots[k];
        if (s == NULL || G.stopping) {
            release[nrelease++] = claimed[i];
            continue;
        }
        pthread_mutex_lock(&mu);
        *s = claimed[i];
        s->used = true;
        pthread_mutex_unlock(&mu);
        kh_info("bulk", "tenant %s: loading upload %s of %s %s (attempt %s)", s->t->id.code, s->id,
                s->item, s->mode, s->attempts);
        if (kh_pool_submit_for(G.pool, s->t->id.code, load_work, load_done, s) != 0) {
            kh_warn("bulk", "tenant %s: database queue full: upload %s given back", s->t->id.code,
                    s->id);
            release[nrelease++] = *s;
            pthread_mutex_lock(&mu);
            s->used = false;
            pthread_mutex_unlock(&mu);
        }
    }
    nclaimed = 0;
    if (again || nrelease > 0) {
        again = false;
        start_tick(NULL);
    }
}

/* Starts a tick job: claims for the free slots from tenant t (NULL: every
 * tenant in turn), after giving back what is in release. */
static void start_tick(gw_tenant *t)
{
    if (G.stopping)
        return;
    if (ticking) {
        again = true; /* claim once more when it ends */
        return;
    }
    want = 0;
    for (int k = 0; k < nslots; k++)
        want += !slots[k].used;
    if (G.draining)
        want = 0;
    if (nrelease == 0 && want == 0)
        return;
    only = t;
    nclaimed = 0;
    ticking = true;
    if (kh_pool_submit(G.pool, tick_work, tick_done, NULL) != 0) {
        kh_warn("bulk", "database queue full: no claim at this tick");
        ticking = false;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    start_tick(NULL);
}

void gw_bulkq_kick(gw_tenant *t)
{
    start_tick(t);
}

bool gw_bulkq_figures(const gw_tenant *t, const char *id, refdb_file_stats *st)
{
    bool found = false;
    pthread_mutex_lock(&mu);
    for (int k = 0; k < nslots && !found; k++)
        if (slots[k].used && slots[k].t == t && strcmp(slots[k].id, id) == 0) {
            *st = slots[k].st;
            found = true;
        }
    pthread_mutex_unlock(&mu);
    return found;
}

/* ---------------------------------------------------------------- keeper */

/* Renews s's lease and writes its figures so far; false if the lease is no
 * longer this attempt's (or the database failed). */
static bool renew(PGconn *c, load_slot *s)
{
    pthread_mutex_lock(&mu);
    refdb_file_stats st = s->st;
    pthread_mutex_unlock(&mu);
    char f[5][24];
    snprintf(f[0], sizeof f[0], "%" PRIu64, st.bytes);
    snprintf(f[1], sizeof f[1], "%zu", st.records);
    snprintf(f[2], sizeof f[2], "%zu", st.bad_records);
    snprintf(f[3], sizeof f[3], "%zu", st.issues);
    snprintf(f[4], sizeof f[4], "%zu", st.persons);
    const char *p[8] = {s->id, G.node, s->attempts, f[0], f[1], f[2], f[3], f[4]};
    if (kh_db_tenant_begin(&c, s->t->id.code) != KH_OK)
        return false;
    PGresult *u = kh_db_exec(
        c,
        "UPDATE bulk_upload SET lease_until = now() + interval '" KH_STR(
            GW_LEASE_S) " seconds', read_bytes = $4::bigint, records = $5::bigint, bad_records = "
                        "$6::bigint, issues = $7::bigint, persons = $8::bigint WHERE upload_id = "
                        "$1 AND node = $2 AND attempts = $3::int AND state = 'LOADING' RETURNING 1",
        8, p);
    bool ours = u != NULL && PQntuples(u) == 1;
    PQclear(u);
    if (u == NULL || kh_db_commit(c) != KH_OK) {
        kh_db_rollback(c);
        return false;
    }
    return ours;
}

static void *keep(void *arg)
{
    load_slot *s = arg;
    PGconn *c = NULL;
    pthread_mutex_lock(&s->km);
    while (!s->kstop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += GW_LEASE_TICK_S;
        while (!s->kstop && pthread_cond_timedwait(&s->kcv, &s->km, &until) == 0)
            ;
        if (s->kstop)
            break;
        pthread_mutex_unlock(&s->km);
        if (c != NULL && PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        }
        if (c == NULL)
            c = kh_db_connect(s->t->db); /* the tenant's database */
        bool ours = c != NULL && renew(c, s);
        pthread_mutex_lock(&s->km);
        if (!ours && c != NULL && !s->lost && PQstatus(c) == CONNECTION_OK) {
            s->lost = true; /* said once; the outcome will be refused */
            kh_warn("bulk", "tenant %s: upload %s: this node's lease on the load was taken",
                    s->t->id.code, s->id);
        }
    }
    pthread_mutex_unlock(&s->km);
    PQfinish(c);
    kh_db_forget();
    return NULL;
}

static void keeper_start(load_slot *s)
{
    s->kstop = s->lost = false;
    s->kept = pthread_mutex_init(&s->km, NULL) == 0;
    if (s->kept && pthread_cond_init(&s->kcv, NULL) != 0) {
        pthread_mutex_destroy(&s->km);
        s->kept = false;
    }
    if (s->kept && pthread_create(&s->keeper, NULL, keep, s) != 0) {
        pthread_cond_destroy(&s->kcv);
        pthread_mutex_destroy(&s->km);
        s->kept = false;
    }
    if (!s->kept) /* the load goes on; a long one may lose its lease */
        kh_warn("bulk", "tenant %s: upload %s: no thread to keep the lease", s->t->id.code, s->id);
}

static void keeper_stop(load_slot *s)
{
    if (!s->kept)
        return;
    pthread_mutex_lock(&s->km);
    s->kstop = true;
    pthread_cond_signal(&s->kcv);
    pthread_mutex_unlock(&s->km);
    pthread_join(s->keeper, NULL);
    pthread_cond_destroy(&s->kcv);
    pthread_mutex_destroy(&s->km);
    s->kept = false;
}

/* ---------------------------------------------------------------- load */

PGresult *gw_bulk_part(PGconn *c, const char *id, uint32_t seq)
{
    char s[16];
    snprintf(s, sizeof s, "%" PRIu32, seq);
    const char *p[2] = {id, s};
    PGresult *r = kh_db_exec_bin(
        c, "SELECT data FROM bulk_upload_part WHERE upload_id = $1 AND seq = $2::int", 2, p, NULL,
        NULL, 1);
    if (r != NULL && PQntuples(r) != 1) {
        PQclear(r);
        return NULL;
    }
    return r;
}

void gw_bulk_part_free(PGresult *r)
{
    if (r != NULL && PQntuples(r) == 1)
        khc_wipe((void *)PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)); /* personal data */
    PQclear(r);
}

/* A file in spool_dir that has no name (removed at once): nothing of it is
 * left behind whatever happens to the process; -1 on failure. */
static int unnamed_file(void)
{
    char path[1100];
    if (snprintf(path, sizeof path, "%s/.load-XXXXXX", G.set.spool_dir) >= (int)sizeof path)
        return -1;
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

static kh_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return KH_E_INTERNAL;
        p += w;
        n -= (size_t)w;
    }
    return KH_OK;
}

/* Copies the stored parts into fd and checks their SHA-256 against the one
 * committed. *local: the failure is this node's (its spool_dir). */
static kh_err assemble(PGconn *c, load_slot *s, int fd, bool *local, char *msg, size_t msglen)
{
    if (kh_db_tenant_begin(&c, s->t->id.code) != KH_OK) {
        snprintf(msg, msglen, "database unavailable");
        return KH_E_DB;
    }
    khc_sha256_ctx *md = khc_sha256_new();
    kh_err e = md == NULL ? KH_E_INTERNAL : KH_OK;
    for (uint32_t seq = 1; e == KH_OK && seq <= s->parts; seq++) {
        PGresult *r = gw_bulk_part(c, s->id, seq);
        if (r == NULL) {
            e = KH_E_DB;
        } else {
            const char *p = PQgetvalue(r, 0, 0);
            size_t n = (size_t)PQgetlength(r, 0, 0);
            e = khc_sha256_update(md, p, n) != 0 ? KH_E_INTERNAL : write_all(fd, p, n);
            *local = e != KH_OK;
        }
        gw_bulk_part_free(r);
    }
    kh_db_rollback(c);
    unsigned char d[32];
    char hex[65] = "";
    if (e == KH_OK && khc_sha256_peek(md, d) == 0)
        khc_hex(d, sizeof d, hex);
    khc_sha256_free(md);
    if (e == KH_OK && strcmp(hex, s->sha256) != 0) {
        e = KH_E_CHECKSUM;
        snprintf(msg, msglen, "the stored parts no longer have the SHA-256 committed");
    } else if (e != KH_OK) {
        snprintf(msg, msglen,
                 e == KH_E_DB ? "database unavailable: parts not read"
                              : "cannot write the file to spool_dir of node %s",
                 G.node);
    }
    if (e == KH_OK && lseek(fd, 0, SEEK_SET) != 0) {
        e = KH_E_INTERNAL;
        *local = true;
    }
    return e;
}

static void slot_stats(const refdb_file_stats *st, void *arg)
{
    load_slot *s = arg;
    pthread_mutex_lock(&mu);
    s->st = *st;
    pthread_mutex_unlock(&mu);
}

/* The outcome of the load (or QUEUED: loaded again later), in the
 * transaction open on c, by this attempt only (node and attempts); the parts
 * go with an outcome. false if the attempt is no longer the upload's (or the
 * database failed). */
static bool write_outcome(PGconn *c, const load_slot *s, const char *state, kh_err e,
                          const char *msg, const refdb_file_stats *st, const refdb_bulk_result *res,
                          uint64_t report_size)
{
    bool done = strcmp(state, "APPLIED") == 0 || strcmp(state, "DUPLICATE") == 0;
    bool again_later = strcmp(state, "QUEUED") == 0; /* not an outcome: no code, no message */
    char f[8][24];
    snprintf(f[0], sizeof f[0], "%" PRIu64, st->bytes);
    snprintf(f[1], sizeof f[1], "%" PRIu64, done ? res->records : (uint64_t)st->records);
    snprintf(f[2], sizeof f[2], "%zu", st->bad_records);
    snprintf(f[3], sizeof f[3], "%zu", st->issues);
    snprintf(f[4], sizeof f[4], "%" PRIu64, res->persons ? res->persons : (uint64_t)st->persons);
    snprintf(f[5], sizeof f[5], "%" PRIu64, res->deleted_absent);
    snprintf(f[6], sizeof f[6], "%" PRId64, res->file_id);
    snprintf(f[7], sizeof f[7], "%" PRIu64, report_size);
    const char *p[15] = {s->id,       G.node,
                         state,       f[0],
                         f[1],        f[2],
                         f[3],        f[4],
                         f[5],        f[6],
                         res->sha256, e == KH_OK || again_later ? "" : kh_err_code(e),
                         f[7],        again_later ? "" : msg,
                         s->attempts};
    PGresult *u = kh_db_exec(
        c,
        "UPDATE bulk_upload SET state = $3, node = NULL, lease_until = NULL, read_bytes = "
        "$4::bigint, records = $5::bigint, bad_records = $6::bigint, issues = $7::bigint, persons "
        "= $8::bigint, deleted_absent = $9::bigint, file_id = $10::bigint, result_sha256 = $11, "
        "code = $12, report_size = $13::bigint, message = $14, finished_at = CASE WHEN $3 = "
        "'QUEUED' THEN NULL ELSE now() END, not_before = CASE WHEN $3 = 'QUEUED' THEN now() + "
        "attempts * interval '" BACKOFF_S " seconds' END, touched_at = now() WHERE upload_id = $1 "
        "AND node = $2 AND attempts = $15::int AND state = 'LOADING' RETURNING 1",
        15, p);
    bool ours = u != NULL && PQntuples(u) == 1;
    PQclear(u);
    if (!ours || again_later)
        return ours;
    /* an outcome: the personal data goes */
    PGresult *d = kh_db_exec(c, "DELETE FROM bulk_upload_part WHERE upload_id = $1", 1, p);
    bool ok = d != NULL;
    PQclear(d);
    return ok;
}

static kh_err mark_applied(PGconn *c, const refdb_file_stats *st, const refdb_bulk_result *res,
                           void *arg, char *msg, size_t msglen)
{
    if (write_outcome(c, arg, "APPLIED", KH_OK, "", st, res, 0))
        return KH_OK;
    snprintf(msg, msglen,
             "the outcome could not be recorded (the database failed, or another node took "
             "the load over): nothing applied by this attempt");
    return KH_E_DB;
}

/* Stores the report (fd, from its start) in chunks; its size, or -1. */
static int64_t store_report(PGconn *c, const char *id, int fd)
{
    char *buf = malloc(GW_BULK_REPORT_CHUNK);
    int64_t size = 0;
    if (buf == NULL || lseek(fd, 0, SEEK_SET) != 0) {
        free(buf);
        return -1;
    }
    for (int seq = 0;; seq++) {
        size_t n = 0;
        ssize_t got;
        while (n < GW_BULK_REPORT_CHUNK &&
               (got = read(fd, buf + n, GW_BULK_REPORT_CHUNK - n)) != 0) {
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                size = -1;
                break;
            }
            n += (size_t)got;
        }
        if (size < 0 || n == 0)
            break;
        char sq[16];
        snprintf(sq, sizeof sq, "%d", seq);
        const char *p[3] = {id, sq, buf};
        int lens[3] = {0, 0, (int)n}, fmts[3] = {0, 0, 1};
        PGresult *r = kh_db_exec_bin(c,
                                     "INSERT INTO bulk_upload_report (upload_id, seq, data) "
                                     "VALUES ($1, $2::int, $3)",
                                     3, p, lens, fmts, 0);
        PQclear(r);
        if (r == NULL) {
            size = -1;
            break;
        }
        size += (int64_t)n;
    }
    free(buf);
    return size;
}

/* The outcome of a load that applied nothing, in a transaction of its own.
 * Failures of the database or of this node's spool_dir are queued again
 * while attempts remain. */
static void record_outcome(PGconn *c, load_slot *s, kh_err e, bool local, const char *msg,
                           const refdb_file_stats *st, const refdb_bulk_result *res, int report_fd)
{
    bool retry = (e == KH_E_DB || local) && atoi(s->attempts) < GW_BULK_ATTEMPTS;
    const char *state = e == KH_OK                ? "DUPLICATE"
                        : e == KH_E_FILE_REJECTED ? "REJECTED"
                        : retry                   ? "QUEUED"
                                                  : "FAILED";
    snprintf(s->state, sizeof s->state, "%s", state);
    if (kh_db_tenant_begin(&c, s->t->id.code) != KH_OK) {
        snprintf(s->state, sizeof s->state, "UNRECORDED");
        return;
    }
    int64_t size = 0;
    if (strcmp(state, "REJECTED") == 0 && report_fd >= 0)
        size = store_report(c, s->id, report_fd);
    if (size < 0 || !write_outcome(c, s, state, e, msg, st, res, (uint64_t)size) ||
        kh_db_commit(c) != KH_OK) {
        kh_db_rollback(c);
        snprintf(s->state, sizeof s->state, "UNRECORDED"); /* the lease runs out */
    }
}

static void load_work(PGconn *c, void *arg)
{
    load_slot *s = arg;
    refdb_file_stats st;
    refdb_bulk_result res;
    memset(&st, 0, sizeof st);
    memset(&res, 0, sizeof res);
    snprintf(s->state, sizeof s->state, "APPLIED");
    s->msg[0] = '\0';
    if (G.stopping) { /* queued before the stop: another node loads it */
        give_back(c, s);
        snprintf(s->state, sizeof s->state, "GIVEN BACK");
        return;
    }
    keeper_start(s);
    int fd = unnamed_file(), rfd = unnamed_file(), rdup = rfd >= 0 ? dup(rfd) : -1;
    FILE *report = rdup >= 0 ? fdopen(rdup, "w") : NULL;
    if (report == NULL && rdup >= 0)
        close(rdup);
    bool local = false;
    kh_err e;
    if (fd < 0 || report == NULL) {
        e = KH_E_INTERNAL;
        local = true;
        snprintf(s->msg, sizeof s->msg, "cannot create a file in spool_dir of node %s", G.node);
    } else if ((e = assemble(c, s, fd, &local, s->msg, sizeof s->msg)) == KH_OK) {
        gw_load_ctx rc = {0};
        rc.report = report;
        rc.what = s->id;
        rc.on_stats = slot_stats;
        rc.before_commit = mark_applied;
        rc.arg = s;
        e = gw_load_run(c, s->t, s->system, s->item, s->mode, s->as_of, s->file_name, s->sha256, fd,
                        &rc, &st, &res, s->msg, sizeof s->msg);
    }
    if (report != NULL)
        fclose(report); /* flushed: the report is in rfd */
    if (e != KH_OK || res.duplicate)
        record_outcome(c, s, e, local, s->msg, &st, &res, rfd);
    keeper_stop(s);
    if (fd >= 0)
        close(fd);
    if (rfd >= 0)
        close(rfd);
    pthread_mutex_lock(&mu);
    s->st = st;
    pthread_mutex_unlock(&mu);
}

static void load_done(void *arg)
{
    load_slot *s = arg;
    kh_info("bulk", "tenant %s: upload %s of %s %s: %s, %zu records, %zu bad%s%s", s->t->id.code,
            s->id, s->item, s->mode, s->state, s->st.records, s->st.bad_records,
            s->msg[0] ? ": " : "", s->msg);
    pthread_mutex_lock(&mu);
    s->used = false;
    pthread_mutex_unlock(&mu);
    start_tick(NULL); /* the slot is free: claim */
}

/* -------------------------------------------------------------- sweeper */

static bool sweeping;

static void sweep_work(PGconn *home, void *arg)
{
    (void)arg;
    for (size_t i = 0, nt = gw_tenant_count(); i < nt && !G.stopping; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        PGconn *c = home;
        if (t == NULL || kh_db_tenant_begin(&c, t->id.code) != KH_OK)
            continue;
        PGresult *f = kh_db_exec(
            c,
            "WITH f AS (UPDATE bulk_upload SET state = 'FAILED', code = 'KH-5001', message = "
            "'the load was started " KH_STR(
                GW_BULK_ATTEMPTS) " times without an outcome (its gateway node stopped, or "
                                  "could not keep its lease); open a new upload', node = NULL, "
                                  "lease_until = NULL, finished_at = now() WHERE upload_id IN "
                                  "(SELECT upload_id FROM bulk_upload WHERE state = 'LOADING' "
                                  "AND lease_until < now() AND attempts >= " KH_STR(
                                      GW_BULK_ATTEMPTS) " FOR UPDATE SKIP LOCKED) RETURNING "
                                                        "upload_id) DELETE FROM "
                                                        "bulk_upload_part WHERE upload_id IN "
                                                        "(SELECT upload_id FROM f)",
            0, NULL);
        PGresult *d = f == NULL
                          ? NULL
                          : kh_db_exec(c,
                                       "DELETE FROM bulk_upload WHERE upload_id IN (SELECT "
                                       "upload_id FROM bulk_upload WHERE (state = "
                                       "'RECEIVING' AND touched_at < now() - interval '" IDLE_S
                                       " seconds') OR (finished_at < now() - interval "
                                       "'" IDLE_S " seconds') FOR UPDATE SKIP LOCKED)",
                                       0, NULL);
        if (d == NULL || kh_db_commit(c) != KH_OK)
            kh_db_rollback(c);
        else if (strcmp(PQcmdTuples(d), "0") != 0)
            kh_info("bulk", "tenant %s: %s idle or finished uploads forgotten", t->id.code,
                    PQcmdTuples(d));
        PQclear(f);
        PQclear(d);
    }
}

static void sweep_done(void *arg)
{
    (void)arg;
    sweeping = false;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (sweeping || G.stopping)
        return;
    sweeping = true;
    if (kh_pool_submit(G.pool, sweep_work, sweep_done, NULL) != 0)
        sweeping = false;
}

/* Before uploads were stored in the database (sql/tenant/014) they were
 * spooled as named files under spool_dir/<tenant>/; whatever an older
 * version or a crash left there is personal data nobody can use (removed). */
static void tidy_spool(const char *spool)
{
    size_t nt = gw_tenant_count();
    for (size_t i = 0; i <= nt; i++) {
        char dir[1100], path[1400];
        struct dirent *de;
        DIR *d;
        if (i < nt)
            snprintf(dir, sizeof dir, "%s/%s", spool, gw_tenant_slot(i)->id.code);
        else
            snprintf(dir, sizeof dir, "%s", spool);
        if ((d = opendir(dir)) == NULL)
            continue;
        while ((de = readdir(d)) != NULL)
            if (i < nt ? de->d_name[0] != '.' : strncmp(de->d_name, ".load-", 6) == 0) {
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                unlink(path);
            }
        closedir(d);
    }
}

int gw_bulkq_start(char *err, size_t errlen)
{
    if (G.set.spool_dir == NULL)
        return 0; /* no uploads on this node: none loaded here either */
    tidy_spool(G.set.spool_dir);
    nslots = G.set.db_workers - 1 - (G.set.drop_dir != NULL ? 1 : 0);
    if (nslots < 1)
        nslots = 1;
    slots = calloc((size_t)nslots, sizeof *slots);
    claimed = calloc((size_t)nslots, sizeof *claimed);
    release = calloc((size_t)nslots, sizeof *release);
    struct timeval tv = {GW_LEASE_TICK_S, 0}, sv = {60, 0};
    tick_ev = event_new(G.base, -1, EV_PERSIST, on_tick, NULL);
    sweep_ev = event_new(G.base, -1, EV_PERSIST, on_sweep, NULL);
    if (slots == NULL || claimed == NULL || release == NULL || tick_ev == NULL ||
        event_add(tick_ev, &tv) != 0 || sweep_ev == NULL || event_add(sweep_ev, &sv) != 0) {
        snprintf(err, errlen, "cannot start the bulk loads' timers");
        return -1;
    }
    on_sweep(-1, 0, NULL);
    start_tick(NULL); /* what was committed while no node ran */
    return 0;
}

void gw_bulkq_stop(void)
{
    if (tick_ev != NULL)
        event_free(tick_ev);
    if (sweep_ev != NULL)
        event_free(sweep_ev);
    tick_ev = sweep_ev = NULL;
    /* the pool is stopped first: no job uses the slots any more */
    free(slots);
    free(claimed);
    free(release);
    slots = claimed = release = NULL;
    nslots = 0;
}
