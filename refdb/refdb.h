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
 * A library of the middle layer: it never includes anything from gateway/. */
#ifndef KH_REFDB_H
#define KH_REFDB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kakehashi.pb-c.h"
#include "kherr.h"

#define REFDB_ITEM_CODE_MAX 15
#define REFDB_MAX_ITEMS 64 /* item codes per read */

/* One field of a layout. type is "X", "9", "S9", "DATE" or "CODE"; length is
 * the n of X(n), 9(n), S9(n), CODE(n) (8 for DATE).
 *
 * Code tables are preloaded: for a CODE field, refdb_layout_load fills codes
 * with the ncodes allowed values of code_table (from kh.code_value), so that
 * refdb_validate needs no database. A caller that builds a layout by hand
 * (tests) points codes at its own array and leaves codes_mem NULL. A CODE
 * field with no codes accepts no value. */
typedef struct {
    char name[64];
    char type[8];
    int length;
    bool mandatory;
    char code_table[32];
    const char *const *codes; /* allowed values of a CODE field */
    size_t ncodes;
    void *codes_mem; /* owned by refdb_layout_load (freed by refdb_layout_free), or NULL */
} refdb_field_spec;

typedef struct {
    char item_code[16];
    int layout_version;
    size_t nfields;
    refdb_field_spec *fields; /* in layout order (seq) */
} refdb_layout;

/* Loads the current layout of an item from kh.item/kh.item_field, with the
 * values of its code tables. KH_E_UNKNOWN_ITEM if the item is absent or has no
 * fields; KH_E_FIELD if item_code is malformed; KH_E_DB on a database error.
 * On failure *out is left empty (safe to pass to refdb_layout_free). */
kh_err refdb_layout_load(PGconn *c, const char *item_code, refdb_layout *out, char *msg,
                         size_t msglen);
/* Frees what refdb_layout_load allocated; accepts NULL and empty layouts. */
void refdb_layout_free(refdb_layout *l);

/* Pure validation of (name, value) fields against a layout, no database.
 * Rules: every name is in the layout and given once; every mandatory field is
 * present with a non-empty value (an empty value means "no value" and is
 * accepted for optional fields); X(n): at most n characters of valid UTF-8,
 * no control characters; 9(n): 1..n digits; S9(n): an optional '-' then 1..n
 * digits; DATE: YYYYMMDD, a real Gregorian date; CODE: one of the preloaded
 * code values. Returns KH_OK or KH_E_ITEM_INVALID with msg naming the field
 * and the rule, never the value. */
kh_err refdb_validate(const refdb_layout *l, const Kh__Field *const *fields, size_t n, char *msg,
                      size_t msglen);

/* Online registration of one version of one item of one person.
 * Validates local_id (KH_E_FIELD), effective_from (YYYYMMDD, KH_E_FIELD), the
 * item code (KH_E_UNKNOWN_ITEM) and, unless it is a delete, the fields
 * (KH_E_ITEM_INVALID); a delete must carry no fields (KH_E_FIELD). Inserts
 * version max(version)+1 for (local_id, item), serialised per (tenant,
 * local_id, item) by an advisory transaction lock; a delete inserts a version
 * with deleted = true and no data. Sets *version. Does not commit. */
kh_err refdb_register(PGconn *c, const char *system_id, const Kh__RegisterRequest *req,
                      uint32_t *version, char *msg, size_t msglen);

/* Reads, for each requested item code, the version in force at as_of
 * (YYYYMMDD): the highest version with effective_from <= as_of. An item is
 * left out if that version is a delete, if no version is in force, or if the
 * item is not in the catalogue. Fields come in layout order (kh.item_field.seq
 * of the item's current layout; fields the layout no longer has follow, by
 * name). Items come in request order; a repeated item code is returned once.
 * *out is a malloc'd array of *n malloc'd Kh__ItemData, freed with
 * refdb_items_free; *n == 0 (and *out NULL) means not found. */
kh_err refdb_read_items(PGconn *c, const char *local_id, const char *const *items, size_t nitems,
                        const char *as_of, Kh__ItemData ***out, size_t *n, char *msg,
                        size_t msglen);
/* Frees the result of refdb_read_items; accepts NULL. */
void refdb_items_free(Kh__ItemData **items, size_t n);

/* YYYYMMDD and a real Gregorian date (years 0001..9999). */
bool refdb_date_valid(const char *s);

#endif
