/* gw_bulk.c: bulk registration (refdb/FORMAT.md), over the business API and
 * from a watched drop folder.
 *
 * API: POST /v1/bulk/open, /v1/bulk/part (numbered parts appended to a spool
 * file; the SHA-256 is computed as they arrive), /v1/bulk/commit (checks the
 * SHA-256, then loads in the background), /v1/bulk/status (progress, result,
 * report). Drop folder: DIR/<tenant>/in/<ITEM>_<full|diff>_<YYYYMMDD>[_x].csv
 * is moved to work/, loaded, and ends in done/ or rejected/ with its report.
 *
 * Every file operation and every load runs on the worker pool; the event
 * loop only keeps the small upload table. A load holds one worker for its
 * duration and streams: the gateway's memory does not grow with the file. */
#include "gw.h"
#include "gw_util.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"
#include "refdb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_UPLOADS 32
#define MAX_UPLOADS_PER_TENANT 8 /* so no tenant can take every slot */
#define UPLOAD_IDLE_S 3600
#define REPORT_PAGE (512 * 1024)

typedef enum {
    UP_RECEIVING,
    UP_QUEUED,
    UP_LOADING,
    UP_APPLIED,
    UP_DUPLICATE,
    UP_REJECTED,
    UP_FAILED
} up_state;

static const char *const state_names[] = {"RECEIVING", "QUEUED",   "LOADING", "APPLIED",
                                          "DUPLICATE", "REJECTED", "FAILED"};

typedef struct gw_upload {
    char id[33];
    gw_tenant *t;
    char system[40];
    char item[17], mode[8], as_of[9], file_name[201];
    char spool[1024], report[1040];
    char sha256[65]; /* of all parts, known at commit */
    int fd;
    khc_sha256_ctx *md; /* SHA-256 of the parts so far */
    uint32_t next_seq;
    bool busy; /* a part write, commit or report read is in flight */
    /* below: written by the loading worker, read by the loop, under mu */
    up_state state;
    up_state final; /* set by the load's worker, published by load_done */
    refdb_file_stats st;
    refdb_bulk_result res;
    kh_err err;
    char msg[256];
    time_t touched;
    struct gw_upload *next;
} gw_upload;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static gw_upload *uploads;
static struct event *sweep_ev, *drop_ev;
static bool drop_running;
/* Loads hold a database worker for their whole duration: at most max_loads
 * run at once, so online calls always find a free worker; the others wait
 * in commit order (state QUEUED). Event loop only. */
static int max_loads = 1, loads_running;
static gw_upload *load_queue[MAX_UPLOADS];
static size_t queue_head, queue_len;
static int opening;               /* opens whose check is still on a worker */
static uint64_t max_upload_bytes; /* config max_upload_mb */

/* ------------------------------------------------------------ the loader */

/* Creates or truncates an output file without following a symbolic link at
 * its path (drop folders are written by other parties too). */
static FILE *open_out(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    if (f == NULL)
        close(fd);
    return f;
}

typedef struct {
    FILE *report;
    gw_upload *up;    /* NULL for the drop folder */
    const char *what; /* for progress logs */
    char progress_path[1100];
} run_ctx;

static void run_issue(const refdb_issue *is, void *arg)
{
    run_ctx *rc = arg;
    if (rc->report)
        refdb_report_row(rc->report, is);
}

static void run_progress(const refdb_file_stats *st, void *arg)
{
    run_ctx *rc = arg;
    if (rc->up) {
        pthread_mutex_lock(&mu);
        rc->up->st = *st;
        pthread_mutex_unlock(&mu);
    }
    if (rc->progress_path[0]) {
        FILE *f = open_out(rc->progress_path);
        if (f) {
            fprintf(f, "records=%zu bad_records=%zu issues=%zu bytes=%llu\n", st->records,
                    st->bad_records, st->issues, (unsigned long long)st->bytes);
            fclose(f);
        }
    }
    if (st->records % 100000 == 0 && st->records > 0)
        kh_info("bulk", "%s: %zu records read", rc->what, st->records);
}

