/* refdb_check.c: the bulk-file checker (refdb_check_stream) and the report
 * rows (refdb/FORMAT.md sections 3 and 4). One pass, constant memory: the
 * reader's buffers, one copy of the previous record and the key of the
 * previous record; nothing grows with the file.
 *
 * Which checks a record gets:
 * - too long (KH-1115): nothing else, its fields were dropped;
 * - a syntax or encoding problem (KH-1101, KH-1102): every check but the
 *   value rules, whose verdicts would only repeat the problem;
 * - column count (KH-1104): key, flags, order and latest flags still, from
 *   the first four columns; values are not checked (they may be shifted);
 * - a deletion row: every field column empty (KH-1110) instead of the value
 *   rules.
 * A record takes part in order, duplicate and latest-flag checks when its
 * local_id and effective_from are well formed.
 *
 * Latest flags need the next record: a row with latest_flag 1 is wrong if the
 * same person has a later row, and a person's last row is wrong if none of
 * their rows has latest_flag 1. Both problems are reported at that earlier
 * row when the next well-formed record arrives (or at the end), before any
 * problem of the new record, so the report stays in file order; and the
 * earlier row goes to record_fn only then. A record with a malformed key in
 * between cuts the chain: the earlier row is settled at once (as good, unless
 * it has problems of its own), as the file is rejected anyway. */
#include "refdb.h"
#include "refdb_csv.h"
#include "refdb_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PROGRESS_EVERY 10000
#define NKEYCOLS 4

static const char *const key_cols[NKEYCOLS] = {"local_id", "effective_from", "latest_flag",
                                               "delete_flag"};

typedef struct {
    const refdb_layout *l;
    const refdb_vplan *plan; /* l's value rules, worked out once */
    refdb_issue_fn issue_fn;
    refdb_record_fn record_fn;
    void *arg;
    refdb_file_stats *st;
    bool header_ok;
    bool stop; /* record_fn asked to stop */

    /* the record being checked */
    size_t line;
    bool bad;
    const char **vals; /* l->ncols pointers into the reader's record */

    /* the key of the last record with a well-formed key */
    bool have_key;
    char key_id[16];
    char key_from[9];
    size_t person_latest; /* rows with latest_flag 1 of that person so far */
    bool person_unsure;   /* a row of that person has a bad latest_flag */

    /* that record, while its latest flag is unsettled */
    bool pend;
    size_t pend_line;
    bool pend_bad;
    bool pend_latest;
    refdb_record pend_rec;
    char *pend_buf;         /* copy of its fields when it may go to record_fn */
    const char **pend_vals; /* l->ncols pointers into pend_buf */
} check_ctx;

