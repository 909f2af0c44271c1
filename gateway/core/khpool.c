/* khpool.c: database worker threads and their hand-back to the event loop. */
#include "khpool.h"

#include "khlog.h"

#include <ctype.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct job {
    kh_pool_work_fn work;
    kh_pool_done_fn done;
    void *arg;
    struct job *next;
} job;

struct kh_pool {
    struct event_base *base;
    struct event *done_ev;
    char *conninfo;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *todo_head, *todo_tail;
    job *done_head, *done_tail;
    int queued, queue_max;
    int nice; /* of the workers, above the event loop's */
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

static PGconn *connect_db(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        /* libpq's message names the server, not personal data */
        kh_warn("db", "cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void *worker_main(void *arg)
{
    kh_pool *p = arg;
    PGconn *conn = NULL;
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
        while (p->todo_head == NULL && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        job *j = p->todo_head;
        if (j == NULL) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        p->todo_head = j->next;
        if (p->todo_head == NULL)
            p->todo_tail = NULL;
        pthread_mutex_unlock(&p->mu);

        if (conn != NULL && PQstatus(conn) != CONNECTION_OK) {
            kh_db_forget();
            PQfinish(conn);
            conn = NULL;
        }
        if (conn == NULL)
            conn = connect_db(p->conninfo);
        j->work(conn, j->arg);
        /* a job must leave no transaction open behind it */
        if (conn != NULL && PQtransactionStatus(conn) != PQTRANS_IDLE) {
            kh_warn("db", "job left a transaction open; rolling back");
            PQclear(PQexec(conn, "ROLLBACK"));
        }

        pthread_mutex_lock(&p->mu);
        push(&p->done_head, &p->done_tail, j);
        pthread_mutex_unlock(&p->mu);
        event_active(p->done_ev, EV_READ, 0);
    }
    kh_db_forget();
    PQfinish(conn);
    return NULL;
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
    /* a bounded wait for the database, so a dead server cannot stall the
     * workers (or shutdown) indefinitely */
    if (strstr(conninfo, "connect_timeout") == NULL) {
        size_t n = strlen(conninfo) + sizeof " connect_timeout=5";
        p->conninfo = malloc(n);
        if (p->conninfo)
            snprintf(p->conninfo, n, "%s connect_timeout=5", conninfo);
    } else {
        p->conninfo = strdup(conninfo);
    }
    p->done_ev = event_new(base, -1, 0, on_done, p);
    p->threads = calloc((size_t)workers, sizeof *p->threads);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (p->conninfo == NULL || p->done_ev == NULL || p->threads == NULL)
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
    p->queued++;
    push(&p->todo_head, &p->todo_tail, j);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
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
    free(p->conninfo);
    free(p);
}

/* ---- prepared statements ----
 * Every statement a work function runs through kh_db_try/kh_db_exec is
 * prepared once per connection and tenant schema and then only bound and
 * executed: PostgreSQL no longer parses, analyses and plans the same text on
 * every query. The schema is part of the key because a prepared statement
 * keeps the search_path it was analysed under; running it under another
 * tenant's would make PostgreSQL analyse it again each time the tenant
 * changes. The cache belongs to the thread (a pool worker has one connection
 * at a time) and is dropped when the thread's connection changes (another
 * PGconn, or the same address with another server process). It holds at most
 * PREP_MAX statements; past that, statements run unprepared as before. */
#define PREP_MAX 256

typedef struct {
    uint64_t hash;
    char *sql;
    char schema[24];
} prep_entry;

typedef struct {
    PGconn *conn;
    int backend_pid;
    char schema[24]; /* of the open transaction; "" outside a tenant's */
    size_t n;
    prep_entry e[PREP_MAX];
} prep_cache;

static __thread prep_cache *prep;

static void prep_clear(prep_cache *pc)
{
    for (size_t i = 0; i < pc->n; i++)
        free(pc->e[i].sql);
    pc->n = 0;
}

/* The calling thread's cache for c, emptied if c is not the connection it was made for. */
static prep_cache *prep_for(PGconn *c)
{
    if (prep == NULL) {
        prep = calloc(1, sizeof *prep);
        if (prep == NULL)
            return NULL;
    }
    int pid = PQbackendPID(c);
    if (prep->conn != c || prep->backend_pid != pid) {
        prep_clear(prep);
        prep->conn = c;
        prep->backend_pid = pid;
        prep->schema[0] = '\0';
    }
    return prep;
}

void kh_db_forget(void)
{
    if (prep != NULL) {
        prep_clear(prep);
        free(prep);
        prep = NULL;
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
    uint64_t h = fnv1a(pc->schema, fnv1a(sql, 14695981039346656037u));
    size_t i;
    for (i = 0; i < pc->n; i++)
        if (pc->e[i].hash == h && strcmp(pc->e[i].schema, pc->schema) == 0 &&
            strcmp(pc->e[i].sql, sql) == 0)
            break;
    snprintf(name, 40, "kh_%016llx", (unsigned long long)h);
    if (i < pc->n)
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

PGresult *kh_db_try(PGconn *c, const char *sql, int nparams, const char *const *params)
{
    char name[40];
    PGresult *failed = NULL;
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
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    /* SQLSTATE and the names of the objects involved only: PostgreSQL's
     * messages can quote values (personal data) */
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *table = PQresultErrorField(r, PG_DIAG_TABLE_NAME);
    const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    kh_warn("db", "statement failed: sqlstate=%s table=%s constraint=%s%s", state ? state : "?",
            table ? table : "-", cons ? cons : "-",
            PQstatus(c) == CONNECTION_OK ? "" : " (connection lost)");
    PQclear(r);
    return NULL;
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

kh_err kh_db_begin(PGconn *c)
{
    if (c == NULL)
        return KH_E_DB;
    prep_schema(c, "");
    return simple(c, "BEGIN");
}

kh_err kh_db_tenant_begin(PGconn *c, const char *org)
{
    char lower[16], sql[160];
    size_t n = strlen(org);
    if (c == NULL)
        return KH_E_DB;
    if (n == 0 || n >= sizeof lower)
        return KH_E_INTERNAL;
    for (size_t i = 0; i <= n; i++) {
        unsigned char ch = (unsigned char)org[i];
        if (ch != '\0' && !isalnum(ch))
            return KH_E_INTERNAL;
        lower[i] = (char)tolower(ch);
    }
    /* one round trip: the transaction, the role and the schema */
    snprintf(sql, sizeof sql, "BEGIN; SET LOCAL ROLE kh_t_%s; SET LOCAL search_path = t_%s, kh",
             lower, lower);
    char schema[24];
    snprintf(schema, sizeof schema, "t_%s", lower);
    prep_schema(c, schema);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        kh_warn("db", "cannot switch to the role of tenant %s: sqlstate=%s", org,
                state ? state : "?");
        PQclear(r);
        kh_db_rollback(c);
        return KH_E_DB;
    }
    PQclear(r);
    return KH_OK;
}

kh_err kh_db_commit(PGconn *c)
{
    return simple(c, "COMMIT");
}

void kh_db_rollback(PGconn *c)
{
    if (c != NULL)
        PQclear(PQexec(c, "ROLLBACK"));
}

kh_err kh_db_err(const PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    static const char *const unavailable[] = {"08", "40", "53", "55", "57", "58"};
    if (state == NULL || strlen(state) != 5)
        return KH_E_DB;
    for (size_t i = 0; i < sizeof unavailable / sizeof unavailable[0]; i++)
        if (strncmp(state, unavailable[i], 2) == 0)
            return KH_E_DB;
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)
        return KH_E_FIELD;
    return KH_E_INTERNAL;
}
