/* refdb_values_tmp.c: TEMPORARY until h-lay lands; delete on merge (and its
 * line in refdb/CMakeLists.txt).
 *
 * Stand-ins for what branch h-lay implements in refdb_validate.c, so that
 * kh_refdb links while refdb_check.c and khcheck are built on h-csv:
 * - refdb_validate_values: only the basics of X / 9 / S9 / DATE / CODE and
 *   mandatory plain fields; no occurrence rules, no group rules.
 * - refdb_layout_from_tsv: always KH_E_UNKNOWN_ITEM. */
#include "refdb.h"

#include <stdarg.h>
#include <string.h>

static void tmp_issue(refdb_issue_fn fn, void *arg, size_t line, const char *field, kh_err code,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void tmp_issue(refdb_issue_fn fn, void *arg, size_t line, const char *field, kh_err code,
                      const char *fmt, ...)
{
    refdb_issue is;
    va_list ap;
    memset(&is, 0, sizeof is);
    is.line = line;
    is.code = code;
    snprintf(is.field, sizeof is.field, "%s", field);
    va_start(ap, fmt);
    vsnprintf(is.reason, sizeof is.reason, fmt, ap);
    va_end(ap);
    if (fn != NULL)
        fn(&is, arg);
}

static bool tmp_digits(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (s[n] < '0' || s[n] > '9')
            return false;
    return n >= 1 && n <= max;
}

/* The value is valid UTF-8 already (the CSV reader checks the whole file). */
static kh_err tmp_text(const refdb_field_spec *f, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = 0;
    while (*s != '\0') {
        unsigned cp;
        size_t len = *s < 0x80 ? 1 : *s < 0xE0 ? 2 : *s < 0xF0 ? 3 : 4;
        if (len == 1)
            cp = *s;
        else if (len == 2)
            cp = (*s & 0x1Fu) << 6 | (s[1] & 0x3Fu);
        else if (len == 3)
            cp = (*s & 0x0Fu) << 12 | (s[1] & 0x3Fu) << 6 | (s[2] & 0x3Fu);
        else
            cp = (*s & 0x07u) << 18 | (s[1] & 0x3Fu) << 12 | (s[2] & 0x3Fu) << 6 | (s[3] & 0x3Fu);
        if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
            return KH_E_CHARSET;
        if (strcmp(f->charset, "ascii") == 0 && cp > 0x7E)
            return KH_E_CHARSET;
        if (strcmp(f->charset, "kana") == 0 && cp != 0x3000 && (cp < 0x30A1 || cp > 0x30FC))
            return KH_E_CHARSET;
        s += len;
        n++;
    }
    return n <= (size_t)f->length ? KH_OK : KH_E_TYPE;
}

size_t refdb_validate_values(const refdb_layout *l, const char *const *vals, size_t line,
                             refdb_issue_fn fn, void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < l->ncols; i++) {
        const refdb_column *col = &l->cols[i];
        const refdb_field_spec *f = &l->fields[col->field];
        const char *v = vals[i];
        kh_err e = KH_OK;
        if (v[0] == '\0') {
            if (f->mandatory && f->group < 0 && f->max_occurs <= 1)
                e = KH_E_MANDATORY;
        } else if (strcmp(f->type, "X") == 0) {
            e = tmp_text(f, v);
        } else if (strcmp(f->type, "9") == 0) {
            size_t len = strlen(v);
            if (!tmp_digits(v, (size_t)f->length))
                e = KH_E_TYPE;
            else if (strcmp(f->pad, "zero") == 0 && len != (size_t)f->length)
                e = KH_E_PADDING;
            else if (strcmp(f->pad, "suppress") == 0 && len > 1 && v[0] == '0')
                e = KH_E_PADDING;
        } else if (strcmp(f->type, "S9") == 0) {
            const char *d = v[0] == '-' ? v + 1 : v;
            if (!tmp_digits(d, (size_t)f->length) || strcmp(v, "-0") == 0)
                e = KH_E_TYPE;
            else if (strlen(d) > 1 && d[0] == '0')
                e = KH_E_PADDING;
        } else if (strcmp(f->type, "DATE") == 0) {
            if (!refdb_date_valid(v))
                e = KH_E_TYPE;
        } else if (strcmp(f->type, "CODE") == 0) {
            bool found = false;
            for (size_t k = 0; k < f->ncodes && !found; k++)
                found = f->codes[k] != NULL && strcmp(f->codes[k], v) == 0;
            if (!found)
                e = KH_E_CODE_VALUE;
        } else {
            e = KH_E_TYPE;
        }
        if (e != KH_OK) {
            tmp_issue(fn, arg, line, col->name, e, "%s %s(%d): %s", col->name, f->type, f->length,
                      kh_err_get(e)->meaning);
            n++;
        }
    }
    return n;
}

kh_err refdb_layout_from_tsv(const char *dir, const char *item_code, refdb_layout *out, char *msg,
                             size_t msglen)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (msg != NULL && msglen > 0)
        snprintf(msg, msglen, "unknown item (the catalogue loader is not built yet)");
    return KH_E_UNKNOWN_ITEM;
}
