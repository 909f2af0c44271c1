/* gw_bulk.c: bulk registration (refdb/FORMAT.md) over the business API.
 *
 * API: POST /v1/bulk/open, /v1/bulk/part (numbered parts, each stored in the
 * tenant's bulk_upload_part as it arrives), /v1/bulk/commit (the SHA-256 of
 * the stored parts must be the one given; the upload is then QUEUED),
 * /v1/bulk/status (progress, result, report). The loads are gw_bulkq.c; the
 * drop folder is gw_drop.c; both apply a file through gw_load.c.
 *
 * Nothing of an upload is kept in this process (sql/tenant/014): a part, the
 * commit and the status may each reach another node of the same gateway, and
 * a node that dies loses no upload. Every call is one job on the tenant's
 * lane of the worker pool; the event loop only checks the request's fields. */
#include "gw_bulk.h"
#include "gw_bulkq.h"
#include "gw_state.h"
#include "gw_drop.h"
#include "gw_req.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khid.h"
#include "khlog.h"
#include "khpool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_UPLOADS_PER_TENANT 8   /* in progress: so no tenant can fill the database */
#define MAX_UPLOADS_PER_SYSTEM 4   /* nor one business system all its tenant's */
#define MAX_FINISHED_PER_TENANT 32 /* finished ones kept for status (and an hour at most) */

/* One API call: its fields, then what the job found. */
typedef struct {
    struct evhttp_request *req;
    gw_tenant *t;
    char id[33], system[40];
    char item[17], mode[8], as_of[9], file_name[201]; /* open */
    uint32_t seq;                                     /* part */
    uint8_t *data;                                    /* part bytes, or report bytes */
    size_t len;
    char sha256[65];        /* commit */
    uint64_t report_offset; /* status */
    kh_err err;
    char msg[256];
    /* the upload's row (status and commit) */
    char state[12], result_sha[65], code[16], message[256];
    uint64_t bytes, records, bad_records, issues, persons, deleted_absent, report_size;
    int64_t file_id;
} bulk_call;

static uint64_t max_upload_bytes; /* config max_upload_mb */

static bulk_call *bc_new(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    bulk_call *bc = calloc(1, sizeof *bc);
    if (bc == NULL) {
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return NULL;
    }
    bc->t = t;
    snprintf(bc->system, sizeof bc->system, "%s", system);
    gw_req_hold(&bc->req, req);
    return bc;
}

static void bc_free(bulk_call *bc)
{
    khc_free_secret(bc->data, bc->len);
    free(bc);
}

/* Queues work on the tenant's lane; on a full queue answers KH-5003. */
static void bc_submit(bulk_call *bc, kh_pool_work_fn work, kh_pool_done_fn done)
{
    if (kh_pool_submit_for(G.pool, bc->t->id.code, work, done, bc) != 0) {
        kh_http_reply_err(gw_req_take(&bc->req), KH_E_OVERLOADED, "database queue full");
        bc_free(bc);
    }
}

static void bc_fail(bulk_call *bc, kh_err e, const char *msg)
{
    bc->err = e;
    snprintf(bc->msg, sizeof bc->msg, "%s", msg);
}

/* The columns row_of reads, in its order. */
#define ROW_COLS                                                                                   \
    "state, CASE WHEN state = 'RECEIVING' THEN bytes ELSE read_bytes END, records, bad_records, "  \
    "issues, persons, deleted_absent, result_sha256, file_id, code, message, report_size"

static void row_of(bulk_call *bc, const PGresult *r)
{
    snprintf(bc->state, sizeof bc->state, "%s", PQgetvalue(r, 0, 0));
    bc->bytes = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    bc->records = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
    bc->bad_records = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
    bc->issues = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
    bc->persons = strtoull(PQgetvalue(r, 0, 5), NULL, 10);
    bc->deleted_absent = strtoull(PQgetvalue(r, 0, 6), NULL, 10);
    snprintf(bc->result_sha, sizeof bc->result_sha, "%s", PQgetvalue(r, 0, 7));
    bc->file_id = strtoll(PQgetvalue(r, 0, 8), NULL, 10);
    snprintf(bc->code, sizeof bc->code, "%s", PQgetvalue(r, 0, 9));
    snprintf(bc->message, sizeof bc->message, "%s", PQgetvalue(r, 0, 10));
    bc->report_size = strtoull(PQgetvalue(r, 0, 11), NULL, 10);
    if (strcmp(bc->state, "LOADING") == 0) { /* this node's figures are fresher */
        refdb_file_stats st;
        if (gw_bulkq_figures(bc->t, bc->id, &st)) {
            bc->bytes = st.bytes;
            bc->records = st.records;
            bc->bad_records = st.bad_records;
            bc->issues = st.issues;
            bc->persons = st.persons;
        }
    }
}

