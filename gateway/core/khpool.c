/* khpool.c: database worker threads and their hand-back to the event loop. */
#include "khpool.h"

#include "khlog.h"

#include <ctype.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct job {
    kh_pool_work_fn work;
    kh_pool_done_fn done;
    void *arg;
    struct job *next;
} job;

/* A lane: the queued jobs of one key (a tenant; "" for the platform's own
 * work), first in first out. The workers take one job from each lane that
 * has work in turn, so a tenant with a hundred jobs queued delays another
 * tenant's one job by at most one of its own, not by the hundred. Lanes are
 * made on first use and kept (few: one per tenant and a handful more); past
 * LANES_MAX every new key shares the platform's lane. */
#define LANES_MAX 4096
typedef struct lane {
    char key[KH_POOL_KEY_MAX];
    job *head, *tail;
    struct lane *next; /* in the pool's ring: a lane is there while it has jobs */
} lane;

/* Where a tenant's schema lives when not in the pool's own database (its
 * home: the platform's tables and every tenant without a route). */
typedef struct {
    char org[KH_POOL_ORG_MAX];
    size_t db; /* index in dbs */
} route;

struct kh_pool {
    struct event_base *base;
    struct event *done_ev;
    char **dbs; /* conninfo of each database: dbs[0] the home; one each */
    size_t ndbs;
    /* KH_POOL_ROUTES_MAX slots, filled in order and never moved: a route is
     * added after the start too (to a database the pool has), published by
     * nroutes (release; workers read it with acquire) */
    route *routes;
    atomic_size_t nroutes;
    bool started;        /* a job was submitted: the databases are fixed */
    int64_t *down_until; /* per database: not tried before (mono_ms), see pool_connect */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lane **lanes; /* lanes[0]: the platform's */
    size_t nlanes, caplanes;
    lane *ready_head, *ready_tail; /* the lanes with jobs queued, in turn */
    job *done_head, *done_tail;
    int queued, queue_max;
    int running; /* jobs a worker is running */
    int waiting; /* jobs submitted that no worker has taken yet */
    int nice;    /* of the workers, above the event loop's */
    bool stopping;
    int nworkers;
    pthread_t *threads;
};

