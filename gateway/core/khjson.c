/* khjson.c: the strict JSON parser and the writer (see khjson.h). The parser
 * is a recursive descent over a byte buffer with an explicit depth bound;
 * every allocation is bounded by the input size, which is checked first. */
#include "khjson.h"

#include "khcrypto.h"
#include "khid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key; /* objects only: NUL-terminated, no NUL inside */
    size_t keylen;
    khj_val *val;
} khj_member;

struct khj_val {
    khj_type type;
    bool b;
    int64_t i;
    char *s; /* KHJ_STR: NUL-terminated, no NUL inside */
    size_t slen;
    khj_member *m; /* KHJ_ARR, KHJ_OBJ: elements / members, in input order */
    size_t n, cap;
};

/* ------------------------------------------------------------- parser */

typedef struct {
    const unsigned char *p, *end, *start;
    unsigned depth, max_depth;
    khj_error *err;
} parser;

static void fail_at(parser *ps, const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_at(parser *ps, const unsigned char *at, const char *fmt, ...)
{
    if (ps->err == NULL || ps->err->msg[0] != '\0')
        return; /* keep the first (innermost) reason */
    ps->err->offset = (size_t)(at - ps->start);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err->msg, sizeof ps->err->msg, fmt, ap);
    va_end(ap);
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    uint32_t v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Parses a string at ps->p (on the opening quote) into a malloc'd buffer.
 * The decoded form is never longer than the encoded one, so the encoded
 * length bounds the allocation. */
static char *parse_string(parser *ps, size_t *outlen)
{
    const unsigned char *q = ps->p + 1;
    const unsigned char *close = q;
    /* find the closing quote first, to size the buffer */
    while (close < ps->end && *close != '"') {
        if (*close == '\\' && ps->end - close < 2)
            close = ps->end;
        else
            close += *close == '\\' ? 2 : 1;
    }
    if (close >= ps->end) {
        fail_at(ps, ps->p, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(close - q) + 1);
    size_t n = 0;
    if (out == NULL) {
        fail_at(ps, ps->p, "out of memory");
        return NULL;
    }
    while (q < close) {
        unsigned char c = *q;
        if (c == '\\') {
            unsigned char e = q[1];
            q += 2;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                out[n++] = (char)e;
                break;
            case 'b':
                out[n++] = '\b';
                break;
            case 'f':
                out[n++] = '\f';
                break;
            case 'n':
                out[n++] = '\n';
                break;
            case 'r':
                out[n++] = '\r';
                break;
            case 't':
                out[n++] = '\t';
                break;
            case 'u': {
                uint32_t cp, lo;
                if (hex4(q, close, &cp) != 0) {
                    fail_at(ps, q - 2, "bad \\u escape (four hex digits expected)");
                    goto bad;
                }
                q += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    fail_at(ps, q - 6, "lone low surrogate in \\u escape");
                    goto bad;
                }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (close - q < 6 || q[0] != '\\' || q[1] != 'u' ||
                        hex4(q + 2, close, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                        fail_at(ps, q - 6, "lone high surrogate in \\u escape");
                        goto bad;
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    q += 6;
                }
                if (cp == 0) {
                    fail_at(ps, q - 6, "\\u0000 is not allowed in strings");
                    goto bad;
                }
                n += put_utf8(out + n, cp);
                break;
            }
            default:
                fail_at(ps, q - 2, "unknown escape in string");
                goto bad;
            }
            continue;
        }
        if (c < 0x20) {
            fail_at(ps, q, "control character in string (escape it)");
            goto bad;
        }
        size_t k = kh_utf8_seq(q, close);
        if (k == 0) {
            fail_at(ps, q, "invalid UTF-8 in string");
            goto bad;
        }
        memcpy(out + n, q, k);
        n += k;
        q += k;
    }
    out[n] = '\0';
    *outlen = n;
    ps->p = close + 1;
    return out;
bad:
    khc_free_secret(out, (size_t)(close - ps->p));
    return NULL;
}

static int parse_int(parser *ps, int64_t *out)
{
    const unsigned char *s = ps->p;
    bool neg = false;
    uint64_t v = 0, limit = (uint64_t)INT64_MAX;
    if (ps->p < ps->end && *ps->p == '-') {
        neg = true;
        limit = (uint64_t)INT64_MAX + 1;
        ps->p++;
    }
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
        fail_at(ps, s, "bad number");
        return -1;
    }
    if (*ps->p == '0' && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9') {
        fail_at(ps, s, "leading zero in number");
        return -1;
    }
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > (limit - d) / 10) {
            fail_at(ps, s, "integer out of range (64-bit signed)");
            return -1;
        }
        v = v * 10 + d;
        ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E')) {
        fail_at(ps, s, "only integers are accepted");
        return -1;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

