/* gw_admin_import.c: a tenant's staff and role assignments as CSV, for the
 * yearly rotation (April): exported, edited in a spreadsheet or produced by
 * the personnel system, imported again.
 *
 *   staff:        staff_id,display_name,active
 *   assignments:  staff_id,role_code,valid_from,valid_to
 *
 * An import is all or nothing. Every line is checked first (the CSV syntax
 * by refdb's reader, the one home of what a CSV record is; then each
 * field), then against the tenant's tables in one transaction (an ID twice
 * in the file, an unknown staff member or role); any problem and nothing is
 * written, and the answer (KH-6012) lists the lines with what is wrong and
 * where, up to IMPORT_REPORT_MAX of them. Otherwise every line is applied in
 * that transaction (created, updated or unchanged: a line sets, it never
 * deletes; staff leave with active=false, assignments end with valid_to),
 * the audit_log row records the counts and the file's SHA-256, and the
 * transaction commits. check=true runs everything and rolls back. Messages
 * name lines, columns and IDs, never a display name. */
#define _GNU_SOURCE /* memfd_create */
#include "gw_adm.h"

#include "khcrypto.h"
#include "khid.h"
#include "khjson.h"
#include "refdb.h"
#include "refdb_csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#define IMPORT_REPORT_MAX 100       /* problems listed in a refusal */
#define IMPORT_MAX_LINES 100000     /* lines of a file (more: split it) */
#define IMPORT_ROWS_MAX (64u << 20) /* the lines as JSON for PostgreSQL */

typedef struct {
    const char *what;    /* "staff" or "assignments" */
    const char *columns; /* the header, exactly */
    size_t ncols;
} import_kind;

static const import_kind STAFF = {"staff", "staff_id,display_name,active", 3};
static const import_kind ASSIGN = {"assignments", "staff_id,role_code,valid_from,valid_to", 4};

/* A line's key (staff_id; or staff_id, role_code, valid_from) for the
 * check that no key is in the file twice. */
typedef struct {
    char key[112]; /* 32 + ", role " + 32 + " from " + 10 */
    size_t line;
} line_key;

typedef struct {
    const import_kind *k;
    line_key *keys;
    size_t nkeys, capkeys;
    khj_writer rows;   /* [{"line", fields...}...] for PostgreSQL */
    khj_writer errors; /* [{"line", "column", "message"}...] */
    size_t nerrors, nlines;
} import_run;

