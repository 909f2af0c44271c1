/* refdb_validate.c: the value and occurrence rules of refdb/FORMAT.md
 * (section 2 and "Occurrences"), pure functions with no database. Every
 * problem carries its fine code (KH-1102, KH-1105..1109, KH-1114); reasons
 * name the field and the rule and never the value: a value is personal
 * data. */
#include "refdb.h"

#include "refdb_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The first problem of one value, or KH_OK. */
typedef struct {
    kh_err code;
    char reason[200];
} verdict;

static kh_err say(verdict *v, kh_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kh_err say(verdict *v, kh_err code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof v->reason, fmt, ap);
    va_end(ap);
    v->code = code;
    return code;
}

/* Decodes the next code point of a NUL-terminated string; returns its length
 * in bytes, or 0 if the bytes there are not valid UTF-8 (overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences, stray
 * continuation bytes). */
static size_t utf8_next(const unsigned char *s, unsigned long *cp)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        *cp = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        *cp = c & 0x07;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    return len;
}

static bool is_control(unsigned long cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* ------------------------------------------------------------- the plan */

/* What the rules need of the layout, worked out once (refdb_vplan_new) so
 * that a record costs no string compare of types, pads or charsets and no
 * search for the columns of a field, a GROUP or an occurrence. */
enum vkind { K_X, K_9, K_S9, K_DATE, K_CODE, K_UNKNOWN };
enum vpad { PAD_NONE, PAD_ZERO, PAD_SUPPRESS };
enum vcharset { CS_ANY, CS_ASCII, CS_KANA };

typedef struct {
    const refdb_field_spec *f;
    const char *name; /* the column's name */
    unsigned char kind, pad, charset;
    bool mandatory;
} pcol;

/* Consecutive columns of one occurrence within a block. */
typedef struct {
    size_t begin, end;
    int occ;
    bool any_mandatory; /* a column of the run is of a mandatory field */
} prun;

/* Consecutive columns of one field or GROUP (as top_of tells). */
typedef struct {
    const refdb_field_spec *top;
    size_t begin, end;
    size_t run0, nruns;
    bool group, repeats;
    /* One column of a field that does not repeat: only its value rules and,
     * when mand1 (mandatory in occurrence 1), the mandatory rule apply. */
    bool plain, mand1;
} pblock;

struct refdb_vplan {
    const refdb_layout *l;
    size_t nblocks;
    pcol *cols;
    pblock *blocks;
    prun *runs;
};

/* The field or GROUP a column's occurrences belong to. */
static int top_of(const refdb_layout *l, size_t c)
{
    const refdb_field_spec *f = &l->fields[l->cols[c].field];
    return f->group >= 0 ? f->group : l->cols[c].field;
}

static unsigned char kind_of(const refdb_field_spec *f)
{
    if (strcmp(f->type, "X") == 0)
        return K_X;
    if (strcmp(f->type, "9") == 0)
        return K_9;
    if (strcmp(f->type, "S9") == 0)
        return K_S9;
    if (strcmp(f->type, "DATE") == 0)
        return K_DATE;
    if (strcmp(f->type, "CODE") == 0)
        return K_CODE;
    return K_UNKNOWN;
}

refdb_vplan *refdb_vplan_new(const refdb_layout *l)
{
    size_t n = l->ncols;
    refdb_vplan *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->l = l;
    p->cols = calloc(n + 1, sizeof *p->cols);
    p->blocks = calloc(n + 1, sizeof *p->blocks);
    p->runs = calloc(n + 1, sizeof *p->runs);
    if (p->cols == NULL || p->blocks == NULL || p->runs == NULL) {
        refdb_vplan_free(p);
        return NULL;
    }
    for (size_t c = 0; c < n; c++) {
        const refdb_field_spec *f = &l->fields[l->cols[c].field];
        pcol *pc = &p->cols[c];
        pc->f = f;
        pc->name = l->cols[c].name;
        pc->kind = kind_of(f);
        pc->pad = strcmp(f->pad, "zero") == 0       ? PAD_ZERO
                  : strcmp(f->pad, "suppress") == 0 ? PAD_SUPPRESS
                                                    : PAD_NONE;
        pc->charset = strcmp(f->charset, "ascii") == 0  ? CS_ASCII
                      : strcmp(f->charset, "kana") == 0 ? CS_KANA
                                                        : CS_ANY;
        pc->mandatory = f->mandatory;
    }
    size_t nruns = 0;
    for (size_t begin = 0; begin < n;) {
        size_t end = begin + 1;
        while (end < n && top_of(l, end) == top_of(l, begin))
            end++;
        pblock *b = &p->blocks[p->nblocks++];
        b->top = &l->fields[top_of(l, begin)];
        b->begin = begin;
        b->end = end;
        b->group = strcmp(b->top->type, "GROUP") == 0;
        b->repeats = b->group || b->top->max_occurs > 1;
        b->run0 = nruns;
        for (size_t s = begin; s < end;) {
            int occ = l->cols[s].occurrence;
            prun *ru = &p->runs[nruns++];
            ru->begin = s;
            ru->occ = occ;
            while (s < end && l->cols[s].occurrence == occ) {
                ru->any_mandatory = ru->any_mandatory || p->cols[s].mandatory;
                s++;
            }
            ru->end = s;
        }
        b->nruns = nruns - b->run0;
        b->plain = !b->repeats && end == begin + 1;
        b->mand1 = p->cols[begin].mandatory && l->cols[begin].occurrence == 1;
        begin = end;
    }
    return p;
}

void refdb_vplan_free(refdb_vplan *p)
{
    if (p == NULL)
        return;
    free(p->cols);
    free(p->blocks);
    free(p->runs);
    free(p);
}

/* ------------------------------------------------------- value rules */

static bool in_charset(unsigned char charset, unsigned long cp)
{
    if (charset == CS_ASCII)
        return cp >= 0x20 && cp <= 0x7E;
    if (charset == CS_KANA)
        return (cp >= 0x30A1 && cp <= 0x30FC) || cp == 0x3000;
    return true; /* any (or "" in a layout built by hand) */
}

bool refdb_formula_lead(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return false;
    if (s[0] == '+' || s[0] == '-') /* a lone sign is a placeholder, not a formula */
        return s[1] != '\0';
    return strchr("=@\t\r", s[0]) != NULL;
}

static kh_err check_x(const pcol *pc, const char *v, verdict *out)
{
    const refdb_field_spec *f = pc->f;
    const unsigned char *s = (const unsigned char *)v;
    size_t n = 0;
    bool control = false, outside = false;
    while (*s != '\0') {
        unsigned long cp;
        size_t len = utf8_next(s, &cp);
        if (len == 0)
            return say(out, KH_E_ENCODING, "X(%d) expects valid UTF-8", f->length);
        control = control || is_control(cp);
        outside = outside || !in_charset(pc->charset, cp);
        s += len;
        n++;
    }
    if (control)
        return say(out, KH_E_CHARSET, "X(%d) expects no control characters", f->length);
    if (outside && pc->charset == CS_KANA)
        return say(out, KH_E_CHARSET,
                   "charset kana allows only full-width katakana (U+30A1-U+30FC) and the "
                   "ideographic space");
    if (outside)
        return say(out, KH_E_CHARSET, "charset %s allows only U+0020-U+007E", f->charset);
    if (n > (size_t)f->length)
        return say(out, KH_E_TYPE, "X(%d) expects at most %d characters", f->length, f->length);
    /* a spreadsheet that opens the value, here or at an organisation that
     * receives it in an answer, would run it as a formula */
    if (refdb_formula_lead(v))
        return say(out, KH_E_CHARSET,
                   "X(%d) cannot begin with =, +, - or @ (a spreadsheet would read a formula)%s",
                   f->length, pc->charset == CS_ASCII ? "" : "; the full-width forms are allowed");
    return KH_OK;
}

/* The number of digits of s if s is digits only (0 if empty), or -1. */
static long digit_run(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (!is_digit(s[n]))
            return -1;
    return (long)n;
}

static kh_err check_9(const pcol *pc, const char *v, verdict *out)
{
    const refdb_field_spec *f = pc->f;
    long nd = digit_run(v);
    if (nd <= 0)
        return say(out, KH_E_TYPE, "9(%d) expects digits only", f->length);
    size_t len = (size_t)nd;
    if (len > (size_t)f->length)
        return say(out, KH_E_TYPE, "9(%d) expects at most %d digits", f->length, f->length);
    if (pc->pad == PAD_ZERO && len != (size_t)f->length)
        return say(out, KH_E_PADDING, "9(%d) zero-padded expects exactly %d digits", f->length,
                   f->length);
    if (pc->pad == PAD_SUPPRESS && len > 1 && v[0] == '0')
        return say(out, KH_E_PADDING, "9(%d) zero-suppressed expects no leading zero", f->length);
    return KH_OK;
}

static kh_err check_s9(const pcol *pc, const char *v, verdict *out)
{
    const refdb_field_spec *f = pc->f;
    bool neg = v[0] == '-';
    const char *d = neg ? v + 1 : v;
    long nd = digit_run(d);
    if (nd <= 0 || (size_t)nd > (size_t)f->length)
        return say(out, KH_E_TYPE, "S9(%d) expects an optional '-' and 1..%d digits", f->length,
                   f->length);
    if (d[0] == '0' && d[1] != '\0')
        return say(out, KH_E_PADDING, "S9(%d) expects no leading zero", f->length);
    if (neg && d[0] == '0')
        return say(out, KH_E_TYPE, "S9(%d) refuses a negative zero", f->length);
    return KH_OK;
}

/* Checks one non-empty value against its field spec. */
static kh_err check_value(const pcol *pc, const char *v, verdict *out)
{
    const refdb_field_spec *f = pc->f;
    switch (pc->kind) {
    case K_X:
        return check_x(pc, v, out);
    case K_9:
        return check_9(pc, v, out);
    case K_S9:
        return check_s9(pc, v, out);
    case K_DATE:
        if (!kh_id_date(v))
            return say(out, KH_E_TYPE, "DATE expects a real calendar date as YYYYMMDD");
        return KH_OK;
    case K_CODE:
        for (size_t i = 0; i < f->ncodes; i++)
            if (f->codes[i] != NULL && f->codes[i][0] == v[0] && strcmp(f->codes[i], v) == 0)
                return KH_OK;
        return say(out, KH_E_CODE_VALUE, "CODE(%d) expects a value of code table %s", f->length,
                   f->code_table);
    default:
        return say(out, KH_E_TYPE, "layout has unknown type %s", f->type);
    }
}

/* Counts and reports the problems of one record. */
typedef struct {
    size_t line, count;
    refdb_issue_fn fn;
    void *arg;
} reporter;

static void report(reporter *r, const char *field, kh_err code, const char *reason)
{
    refdb_issue is;
    memset(&is, 0, sizeof is);
    is.line = r->line;
    snprintf(is.field, sizeof is.field, "%s", field);
    is.code = code;
    snprintf(is.reason, sizeof is.reason, "%s", reason);
    r->count++;
    if (r->fn != NULL)
        r->fn(&is, r->arg);
}

/* vals[c] is never NULL here (refdb_validate_values makes it ""). */
static bool has_value(const char *const *vals, size_t c)
{
    return vals[c][0] != '\0';
}

/* One field or GROUP: its columns are vals[b->begin..b->end),
 * occurrence-major. */
static void check_block(const refdb_vplan *p, const pblock *b, const char *const *vals, reporter *r)
{
    const refdb_layout *l = p->l;
    const refdb_field_spec *top = b->top;
    bool group = b->group, repeats = b->repeats;
    const char *kind = group ? "group" : "field";
    int present = 0, last_present = 0;
    char reason[200];
    for (size_t k = 0; k < b->nruns; k++) {
        const prun *ru = &p->runs[b->run0 + k];
        int occ = ru->occ;
        bool here = false;
        for (size_t c = ru->begin; c < ru->end && !here; c++)
            here = has_value(vals, c);
        if (!here && !ru->any_mandatory)
            continue; /* no value, and no mandatory rule to break */
        if (here && repeats && last_present != occ - 1) {
            size_t first = ru->begin;
            while (!has_value(vals, first))
                first++;
            snprintf(reason, sizeof reason,
                     "occurrence %d of %s %s is present but occurrence %d is empty "
                     "(occurrences are contiguous from 1)",
                     occ, kind, top->name, occ - 1);
            report(r, l->cols[first].name, KH_E_OCCURS, reason);
        }
        for (size_t c = ru->begin; c < ru->end; c++) {
            const pcol *pc = &p->cols[c];
            if (has_value(vals, c)) {
                verdict v; /* reason is set with a problem */
                if (check_value(pc, vals[c], &v) != KH_OK)
                    report(r, pc->name, v.code, v.reason);
            } else if (pc->mandatory && (group ? here : occ == 1)) {
                report(r, pc->name, KH_E_MANDATORY,
                       group ? "mandatory in every present occurrence of its group, no value"
                             : "mandatory, no value");
            }
        }
        if (here) {
            present++;
            last_present = occ;
        }
    }
    /* A plain field's presence is the mandatory rule's business. */
    if (repeats && present < top->min_occurs) {
        size_t c = b->begin;
        while (c + 1 < b->end && l->cols[c].occurrence <= present)
            c++;
        snprintf(reason, sizeof reason, "%s %s expects at least %d occurrences, %d present", kind,
                 top->name, top->min_occurs, present);
        report(r, l->cols[c].name, KH_E_OCCURS, reason);
    }
}

size_t refdb_vplan_validate(const refdb_vplan *p, const char *const *vals, size_t line,
                            refdb_issue_fn fn, void *arg)
{
    reporter r = {line, 0, fn, arg};
    for (size_t k = 0; k < p->nblocks; k++) {
        const pblock *b = &p->blocks[k];
        if (!b->plain) {
            check_block(p, b, vals, &r);
            continue;
        }
        /* what check_block does for a plain field, without the loops */
        const pcol *pc = &p->cols[b->begin];
        const char *v = vals[b->begin];
        if (v[0] != '\0') {
            verdict vd;
            if (check_value(pc, v, &vd) != KH_OK)
                report(&r, pc->name, vd.code, vd.reason);
        } else if (b->mand1) {
            report(&r, pc->name, KH_E_MANDATORY, "mandatory, no value");
        }
    }
    return r.count;
}

size_t refdb_validate_values(const refdb_layout *l, const char *const *vals, size_t line,
                             refdb_issue_fn fn, void *arg)
{
    reporter r = {line, 0, fn, arg};
    if (l == NULL || (l->ncols > 0 && vals == NULL)) {
        report(&r, "-", KH_E_INTERNAL, "no layout or no values");
        return r.count;
    }
    /* the plan takes no NULL: "" means no value as well */
    refdb_vplan *p = refdb_vplan_new(l);
    const char **v = calloc(l->ncols + 1, sizeof *v);
    if (p == NULL || v == NULL) {
        refdb_vplan_free(p);
        free(v);
        report(&r, "-", KH_E_INTERNAL, "out of memory");
        return r.count;
    }
    for (size_t c = 0; c < l->ncols; c++)
        v[c] = vals[c] != NULL ? vals[c] : "";
    size_t n = refdb_vplan_validate(p, v, line, fn, arg);
    refdb_vplan_free(p);
    free(v);
    return n;
}

/* A field name from the wire, fit for a message: the name if it looks like a
 * flattened field name, else a placeholder. */
static const char *shown_name(const char *name)
{
    size_t n = 0;
    if (name == NULL || name[0] == '\0')
        return "(empty name)";
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (n >= 95 || !((c >= 'a' && c <= 'z') || is_digit(c) || c == '_' || c == '[' ||
                         c == ']' || c == '.'))
            return "(malformed name)";
    }
    return name;
}

