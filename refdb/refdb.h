/* refdb.h: the reference database (副本) of one tenant: item layouts from the
 * platform catalogue, validation of item data against them, online
 * registration, and reads "as of" a date for answers.
 *
 * Transaction convention: the caller (the gateway, on a worker thread) has
 * opened a transaction and executed
 *     SET LOCAL ROLE kh_t_<org>; SET LOCAL search_path = t_<org>, kh
 * so refdb uses unqualified tenant table names, never sets roles itself, and
 * never commits. PostgreSQL, not this code, keeps tenants apart. Every value
 * travels as a query parameter (PQexecParams); no SQL is built from values.
 *
 * Messages (msg) name fields and rules but never contain a field's value,
 * a local ID or a link code: those are personal data and messages end up in
 * logs and on the wire.
 *
 * A library of the middle layer: it uses the core library (gateway/core/) and
 * never the daemon (gateway/daemon/); see .may_include. */
#ifndef KH_REFDB_H
#define KH_REFDB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kakehashi.pb-c.h"
#include "kherr.h"
#include "khid.h"

#define REFDB_ITEM_CODE_MAX 15
#define REFDB_MAX_ITEMS 64 /* item codes per read */

/* One field of a layout (a row of kh.item_field / sql/catalogue/fields.tsv;
 * refdb/FORMAT.md is the contract). type is "X", "9", "S9", "DATE", "CODE" or
 * "GROUP"; length is the n of X(n), 9(n), S9(n), CODE(n) (8 for DATE, 0 for
 * GROUP).
 *
 * Code tables are preloaded: for a CODE field, the loader fills codes with
 * the ncodes allowed values of code_table, so that validation needs no
 * database. A caller that builds a layout by hand (tests) points codes at its
 * own array and leaves codes_mem NULL. A CODE field with no codes accepts no
 * value. */
typedef struct {
    char name[64];
    char type[8];
    int length;
    bool mandatory;
    char code_table[32];
    char pad[12];    /* 9 fields: "zero" or "suppress"; "" otherwise */
    char charset[8]; /* X fields: "any", "ascii" or "kana"; "" otherwise */
    int min_occurs;  /* occurrence counts; 1/1 for a plain field */
    int max_occurs;
    int group;                /* index in refdb_layout.fields of the GROUP it belongs to, or -1 */
    const char *const *codes; /* allowed values of a CODE field */
    size_t ncodes;
    void *codes_mem; /* owned by the loader (freed by refdb_layout_free), or NULL */
} refdb_field_spec;

/* One column of the flattened layout: a value's place in a bulk file and its
 * name on every wire ("name", "name[i]", "group[i].name"). */
typedef struct {
    char name[96];
    int field;      /* index in refdb_layout.fields of the field (never a GROUP) */
    int occurrence; /* 1-based occurrence of the field or, inside a group, of the group */
} refdb_column;

typedef struct {
    char item_code[16];
    int layout_version;
    size_t nfields;
    refdb_field_spec *fields; /* in layout order (seq) */
    size_t ncols;
    refdb_column *cols; /* flattened, in file order; built by the loaders */
} refdb_layout;

/* A problem found in a value, a record or a file: the unit of every report
 * (refdb/FORMAT.md section 4). reason never quotes the value. */
typedef struct {
    size_t line;    /* physical line where the record starts; 0 = the file as a whole */
    char field[96]; /* flattened column name, or "-" */
    kh_err code;    /* a KH-11xx code for values and records */
    char reason[200];
} refdb_issue;
typedef void (*refdb_issue_fn)(const refdb_issue *issue, void *arg);

/* Validates one record's values against the layout, no database: vals[i] is
 * the value of l->cols[i] ("" = no value). Applies every value rule of
 * refdb/FORMAT.md section 2 and the occurrence rules, reporting each problem
 * through fn with the given line. Returns the number of problems. */
size_t refdb_validate_values(const refdb_layout *l, const char *const *vals, size_t line,
                             refdb_issue_fn fn, void *arg);

/* Whether text begins as a spreadsheet formula does: with '=', '+', '-' or
 * '@' (or a TAB or CR, which the value rules refuse anyway); a lone '+' or
 * '-', a common placeholder, is not a formula. The one test of
 * formula cells (refdb/FORMAT.md section 2): an X value beginning so is
 * refused, and every CSV written for people to open (the check report)
 * neutralises such a cell with a leading apostrophe. */
