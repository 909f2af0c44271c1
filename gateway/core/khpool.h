/* khpool.h: the bounded database worker pool. The event loop never talks to
 * PostgreSQL itself: it submits a job (work runs on a worker thread with that
 * worker's own connection; done runs back on the event loop). The queue is
 * bounded; a full queue is refused at once (KH_E_OVERLOADED) instead of
 * growing. */
#ifndef KH_POOL_H
#define KH_POOL_H

#include "kherr.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdint.h>

typedef struct kh_pool kh_pool;
typedef void (*kh_pool_work_fn)(PGconn *conn, void *arg); /* worker thread */
typedef void (*kh_pool_done_fn)(void *arg);               /* event loop */

/* conninfo: libpq connection string. Requires evthread_use_pthreads().
 * nice: how much lower than the calling (event-loop) thread the workers run
 * (0: the same): under load the loop, whose work is short and bounded, then
 * still accepts, refuses and answers at once. */
kh_pool *kh_pool_new(struct event_base *base, const char *conninfo, int workers, int queue_max,
                     int nice);
/* 0 if queued; -1 if the queue is full or the pool is stopping. conn passed to
 * work is NULL if the database cannot be reached (work must then fail with KH_E_DB).
 * A job is queued in the lane of its key (kh_pool_submit_for; kh_pool_submit:
 * the platform's lane): the workers take a job from each lane with work in
 * turn, so one tenant's queue does not delay another tenant's job by more
 * than one of its own. The jobs of one lane start in the order submitted. */
#define KH_POOL_KEY_MAX 48
KH_MUST_CHECK int kh_pool_submit(kh_pool *p, kh_pool_work_fn work, kh_pool_done_fn done, void *arg);
/* key: the organisation whose request the job serves (on the business API
 * the calling tenant; on the peer API the asking organisation, so that the
 * answers a tenant gives to a flood of queries wait in the asker's lane, not
 * in front of the tenant's own work), "admin:" and the operator on the admin
 * API, or another short name (up to
 * KH_POOL_KEY_MAX - 1 bytes are used); NULL or "": the platform's lane. */
KH_MUST_CHECK int kh_pool_submit_for(kh_pool *p, const char *key, kh_pool_work_fn work,
                                     kh_pool_done_fn done, void *arg);
/* Tenants spread over databases: org's schema lives in the database of
 * conninfo (the pool's own, its home, which keeps the platform's tables and
 * every tenant without a route, or another). A route, once made, never
 * changes: a tenant routed to its home cannot be routed elsewhere later. A
 * new database only before the first job is submitted; after it, a route to
 * a database the pool already has, for a tenant added while running. Any
 * thread. 0 (routed, or already routed there), or -1 (a database new after
 * the start, org routed to another one, not a code, more than
 * KH_POOL_ROUTES_MAX, no memory). A worker then keeps a connection
 * to each database it needed (made when first needed), and
 * kh_db_tenant_begin picks the one of the tenant's database. */
#define KH_POOL_ORG_MAX 16
#define KH_POOL_ROUTES_MAX 4096
KH_MUST_CHECK int kh_pool_route(kh_pool *p, const char *org, const char *conninfo);
/* The conninfo of org's database (NULL: the home's), for a thread of its
 * own (kh_db_connect). */
const char *kh_pool_conninfo(const kh_pool *p, const char *org);
/* The pool's depth now: jobs submitted and not yet done (queued: waiting,
 * running, and finished but their done callback not yet run), jobs no
 * worker has taken yet, jobs a worker is running, and workers. Any thread. */
typedef struct {
    int queued, waiting, running, workers, queue_max;
} kh_pool_depth;
kh_pool_depth kh_pool_depth_of(kh_pool *p);
/* Stops the workers after the queued jobs and frees the pool (NULL ok). */
void kh_pool_free(kh_pool *p);

/* A connection of its own for a thread outside the pool (the workers' way:
 * connect_timeout 5 s unless conninfo sets one; NULL, logged, on failure).
 * A thread that used kh_db_* on it calls kh_db_forget before it ends. */
PGconn *kh_db_connect(const char *conninfo);

