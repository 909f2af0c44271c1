/* gw_bulk.c: bulk registration (refdb/FORMAT.md) over the business API.
 *
 * API: POST /v1/bulk/open, /v1/bulk/part (numbered parts appended to a spool
 * file; the SHA-256 is computed as they arrive), /v1/bulk/commit (checks the
 * SHA-256, then loads in the background), /v1/bulk/status (progress, result,
 * report). The drop folder is gw_drop.c; both load through gw_load.c.
 *
 * Every file operation and every load runs on the worker pool; the event
 * loop only keeps the small upload table. A load holds one worker for its
 * duration and streams: the gateway's memory does not grow with the file. */
#include "gw_bulk.h"
#include "gw_state.h"
#include "gw_drop.h"
#include "gw_load.h"
#include "gw_req.h"
#include "khid.h"

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
#define MAX_UPLOADS_PER_SYSTEM 4 /* nor one business system all its tenant's */
/* Finished uploads hold no slot; each tenant's last ones are kept (status,
 * report) for UPLOAD_IDLE_S, or until this many newer ones have finished. */
#define MAX_FINISHED_PER_TENANT 32
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
static struct event *sweep_ev;
/* Loads hold a database worker for their whole duration: at most max_loads
 * run at once, so online calls always find a free worker; the others wait
 * in commit order (state QUEUED). Event loop only. */
static int max_loads = 1, loads_running;
static gw_upload *load_queue[MAX_UPLOADS];
static size_t queue_head, queue_len;
static int opening;               /* opens whose check is still on a worker */
static uint64_t max_upload_bytes; /* config max_upload_mb */

static void upload_retire(gw_upload *u);

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

static bulk_call *bc_new(struct evhttp_request *req, gw_upload *up)
{
    bulk_call *bc = calloc(1, sizeof *bc);
    if (bc == NULL)
        return NULL;
    bc->up = up;
    gw_req_hold(&bc->req, req);
    return bc;
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
    snprintf(dir, sizeof dir, "%s/%s", G.set.spool_dir, u->t->id.code);
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
    struct evhttp_request *req = gw_req_take(&oc->req);
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
    resp.max_part = (uint32_t)(G.set.max_body - 4096);
    kh_http_reply_pb(req, &resp.base);
    free(oc);
}

static bool file_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200 || !kh_id_text(s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '/' || s[i] == '\\')
            return false;
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
                      : G.set.spool_dir == NULL
                          ? "bulk registration is not configured on this gateway (spool_dir)"
                          : NULL;
    /* only uploads in progress hold a slot: a finished one (applied,
     * duplicate, rejected, failed) stays readable but counts for nothing */
    int active = 0, mine = 0, ours = 0, finished = 0;
    gw_upload *oldest = NULL;
    for (gw_upload *u = uploads; u; u = u->next) {
        pthread_mutex_lock(&mu);
        bool done = u->state >= UP_APPLIED;
        pthread_mutex_unlock(&mu);
        if (done) {
            if (u->t == t && !u->busy) {
                finished++;
                if (oldest == NULL || u->touched < oldest->touched)
                    oldest = u;
            }
            continue;
        }
        active++;
        mine += u->t == t;
        ours += u->t == t && strcmp(u->system, system) == 0;
    }
    const char *who = NULL;
    int limit = 0;
    if (active + opening >= MAX_UPLOADS)
        who = "this gateway", limit = MAX_UPLOADS;
    else if (mine >= MAX_UPLOADS_PER_TENANT)
        who = "this tenant", limit = MAX_UPLOADS_PER_TENANT;
    else if (ours >= MAX_UPLOADS_PER_SYSTEM)
        who = "this business system", limit = MAX_UPLOADS_PER_SYSTEM;
    if (bad != NULL || who != NULL) {
        if (bad != NULL)
            kh_http_reply_err(req, KH_E_FIELD, "%s", bad);
        else
            kh_http_reply_err(req, KH_E_OVERLOADED, "%s has %d uploads in progress; retry later",
                              who, limit);
        kh__bulk_open_request__free_unpacked(m, NULL);
        return;
    }
    if (finished >= MAX_FINISHED_PER_TENANT)
        upload_retire(oldest);
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
    snprintf(u->spool, sizeof u->spool, "%s/%s/%s.csv", G.set.spool_dir, t->id.code, u->id);
    snprintf(u->report, sizeof u->report, "%s/%s/%s.report", G.set.spool_dir, t->id.code, u->id);
    kh__bulk_open_request__free_unpacked(m, NULL);
    oc->up = u;
    opening++;
    gw_req_hold(&oc->req, req);
    if (kh_pool_submit_for(G.pool, u->t->id.code, open_work, open_done, oc) != 0) {
        opening--;
        gw_req_take(&oc->req);
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
    struct evhttp_request *req = gw_req_take(&bc->req);
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
            gw_req_take(&bc->req);
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
    if (kh_pool_submit_for(G.pool, u->t->id.code, part_work, part_done, bc) != 0) {
        u->busy = false;
        kh_http_reply_err(gw_req_take(&bc->req), KH_E_OVERLOADED, "database queue full");
        bc_free(bc);
    }
}