static void first_issue(const refdb_issue *issue, void *arg)
{
    refdb_issue *first = arg;
    if (first->code == KH_OK)
        *first = *issue;
}

kh_err refdb_validate(const refdb_layout *l, const Kh__Field *const *fields, size_t n, char *msg,
                      size_t msglen)
{
    if (l == NULL || (n > 0 && fields == NULL) || (l->nfields > 0 && l->ncols == 0)) {
        set_msg(msg, msglen, "no layout, no columns or no fields");
        return KH_E_INTERNAL;
    }
    /* vals[c] is the value given for column c, NULL if none was given. The
     * cost of the name lookup is n * ncols; n is bounded by the request size
     * limit, and a valid request has n <= ncols. */
    const char **vals = calloc(l->ncols + 1, sizeof *vals);
    if (vals == NULL) {
        set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    kh_err e = KH_OK;
    for (size_t i = 0; i < n && e == KH_OK; i++) {
        const char *name = fields[i] != NULL ? fields[i]->name : NULL;
        const char *v = fields[i] != NULL && fields[i]->value != NULL ? fields[i]->value : "";
        size_t c = 0;
        while (name != NULL && c < l->ncols && strcmp(l->cols[c].name, name) != 0)
            c++;
        if (name == NULL || c == l->ncols) {
            set_msg(msg, msglen, "field %s: not in the layout of %s version %d", shown_name(name),
                    l->item_code, l->layout_version);
            e = KH_E_ITEM_INVALID;
        } else if (vals[c] != NULL) {
            set_msg(msg, msglen, "field %s: given more than once", l->cols[c].name);
            e = KH_E_ITEM_INVALID;
        } else {
            vals[c] = v;
        }
    }
    if (e == KH_OK) {
        refdb_issue first;
        memset(&first, 0, sizeof first);
        for (size_t c = 0; c < l->ncols; c++)
            if (vals[c] == NULL)
                vals[c] = "";
        if (refdb_validate_values(l, vals, 0, first_issue, &first) > 0) {
            set_msg(msg, msglen, "field %s: %s %s", first.field, kh_err_code(first.code),
                    first.reason);
            e = KH_E_ITEM_INVALID;
        }
    }
    free(vals);
    return e;
}
