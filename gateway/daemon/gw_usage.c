/* gw_usage.c: usage counts per tenant by day, and the Prometheus metrics
 * of the admin listener (see gw_usage.h). The counts are defined once, in
 * SQL (sql/tenant/015_hold_expiry.sql: usage_by_day, usage_sum, usage_now); this
 * file reads them in each tenant's own transaction and writes JSON or
 * Prometheus text. Runs on database workers only.
 *
 * The metrics are counters since records began. Reading a tenant's whole
 * history at every scrape would cost more with every day, so the counts of
 * the days before yesterday are read once (the first scrape after start)
 * and then advanced a day at a time, and a scrape reads only yesterday and
 * today. Records are append-only and a record's time is the start of the
 * transaction that wrote it, so the days before yesterday no longer change
 * (a transaction would have to stay open for a day). A tenant's figures
 * are kept GW_USAGE_CACHE_MS; one scrape at a time reads the database,
 * another meanwhile is answered from what was read last. */
#include "gw_usage.h"

#include "gw_state.h"
#include "khlog.h"
#include "khpool.h"
#include "khprom.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The columns of usage_sum (and of usage_by_day after its day), in order. */
enum {
    U_ASKED,
    U_ASKED_PROVIDED,
    U_ASKED_NOT_FOUND,
    U_ASKED_WITHHELD,
    U_ASKED_PENDING,
    U_ASKED_REFUSED,
    U_ASKED_EXPIRED,
    U_ASKED_FAILED,
    U_ANSWERED,
    U_ANSWERED_PROVIDED,
    U_ANSWERED_NOT_FOUND,
    U_ANSWERED_WITHHELD,
    U_HELD,
    U_ANSWERED_REFUSED,
    U_ANSWERED_EXPIRED,
    U_ANSWERED_UNDELIVERED,
    U_ROWS,
    U_BULK,
    U_NCOUNTS
};
static const char *const count_names[U_NCOUNTS] = {"asked",
                                                   "asked_provided",
                                                   "asked_not_found",
                                                   "asked_withheld",
                                                   "asked_pending",
                                                   "asked_refused",
                                                   "asked_expired",
                                                   "asked_failed",
                                                   "answered",
                                                   "answered_provided",
                                                   "answered_not_found",
                                                   "answered_withheld",
                                                   "held",
                                                   "answered_refused",
                                                   "answered_expired",
                                                   "answered_undelivered",
                                                   "rows_registered",
                                                   "bulk_files"};

/* The columns of usage_now, in order. */
enum {
    N_HELD_WAITING,
    N_OUTBOX_QUEUED,
    N_OUTBOX_FAILED,
    N_SENT,
    N_PENDING,
    N_TIMED_OUT,
    N_HELD_EXPIRING,
    N_COUNT
};

/* ------------------------------------------------------------ reports */

kh_err gw_usage_period(PGconn *c, const char *since, const char *until, char *since_out,
                       char *until_out, char *msg, size_t msglen)
{
    char back[8];
    snprintf(back, sizeof back, "%d", GW_USAGE_DEFAULT_DAYS - 1);
    const char *p[3] = {since, until, back};
    PGresult *r = kh_db_exec(c,
                             "SELECT s::text, u::text, u - s FROM "
                             "(SELECT coalesce($2::date, current_date) AS u) x, "
                             "LATERAL (SELECT coalesce($1::date, x.u - $3::int) AS s) y",
                             3, p);
    if (r == NULL)
        return KH_E_DB;
    snprintf(since_out, 11, "%s", PQgetvalue(r, 0, 0));
    snprintf(until_out, 11, "%s", PQgetvalue(r, 0, 1));
    long span = strtol(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    if (span < 0) {
        snprintf(msg, msglen, "since: after until (%s)", until_out);
        return KH_E_ADM_FIELD;
    }
    if (span >= GW_USAGE_MAX_DAYS) {
        snprintf(msg, msglen, "since: at most %d days up to until (%s)", GW_USAGE_MAX_DAYS,
                 until_out);
        return KH_E_ADM_FIELD;
    }
    return KH_OK;
}

kh_err gw_usage_write(PGconn *c, const char *org, const char *since, const char *until,
                      khj_writer *w)
{
    char sql[2048];
    int n = snprintf(sql, sizeof sql,
                     "WITH d AS (SELECT * FROM usage_by_day($1::date, $2::date + 1)) "
                     "SELECT (SELECT coalesce(json_agg(d ORDER BY d.day), '[]') FROM d)::text, "
                     "(SELECT row_to_json(s) FROM (SELECT ");
    for (size_t i = 0; i < U_NCOUNTS; i++)
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%scoalesce(sum(%s), 0)::bigint AS %s",
                      i ? ", " : "", count_names[i], count_names[i]);
    snprintf(sql + n, sizeof sql - (size_t)n, " FROM d) s)::text");
    if (kh_db_tenant_begin(&c, org) != KH_OK)
        return KH_E_DB;
    const char *p[2] = {since, until};
    PGresult *r = kh_db_exec(c, sql, 2, p);
    kh_db_rollback(c);
    if (r == NULL)
        return KH_E_DB;
    khjw_key(w, "days");
    khjw_raw(w, PQgetvalue(r, 0, 0), strlen(PQgetvalue(r, 0, 0)));
    khjw_key(w, "total");
    khjw_raw(w, PQgetvalue(r, 0, 1), strlen(PQgetvalue(r, 0, 1)));
    PQclear(r);
    return KH_OK;
}