/* --- commit --- */

/* The figures of a load in progress, for /v1/bulk/status (on the worker). */
static void upload_stats(const refdb_file_stats *st, void *arg)
{
    gw_upload *u = arg;
    pthread_mutex_lock(&mu);
    u->st = *st;
    pthread_mutex_unlock(&mu);
}

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
    gw_load_ctx rc = {0};
    rc.on_stats = upload_stats;
    rc.arg = u;
    rc.what = u->id;
    rc.report = gw_load_open_out(u->report);
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
        e = gw_load_run(c, u->t, u->system, u->item, u->mode, u->as_of, u->file_name, u->sha256, fd,
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
        if (kh_pool_submit_for(G.pool, u->t->id.code, load_work, load_done, u) != 0)
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
    struct evhttp_request *req = gw_req_take(&bc->req);
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
    if (kh_pool_submit_for(G.pool, u->t->id.code, report_work, report_done, bc) != 0) {
        u->busy = false;
        reply_status(gw_req_take(&bc->req), u, NULL, 0, 0);
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

/* Forgets an upload that is not busy: its files are removed on a worker. */
static void upload_retire(gw_upload *u)
{
    upload_unlink(u);
    kh_info("bulk", "upload %s forgotten (%s)", u->id, state_names[u->state]);
    if (kh_pool_submit(G.pool, sweep_work, sweep_done, u) != 0) {
        u->next = uploads; /* try again next sweep */
        uploads = u;
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    time_t now = time(NULL);
    for (gw_upload *u = uploads, *next; u; u = next) {
        next = u->next;
        if (u->busy || now - u->touched < UPLOAD_IDLE_S)
            continue;
        upload_retire(u);
    }
}

/* At start-up no upload is in progress: whatever a crash left in the spool
 * is personal data nobody can commit any more (deleted). */
static void tidy_spool(const char *spool)
{
    for (size_t i = 0; i < G.ntenants; i++) {
        char dir[1100], path[1400];
        struct dirent *de;
        DIR *d;
        snprintf(dir, sizeof dir, "%s/%s", spool, G.tenants[i].id.code);
        if ((d = opendir(dir)) == NULL)
            continue;
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.') {
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                unlink(path);
            }
        closedir(d);
    }
}

int gw_bulk_start(char *err, size_t errlen)
{
    const char *spool = G.set.spool_dir;
    const char *drop = G.set.drop_dir;
    if (spool && mkdir(spool, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create spool_dir %s", spool);
        return -1;
    }
    if (spool)
        tidy_spool(spool);
    max_upload_bytes = (uint64_t)G.set.max_upload_mb << 20;
    /* the drop folder's loads take a worker of their own */
    max_loads = G.set.db_workers - 1 - (drop ? 1 : 0);
    if (max_loads < 1)
        max_loads = 1;
    if (drop && gw_drop_start(drop, err, errlen) != 0)
        return -1;
    struct timeval sv = {60, 0};
    sweep_ev = event_new(G.base, -1, EV_PERSIST, on_sweep, NULL);
    if (sweep_ev == NULL || event_add(sweep_ev, &sv) != 0) {
        snprintf(err, errlen, "cannot start the upload sweeper");
        return -1;
    }
    return 0;
}

void gw_bulk_stop(void)
{
    gw_drop_stop();
    if (sweep_ev)
        event_free(sweep_ev);
    sweep_ev = NULL;
    while (uploads) {
        gw_upload *u = uploads;
        uploads = u->next;
        upload_free(u);
    }
}