/* Applies one file for a tenant, all or nothing, on a worker thread. */
static kh_err run_load(PGconn *c, gw_tenant *t, const char *system, const char *item,
                       const char *mode, const char *as_of, const char *file_name,
                       const char *sha256, int fd, run_ctx *rc, refdb_file_stats *st,
                       refdb_bulk_result *res, char *msg, size_t msglen)
{
    refdb_layout l;
    memset(&l, 0, sizeof l);
    memset(st, 0, sizeof *st);
    memset(res, 0, sizeof *res);
    kh_err e = kh_db_tenant_begin(c, t->id.code);
    if (e != KH_OK) {
        snprintf(msg, msglen, "database unavailable");
        return e;
    }
    const char *p[3] = {system, "register", item};
    PGresult *r = kh_db_exec(c,
                             "SELECT (SELECT count(*) FROM business_system WHERE system_id = $1), "
                             "(SELECT count(*) FROM system_permission WHERE system_id = $1 "
                             " AND operation = $2 AND scope IN ('*', $3))",
                             3, p);
    if (r == NULL) {
        e = KH_E_DB;
    } else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
        e = KH_E_CLIENT_UNKNOWN;
        snprintf(msg, msglen, "business system '%s' is not registered for this tenant", system);
    } else if (strcmp(PQgetvalue(r, 0, 1), "0") == 0) {
        e = KH_E_SYSTEM_PERMISSION;
        snprintf(msg, msglen, "business system '%s' may not register %s", system, item);
    }
    PQclear(r);
    if (e == KH_OK)
        e = refdb_layout_load(c, item, &l, msg, msglen);
    if (e == KH_OK) {
        if (rc->report)
            refdb_report_header(rc->report);
        e = refdb_bulk_load(c, fd, &l, system, mode, as_of, file_name, sha256, run_issue,
                            run_progress, rc, st, res, msg, msglen);
    }
    refdb_layout_free(&l);
    if (e == KH_OK && !res->duplicate) {
        e = kh_db_commit(c);
        if (e != KH_OK)
            snprintf(msg, msglen, "commit failed");
    } else {
        kh_db_rollback(c);
    }
    if (rc->report)
        fflush(rc->report);
    return e;
}

/* ------------------------------------------------------------ uploads */

static gw_upload *upload_find(const char *id, gw_tenant *t, const char *system)
{
    for (gw_upload *u = uploads; u; u = u->next)
        if (strcmp(u->id, id) == 0 && u->t == t && strcmp(u->system, system) == 0)
            return u;
    return NULL;
}

static void upload_unlink(gw_upload *u)
{
    for (gw_upload **pp = &uploads; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            return;
        }
}

static void upload_free(gw_upload *u)
{
    if (u->fd >= 0)
        close(u->fd);
    khc_sha256_free(u->md);
    free(u);
}

typedef struct {
    struct evhttp_request *req;
    gw_upload *up;
    kh_err err;
    char msg[256];
    uint8_t *data; /* part bytes, or report bytes */
    size_t len;
    uint64_t report_offset, report_size;
} bulk_call;

static void bc_close(struct evhttp_connection *conn, void *arg)
{
    ((bulk_call *)arg)->req = NULL;
}

static bulk_call *bc_new(struct evhttp_request *req, gw_upload *up)
{
    bulk_call *bc = calloc(1, sizeof *bc);
    if (bc == NULL)
        return NULL;
    bc->req = req;
    bc->up = up;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), bc_close, bc);
    return bc;
}

static struct evhttp_request *bc_take(bulk_call *bc)
{
    struct evhttp_request *req = bc->req;
    if (req)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    bc->req = NULL;
    return req;
}

static void bc_free(bulk_call *bc)
{
    khc_free_secret(bc->data, bc->len);
    free(bc);
}

static void reply_status(struct evhttp_request *req, gw_upload *u, const uint8_t *report,
                         size_t rlen, uint64_t report_size)
{
    Kh__Status ok = KH__STATUS__INIT;
    ok.code = "OK";
    ok.message = "";
    Kh__BulkStatus s = KH__BULK_STATUS__INIT;
    char sha[65] = "";
    pthread_mutex_lock(&mu);
    s.state = (char *)state_names[u->state];
    s.bytes = u->st.bytes;
    bool done = u->state == UP_APPLIED || u->state == UP_DUPLICATE;
    s.records = done ? u->res.records : u->st.records;
    s.bad_records = u->st.bad_records;
    s.issues = u->st.issues;
    s.persons = u->res.persons ? u->res.persons : u->st.persons;
    s.deleted_absent = u->res.deleted_absent;
    snprintf(sha, sizeof sha, "%s", u->res.sha256);
    s.file_id = u->res.file_id;
    s.code = (char *)(u->err != KH_OK ? kh_err_code(u->err) : "");
    s.message = u->msg;
    pthread_mutex_unlock(&mu);
    s.status = &ok;
    s.upload_id = u->id;
    s.sha256 = sha;
    s.report.data = (uint8_t *)report;
    s.report.len = rlen;
    s.report_size = report_size;
    kh_http_reply_pb(req, &s.base);
}

/* --- open --- */

typedef struct {
    struct evhttp_request *req;
    gw_upload *up;
    kh_err err;
    char msg[256];
} open_call;

static void open_close(struct evhttp_connection *conn, void *arg)
{
    ((open_call *)arg)->req = NULL;
}

