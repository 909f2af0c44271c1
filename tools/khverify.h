/* khverify.h: the walk along a record chain that khctl verify makes, the
 * same for the database and for an export, and the pipeline that feeds it
 * rows hashed on every core.
 *
 * A walker takes the rows of one chain in seq order and names the first
 * broken link: a missing row (deleted), a row that does not follow the one
 * before it (inserted or reordered), a row whose content no longer matches
 * its hash (altered), a signed head or chain head the rows no longer reach
 * or match (truncated, rewritten).
 *
 * Each row carries the hash of the row before it, so whether a row's content
 * matches its hash (SHA-256 of prev_hash and the canonical text) does not
 * depend on the rows before it: the pipeline decodes and hashes batches of
 * rows on worker threads, and the walker, on the calling thread, checks the
 * links in order. Memory stays bounded by the batches in flight. */
#ifndef KH_VERIFY_H
#define KH_VERIFY_H

#include "khcanon.h"
#include "khcrypto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    long long seq;
    uint8_t hash[32];
    char signed_at[40];
    bool ok_sig;       /* the signature verifies over (tenant, chain, seq, hash) */
    bool has_tst;      /* an RFC 3161 time-stamp token came with it */
    bool ok_tst;       /* ... and verifies over the signature (only with a TSA CA) */
    char tst_time[24]; /* the token's time (UTC), once it verified */
    char tst_why[160]; /* why it does not verify */
} khv_sig;

/* The state of one walk along a chain. */
typedef struct {
    const char *tenant, *chain;
    X509 *cert;
    X509_STORE *tsa; /* the TSA's CA (khctl --tsa-ca): tokens checked; NULL: not */
    khv_sig *sigs;
    size_t nsigs, si;
    long matched; /* index of the latest signed head the walk matched, or -1 */
    uint8_t prev[32];
    long long expect, first, rows;
    /* Anchored: the chain must start at seq `start` after `anchor` (seq 1 after
     * zeros, or what the retention recorded at audit_log seq `retention`).
     * Unanchored (a range): the first row's link is taken as given. */
    bool anchored;
    long long start, retention;
    uint8_t anchor[32];
    bool started, broken;
    long long altered; /* the seq the walk called altered, or -1 */
    char altered_id[24];
    char why[400];
} khv_walker;

/* The chain's head row as the database holds it (whole-chain checks only). */
typedef struct {
    bool known;
    long long seq;
    uint8_t hash[32];
} khv_head;

void khv_walker_init(khv_walker *w, const char *tenant, const char *chain, X509 *cert);
/* The chain starts at seq start after anchor, as the retention recorded at
 * audit_log seq retention says (0: no retention, seq 1 after zeros). */
void khv_walker_anchor(khv_walker *w, long long start, const uint8_t anchor[32],
                       long long retention);
/* Whether sighex (hex) signs the head s of w's tenant and chain. */
bool khv_sig_check(const khv_walker *w, const khv_sig *s, const char *sighex);
/* s's time-stamp token (hex, empty: none) over the signature sighex (hex),
 * checked against w->tsa if set: has_tst, ok_tst, tst_time, tst_why. */
void khv_tst_check(const khv_walker *w, khv_sig *s, const char *sighex, const char *tsthex);
/* Marks the walk broken, with the reason. */
void khv_broken(khv_walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The signatures are all checked before the rows; true (and the walk
 * broken) if one fails, a time-stamp token fails (with w->tsa), or the head
 * signed just before the chain's start does not hold its anchor. */
bool khv_bad_signature(khv_walker *w);
/* One row, in seq order: its links, and whether its content matches its
 * hash (computed by the caller). id names it for people (a row id or "-"). */
void khv_walk_row(khv_walker *w, long long seq, const uint8_t prev[32], const uint8_t hash[32],
                  bool content_ok, const char *id);
/* A row without chain columns. */
void khv_walk_unchained(khv_walker *w, const char *id);
/* Ends a walk: prints the verdict and returns 0 (intact) or 1 (broken). to:
 * the end of the range (0: none); head: the chain's head row, or NULL. */
int khv_walk_end(khv_walker *w, long long to, const khv_head *head);

/* ------------------------------------------------------------ pipeline */

enum { KHV_CHAINED, KHV_UNCHAINED, KHV_UNREADABLE };

/* A row as a decoder leaves it for the walk. */
typedef struct {
    long long seq, tag; /* tag: what the caller gave with the record */
    uint8_t prev[32], hash[32];
    char id[24];     /* the row id for messages, "-" if unknown */
    uint8_t kind;    /* KHV_CHAINED, KHV_UNCHAINED, KHV_UNREADABLE */
    bool unsure;     /* no exact canonical text: content_ok is false */
    bool content_ok; /* SHA-256(prev || canonical text) == hash */
} khv_row;

/* A growing buffer for a canonical text: khcanon's (khcanon_reserve). */
typedef khcanon_buf khv_text;

/* Decodes one record into row (kind, seq, prev, hash, id, unsure) and
 * returns its canonical text, with its length in *clen: a view into the
 * record itself, or made into text. NULL if the row has none (not
 * KHV_CHAINED, or unsure). Runs on a worker thread: it may only read the
 * record (rec[len] is a NUL) and write row, text and its own locals. */
typedef const char *(*khv_decode_fn)(const void *ctx, const uint8_t *rec, size_t len, khv_row *row,
                                     khv_text *text, size_t *clen);
/* Takes the rows, in the order they were put, on the calling thread. */
typedef void (*khv_walk_fn)(void *arg, const khv_row *row);

typedef struct khv_pipe khv_pipe;

/* A pipeline with one worker per online CPU (up to 8; none on one CPU,
 * where the calling thread decodes). NULL if out of memory or threads. */
khv_pipe *khv_pipe_new(khv_decode_fn decode, const void *ctx, khv_walk_fn walk, void *arg);
/* Adds a record (copied); may walk earlier rows. -1 if out of memory. */
int khv_pipe_put(khv_pipe *p, const void *rec, size_t len, long long tag);
/* Walks every row put so far. -1 if a worker failed (out of memory). */
int khv_pipe_drain(khv_pipe *p);
/* Stops the workers and frees the pipeline (NULL ok). */
void khv_pipe_free(khv_pipe *p);

/* The decoder of a khctl export's row lines ("seq", "prev_hash", "hash",
 * "canonical": the text itself, a JSON object, from version 3 on, or a JSON
 * string holding it in version 2; or "seq":null and "id"); ctx unused. */
const char *khv_decode_export_row(const void *ctx, const uint8_t *rec, size_t len, khv_row *row,
                                  khv_text *text, size_t *clen);
/* The raw text after "key": in line (a number, or a string without its
 * quotes, unescaped into out). Only what khctl export writes is understood. */
bool khv_json_field(const char *line, const char *key, char *out, size_t outlen);
/* A strict decimal number in [lo, hi] into *out: an optional minus and
 * digits only, nothing before or after. */
bool khv_parse_ll(const char *s, long long lo, long long hi, long long *out);

#endif
