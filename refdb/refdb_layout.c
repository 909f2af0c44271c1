/* refdb_layout.c: item layouts (refdb/FORMAT.md section 1), loaded from the
 * platform catalogue in the database (kh.item, kh.item_field, kh.code_value)
 * or from the catalogue files in sql/catalogue, and flattened into columns.
 * Both loaders end in the same code (fill_fields, then refdb_layout_flatten),
 * so they give the same layout for the same rows. */
#include "refdb.h"
#include "khpool.h"

#include "refdb_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OCCURS 999 /* as kh.item_field's check */

static bool copy_str(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstlen)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

void refdb_layout_free(refdb_layout *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nfields && l->fields != NULL; i++)
        free(l->fields[i].codes_mem);
    free(l->fields);
    free(l->cols);
    memset(l, 0, sizeof *l);
}

/* Sets f's codes to a copy of vals[0..n) in one block: the pointer array,
 * then the strings. */
static bool set_codes(refdb_field_spec *f, const char *const *vals, size_t n)
{
    size_t bytes = n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(vals[i]) + 1;
    char *mem = malloc(bytes > 0 ? bytes : 1);
    if (mem == NULL)
        return false;
    const char **ptrs = (const char **)(void *)mem;
    char *s = mem + n * sizeof(char *);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(vals[i]) + 1;
        memcpy(s, vals[i], len);
        ptrs[i] = s;
        s += len;
    }
    free(f->codes_mem);
    f->codes_mem = mem;
    f->codes = ptrs;
    f->ncodes = n;
    return true;
}

static bool is_type(const refdb_field_spec *f, const char *t)
{
    return strcmp(f->type, t) == 0;
}

/* Checks one field spec against the layout model; "" for pad or charset
 * (layouts built by hand) means no padding rule / any. */
static bool field_ok(const refdb_layout *l, size_t i, char *msg, size_t msglen)
{
    const refdb_field_spec *f = &l->fields[i];
    const char *why = NULL;
    bool group = is_type(f, "GROUP");
    if (!is_type(f, "X") && !is_type(f, "9") && !is_type(f, "S9") && !is_type(f, "DATE") &&
        !is_type(f, "CODE") && !group)
        why = "unknown type";
    else if (group ? f->length != 0
                   : (is_type(f, "DATE") ? f->length != 8 : f->length < 1 || f->length > 999))
        why = "bad length for its type";
    else if (f->min_occurs < 0 || f->max_occurs < 1 || f->max_occurs > MAX_OCCURS ||
             f->min_occurs > f->max_occurs)
        why = "bad occurrence counts";
    else if (is_type(f, "9") && f->pad[0] != '\0' && strcmp(f->pad, "zero") != 0 &&
             strcmp(f->pad, "suppress") != 0)
        why = "pad is neither zero nor suppress";
    else if (!is_type(f, "9") && f->pad[0] != '\0')
        why = "pad on a field that is not 9";
    else if (is_type(f, "X") && f->charset[0] != '\0' && strcmp(f->charset, "any") != 0 &&
             strcmp(f->charset, "ascii") != 0 && strcmp(f->charset, "kana") != 0)
        why = "charset is none of any, ascii, kana";
    else if (!is_type(f, "X") && f->charset[0] != '\0')
        why = "charset on a field that is not X";
    else if (is_type(f, "CODE") != (f->code_table[0] != '\0'))
        why = "a code table belongs to CODE fields only";
    else if (group && (f->group != -1 || f->mandatory))
        why = "a GROUP belongs to no group and is not mandatory (min_occurs says it)";
    else if (f->group != -1 && (f->group < 0 || (size_t)f->group >= l->nfields ||
                                (size_t)f->group == i || !is_type(&l->fields[f->group], "GROUP")))
        why = "its group is not a GROUP field of the layout";
    else if (f->group != -1 && (f->min_occurs != 1 || f->max_occurs != 1))
        why = "a field of a group does not repeat on its own";
    for (size_t j = 0; j < i && why == NULL; j++)
        if (strcmp(l->fields[j].name, f->name) == 0)
            why = "name given twice";
    if (why == NULL && group) {
        bool members = false;
        for (size_t j = 0; j < l->nfields && !members; j++)
            members = l->fields[j].group == (int)i;
        if (!members)
            why = "a GROUP without fields";
    }
    if (why != NULL) {
        refdb_set_msg(msg, msglen, "catalogue: item %s version %d field %s: %s", l->item_code,
                      l->layout_version, f->name, why);
        return false;
    }
    return true;
}