static void open_work(PGconn *c, void *arg)
{
    open_call *oc = arg;
    gw_upload *u = oc->up;
    oc->err = kh_db_tenant_begin(c, u->t->id.code);
    if (oc->err != KH_OK) {
        snprintf(oc->msg, sizeof oc->msg, "database unavailable");
        return;
    }
    const char *p[3] = {u->system, "register", u->item};
    PGresult *r = kh_db_exec(c,
                             "SELECT (SELECT count(*) FROM kh.item WHERE item_code = $3), "
                             "(SELECT count(*) FROM system_permission WHERE system_id = $1 "
                             " AND operation = $2 AND scope IN ('*', $3))",
                             3, p);
    kh_db_rollback(c);
    if (r == NULL) {
        oc->err = KH_E_DB;
        snprintf(oc->msg, sizeof oc->msg, "database unavailable");
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
        oc->err = KH_E_UNKNOWN_ITEM;
        snprintf(oc->msg, sizeof oc->msg, "item_code: not in the item catalogue");
    } else if (strcmp(PQgetvalue(r, 0, 1), "0") == 0) {
        oc->err = KH_E_SYSTEM_PERMISSION;
        snprintf(oc->msg, sizeof oc->msg, "business system '%s' may not register %s", u->system,
                 u->item);
    }
    PQclear(r);
    if (oc->err != KH_OK)
        return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", kh_conf_str(G.conf, "spool_dir", ""), u->t->id.code);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        oc->err = KH_E_INTERNAL;
        snprintf(oc->msg, sizeof oc->msg, "spool folder unavailable");
        return;
    }
    u->fd = open(u->spool, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        oc->err = KH_E_INTERNAL;
        snprintf(oc->msg, sizeof oc->msg, "cannot create the spool file");
    }
}

static void open_done(void *arg)
{
    open_call *oc = arg;
    opening--;
    struct evhttp_request *req = oc->req;
    if (req)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    gw_upload *u = oc->up;
    if (oc->err != KH_OK || req == NULL) {
        if (req)
            kh_http_reply_err(req, oc->err, "%s", oc->msg);
        if (u->fd >= 0)
            unlink(u->spool); /* the client is gone or refused: nothing to keep */
        upload_free(u);
        free(oc);
        return;
    }
    u->touched = time(NULL);
    u->next = uploads;
    uploads = u;
    kh_info("bulk", "tenant %s system %s: upload %s opened for %s (%s)", u->t->id.code, u->system,
            u->id, u->item, u->mode);
    Kh__Status ok = KH__STATUS__INIT;
    ok.code = "OK";
    ok.message = "";
    Kh__BulkOpenResponse resp = KH__BULK_OPEN_RESPONSE__INIT;
    resp.status = &ok;
    resp.upload_id = u->id;
    resp.max_part = (uint32_t)(G.max_body - 4096);
    kh_http_reply_pb(req, &resp.base);
    free(oc);
}

static bool file_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '/' || ch == '\\')
            return false;
        if (ch >= 0x80) { /* a well-formed UTF-8 sequence */
            int more = ch >= 0xf0 && ch < 0xf5   ? 3
                       : ch >= 0xe0              ? 2
                       : ch >= 0xc2 && ch < 0xe0 ? 1
                                                 : -1;
            if (more < 0)
                return false;
            for (int k = 1; k <= more; k++)
                if (i + (size_t)k >= n || ((unsigned char)s[i + (size_t)k] & 0xc0) != 0x80)
                    return false;
            i += (size_t)more;
        }
    }
    return true;
}

void gw_bulk_on_open(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkOpenRequest *m = gw_read_pb(req, &kh__bulk_open_request__descriptor);
    if (m == NULL)
        return;
    const char *bad = !kh_id_code(m->item_code, KH_CODE_MAX) ? "item_code: expected an item code"
                      : strcmp(m->mode, "full") != 0 && strcmp(m->mode, "diff") != 0
                          ? "mode: expected full or diff"
                      : !kh_id_date(m->as_of)       ? "as_of: expected YYYYMMDD"
                      : !file_name_ok(m->file_name) ? "file_name: 1 to 200 characters, no "
                                                      "control characters or slashes"
                      : kh_conf_str(G.conf, "spool_dir", NULL) == NULL
                          ? "bulk registration is not configured on this gateway (spool_dir)"
                          : NULL;
    int active = 0, mine = 0;
    for (gw_upload *u = uploads; u; u = u->next) {
        active++;
        mine += u->t == t;
    }
    if (bad != NULL || active + opening >= MAX_UPLOADS || mine >= MAX_UPLOADS_PER_TENANT) {
        kh_http_reply_err(req, bad ? KH_E_FIELD : KH_E_OVERLOADED, "%s",
                          bad ? bad : "too many uploads in progress; retry later");
        kh__bulk_open_request__free_unpacked(m, NULL);
        return;
    }
    gw_upload *u = calloc(1, sizeof *u);
    open_call *oc = calloc(1, sizeof *oc);
    uint8_t rnd[16];
    if (u == NULL || oc == NULL || khc_random(rnd, sizeof rnd) != 0 ||
        (u->md = khc_sha256_new()) == NULL) {
        if (u)
            khc_sha256_free(u->md);
        free(u);
        free(oc);
        kh__bulk_open_request__free_unpacked(m, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    khc_hex(rnd, sizeof rnd, u->id);
    u->t = t;
    u->fd = -1;
    u->next_seq = 1;
    u->state = UP_RECEIVING;
    snprintf(u->system, sizeof u->system, "%s", system);
    snprintf(u->item, sizeof u->item, "%s", m->item_code);
    snprintf(u->mode, sizeof u->mode, "%s", m->mode);
    snprintf(u->as_of, sizeof u->as_of, "%s", m->as_of);
    snprintf(u->file_name, sizeof u->file_name, "%s", m->file_name);
    snprintf(u->spool, sizeof u->spool, "%s/%s/%s.csv", kh_conf_str(G.conf, "spool_dir", ""),
             t->id.code, u->id);
    snprintf(u->report, sizeof u->report, "%s/%s/%s.report", kh_conf_str(G.conf, "spool_dir", ""),
             t->id.code, u->id);
    kh__bulk_open_request__free_unpacked(m, NULL);
    oc->req = req;
    oc->up = u;
    opening++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), open_close, oc);
    if (kh_pool_submit(G.pool, open_work, open_done, oc) != 0) {
        opening--;
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
        kh_http_reply_err(req, KH_E_OVERLOADED, "database queue full");
        upload_free(u);
        free(oc);
    }
}