static void push(job **head, job **tail, job *j)
{
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

/* The lane of key (NULL: the platform's), made if new; with p->mu held. */
static lane *lane_of(kh_pool *p, const char *key)
{
    if (key == NULL || key[0] == '\0')
        return p->lanes[0];
    for (size_t i = 1; i < p->nlanes; i++)
        if (strncmp(p->lanes[i]->key, key, sizeof p->lanes[i]->key - 1) == 0)
            return p->lanes[i];
    if (p->nlanes == LANES_MAX)
        return p->lanes[0];
    if (p->nlanes == p->caplanes) {
        size_t cap = p->caplanes * 2;
        lane **more = realloc(p->lanes, cap * sizeof *more);
        if (more == NULL)
            return p->lanes[0];
        p->lanes = more;
        p->caplanes = cap;
    }
    lane *l = calloc(1, sizeof *l);
    if (l == NULL)
        return p->lanes[0];
    snprintf(l->key, sizeof l->key, "%s", key);
    p->lanes[p->nlanes++] = l;
    return l;
}

/* l to the end of the ring of lanes with work; with p->mu held. */
static void ready_push(kh_pool *p, lane *l)
{
    l->next = NULL;
    if (p->ready_tail)
        p->ready_tail->next = l;
    else
        p->ready_head = l;
    p->ready_tail = l;
}

/* The next job, from the lane whose turn it is (NULL: none queued); with
 * p->mu held. A lane with more jobs goes to the end of the ring. */
static job *take(kh_pool *p)
{
    lane *l = p->ready_head;
    if (l == NULL)
        return NULL;
    p->ready_head = l->next;
    if (p->ready_head == NULL)
        p->ready_tail = NULL;
    job *j = l->head;
    l->head = j->next;
    if (l->head == NULL)
        l->tail = NULL;
    else
        ready_push(p, l);
    return j;
}

/* conninfo: key = value pairs or a postgresql:// URI, one host or several
 * (host=h1,h2 ... target_session_attrs=read-write: libpq tries them in turn
 * and keeps the primary, which is how a worker finds the new primary after a
 * failover). A connect_timeout of 5 s unless conninfo sets one, so that a
 * dead server cannot stall the workers (or shutdown) indefinitely: listed
 * first, it is overridden by one in conninfo, expanded after it. */
/* libpq's default notice processor writes to stderr, outside the JSON log:
 * a server that ends a connection (a failover, pg_terminate_backend) sends a
 * FATAL that libpq, reading it between statements, reports as a notice. So
 * every notice goes into the log instead, by severity and SQLSTATE only (a
 * message may quote values: personal data). */
static void notice(void *arg, const PGresult *r)
{
    (void)arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool quiet = sev != NULL && (strcmp(sev, "NOTICE") == 0 || strcmp(sev, "INFO") == 0 ||
                                 strcmp(sev, "LOG") == 0 || strncmp(sev, "DEBUG", 5) == 0);
    if (quiet)
        kh_info("db", "server notice: severity=%s sqlstate=%s", sev, state ? state : "?");
    else
        kh_warn("db", "server notice: severity=%s sqlstate=%s", sev ? sev : "?",
                state ? state : "?");
}

PGconn *kh_db_connect(const char *conninfo)
{
    static const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {"5", conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        /* libpq's message names the server, not personal data */
        kh_warn("db", "cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeReceiver(c, notice, NULL);
    return c;
}

/* Whether an idle connection may be used, without a round trip: the server
 * ends a connection (a restart, a failover, pg_terminate_backend) with a
 * FATAL message and the end of the stream, which make the socket readable;
 * between jobs nothing else arrives (the workers LISTEN to nothing), so a
 * readable socket is taken for that and the connection is replaced (libpq
 * may read the message without the end, and call it open). So a worker
 * notices before its next job, which then runs on a new connection instead
 * of failing. A server gone without a word (its host lost) is noticed by
 * the job that fails. */
static bool still_open(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_OK)
        return false;
    struct pollfd pf = {.fd = PQsocket(c), .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

static bool job_end(PGconn *c);
static void prep_drop(const PGconn *c);
static bool conn_idle(const PGconn *c);
typedef struct prep_cache prep_cache;

/* A worker: its pool and its connections, one per database it has used
 * (conns[0] to the home database; each made when first needed), each with
 * its cache of prepared statements (preps[i], conns[i]'s). */
typedef struct {
    kh_pool *pool;
    PGconn **conns;
    prep_cache **preps;
    bool *down; /* could not connect during this job: not tried again in it */
} worker;

static __thread worker *self; /* NULL outside a pool's worker */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection to database db for a worker of p. A database that could not
 * be reached is not tried again by any worker of the pool for DOWN_MS: its
 * jobs fail at once (KH_E_DB) instead of each waiting for connect_timeout,
 * and the jobs that go through every tenant are not held up by one
 * database that is gone. */
#define DOWN_MS 1000
static PGconn *pool_connect(kh_pool *p, size_t db)
{
    int64_t now = mono_ms();
    if (now < __atomic_load_n(&p->down_until[db], __ATOMIC_RELAXED))
        return NULL;
    PGconn *c = kh_db_connect(p->dbs[db]);
    if (c == NULL)
        __atomic_store_n(&p->down_until[db], mono_ms() + DOWN_MS, __ATOMIC_RELAXED);
    return c;
}

/* The database index of org's route, or -1 if it has none. */
static long route_of(const kh_pool *p, const char *org)
{
    for (size_t i = 0, n = atomic_load_explicit(&p->nroutes, memory_order_acquire); i < n; i++)
        if (strcmp(p->routes[i].org, org) == 0)
            return (long)p->routes[i].db;
    return -1;
}

/* The database index of org's schema (0: the home, routed or not). */
static size_t db_of(const kh_pool *p, const char *org)
{
    long db = route_of(p, org);
    return db < 0 ? 0 : (size_t)db;
}

/* Closes a worker connection (and forgets its statements). */
static void conn_close(PGconn **c)
{
    prep_drop(*c);
    PQfinish(*c);
    *c = NULL;
}

/* The connection to use for org's transaction: in a pool worker, the
 * worker's connection to org's database (made, or made again if the server
 * ended it, now); elsewhere cur, which its caller opened to the right one. */
static PGconn *tenant_conn(PGconn *cur, const char *org)
{
    if (self == NULL || self->conns == NULL || self->pool->down_until == NULL)
        return cur; /* not a worker (or one without memory for its connections) */
    size_t db = db_of(self->pool, org);
    PGconn **c = &self->conns[db];
    if (*c != NULL && *c == cur)
        return cur;
    /* a connection lost in an earlier statement, or ended by the server
     * while idle (not one in the middle of a transaction of this job) */
    if (*c != NULL && (PQstatus(*c) != CONNECTION_OK || (conn_idle(*c) && !still_open(*c)))) {
        kh_info("db", "a connection was lost or ended by the server: connecting again");
        conn_close(c);
    }
    if (*c == NULL && !self->down[db] && (*c = pool_connect(self->pool, db)) == NULL)
        self->down[db] = true; /* a loop over tenants does not wait on it once per tenant */
    return *c;
}

static void *worker_main(void *arg)
{
    kh_pool *p = arg;
    worker w = {.pool = p};
    self = &w;
    /* below the event loop (Linux sets a nice value per thread): when the
     * CPUs are busy, the loop still accepts, refuses and answers at once */
    if (p->nice > 0) {
        id_t tid = (id_t)syscall(SYS_gettid);
        int now = getpriority(PRIO_PROCESS, tid); /* the creating thread's, inherited */
        int want = now + p->nice > 19 ? 19 : now + p->nice;
        if (setpriority(PRIO_PROCESS, tid, want) != 0)
            kh_warn("pool", "cannot lower a worker's priority (nice %d)", want);
    }
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->ready_head == NULL && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        job *j = take(p);
        if (j == NULL) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->running++;
        p->waiting--;
        pthread_mutex_unlock(&p->mu);

        /* the routes are fixed once a job was submitted */
        if (w.conns == NULL) {
            w.conns = calloc(p->ndbs, sizeof *w.conns);
            w.preps = calloc(p->ndbs, sizeof *w.preps);
            w.down = calloc(p->ndbs, sizeof *w.down);
            if (w.conns == NULL || w.preps == NULL || w.down == NULL) {
                free(w.conns);
                free(w.preps);
                free(w.down);
                w.conns = NULL;
                w.preps = NULL;
                w.down = NULL;
            }
        }
        if (w.conns == NULL || p->down_until == NULL) {
            kh_warn("pool", "no memory for a worker's connections");
            j->work(NULL, j->arg);
        } else {
            memset(w.down, 0, p->ndbs * sizeof *w.down);
            PGconn **home = &w.conns[0];
            if (*home != NULL && !still_open(*home)) {
                kh_info("db", "the server ended or spoke on an idle connection: connecting again");
                conn_close(home);
            }
            if (*home == NULL)
                w.down[0] = (*home = pool_connect(p, 0)) == NULL;
            j->work(*home, j->arg);
            /* a job must leave no transaction open behind it, on any database */
            for (size_t i = 0; i < p->ndbs; i++)
                if (w.conns[i] != NULL && !job_end(w.conns[i]))
                    conn_close(&w.conns[i]);
        }
        pthread_mutex_lock(&p->mu);
        p->running--;
        push(&p->done_head, &p->done_tail, j);
        pthread_mutex_unlock(&p->mu);
        event_active(p->done_ev, EV_READ, 0);
    }
    for (size_t i = 0; w.conns != NULL && i < p->ndbs; i++)
        if (w.conns[i] != NULL)
            conn_close(&w.conns[i]);
    free(w.conns);
    free(w.preps);
    free(w.down);
    self = NULL;
    kh_db_forget();
    return NULL;
}

kh_pool_depth kh_pool_depth_of(kh_pool *p)
{
    kh_pool_depth d = {0, 0, 0, 0, 0};
    if (p == NULL)
        return d;
    pthread_mutex_lock(&p->mu);
    d = (kh_pool_depth){p->queued, p->waiting, p->running, p->nworkers, p->queue_max};
    pthread_mutex_unlock(&p->mu);
    return d;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    kh_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    job *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        job *j = list;
        list = j->next;
        pthread_mutex_lock(&p->mu);
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        if (j->done)
            j->done(j->arg);
        free(j);
    }
}

kh_pool *kh_pool_new(struct event_base *base, const char *conninfo, int workers, int queue_max,
                     int nice)
{
    kh_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base = base;
    p->queue_max = queue_max;
    p->nice = nice;
    p->dbs = calloc(1, sizeof *p->dbs);
    if (p->dbs != NULL && (p->dbs[0] = strdup(conninfo)) != NULL)
        p->ndbs = 1;
    p->routes = calloc(KH_POOL_ROUTES_MAX, sizeof *p->routes);
    if (p->routes == NULL)
        p->ndbs = 0; /* fails below */
    p->done_ev = event_new(base, -1, 0, on_done, p);
    p->threads = calloc((size_t)workers, sizeof *p->threads);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->caplanes = 16;
    p->lanes = calloc(p->caplanes, sizeof *p->lanes);
    if (p->lanes != NULL && (p->lanes[0] = calloc(1, sizeof **p->lanes)) != NULL)
        p->nlanes = 1; /* the platform's lane, key "" */
    if (p->ndbs == 0 || p->done_ev == NULL || p->threads == NULL || p->nlanes == 0)
        goto fail;
    for (; p->nworkers < workers; p->nworkers++)
        if (pthread_create(&p->threads[p->nworkers], NULL, worker_main, p) != 0)
            goto fail;
    return p;
fail:
    kh_pool_free(p);
    return NULL;
}

int kh_pool_submit(kh_pool *p, kh_pool_work_fn work, kh_pool_done_fn done, void *arg)
{
    return kh_pool_submit_for(p, NULL, work, done, arg);
}

int kh_pool_submit_for(kh_pool *p, const char *key, kh_pool_work_fn work, kh_pool_done_fn done,
                       void *arg)
{
    job *j = malloc(sizeof *j);
    if (j == NULL)
        return -1;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->stopping || p->queued >= p->queue_max) {
        pthread_mutex_unlock(&p->mu);
        free(j);
        return -1;
    }
    if (!p->started) /* the number of databases is fixed from here */
        p->down_until = calloc(p->ndbs, sizeof *p->down_until);
    p->started = true;
    p->queued++;
    p->waiting++;
    lane *l = lane_of(p, key);
    bool idle = l->head == NULL; /* not in the ring yet */
    push(&l->head, &l->tail, j);
    if (idle)
        ready_push(p, l);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int kh_pool_route(kh_pool *p, const char *org, const char *conninfo)
{
    int rc = -1;
    size_t n = strlen(org);
    pthread_mutex_lock(&p->mu);
    size_t nr = atomic_load_explicit(&p->nroutes, memory_order_relaxed);
    size_t db = 0;
    while (db < p->ndbs && strcmp(p->dbs[db], conninfo) != 0)
        db++;
    if (n == 0 || n >= KH_POOL_ORG_MAX)
        goto out;
    long have = route_of(p, org);
    if (have >= 0) { /* an org routed (the home too) keeps its database */
        rc = (size_t)have == db ? 0 : -1;
        goto out;
    }
    if (nr == KH_POOL_ROUTES_MAX || (p->started && db == p->ndbs))
        goto out;
    if (db == p->ndbs) {
        char **more = realloc(p->dbs, (p->ndbs + 1) * sizeof *more);
        if (more == NULL)
            goto out;
        p->dbs = more;
        if ((p->dbs[db] = strdup(conninfo)) == NULL)
            goto out;
        p->ndbs++;
    }
    snprintf(p->routes[nr].org, sizeof p->routes[nr].org, "%s", org);
    p->routes[nr].db = db;
    atomic_store_explicit(&p->nroutes, nr + 1, memory_order_release);
    rc = 0;
out:
    pthread_mutex_unlock(&p->mu);
    return rc;
}

const char *kh_pool_conninfo(const kh_pool *p, const char *org)
{
    return p->dbs[org != NULL ? db_of(p, org) : 0];
}

void kh_pool_free(kh_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->threads[i], NULL);
    /* jobs finished but not yet handed back are completed now */
    if (p->done_ev)
        on_done(-1, 0, p);
    if (p->done_ev)
        event_free(p->done_ev);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    for (size_t i = 0; p->dbs != NULL && i < p->ndbs; i++)
        free(p->dbs[i]);
    free(p->dbs);
    free(p->routes);
    free(p->down_until);
    for (size_t i = 0; p->lanes != NULL && i < p->nlanes; i++)
        free(p->lanes[i]);
    free(p->lanes);
    free(p);
}

/* ---- prepared statements ----
 * Every statement a work function runs through kh_db_try/kh_db_exec is
 * prepared once per connection and tenant schema and then only bound and
 * executed: PostgreSQL no longer parses, analyses and plans the same text on
 * every query. The schema is part of the key because a prepared statement
 * keeps the search_path it was analysed under; running it under another
 * tenant's would make PostgreSQL analyse it again each time the tenant
 * changes. A cache belongs to one connection (a pool worker keeps one per
 * database it uses; another thread has one connection at a time) and is
 * emptied when that connection changes (another PGconn, or the same address
 * with another server process). It holds at most PREP_MAX statements; past
 * that, statements run unprepared as before. */
#define PREP_MAX 256

typedef struct {
    uint64_t hash;
    char *sql;
    char schema[24];
} prep_entry;

struct prep_cache {
    PGconn *conn;
    int backend_pid;
    char schema[24]; /* of the open transaction; "" outside a tenant's */
    int pending;     /* deferred statements sent, answers not read yet */
    char *sink;      /* where the one value of the pending statement */
    size_t sinklen;  /* number sink_at (0-based) goes; NULL: none */
    int sink_at;
    bool broken;    /* a read-out failed mid-pipeline: nothing more until the job ends */
    bool read_only; /* the server refused a write as read-only (a standby): reconnect */
    bool unfit;     /* a job found the server unfit (kh_db_unfit): reconnect */
    size_t n;
    prep_entry e[PREP_MAX];
};

/* Where c's cache is: in a pool worker, beside c among the worker's
 * connections (one cache per connection it keeps, none ever evicted while
 * its connection is open: a statement prepared on a connection stays there);
 * in any other thread (one connection at a time), the thread's own. */
static __thread prep_cache *own_cache;

static prep_cache **cache_slot(const PGconn *c)
{
    for (size_t i = 0; self != NULL && self->conns != NULL && c != NULL && i < self->pool->ndbs;
         i++)
        if (self->conns[i] == c)
            return &self->preps[i];
    return &own_cache;
}

static void prep_clear(prep_cache *pc)
{
    for (size_t i = 0; i < pc->n; i++)
        free(pc->e[i].sql);
    pc->n = 0;
}

/* The cache for c, emptied if c is not the connection it was made for. */
static prep_cache *prep_for(PGconn *c)
{
    prep_cache **slot = cache_slot(c);
    if (*slot == NULL && (*slot = calloc(1, sizeof **slot)) == NULL)
        return NULL;
    prep_cache *pc = *slot;
    int pid = PQbackendPID(c);
    if (pc->conn != c || pc->backend_pid != pid) {
        prep_clear(pc);
        pc->conn = c;
        pc->backend_pid = pid;
        pc->schema[0] = '\0';
        pc->pending = 0;
        pc->sink = NULL;
        pc->broken = false;
        pc->read_only = false;
        pc->unfit = false;
    }
    return pc;
}

/* The cache if it was made for c, else NULL (none is made). */
static prep_cache *prep_of(const PGconn *c)
{
    prep_cache *pc = c != NULL ? *cache_slot(c) : NULL;
    return pc != NULL && pc->conn == c ? pc : NULL;
}

/* Drops c's cache (before c is closed: another connection may get its address). */
static void prep_drop(const PGconn *c)
{
    prep_cache **slot = c != NULL ? cache_slot(c) : NULL;
    if (slot != NULL && *slot != NULL && (*slot)->conn == c) {
        prep_clear(*slot);
        free(*slot);
        *slot = NULL;
    }
}

/* Whether c has no transaction open and nothing sent unread. */
static bool conn_idle(const PGconn *c)
{
    const prep_cache *pc = prep_of(c);
    return PQtransactionStatus(c) == PQTRANS_IDLE && (pc == NULL || pc->pending == 0);
}

void kh_db_forget(void)
{
    if (own_cache != NULL) {
        prep_clear(own_cache);
        free(own_cache);
        own_cache = NULL;
    }
}

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Only single data statements are worth preparing (and only those can be). */
static bool preparable(const char *sql)
{
    static const char *const verbs[] = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"};
    while (isspace((unsigned char)*sql))
        sql++;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strncasecmp(sql, verbs[i], strlen(verbs[i])) == 0)
            return true;
    return false;
}