static void problem(import_run *run, size_t line, const char *column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(import_run *run, size_t line, const char *column, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    if (run->nerrors++ >= IMPORT_REPORT_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    khjw_obj(&run->errors);
    khjw_kint(&run->errors, "line", (int64_t)line);
    khjw_kstr(&run->errors, "column", column);
    khjw_kstr(&run->errors, "message", msg);
    khjw_obj_end(&run->errors);
}

/* The checks of one field that need no database (the API's own rules). */
static bool field_ok(import_run *run, size_t line, const char *col, const char *v)
{
    const char *why = NULL;
    if (strcmp(col, "staff_id") == 0 || strcmp(col, "role_code") == 0)
        why = adm_reg_id_why(v);
    else if (strcmp(col, "display_name") == 0)
        why = adm_reg_name_why(v);
    else if (strcmp(col, "active") == 0 && strcasecmp(v, "true") != 0 &&
             strcasecmp(v, "false") != 0)
        why = "true or false"; /* spreadsheets write TRUE and FALSE */
    else if (strncmp(col, "valid_", 6) == 0 && !adm_date_ok(v) &&
             !(*v == '\0' && strcmp(col, "valid_to") == 0)) /* empty: open-ended */
        why = "a date YYYY-MM-DD";
    if (why != NULL)
        problem(run, line, col, "%s", why);
    return why == NULL;
}

static bool add_key(import_run *run, size_t line, const char *a, const char *b, const char *c)
{
    if (run->nkeys == run->capkeys) {
        size_t cap = run->capkeys ? run->capkeys * 2 : 256;
        line_key *k = realloc(run->keys, cap * sizeof *k);
        if (k == NULL)
            return false;
        run->keys = k;
        run->capkeys = cap;
    }
    line_key *k = &run->keys[run->nkeys++];
    snprintf(k->key, sizeof k->key, "%s%s%s%s%s", a, *b ? ", role " : "", b, *c ? " from " : "", c);
    k->line = line;
    return true;
}

static int key_cmp(const void *x, const void *y)
{
    const line_key *a = x, *b = y;
    int d = strcmp(a->key, b->key);
    return d != 0 ? d : (a->line > b->line) - (a->line < b->line);
}

typedef struct {
    size_t line, first; /* a line, and the earlier line with its key */
    const char *key;
} repeat;

static int repeat_cmp(const void *x, const void *y)
{
    const repeat *a = x, *b = y;
    return (a->line > b->line) - (a->line < b->line);
}

/* Each line whose key an earlier line has, named with that line, in line
 * order. */
static bool duplicates(import_run *run)
{
    repeat *rep = calloc(run->nkeys ? run->nkeys : 1, sizeof *rep);
    size_t n = 0, first = 0;
    if (rep == NULL)
        return false;
    if (run->nkeys > 1) /* no keys: no array (qsort wants one even for none) */
        qsort(run->keys, run->nkeys, sizeof *run->keys, key_cmp);
    for (size_t i = 1; i < run->nkeys; i++) {
        if (strcmp(run->keys[i].key, run->keys[i - 1].key) != 0) {
            first = i;
            continue;
        }
        rep[n++] = (repeat){run->keys[i].line, run->keys[first].line, run->keys[i].key};
    }
    if (n > 1)
        qsort(rep, n, sizeof *rep, repeat_cmp);
    for (size_t i = 0; i < n; i++)
        problem(run, rep[i].line, "staff_id", "%s is also on line %zu", rep[i].key, rep[i].first);
    free(rep);
    return true;
}

/* Reads the CSV: the header, then every record into run->rows; problems
 * into run->errors. Returns false if the body cannot be read at all. */
static bool read_csv(adm_call *call, import_run *run, uint8_t digest[32])
{
    int fd = memfd_create("kh-import", MFD_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = false;
    refdb_csv *r = NULL;
    if (write(fd, call->csv, call->csvlen) != (ssize_t)call->csvlen ||
        lseek(fd, 0, SEEK_SET) != 0 || (r = refdb_csv_new(fd)) == NULL)
        goto out;
    refdb_csv_record rec;
    int got;
    bool header = true;
    while ((got = refdb_csv_next(r, &rec)) == 1) {
        const char *f[4];
        if (rec.too_long || rec.syntax || rec.encoding) {
            problem(run, rec.line, "-", "%s",
                    rec.too_long ? "record too long"
                    : rec.syntax ? rec.syntax
                                 : rec.encoding);
            header = false;
            continue;
        }
        if (header) {
            size_t len;
            const char *d = refdb_csv_data(r, &len);
            char have[128] = "";
            for (size_t i = 0, o = 0; i < len && o + 1 < sizeof have; i++)
                have[o++] = d[i] == '\0' ? ',' : d[i];
            have[strlen(have) > 0 ? strlen(have) - 1 : 0] = '\0';
            if (rec.nfields != run->k->ncols || strcmp(have, run->k->columns) != 0)
                problem(run, rec.line, "-", "the header must be %s", run->k->columns);
            header = false;
            continue;
        }
        if (rec.nfields == 1 && refdb_csv_field(r, 0)[0] == '\0')
            continue; /* an empty line */
        if (++run->nlines > IMPORT_MAX_LINES) {
            problem(run, rec.line, "-", "more than %d lines: split the file", IMPORT_MAX_LINES);
            got = 0; /* the rest is not read */
            break;
        }
        if (rec.nfields != run->k->ncols) {
            problem(run, rec.line, "-", "%zu fields, expected %zu (%s)", rec.nfields, run->k->ncols,
                    run->k->columns);
            continue;
        }
        refdb_csv_fields(r, 0, rec.nfields, f);
        bool good = true;
        const char *cols = run->k->columns;
        khjw_obj(&run->rows);
        khjw_kint(&run->rows, "line", (int64_t)rec.line);
        for (size_t i = 0; i < rec.nfields; i++) {
            char col[16];
            size_t n = strcspn(cols, ",");
            snprintf(col, sizeof col, "%.*s", (int)n, cols);
            cols += n + (cols[n] == ',');
            good = field_ok(run, rec.line, col, f[i]) && good;
            khjw_key(&run->rows, col);
            if (f[i][0] == '\0')
                khjw_null(&run->rows);
            else if (strcmp(col, "active") == 0)
                khjw_bool(&run->rows, strcasecmp(f[i], "true") == 0);
            else
                khjw_str(&run->rows, f[i]);
        }
        khjw_obj_end(&run->rows);
        if (run->rows.failed)
            goto out; /* over IMPORT_ROWS_MAX or out of memory */
        /* a key of a line whose fields are wrong could be anything (a name
         * in a shifted column): it is neither kept nor echoed */
        if (good && !add_key(run, rec.line, f[0], run->k == &ASSIGN ? f[1] : "",
                             run->k == &ASSIGN ? f[2] : ""))
            goto out;
        if (good && run->k == &ASSIGN && f[3][0] && strcmp(f[3], f[2]) < 0)
            problem(run, rec.line, "valid_to", "before valid_from");
    }
    if (got == 0) {
        if (!duplicates(run))
            goto out;
        if (header)
            problem(run, 1, "-", "the file is empty; the header must be %s", run->k->columns);
        refdb_csv_sha256(r, digest);
        ok = true;
    }
out:
    refdb_csv_free(r);
    close(fd);
    return ok;
}

/* The checks against the tenant's tables: each returns rows (line, column,
 * message); $2 is reopen=true. A line may not give back what was taken
 * away unless asked to (a March export imported in April): make an inactive
 * member active, or reopen or extend an assignment that has ended. */
static const char *const DB_CHECKS_STAFF[] = {
    "SELECT x.line, 'active', 'staff_id ' || x.staff_id || ' is inactive: this line would make "
    "them active again (reopen=true to mean it)' FROM rows x JOIN staff s USING (staff_id) "
    "WHERE NOT s.active AND x.active AND NOT $2::bool",
    NULL};
static const char *const DB_CHECKS_ASSIGN[] = {
    "SELECT x.line, 'staff_id', 'no staff member ' || x.staff_id || ' in this tenant (import "
    "the staff first)' FROM rows x WHERE NOT EXISTS (SELECT 1 FROM staff s WHERE s.staff_id = "
    "x.staff_id) AND $2::bool IS NOT NULL",
    "SELECT x.line, 'role_code', 'no job role ' || x.role_code || ' in this tenant' FROM rows x "
    "WHERE NOT EXISTS (SELECT 1 FROM job_role r WHERE r.role_code = x.role_code) AND $2::bool "
    "IS NOT NULL",
    "SELECT x.line, 'valid_to', x.staff_id || ', role ' || x.role_code || ' from ' || "
    "to_char(x.valid_from, 'YYYY-MM-DD') || ' ended ' || to_char(a.valid_to, 'YYYY-MM-DD') || "
    "': this line would ' || CASE WHEN x.valid_to IS NULL THEN 'reopen' ELSE 'extend' END || "
    "' it (reopen=true to mean it)' FROM rows x JOIN staff_role a USING (staff_id, role_code, "
    "valid_from) WHERE a.valid_to <= current_date AND (x.valid_to IS NULL OR x.valid_to > "
    "a.valid_to) AND NOT $2::bool",
    NULL};

#define ROWS_STAFF                                                                                 \
    "WITH rows AS (SELECT * FROM json_to_recordset($1::json) AS x(line int, staff_id text, "       \
    "display_name text, active bool)) "
#define ROWS_ASSIGN                                                                                \
    "WITH rows AS (SELECT * FROM json_to_recordset($1::json) AS x(line int, staff_id text, "       \
    "role_code text, valid_from date, valid_to date)) "

/* Applies the rows: one statement answering (created, updated, the
 * changes as JSON: each row created or updated, with its values before;
 * IDs, flags and dates only, never a name). */
static const char APPLY_STAFF[] = ROWS_STAFF
    ", old AS (SELECT s.staff_id, s.display_name, s.active FROM staff s WHERE s.staff_id IN "
    "(SELECT staff_id FROM rows)), "
    "up AS (INSERT INTO staff AS o (staff_id, display_name, active) SELECT staff_id, "
    "display_name, active FROM rows ON CONFLICT (staff_id) DO UPDATE SET display_name = "
    "EXCLUDED.display_name, active = EXCLUDED.active WHERE (o.display_name, o.active) IS "
    "DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.active) RETURNING o.staff_id, "
    "o.display_name, o.active, (xmax = 0) AS created) "
    "SELECT count(*) FILTER (WHERE up.created), count(*) FILTER (WHERE NOT up.created), "
    "coalesce(json_agg(json_strip_nulls(json_build_object('staff_id', up.staff_id, 'created', "
    "up.created, 'active_before', old.active, 'active', up.active, 'name_changed', CASE WHEN "
    "NOT up.created THEN old.display_name IS DISTINCT FROM up.display_name END)) ORDER BY "
    "up.staff_id), '[]')::text FROM up LEFT JOIN old ON old.staff_id = up.staff_id";
static const char APPLY_ASSIGN[] = ROWS_ASSIGN
    ", old AS (SELECT a.* FROM staff_role a JOIN rows x USING (staff_id, role_code, "
    "valid_from)), "
    "up AS (INSERT INTO staff_role AS o (staff_id, role_code, valid_from, valid_to) SELECT "
    "staff_id, role_code, valid_from, valid_to FROM rows ON CONFLICT (staff_id, role_code, "
    "valid_from) DO UPDATE SET valid_to = EXCLUDED.valid_to WHERE o.valid_to IS DISTINCT FROM "
    "EXCLUDED.valid_to RETURNING o.*, (xmax = 0) AS created) "
    "SELECT count(*) FILTER (WHERE up.created), count(*) FILTER (WHERE NOT up.created), "
    "coalesce(json_agg(json_build_object('staff_id', up.staff_id, 'role_code', up.role_code, "
    "'valid_from', up.valid_from, 'valid_to', up.valid_to, 'created', up.created, "
    "'valid_to_before', old.valid_to) ORDER BY up.staff_id, up.role_code, up.valid_from), "
    "'[]')::text FROM up LEFT JOIN old USING (staff_id, role_code, valid_from)";

/* The refusal with its report: {"code", "message", "lines", "errors_total", "errors"}. */
static void refuse(adm_call *call, import_run *run)
{
    khj_writer w;
    char msg[160];
    khjw_arr_end(&run->errors);
    char *errs = khjw_finish(&run->errors, NULL);
    snprintf(msg, sizeof msg, "%zu problem%s in the %s file; nothing was changed", run->nerrors,
             run->nerrors == 1 ? "" : "s", run->k->what);
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "code", kh_err_code(KH_E_ADM_IMPORT));
    khjw_kstr(&w, "message", msg);
    khjw_kint(&w, "lines", (int64_t)run->nlines);
    khjw_kint(&w, "errors_total", (int64_t)run->nerrors);
    khjw_key(&w, "errors");
    khjw_raw(&w, errs ? errs : "[]", errs ? strlen(errs) : 2);
    khjw_obj_end(&w);
    free(errs);
    adm_set_out(call, &w, 0);
    adm_set_err(call, KH_E_ADM_IMPORT, "%s", msg);
    call->report = true;
}

/* The counts of an applied (or checked) file, into an open object. */
static void write_counts(khj_writer *w, const import_run *run, const char *hex, long created,
                         long updated)
{
    khjw_kstr(w, "file", run->k->what);
    khjw_kstr(w, "sha256", hex);
    khjw_kint(w, "lines", (int64_t)run->nlines);
    khjw_kint(w, "created", created);
    khjw_kint(w, "updated", updated);
    khjw_kint(w, "unchanged", (long)run->nlines - created - updated);
}

/* Checks the rows against the tenant's tables and applies them, in the
 * transaction begun on c; answers the counts, or refuses with the report.
 * The audit row has the counts and every row created or changed. */
static void apply(PGconn *c, adm_call *call, import_run *run, const char *rows, const char *hex,
                  bool dry, bool reopen)
{
    const import_kind *k = run->k;
    const char *p[2] = {rows, reopen ? "true" : "false"};
    char sql[2048];
    for (const char *const *q = k == &STAFF ? DB_CHECKS_STAFF : DB_CHECKS_ASSIGN; *q; q++) {
        snprintf(sql, sizeof sql, "%s%s ORDER BY 1", k == &STAFF ? ROWS_STAFF : ROWS_ASSIGN, *q);
        PGresult *r = kh_db_exec(c, sql, 2, p);
        if (adm_db_failed(call, r))
            return;
        for (int i = 0; i < PQntuples(r); i++)
            problem(run, (size_t)atol(PQgetvalue(r, i, 0)), PQgetvalue(r, i, 1), "%s",
                    PQgetvalue(r, i, 2));
        PQclear(r);
    }
    if (run->nerrors > 0) {
        refuse(call, run);
        return;
    }
    PGresult *r = kh_db_exec(c, k == &STAFF ? APPLY_STAFF : APPLY_ASSIGN, 1, p);
    if (adm_db_failed(call, r))
        return;
    long created = atol(PQgetvalue(r, 0, 0)), updated = atol(PQgetvalue(r, 0, 1));
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    write_counts(&w, run, hex, created, updated);
    khjw_key(&w, "changes");
    khjw_raw(&w, PQgetvalue(r, 0, 2), strlen(PQgetvalue(r, 0, 2)));
    khjw_obj_end(&w);
    PQclear(r);
    char *detail = khjw_finish(&w, NULL);
    bool done =
        detail != NULL && (dry || (adm_tenant_audit(c, call, k->what, detail, KH_OK) == KH_OK &&
                                   kh_db_commit(c) == KH_OK));
    free(detail);
    if (!done) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        return;
    }
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "tenant", call->org);
    khjw_kbool(&w, "check", dry);
    khjw_kbool(&w, "applied", !dry);
    khjw_key(&w, "import");
    khjw_obj(&w);
    write_counts(&w, run, hex, created, updated);
    khjw_obj_end(&w);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

static void import(PGconn *c, adm_call *call, const import_kind *k)
{
    static const char *const known[] = {"check", "reopen", NULL};
    static const char *const bools[] = {"true", "false", NULL};
    const char *check, *reopen;
    uint8_t digest[32];
    char hex[65];
    import_run run = {.k = k};
    if (!adm_query_known(call, known) || !adm_query_enum(call, "check", bools, &check) ||
        !adm_query_enum(call, "reopen", bools, &reopen))
        return;
    bool dry = check && strcmp(check, "true") == 0;
    khjw_init(&run.rows, IMPORT_ROWS_MAX);
    khjw_init(&run.errors, 0);
    khjw_arr(&run.rows);
    khjw_arr(&run.errors);
    bool read = read_csv(call, &run, digest);
    khjw_arr_end(&run.rows);
    /* the rows hold the staff's names: wiped when done */
    size_t rlen = 0;
    char *rows = khjw_finish(&run.rows, &rlen);
    if (run.nerrors > 0) {
        refuse(call, &run);
    } else if (!read || rows == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "cannot read the file (out of memory)");
    } else if (adm_tenant_begin(&c, call)) {
        khc_hex(digest, sizeof digest, hex);
        apply(c, call, &run, rows, hex, dry, reopen && strcmp(reopen, "true") == 0);
        if (call->err != KH_OK || dry)
            kh_db_rollback(c);
    }
    khjw_discard(&run.errors); /* if not finished into the refusal */
    free(run.keys);
    khc_free_secret(rows, rlen);
}