/* --- part --- */

static void part_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    gw_upload *u = bc->up;
    size_t off = 0;
    while (off < bc->len) {
        ssize_t w = write(u->fd, bc->data + off, bc->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            bc->err = KH_E_INTERNAL;
            snprintf(bc->msg, sizeof bc->msg, "cannot write the spool file");
            return;
        }
        off += (size_t)w;
    }
    if (khc_sha256_update(u->md, bc->data, bc->len) != 0)
        bc->err = KH_E_INTERNAL;
}

static void part_done(void *arg)
{
    bulk_call *bc = arg;
    gw_upload *u = bc->up;
    u->busy = false;
    u->touched = time(NULL);
    struct evhttp_request *req = bc_take(bc);
    if (bc->err != KH_OK) {
        /* the spool may now hold part of the part: the upload cannot be trusted */
        pthread_mutex_lock(&mu);
        u->state = UP_FAILED;
        u->err = bc->err;
        snprintf(u->msg, sizeof u->msg, "a part could not be stored; open a new upload");
        pthread_mutex_unlock(&mu);
    }
    if (bc->err == KH_OK) {
        u->next_seq++;
        pthread_mutex_lock(&mu);
        u->st.bytes += bc->len;
        pthread_mutex_unlock(&mu);
    }
    if (req) {
        if (bc->err != KH_OK) {
            kh_http_reply_err(req, bc->err, "%s", bc->msg);
        } else {
            Kh__Status ok = KH__STATUS__INIT;
            ok.code = "OK";
            ok.message = "";
            Kh__BulkPartResponse resp = KH__BULK_PART_RESPONSE__INIT;
            resp.status = &ok;
            resp.received = u->st.bytes;
            kh_http_reply_pb(req, &resp.base);
        }
    }
    bc_free(bc);
}

