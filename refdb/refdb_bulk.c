/* refdb_bulk.c: applying a bulk file (refdb/FORMAT.md section 3).
 *
 * One pass hashes the file (a duplicate is found before any work); a second
 * pass checks it with refdb_check_stream and streams every good record into
 * replica with COPY. The caller's transaction makes the whole file visible at
 * once or not at all: a rejected file, a crash or a kill -9 leaves nothing.
 * Memory stays constant: one COPY buffer, one record at a time. */
#include "refdb.h"
#include "khpool.h"
#include "refdb_internal.h"

#include "khid.h"
#include "khcrypto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_FLUSH (256 * 1024)

typedef struct {
    PGconn *c;
    const refdb_layout *l;
    const char *system_id;
    char batch[24];
    char layout_version[16];
    char *buf;
    size_t len, cap;
    bool failed;   /* the COPY stream broke: stop */
    bool rejected; /* a problem was found: stop sending rows, keep checking */
    refdb_issue_fn issue_fn;
    refdb_progress_fn progress_fn;
    void *arg;
} loader;

static bool reserve(loader *ld, size_t more)
{
    if (ld->len + more <= ld->cap)
        return true;
    size_t cap = ld->cap ? ld->cap : COPY_FLUSH * 2;
    while (cap < ld->len + more)
        cap *= 2;
    char *nb = realloc(ld->buf, cap);
    if (nb == NULL)
        return false;
    ld->buf = nb;
    ld->cap = cap;
    return true;
}

static void put(loader *ld, const char *s, size_t n)
{
    memcpy(ld->buf + ld->len, s, n);
    ld->len += n;
}

/* A value inside a JSON string inside COPY text: JSON escapes quotes,
 * backslashes and controls; COPY text then needs every backslash doubled. */
static void put_json_str(loader *ld, const char *s)
{
    put(ld, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"') {
            put(ld, "\\\\\"", 3);
        } else if (ch == '\\') {
            put(ld, "\\\\\\\\", 4);
        } else if (ch < 0x20) {
            char esc[12];
            int n = snprintf(esc, sizeof esc, "\\\\u%04x", ch);
            put(ld, esc, (size_t)n);
        } else {
            put(ld, (const char *)&ch, 1);
        }
    }
    put(ld, "\"", 1);
}

static bool flush(loader *ld)
{
    if (ld->len == 0)
        return true;
    if (PQputCopyData(ld->c, ld->buf, (int)ld->len) != 1) {
        ld->failed = true;
        return false;
    }
    ld->len = 0;
    return true;
}

static void on_issue(const refdb_issue *is, void *arg)
{
    loader *ld = arg;
    ld->rejected = true;
    if (ld->issue_fn)
        ld->issue_fn(is, ld->arg);
}

static void on_progress(const refdb_file_stats *st, void *arg)
{
    loader *ld = arg;
    if (ld->progress_fn)
        ld->progress_fn(st, ld->arg);
}

/* One COPY line: local_id, item, effective_from, deleted, data, system, batch, layout. */
static int on_record(const refdb_record *r, void *arg)
{
    loader *ld = arg;
    if (ld->rejected)
        return 0; /* nothing more is sent; the check goes on for the report */
    size_t need = 128 + strlen(ld->l->item_code) + strlen(ld->system_id);
    for (size_t i = 0; i < r->nvals; i++)
        if (r->vals[i][0] != '\0')
            need += 7 * strlen(ld->l->cols[i].name) + 7 * strlen(r->vals[i]) + 8; /* \\u00XX */
    if (!reserve(ld, need))
        return -1;
    put(ld, r->local_id, strlen(r->local_id));
    put(ld, "\t", 1);
    put(ld, ld->l->item_code, strlen(ld->l->item_code));
    put(ld, "\t", 1);
    put(ld, r->effective_from, strlen(r->effective_from));
    put(ld, r->deleted ? "\tt\t{" : "\tf\t{", 4);
    bool first = true;
    for (size_t i = 0; !r->deleted && i < r->nvals; i++) {
        if (r->vals[i][0] == '\0')
            continue;
        if (!first)
            put(ld, ",", 1);
        first = false;
        put_json_str(ld, ld->l->cols[i].name);
        put(ld, ":", 1);
        put_json_str(ld, r->vals[i]);
    }
    put(ld, "}\t", 2);
    put(ld, ld->system_id, strlen(ld->system_id));
    put(ld, "\t", 1);
    put(ld, ld->batch, strlen(ld->batch));
    put(ld, "\t", 1);
    put(ld, ld->layout_version, strlen(ld->layout_version));
    put(ld, "\n", 1);
    if (ld->len >= COPY_FLUSH && !flush(ld))
        return -1;
    return 0;
}

