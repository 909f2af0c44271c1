/* gw_health.c: the health listener (gw_health.h).
 *
 * GET /health: the process runs its event loop: 200 {"status": "alive"}.
 * GET /ready: this node can serve: its database answers and takes writes
 * (not a standby: after a failover the node must be on the new primary) and
 * the router's directory is loaded and verified; 200 {"ready": true, ...},
 * else 503 with KH-5007 and the part that is not ready. A probe never waits
 * for the database: a worker checks it every second (one check at a time,
 * a job in the platform's lane) and /ready reports the last result, or
 * "not answering" once none has completed for GW_HEALTH_STALE_S seconds (the
 * database hangs, or every worker is busy: either way, new work would wait).
 * The answers name states only: no host names, no connection strings. */
#include "gw_health.h"
#include "gw_maint.h"
#include "gw_state.h"

#include "khhttp.h"
#include "khjson.h"
#include "khlog.h"
#include "khpool.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { DB_UNKNOWN, DB_WRITABLE, DB_READ_ONLY, DB_UNREACHABLE, DB_FAILED } db_state;
static const char *const db_names[] = {"not checked yet", "writable", "read-only", "unreachable",
                                       "check failed"};

static struct {
    struct evhttp *http;
    struct event *tick;
    int64_t started_ms;
    bool checking;      /* a check is queued or running */
    db_state db;        /* of the last completed check */
    int64_t checked_ms; /* when it completed; 0: never */
    db_state result;    /* written by the worker, read in check_done */
} H;

/* ---- the database check (worker) ---- */

static void check_work(PGconn *c, void *arg)
{
    db_state *out = arg;
    if (c == NULL) {
        *out = DB_UNREACHABLE;
        return;
    }
    PGresult *r = kh_db_exec(
        c, "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')", 0, NULL);
    if (r == NULL || PQntuples(r) != 1)
        *out = PQstatus(c) == CONNECTION_OK ? DB_FAILED : DB_UNREACHABLE;
    else if (strcmp(PQgetvalue(r, 0, 0), "f") == 0 && strcmp(PQgetvalue(r, 0, 1), "off") == 0)
        *out = DB_WRITABLE;
    else {
        *out = DB_READ_ONLY; /* a standby, or default_transaction_read_only */
        kh_db_unfit(c);      /* the next check finds out whether that lasts */
    }
    PQclear(r);
    if (*out == DB_WRITABLE || *out == DB_READ_ONLY)
        gw_maint_read(c); /* maintenance mode, set by any node's admin API */
}

static void check_done(void *arg)
{
    db_state was = H.db;
    H.db = *(db_state *)arg;
    H.checked_ms = kh_mono_ms();
    H.checking = false;
    if (H.db != was)
        kh_info("health", "database %s", db_names[H.db]);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (G.pool == NULL || H.checking || G.stopping)
        return;
    H.result = DB_UNKNOWN;
    if (kh_pool_submit(G.pool, check_work, check_done, &H.result) == 0)
        H.checking = true; /* else the queue is full: the result goes stale */
}

/* ---- the endpoints (event loop) ---- */

static void health(struct evhttp_request *req, void *arg)
{
    (void)arg;
    char body[96];
    int n = snprintf(body, sizeof body, "{\"status\":\"alive\",\"uptime_s\":%lld}",
                     (long long)((kh_mono_ms() - H.started_ms) / 1000));
    kh_http_reply_json(req, 200, body, (size_t)n, NULL);
}

void gw_health_ready(struct evhttp_request *req, void *arg)
{
    (void)arg;
    int64_t now = kh_mono_ms();
    bool stale = H.checked_ms == 0 || now - H.checked_ms > GW_HEALTH_STALE_S * 1000;
    const char *db = H.checked_ms == 0 ? db_names[DB_UNKNOWN]
                     : stale           ? "not answering"
                                       : db_names[H.db];
    bool db_ok = !stale && H.db == DB_WRITABLE, dir_ok = G.dir != NULL;
    char msg[160] = "";
    bool maint = G.maintenance;
    if (G.draining)
        snprintf(msg, sizeof msg, "not ready: draining before a stop");
    else if (maint)
        snprintf(msg, sizeof msg, "not ready: the gateway is in maintenance");
    else if (!db_ok)
        snprintf(msg, sizeof msg, "not ready: database %s", db);
    else if (!dir_ok)
        snprintf(msg, sizeof msg, "not ready: the router's directory is not loaded");
    khj_writer w;
    size_t len;
    khjw_init(&w, 1024);
    khjw_obj(&w);
    khjw_kbool(&w, "ready", db_ok && dir_ok && !G.draining && !maint);
    if (msg[0]) {
        khjw_kstr(&w, "code", kh_err_code(KH_E_NOT_READY));
        khjw_kstr(&w, "message", msg);
    }
    khjw_kstr(&w, "database", db);
    if (H.checked_ms != 0)
        khjw_kint(&w, "database_checked_ms_ago", now - H.checked_ms);
    khjw_kstr(&w, "directory", dir_ok ? "loaded" : "not loaded");
    if (dir_ok) {
        khjw_kstr(&w, "legal_basis_version", G.dir->pb->legal_basis_version);
        khjw_kint(&w, "directory_issued_at", G.dir->pb->issued_at);
    }
    int64_t hosted = 0; /* not the retired ones */
    for (size_t i = 0, n = gw_tenant_count(); i < n; i++)
        hosted += gw_tenant_at(i) != NULL;
    khjw_kint(&w, "tenants", hosted);
    khjw_obj_end(&w);
    char *body = khjw_finish(&w, &len);
    if (body == NULL)
        kh_http_reply_json_err(req, KH_E_INTERNAL, "out of memory");
    else
        kh_http_reply_json(req, msg[0] ? kh_err_get(KH_E_NOT_READY)->http_status : 200, body, len,
                           NULL);
    free(body);
}

int gw_health_start(char *err, size_t errlen)
{
    H.started_ms = kh_mono_ms();
    /* the checks run without a health listener too: the router probes
     * GET /v1/ready on the peer listener */
    struct timeval sec = {1, 0};
    H.tick = event_new(G.base, -1, EV_PERSIST, tick, NULL);
    if (H.tick == NULL || event_add(H.tick, &sec) != 0) {
        snprintf(err, errlen, "cannot start the health checks");
        return -1;
    }
    if (G.set.health_listen == NULL)
        return 0;
    H.http = kh_http_listen(G.base, NULL, G.set.health_listen, 0, err, errlen);
    if (H.http == NULL)
        return -1;
    kh_http_set_refuser(H.http, kh_http_reply_json_err);
    kh_http_route(H.http, "/health", health, NULL);
    kh_http_route(H.http, "/ready", gw_health_ready, NULL);
    kh_info("health", "health checks on %s (GET /health, GET /ready)", G.set.health_listen);
    return 0;
}

void gw_health_stop(void)
{
    if (H.tick != NULL)
        event_free(H.tick);
    if (H.http != NULL)
        evhttp_free(H.http);
    H.tick = NULL;
    H.http = NULL;
}