static uint64_t prep_hash(const prep_cache *pc, const char *sql)
{
    return fnv1a(pc->schema, fnv1a(sql, 14695981039346656037u));
}

/* Whether sql is prepared on pc's connection under its current schema. */
static bool prep_known(const prep_cache *pc, const char *sql)
{
    uint64_t h = prep_hash(pc, sql);
    for (size_t i = 0; i < pc->n; i++)
        if (pc->e[i].hash == h && strcmp(pc->e[i].schema, pc->schema) == 0 &&
            strcmp(pc->e[i].sql, sql) == 0)
            return true;
    return false;
}

/* The name of sql's prepared statement on c (prepared now if need be) into
 * name: 1, or 0 to run it unprepared, or -1 with *failed set when preparing
 * it failed (PostgreSQL's error is then the statement's result: the same
 * SQLSTATE running it would give, and the transaction is aborted as it would
 * be). */
static int prepared_name(PGconn *c, const char *sql, int nparams, char name[40], PGresult **failed)
{
    prep_cache *pc = preparable(sql) ? prep_for(c) : NULL;
    if (pc == NULL)
        return 0;
    uint64_t h = prep_hash(pc, sql);
    snprintf(name, 40, "kh_%016llx", (unsigned long long)h);
    if (prep_known(pc, sql))
        return 1;
    if (pc->n == PREP_MAX)
        return 0;
    /* two texts with one hash: the second runs unprepared */
    for (size_t j = 0; j < pc->n; j++)
        if (pc->e[j].hash == h)
            return 0;
    char *copy = strdup(sql);
    if (copy == NULL)
        return 0;
    PGresult *r = PQprepare(c, name, sql, nparams, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        free(copy);
        *failed = r;
        return -1;
    }
    PQclear(r);
    pc->e[pc->n].hash = h;
    pc->e[pc->n].sql = copy;
    snprintf(pc->e[pc->n].schema, sizeof pc->e[pc->n].schema, "%s", pc->schema);
    pc->n++;
    return 1;
}

