/* refdb_validate.c: the layout rules for item data (X, 9, S9, DATE, CODE),
 * pure functions with no database. Messages name the field and the rule and
 * never the value: a value is personal data. */
#include "refdb.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;
    if (msg == NULL || msglen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 1..max ASCII digits and nothing else. */
static bool digits(const char *s, int max)
{
    int n = 0;
    for (; s[n] != '\0'; n++)
        if (!is_digit(s[n]) || n >= max)
            return false;
    return n >= 1;
}

bool refdb_date_valid(const char *s)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || strlen(s) != 8 || !digits(s, 8))
        return false;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[4] - '0') * 10 + (s[5] - '0');
    int d = (s[6] - '0') * 10 + (s[7] - '0');
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int max = mdays[m - 1] + (m == 2 && leap ? 1 : 0);
    return d <= max;
}

/* Counts the characters of a UTF-8 string. Refuses invalid UTF-8 (overlong
 * forms, surrogates, code points above U+10FFFF, truncated sequences) and
 * control characters (C0, DEL, C1). Returns false on refusal. */
static bool utf8_text(const char *str, size_t *nchars)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = 0;
    while (*s != '\0') {
        unsigned char c = s[0];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7F)
                return false;
            s++;
            n++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            if (c == 0xC2)
                lo = 0xA0; /* U+0080..U+009F are C1 controls */
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return false;
        }
        if (s[1] < lo || s[1] > hi)
            return false;
        for (size_t i = 2; i < len; i++)
            if (s[i] < 0x80 || s[i] > 0xBF)
                return false;
        s += len;
        n++;
    }
    *nchars = n;
    return true;
}

/* A field name from the wire, fit for a message: the name if it looks like a
 * layout field name, else a placeholder. */
static const char *shown_name(const char *name)
{
    size_t n = 0;
    if (name == NULL || name[0] == '\0')
        return "(empty name)";
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (n >= 63 || !((c >= 'a' && c <= 'z') || is_digit(c) || c == '_'))
            return "(malformed name)";
    }
    return name;
}

/* Checks one non-empty value against its field spec. */
static kh_err check_value(const refdb_field_spec *f, const char *v, char *msg, size_t msglen)
{
    if (strcmp(f->type, "X") == 0) {
        size_t nchars = 0;
        if (!utf8_text(v, &nchars) || nchars > (size_t)f->length) {
            set_msg(msg, msglen,
                    "field %s: X(%d) expects at most %d characters of valid UTF-8 without "
                    "control characters",
                    f->name, f->length, f->length);
            return KH_E_ITEM_INVALID;
        }
    } else if (strcmp(f->type, "9") == 0) {
        if (!digits(v, f->length)) {
            set_msg(msg, msglen, "field %s: 9(%d) expects 1..%d digits", f->name, f->length,
                    f->length);
            return KH_E_ITEM_INVALID;
        }
    } else if (strcmp(f->type, "S9") == 0) {
        if (!digits(v[0] == '-' ? v + 1 : v, f->length)) {
            set_msg(msg, msglen, "field %s: S9(%d) expects an optional '-' and 1..%d digits",
                    f->name, f->length, f->length);
            return KH_E_ITEM_INVALID;
        }
    } else if (strcmp(f->type, "DATE") == 0) {
        if (!refdb_date_valid(v)) {
            set_msg(msg, msglen, "field %s: DATE expects a real calendar date as YYYYMMDD",
                    f->name);
            return KH_E_ITEM_INVALID;
        }
    } else if (strcmp(f->type, "CODE") == 0) {
        bool found = false;
        for (size_t i = 0; i < f->ncodes && !found; i++)
            found = f->codes[i] != NULL && strcmp(f->codes[i], v) == 0;
        if (!found) {
            set_msg(msg, msglen, "field %s: CODE(%d) expects a value of code table %s", f->name,
                    f->length, f->code_table);
            return KH_E_ITEM_INVALID;
        }
    } else {
        set_msg(msg, msglen, "field %s: layout has unknown type %s", f->name, f->type);
        return KH_E_ITEM_INVALID;
    }
    return KH_OK;
}

kh_err refdb_validate(const refdb_layout *l, const Kh__Field *const *fields, size_t n, char *msg,
                      size_t msglen)
{
    if (l == NULL || (n > 0 && fields == NULL)) {
        set_msg(msg, msglen, "no layout or no fields");
        return KH_E_INTERNAL;
    }
    /* Each given field: known, not repeated, well formed. A repeat is found by
     * looking back, so the cost is n * (n + nfields); n is bounded by the
     * request size limit, and a valid request has n <= nfields. */
    for (size_t i = 0; i < n; i++) {
        const char *name = fields[i] != NULL ? fields[i]->name : NULL;
        const char *v = fields[i] != NULL && fields[i]->value != NULL ? fields[i]->value : "";
        const refdb_field_spec *f = NULL;
        for (size_t j = 0; name != NULL && j < l->nfields && f == NULL; j++)
            if (strcmp(l->fields[j].name, name) == 0)
                f = &l->fields[j];
        if (f == NULL) {
            set_msg(msg, msglen, "field %s: not in the layout of %s version %d", shown_name(name),
                    l->item_code, l->layout_version);
            return KH_E_ITEM_INVALID;
        }
        for (size_t k = 0; k < i; k++) {
            if (fields[k] != NULL && fields[k]->name != NULL &&
                strcmp(fields[k]->name, name) == 0) {
                set_msg(msg, msglen, "field %s: given more than once", f->name);
                return KH_E_ITEM_INVALID;
            }
        }
        if (v[0] == '\0')
            continue; /* "no value": refused below if mandatory */
        kh_err e = check_value(f, v, msg, msglen);
        if (e != KH_OK)
            return e;
    }
    /* Every mandatory field present with a value. */
    for (size_t j = 0; j < l->nfields; j++) {
        const refdb_field_spec *f = &l->fields[j];
        bool have = false;
        if (!f->mandatory)
            continue;
        for (size_t i = 0; i < n && !have; i++)
            have = fields[i] != NULL && fields[i]->name != NULL &&
                   strcmp(fields[i]->name, f->name) == 0 && fields[i]->value != NULL &&
                   fields[i]->value[0] != '\0';
        if (!have) {
            set_msg(msg, msglen, "field %s: mandatory, missing or empty", f->name);
            return KH_E_ITEM_INVALID;
        }
    }
    return KH_OK;
}