bool refdb_formula_lead(const char *s);
/* Writes one cell of a CSV made for people to open (a check report, the
 * admin API's exports): quoted when it holds a comma, a quote or a line
 * break; one that a spreadsheet would read as a formula starts with an
 * apostrophe (no cell of such a file is meant as a formula). */
void refdb_csv_cell(FILE *out, const char *s);

/* Builds l->cols (malloc'd, replacing any previous cols; freed by
 * refdb_layout_free) from l->fields, whose group members are set: columns in
 * layout order, "name" for a plain field, "name[i]" for occurrence i of a
 * repeating field, "group[i].name" for the fields of occurrence i of a GROUP
 * (at the GROUP's place, its fields in layout order), GROUP fields themselves
 * having no column. Checks the layout model first (types, lengths, pad,
 * charset, occurrence counts 0 <= min <= max, 1 <= max <= 999, groups one
 * level deep whose fields do not repeat, unique names); "" as pad or charset
 * means no padding rule / any. KH_E_INTERNAL with msg naming the field if the
 * layout is malformed. Both loaders end here; a test that builds a layout by
 * hand calls it too (and frees cols itself if its fields are not malloc'd). */
KH_MUST_CHECK kh_err refdb_layout_flatten(refdb_layout *l, char *msg, size_t msglen);

/* Loads the current layout of an item from the catalogue files of
 * refdb/FORMAT.md section 1 (dir holds items.tsv, fields.tsv, codes.tsv): what
 * khcheck and khgen use offline. Same results and errors as refdb_layout_load. */
KH_MUST_CHECK kh_err refdb_layout_from_tsv(const char *dir, const char *item_code,
                                           refdb_layout *out, char *msg, size_t msglen);

/* Loads the current layout of an item from kh.item/kh.item_field, with the
 * values of its code tables. KH_E_UNKNOWN_ITEM if the item is absent or has no
 * fields; KH_E_FIELD if item_code is malformed; KH_E_DB on a database error.
 * On failure *out is left empty (safe to pass to refdb_layout_free). */
KH_MUST_CHECK kh_err refdb_layout_load(PGconn *c, const char *item_code, refdb_layout *out,
                                       char *msg, size_t msglen);
/* Frees what refdb_layout_load or refdb_layout_from_tsv allocated (fields,
 * their codes, cols); accepts NULL and empty layouts. */
void refdb_layout_free(refdb_layout *l);

/* Online registration: pure validation of (name, value) fields against a
 * flattened layout, no database. Every name must be a column name of the
 * layout ("name", "name[i]", "group[i].name"), given once; columns not given
 * have no value. Then applies refdb_validate_values. Returns KH_OK, or
 * KH_E_ITEM_INVALID with msg "field <name>: not in the layout ..." / "field
 * <name>: given more than once" / "field <name>: <fine code> <reason>" of the
 * first problem in column order (e.g. "field total_income: KH-1106 S9(13)
 * expects ..."), never the value. KH_E_INTERNAL if the layout has no cols. */
KH_MUST_CHECK kh_err refdb_validate(const refdb_layout *l, const Kh__Field *const *fields, size_t n,
                                    char *msg, size_t msglen);

/* ---------------------------------------------------------- bulk files */

/* Figures of one pass over a bulk file. */
typedef struct {
    size_t lines;       /* physical lines read, header included */
    size_t records;     /* data records */
    size_t bad_records; /* records with at least one problem */
    size_t issues;      /* problems reported, file-level ones included */
    size_t persons;     /* distinct local_ids */
    uint64_t bytes;     /* bytes read */
    uint8_t sha256[32]; /* SHA-256 of every byte read */
} refdb_file_stats;

/* A record that passed its own checks, in file order. Strings are valid only
 * during the callback. vals[i] is the value of the layout's cols[i]. */
typedef struct {
    size_t line;
    const char *local_id, *effective_from;
    bool latest, deleted;
    const char *const *vals;
    size_t nvals;
} refdb_record;
/* Returns 0 to go on, non-zero to stop reading (e.g. the database failed). */
typedef int (*refdb_record_fn)(const refdb_record *rec, void *arg);
/* Called every 10,000 records and at the end. */
typedef void (*refdb_progress_fn)(const refdb_file_stats *st, void *arg);