/* ------------------------------------------------------------ metrics */

typedef struct {
    bool have_base;
    char base_day[11]; /* base holds the counts of the days before it */
    int64_t base[U_NCOUNTS];
    bool ok;                  /* the last read worked: total and now are current */
    int64_t read_ms;          /* monotonic time of the last read, 0: never */
    int64_t read_unix;        /* its wall-clock time */
    int64_t total[U_NCOUNTS]; /* base + yesterday and today */
    int64_t now[N_COUNT];
} tenant_usage;

/* states[i] belongs to gw_tenant_at(i) (a slot for every tenant there may
 * be, added ones too). data_lock guards them; read_lock is
 * held by the one scrape that reads the database, the only one that
 * changes base and base_day. */
static pthread_mutex_t data_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t read_lock = PTHREAD_MUTEX_INITIALIZER;
static tenant_usage *states;

static int tenant_index(const char *org)
{
    for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t != NULL && strcmp(t->id.code, org) == 0)
            return (int)i;
    }
    return -1;
}

/* One statement in the tenant's transaction: the counts of the days from
 * base_day (or the first record) to before yesterday, those of yesterday
 * and today, and usage_now(). Called with read_lock held. */
static void read_tenant(PGconn *c, size_t i)
{
    tenant_usage *st = &states[i];
    const char *p[1] = {st->have_base ? st->base_day : NULL};
    PGresult *r = NULL;
    const char *org = gw_tenant_slot(i)->id.code;
    if (kh_db_tenant_begin(&c, org) == KH_OK) {
        r = kh_db_exec(c,
                       "WITH b AS (SELECT greatest(current_date - 1, $1::date) AS d) "
                       "SELECT b.d::text, i.*, r.*, g.* FROM b, usage_sum($1::date, b.d) i, "
                       "usage_sum(b.d, NULL) r, usage_now() g",
                       1, p);
        kh_db_rollback(c);
    }
    bool ok = r != NULL && PQntuples(r) == 1 && PQnfields(r) == 1 + 2 * U_NCOUNTS + N_COUNT;
    if (!ok)
        kh_warn("usage", "tenant %s: cannot read the usage counts", org);
    pthread_mutex_lock(&data_lock);
    st->ok = ok;
    st->read_ms = kh_mono_ms();
    st->read_unix = (int64_t)time(NULL);
    if (ok) {
        for (int k = 0; k < U_NCOUNTS; k++) {
            st->base[k] += strtoll(PQgetvalue(r, 0, 1 + k), NULL, 10);
            st->total[k] = st->base[k] + strtoll(PQgetvalue(r, 0, 1 + U_NCOUNTS + k), NULL, 10);
        }
        for (int k = 0; k < N_COUNT; k++)
            st->now[k] = strtoll(PQgetvalue(r, 0, 1 + 2 * U_NCOUNTS + k), NULL, 10);
        snprintf(st->base_day, sizeof st->base_day, "%s", PQgetvalue(r, 0, 0));
        st->have_base = true;
    }
    pthread_mutex_unlock(&data_lock);
    PQclear(r);
}

/* A sample of a family: the tenant's total[idx] (or now[idx] if now), with
 * the family's labels l1 = v1, l2 = v2. */
typedef struct {
    const char *v1, *v2;
    bool now;
    int idx;
} fam_sample;

