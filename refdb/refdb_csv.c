/* refdb_csv.c: the streaming RFC 4180 reader of bulk files (see
 * refdb_csv.h for the rules). Two small state machines, UTF-8 and
 * CSV, one byte at a time over a fixed read buffer, with a fast path
 * (fast_run) that takes the common bytes, plain ASCII data and commas
 * outside quotes, in a tight loop to the same effect; nothing is allocated
 * after refdb_csv_new.
 *
 * The file's SHA-256 is the one use of OpenSSL in refdb: the digest is the
 * file's identity (refdb/FORMAT.md section 3), so it must be computed over the
 * very bytes that were checked, in the same pass. */
#include "refdb_csv.h"

#include "khcrypto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_BUF 65536

enum csv_state {
    F_START,       /* at the start of a field */
    F_UNQUOTED,    /* inside an unquoted field */
    F_QUOTED,      /* inside a quoted field */
    F_QUOTE_QUOTE, /* a quote inside a quoted field: "" escape or the closing quote */
    F_AFTER_CLOSE, /* after a closing quote, a CR seen: only LF may follow */
};

struct refdb_csv {
    int fd;
    bool eof, bom_done;
    size_t rpos, rlen;
    uint64_t bytes;
    size_t lfs;        /* LF bytes read */
    bool partial_line; /* bytes after the last LF */
    khc_sha256_ctx *md;
    bool md_done;
    uint8_t digest[32];

    /* UTF-8: continuation bytes still expected, and the range of the next one */
    int u_need;
    unsigned char u_lo, u_hi;

    /* the record being read */
    bool in_record, skip, cr_pending;
    enum csv_state state;
    size_t raw;  /* bytes of the record so far, line end excluded */
    size_t dlen; /* bytes used in data */
    size_t nf;   /* fields completed */
    refdb_csv_record cur;

    unsigned char rbuf[READ_BUF];
    /* Fields, each NUL-terminated, back to back. A raw byte stores at most one
     * byte (a ',' stores the NUL that ends its field; quotes store nothing), and
     * the last field's NUL is the only extra one: MAX + 1 bytes suffice, and at
     * most MAX + 1 fields. */
    char data[REFDB_CSV_MAX_RECORD + 1];
    uint32_t starts[REFDB_CSV_MAX_RECORD + 1];
};

refdb_csv *refdb_csv_new(int fd)
{
    refdb_csv *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->fd = fd;
    r->md = khc_sha256_new();
    if (r->md == NULL) {
        refdb_csv_free(r);
        return NULL;
    }
    return r;
}

void refdb_csv_free(refdb_csv *r)
{
    if (r == NULL)
        return;
    khc_sha256_free(r->md);
    free(r);
}

const char *refdb_csv_field(const refdb_csv *r, size_t i)
{
    return i < r->nf ? r->data + r->starts[i] : "";
}

void refdb_csv_fields(const refdb_csv *r, size_t first, size_t n, const char **out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = first + i < r->nf ? r->data + r->starts[first + i] : "";
}

const char *refdb_csv_data(const refdb_csv *r, size_t *len)
{
    *len = r->dlen;
    return r->data;
}

uint64_t refdb_csv_bytes(const refdb_csv *r)
{
    return r->bytes;
}

size_t refdb_csv_lines(const refdb_csv *r)
{
    return r->lfs + (r->partial_line ? 1 : 0);
}

void refdb_csv_sha256(refdb_csv *r, uint8_t out[32])
{
    if (!r->md_done) {
        if (khc_sha256_peek(r->md, r->digest) != 0)
            memset(r->digest, 0, sizeof r->digest);
        r->md_done = true;
    }
    memcpy(out, r->digest, sizeof r->digest);
}

/* Reads more bytes into rbuf at rlen. 1 if some came, 0 at the end, -1 on
 * error. Every byte read goes into the digest. */
static int fill(refdb_csv *r)
{
    ssize_t n;
    do
        n = read(r->fd, r->rbuf + r->rlen, sizeof r->rbuf - r->rlen);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    if (khc_sha256_update(r->md, r->rbuf + r->rlen, (size_t)n) != 0)
        return -1;
    r->rlen += (size_t)n;
    r->bytes += (uint64_t)n;
    return 1;
}

static void syntax(refdb_csv *r, const char *what)
{
    if (r->cur.syntax == NULL)
        r->cur.syntax = what;
}

static void encoding(refdb_csv *r, const char *what)
{
    if (r->cur.encoding == NULL) {
        r->cur.encoding = what;
        r->cur.encoding_field = r->nf;
    }
}