/* A write refused as read-only marks the connection to be replaced after
 * the job (job_end), whoever reads the result. */
static void note(PGconn *c, const PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    prep_cache *pc = prep_of(c);
    if (pc != NULL && state != NULL && strcmp(state, KH_SQLSTATE_READ_ONLY) == 0)
        pc->read_only = true;
}

void kh_db_unfit(PGconn *c)
{
    prep_cache *pc = c != NULL ? prep_for(c) : NULL;
    if (pc != NULL)
        pc->unfit = true;
}

/* SQLSTATE and the names of the objects involved only: PostgreSQL's
 * messages can quote values (personal data) */
static void log_failure(PGconn *c, const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *table = PQresultErrorField(r, PG_DIAG_TABLE_NAME);
    const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    note(c, r);
    const prep_cache *pc = prep_of(c);
    const char *schema = pc != NULL && pc->schema[0] ? pc->schema : "-";
    kh_warn("db", "statement failed: sqlstate=%s schema=%s table=%s constraint=%s%s",
            state ? state : "?", schema, table ? table : "-", cons ? cons : "-",
            PQstatus(c) == CONNECTION_OK ? "" : " (connection lost)");
}

/* ---- deferred statements ----
 * On this kind of machine a round trip to PostgreSQL (two context switches
 * and their system calls) costs it more than most statements themselves. So
 * statements whose only outcome is success or failure are sent without
 * waiting for their answers (libpq's pipeline mode): BEGIN and the tenant's
 * SETs (kh_db_begin, kh_db_tenant_begin), record inserts (kh_db_defer). The
 * next statement whose result is needed (kh_db_exec, kh_db_try), or the
 * COMMIT, joins them, and one round trip carries them all. The answers are
 * read in order by settle_own(), which every other call on the connection
 * runs first: the first failure is logged as kh_db_exec logs one, and that
 * call fails. A statement is prepared outside the pipeline (PQprepare is
 * synchronous), so the first use of a text on a connection settles what was
 * sent before it; after that it joins. */

