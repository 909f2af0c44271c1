/* khverify.c: the walk along a record chain and the pipeline that feeds it
 * (khverify.h). */
#include "khverify.h"

#include "khchain.h"
#include "khcrypto.h"
#include "khtsp.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- walk */

bool khv_sig_check(const khv_walker *w, const khv_sig *s, const char *sighex)
{
    size_t slen = strlen(sighex) / 2;
    uint8_t *sig = malloc(slen + 1);
    char msg[512];
    char seq[24], hex[65];
    snprintf(seq, sizeof seq, "%lld", s->seq);
    khc_hex(s->hash, 32, hex);
    int mlen = kh_chain_head_message(w->tenant, w->chain, seq, hex, msg, sizeof msg);
    bool ok = sig != NULL && mlen > 0 && khc_unhex(sighex, strlen(sighex), sig, slen) == 0 &&
              khc_verify(w->cert, (const uint8_t *)msg, (size_t)mlen, sig, slen) == 0;
    free(sig);
    return ok;
}

void khv_tst_check(const khv_walker *w, khv_sig *s, const char *sighex, const char *tsthex)
{
    size_t slen = strlen(sighex) / 2, tlen = strlen(tsthex) / 2;
    s->has_tst = tsthex[0] != '\0';
    s->ok_tst = false;
    s->tst_time[0] = s->tst_why[0] = '\0';
    if (!s->has_tst || w->tsa == NULL)
        return;
    uint8_t *sig = malloc(slen + 1), *tok = tlen <= KHTSP_MAX_REPLY ? malloc(tlen + 1) : NULL;
    int64_t gen = 0;
    if (sig == NULL || tok == NULL || khc_unhex(sighex, strlen(sighex), sig, slen) != 0 ||
        khc_unhex(tsthex, strlen(tsthex), tok, tlen) != 0)
        snprintf(s->tst_why, sizeof s->tst_why, "unreadable");
    else if (khtsp_token_check(tok, tlen, sig, slen, w->tsa, &gen, s->tst_why, sizeof s->tst_why) ==
             0) {
        time_t t = (time_t)gen;
        struct tm tm;
        s->ok_tst = gmtime_r(&t, &tm) != NULL &&
                    strftime(s->tst_time, sizeof s->tst_time, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0;
    }
    free(sig);
    free(tok);
}

void khv_walker_init(khv_walker *w, const char *tenant, const char *chain, X509 *cert)
{
    memset(w, 0, sizeof *w);
    w->tenant = tenant;
    w->chain = chain;
    w->cert = cert;
    w->matched = -1;
    w->altered = -1;
    w->anchored = true;
    w->start = w->expect = 1;
}

/* The chain starts at seq start after anchor, as the retention recorded at
 * audit_log seq retention says (0: no retention, seq 1 after zeros). */
void khv_walker_anchor(khv_walker *w, long long start, const uint8_t anchor[32],
                       long long retention)
{
    w->anchored = true;
    w->start = w->expect = start;
    w->retention = retention;
    memcpy(w->anchor, anchor, 32);
    memcpy(w->prev, anchor, 32);
}

void khv_broken(khv_walker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
    w->broken = true;
}

/* What the verdict adds about the chain's start: ", where it starts after
 * the retention recorded at audit_log seq N" (phrase 0) or " (after the
 * retention recorded at audit_log seq N)" (phrase 1), or "" without one. */
static const char *after_retention(const khv_walker *w, int phrase, char *buf, size_t n)
{
    if (w->retention <= 0)
        buf[0] = '\0';
    else if (phrase == 0)
        snprintf(buf, n, ", where it starts after the retention recorded at audit_log seq %lld",
                 w->retention);
    else
        snprintf(buf, n, " (after the retention recorded at audit_log seq %lld)", w->retention);
    return buf;
}

/* The signatures are all checked before the rows; a signed head at the seq
 * just before the chain's start must hold its anchor. */
bool khv_bad_signature(khv_walker *w)
{
    for (size_t i = 0; i < w->nsigs; i++) {
        if (!w->sigs[i].ok_sig) {
            khv_broken(
                w,
                "the signed head at seq %lld does not verify with the certificate (forged or "
                "altered signature)",
                w->sigs[i].seq);
            return true;
        }
        if (w->tsa != NULL && w->sigs[i].has_tst && !w->sigs[i].ok_tst) {
            khv_broken(w,
                       "the time-stamp token of the signed head at seq %lld does not verify with "
                       "the TSA's CA (%s): forged or altered token",
                       w->sigs[i].seq, w->sigs[i].tst_why);
            return true;
        }
        if (w->anchored && w->start > 1 && w->sigs[i].seq == w->start - 1) {
            if (!khc_ct_equal(w->sigs[i].hash, w->anchor, 32)) {
                khv_broken(w,
                           "the head signed at seq %lld does not match the anchor of the retention "
                           "recorded at audit_log seq %lld (forged retention record)",
                           w->sigs[i].seq, w->retention);
                return true;
            }
            w->matched = (long)i;
        }
    }
    return false;
}

/* The first row of an anchored chain is not the one it must start with. */
static void first_row_broken(khv_walker *w, long long seq, const char *id)
{
    char ar[96];
    after_retention(w, 1, ar, sizeof ar);
    if (seq > w->start)
        khv_broken(w,
                   "seq %lld (row id %s) is the first row, but the chain starts at seq %lld%s: "
                   "%lld row(s) missing (deleted)",
                   seq, id, w->start, ar, seq - w->start);
    else
        khv_broken(w,
                   "seq %lld (row id %s) lies before the chain's start at seq %lld%s (inserted, or "
                   "a retention record forged)",
                   seq, id, w->start, ar);
}

void khv_walk_row(khv_walker *w, long long seq, const uint8_t rprev[32], const uint8_t rhash[32],
                  bool content_ok, const char *id)
{
    if (w->broken)
        return;
    if (!w->started) {
        w->started = true;
        w->first = seq;
        if (w->anchored && seq != w->start) {
            first_row_broken(w, seq, id);
            return;
        }
        if (!w->anchored) {
            /* a range may start anywhere: its first row's link is taken as
             * given, except that seq 1 follows 32 zero bytes */
            w->expect = seq;
            if (seq != 1)
                memcpy(w->prev, rprev, 32);
        }
        while (w->si < w->nsigs && w->sigs[w->si].seq < seq)
            w->si++;
    }
    if (seq > w->expect) {
        khv_broken(w, "seq %lld (row id %s) follows seq %lld: %lld row(s) missing (deleted)", seq,
                   id, w->expect - 1, seq - w->expect);
    } else if (seq < w->expect) {
        khv_broken(w,
                   "seq %lld (row id %s) comes after seq %lld: a second row with that seq, or one "
                   "out of place (inserted or reordered)",
                   seq, id, w->expect - 1);
    } else if (!khc_ct_equal(rprev, w->prev, 32)) {
        char ar[96];
        if (seq == w->start && w->anchored && w->retention > 0)
            khv_broken(w, "seq %lld (row id %s) does not follow the anchor of the chain's start%s",
                       seq, id, after_retention(w, 1, ar, sizeof ar));
        else
            khv_broken(w,
                       "seq %lld (row id %s) does not follow the row before it (inserted or "
                       "reordered)",
                       seq, id);
    } else if (!content_ok) {
        /* rprev is the previous row's hash: the content hash is the one the
         * walk would compute from it */
        w->altered = seq;
        snprintf(w->altered_id, sizeof w->altered_id, "%s", id);
        khv_broken(w, "seq %lld (row id %s): its content no longer matches its hash (altered)", seq,
                   id);
    } else {
        while (w->si < w->nsigs && w->sigs[w->si].seq < seq)
            w->si++;
        if (w->si < w->nsigs && w->sigs[w->si].seq == seq) {
            if (!khc_ct_equal(w->sigs[w->si].hash, rhash, 32))
                khv_broken(w,
                           "seq %lld (row id %s): the chain no longer matches the head signed "
                           "there (rewritten)",
                           seq, id);
            w->matched = (long)w->si;
            w->si++;
        }
        memcpy(w->prev, rhash, 32);
        w->expect = seq + 1;
        w->rows++;
    }
}

void khv_walk_unchained(khv_walker *w, const char *id)
{
    if (!w->broken)
        khv_broken(w, "row id %s has no chain columns (inserted around the chain)", id);
}

/* What the time-stamps of the signed heads say, for the verdict (into buf). */
static const char *stamps(const khv_walker *w, char *buf, size_t n)
{
    size_t stamped = 0;
    const khv_sig *latest = NULL;
    for (size_t i = 0; i < w->nsigs; i++)
        if (w->sigs[i].has_tst) {
            stamped++;
            latest = &w->sigs[i];
        }
    if (stamped == 0)
        snprintf(buf, n, "; no signed head time-stamped");
    else if (w->tsa == NULL)
        snprintf(buf, n, "; %zu of %zu signed heads time-stamped (tokens not checked: no --tsa-ca)",
                 stamped, w->nsigs);
    else
        snprintf(
            buf, n,
            "; %zu of %zu signed heads time-stamped, every token verifies (latest: seq %lld at %s)",
            stamped, w->nsigs, latest->seq, latest->tst_time);
    return buf;
}

/* Ends a walk: prints the verdict and returns the exit status. to: the end of
 * the range (0: none); head: the chain's head row, for a whole chain. */
int khv_walk_end(khv_walker *w, long long to, const khv_head *head)
{
    long long last = w->expect - 1;
    char ar[96], st[200];
    if (!w->broken && w->nsigs > 0 && w->sigs[w->nsigs - 1].seq > last &&
        (to <= 0 || w->sigs[w->nsigs - 1].seq <= to))
        khv_broken(
            w,
            "a head was signed at seq %lld but the chain ends at seq %lld: rows deleted at the "
            "end",
            w->sigs[w->nsigs - 1].seq, last);
    if (!w->broken && head != NULL && head->known) {
        if (head->seq > last)
            khv_broken(w,
                       "the chain's head is at seq %lld but the rows end at seq %lld: rows deleted "
                       "at the end",
                       head->seq, last);
        else if (head->seq < last)
            khv_broken(w,
                       "the rows go on to seq %lld, past the chain's head at seq %lld (appended "
                       "around the chain)",
                       last, head->seq);
        else if (!khc_ct_equal(head->hash, w->prev, 32))
            khv_broken(w, "seq %lld, the last row: the chain's head holds another hash (rewritten)",
                       last);
    }
    if (w->broken) {
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", w->tenant, w->chain, w->why);
        return 1;
    }
    after_retention(w, 0, ar, sizeof ar);
    if (w->rows == 0)
        printf("khctl: tenant %s chain %s: no rows%s%s\n", w->tenant, w->chain,
               w->anchored ? "" : " in range", ar);
    else if (w->matched < 0)
        printf("khctl: tenant %s chain %s: %lld rows intact from seq %lld%s; no signed head in "
               "range (the rows could have been rebuilt by whoever can write the database)\n",
               w->tenant, w->chain, w->rows, w->first, ar);
    else
        printf("khctl: tenant %s chain %s: %lld rows intact from seq %lld%s; signed head at seq "
               "%lld (%s) verifies; %lld row(s) after it not yet signed%s\n",
               w->tenant, w->chain, w->rows, w->first, ar, w->sigs[w->matched].seq,
               w->sigs[w->matched].signed_at, last - w->sigs[w->matched].seq,
               stamps(w, st, sizeof st));
    return 0;
}

/* ------------------------------------------------------------ pipeline */

/* Batches of records: filled by the caller, decoded and hashed by a worker,
 * walked by the caller in the order they were filled. */
enum { BATCH_ROWS = 1024, BATCH_BYTES = 1 << 20, MAX_WORKERS = 8 };
enum { B_FREE, B_QUEUED, B_BUSY, B_DONE };

typedef struct {
    int state;
    bool failed;      /* a worker ran out of memory */
    size_t n;         /* records */
    size_t used, cap; /* bytes of arena */
    uint8_t *arena;   /* the records, each followed by a NUL */
    size_t off[BATCH_ROWS], len[BATCH_ROWS];
    khv_row rows[BATCH_ROWS];
} batch;

struct khv_pipe {
    khv_decode_fn decode;
    const void *ctx;
    khv_walk_fn walk;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t threads[MAX_WORKERS];
    int nthreads;
    bool stop;
    size_t nb; /* batches in the ring */
    batch *ring;
    unsigned long filled; /* batches handed to the workers */
    unsigned long taken;  /* batches a worker has taken */
    unsigned long walked; /* batches walked */
    khv_text inline_text; /* the caller's buffer when there are no workers */
};

/* Decodes and hashes every record of b. false if out of memory. */
static bool process(const khv_pipe *p, batch *b, khv_text *text, khc_sha256_ctx *md)
{
    for (size_t i = 0; i < b->n; i++) {
        khv_row *row = &b->rows[i];
        long long tag = row->tag;
        uint8_t h[32];
        memset(row, 0, sizeof *row);
        row->tag = tag;
        size_t clen = 0;
        text->len = 0;
        const char *canon = p->decode(p->ctx, b->arena + b->off[i], b->len[i], row, text, &clen);
        if (canon == NULL || row->kind != KHV_CHAINED || row->unsure)
            continue;
        if (khc_sha256_pair(md, row->prev, 32, (const uint8_t *)canon, clen, h) != 0)
            return false;
        row->content_ok = khc_ct_equal(h, row->hash, 32);
    }
    return true;
}

static void *worker(void *arg)
{
    khv_pipe *p = arg;
    khv_text text = {0};
    khc_sha256_ctx *md = khc_sha256_new();
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->taken == p->filled)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        batch *b = &p->ring[p->taken++ % p->nb];
        b->state = B_BUSY;
        pthread_mutex_unlock(&p->mu);
        bool ok = md != NULL && process(p, b, &text, md);
        pthread_mutex_lock(&p->mu);
        b->failed = !ok;
        b->state = B_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    khc_sha256_free(md);
    free(text.p);
    return NULL;
}