static int hash_fd(int fd, char hex[65])
{
    khc_sha256_ctx *ctx = khc_sha256_new();
    unsigned char buf[1 << 16], md[32];
    int rc = -1;
    if (ctx == NULL || lseek(fd, 0, SEEK_SET) != 0)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        if (khc_sha256_update(ctx, buf, (size_t)n) != 0)
            goto out;
    }
    rc = khc_sha256_final(ctx, md);
    ctx = NULL;
    if (rc != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        rc = -1;
        goto out;
    }
    khc_hex(md, 32, hex);
out:
    khc_sha256_free(ctx);
    return rc;
}

/* Ends the COPY: normally, or aborted (the rows sent so far are discarded). */
static kh_err end_copy(loader *ld, bool abort_it, char *msg, size_t msglen)
{
    if (!abort_it && !flush(ld))
        abort_it = true;
    if (PQputCopyEnd(ld->c, abort_it ? "bulk file rejected" : NULL) != 1) {
        refdb_set_msg(msg, msglen, "bulk copy: connection lost");
        return KH_E_DB;
    }
    kh_err e = KH_OK;
    PGresult *r;
    while ((r = PQgetResult(ld->c)) != NULL) {
        if (!abort_it && PQresultStatus(r) != PGRES_COMMAND_OK) {
            e = refdb_db_fail(ld->c, r, "bulk copy", msg, msglen);
            continue;
        }
        PQclear(r);
    }
    return e;
}

static kh_err exec_ok(PGconn *c, const char *sql, int n, const char *const *p, const char *what,
                      PGresult **out, char *msg, size_t msglen)
{
    PGresult *r = kh_db_try(c, sql, n, p);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return refdb_db_fail(c, r, what, msg, msglen);
    if (out)
        *out = r;
    else
        PQclear(r);
    return KH_OK;
}