static bool add_col(refdb_layout *l, size_t *cap, size_t field, int occ, const char *group)
{
    const refdb_field_spec *f = &l->fields[field];
    if (l->ncols == *cap) {
        size_t ncap = *cap == 0 ? 32 : *cap * 2;
        refdb_column *p = realloc(l->cols, ncap * sizeof *p);
        if (p == NULL)
            return false;
        l->cols = p;
        *cap = ncap;
    }
    refdb_column *c = &l->cols[l->ncols];
    int n;
    if (group != NULL)
        n = snprintf(c->name, sizeof c->name, "%s[%d].%s", group, occ, f->name);
    else if (f->max_occurs > 1)
        n = snprintf(c->name, sizeof c->name, "%s[%d]", f->name, occ);
    else
        n = snprintf(c->name, sizeof c->name, "%s", f->name);
    if (n < 0 || (size_t)n >= sizeof c->name)
        return false;
    c->field = (int)field;
    c->occurrence = occ;
    l->ncols++;
    return true;
}

kh_err refdb_layout_flatten(refdb_layout *l, char *msg, size_t msglen)
{
    size_t cap = 0;
    free(l->cols);
    l->cols = NULL;
    l->ncols = 0;
    for (size_t i = 0; i < l->nfields; i++)
        if (!field_ok(l, i, msg, msglen))
            return KH_E_INTERNAL;
    for (size_t i = 0; i < l->nfields; i++) {
        const refdb_field_spec *f = &l->fields[i];
        bool ok = true;
        if (f->group != -1)
            continue; /* a column of its group's occurrences */
        for (int occ = 1; occ <= f->max_occurs && ok; occ++) {
            if (!is_type(f, "GROUP")) {
                ok = add_col(l, &cap, i, occ, NULL);
                continue;
            }
            for (size_t j = 0; j < l->nfields && ok; j++)
                if (l->fields[j].group == (int)i)
                    ok = add_col(l, &cap, j, occ, f->name);
        }
        if (!ok) {
            free(l->cols);
            l->cols = NULL;
            l->ncols = 0;
            refdb_set_msg(msg, msglen,
                          "catalogue: item %s version %d field %s: out of memory or a column "
                          "name longer than %zu bytes",
                          l->item_code, l->layout_version, f->name, sizeof l->cols[0].name - 1);
            return KH_E_INTERNAL;
        }
    }
    return KH_OK;
}

/* What the two loaders read for one field, as text. */
typedef struct {
    int seq;
    const char *name, *type, *length, *mandatory, *code_table, *pad, *charset, *min_occurs,
        *max_occurs, *group_name;
} field_row;

/* A decimal int in [lo, hi], nothing else. */
static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    if (s == NULL || s[0] == '\0' || s[0] == ' ' || s[0] == '+')
        return false;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

/* "-" stands for "none" in the catalogue files. */
static const char *none_dash(const char *s)
{
    return strcmp(s, "-") == 0 ? "" : s;
}

/* Fills out->fields from rows (in layout order), resolves groups and
 * flattens. On failure the caller frees out. */