khv_pipe *khv_pipe_new(khv_decode_fn decode, const void *ctx, khv_walk_fn walk, void *arg)
{
    khv_pipe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cpus <= 1 ? 0 : cpus > MAX_WORKERS ? MAX_WORKERS : (int)cpus;
    p->decode = decode;
    p->ctx = ctx;
    p->walk = walk;
    p->arg = arg;
    p->nb = want == 0 ? 1 : (size_t)want * 2 + 2;
    p->ring = calloc(p->nb, sizeof *p->ring);
    if (p->ring == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->ring);
        free(p);
        return NULL;
    }
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < want; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break; /* fewer workers, or none: the caller decodes */
        p->nthreads++;
    }
    return p;
}

/* Walks the oldest batch not yet walked (it must have been filled). */
static int walk_oldest(khv_pipe *p)
{
    batch *b = &p->ring[p->walked % p->nb];
    if (p->nthreads == 0) {
        khc_sha256_ctx *md = khc_sha256_new();
        b->failed = md == NULL || !process(p, b, &p->inline_text, md);
        khc_sha256_free(md);
    } else {
        pthread_mutex_lock(&p->mu);
        while (b->state != B_DONE)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    p->walked++;
    int rc = b->failed ? -1 : 0;
    if (rc == 0)
        for (size_t i = 0; i < b->n; i++)
            p->walk(p->arg, &b->rows[i]);
    b->n = b->used = 0;
    b->state = B_FREE;
    return rc;
}

/* Hands the batch being filled to the workers. */
static void submit(khv_pipe *p)
{
    batch *b = &p->ring[p->filled % p->nb];
    if (b->n == 0)
        return;
    pthread_mutex_lock(&p->mu);
    b->state = B_QUEUED;
    p->filled++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

int khv_pipe_put(khv_pipe *p, const void *rec, size_t len, long long tag)
{
    batch *b = &p->ring[p->filled % p->nb];
    if (b->n > 0 && (b->n == BATCH_ROWS || len >= b->cap - b->used)) {
        submit(p);
        b = &p->ring[p->filled % p->nb];
    }
    /* the slot to fill must have been walked: the ring is full otherwise */
    if (p->filled - p->walked == p->nb && walk_oldest(p) != 0)
        return -1;
    if (len >= b->cap - b->used) {
        size_t cap = b->cap ? b->cap : BATCH_BYTES;
        while (len >= cap - b->used) {
            if (cap > ((size_t)1 << 40))
                return -1;
            cap *= 2;
        }
        uint8_t *a = realloc(b->arena, cap);
        if (a == NULL)
            return -1;
        b->arena = a;
        b->cap = cap;
    }
    memcpy(b->arena + b->used, rec, len);
    b->arena[b->used + len] = '\0';
    b->off[b->n] = b->used;
    b->len[b->n] = len;
    b->rows[b->n].tag = tag;
    b->n++;
    b->used += len + 1;
    return 0;
}

int khv_pipe_drain(khv_pipe *p)
{
    int rc = 0;
    submit(p);
    while (p->walked < p->filled)
        if (walk_oldest(p) != 0)
            rc = -1;
    return rc;
}

void khv_pipe_free(khv_pipe *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (size_t i = 0; i < p->nb; i++)
        free(p->ring[i].arena);
    free(p->ring);
    free(p->inline_text.p);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ------------------------------------------------------- export lines */

/* Whether any byte of x is c (the classic SWAR test). */
static inline uint64_t has_byte(uint64_t x, uint8_t c)
{
    uint64_t y = x ^ (0x0101010101010101ULL * c);
    return (y - 0x0101010101010101ULL) & ~y & 0x8080808080808080ULL;
}

/* Unescapes the JSON string whose text starts at p (after its opening
 * quote) and ends before lim into out; *end is left on its closing quote.
 * Only what khctl export writes is understood: \" \\ and \u00XX (not
 * \u0000). false if the string is cut, too long for out, or holds another
 * escape or a NUL. */
static bool unescape(const char *p, const char *lim, char *out, size_t outlen, size_t *outn,
                     const char **end)
{
    size_t n = 0;
    for (;;) {
        /* eight plain bytes at a time; the runs between escapes are short
         * (every quote of a canonical text is escaped) */
        while (lim - p >= 8 && outlen - n > 8) {
            uint64_t x, m;
            memcpy(&x, p, 8);
            memcpy(out + n, &x, 8);
            m = has_byte(x, '"') | has_byte(x, '\\') | has_byte(x, 0);
            if (m != 0) {
                /* the lowest flag is exact (little-endian): the plain
                 * bytes before it are kept, the rest rewritten below */
                size_t k = (size_t)__builtin_ctzll(m) / 8;
                n += k;
                p += k;
                break;
            }
            n += 8;
            p += 8;
        }
        char c = p < lim ? *p : '\0';
        if (c == '"' || c == '\0')
            break;
        if (n + 1 >= outlen)
            return false;
        if (c != '\\') {
            out[n++] = c;
            p++;
            continue;
        }
        p++;
        if (p < lim && *p == 'u') {
            /* export writes \u00XX for control characters only */
            uint8_t v[2];
            if (lim - p < 5 || khc_unhex(p + 1, 4, v, 2) != 0 || v[0] != 0 || v[1] == 0)
                return false;
            out[n++] = (char)v[1];
            p += 5;
        } else if (p < lim && (*p == '"' || *p == '\\')) {
            out[n++] = *p++;
        } else {
            return false; /* a line that ends inside an escape, or another escape */
        }
    }
    out[n] = '\0';
    *outn = n;
    *end = p;
    return p < lim && *p == '"';
}

bool khv_json_field(const char *line, const char *key, char *out, size_t outlen)
{
    char pat[48];
    size_t klen = strlen(key), n = 0;
    if (klen + 4 > sizeof pat || outlen == 0)
        return false;
    pat[0] = '"';
    memcpy(pat + 1, key, klen);
    memcpy(pat + 1 + klen, "\":", 3); /* with its NUL */
    const char *p = strstr(line, pat), *end;
    if (p == NULL)
        return false;
    p += klen + 3;
    if (*p != '"') {
        while (*p && *p != ',' && *p != '}' && n + 1 < outlen)
            out[n++] = *p++;
        out[n] = '\0';
        return n > 0;
    }
    return unescape(p + 1, p + 1 + strlen(p + 1), out, outlen, &n, &end);
}

bool khv_parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    /* digits only, after an optional minus: strtoll alone would take
     * leading blanks and a plus sign */
    const char *d = s[0] == '-' ? s + 1 : s;
    if (*d < '0' || *d > '9')
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* A strict decimal seq (the extremes are refused: they mark an overflow). */
static bool parse_seq(const char *s, long long *out)
{
    return khv_parse_ll(s, LLONG_MIN + 1, LLONG_MAX - 1, out);
}

/* Room for need bytes in all (t->len is 0 when a decoder starts). */
static bool text_room(khv_text *t, size_t need)
{
    return need <= t->cap || khcanon_reserve(t, need - t->len);
}

/* The row line as export writes it, read in one pass:
 * {"seq":N,"prev_hash":"<64 hex>","hash":"<64 hex>","canonical":{...}}
 * (version 3: the text as it is) or ..."canonical":"..."} (version 2: the
 * text as a JSON string). The text, or NULL if the line is not so. */
static const char *export_row_exact(const char *line, size_t len, khv_row *row, khv_text *text,
                                    size_t *clen)
{
    static const char k1[] = "{\"seq\":", k2[] = ",\"prev_hash\":\"", k3[] = "\",\"hash\":\"",
                      k4[] = "\",\"canonical\":";
    const char *p = line, *end;
    char num[24];
    size_t n = 0;
#define EXPECT(k) (strncmp(p, k, sizeof(k) - 1) == 0 ? (p += sizeof(k) - 1, true) : false)
    if (!EXPECT(k1))
        return NULL;
    while (n + 1 < sizeof num && ((*p >= '0' && *p <= '9') || (n == 0 && *p == '-')))
        num[n++] = *p++;
    num[n] = '\0';
    if (!parse_seq(num, &row->seq) || !EXPECT(k2) || strnlen(p, 64) < 64 ||
        khc_unhex(p, 64, row->prev, 32) != 0)
        return NULL;
    p += 64;
    if (!EXPECT(k3) || strnlen(p, 64) < 64 || khc_unhex(p, 64, row->hash, 32) != 0)
        return NULL;
    p += 64;
    if (!EXPECT(k4))
        return NULL;
#undef EXPECT
    if (*p == '{') {
        /* the text runs to the row's closing brace, the line's last byte */
        if (len < 2 || line[len - 1] != '}' || (size_t)(p - line) > len - 2 || line[len - 2] != '}')
            return NULL;
        *clen = (size_t)(line + len - 1 - p);
        return p;
    }
    if (*p != '"' || !text_room(text, len + 1) ||
        !unescape(p + 1, line + len, text->p, text->cap, &text->len, &end) ||
        strcmp(end, "\"}") != 0)
        return NULL;
    *clen = text->len;
    return text->p;
}

const char *khv_decode_export_row(const void *ctx, const uint8_t *rec, size_t len, khv_row *row,
                                  khv_text *text, size_t *clen)
{
    const char *line = (const char *)rec, *canon;
    char num[32], h1[80], h2[80];
    (void)ctx;
    snprintf(row->id, sizeof row->id, "-");
    row->kind = KHV_CHAINED;
    if ((canon = export_row_exact(line, len, row, text, clen)) != NULL)
        return canon;
    /* anything else the generic way: keys in another order, a row without
     * chain columns, or an unreadable line (a version 3 text is only read
     * the exact way) */
    if (khv_json_field(line, "seq", num, sizeof num) && strcmp(num, "null") == 0) {
        row->kind = KHV_UNCHAINED;
        if (!khv_json_field(line, "id", row->id, sizeof row->id))
            snprintf(row->id, sizeof row->id, "?");
        return NULL;
    }
    if (!text_room(text, len + 1) || strstr(line, "\"canonical\":\"") == NULL ||
        !khv_json_field(line, "seq", num, sizeof num) ||
        !khv_json_field(line, "prev_hash", h1, sizeof h1) ||
        !khv_json_field(line, "hash", h2, sizeof h2) ||
        !khv_json_field(line, "canonical", text->p, text->cap) || !parse_seq(num, &row->seq) ||
        khc_unhex(h1, strlen(h1), row->prev, 32) != 0 ||
        khc_unhex(h2, strlen(h2), row->hash, 32) != 0) {
        row->kind = KHV_UNREADABLE;
        return NULL;
    }
    *clen = text->len = strlen(text->p);
    return text->p;
}
