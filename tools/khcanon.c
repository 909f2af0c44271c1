/* khcanon.c: a chained record's canonical text from its binary COPY tuple
 * (khcanon.h). What the renderings below copy, from PostgreSQL 15:
 * - jsonb text: {"key": value, ...} with ", " and ": ", [a, b] likewise;
 * - strings as escape_json writes them: \" \\ \b \f \n \r \t, any other byte
 *   below 0x20 as \u00xx (lower-case hex), every other byte as it is;
 * - bigint as its decimal digits; NULL as null;
 * - to_jsonb(text[]): [] for no dimension, the elements of one dimension
 *   whatever its lower bound;
 * - a jsonb column in binary: a version byte (1) and its own jsonb text,
 *   which nests unchanged;
 * - to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), with a
 *   timestamptz in binary as microseconds since 2000-01-01 00:00 UTC. */
#include "khcanon.h"

#include "khfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { COL_INT8, COL_TIME, COL_TEXT, COL_TEXTS, COL_JSONB } col_type;

typedef struct {
    const char *name;
    col_type type;
} column;

/* The columns of each chain's canonical text (its chain_canonical_<table>
 * in sql/tenant/006_chains.sql), listed in jsonb's key order: that is the
 * order the COPY reads them and the text lists them. */
static const column provision_record_cols[] = {
    {"at", COL_TIME},        {"id", COL_INT8},        {"code", COL_TEXT},
    {"items", COL_TEXTS},    {"msg_id", COL_TEXT},    {"outcome", COL_TEXT},
    {"local_id", COL_TEXT},  {"provided", COL_JSONB}, {"staff_id", COL_TEXT},
    {"direction", COL_TEXT}, {"procedure", COL_TEXT}, {"counterpart", COL_TEXT},
};
static const column access_record_cols[] = {
    {"at", COL_TIME},        {"id", COL_INT8},        {"code", COL_TEXT},
    {"actor", COL_TEXT},     {"items", COL_TEXTS},    {"msg_id", COL_TEXT},
    {"decision", COL_TEXT},  {"staff_id", COL_TEXT},  {"direction", COL_TEXT},
    {"operation", COL_TEXT}, {"procedure", COL_TEXT},
};
static const column audit_log_cols[] = {
    {"at", COL_TIME},      {"id", COL_INT8},     {"code", COL_TEXT},    {"action", COL_TEXT},
    {"detail", COL_JSONB}, {"target", COL_TEXT}, {"outcome", COL_TEXT}, {"operator", COL_TEXT},
};

struct khcanon_chain {
    const char *name;
    const column *cols;
    size_t ncols;
};

#define CHAIN(t)                                                                                   \
    {                                                                                              \
#t, t##_cols, sizeof t##_cols / sizeof t##_cols[0]                                         \
    }
static const khcanon_chain chains[] = {
    CHAIN(provision_record),
    CHAIN(access_record),
    CHAIN(audit_log),
};

const khcanon_chain *khcanon_find(const char *chain)
{
    for (size_t i = 0; i < sizeof chains / sizeof chains[0]; i++)
        if (strcmp(chain, chains[i].name) == 0)
            return &chains[i];
    return NULL;
}

int khcanon_copy_sql(const khcanon_chain *c, long long from, long long to, char *out, size_t n)
{
    size_t used = 0;
    int k = snprintf(out, n, "COPY (SELECT seq, prev_hash, hash");
    if (k < 0 || (size_t)k >= n)
        return -1;
    used = (size_t)k;
    for (size_t i = 0; i < c->ncols; i++) {
        k = snprintf(out + used, n - used, ", %s", c->cols[i].name);
        if (k < 0 || (size_t)k >= n - used)
            return -1;
        used += (size_t)k;
    }
    k = snprintf(out + used, n - used,
                 " FROM %s WHERE seq BETWEEN %lld AND %lld ORDER BY seq) TO STDOUT "
                 "(FORMAT binary)",
                 c->name, from, to);
    if (k < 0 || (size_t)k >= n - used)
        return -1;
    return (int)(used + (size_t)k);
}

/* ------------------------------------------------------------ output */