/* Reads the answers of c's deferred statements and leaves pipeline mode.
 * KH_OK, or KH_E_DB if one failed (logged; as kh_db_exec's NULL, whatever
 * the SQLSTATE: these are the transaction's own statements, BEGIN, the
 * tenant's SETs and records, never a client's data). own: NULL, or the last
 * statement sent is the caller's own, whose result (whatever its status) is
 * put there instead of being checked. */
static kh_err settle_own(PGconn *c, PGresult **own)
{
    prep_cache *prep = prep_of(c);
    if (prep == NULL || prep->pending == 0)
        return KH_OK;
    int n = prep->pending, sink_at = prep->sink != NULL ? prep->sink_at : -1;
    char *sink = prep->sink;
    size_t sinklen = prep->sinklen;
    prep->pending = 0;
    prep->sink = NULL;
    kh_err e = KH_E_DB; /* until the sync is read */
    bool failed = false;
    if (PQpipelineSync(c) != 1) {
        kh_warn("db", "cannot send deferred statements: connection lost");
        prep->broken = true; /* still in pipeline mode: the worker drops the connection */
        return KH_E_DB;
    }
    for (int i = 0; i <= n && PQstatus(c) == CONNECTION_OK; i++) {
        PGresult *r = PQgetResult(c);
        ExecStatusType st = PQresultStatus(r);
        if (i == n) { /* the sync */
            if (st == PGRES_PIPELINE_SYNC && !failed)
                e = KH_OK;
            PQclear(r);
            break;
        }
        if (i == sink_at) {
            if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                (size_t)PQgetlength(r, 0, 0) < sinklen)
                memcpy(sink, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0) + 1);
            else if (st == PGRES_TUPLES_OK)
                st = PGRES_FATAL_ERROR; /* not the one value it should be */
        }
        if (own != NULL && i == n - 1) {
            *own = r;
        } else {
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && !failed) {
                /* a statement after a failed one is skipped (PGRES_PIPELINE_ABORTED) */
                log_failure(c, r);
                failed = true;
            }
            PQclear(r);
        }
        while ((r = PQgetResult(c)) != NULL) /* NULL ends each statement's answer */
            PQclear(r);
    }
    if (PQexitPipelineMode(c) != 1) {
        kh_warn("db", "cannot leave pipeline mode: connection lost");
        prep->broken = true; /* answers left unread: any count from here would be wrong */
        return KH_E_DB;
    }
    return e;
}

