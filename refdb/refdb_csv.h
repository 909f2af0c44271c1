/* refdb_csv.h: a streaming RFC 4180 record reader over a file
 * descriptor: refdb_check.c reads bulk files with it, and the gateway's
 * admin API the CSV files operators import (gw_admin_import.c), so that one
 * reader decides what a CSV record is.
 *
 * Memory is fixed when the reader is created, whatever the file size: one
 * read buffer and one record buffer sized for the record limit. Every byte
 * read (BOM included) goes into a SHA-256 and the byte count.
 *
 * Syntax (refdb/FORMAT.md section 3): fields separated by ',', optionally
 * enclosed in '"' with '""' for a quote inside; records end in LF or CRLF; a
 * quoted field may hold line breaks (kept as they are in the value); a
 * leading UTF-8 BOM is skipped. A record's length is its bytes up to, not
 * including, its line end; longer than REFDB_CSV_MAX_RECORD and the record is
 * dropped, the reader skipping to the next LF whatever the quoting (a missing
 * closing quote must not swallow the rest of the file).
 *
 * Problems are flags on the record, never a stop: a bare CR (anywhere, also
 * inside quotes: lines end in LF or CRLF only), a quote inside an unquoted
 * field, text after a closing quote or a quote still open at the end of the
 * file set `syntax`, and parsing goes on leniently (the stray quote or text
 * becomes data) so that the record's end is still found; bytes that are not
 * UTF-8, or a NUL byte, set `encoding` with the column where they were seen. */
#ifndef KH_REFDB_CSV_H
#define KH_REFDB_CSV_H

#include "kherr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The fuzzing build (KH_FUZZ) sets 4096: the reader then comes from ASan's
 * primary allocator instead of a fresh mmap per file, and inputs of a few
 * KiB reach the too-long path. */
#ifndef REFDB_CSV_MAX_RECORD
#define REFDB_CSV_MAX_RECORD 65536
#endif

typedef struct refdb_csv refdb_csv;

/* What refdb_csv_next found in the record it returned. */
typedef struct {
    size_t line;           /* physical line where the record starts (1-based) */
    size_t nfields;        /* 0 when too_long */
    bool too_long;         /* longer than REFDB_CSV_MAX_RECORD; no fields kept */
    const char *syntax;    /* first syntax problem (a static phrase), or NULL */
    const char *encoding;  /* first encoding problem (a static phrase), or NULL */
    size_t encoding_field; /* 0-based column of the first encoding problem */
} refdb_csv_record;

/* Creates a reader of fd (not closed by the reader). NULL if out of memory
 * or if OpenSSL cannot give a SHA-256. */
refdb_csv *refdb_csv_new(int fd);
/* Accepts NULL. */
void refdb_csv_free(refdb_csv *r);

/* Reads the next record. Returns 1 and fills *rec, 0 at the end of the file,
 * -1 if read() failed (errno is kept). Fields stay valid until the next
 * call. */
KH_MUST_CHECK int refdb_csv_next(refdb_csv *r, refdb_csv_record *rec);
/* Field i (< rec->nfields) of the last record, NUL-terminated. A NUL byte in
 * the data (an encoding problem) ends the value early. */
const char *refdb_csv_field(const refdb_csv *r, size_t i);
/* out[k] = refdb_csv_field(r, first + k) for k < n, in one call. */
void refdb_csv_fields(const refdb_csv *r, size_t first, size_t n, const char **out);
/* The last record's fields, each NUL-terminated, back to back from the
 * returned pointer (field 0 first); *len is their total size, NULs
 * included. */
const char *refdb_csv_data(const refdb_csv *r, size_t *len);

/* Figures so far: bytes read, physical lines (an unterminated last line
 * counts), and, once refdb_csv_next has returned 0 or -1, the SHA-256 of
 * every byte read. */
uint64_t refdb_csv_bytes(const refdb_csv *r);
size_t refdb_csv_lines(const refdb_csv *r);
/* Finishes the digest (once; later calls copy the same value). */
void refdb_csv_sha256(refdb_csv *r, uint8_t out[32]);

#endif