static void reply_status(struct evhttp_request *req, bulk_call *bc)
{
    Kh__Status ok = KH__STATUS__INIT;
    ok.code = "OK";
    ok.message = "";
    Kh__BulkStatus s = KH__BULK_STATUS__INIT;
    s.status = &ok;
    s.upload_id = bc->id;
    s.state = bc->state;
    s.bytes = bc->bytes;
    s.records = bc->records;
    s.bad_records = bc->bad_records;
    s.issues = bc->issues;
    s.persons = bc->persons;
    s.deleted_absent = bc->deleted_absent;
    s.sha256 = bc->result_sha;
    s.file_id = bc->file_id;
    s.code = bc->code;
    s.message = bc->message;
    s.report.data = bc->data;
    s.report.len = bc->len;
    s.report_size = bc->report_size;
    kh_http_reply_pb(req, &s.base);
}

/* Replies to a job's request (if its client is still there) and frees it. */
static void finish(bulk_call *bc, void (*reply_ok)(struct evhttp_request *req, bulk_call *bc))
{
    struct evhttp_request *req = gw_req_take(&bc->req);
    if (req != NULL) {
        if (bc->err != KH_OK)
            kh_http_reply_err(req, bc->err, "%s", bc->msg);
        else
            reply_ok(req, bc);
    }
    bc_free(bc);
}

/* Ends a job's transaction: commits if everything went well, else rolls back. */
static void end_tx(PGconn *c, bulk_call *bc)
{
    if (bc->err == KH_OK && kh_db_commit(c) != KH_OK)
        bc_fail(bc, KH_E_DB, "database unavailable");
    if (bc->err != KH_OK)
        kh_db_rollback(c);
}

static bool begin_tx(PGconn **c, bulk_call *bc)
{
    if (kh_db_tenant_begin(c, bc->t->id.code) != KH_OK) {
        bc_fail(bc, KH_E_DB, "database unavailable");
        return false;
    }
    return true;
}

/* --- open --- */

static void open_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    if (!begin_tx(&c, bc))
        return;
    const char *p[3] = {bc->system, "register", bc->item};
    /* opens of one tenant one at a time, so the limits below hold */
    PGresult *l = kh_db_exec(c,
                             "SELECT pg_advisory_xact_lock(hashtextextended('kh.bulk_open/' || "
                             "current_schema(), 0))",
                             0, NULL);
    PGresult *r = l == NULL ? NULL
                            : kh_db_exec(c,
                                         "SELECT (SELECT count(*) FROM kh.item WHERE item_code = "
                                         "$3), (SELECT count(*) FROM system_permission WHERE "
                                         "system_id = $1 AND operation = $2 AND scope IN ('*', "
                                         "$3)), count(*), count(*) FILTER (WHERE system_id = $1) "
                                         "FROM bulk_upload WHERE state IN ('RECEIVING', "
                                         "'QUEUED', 'LOADING')",
                                         3, p);
    PQclear(l);
    if (r == NULL) {
        bc_fail(bc, KH_E_DB, "database unavailable");
    } else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
        bc_fail(bc, KH_E_UNKNOWN_ITEM, "item_code: not in the item catalogue");
    } else if (strcmp(PQgetvalue(r, 0, 1), "0") == 0) {
        bc->err = KH_E_SYSTEM_PERMISSION;
        snprintf(bc->msg, sizeof bc->msg, "business system '%s' may not register %s", bc->system,
                 bc->item);
    } else if (atoi(PQgetvalue(r, 0, 2)) >= MAX_UPLOADS_PER_TENANT) {
        bc->err = KH_E_OVERLOADED;
        snprintf(bc->msg, sizeof bc->msg, "this tenant has %d uploads in progress; retry later",
                 MAX_UPLOADS_PER_TENANT);
    } else if (atoi(PQgetvalue(r, 0, 3)) >= MAX_UPLOADS_PER_SYSTEM) {
        bc->err = KH_E_OVERLOADED;
        snprintf(bc->msg, sizeof bc->msg,
                 "this business system has %d uploads in progress; retry later",
                 MAX_UPLOADS_PER_SYSTEM);
    }
    PQclear(r);
    if (bc->err == KH_OK) {
        const char *q[6] = {bc->id, bc->system, bc->item, bc->mode, bc->as_of, bc->file_name};
        /* the newest finished ones stay readable; older ones make room */
        PGresult *d = kh_db_exec(
            c,
            "DELETE FROM bulk_upload WHERE upload_id IN (SELECT upload_id FROM bulk_upload "
            "WHERE state IN ('APPLIED', 'DUPLICATE', 'REJECTED', 'FAILED') ORDER BY "
            "finished_at DESC OFFSET " KH_STR(MAX_FINISHED_PER_TENANT) " FOR UPDATE SKIP LOCKED)",
            0, NULL);
        PGresult *i = d == NULL ? NULL
                                : kh_db_exec(c,
                                             "INSERT INTO bulk_upload (upload_id, system_id, "
                                             "item_code, mode, as_of, file_name) VALUES ($1, $2, "
                                             "$3, $4, $5, $6)",
                                             6, q);
        if (i == NULL)
            bc_fail(bc, KH_E_DB, "database unavailable");
        PQclear(d);
        PQclear(i);
    }
    end_tx(c, bc);
}