typedef struct {
    const char *name, *type, *help, *l1, *l2;
    size_t n;
    fam_sample s[14];
} family;

static const family families[] = {
    {"kakehashi_queries_asked_total",
     "counter",
     "Queries the tenant asked, each counted once (from its provision records).",
     NULL,
     NULL,
     1,
     {{NULL, NULL, false, U_ASKED}}},
    {"kakehashi_queries_answered_total",
     "counter",
     "Queries the tenant answered (provided, not found or withheld), immediately or after a "
     "responder approved a held query.",
     NULL,
     NULL,
     1,
     {{NULL, NULL, false, U_ANSWERED}}},
    {"kakehashi_queries_held_total",
     "counter",
     "Queries to the tenant held for a responder's decision.",
     NULL,
     NULL,
     1,
     {{NULL, NULL, false, U_HELD}}},
    {"kakehashi_queries_refused_total",
     "counter",
     "Queries refused: side asking, the tenant's own queries (by its gateway's checks, the "
     "router, the provider or its responder); side answering, held queries the tenant's "
     "responders refused.",
     "side",
     NULL,
     2,
     {{"asking", NULL, false, U_ASKED_REFUSED}, {"answering", NULL, false, U_ANSWERED_REFUSED}}},
    {"kakehashi_queries_expired_total",
     "counter",
     "Held queries that expired (no responder decided before the providing tenant's deadline, "
     "KH-2011): side asking, the tenant's own; side answering, those held by the tenant.",
     "side",
     NULL,
     2,
     {{"asking", NULL, false, U_ASKED_EXPIRED}, {"answering", NULL, false, U_ANSWERED_EXPIRED}}},
    {"kakehashi_queries_failed_total",
     "counter",
     "The tenant's queries that failed (not delivered while valid, or an answer that did not "
     "verify).",
     NULL,
     NULL,
     1,
     {{NULL, NULL, false, U_ASKED_FAILED}}},
    {"kakehashi_provision_records_total",
     "counter",
     "The tenant's provision records by direction and outcome.",
     "direction",
     "outcome",
     14,
     {{"asked", "provided", false, U_ASKED_PROVIDED},
      {"asked", "not_found", false, U_ASKED_NOT_FOUND},
      {"asked", "withheld", false, U_ASKED_WITHHELD},
      {"asked", "pending", false, U_ASKED_PENDING},
      {"asked", "refused", false, U_ASKED_REFUSED},
      {"asked", "expired", false, U_ASKED_EXPIRED},
      {"asked", "failed", false, U_ASKED_FAILED},
      {"answered", "provided", false, U_ANSWERED_PROVIDED},
      {"answered", "not_found", false, U_ANSWERED_NOT_FOUND},
      {"answered", "withheld", false, U_ANSWERED_WITHHELD},
      {"answered", "held", false, U_HELD},
      {"answered", "refused", false, U_ANSWERED_REFUSED},
      {"answered", "expired", false, U_ANSWERED_EXPIRED},
      {"answered", "undelivered", false, U_ANSWERED_UNDELIVERED}}},
    {"kakehashi_replica_rows_registered_total",
     "counter",
     "Reference-copy rows registered (every version: online, bulk and deletions).",
     NULL,
     NULL,
     1,
     {{NULL, NULL, false, U_ROWS}}},
    {"kakehashi_bulk_files_applied_total",
     "counter",
     "Bulk files applied.",
     NULL,
     NULL,
     1,
     {{NULL, NULL, false, U_BULK}}},
    {"kakehashi_held_queries_waiting",
     "gauge",
     "Held queries to the tenant waiting for a responder's decision.",
     NULL,
     NULL,
     1,
     {{NULL, NULL, true, N_HELD_WAITING}}},
    {"kakehashi_held_queries_expiring",
     "gauge",
     "Held queries to the tenant whose deadline is less than a day away (they expire with "
     "KH-2011 unless a responder decides).",
     NULL,
     NULL,
     1,
     {{NULL, NULL, true, N_HELD_EXPIRING}}},
    {"kakehashi_outbox_messages",
     "gauge",
     "Deferred answers not delivered: queued (being sent, with retries) or failed (given up "
     "when the answer expired).",
     "state",
     NULL,
     2,
     {{"queued", NULL, true, N_OUTBOX_QUEUED}, {"failed", NULL, true, N_OUTBOX_FAILED}}},
    {"kakehashi_asked_queries_open",
     "gauge",
     "The tenant's queries not finished: sent (waiting for the answer), pending (held by the "
     "provider), timed_out (the business system stopped waiting; a late answer still counts).",
     "state",
     NULL,
     3,
     {{"sent", NULL, true, N_SENT},
      {"pending", NULL, true, N_PENDING},
      {"timed_out", NULL, true, N_TIMED_OUT}}},
};