static kh_err fill_fields(refdb_layout *out, const field_row *rows, size_t n, char *msg,
                          size_t msglen)
{
    out->fields = calloc(n, sizeof *out->fields);
    if (out->fields == NULL) {
        refdb_set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    out->nfields = n;
    for (size_t i = 0; i < n; i++) {
        const field_row *r = &rows[i];
        refdb_field_spec *f = &out->fields[i];
        f->group = -1;
        const char *m = r->mandatory;
        if (!copy_str(f->name, sizeof f->name, r->name) ||
            !copy_str(f->type, sizeof f->type, r->type) ||
            !copy_str(f->code_table, sizeof f->code_table, none_dash(r->code_table)) ||
            !copy_str(f->pad, sizeof f->pad, none_dash(r->pad)) ||
            !copy_str(f->charset, sizeof f->charset, none_dash(r->charset)) ||
            !parse_int(r->length, 0, 999, &f->length) ||
            !parse_int(r->min_occurs, 0, MAX_OCCURS, &f->min_occurs) ||
            !parse_int(r->max_occurs, 0, MAX_OCCURS, &f->max_occurs) ||
            (strcmp(m, "t") != 0 && strcmp(m, "f") != 0) || f->name[0] == '\0') {
            refdb_set_msg(msg, msglen, "catalogue: item %s version %d seq %d: malformed field",
                          out->item_code, out->layout_version, r->seq);
            return KH_E_INTERNAL;
        }
        f->mandatory = m[0] == 't';
        if ((is_type(f, "9") && f->pad[0] == '\0') || (is_type(f, "X") && f->charset[0] == '\0')) {
            refdb_set_msg(msg, msglen,
                          "catalogue: item %s version %d field %s: a 9 field needs its pad, an X "
                          "field its charset",
                          out->item_code, out->layout_version, f->name);
            return KH_E_INTERNAL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *g = none_dash(rows[i].group_name);
        if (g[0] == '\0')
            continue;
        for (size_t j = 0; j < n && out->fields[i].group == -1; j++)
            if (strcmp(out->fields[j].name, g) == 0)
                out->fields[i].group = (int)j;
        if (out->fields[i].group == -1) {
            refdb_set_msg(msg, msglen,
                          "catalogue: item %s version %d field %s: group_name names no field",
                          out->item_code, out->layout_version, out->fields[i].name);
            return KH_E_INTERNAL;
        }
    }
    return refdb_layout_flatten(out, msg, msglen);
}

/* ------------------------------------------------------------ database */

static kh_err load_codes_db(PGconn *c, refdb_field_spec *f, char *msg, size_t msglen)
{
    const char *params[1] = {f->code_table};
    PGresult *r = kh_db_try(c,
                            "SELECT code FROM kh.code_value WHERE code_table = $1 "
                            "ORDER BY code COLLATE \"C\"",
                            1, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return refdb_db_fail(c, r, "code table load", msg, msglen);
    size_t nrows = (size_t)PQntuples(r);
    const char **vals = calloc(nrows + 1, sizeof *vals);
    bool ok = vals != NULL;
    for (size_t i = 0; ok && i < nrows; i++)
        vals[i] = PQgetvalue(r, (int)i, 0);
    ok = ok && set_codes(f, vals, nrows);
    free(vals);
    PQclear(r);
    if (!ok) {
        refdb_set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    return KH_OK;
}

kh_err refdb_layout_load(PGconn *c, const char *item_code, refdb_layout *out, char *msg,
                         size_t msglen)
{
    memset(out, 0, sizeof *out);
    if (!kh_id_code(item_code, REFDB_ITEM_CODE_MAX)) {
        refdb_set_msg(msg, msglen, "item_code: expects 1..%d characters A-Z 0-9",
                      REFDB_ITEM_CODE_MAX);
        return KH_E_FIELD;
    }
    const char *params[1] = {item_code};
    PGresult *r = kh_db_try(c,
                            "SELECT i.layout_version, f.seq, f.name, f.type, f.length, "
                            "       CASE WHEN f.mandatory THEN 't' ELSE 'f' END, "
                            "       coalesce(f.code_table, ''), coalesce(f.pad, ''), "
                            "       coalesce(f.charset, ''), f.min_occurs, f.max_occurs, "
                            "       coalesce(f.group_name, '') "
                            "FROM kh.item i JOIN kh.item_field f "
                            "  ON f.item_code = i.item_code "
                            " AND f.layout_version = i.layout_version "
                            "WHERE i.item_code = $1 ORDER BY f.seq",
                            1, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return refdb_db_fail(c, r, "layout load", msg, msglen);
    size_t nrows = (size_t)PQntuples(r);
    if (nrows == 0) {
        PQclear(r);
        refdb_set_msg(msg, msglen, "item %s is not in the catalogue", item_code);
        return KH_E_UNKNOWN_ITEM;
    }
    field_row *rows = calloc(nrows, sizeof *rows);
    if (rows == NULL) {
        PQclear(r);
        refdb_set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    copy_str(out->item_code, sizeof out->item_code, item_code);
    out->layout_version = atoi(PQgetvalue(r, 0, 0));
    for (size_t i = 0; i < nrows; i++) {
        int row = (int)i;
        rows[i] = (field_row){.seq = atoi(PQgetvalue(r, row, 1)),
                              .name = PQgetvalue(r, row, 2),
                              .type = PQgetvalue(r, row, 3),
                              .length = PQgetvalue(r, row, 4),
                              .mandatory = PQgetvalue(r, row, 5),
                              .code_table = PQgetvalue(r, row, 6),
                              .pad = PQgetvalue(r, row, 7),
                              .charset = PQgetvalue(r, row, 8),
                              .min_occurs = PQgetvalue(r, row, 9),
                              .max_occurs = PQgetvalue(r, row, 10),
                              .group_name = PQgetvalue(r, row, 11)};
    }
    kh_err e = fill_fields(out, rows, nrows, msg, msglen);
    free(rows);
    PQclear(r);
    for (size_t i = 0; e == KH_OK && i < out->nfields; i++)
        if (is_type(&out->fields[i], "CODE"))
            e = load_codes_db(c, &out->fields[i], msg, msglen);
    if (e != KH_OK)
        refdb_layout_free(out);
    return e;
}

/* ----------------------------------------------------------- TSV files */

/* One catalogue file read whole: lines split at tabs in place. */
typedef struct {
    char *buf;
    char **cells; /* nrows * ncols, row-major, without the header */
    size_t nrows, ncols;
} tsv_file;

static void tsv_free(tsv_file *t)
{
    free(t->buf);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* Reads dir/name: UTF-8 (a leading BOM is skipped), lines ending in LF or
 * CRLF, the first line equal to header, every line with exactly ncols
 * tab-separated cells. Empty lines are skipped. */
static kh_err tsv_read(const char *dir, const char *name, const char *header, size_t ncols,
                       tsv_file *t, char *msg, size_t msglen)
{
    char path[4096];
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        refdb_set_msg(msg, msglen, "catalogue: path of %s too long", name);
        return KH_E_INTERNAL;
    }
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        refdb_set_msg(msg, msglen, "catalogue: cannot open %s: %s", path, strerror(errno));
        return KH_E_INTERNAL;
    }
    size_t len = 0, cap = 0;
    char chunk[8192];
    size_t got;
    bool oom = false;
    while (!oom && (got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (len + got + 1 > cap) {
            size_t ncap = cap == 0 ? 16384 : cap;
            while (ncap < len + got + 1)
                ncap *= 2;
            char *p = realloc(t->buf, ncap);
            if (p == NULL) {
                oom = true;
                break;
            }
            t->buf = p;
            cap = ncap;
        }
        memcpy(t->buf + len, chunk, got);
        len += got;
    }
    bool rerr = ferror(fp) != 0;
    fclose(fp);
    if (oom || rerr || t->buf == NULL) {
        refdb_set_msg(msg, msglen, "catalogue: cannot read %s", path);
        tsv_free(t);
        return KH_E_INTERNAL;
    }
    t->buf[len] = '\0';
    if (strlen(t->buf) != len) {
        refdb_set_msg(msg, msglen, "catalogue: %s holds a NUL byte", name);
        tsv_free(t);
        return KH_E_INTERNAL;
    }
    char *p = t->buf;
    if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    size_t lineno = 0, cellcap = 0;
    bool seen_header = false;
    while (*p != '\0') {
        char *line = p, *nl = strchr(p, '\n');
        lineno++;
        if (nl != NULL) {
            *nl = '\0';
            p = nl + 1;
        } else {
            p += strlen(p);
        }
        size_t ll = strlen(line);
        if (ll > 0 && line[ll - 1] == '\r')
            line[--ll] = '\0';
        if (!seen_header) {
            if (strcmp(line, header) != 0) {
                refdb_set_msg(msg, msglen,
                              "catalogue: %s: the header line is not the one "
                              "refdb/FORMAT.md gives",
                              name);
                tsv_free(t);
                return KH_E_INTERNAL;
            }
            seen_header = true;
            continue;
        }
        if (ll == 0)
            continue;
        if ((t->nrows + 1) * ncols > cellcap) {
            size_t ncap = cellcap == 0 ? 64 * ncols : cellcap * 2;
            char **c = realloc(t->cells, ncap * sizeof *c);
            if (c == NULL) {
                refdb_set_msg(msg, msglen, "out of memory");
                tsv_free(t);
                return KH_E_INTERNAL;
            }
            t->cells = c;
            cellcap = ncap;
        }
        char **row = &t->cells[t->nrows * ncols];
        size_t k = 0;
        for (char *cell = line;; k++) {
            char *tab = strchr(cell, '\t');
            if (k < ncols)
                row[k] = cell;
            if (tab == NULL)
                break;
            *tab = '\0';
            cell = tab + 1;
        }
        if (k + 1 != ncols) {
            refdb_set_msg(msg, msglen, "catalogue: %s line %zu: expects %zu tab-separated columns",
                          name, lineno, ncols);
            tsv_free(t);
            return KH_E_INTERNAL;
        }
        t->nrows++;
    }
    if (!seen_header) {
        refdb_set_msg(msg, msglen, "catalogue: %s is empty", name);
        tsv_free(t);
        return KH_E_INTERNAL;
    }
    return KH_OK;
}

static int cmp_rows_by_seq(const void *a, const void *b)
{
    const field_row *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The codes of every CODE field, from codes.tsv, in byte order (as the
 * database loader's ORDER BY code COLLATE "C"). */
static kh_err load_codes_tsv(const char *dir, refdb_layout *l, char *msg, size_t msglen)
{
    bool any = false;
    for (size_t i = 0; i < l->nfields && !any; i++)
        any = is_type(&l->fields[i], "CODE");
    if (!any)
        return KH_OK;
    tsv_file t;
    kh_err e = tsv_read(dir, "codes.tsv", "code_table\tcode\tmeaning", 3, &t, msg, msglen);
    if (e != KH_OK)
        return e;
    const char **vals = calloc(t.nrows + 1, sizeof *vals);
    if (vals == NULL) {
        tsv_free(&t);
        refdb_set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    for (size_t i = 0; i < l->nfields && e == KH_OK; i++) {
        refdb_field_spec *f = &l->fields[i];
        size_t n = 0;
        if (!is_type(f, "CODE"))
            continue;
        for (size_t r = 0; r < t.nrows; r++)
            if (strcmp(t.cells[r * 3], f->code_table) == 0)
                vals[n++] = t.cells[r * 3 + 1];
        qsort(vals, n, sizeof *vals, cmp_str);
        for (size_t k = 1; k < n && e == KH_OK; k++) {
            if (strcmp(vals[k - 1], vals[k]) == 0) {
                refdb_set_msg(msg, msglen, "catalogue: codes.tsv: code table %s has a code twice",
                              f->code_table);
                e = KH_E_INTERNAL;
            }
        }
        if (e == KH_OK && !set_codes(f, vals, n)) {
            refdb_set_msg(msg, msglen, "out of memory");
            e = KH_E_INTERNAL;
        }
    }
    free(vals);
    tsv_free(&t);
    return e;
}

kh_err refdb_layout_from_tsv(const char *dir, const char *item_code, refdb_layout *out, char *msg,
                             size_t msglen)
{
    memset(out, 0, sizeof *out);
    if (!kh_id_code(item_code, REFDB_ITEM_CODE_MAX)) {
        refdb_set_msg(msg, msglen, "item_code: expects 1..%d characters A-Z 0-9",
                      REFDB_ITEM_CODE_MAX);
        return KH_E_FIELD;
    }
    if (dir == NULL) {
        refdb_set_msg(msg, msglen, "catalogue: no folder");
        return KH_E_INTERNAL;
    }
    tsv_file items, fields;
    kh_err e =
        tsv_read(dir, "items.tsv", "item_code\tlayout_version\tname", 3, &items, msg, msglen);
    if (e != KH_OK)
        return e;
    bool found = false;
    for (size_t r = 0; r < items.nrows && e == KH_OK; r++) {
        if (strcmp(items.cells[r * 3], item_code) != 0)
            continue;
        if (found || !parse_int(items.cells[r * 3 + 1], 1, 1000000, &out->layout_version)) {
            refdb_set_msg(msg, msglen, "catalogue: items.tsv: item %s listed twice or malformed",
                          item_code);
            e = KH_E_INTERNAL;
        }
        found = true;
    }
    tsv_free(&items);
    if (e != KH_OK) {
        memset(out, 0, sizeof *out);
        return e;
    }
    if (!found) {
        refdb_set_msg(msg, msglen, "item %s is not in the catalogue", item_code);
        memset(out, 0, sizeof *out);
        return KH_E_UNKNOWN_ITEM;
    }
    copy_str(out->item_code, sizeof out->item_code, item_code);

    e = tsv_read(dir, "fields.tsv",
                 "item_code\tlayout_version\tseq\tname\ttype\tlength\tmandatory\tcode_table\t"
                 "pad\tcharset\tmin_occurs\tmax_occurs\tgroup_name",
                 13, &fields, msg, msglen);
    if (e != KH_OK) {
        memset(out, 0, sizeof *out);
        return e;
    }
    field_row *rows = calloc(fields.nrows + 1, sizeof *rows);
    size_t n = 0;
    if (rows == NULL) {
        refdb_set_msg(msg, msglen, "out of memory");
        e = KH_E_INTERNAL;
    }
    for (size_t r = 0; r < fields.nrows && e == KH_OK; r++) {
        char **c = &fields.cells[r * 13];
        int v;
        if (strcmp(c[0], item_code) != 0 || !parse_int(c[1], 1, 1000000, &v) ||
            v != out->layout_version)
            continue;
        field_row *fr = &rows[n++];
        *fr = (field_row){.name = c[3],
                          .type = c[4],
                          .length = c[5],
                          .mandatory = c[6],
                          .code_table = c[7],
                          .pad = c[8],
                          .charset = c[9],
                          .min_occurs = c[10],
                          .max_occurs = c[11],
                          .group_name = c[12]};
        if (!parse_int(c[2], 1, 1000000, &fr->seq)) {
            refdb_set_msg(msg, msglen, "catalogue: fields.tsv: item %s: malformed seq", item_code);
            e = KH_E_INTERNAL;
        }
    }
    if (e == KH_OK && n == 0) {
        refdb_set_msg(msg, msglen, "item %s is not in the catalogue", item_code);
        e = KH_E_UNKNOWN_ITEM;
    }
    if (e == KH_OK) {
        qsort(rows, n, sizeof *rows, cmp_rows_by_seq);
        for (size_t i = 1; i < n && e == KH_OK; i++) {
            if (rows[i].seq == rows[i - 1].seq) {
                refdb_set_msg(msg, msglen, "catalogue: fields.tsv: item %s: seq %d twice",
                              item_code, rows[i].seq);
                e = KH_E_INTERNAL;
            }
        }
    }
    if (e == KH_OK)
        e = fill_fields(out, rows, n, msg, msglen);
    free(rows);
    tsv_free(&fields);
    if (e == KH_OK)
        e = load_codes_tsv(dir, out, msg, msglen);
    if (e != KH_OK)
        refdb_layout_free(out);
    return e;
}