/* Reads a bulk file (refdb/FORMAT.md section 3) from fd to its end in
 * constant memory, checking the header, CSV syntax, UTF-8, every value rule,
 * flags, key order, duplicate keys and latest flags. Each problem goes to
 * issue_fn (the file goes on being read, so the report lists every problem);
 * each record without a problem of its own goes to record_fn (any callback
 * may be NULL). Returns KH_OK if the file has no problem at all,
 * KH_E_FILE_REJECTED if it has some, KH_E_INTERNAL if reading failed or
 * record_fn asked to stop. st is always filled. */
KH_MUST_CHECK kh_err refdb_check_stream(int fd, const refdb_layout *l, refdb_issue_fn issue_fn,
                                        refdb_record_fn record_fn, refdb_progress_fn progress_fn,
                                        void *arg, refdb_file_stats *st);
/* The report's header row and one row (refdb/FORMAT.md section 4), as CSV. */
void refdb_report_header(FILE *out);
void refdb_report_row(FILE *out, const refdb_issue *issue);

/* What refdb_bulk_load did. */
typedef struct {
    bool duplicate;          /* this content was applied before: nothing was done */
    int64_t file_id;         /* bulk_file.id (of the earlier application if duplicate) */
    uint64_t records;        /* versions added from the file's records */
    uint64_t persons;        /* distinct persons in the file */
    uint64_t deleted_absent; /* full mode: persons absent from the file, now deleted */
    char sha256[65];         /* of the whole file, hex */
} refdb_bulk_result;

/* Applies a bulk file to the item inside the caller's tenant transaction: the
 * caller commits if this returns KH_OK and !res->duplicate, and rolls back in
 * every other case, so a file is applied whole or not at all. The file's
 * SHA-256 identifies it: known_sha256 (hex) if the caller already has it (an
 * upload), checked against the bytes read (KH_E_CHECKSUM if they differ);
 * else fd must be seekable and the file is hashed first. Either way a
 * duplicate is found before any work.
 * Records are checked exactly as refdb_check_stream does (issue_fn receives
 * every problem) and streamed into replica with COPY as they pass; mode
 * "full" also deletes, as of as_of, every person who holds the item and is
 * absent from the file. Returns KH_OK, KH_E_FILE_REJECTED (problems found),
 * KH_E_FIELD (bad mode, as_of or file name) or KH_E_DB / KH_E_INTERNAL. */
KH_MUST_CHECK kh_err refdb_bulk_load(PGconn *c, int fd, const refdb_layout *l,
                                     const char *system_id, const char *mode, const char *as_of,
                                     const char *file_name, const char *known_sha256,
                                     refdb_issue_fn issue_fn, refdb_progress_fn progress_fn,
                                     void *arg, refdb_file_stats *st, refdb_bulk_result *res,
                                     char *msg, size_t msglen);

/* Online registration of one version of one item of one person.
 * Validates local_id (KH_E_FIELD), effective_from (YYYYMMDD, KH_E_FIELD), the
 * item code (KH_E_UNKNOWN_ITEM) and, unless it is a delete, the fields
 * (KH_E_ITEM_INVALID); a delete must carry no fields (KH_E_FIELD). Inserts
 * a new version numbered from the tenant's replica_version_seq (increasing
 * across persons and items, so bulk and online rows order alike); a delete
 * inserts a version with deleted = true and no data. Sets *version. Does not
 * commit. */
KH_MUST_CHECK kh_err refdb_register(PGconn *c, const char *system_id,
                                    const Kh__RegisterRequest *req, uint64_t *version, char *msg,
                                    size_t msglen);

/* Reads, for each requested item code, the version in force at as_of
 * (YYYYMMDD): the highest version with effective_from <= as_of. An item is
 * left out if that version is a delete, if no version is in force, or if the
 * item is not in the catalogue. Fields come in column order of the item's
 * current layout (refdb_layout.cols; fields the layout no longer has follow,
 * by name). Items come in request order; a repeated item code is returned once.
 * *out is a malloc'd array of *n malloc'd Kh__ItemData, freed with
 * refdb_items_free; *n == 0 (and *out NULL) means not found. */
KH_MUST_CHECK kh_err refdb_read_items(PGconn *c, const char *local_id, const char *const *items,
                                      size_t nitems, const char *as_of, Kh__ItemData ***out,
                                      size_t *n, char *msg, size_t msglen);
/* Frees the result of refdb_read_items; accepts NULL. */
void refdb_items_free(Kh__ItemData **items, size_t n);

#endif