static void begin_record(refdb_csv *r)
{
    memset(&r->cur, 0, sizeof r->cur);
    r->cur.line = r->lfs + 1;
    r->in_record = true;
    r->skip = false;
    r->cr_pending = false;
    r->state = F_START;
    r->raw = 0;
    r->dlen = 0;
    r->nf = 0;
    r->starts[0] = 0;
}

/* Counts one raw byte of the record and stores `store` unless it is -1.
 * false once the record is too long: its fields are dropped and the rest of
 * the line is skipped. */
static bool take(refdb_csv *r, int store)
{
    if (r->raw >= REFDB_CSV_MAX_RECORD) {
        r->cur.too_long = true;
        r->skip = true;
        r->nf = 0;
        return false;
    }
    r->raw++;
    if (store >= 0)
        r->data[r->dlen++] = (char)store;
    return true;
}

static bool end_field(refdb_csv *r)
{
    if (!take(r, '\0'))
        return false;
    r->nf++;
    r->starts[r->nf] = (uint32_t)r->dlen;
    return true;
}

static int end_record(refdb_csv *r)
{
    if (!r->cur.too_long) {
        r->data[r->dlen++] = '\0';
        r->nf++;
    }
    r->cur.nfields = r->nf;
    r->in_record = false;
    r->skip = false;
    r->cr_pending = false;
    return 1;
}

/* Checks c as the next byte of a UTF-8 stream (U+0000 refused too: it cannot
 * live in a C string, and it is the mark of a UTF-16 file). */
static void utf8_byte(refdb_csv *r, unsigned char c)
{
    if (r->u_need > 0) {
        if (c >= r->u_lo && c <= r->u_hi) {
            r->u_need--;
            r->u_lo = 0x80;
            r->u_hi = 0xBF;
            return;
        }
        encoding(r, "holds bytes that are not valid UTF-8");
        r->u_need = 0; /* c starts afresh */
    }
    r->u_lo = 0x80;
    r->u_hi = 0xBF;
    if (c == 0x00) {
        encoding(r, "holds a NUL byte (is the file UTF-16?)");
    } else if (c < 0x80) {
        return;
    } else if (c >= 0xC2 && c <= 0xDF) {
        r->u_need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        r->u_need = 2;
        if (c == 0xE0)
            r->u_lo = 0xA0; /* overlong */
        else if (c == 0xED)
            r->u_hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        r->u_need = 3;
        if (c == 0xF0)
            r->u_lo = 0x90; /* overlong */
        else if (c == 0xF4)
            r->u_hi = 0x8F; /* above U+10FFFF */
    } else {
        encoding(r, "holds bytes that are not valid UTF-8");
    }
}

/* One byte of the CSV grammar. 1 when it ends the record. */
static int csv_byte(refdb_csv *r, unsigned char c)
{
    if (r->cr_pending) {
        r->cr_pending = false;
        if (c == '\n' && r->state != F_QUOTED)
            return end_record(r);
        if (c != '\n')
            syntax(r, "holds a carriage return not followed by a line feed");
        /* CR LF inside quotes is a line break of the value; a bare CR is kept
         * as data so that the record's end is still found. */
        if (!take(r, '\r'))
            return c == '\n' ? end_record(r) : 0;
        if (r->state != F_QUOTED)
            r->state = F_UNQUOTED;
    }
    switch (r->state) {
    case F_START:
        if (c == '"') {
            if (take(r, -1))
                r->state = F_QUOTED;
        } else if (c == ',') {
            end_field(r);
        } else if (c == '\r') {
            r->cr_pending = true;
        } else if (c == '\n') {
            return end_record(r);
        } else {
            r->state = F_UNQUOTED;
            take(r, c);
        }
        break;
    case F_UNQUOTED:
        if (c == ',') {
            r->state = F_START;
            end_field(r);
        } else if (c == '\r') {
            r->cr_pending = true;
        } else if (c == '\n') {
            return end_record(r);
        } else {
            if (c == '"')
                syntax(r, "has a quote inside an unquoted field");
            take(r, c);
        }
        break;
    case F_QUOTED:
        if (c == '"') {
            if (take(r, -1))
                r->state = F_QUOTE_QUOTE;
        } else if (c == '\r') {
            r->cr_pending = true;
        } else if (!take(r, c) && c == '\n') {
            return end_record(r); /* too long: this LF ends the skip already */
        }
        break;
    case F_QUOTE_QUOTE:
        if (c == '"') {
            r->state = F_QUOTED;
            take(r, '"');
        } else if (c == ',') {
            r->state = F_START;
            end_field(r);
        } else if (c == '\r') {
            r->state = F_AFTER_CLOSE;
            r->cr_pending = true;
        } else if (c == '\n') {
            return end_record(r);
        } else {
            syntax(r, "has text after the closing quote of a field");
            r->state = F_UNQUOTED;
            take(r, c);
        }
        break;
    case F_AFTER_CLOSE:
        /* only reached through cr_pending, which left it */
        break;
    }
    return 0;
}