static void reply_open(struct evhttp_request *req, bulk_call *bc)
{
    Kh__Status ok = KH__STATUS__INIT;
    ok.code = "OK";
    ok.message = "";
    Kh__BulkOpenResponse resp = KH__BULK_OPEN_RESPONSE__INIT;
    resp.status = &ok;
    resp.upload_id = bc->id;
    resp.max_part = (uint32_t)(G.set.max_body - 4096);
    kh_http_reply_pb(req, &resp.base);
}

/* An upload opened for a client that went away before it learnt the id:
 * nobody can send its parts, and it would hold a slot for an hour. */
static void forget_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    if (!begin_tx(&c, bc))
        return;
    const char *p[1] = {bc->id};
    PGresult *d = kh_db_exec(c,
                             "DELETE FROM bulk_upload WHERE upload_id = $1 AND state = "
                             "'RECEIVING' AND next_seq = 1",
                             1, p);
    if (d == NULL)
        bc_fail(bc, KH_E_DB, "database unavailable");
    PQclear(d);
    end_tx(c, bc);
}

static void forget_done(void *arg)
{
    bc_free(arg);
}

static void open_done(void *arg)
{
    bulk_call *bc = arg;
    if (bc->err == KH_OK && bc->req == NULL &&
        kh_pool_submit_for(G.pool, bc->t->id.code, forget_work, forget_done, bc) == 0)
        return; /* (if the queue is full, the sweeper forgets it after an hour) */
    if (bc->err == KH_OK)
        kh_info("bulk", "tenant %s system %s: upload %s opened for %s (%s)", bc->t->id.code,
                bc->system, bc->id, bc->item, bc->mode);
    finish(bc, reply_open);
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
    if (bad != NULL) {
        kh_http_reply_err(req, KH_E_FIELD, "%s", bad);
        kh__bulk_open_request__free_unpacked(m, NULL);
        return;
    }
    bulk_call *bc = bc_new(req, t, system);
    uint8_t rnd[16];
    if (bc != NULL && khc_random(rnd, sizeof rnd) != 0) {
        kh_http_reply_err(gw_req_take(&bc->req), KH_E_INTERNAL, "no random bytes");
        bc_free(bc);
        bc = NULL;
    }
    if (bc != NULL) {
        khc_hex(rnd, sizeof rnd, bc->id);
        snprintf(bc->item, sizeof bc->item, "%s", m->item_code);
        snprintf(bc->mode, sizeof bc->mode, "%s", m->mode);
        snprintf(bc->as_of, sizeof bc->as_of, "%s", m->as_of);
        snprintf(bc->file_name, sizeof bc->file_name, "%s", m->file_name);
    }
    kh__bulk_open_request__free_unpacked(m, NULL);
    if (bc != NULL)
        bc_submit(bc, open_work, open_done);
}

/* The upload named by a request, checked on the loop (the job checks the rest). */
static bulk_call *call_for(struct evhttp_request *req, gw_tenant *t, const char *system,
                           const char *upload_id)
{
    if (!kh_id_hex(upload_id, 32)) {
        kh_http_reply_err(req, KH_E_UPLOAD, "upload_id: expected the 32 hex digits of an upload");
        return NULL;
    }
    bulk_call *bc = bc_new(req, t, system);
    if (bc != NULL)
        snprintf(bc->id, sizeof bc->id, "%s", upload_id);
    return bc;
}