static khj_val *parse_value(parser *ps);

/* Room for one more member (doubling; the input size bounds the count). */
static int grow(khj_val *v)
{
    if (v->n < v->cap)
        return 0;
    size_t nc = v->cap ? v->cap * 2 : 4;
    khj_member *nm = realloc(v->m, nc * sizeof *nm);
    if (nm == NULL)
        return -1;
    v->m = nm;
    v->cap = nc;
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    const khj_member *x = *(const khj_member *const *)a, *y = *(const khj_member *const *)b;
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->key, y->key, n);
    return c != 0 ? c : (x->keylen > y->keylen) - (x->keylen < y->keylen);
}

/* A key that occurs twice, found by sorting pointers to the members:
 * O(n log n). -1 if out of memory. */
static int duplicate_key(const khj_val *o, const khj_member **dup)
{
    *dup = NULL;
    if (o->n < 2)
        return 0;
    const khj_member **k = malloc(o->n * sizeof *k);
    if (k == NULL)
        return -1;
    for (size_t i = 0; i < o->n; i++)
        k[i] = &o->m[i];
    qsort(k, o->n, sizeof *k, member_cmp);
    for (size_t i = 1; i < o->n && *dup == NULL; i++)
        if (member_cmp(&k[i - 1], &k[i]) == 0)
            *dup = k[i];
    free(k);
    return 0;
}

/* A key worth naming in an error message: short and plain. */
static bool plain_key(const khj_member *m)
{
    if (m->keylen == 0 || m->keylen > 32)
        return false;
    for (size_t i = 0; i < m->keylen; i++) {
        char c = m->key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static khj_val *parse_container(parser *ps, bool obj)
{
    const unsigned char *open = ps->p;
    const char close = obj ? '}' : ']';
    khj_val *v = calloc(1, sizeof *v);
    if (v == NULL) {
        fail_at(ps, open, "out of memory");
        return NULL;
    }
    v->type = obj ? KHJ_OBJ : KHJ_ARR;
    if (++ps->depth > ps->max_depth) {
        fail_at(ps, open, "nested deeper than %u levels", ps->max_depth);
        goto bad;
    }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return v;
    }
    for (;;) {
        khj_member mem = {NULL, 0, NULL};
        skip_ws(ps);
        if (obj) {
            if (ps->p >= ps->end || *ps->p != '"') {
                fail_at(ps, ps->p, "object key (a string) expected");
                goto bad;
            }
            mem.key = parse_string(ps, &mem.keylen);
            if (mem.key == NULL)
                goto bad;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                free(mem.key);
                fail_at(ps, ps->p, "':' expected after object key");
                goto bad;
            }
            ps->p++;
        }
        mem.val = parse_value(ps);
        if (mem.val == NULL || grow(v) != 0) {
            if (mem.val != NULL)
                fail_at(ps, ps->p, "out of memory");
            free(mem.key);
            khj_free(mem.val);
            goto bad;
        }
        v->m[v->n++] = mem;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == close) {
                fail_at(ps, ps->p, "trailing comma");
                goto bad;
            }
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        fail_at(ps, ps->p, obj ? "',' or '}' expected" : "',' or ']' expected");
        goto bad;
    }
    const khj_member *dup;
    if (obj && duplicate_key(v, &dup) != 0) {
        fail_at(ps, open, "out of memory");
        goto bad;
    }
    if (obj && dup != NULL) {
        if (plain_key(dup))
            fail_at(ps, open, "duplicate key '%.*s' in object", (int)dup->keylen, dup->key);
        else
            fail_at(ps, open, "duplicate key in object");
        goto bad;
    }
    ps->depth--;
    return v;
bad:
    khj_free(v);
    return NULL;
}

static bool literal(parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
        ps->p += n;
        return true;
    }
    return false;
}

static khj_val *parse_value(parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail_at(ps, ps->p, "value expected");
        return NULL;
    }
    unsigned char c = *ps->p;
    if (c == '{' || c == '[')
        return parse_container(ps, c == '{');
    khj_val *v = calloc(1, sizeof *v);
    if (v == NULL) {
        fail_at(ps, ps->p, "out of memory");
        return NULL;
    }
    const unsigned char *at = ps->p;
    if (c == '"') {
        v->type = KHJ_STR;
        v->s = parse_string(ps, &v->slen);
        if (v->s != NULL)
            return v;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v->type = KHJ_INT;
        if (parse_int(ps, &v->i) == 0)
            return v;
    } else if (literal(ps, "true") || literal(ps, "false")) {
        v->type = KHJ_BOOL;
        v->b = c == 't';
        return v;
    } else if (literal(ps, "null")) {
        v->type = KHJ_NULL;
        return v;
    } else {
        fail_at(ps, at, "unexpected character (not a JSON value)");
    }
    free(v);
    return NULL;
}