void gw_bulk_on_part(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkPartRequest *m = gw_read_pb(req, &kh__bulk_part_request__descriptor);
    if (m == NULL)
        return;
    gw_upload *u = upload_find(m->upload_id, t, system);
    kh_err e = KH_OK;
    const char *why = "";
    up_state state = UP_FAILED;
    if (u != NULL) {
        pthread_mutex_lock(&mu);
        state = u->state;
        pthread_mutex_unlock(&mu);
    }
    if (u == NULL || state != UP_RECEIVING) {
        e = KH_E_UPLOAD;
        why = "upload_id: no upload receiving parts under this id for this system";
    } else if (u->busy || m->seq != u->next_seq) {
        e = KH_E_PART_ORDER;
        why = "seq: not the next part expected";
    } else if (m->data.len == 0) {
        e = KH_E_FIELD;
        why = "data: a part carries at least one byte";
    } else if (u->st.bytes + m->data.len > max_upload_bytes) {
        e = KH_E_TOO_LARGE;
        why = "the file exceeds max_upload_mb of this gateway";
    }
    if (e != KH_OK) {
        if (e == KH_E_PART_ORDER)
            kh_http_reply_err(req, e, "%s (expected %u)", why, u->next_seq);
        else
            kh_http_reply_err(req, e, "%s", why);
        kh__bulk_part_request__free_unpacked(m, NULL);
        return;
    }
    bulk_call *bc = bc_new(req, u);
    uint8_t *copy = bc ? malloc(m->data.len) : NULL;
    if (copy == NULL) {
        if (bc)
            bc_take(bc);
        free(bc);
        kh__bulk_part_request__free_unpacked(m, NULL);
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    memcpy(copy, m->data.data, m->data.len);
    bc->data = copy;
    bc->len = m->data.len;
    khc_wipe(m->data.data, m->data.len);
    kh__bulk_part_request__free_unpacked(m, NULL);
    u->busy = true;
    if (kh_pool_submit(G.pool, part_work, part_done, bc) != 0) {
        u->busy = false;
        kh_http_reply_err(bc_take(bc), KH_E_OVERLOADED, "database queue full");
        bc_free(bc);
    }
}

/* --- commit --- */

static void load_work(PGconn *c, void *arg)
{
    gw_upload *u = arg;
    refdb_file_stats st;
    refdb_bulk_result res;
    char msg[256] = "";
    kh_err e;
    pthread_mutex_lock(&mu);
    u->state = UP_LOADING;
    pthread_mutex_unlock(&mu);
    int fd = open(u->spool, O_RDONLY | O_CLOEXEC);
    run_ctx rc = {0};
    rc.up = u;
    rc.what = u->id;
    rc.report = open_out(u->report);
    if (fd < 0 || rc.report == NULL) {
        e = KH_E_INTERNAL;
        snprintf(msg, sizeof msg, "cannot open the spool or report file");
        memset(&st, 0, sizeof st);
        memset(&res, 0, sizeof res);
    } else if (c == NULL) {
        e = KH_E_DB;
        snprintf(msg, sizeof msg, "database unavailable");
        memset(&st, 0, sizeof st);
        memset(&res, 0, sizeof res);
    } else {
        e = run_load(c, u->t, u->system, u->item, u->mode, u->as_of, u->file_name, u->sha256, fd,
                     &rc, &st, &res, msg, sizeof msg);
    }
    if (fd >= 0)
        close(fd);
    if (rc.report)
        fclose(rc.report);
    unlink(u->spool); /* the data is in the database now, or was refused */
    pthread_mutex_lock(&mu);
    u->st = st;
    u->res = res;
    u->err = e;
    snprintf(u->msg, sizeof u->msg, "%s", msg);
    /* published by load_done on the loop: until then the upload is busy,
     * and a final state without its report must not be seen */
    u->final = e == KH_OK                ? (res.duplicate ? UP_DUPLICATE : UP_APPLIED)
               : e == KH_E_FILE_REJECTED ? UP_REJECTED
                                         : UP_FAILED;
    pthread_mutex_unlock(&mu);
}

static void fail_load(gw_upload *u)
{
    u->busy = false;
    pthread_mutex_lock(&mu);
    u->state = UP_FAILED;
    u->err = KH_E_OVERLOADED;
    snprintf(u->msg, sizeof u->msg, "database queue full; open a new upload later");
    pthread_mutex_unlock(&mu);
}

static void load_done(void *arg);

/* Starts queued loads while fewer than max_loads run. */
static void start_loads(void)
{
    while (queue_len > 0 && loads_running < max_loads && !G.stopping) {
        gw_upload *u = load_queue[queue_head];
        queue_head = (queue_head + 1) % MAX_UPLOADS;
        queue_len--;
        if (kh_pool_submit(G.pool, load_work, load_done, u) != 0)
            fail_load(u);
        else
            loads_running++;
    }
}

static void load_done(void *arg)
{
    gw_upload *u = arg;
    loads_running--;
    start_loads();
    pthread_mutex_lock(&mu);
    u->state = u->final;
    pthread_mutex_unlock(&mu);
    u->busy = false;
    u->touched = time(NULL);
    kh_info("bulk", "tenant %s: upload %s of %s %s: %s, %zu records, %zu bad, file %lld",
            u->t->id.code, u->id, u->item, u->mode, state_names[u->state], u->st.records,
            u->st.bad_records, (long long)u->res.file_id);
}

void gw_bulk_on_commit(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkCommitRequest *m = gw_read_pb(req, &kh__bulk_commit_request__descriptor);
    if (m == NULL)
        return;
    gw_upload *u = upload_find(m->upload_id, t, system);
    up_state state = UP_FAILED;
    if (u != NULL) {
        pthread_mutex_lock(&mu);
        state = u->state;
        pthread_mutex_unlock(&mu);
    }
    if (u == NULL || state != UP_RECEIVING || u->busy) {
        kh_http_reply_err(req, u && u->busy ? KH_E_PART_ORDER : KH_E_UPLOAD, "%s",
                          u && u->busy ? "a part is still being written"
                                       : "upload_id: no upload receiving parts under this id");
        kh__bulk_commit_request__free_unpacked(m, NULL);
        return;
    }
    unsigned char md[32];
    char hex[65];
    bool ok = khc_sha256_peek(u->md, md) == 0;
    if (ok)
        khc_hex(md, 32, hex);
    if (!ok || strcmp(hex, m->sha256) != 0) {
        kh_http_reply_err(req, KH_E_CHECKSUM,
                          "sha256: the bytes received (%llu) have another SHA-256; resend the file",
                          (unsigned long long)u->st.bytes);
        kh__bulk_commit_request__free_unpacked(m, NULL);
        return;
    }
    kh__bulk_commit_request__free_unpacked(m, NULL);
    memcpy(u->sha256, hex, sizeof hex);
    close(u->fd);
    u->fd = -1;
    u->busy = true;
    pthread_mutex_lock(&mu);
    u->state = UP_QUEUED;
    u->st.bytes = 0;
    pthread_mutex_unlock(&mu);
    if (queue_len < MAX_UPLOADS) {
        load_queue[(queue_head + queue_len++) % MAX_UPLOADS] = u;
        start_loads();
    } else {
        fail_load(u);
    }
    reply_status(req, u, NULL, 0, 0);
}

/* --- status --- */

static void report_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    int fd = open(bc->up->report, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    bc->report_size = (uint64_t)sb.st_size;
    if (bc->report_offset < bc->report_size) {
        size_t want = bc->report_size - bc->report_offset;
        if (want > REPORT_PAGE)
            want = REPORT_PAGE;
        bc->data = malloc(want);
        if (bc->data != NULL) {
            ssize_t n = pread(fd, bc->data, want, (off_t)bc->report_offset);
            bc->len = n > 0 ? (size_t)n : 0;
        }
    }
    close(fd);
}

static void report_done(void *arg)
{
    bulk_call *bc = arg;
    bc->up->busy = false;
    struct evhttp_request *req = bc_take(bc);
    if (req)
        reply_status(req, bc->up, bc->data, bc->len, bc->report_size);
    bc_free(bc);
}

void gw_bulk_on_status(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkStatusRequest *m = gw_read_pb(req, &kh__bulk_status_request__descriptor);
    if (m == NULL)
        return;
    gw_upload *u = upload_find(m->upload_id, t, system);
    uint64_t offset = m->report_offset;
    kh__bulk_status_request__free_unpacked(m, NULL);
    if (u == NULL) {
        kh_http_reply_err(req, KH_E_UPLOAD, "upload_id: unknown to this gateway for this system");
        return;
    }
    pthread_mutex_lock(&mu);
    up_state s = u->state;
    pthread_mutex_unlock(&mu);
    u->touched = time(NULL);
    if (s != UP_REJECTED || u->busy) {
        reply_status(req, u, NULL, 0, 0);
        return;
    }
    bulk_call *bc = bc_new(req, u);
    if (bc == NULL) {
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    bc->report_offset = offset;
    u->busy = true;
    if (kh_pool_submit(G.pool, report_work, report_done, bc) != 0) {
        u->busy = false;
        reply_status(bc_take(bc), u, NULL, 0, 0);
        bc_free(bc);
    }
}

/* ------------------------------------------------------- idle uploads */

static void sweep_work(PGconn *c, void *arg)
{
    gw_upload *u = arg;
    unlink(u->spool);
    unlink(u->report);
}

static void sweep_done(void *arg)
{
    upload_free(arg);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    time_t now = time(NULL);
    for (gw_upload *u = uploads, *next; u; u = next) {
        next = u->next;
        if (u->busy || now - u->touched < UPLOAD_IDLE_S)
            continue;
        upload_unlink(u);
        kh_info("bulk", "upload %s expired (%s)", u->id, state_names[u->state]);
        if (kh_pool_submit(G.pool, sweep_work, sweep_done, u) != 0) {
            u->next = uploads; /* try again next sweep */
            uploads = u;
        }
    }
}

/* --------------------------------------------------------- drop folder */

/* <ITEM>_<full|diff>_<YYYYMMDD>[_anything].csv */
static bool parse_drop_name(const char *name, char *item, char *mode, char *as_of)
{
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 4, ".csv") != 0 || n > 200)
        return false;
    char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(n - 4), name);
    char *save = NULL, *a = strtok_r(buf, "_", &save), *b = strtok_r(NULL, "_", &save),
         *c = strtok_r(NULL, "_", &save);
    if (!a || !b || !c || !kh_id_code(a, KH_CODE_MAX) ||
        (strcmp(b, "full") != 0 && strcmp(b, "diff") != 0) || !kh_id_date(c))
        return false;
    strcpy(item, a);
    strcpy(mode, b);
    strcpy(as_of, c);
    return true;
}