static kh_err settle(PGconn *c)
{
    return settle_own(c, NULL);
}

/* Sends sql as the next statement of c's pipeline (entering it if need be):
 * prepared if name is not NULL (and then already prepared on c). */
static kh_err send_next(PGconn *c, const char *name, const char *sql, int nparams,
                        const char *const *params)
{
    prep_cache *prep = prep_of(c);
    if (prep == NULL || prep->broken)
        return KH_E_DB;
    if (prep->pending == 0 && PQenterPipelineMode(c) != 1)
        return KH_E_DB;
    int ok = name != NULL ? PQsendQueryPrepared(c, name, nparams, params, NULL, NULL, 0)
                          : PQsendQueryParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    if (ok != 1) {
        kh_warn("db", "cannot send a statement: connection lost");
        return KH_E_DB;
    }
    prep->pending++;
    return KH_OK;
}

static PGresult *try_run(PGconn *c, const char *sql, int nparams, const char *const *params);

PGresult *kh_db_try(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = try_run(c, sql, nparams, params);
    note(c, r);
    return r;
}

static PGresult *try_run(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    char name[40];
    PGresult *failed = NULL;
    prep_cache *pc = c != NULL ? prep_for(c) : NULL;
    if (pc != NULL && pc->broken)
        return NULL;
    if (pc != NULL && pc->pending > 0 && preparable(sql) && prep_known(pc, sql)) {
        /* joins the deferred statements: one round trip for all */
        if (kh_db_defer(c, sql, nparams, params) != KH_OK) {
            (void)settle(c);
            return NULL;
        }
        PGresult *own = NULL;
        if (settle_own(c, &own) != KH_OK) {
            PQclear(own);
            return NULL; /* the transaction is aborted: this statement did not run */
        }
        return own;
    }
    if (settle(c) != KH_OK)
        return NULL; /* the transaction is aborted: this statement would fail too */
    int p = c != NULL && PQtransactionStatus(c) != PQTRANS_INERROR
                ? prepared_name(c, sql, nparams, name, &failed)
                : 0;
    if (p > 0)
        return PQexecPrepared(c, name, nparams, params, NULL, NULL, 0);
    if (p < 0)
        return failed;
    return PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
}