bool khcanon_reserve(khcanon_buf *b, size_t more)
{
    if (more <= b->cap - b->len)
        return true;
    if (more > ((size_t)1 << 40) - b->len)
        return false;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len < more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool put(khcanon_buf *b, const void *s, size_t n)
{
    if (!khcanon_reserve(b, n))
        return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)

/* The bytes escape_json writes as themselves: all but controls, " and \\. */
static const uint8_t plain[256] = {
    [0x20 ... 0x21] = 1,
    [0x23 ... 0x5b] = 1,
    [0x5d ... 0xff] = 1,
};

/* s as a JSON string, as escape_json writes it. */
static bool put_string(khcanon_buf *b, const uint8_t *s, size_t n)
{
    /* at most six bytes out per byte in, and the quotes */
    if (n > ((size_t)1 << 36) || !khcanon_reserve(b, n * 6 + 2))
        return false;
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (plain[c]) {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = "0123456789abcdef"[c >> 4];
            *o++ = "0123456789abcdef"[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return true;
}

/* ------------------------------------------------------------- input */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* A reader over a tuple; any read past its end marks it bad. */
typedef struct {
    const uint8_t *p, *end;
    bool bad;
} reader;

static uint32_t rd32(reader *r)
{
    if (r->end - r->p < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v = be32(r->p);
    r->p += 4;
    return v;
}

/* The next field: its bytes, or NULL for SQL NULL (and *len 0). */
static const uint8_t *field(reader *r, size_t *len)
{
    int32_t n = (int32_t)rd32(r);
    *len = 0;
    if (r->bad || n == -1)
        return NULL;
    if (n < 0 || r->end - r->p < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *v = r->p;
    r->p += n;
    *len = (size_t)n;
    return v;
}

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm). */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* A timestamptz (µs since 2000-01-01 UTC) as to_char renders it; false if
 * its year is outside 1-9999 (to_char would write it otherwise). */
static bool put_time(khcanon_buf *b, int64_t us)
{
    const int64_t day = 86400000000LL;
    if (us < -64000000000LL * 1000000 || us > 254000000000LL * 1000000)
        return false; /* infinities and beyond the years below */
    int64_t days = us / day, rem = us % day;
    if (rem < 0) {
        rem += day;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil(days + 10957, &y, &m, &d);
    if (y < 1 || y > 9999)
        return false;
    unsigned secs = (unsigned)(rem / 1000000);
    char t[32], *o = t;
    *o++ = '"';
    o = kh_fmt_zero(o, (unsigned)y, 4);
    *o++ = '-';
    o = kh_fmt_zero(o, m, 2);
    *o++ = '-';
    o = kh_fmt_zero(o, d, 2);
    *o++ = 'T';
    o = kh_fmt_zero(o, secs / 3600, 2);
    *o++ = ':';
    o = kh_fmt_zero(o, secs / 60 % 60, 2);
    *o++ = ':';
    o = kh_fmt_zero(o, secs % 60, 2);
    *o++ = '.';
    o = kh_fmt_zero(o, (unsigned)(rem % 1000000), 6);
    *o++ = 'Z';
    *o++ = '"';
    return put(b, t, (size_t)(o - t));
}

/* to_jsonb(text[]) of a binary array; false if it cannot be rendered here. */
static bool put_texts(khcanon_buf *b, const uint8_t *v, size_t len, bool *bad)
{
    reader r = {v, v + len, false};
    uint32_t ndim = rd32(&r);
    rd32(&r); /* has nulls */
    uint32_t elem = rd32(&r);
    if (r.bad || ndim > 1 || elem != 25 /* text */) {
        *bad = r.bad;
        return false;
    }
    if (!PUTS(b, "["))
        return false;
    uint32_t count = 0;
    if (ndim == 1) {
        count = rd32(&r);
        rd32(&r); /* lower bound */
    }
    for (uint32_t i = 0; i < count && !r.bad; i++) {
        size_t n;
        const uint8_t *e = field(&r, &n);
        if ((i > 0 && !PUTS(b, ", ")) || (e == NULL && !r.bad && !PUTS(b, "null")) ||
            (e != NULL && !put_string(b, e, n)))
            return false;
    }
    if (r.bad || r.p != r.end) {
        *bad = true;
        return false;
    }
    return PUTS(b, "]");
}

long khcanon_header_len(const uint8_t *data, size_t len)
{
    static const uint8_t sig[11] = "PGCOPY\n\377\r\n";
    if (len < 11 || memcmp(data, sig, 11) != 0)
        return 0;
    if (len < 19)
        return -1;
    uint32_t ext = be32(data + 15);
    if (ext > len - 19)
        return -1;
    return (long)(19 + ext);
}

khcanon_status khcanon_decode(const khcanon_chain *c, const uint8_t *tuple, size_t len,
                              khcanon_row *row, khcanon_buf *out)
{
    reader r = {tuple, tuple + len, false};
    bool sure = true;
    size_t n;
    memset(row, 0, sizeof *row);
    out->len = 0;
    if (len < 2 || (size_t)(tuple[0] << 8 | tuple[1]) != 3 + c->ncols)
        return KHCANON_BAD;
    r.p += 2;
    const uint8_t *v = field(&r, &n);
    if (v != NULL && n != 8)
        return KHCANON_BAD;
    if (v != NULL) {
        row->has_seq = true;
        row->seq = be64(v);
    }
    row->prev = field(&r, &row->prev_len);
    row->hash = field(&r, &row->hash_len);
    if (!PUTS(out, "{"))
        return KHCANON_NOMEM;
    for (size_t i = 0; i < c->ncols && !r.bad; i++) {
        const column *col = &c->cols[i];
        v = field(&r, &n);
        if (r.bad)
            break;
        if ((i > 0 && !PUTS(out, ", ")) ||
            !put_string(out, (const uint8_t *)col->name, strlen(col->name)) || !PUTS(out, ": "))
            return KHCANON_NOMEM;
        if (v == NULL) {
            if (!PUTS(out, "null"))
                return KHCANON_NOMEM;
            continue;
        }
        switch (col->type) {
        case COL_INT8: {
            char num[24];
            if (n != 8)
                return KHCANON_BAD;
            size_t k = kh_fmt_ll(num, (long long)be64(v));
            if (strcmp(col->name, "id") == 0)
                memcpy(row->id, num, k + 1);
            if (!put(out, num, k))
                return KHCANON_NOMEM;
            break;
        }
        case COL_TIME:
            if (n != 8)
                return KHCANON_BAD;
            sure = sure && put_time(out, be64(v));
            break;
        case COL_TEXT:
            if (!put_string(out, v, n))
                return KHCANON_NOMEM;
            break;
        case COL_TEXTS: {
            bool bad = false;
            sure = sure && put_texts(out, v, n, &bad);
            if (bad)
                return KHCANON_BAD;
            break;
        }
        case COL_JSONB:
            if (n < 1 || v[0] != 1)
                sure = false;
            else if (!put(out, v + 1, n - 1))
                return KHCANON_NOMEM;
            break;
        }
    }
    if (r.bad || r.p != r.end)
        return KHCANON_BAD;
    if (!PUTS(out, "}"))
        return KHCANON_NOMEM;
    return sure ? KHCANON_OK : KHCANON_UNSURE;
}