khj_val *khj_parse(const char *buf, size_t len, size_t max_len, unsigned max_depth, khj_error *err)
{
    khj_error dummy;
    parser ps;
    if (err == NULL)
        err = &dummy;
    memset(err, 0, sizeof *err);
    ps.err = err;
    ps.start = ps.p = (const unsigned char *)buf;
    ps.end = ps.p + len;
    ps.depth = 0;
    ps.max_depth = max_depth ? max_depth : KHJ_DEFAULT_DEPTH;
    if (len > (max_len ? max_len : KHJ_DEFAULT_MAX)) {
        snprintf(err->msg, sizeof err->msg, "body larger than %zu bytes",
                 max_len ? max_len : (size_t)KHJ_DEFAULT_MAX);
        return NULL;
    }
    if (buf == NULL && len > 0) {
        snprintf(err->msg, sizeof err->msg, "no input");
        return NULL;
    }
    khj_val *v = parse_value(&ps);
    if (v == NULL)
        return NULL;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail_at(&ps, ps.p, "unexpected data after the JSON value");
        khj_free(v);
        return NULL;
    }
    return v;
}

void khj_free(khj_val *v)
{
    if (v == NULL)
        return;
    if (v->type == KHJ_STR)
        khc_free_secret(v->s, v->slen);
    for (size_t i = 0; i < v->n; i++) {
        khj_free(v->m[i].val);
        if (v->m[i].key)
            khc_free_secret(v->m[i].key, v->m[i].keylen);
    }
    free(v->m);
    free(v);
}

khj_type khj_type_of(const khj_val *v)
{
    return v ? v->type : KHJ_NULL;
}

const char *khj_type_name(khj_type t)
{
    static const char *const names[] = {"null", "boolean", "integer", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

bool khj_bool(const khj_val *v)
{
    return v && v->type == KHJ_BOOL && v->b;
}

int64_t khj_int(const khj_val *v)
{
    return v && v->type == KHJ_INT ? v->i : 0;
}

const char *khj_str(const khj_val *v)
{
    return v && v->type == KHJ_STR ? v->s : NULL;
}

size_t khj_strlen(const khj_val *v)
{
    return v && v->type == KHJ_STR ? v->slen : 0;
}

size_t khj_len(const khj_val *v)
{
    return v && (v->type == KHJ_ARR || v->type == KHJ_OBJ) ? v->n : 0;
}

const khj_val *khj_at(const khj_val *v, size_t i)
{
    return i < khj_len(v) ? v->m[i].val : NULL;
}

const char *khj_key_at(const khj_val *v, size_t i)
{
    return v && v->type == KHJ_OBJ && i < v->n ? v->m[i].key : NULL;
}

const khj_val *khj_get(const khj_val *obj, const char *key)
{
    if (obj == NULL || obj->type != KHJ_OBJ || key == NULL)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->m[i].keylen == kl && memcmp(obj->m[i].key, key, kl) == 0)
            return obj->m[i].val;
    return NULL;
}

const char *khj_get_str(const khj_val *obj, const char *key)
{
    return khj_str(khj_get(obj, key));
}

bool khj_get_int(const khj_val *obj, const char *key, int64_t *out)
{
    const khj_val *v = khj_get(obj, key);
    if (v == NULL || v->type != KHJ_INT)
        return false;
    *out = v->i;
    return true;
}

/* ------------------------------------------------------------- writer */

void khjw_init(khj_writer *w, size_t max)
{
    memset(w, 0, sizeof *w);
    w->max = max ? max : (size_t)16 << 20;
}

static void put(khj_writer *w, const char *s, size_t n)
{
    if (w->failed)
        return;
    if (w->len + n + 1 > w->max) {
        w->failed = true;
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t nc = w->cap ? w->cap : 256;
        while (nc < w->len + n + 1)
            nc *= 2;
        if (nc > w->max)
            nc = w->max;
        /* grown by hand so that the old buffer is wiped: responses carry
         * personal data and tokens */
        char *nb = malloc(nc);
        if (nb == NULL) {
            w->failed = true;
            return;
        }
        if (w->len)
            memcpy(nb, w->buf, w->len);
        khc_free_secret(w->buf, w->cap);
        w->buf = nb;
        w->cap = nc;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

/* Before a value: a comma if the container already has one. */
static void before_value(khj_writer *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if ((w->depth == 0 && w->len > 0) || (w->is_obj & ((uint64_t)1 << w->depth))) {
        w->failed = true; /* one value per document; a member needs its key */
        return;
    }
    if (w->depth > 0 && w->depth < 64) {
        uint64_t bit = (uint64_t)1 << w->depth;
        if (w->need_comma & bit)
            put(w, ",", 1);
        w->need_comma |= bit;
    }
}

static void open_c(khj_writer *w, char c)
{
    before_value(w);
    if (w->depth >= 63) {
        w->failed = true;
        return;
    }
    put(w, &c, 1);
    w->depth++;
    uint64_t bit = (uint64_t)1 << w->depth;
    w->need_comma &= ~bit;
    if (c == '{')
        w->is_obj |= bit;
    else
        w->is_obj &= ~bit;
}

static void close_c(khj_writer *w, char c)
{
    uint64_t bit = (uint64_t)1 << w->depth;
    if (w->depth == 0 || w->after_key || ((w->is_obj & bit) != 0) != (c == '}')) {
        w->failed = true;
        return;
    }
    w->depth--;
    put(w, &c, 1);
}

void khjw_obj(khj_writer *w)
{
    open_c(w, '{');
}

void khjw_obj_end(khj_writer *w)
{
    close_c(w, '}');
}

void khjw_arr(khj_writer *w)
{
    open_c(w, '[');
}

void khjw_arr_end(khj_writer *w)
{
    close_c(w, ']');
}

static void put_escaped(khj_writer *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    put(w, "\"", 1);
    while (p < end) {
        const unsigned char *run = p;
        /* copy runs of plain characters in one go */
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80)
            p++;
        if (p > run)
            put(w, (const char *)run, (size_t)(p - run));
        if (p >= end)
            break;
        unsigned char c = *p;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(w, esc, 2);
            p++;
        } else if (c < 0x20) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named)
                put(w, named, 2);
            else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                put(w, esc, 6);
            }
            p++;
        } else {
            size_t k = kh_utf8_seq(p, end);
            if (k == 0) {
                put(w, "\\ufffd", 6); /* not UTF-8: the replacement character */
                p++;
            } else if (k == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                /* U+2028/U+2029: valid JSON, but not inside JavaScript strings */
                put(w, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
                p += 3;
            } else {
                put(w, (const char *)p, k);
                p += k;
            }
        }
    }
    put(w, "\"", 1);
}

