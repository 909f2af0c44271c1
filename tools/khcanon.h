/* khcanon.h: the canonical text of a chained record, built by khctl from the
 * row's columns as PostgreSQL sends them in a binary COPY, instead of asking
 * the database for chain_canonical_<table>(row) (sql/tenant/006_chains.sql)
 * row by row, which costs the database about 17 µs a row.
 *
 * The SQL function stays the definition. This is an accelerator that must
 * give the same bytes: the jsonb text of an object of every column but seq,
 * prev_hash and hash, keys in jsonb's order (shorter first, then bytewise),
 * times in UTC as YYYY-MM-DDTHH:MI:SS.USZ. A value it cannot render exactly
 * (a year outside 1-9999, a multi-dimensional array, an unknown jsonb
 * version) makes it answer "unsure"; khctl then asks the database. khctl also
 * asks the database before it calls a row altered, so a divergence here can
 * only slow a verification down, never change its verdict on an honest row
 * (tests/integration/it_chain.sh checks that it does not happen). */
#ifndef KH_CANON_H
#define KH_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct khcanon_chain khcanon_chain;

/* The description of a chain (provision_record, access_record, audit_log),
 * or NULL for any other name. */
const khcanon_chain *khcanon_find(const char *chain);

/* The binary COPY that reads the rows of [from, to] in seq order: seq,
 * prev_hash, hash, then the canonical columns. Its length, or -1 if it does
 * not fit in out. */
int khcanon_copy_sql(const khcanon_chain *c, long long from, long long to, char *out, size_t n);

/* A growing byte buffer, owned by its user (free(b->p) when done). */
typedef struct {
    char *p;
    size_t len, cap;
} khcanon_buf;

/* Room for at least more bytes after b->len; false if out of memory. */
bool khcanon_reserve(khcanon_buf *b, size_t more);

/* One row of such a COPY, decoded. */
typedef struct {
    bool has_seq; /* seq is not NULL */
    long long seq;
    const uint8_t *prev, *hash; /* into the tuple; NULL if NULL */
    size_t prev_len, hash_len;
    char id[24]; /* the row id in decimal */
} khcanon_row;

typedef enum {
    KHCANON_OK,     /* row filled, the canonical text in out */
    KHCANON_UNSURE, /* row filled, but the text could not be made exactly */
    KHCANON_BAD,    /* not a tuple of this chain's COPY */
    KHCANON_NOMEM
} khcanon_status;

/* Decodes one tuple (a field count, then each field's length and bytes:
 * PostgreSQL's binary COPY tuple without the file header) into row and its
 * canonical text into out (replacing what it held). */
khcanon_status khcanon_decode(const khcanon_chain *c, const uint8_t *tuple, size_t len,
                              khcanon_row *row, khcanon_buf *out);

/* Where a binary COPY stream's header ends: 0 if data does not start with
 * the header, else its length (signature, flags, extension). -1 if the
 * header is malformed. */
long khcanon_header_len(const uint8_t *data, size_t len);

#endif
