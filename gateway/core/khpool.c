/* khpool.c: database worker threads and their hand-back to the event loop. */
#include "khpool.h"

#include "khlog.h"

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

kh_pool *kh_pool_new(struct event_base *base, const char *conninfo, int workers, int queue_max)
{
    kh_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base = base;
    p->queue_max = queue_max;
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

PGresult *kh_db_try(PGconn *c, const char *sql, int nparams, const char *const *params)
{
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

kh_err kh_db_begin(PGconn *c)
{
    return c == NULL ? KH_E_DB : simple(c, "BEGIN");
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
    kh_err e = simple(c, "BEGIN");
    if (e != KH_OK)
        return e;
    snprintf(sql, sizeof sql, "SET LOCAL ROLE kh_t_%s; SET LOCAL search_path = t_%s, kh", lower,
             lower);
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