void khjw_key(khj_writer *w, const char *key)
{
    uint64_t bit = (uint64_t)1 << w->depth;
    if (w->after_key || (w->is_obj & bit) == 0) {
        w->failed = true;
        return;
    }
    /* the comma logic of a value, without the check that a key came first */
    if (w->need_comma & bit)
        put(w, ",", 1);
    w->need_comma |= bit;
    put_escaped(w, key, strlen(key));
    put(w, ":", 1);
    w->after_key = true;
}

void khjw_strn(khj_writer *w, const char *s, size_t n)
{
    before_value(w);
    put_escaped(w, s, n);
}

void khjw_str(khj_writer *w, const char *s)
{
    if (s == NULL)
        khjw_null(w);
    else
        khjw_strn(w, s, strlen(s));
}

void khjw_int(khj_writer *w, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", (long long)v);
    before_value(w);
    put(w, num, (size_t)n);
}

void khjw_bool(khj_writer *w, bool b)
{
    before_value(w);
    put(w, b ? "true" : "false", b ? 4 : 5);
}

void khjw_null(khj_writer *w)
{
    before_value(w);
    put(w, "null", 4);
}

void khjw_raw(khj_writer *w, const char *json, size_t n)
{
    khj_val *v = khj_parse(json, n, w->max, 64, NULL);
    if (v == NULL) {
        w->failed = true;
        return;
    }
    khj_free(v);
    before_value(w);
    put(w, json, n);
}

void khjw_kstr(khj_writer *w, const char *key, const char *s)
{
    khjw_key(w, key);
    khjw_str(w, s);
}

void khjw_kint(khj_writer *w, const char *key, int64_t v)
{
    khjw_key(w, key);
    khjw_int(w, v);
}

void khjw_kbool(khj_writer *w, const char *key, bool b)
{
    khjw_key(w, key);
    khjw_bool(w, b);
}

char *khjw_finish(khj_writer *w, size_t *len)
{
    char *out = NULL;
    if (!w->failed && w->depth == 0 && !w->after_key && w->buf != NULL) {
        out = w->buf;
        if (len)
            *len = w->len;
        w->buf = NULL;
    }
    khjw_discard(w);
    return out;
}

void khjw_discard(khj_writer *w)
{
    khc_free_secret(w->buf, w->cap);
    size_t max = w->max;
    memset(w, 0, sizeof *w);
    w->max = max;
}