void adm_staff_import_work(PGconn *c, adm_call *call)
{
    import(c, call, &STAFF);
}

void adm_assign_import_work(PGconn *c, adm_call *call)
{
    import(c, call, &ASSIGN);
}

/* ------------------------------------------------------------- export */

/* The rows as CSV with the import's header, for a spreadsheet: a UTF-8 BOM
 * (or Excel reads Japanese text as Shift_JIS; the import skips it), CRLF,
 * the cells by refdb_csv_cell (quoted when needed, a formula lead
 * neutralised). Written into one buffer of the worst case's size, so that
 * no copy of a name is left behind by a reallocation; PostgreSQL's copy is
 * wiped too. */
static void export(PGconn *c, adm_call *call, const import_kind *k, const char *sql)
{
    static const char *const known[] = {NULL};
    if (!adm_query_known(call, known) || !adm_tenant_begin(&c, call))
        return;
    PGresult *r = kh_db_exec(c, sql, 0, NULL);
    kh_db_rollback(c);
    if (adm_db_failed(call, r))
        return;
    size_t cap = 3 + strlen(k->columns) + 3;
    for (int i = 0; i < PQntuples(r); i++)
        for (int j = 0; j < PQnfields(r); j++)
            cap += 2 * (size_t)PQgetlength(r, i, j) + 6; /* quotes, apostrophe, comma, CRLF */
    char *buf = calloc(1, cap + 1);
    FILE *out = buf ? fmemopen(buf, cap + 1, "w") : NULL;
    if (out == NULL) {
        free(buf);
        PQclear(r);
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    setvbuf(out, NULL, _IONBF, 0); /* no stdio buffer holding names */
    fprintf(out, "\xEF\xBB\xBF%s\r\n", k->columns);
    for (int i = 0; i < PQntuples(r); i++) {
        for (int j = 0; j < PQnfields(r); j++) {
            if (j)
                fputc(',', out);
            if (!PQgetisnull(r, i, j))
                refdb_csv_cell(out, PQgetvalue(r, i, j));
            khc_wipe(PQgetvalue(r, i, j), (size_t)PQgetlength(r, i, j));
        }
        fputs("\r\n", out);
    }
    PQclear(r);
    long len = ftell(out);
    if (fclose(out) != 0 || len < 0) {
        khc_free_secret(buf, cap + 1);
        adm_set_err(call, KH_E_INTERNAL, "cannot write the export");
        return;
    }
    call->out = buf;
    call->outlen = (size_t)len;
    call->err = KH_OK;
    call->status = 200;
    call->content_type = "text/csv; charset=utf-8";
}

void adm_staff_export_work(PGconn *c, adm_call *call)
{
    export(c, call, &STAFF,
           "SELECT staff_id, display_name, active::text FROM staff ORDER BY staff_id");
}

void adm_assign_export_work(PGconn *c, adm_call *call)
{
    export(c, call, &ASSIGN,
           "SELECT staff_id, role_code, to_char(valid_from, 'YYYY-MM-DD'), to_char(valid_to, "
           "'YYYY-MM-DD') FROM staff_role "
           "ORDER BY staff_id, role_code, valid_from");
}