PGresult *kh_db_exec(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = kh_db_try(c, sql, nparams, params);
    if (r == NULL)
        return NULL; /* settle() has logged why */
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    log_failure(c, r);
    PQclear(r);
    return NULL;
}

PGresult *kh_db_exec_bin(PGconn *c, const char *sql, int nparams, const char *const *params,
                         const int *lengths, const int *formats, int binary_result)
{
    if (c == NULL || settle(c) != KH_OK)
        return NULL; /* the transaction is aborted: this statement would fail too */
    PGresult *r =
        PQexecParams(c, sql, nparams, NULL, params, lengths, formats, binary_result ? 1 : 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    if (r != NULL)
        log_failure(c, r);
    PQclear(r);
    return NULL;
}

kh_err kh_db_defer(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    char name[40];
    PGresult *failed = NULL;
    if (c == NULL)
        return KH_E_DB;
    prep_cache *pc = prep_for(c);
    if (pc != NULL && pc->broken)
        return KH_E_DB;
    /* preparing is synchronous: a statement new to c first settles those
     * already sent (the first time only) */
    if (pc != NULL && pc->pending > 0 && !prep_known(pc, sql)) {
        kh_err e = settle(c);
        if (e != KH_OK)
            return e;
    }
    int p = pc != NULL && (pc->pending > 0 || PQtransactionStatus(c) != PQTRANS_INERROR)
                ? prepared_name(c, sql, nparams, name, &failed)
                : 0;
    if (p < 0) {
        log_failure(c, failed);
        PQclear(failed);
        return KH_E_DB;
    }
    if (p == 0) { /* not preparable, or the cache is full: at once */
        PGresult *r = kh_db_exec(c, sql, nparams, params);
        kh_err e = r != NULL ? KH_OK : KH_E_DB;
        PQclear(r);
        return e;
    }
    return send_next(c, name, sql, nparams, params);
}

static kh_err simple(PGconn *c, const char *sql)
{
    PGresult *r = kh_db_exec(c, sql, 0, NULL);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

/* The schema the next statements of c run under (for the prepared statements' key). */
static void prep_schema(PGconn *c, const char *schema)
{
    prep_cache *pc = prep_for(c);
    if (pc != NULL)
        snprintf(pc->schema, sizeof pc->schema, "%s", schema);
}

/* What a transaction's start finds: nothing deferred (a work function that
 * deferred statements and neither committed nor rolled back left them). */
static void discard(PGconn *c)
{
    const prep_cache *pc = prep_of(c);
    if (pc != NULL && pc->pending > 0) {
        kh_warn("db", "statements left without a commit or a rollback; rolled back");
        kh_db_rollback(c);
    }
}

/* BEGIN and the SETs after it are sent with the transaction's first
 * statement (deferred): they cost no round trip of their own. A failure (the
 * tenant's role missing, say) fails that first statement. */
static kh_err begin_deferred(PGconn *c, const char *schema, const char *const *sql, size_t n)
{
    if (c == NULL)
        return KH_E_DB;
    discard(c);
    prep_schema(c, schema);
    if (prep_of(c) == NULL) { /* no memory for the cache: at once */
        for (size_t i = 0; i < n; i++)
            if (simple(c, sql[i]) != KH_OK) {
                kh_db_rollback(c);
                return KH_E_DB;
            }
        return KH_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (send_next(c, NULL, sql[i], 0, NULL) != KH_OK) {
            (void)settle(c);
            return KH_E_DB;
        }
    return KH_OK;
}

kh_err kh_db_begin(PGconn *c)
{
    static const char *const begin[] = {"BEGIN"};
    return begin_deferred(c, "", begin, 1);
}

/* The tenant's lower-case code into lower (size 16), from a validated org. */
static kh_err tenant_lower(const char *org, char lower[16])
{
    size_t n = strlen(org);
    if (n == 0 || n >= 16)
        return KH_E_INTERNAL;
    for (size_t i = 0; i <= n; i++) {
        unsigned char ch = (unsigned char)org[i];
        if (ch != '\0' && !isalnum(ch))
            return KH_E_INTERNAL;
        lower[i] = (char)tolower(ch);
    }
    return KH_OK;
}

kh_err kh_db_tenant_begin(PGconn **cp, const char *org)
{
    char lower[16], role[48], path[64], schema[24];
    PGconn *c = *cp = tenant_conn(*cp, org);
    if (c == NULL)
        return KH_E_DB;
    if (tenant_lower(org, lower) != KH_OK)
        return KH_E_INTERNAL;
    snprintf(role, sizeof role, "SET LOCAL ROLE kh_t_%s", lower);
    snprintf(path, sizeof path, "SET LOCAL search_path = t_%s, kh", lower);
    snprintf(schema, sizeof schema, "t_%s", lower);
    const char *const sql[] = {"BEGIN", role, path};
    return begin_deferred(c, schema, sql, 3);
}

kh_err kh_db_tenant_begin_day(PGconn **cp, const char *org, char day[9])
{
    kh_err e = kh_db_tenant_begin(cp, org);
    if (e != KH_OK)
        return e;
    PGconn *c = *cp;
    prep_cache *prep = prep_of(c);
    day[0] = '\0';
    if (prep == NULL || prep->pending == 0) { /* sent at once */
        PGresult *r = kh_db_exec(c, "SELECT to_char(current_date, 'YYYYMMDD')", 0, NULL);
        if (r == NULL)
            return KH_E_DB;
        snprintf(day, 9, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        return KH_OK;
    }
    /* the transaction's date comes with its first statement */
    prep->sink_at = prep->pending;
    prep->sink = day;
    prep->sinklen = 9;
    return send_next(c, NULL, "SELECT to_char(current_date, 'YYYYMMDD')", 0, NULL);
}

kh_err kh_db_commit(PGconn *c)
{
    const prep_cache *pc = prep_of(c);
    if (pc == NULL || pc->pending == 0) {
        /* COMMIT of an aborted transaction succeeds, tagged ROLLBACK */
        PGresult *r = kh_db_exec(c, "COMMIT", 0, NULL);
        bool ok = r != NULL && strcmp(PQcmdStatus(r), "COMMIT") == 0;
        if (r != NULL && !ok)
            kh_warn("db", "COMMIT of a failed transaction: rolled back");
        PQclear(r);
        return ok ? KH_OK : KH_E_DB;
    }
    /* the COMMIT joins the deferred statements: one round trip for all */
    if (send_next(c, NULL, "COMMIT", 0, NULL) != KH_OK) {
        (void)settle(c);
        return KH_E_DB;
    }
    kh_err e = settle(c);
    /* a failed statement made PostgreSQL skip the COMMIT: the transaction
     * is still open, aborted */
    if (e != KH_OK && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    return e;
}

void kh_db_rollback(PGconn *c)
{
    if (c == NULL)
        return;
    prep_cache *pc = prep_of(c);
    if (pc != NULL && pc->broken)
        return; /* the worker drops the connection after the job */
    if (pc != NULL && pc->pending > 0) {
        /* with the deferred statements, whose failures (and values: the
         * date's buffer may be gone with its caller) no longer matter */
        pc->sink = NULL;
        (void)send_next(c, NULL, "ROLLBACK", 0, NULL);
        (void)settle(c);
        /* skipped if a statement before it failed: the transaction is
         * still open, aborted */
        if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) == PQTRANS_IDLE)
            return;
    }
    PQclear(PQexec(c, "ROLLBACK"));
}

PGresult *kh_db_copy_in(PGconn *c, const char *sql)
{
    const prep_cache *pc = prep_of(c);
    if ((pc != NULL && pc->broken) || settle(c) != KH_OK)
        return NULL;
    PGresult *r = PQexec(c, sql);
    note(c, r);
    return r;
}

/* After each job: a job must leave nothing open behind it. false: the
 * connection cannot be trusted any more (a pipeline left unread: only a
 * lost connection does that). */
static bool job_end(PGconn *c)
{
    const prep_cache *pc = prep_of(c);
    if (PQstatus(c) != CONNECTION_OK) {
        kh_warn("db", "connection lost during a job; connecting again at the next");
        return false;
    }
    if (pc != NULL && pc->broken) {
        kh_warn("db", "connection lost in the middle of a pipeline; reconnecting");
        return false;
    }
    /* after a failover a connection may still reach the old primary, now a
     * standby: a new one finds the primary (kh_db_connect) */
    if (pc != NULL && pc->read_only) {
        kh_warn("db", "a write was refused as read-only (a standby?); reconnecting");
        return false;
    }
    if (pc != NULL && pc->unfit) {
        kh_warn("db", "the server is read-only (a standby?); reconnecting");
        return false;
    }
    if (pc != NULL && pc->pending > 0) {
        kh_warn("db", "job left statements without a commit or a rollback; rolling back");
        kh_db_rollback(c);
    }
    if (PQpipelineStatus(c) != PQ_PIPELINE_OFF) {
        kh_warn("db", "job left a pipeline unread; reconnecting");
        return false;
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        kh_warn("db", "job left a transaction open; rolling back");
        PQclear(PQexec(c, "ROLLBACK"));
    }
    return true;
}

kh_err kh_db_err(const PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    static const char *const unavailable[] = {"08", "40", "53", "55", "57", "58"};
    if (state == NULL || strlen(state) != 5 || strcmp(state, KH_SQLSTATE_READ_ONLY) == 0)
        return KH_E_DB;
    for (size_t i = 0; i < sizeof unavailable / sizeof unavailable[0]; i++)
        if (strncmp(state, unavailable[i], 2) == 0)
            return KH_E_DB;
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)
        return KH_E_FIELD;
    return KH_E_INTERNAL;
}