/* Loads the first file (by name) waiting in the tenant's in/; false if none. */
static bool drop_one(PGconn *c, gw_tenant *t, const char *root)
{
    char in[1024], work[1024], path[1100], wpath[1100], dest[1100], rpath[1100];
    snprintf(in, sizeof in, "%s/%s/in", root, t->id.code);
    snprintf(work, sizeof work, "%s/%s/work", root, t->id.code);
    DIR *d = opendir(in);
    if (d == NULL)
        return false;
    char best[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 4 && n < sizeof best && strcmp(de->d_name + n - 4, ".csv") == 0 &&
            (best[0] == '\0' || strcmp(de->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", de->d_name);
    }
    closedir(d);
    if (best[0] == '\0')
        return false;
    snprintf(path, sizeof path, "%s/%s", in, best);
    snprintf(wpath, sizeof wpath, "%s/%s", work, best);
    snprintf(rpath, sizeof rpath, "%s/%s.report", work, best);
    /* Only a plain file with one name is read: a symbolic link could point at
     * another tenant's data, a FIFO or a device would block a worker. It is
     * opened before it is moved, so what is checked is what is read. */
    struct stat sb;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool plain = fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1;
    if (!plain || rename(path, wpath) != 0) {
        if (fd >= 0)
            close(fd);
        snprintf(dest, sizeof dest, "%s/%s/rejected/%s", root, t->id.code, best);
        /* moved aside (the link itself, not its target) so it is not tried again */
        if (rename(path, dest) != 0)
            unlink(path);
        kh_warn("drop", "tenant %s: a dropped entry is not a plain file; moved to rejected/",
                t->id.code);
        return true;
    }
    char item[32], mode[8], as_of[16], msg[256] = "";
    refdb_file_stats st;
    refdb_bulk_result res;
    memset(&st, 0, sizeof st);
    memset(&res, 0, sizeof res);
    run_ctx rc = {0};
    rc.what = "dropped file";
    snprintf(rc.progress_path, sizeof rc.progress_path, "%s/%s.progress", work, best);
    rc.report = open_out(rpath);
    kh_err e;
    if (!parse_drop_name(best, item, mode, as_of)) {
        e = KH_E_FIELD;
        snprintf(msg, sizeof msg,
                 "file name: expected <ITEM>_<full|diff>_<YYYYMMDD>[_anything].csv");
        if (rc.report) {
            refdb_issue is = {0, "-", KH_E_FIELD, ""};
            snprintf(is.reason, sizeof is.reason, "%s", msg);
            refdb_report_header(rc.report);
            refdb_report_row(rc.report, &is);
        }
    } else if (fd < 0 || rc.report == NULL) {
        e = KH_E_INTERNAL;
        snprintf(msg, sizeof msg, "cannot open the file or its report");
    } else {
        kh_info("drop", "tenant %s: loading dropped file (%s %s)", t->id.code, item, mode);
        e = run_load(c, t, kh_conf_str(G.conf, "drop_system", "dropfolder"), item, mode, as_of,
                     best, NULL, fd, &rc, &st, &res, msg, sizeof msg);
    }
    if (fd >= 0)
        close(fd);
    if (rc.report)
        fclose(rc.report);
    unlink(rc.progress_path);
    const char *where = e == KH_OK ? "done" : "rejected";
    snprintf(dest, sizeof dest, "%s/%s/%s/%s", root, t->id.code, where, best);
    if (rename(wpath, dest) != 0)
        kh_warn("drop", "tenant %s: cannot move a file to %s/", t->id.code, where);
    snprintf(dest, sizeof dest, "%s/%s/%s/%s.report", root, t->id.code, where, best);
    if (rename(rpath, dest) != 0)
        kh_warn("drop", "tenant %s: cannot move a report to %s/", t->id.code, where);
    snprintf(dest, sizeof dest, "%s/%s/%s/%s.result", root, t->id.code, where, best);
    FILE *f = open_out(dest);
    if (f) {
        fprintf(f,
                "state=%s\ncode=%s\nmessage=%s\nrecords=%zu\nbad_records=%zu\nissues=%zu\n"
                "persons=%llu\ndeleted_absent=%llu\nsha256=%s\nfile_id=%lld\n",
                e == KH_OK                ? (res.duplicate ? "DUPLICATE" : "APPLIED")
                : e == KH_E_FILE_REJECTED ? "REJECTED"
                                          : "FAILED",
                e == KH_OK ? "OK" : kh_err_code(e), msg, st.records, st.bad_records, st.issues,
                (unsigned long long)res.persons, (unsigned long long)res.deleted_absent, res.sha256,
                (long long)res.file_id);
        fclose(f);
    }
    kh_info("drop", "tenant %s: dropped file %s: %s (%zu records, %zu bad)", t->id.code, where,
            e == KH_OK ? (res.duplicate ? "duplicate" : "applied") : kh_err_code(e), st.records,
            st.bad_records);
    return true;
}

static void drop_work(PGconn *c, void *arg)
{
    const char *root = kh_conf_str(G.conf, "drop_dir", NULL);
    if (root == NULL || c == NULL)
        return;
    /* everything waiting, one file at a time, until the folders are empty */
    for (bool any = true; any && !G.stopping;) {
        any = false;
        for (size_t i = 0; i < G.ntenants && !G.stopping; i++)
            any = drop_one(c, &G.tenants[i], root) || any;
    }
}

static void drop_done(void *arg)
{
    drop_running = false;
}

static void on_drop_timer(evutil_socket_t fd, short what, void *arg)
{
    if (drop_running || G.stopping)
        return;
    drop_running = true;
    if (kh_pool_submit(G.pool, drop_work, drop_done, NULL) != 0)
        drop_running = false;
}

/* At start-up no upload or drop load is in progress: whatever a crash left
 * behind is either spooled personal data nobody can commit any more (deleted)
 * or a dropped file whose load was rolled back (put back in in/; the claim by
 * SHA-256 makes the retry safe). */
static void tidy_leftovers(const char *spool, const char *drop)
{
    for (size_t i = 0; i < G.ntenants; i++) {
        char dir[1100], from[1400], to[1400];
        struct dirent *de;
        DIR *d;
        if (spool) {
            snprintf(dir, sizeof dir, "%s/%s", spool, G.tenants[i].id.code);
            if ((d = opendir(dir)) != NULL) {
                while ((de = readdir(d)) != NULL)
                    if (de->d_name[0] != '.') {
                        snprintf(from, sizeof from, "%s/%s", dir, de->d_name);
                        unlink(from);
                    }
                closedir(d);
            }
        }
        if (drop) {
            snprintf(dir, sizeof dir, "%s/%s/work", drop, G.tenants[i].id.code);
            if ((d = opendir(dir)) != NULL) {
                while ((de = readdir(d)) != NULL) {
                    size_t n = strlen(de->d_name);
                    if (de->d_name[0] == '.')
                        continue;
                    snprintf(from, sizeof from, "%s/%s", dir, de->d_name);
                    if (n > 4 && strcmp(de->d_name + n - 4, ".csv") == 0) {
                        snprintf(to, sizeof to, "%s/%s/in/%s", drop, G.tenants[i].id.code,
                                 de->d_name);
                        if (rename(from, to) == 0)
                            kh_info("drop", "tenant %s: an interrupted load is retried",
                                    G.tenants[i].id.code);
                    } else {
                        unlink(from);
                    }
                }
                closedir(d);
            }
        }
    }
}

int gw_bulk_start(char *err, size_t errlen)
{
    const char *spool = kh_conf_str(G.conf, "spool_dir", NULL);
    const char *drop = kh_conf_str(G.conf, "drop_dir", NULL);
    if (spool && mkdir(spool, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create spool_dir %s", spool);
        return -1;
    }
    if (spool && G.max_body < 65536) {
        snprintf(err, errlen, "max_body must be at least 65536 when spool_dir is set");
        return -1;
    }
    tidy_leftovers(spool, drop);
    int workers, mb;
    if (kh_conf_int(G.conf, "db_workers", 4, 1, 64, &workers, err, errlen) != 0 ||
        kh_conf_int(G.conf, "max_upload_mb", 4096, 1, 1 << 20, &mb, err, errlen) != 0)
        return -1;
    max_upload_bytes = (uint64_t)mb << 20;
    max_loads = workers - 1 - (drop ? 1 : 0);
    if (max_loads < 1)
        max_loads = 1;
    if (drop) {
        static const char *const subs[] = {"in", "work", "done", "rejected"};
        for (size_t i = 0; i < G.ntenants; i++) {
            char p[1100];
            snprintf(p, sizeof p, "%s/%s", drop, G.tenants[i].id.code);
            if (mkdir(drop, 0700) != 0 && errno != EEXIST)
                goto fail;
            if (mkdir(p, 0700) != 0 && errno != EEXIST)
                goto fail;
            for (size_t k = 0; k < 4; k++) {
                snprintf(p, sizeof p, "%s/%s/%s", drop, G.tenants[i].id.code, subs[k]);
                if (mkdir(p, 0700) != 0 && errno != EEXIST)
                    goto fail;
            }
        }
        struct timeval tv = {1, 0};
        drop_ev = event_new(G.base, -1, EV_PERSIST, on_drop_timer, NULL);
        if (drop_ev == NULL || event_add(drop_ev, &tv) != 0)
            goto fail;
    }
    struct timeval sv = {60, 0};
    sweep_ev = event_new(G.base, -1, EV_PERSIST, on_sweep, NULL);
    if (sweep_ev == NULL || event_add(sweep_ev, &sv) != 0) {
        snprintf(err, errlen, "cannot start the upload sweeper");
        return -1;
    }
    return 0;
fail:
    snprintf(err, errlen, "cannot prepare drop_dir %s", drop);
    return -1;
}

void gw_bulk_stop(void)
{
    if (drop_ev)
        event_free(drop_ev);
    if (sweep_ev)
        event_free(sweep_ev);
    drop_ev = sweep_ev = NULL;
    while (uploads) {
        gw_upload *u = uploads;
        uploads = u->next;
        upload_free(u);
    }
}