/* --- part --- */

static void part_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    if (!begin_tx(&c, bc))
        return;
    char seq[16], len[24], max[24];
    snprintf(seq, sizeof seq, "%" PRIu32, bc->seq);
    snprintf(len, sizeof len, "%zu", bc->len);
    snprintf(max, sizeof max, "%" PRIu64, max_upload_bytes);
    const char *p[5] = {bc->id, bc->system, seq, len, max};
    PGresult *r = kh_db_exec(c,
                             "UPDATE bulk_upload SET next_seq = next_seq + 1, bytes = bytes + "
                             "$4::bigint, touched_at = now() WHERE upload_id = $1 AND system_id "
                             "= $2 AND state = 'RECEIVING' AND next_seq = $3::int AND bytes + "
                             "$4::bigint <= $5::bigint RETURNING bytes",
                             5, p);
    if (r != NULL && PQntuples(r) == 1) {
        bc->bytes = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        const char *ip[3] = {bc->id, seq, (const char *)bc->data};
        int lens[3] = {0, 0, (int)bc->len}, fmts[3] = {0, 0, 1};
        PGresult *i = kh_db_exec_bin(c,
                                     "INSERT INTO bulk_upload_part (upload_id, seq, data) "
                                     "VALUES ($1, $2::int, $3)",
                                     3, ip, lens, fmts, 0);
        if (i == NULL)
            bc_fail(bc, KH_E_DB, "database unavailable: the part was not stored; send it again");
        PQclear(i);
    } else if (r != NULL) { /* say why */
        PGresult *w = kh_db_exec(c,
                                 "SELECT state, next_seq FROM bulk_upload WHERE upload_id = $1 "
                                 "AND system_id = $2",
                                 2, p);
        if (w == NULL)
            bc_fail(bc, KH_E_DB, "database unavailable");
        else if (PQntuples(w) == 0 || strcmp(PQgetvalue(w, 0, 0), "RECEIVING") != 0)
            bc_fail(bc, KH_E_UPLOAD,
                    "upload_id: no upload receiving parts under this id for this system");
        else if (strtoul(PQgetvalue(w, 0, 1), NULL, 10) != bc->seq) {
            bc->err = KH_E_PART_ORDER;
            snprintf(bc->msg, sizeof bc->msg, "seq: not the next part expected (expected %s)",
                     PQgetvalue(w, 0, 1));
        } else
            bc_fail(bc, KH_E_TOO_LARGE, "the file exceeds max_upload_mb of this gateway");
        PQclear(w);
    } else {
        bc_fail(bc, KH_E_DB, "database unavailable");
    }
    PQclear(r);
    end_tx(c, bc);
}

static void reply_part(struct evhttp_request *req, bulk_call *bc)
{
    Kh__Status ok = KH__STATUS__INIT;
    ok.code = "OK";
    ok.message = "";
    Kh__BulkPartResponse resp = KH__BULK_PART_RESPONSE__INIT;
    resp.status = &ok;
    resp.received = bc->bytes;
    kh_http_reply_pb(req, &resp.base);
}

static void part_done(void *arg)
{
    finish(arg, reply_part);
}

void gw_bulk_on_part(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkPartRequest *m = gw_read_pb(req, &kh__bulk_part_request__descriptor);
    if (m == NULL)
        return;
    bulk_call *bc = NULL;
    if (m->data.len == 0)
        kh_http_reply_err(req, KH_E_FIELD, "data: a part carries at least one byte");
    else if (m->seq == 0 || m->seq > INT32_MAX)
        kh_http_reply_err(req, KH_E_PART_ORDER,
                          "seq: parts are numbered from 1, one after another");
    else if (m->data.len > max_upload_bytes)
        kh_http_reply_err(req, KH_E_TOO_LARGE, "the file exceeds max_upload_mb of this gateway");
    else
        bc = call_for(req, t, system, m->upload_id);
    if (bc != NULL && (bc->data = malloc(m->data.len)) == NULL) {
        kh_http_reply_err(gw_req_take(&bc->req), KH_E_INTERNAL, "out of memory");
        bc_free(bc);
        bc = NULL;
    }
    if (bc != NULL) {
        memcpy(bc->data, m->data.data, m->data.len);
        bc->len = m->data.len;
        bc->seq = m->seq;
    }
    khc_wipe(m->data.data, m->data.len);
    kh__bulk_part_request__free_unpacked(m, NULL);
    if (bc != NULL)
        bc_submit(bc, part_work, part_done);
}