/* Helpers for work functions. */
/* BEGIN, then SET LOCAL ROLE to the tenant's role and the search_path to the
 * tenant's schema, so every statement after it runs with only that tenant's
 * rights. org is a validated organisation code. Both begins are deferred (see
 * kh_db_defer): they travel with the transaction's first statement, which
 * fails if they did. In a pool's worker *c becomes the worker's connection to
 * the tenant's database (kh_pool_route), whatever it was: the transaction's
 * statements and its commit go there (may be NULL, KH_E_DB, if that database
 * cannot be reached); elsewhere *c is used as it is. */
KH_MUST_CHECK kh_err kh_db_tenant_begin(PGconn **c, const char *org);
/* The same, and the transaction's date (the database's time zone) as
 * YYYYMMDD: "today" as current_date sees it in every statement of this
 * transaction. Deferred too: day is filled when the next kh_db_exec, kh_db_try
 * or kh_db_commit succeeds (read it only after one has). */
KH_MUST_CHECK kh_err kh_db_tenant_begin_day(PGconn **c, const char *org, char day[9]);
KH_MUST_CHECK kh_err kh_db_begin(PGconn *c);
KH_MUST_CHECK kh_err kh_db_commit(PGconn *c);
void kh_db_rollback(PGconn *c);
/* Runs a parameterised statement and returns its result if it succeeded
 * (PGRES_COMMAND_OK or PGRES_TUPLES_OK), else logs the failure (without
 * parameters) and returns NULL. */
PGresult *kh_db_exec(PGconn *c, const char *sql, int nparams, const char *const *params);
/* Both prepare each statement once per connection and tenant schema (a
 * cache of the calling thread) and then only bind and execute it. */
/* Like kh_db_exec but for statements whose failure is an expected answer:
 * returns the result whatever its status (caller checks and PQclear's). */
PGresult *kh_db_try(PGconn *c, const char *sql, int nparams, const char *const *params);
/* Like kh_db_exec, for statements with binary parameters (formats[i] 1:
 * params[i] is lengths[i] raw bytes, a bytea say) or a binary result
 * (binary_result 1: PQgetvalue gives a bytea's raw bytes, PQgetlength their
 * number). Not prepared: for large values, where the plan is not the cost. */
PGresult *kh_db_exec_bin(PGconn *c, const char *sql, int nparams, const char *const *params,
                         const int *lengths, const int *formats, int binary_result);
/* Sends a statement whose only outcome is success or failure (a record
 * insert, say) without waiting for its answer (libpq's pipeline mode): the
 * next kh_db_exec/kh_db_try joins the deferred statements and kh_db_commit
 * sends COMMIT with them, one round trip for all; that call fails if one of
 * them failed (logged as kh_db_exec logs; KH_E_DB). KH_OK means only "sent".
 * A work function must commit or roll back what it deferred (the pool rolls
 * back what a job left, and says so). */
KH_MUST_CHECK kh_err kh_db_defer(PGconn *c, const char *sql, int nparams,
                                 const char *const *params);
/* PQexec of a COPY ... FROM STDIN, after the deferred statements' answers
 * (NULL if one failed). */
PGresult *kh_db_copy_in(PGconn *c, const char *sql);

/* What a failed statement means for the one who asked, from its SQLSTATE
 * (one mapping for every layer): the database cannot be reached or is busy
 * (connection, resources, operator intervention, lock or serialization
 * failure, a write refused by a read-only server, no SQLSTATE at all)
 * KH_E_DB, 503, worth a retry; the request's
 * own data cannot be stored (a data exception, an integrity constraint)
 * KH_E_FIELD, 400, never worth a retry; anything else (a statement or
 * privilege the code got wrong) KH_E_INTERNAL, 500. A caller that knows the
 * constraint maps it to its own code first. r may be NULL (KH_E_DB). */
kh_err kh_db_err(const PGresult *r);
/* read_only_sql_transaction: a write on a standby (or with
 * default_transaction_read_only). KH_E_DB, and the worker's connection is
 * replaced after the job, so that it finds the primary again. */
#define KH_SQLSTATE_READ_ONLY "25006"
/* The calling job found c unfit to keep (it reached a read-only server, a
 * standby): the worker closes it after the job, and its next job connects
 * again (to the primary, with a multi-host conninfo). */
void kh_db_unfit(PGconn *c);

/* Drops the calling thread's caches of prepared statements (a thread of its
 * own calls it before it ends; a new connection is also noticed by itself). */
void kh_db_forget(void);

#endif