static void emit(check_ctx *c, bool *bad, size_t line, const char *field, kh_err code,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Reports one problem; bad (or NULL for the header) is the flag of the record
 * it belongs to. */
static void emit(check_ctx *c, bool *bad, size_t line, const char *field, kh_err code,
                 const char *fmt, ...)
{
    refdb_issue is;
    va_list ap;
    memset(&is, 0, sizeof is);
    is.line = line;
    is.code = code;
    snprintf(is.field, sizeof is.field, "%s", field != NULL && field[0] != '\0' ? field : "-");
    va_start(ap, fmt);
    vsnprintf(is.reason, sizeof is.reason, fmt, ap);
    va_end(ap);
    c->st->issues++;
    if (bad != NULL && !*bad) {
        *bad = true;
        c->st->bad_records++;
    }
    if (c->issue_fn != NULL)
        c->issue_fn(&is, c->arg);
}

/* refdb_validate_values reports through here. */
static void value_issue(const refdb_issue *is, void *arg)
{
    check_ctx *c = arg;
    c->st->issues++;
    if (!c->bad) {
        c->bad = true;
        c->st->bad_records++;
    }
    if (c->issue_fn != NULL)
        c->issue_fn(is, c->arg);
}

static const char *column_name(const check_ctx *c, size_t i)
{
    if (i < NKEYCOLS)
        return key_cols[i];
    if (i - NKEYCOLS < c->l->ncols)
        return c->l->cols[i - NKEYCOLS].name;
    return "-";
}

/* 0, 1, or -1 for anything else */
static int flag_value(const char *s)
{
    if ((s[0] == '0' || s[0] == '1') && s[1] == '\0')
        return s[0] - '0';
    return -1;
}

static void reader_issues(check_ctx *c, bool *bad, const refdb_csv_record *rec)
{
    if (rec->syntax != NULL)
        emit(c, bad, rec->line, "-", KH_E_CSV_SYNTAX, "the record %s", rec->syntax);
    if (rec->encoding != NULL)
        emit(c, bad, rec->line, c->header_ok ? column_name(c, rec->encoding_field) : "-",
             KH_E_ENCODING, "the record %s", rec->encoding);
    if (rec->too_long)
        emit(c, bad, rec->line, "-", KH_E_RECORD_TOO_LONG,
             "the record is longer than %d bytes; reading goes on at the next line",
             REFDB_CSV_MAX_RECORD);
}

static void check_header(check_ctx *c, refdb_csv *r, const refdb_csv_record *rec)
{
    const refdb_layout *l = c->l;
    size_t want = NKEYCOLS + l->ncols;
    if (rec->syntax != NULL || rec->encoding != NULL || rec->too_long) {
        reader_issues(c, NULL, rec);
        emit(c, NULL, rec->line, "-", KH_E_HEADER, "the header row cannot be read");
        return;
    }
    for (size_t i = 0; i < rec->nfields && i < want; i++) {
        if (strcmp(refdb_csv_field(r, i), column_name(c, i)) != 0) {
            emit(c, NULL, rec->line, column_name(c, i), KH_E_HEADER,
                 "header column %zu is not %s (layout %s version %d)", i + 1, column_name(c, i),
                 l->item_code, l->layout_version);
            return;
        }
    }
    if (rec->nfields != want) {
        emit(c, NULL, rec->line, "-", KH_E_HEADER,
             "the header has %zu columns; layout %s version %d has %zu", rec->nfields, l->item_code,
             l->layout_version, want);
        return;
    }
    c->header_ok = true;
}

/* Hands the pending record to record_fn unless it has a problem, and forgets
 * it. */
static void settle(check_ctx *c)
{
    if (!c->pend)
        return;
    c->pend = false;
    if (!c->pend_bad && c->record_fn != NULL && c->record_fn(&c->pend_rec, c->arg) != 0)
        c->stop = true;
}

/* Keeps the current record as the pending one; a copy of its fields only if
 * it may go to record_fn. */
static void keep(check_ctx *c, refdb_csv *r, const refdb_csv_record *rec, const char *id,
                 const char *from, int latest, int del)
{
    c->pend = true;
    c->pend_line = rec->line;
    c->pend_bad = c->bad;
    c->pend_latest = latest == 1;
    if (c->bad || c->record_fn == NULL)
        return; /* pend_rec is for record_fn only */
    /* A good record has the full column count (c->vals holds its values),
     * good flags and no NUL byte: its fields are copied in one block, then
     * the pointers moved over. */
    size_t len;
    const char *data = refdb_csv_data(r, &len);
    char *p = c->pend_buf;
    memcpy(p, data, len); /* fits: the fields came from a buffer of the same size */
    for (size_t i = 0; i < c->l->ncols; i++)
        c->pend_vals[i] = p + (c->vals[i] - data);
    c->pend_rec.line = rec->line;
    c->pend_rec.local_id = p + (id - data);
    c->pend_rec.effective_from = p + (from - data);
    c->pend_rec.latest = latest == 1;
    c->pend_rec.deleted = del == 1;
    c->pend_rec.vals = c->pend_vals;
    c->pend_rec.nvals = c->l->ncols;
}

static void check_record(check_ctx *c, refdb_csv *r, const refdb_csv_record *rec)
{
    const refdb_layout *l = c->l;
    size_t want = NKEYCOLS + l->ncols;
    const char *id = NULL, *from = NULL;
    bool id_ok = false, from_ok = false;
    int latest = -1, del = -1;

    c->line = rec->line;
    c->bad = false;
    if (!rec->too_long && rec->nfields >= NKEYCOLS) {
        id = refdb_csv_field(r, 0);
        from = refdb_csv_field(r, 1);
        id_ok = kh_id_local_id(id);
        from_ok = kh_id_date(from);
        latest = flag_value(refdb_csv_field(r, 2));
        del = flag_value(refdb_csv_field(r, 3));
    }
    bool keyed = id_ok && from_ok;
    bool same = keyed && c->have_key && strcmp(id, c->key_id) == 0;

    /* First what this record says about the pending one (an earlier line). */
    if (keyed && c->pend) {
        if (same && c->pend_latest)
            emit(c, &c->pend_bad, c->pend_line, "latest_flag", KH_E_LATEST,
                 latest == 1 ? "several rows of this person have latest_flag 1; only the last "
                               "row may"
                             : "latest_flag is 1 but this is not the person's last row");
        else if (!same && c->person_latest == 0 && !c->person_unsure)
            emit(c, &c->pend_bad, c->pend_line, "latest_flag", KH_E_LATEST,
                 "no row of this person has latest_flag 1; their last row must");
    }
    settle(c);

    /* Then the record's own problems. */
    reader_issues(c, &c->bad, rec);
    if (rec->too_long)
        return;
    if (rec->nfields != want)
        emit(c, &c->bad, rec->line, "-", KH_E_COLUMNS,
             "the record has %zu columns; the header has %zu", rec->nfields, want);
    if (rec->nfields >= NKEYCOLS) {
        if (!id_ok)
            emit(c, &c->bad, rec->line, "local_id", KH_E_KEY_FORMAT,
                 "local_id must be 1 to 15 digits");
        if (!from_ok)
            emit(c, &c->bad, rec->line, "effective_from", KH_E_KEY_FORMAT,
                 "effective_from must be a real date as YYYYMMDD");
        if (latest < 0)
            emit(c, &c->bad, rec->line, "latest_flag", KH_E_FLAG, "latest_flag must be 0 or 1");
        if (del < 0)
            emit(c, &c->bad, rec->line, "delete_flag", KH_E_FLAG, "delete_flag must be 0 or 1");
    }
    if (rec->nfields == want) {
        refdb_csv_fields(r, NKEYCOLS, l->ncols, c->vals);
        if (del == 1) {
            for (size_t i = 0; i < l->ncols; i++)
                if (c->vals[i][0] != '\0')
                    emit(c, &c->bad, rec->line, l->cols[i].name, KH_E_FLAG,
                         "a deletion row must leave every field empty");
        } else if (rec->syntax == NULL && rec->encoding == NULL) {
            refdb_vplan_validate(c->plan, c->vals, rec->line, value_issue, c);
        }
    }
    if (!keyed)
        return;

    /* Order and duplicates against the previous well-formed key. */
    if (c->have_key) {
        int cmp = strcmp(id, c->key_id);
        if (cmp < 0)
            emit(c, &c->bad, rec->line, "local_id", KH_E_ORDER,
                 "local_id sorts before the previous record's; sort by local_id, then "
                 "effective_from");
        else if (cmp == 0 && strcmp(from, c->key_from) == 0)
            emit(c, &c->bad, rec->line, "-", KH_E_DUPLICATE_KEY,
                 "same local_id and effective_from as the previous record");
        else if (cmp == 0 && strcmp(from, c->key_from) < 0)
            emit(c, &c->bad, rec->line, "effective_from", KH_E_ORDER,
                 "effective_from is before the previous record's of this person");
    }
    if (!same) {
        c->st->persons++;
        c->person_latest = 0;
        c->person_unsure = false;
    }
    if (latest == 1)
        c->person_latest++;
    else if (latest < 0)
        c->person_unsure = true;
    c->have_key = true;
    memcpy(c->key_id, id, strlen(id) + 1); /* 1..15 digits */
    memcpy(c->key_from, from, 9);          /* 8 digits */
    keep(c, r, rec, id, from, latest, del);
}

/* The end of the file ends the last person. */
static void finish(check_ctx *c)
{
    if (c->pend && c->person_latest == 0 && !c->person_unsure)
        emit(c, &c->pend_bad, c->pend_line, "latest_flag", KH_E_LATEST,
             "no row of this person has latest_flag 1; their last row must");
    settle(c);
}

static void fill_stats(refdb_file_stats *st, refdb_csv *r)
{
    st->bytes = refdb_csv_bytes(r);
    st->lines = refdb_csv_lines(r);
}

kh_err refdb_check_stream(int fd, const refdb_layout *l, refdb_issue_fn issue_fn,
                          refdb_record_fn record_fn, refdb_progress_fn progress_fn, void *arg,
                          refdb_file_stats *st)
{
    refdb_file_stats dummy;
    check_ctx c;
    refdb_csv *r = NULL;
    refdb_vplan *plan = NULL;
    refdb_csv_record rec;
    bool failed = false, first = true;
    int read_errno = 0;

    if (st == NULL)
        st = &dummy;
    memset(st, 0, sizeof *st);
    if (l == NULL || (l->ncols > 0 && l->cols == NULL))
        return KH_E_INTERNAL;
    memset(&c, 0, sizeof c);
    c.l = l;
    c.issue_fn = issue_fn;
    c.record_fn = record_fn;
    c.arg = arg;
    c.st = st;
    r = refdb_csv_new(fd);
    plan = refdb_vplan_new(l);
    c.plan = plan;
    c.vals = calloc(l->ncols + 1, sizeof *c.vals);
    c.pend_vals = calloc(l->ncols + 1, sizeof *c.pend_vals);
    c.pend_buf = malloc(REFDB_CSV_MAX_RECORD + 1);
    if (r == NULL || plan == NULL || c.vals == NULL || c.pend_vals == NULL || c.pend_buf == NULL) {
        failed = true;
        goto out;
    }

    for (;;) {
        int n = refdb_csv_next(r, &rec);
        if (n < 0) {
            failed = true;
            read_errno = errno;
        }
        if (n <= 0)
            break;
        if (first) {
            first = false;
            check_header(&c, r, &rec);
            continue;
        }
        st->records++;
        if (c.header_ok)
            check_record(&c, r, &rec); /* else the header says it all */
        if (c.stop)
            break;
        if (progress_fn != NULL && st->records % PROGRESS_EVERY == 0) {
            fill_stats(st, r);
            progress_fn(st, arg);
        }
    }
    if (!failed && !c.stop) {
        if (first)
            emit(&c, NULL, 1, "-", KH_E_HEADER, "the file is empty; a header row is expected");
        else if (c.header_ok)
            finish(&c);
    }
    fill_stats(st, r);
    refdb_csv_sha256(r, st->sha256);
    if (progress_fn != NULL)
        progress_fn(st, arg);

out:
    refdb_csv_free(r);
    refdb_vplan_free(plan);
    free(c.vals);
    free(c.pend_vals);
    free(c.pend_buf);
    if (failed || c.stop) {
        if (read_errno != 0)
            errno = read_errno; /* for the caller's message */
        return KH_E_INTERNAL;
    }
    return st->issues == 0 ? KH_OK : KH_E_FILE_REJECTED;
}

void refdb_csv_cell(FILE *out, const char *s)
{
    const char *lead = refdb_formula_lead(s) ? "'" : "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(lead, out);
        fputs(s, out);
        return;
    }
    fputc('"', out);
    fputs(lead, out);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void refdb_report_header(FILE *out)
{
    fputs("line,field,code,reason\n", out);
}

void refdb_report_row(FILE *out, const refdb_issue *issue)
{
    fprintf(out, "%zu,", issue->line);
    refdb_csv_cell(out, issue->field[0] != '\0' ? issue->field : "-");
    fputc(',', out);
    refdb_csv_cell(out, kh_err_code(issue->code));
    fputc(',', out);
    refdb_csv_cell(out, issue->reason);
    fputc('\n', out);
}