/* --- commit --- */

/* The SHA-256 of the upload's stored parts 1..parts, read one at a time. */
static kh_err parts_digest(PGconn *c, const char *id, uint32_t parts, char hex[65])
{
    khc_sha256_ctx *md = khc_sha256_new();
    kh_err e = md == NULL ? KH_E_INTERNAL : KH_OK;
    for (uint32_t seq = 1; e == KH_OK && seq <= parts; seq++) {
        PGresult *r = gw_bulk_part(c, id, seq);
        if (r == NULL)
            e = KH_E_DB;
        else if (khc_sha256_update(md, (const uint8_t *)PQgetvalue(r, 0, 0),
                                   (size_t)PQgetlength(r, 0, 0)) != 0)
            e = KH_E_INTERNAL;
        gw_bulk_part_free(r);
    }
    unsigned char d[32];
    if (e == KH_OK && khc_sha256_peek(md, d) != 0)
        e = KH_E_INTERNAL;
    if (e == KH_OK)
        khc_hex(d, sizeof d, hex);
    khc_sha256_free(md);
    return e;
}

/* A commit of an upload no longer receiving: if it was committed with the
 * same SHA-256 (a commit sent again, its answer lost), its status. */
static void committed_before(PGconn *c, bulk_call *bc)
{
    const char *p[3] = {bc->id, bc->system, bc->sha256};
    PGresult *r = kh_db_exec(c,
                             "SELECT " ROW_COLS " FROM bulk_upload WHERE upload_id = $1 AND "
                             "system_id = $2 AND sha256 = $3",
                             3, p);
    if (r == NULL)
        bc_fail(bc, KH_E_DB, "database unavailable");
    else if (PQntuples(r) == 0)
        bc_fail(bc, KH_E_UPLOAD, "upload_id: no upload receiving parts under this id");
    else
        row_of(bc, r);
    PQclear(r);
}