/* The exposition of the tenants in copies (orgs[i] is copies[i]'s code). */
static int render(struct evbuffer *b, const char *const *orgs, const tenant_usage *copies, size_t n)
{
    int rc = khprom_family(b, "kakehashi_usage_read_ok", "gauge",
                           "1 if the tenant's figures were read from its records (within the last "
                           "5 s), 0 if not: its other series are then left out.");
    for (size_t t = 0; rc == 0 && t < n; t++) {
        const char *l[] = {"tenant", orgs[t], NULL};
        rc = khprom_sample(b, "kakehashi_usage_read_ok", l, copies[t].ok ? 1 : 0);
    }
    if (rc == 0)
        rc = khprom_family(b, "kakehashi_usage_read_timestamp_seconds", "gauge",
                           "When the tenant's figures were read (Unix time).");
    for (size_t t = 0; rc == 0 && t < n; t++) {
        const char *l[] = {"tenant", orgs[t], NULL};
        if (copies[t].ok)
            rc = khprom_sample(b, "kakehashi_usage_read_timestamp_seconds", l, copies[t].read_unix);
    }
    for (size_t f = 0; rc == 0 && f < sizeof families / sizeof families[0]; f++) {
        const family *fm = &families[f];
        rc = khprom_family(b, fm->name, fm->type, fm->help);
        for (size_t t = 0; rc == 0 && t < n; t++) {
            if (!copies[t].ok)
                continue;
            for (size_t s = 0; rc == 0 && s < fm->n; s++) {
                const fam_sample *sm = &fm->s[s];
                const char *l[] = {"tenant", orgs[t], fm->l1, sm->v1, fm->l2, sm->v2, NULL};
                rc = khprom_sample(b, fm->name, l,
                                   sm->now ? copies[t].now[sm->idx] : copies[t].total[sm->idx]);
            }
        }
    }
    return rc;
}

kh_err gw_usage_metrics(PGconn *c, const char *const *orgs, size_t norgs, char **out,
                        size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    pthread_mutex_lock(&data_lock);
    if (states == NULL)
        states = calloc(GW_MAX_TENANTS, sizeof *states);
    bool have = states != NULL;
    pthread_mutex_unlock(&data_lock);
    tenant_usage *copies = calloc(norgs ? norgs : 1, sizeof *copies);
    struct evbuffer *b = evbuffer_new();
    kh_err e = KH_E_INTERNAL;
    if (!have || copies == NULL || b == NULL)
        goto out;
    /* one scrape reads; one that comes meanwhile takes what was read last */
    bool reader = c != NULL && pthread_mutex_trylock(&read_lock) == 0;
    for (size_t t = 0; reader && t < norgs; t++) {
        int i = tenant_index(orgs[t]);
        if (i < 0)
            continue;
        pthread_mutex_lock(&data_lock);
        bool fresh = states[i].read_ms != 0 && kh_mono_ms() - states[i].read_ms < GW_USAGE_CACHE_MS;
        pthread_mutex_unlock(&data_lock);
        if (!fresh && !G.stopping)
            read_tenant(c, (size_t)i);
    }
    if (reader)
        pthread_mutex_unlock(&read_lock);
    pthread_mutex_lock(&data_lock);
    for (size_t t = 0; t < norgs; t++) {
        int i = tenant_index(orgs[t]);
        if (i >= 0)
            copies[t] = states[i];
    }
    pthread_mutex_unlock(&data_lock);
    if (render(b, orgs, copies, norgs) != 0)
        goto out;
    size_t len = evbuffer_get_length(b);
    *out = malloc(len + 1);
    if (*out == NULL)
        goto out;
    evbuffer_copyout(b, *out, len);
    (*out)[len] = '\0';
    *outlen = len;
    e = KH_OK;
out:
    if (b != NULL)
        evbuffer_free(b);
    free(copies);
    return e;
}

void gw_usage_stop(void)
{
    pthread_mutex_lock(&data_lock);
    free(states);
    states = NULL;
    pthread_mutex_unlock(&data_lock);
}