kh_err refdb_bulk_load(PGconn *c, int fd, const refdb_layout *l, const char *system_id,
                       const char *mode, const char *as_of, const char *file_name,
                       const char *known_sha256, refdb_issue_fn issue_fn,
                       refdb_progress_fn progress_fn, void *arg, refdb_file_stats *st,
                       refdb_bulk_result *res, char *msg, size_t msglen)
{
    loader ld = {0};
    PGresult *r = NULL;
    kh_err e;
    memset(res, 0, sizeof *res);
    memset(st, 0, sizeof *st);
    bool full = mode && strcmp(mode, "full") == 0;
    if (!full && !(mode && strcmp(mode, "diff") == 0)) {
        refdb_set_msg(msg, msglen, "mode: expected full or diff");
        return KH_E_FIELD;
    }
    if (!kh_id_date(as_of)) {
        refdb_set_msg(msg, msglen, "as_of: expected a real date as YYYYMMDD");
        return KH_E_FIELD;
    }
    if (file_name == NULL || file_name[0] == '\0' || strlen(file_name) > 200) {
        refdb_set_msg(msg, msglen, "file_name: expected 1 to 200 characters");
        return KH_E_FIELD;
    }
    if (known_sha256 != NULL) {
        if (strlen(known_sha256) != 64 || strspn(known_sha256, "0123456789abcdef") != 64) {
            refdb_set_msg(msg, msglen, "sha256: expected 64 lowercase hex digits");
            return KH_E_FIELD;
        }
        memcpy(res->sha256, known_sha256, 65);
    } else if (hash_fd(fd, res->sha256) != 0) {
        refdb_set_msg(msg, msglen, "cannot read the file");
        return KH_E_INTERNAL;
    }

    /* One load of an item at a time per tenant: two full snapshots applied
     * concurrently would each delete persons the other adds. */
    const char *item_p[1] = {l->item_code};
    e = exec_ok(c,
                "SELECT pg_advisory_xact_lock(hashtextextended('refdb.bulk/' || current_schema() "
                "|| '/' || $1, 0))",
                1, item_p, "bulk lock", NULL, msg, msglen);
    if (e != KH_OK)
        return e;
    /* Claim (item, mode, date, content). If the same file is being applied by
     * another transaction, this waits for it; if it was applied, no row
     * comes back and the file is a duplicate. */
    const char *claim[6] = {l->item_code, mode, res->sha256, file_name, system_id, as_of};
    e = exec_ok(c,
                "INSERT INTO bulk_file (item_code, mode, sha256, file_name, system_id, as_of) "
                "VALUES ($1, $2, $3, $4, $5, $6::date) "
                "ON CONFLICT (item_code, mode, as_of, sha256) DO NOTHING RETURNING id",
                6, claim, "bulk claim", &r, msg, msglen);
    if (e != KH_OK)
        return e;
    if (PQntuples(r) == 0) {
        PQclear(r);
        const char *dup[4] = {l->item_code, mode, res->sha256, as_of};
        e = exec_ok(c,
                    "SELECT id, coalesce(records, 0), coalesce(persons, 0), "
                    "coalesce(deleted_absent, 0) FROM bulk_file "
                    "WHERE item_code = $1 AND mode = $2 AND sha256 = $3 AND as_of = $4::date",
                    4, dup, "bulk duplicate", &r, msg, msglen);
        if (e != KH_OK)
            return e;
        res->duplicate = true;
        if (PQntuples(r) == 1) {
            res->file_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            res->records = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
            res->persons = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
            res->deleted_absent = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
        }
        PQclear(r);
        return KH_OK;
    }
    res->file_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);

    ld.c = c;
    ld.l = l;
    ld.system_id = system_id;
    ld.issue_fn = issue_fn;
    ld.progress_fn = progress_fn;
    ld.arg = arg;
    snprintf(ld.batch, sizeof ld.batch, "%lld", (long long)res->file_id);
    snprintf(ld.layout_version, sizeof ld.layout_version, "%d", l->layout_version);
    r = kh_db_copy_in(
        c, "COPY replica (local_id, item_code, effective_from, deleted, data, system_id, "
           "batch_id, layout_version) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN)
        return refdb_db_fail(c, r, "bulk copy start", msg, msglen);
    PQclear(r);

    kh_err chk = refdb_check_stream(fd, l, on_issue, on_record, on_progress, &ld, st);
    bool ok = chk == KH_OK && !ld.failed && !ld.rejected;
    e = end_copy(&ld, !ok, msg, msglen);
    free(ld.buf);
    if (!ok) {
        if (ld.failed) {
            refdb_set_msg(msg, msglen, "bulk copy: the database stopped accepting rows");
            return KH_E_DB;
        }
        if (chk == KH_E_INTERNAL) {
            refdb_set_msg(msg, msglen, "cannot read the file");
            return KH_E_INTERNAL;
        }
        refdb_set_msg(msg, msglen, "%zu of %zu records have problems; nothing was applied",
                      st->bad_records, st->records);
        return KH_E_FILE_REJECTED;
    }
    if (e != KH_OK)
        return e;
    char read_hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(read_hex + 2 * i, 3, "%02x", st->sha256[i]);
    if (strcmp(read_hex, res->sha256) != 0) {
        refdb_set_msg(msg, msglen, "the file read is not the file announced (SHA-256 differs)");
        return KH_E_CHECKSUM;
    }
    res->records = st->records;
    res->persons = st->persons;

    if (full) {
        /* A snapshot of the item as of as_of: whoever holds it then (the
         * version in force at as_of is not a deletion), is absent from the
         * file and has no later version waiting to take effect, ends at as_of. */
        const char *p[5] = {l->item_code, as_of, system_id, ld.batch, ld.layout_version};
        e = exec_ok(c,
                    "INSERT INTO replica (local_id, item_code, effective_from, deleted, data, "
                    "                     system_id, batch_id, layout_version) "
                    "SELECT cur.local_id, $1, $2::date, true, '{}', $3, $4::bigint, $5::int "
                    "FROM (SELECT DISTINCT ON (local_id) local_id, deleted "
                    "      FROM replica WHERE item_code = $1 AND effective_from <= $2::date "
                    "        AND batch_id IS DISTINCT FROM $4::bigint "
                    "      ORDER BY local_id, version DESC) cur "
                    "WHERE NOT cur.deleted "
                    "  AND NOT EXISTS (SELECT 1 FROM replica f WHERE f.batch_id = $4::bigint "
                    "                  AND f.local_id = cur.local_id AND f.item_code = $1) "
                    "  AND NOT EXISTS (SELECT 1 FROM replica l WHERE l.local_id = cur.local_id "
                    "                  AND l.item_code = $1 AND l.effective_from > $2::date)",
                    5, p, "bulk snapshot deletions", &r, msg, msglen);
        if (e != KH_OK)
            return e;
        res->deleted_absent = strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    char recs[24], pers[24], del[24];
    snprintf(recs, sizeof recs, "%llu", (unsigned long long)res->records);
    snprintf(pers, sizeof pers, "%llu", (unsigned long long)res->persons);
    snprintf(del, sizeof del, "%llu", (unsigned long long)res->deleted_absent);
    const char *p[4] = {ld.batch, recs, pers, del};
    return exec_ok(c,
                   "UPDATE bulk_file SET records = $2::bigint, persons = $3::bigint, "
                   "deleted_absent = $4::bigint, applied_at = now() WHERE id = $1::bigint",
                   4, p, "bulk finish", NULL, msg, msglen);
}