static void commit_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    if (!begin_tx(&c, bc))
        return;
    const char *p[3] = {bc->id, bc->system, bc->sha256};
    /* the row stays locked while the parts are read: no part slips in */
    PGresult *r = kh_db_exec(c,
                             "SELECT next_seq - 1, bytes FROM bulk_upload WHERE upload_id = $1 "
                             "AND system_id = $2 AND state = 'RECEIVING' FOR UPDATE",
                             2, p);
    char hex[65] = "";
    kh_err e;
    bool receiving = r != NULL && PQntuples(r) == 1;
    if (r == NULL) {
        bc_fail(bc, KH_E_DB, "database unavailable");
    } else if (!receiving) {
        committed_before(c, bc);
    } else if ((e = parts_digest(c, bc->id, (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10),
                                 hex)) != KH_OK) {
        bc_fail(bc, e, e == KH_E_DB ? "database unavailable" : "cannot compute the SHA-256");
    } else if (strcmp(hex, bc->sha256) != 0) {
        bc->err = KH_E_CHECKSUM;
        snprintf(bc->msg, sizeof bc->msg,
                 "sha256: the bytes received (%s) have another SHA-256; commit with theirs, or "
                 "open a new upload and send the file again",
                 PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    if (bc->err == KH_OK && receiving) {
        PGresult *u = kh_db_exec(c,
                                 "UPDATE bulk_upload SET state = 'QUEUED', sha256 = $3, "
                                 "committed_at = clock_timestamp(), touched_at = now() WHERE "
                                 "upload_id = $1 AND system_id = $2 RETURNING " ROW_COLS,
                                 3, p);
        if (u == NULL || PQntuples(u) != 1)
            bc_fail(bc, KH_E_DB, "database unavailable");
        else
            row_of(bc, u);
        PQclear(u);
    }
    end_tx(c, bc);
}

static void commit_done(void *arg)
{
    bulk_call *bc = arg;
    if (bc->err == KH_OK)
        gw_bulkq_kick(bc->t);
    finish(bc, reply_status);
}

void gw_bulk_on_commit(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkCommitRequest *m = gw_read_pb(req, &kh__bulk_commit_request__descriptor);
    if (m == NULL)
        return;
    bulk_call *bc = NULL;
    if (!kh_id_hex(m->sha256, 64))
        kh_http_reply_err(req, KH_E_FIELD, "sha256: expected 64 lowercase hex digits");
    else
        bc = call_for(req, t, system, m->upload_id);
    if (bc != NULL)
        snprintf(bc->sha256, sizeof bc->sha256, "%s", m->sha256);
    kh__bulk_commit_request__free_unpacked(m, NULL);
    if (bc != NULL)
        bc_submit(bc, commit_work, commit_done);
}

/* --- status --- */

/* Up to GW_BULK_REPORT_PAGE bytes of an upload's report (size bytes in all)
 * from offset, in the tenant transaction open on c: *data (malloc'd; NULL
 * and *len 0 at or past the end). The one reader of bulk_upload_report, for
 * /v1/bulk/status and the admin API. */
kh_err gw_bulk_report_read(PGconn *c, const char *upload_id, uint64_t offset, uint64_t size,
                           char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (offset >= size)
        return KH_OK;
    uint64_t first = offset / GW_BULK_REPORT_CHUNK;
    size_t skip = (size_t)(offset % GW_BULK_REPORT_CHUNK);
    char a[24], b[24];
    snprintf(a, sizeof a, "%" PRIu64, first);
    snprintf(b, sizeof b, "%" PRIu64, first + GW_BULK_REPORT_PAGE / GW_BULK_REPORT_CHUNK);
    const char *p[3] = {upload_id, a, b};
    PGresult *r = kh_db_exec_bin(c,
                                 "SELECT data FROM bulk_upload_report WHERE upload_id = $1 AND "
                                 "seq BETWEEN $2::int AND $3::int ORDER BY seq",
                                 3, p, NULL, NULL, 1);
    if (r == NULL)
        return KH_E_DB;
    if ((*data = malloc(GW_BULK_REPORT_PAGE)) == NULL) {
        PQclear(r);
        return KH_E_INTERNAL;
    }
    for (int k = 0; k < PQntuples(r) && *len < GW_BULK_REPORT_PAGE; k++) {
        size_t n = (size_t)PQgetlength(r, k, 0), from = k == 0 ? skip : 0;
        if (from >= n)
            break;
        n -= from;
        if (n > GW_BULK_REPORT_PAGE - *len)
            n = GW_BULK_REPORT_PAGE - *len;
        memcpy(*data + *len, PQgetvalue(r, k, 0) + from, n);
        *len += n;
    }
    PQclear(r);
    return KH_OK;
}

static void status_work(PGconn *c, void *arg)
{
    bulk_call *bc = arg;
    if (!begin_tx(&c, bc))
        return;
    const char *p[2] = {bc->id, bc->system};
    PGresult *r = kh_db_exec(c,
                             "SELECT " ROW_COLS " FROM bulk_upload WHERE upload_id = $1 AND "
                             "system_id = $2",
                             2, p);
    kh_err e;
    if (r == NULL)
        bc_fail(bc, KH_E_DB, "database unavailable");
    else if (PQntuples(r) == 0)
        bc_fail(bc, KH_E_UPLOAD, "upload_id: unknown to this gateway for this system");
    else
        row_of(bc, r);
    PQclear(r);
    char *page = NULL;
    if (bc->err == KH_OK && strcmp(bc->state, "REJECTED") == 0 &&
        (e = gw_bulk_report_read(c, bc->id, bc->report_offset, bc->report_size, &page, &bc->len)) !=
            KH_OK)
        bc_fail(bc, e, "cannot read the report");
    bc->data = (uint8_t *)page;
    kh_db_rollback(c);
}

static void status_done(void *arg)
{
    finish(arg, reply_status);
}

void gw_bulk_on_status(struct evhttp_request *req, gw_tenant *t, const char *system)
{
    Kh__BulkStatusRequest *m = gw_read_pb(req, &kh__bulk_status_request__descriptor);
    if (m == NULL)
        return;
    bulk_call *bc = call_for(req, t, system, m->upload_id);
    if (bc != NULL)
        bc->report_offset = m->report_offset;
    kh__bulk_status_request__free_unpacked(m, NULL);
    if (bc != NULL)
        bc_submit(bc, status_work, status_done);
}

/* ------------------------------------------------------------ start */

int gw_bulk_start(char *err, size_t errlen)
{
    const char *spool = G.set.spool_dir;
    const char *drop = G.set.drop_dir;
    if (spool && mkdir(spool, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create spool_dir %s", spool);
        return -1;
    }
    max_upload_bytes = (uint64_t)G.set.max_upload_mb << 20;
    if (drop && gw_drop_start(drop, err, errlen) != 0)
        return -1;
    return gw_bulkq_start(err, errlen);
}

void gw_bulk_stop(void)
{
    gw_drop_stop();
    gw_bulkq_stop();
}