/* One byte of the file. 1 when it ends a record. */
static int file_byte(refdb_csv *r, unsigned char c)
{
    int done;
    if (!r->in_record)
        begin_record(r);
    if (r->skip) {
        r->u_need = 0;
        done = c == '\n' ? end_record(r) : 0;
    } else {
        utf8_byte(r, c);
        done = csv_byte(r, c);
    }
    if (c == '\n') {
        r->lfs++;
        r->partial_line = false;
    } else {
        r->partial_line = true;
    }
    return done;
}

/* The bytes the fast path takes: those that, outside quotes with no UTF-8
 * sequence open, are data or a comma. 0x01..0x7F but for '"' (0x22), LF
 * (0x0A) and CR (0x0D); NUL and bytes >= 0x80 (the UTF-8 check), quotes, CR
 * and LF go through the state machines. */
static const unsigned char simple_byte[256] = {
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, /* 0x00: NUL, LF, CR */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 */
    /* 0x80..0xFF: 0 */
};

/* The common case in a tight loop: outside quotes (at a field's start or in
 * an unquoted field), no CR pending, no UTF-8 sequence open and no skip,
 * plain bytes are taken, commas end fields and LF ends the record exactly as
 * file_byte would do one at a time (utf8_byte has nothing to do for them).
 * Stops at the first byte that needs the state machines, at the end of the
 * buffer, or when the record reaches REFDB_CSV_MAX_RECORD (the next byte,
 * through file_byte, then makes it too long). 1 when an LF ended the
 * record. */
static int fast_run(refdb_csv *r)
{
    if (r->skip || r->cr_pending || r->u_need != 0 ||
        (r->state != F_START && r->state != F_UNQUOTED))
        return 0;
    const unsigned char *p = r->rbuf + r->rpos, *start = p;
    size_t avail = r->rlen - r->rpos, room = REFDB_CSV_MAX_RECORD - r->raw;
    const unsigned char *end = p + (avail < room ? avail : room);
    size_t dlen = r->dlen, nf = r->nf;
    char *data = r->data;
    uint32_t *starts = r->starts;
    /* Branch-free on the field ends: starts[nf + 1] is written ahead of time
     * (nf + 1 <= raw + 1 <= REFDB_CSV_MAX_RECORD), and is only read once a
     * comma has made it a field's start. */
    while (p < end && simple_byte[*p]) {
        unsigned char c = *p++;
        unsigned comma = c == ',';
        data[dlen++] = comma ? '\0' : (char)c;
        starts[nf + 1] = (uint32_t)dlen;
        nf += comma;
    }
    if (p != start) {
        r->raw += (size_t)(p - start);
        r->dlen = dlen;
        r->nf = nf;
        r->state = p[-1] == ',' ? F_START : F_UNQUOTED;
        r->partial_line = true;
    }
    r->rpos += (size_t)(p - start);
    /* An LF ends the record even at the length limit (it is not taken). */
    if (r->rpos < r->rlen && r->rbuf[r->rpos] == '\n') {
        r->rpos++;
        r->lfs++;
        r->partial_line = false;
        return end_record(r);
    }
    return 0;
}

int refdb_csv_next(refdb_csv *r, refdb_csv_record *rec)
{
    if (!r->bom_done) {
        /* at least 3 bytes, or the whole file if shorter, to see a BOM */
        while (!r->eof && r->rlen < 3) {
            int f = fill(r);
            if (f < 0)
                return -1;
            r->eof = f == 0;
        }
        if (r->rlen >= 3 && memcmp(r->rbuf, "\xEF\xBB\xBF", 3) == 0)
            r->rpos = 3;
        r->bom_done = true;
    }
    for (;;) {
        while (r->rpos < r->rlen) {
            if (!r->in_record)
                begin_record(r);
            int done = fast_run(r);
            if (done == 0 && r->rpos < r->rlen)
                done = file_byte(r, r->rbuf[r->rpos++]);
            if (done) {
                *rec = r->cur;
                return 1;
            }
        }
        if (r->eof)
            break;
        r->rpos = r->rlen = 0;
        int f = fill(r);
        if (f < 0)
            return -1;
        r->eof = f == 0;
    }
    if (!r->in_record)
        return 0;
    /* the last record has no line end */
    if (!r->skip) {
        if (r->u_need > 0)
            encoding(r, "ends in the middle of a UTF-8 character");
        if (r->cr_pending)
            syntax(r, "holds a carriage return not followed by a line feed");
        if (r->state == F_QUOTED)
            syntax(r, "has a quoted field that is never closed");
    }
    r->u_need = 0;
    end_record(r);
    *rec = r->cur;
    return 1;
}
