/* refdb.c: registration and as-of reads of reference copies (副本) in the
 * tenant schema the caller's transaction has selected (see refdb.h for the
 * transaction convention). Values only ever travel as query parameters. */
#include "refdb.h"
#include "khpool.h"

#include "khid.h"
#include "refdb_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A PostgreSQL array literal {"a","b"} of n strings, for a text[] parameter:
 * each element double-quoted with '"' and '\' escaped. malloc'd; NULL when
 * out of memory. */
static char *text_array(const char *const *v, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 3 + 2 * strlen(v[i]);
    char *out = malloc(len);
    if (out == NULL)
        return NULL;
    char *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *p++ = ',';
        *p++ = '"';
        for (const char *s = v[i]; *s != '\0'; s++) {
            if (*s == '"' || *s == '\\')
                *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

kh_err refdb_register(PGconn *c, const char *system_id, const Kh__RegisterRequest *req,
                      uint64_t *version, char *msg, size_t msglen)
{
    refdb_layout layout;
    kh_err e;
    *version = 0;
    if (system_id == NULL || system_id[0] == '\0' || strlen(system_id) > 64) {
        refdb_set_msg(msg, msglen, "system_id: expects 1..64 characters");
        return KH_E_FIELD;
    }
    if (req == NULL || !kh_id_local_id(req->local_id)) {
        refdb_set_msg(msg, msglen, "local_id: expects 1..%d digits", KH_ID_LOCAL_ID_MAX);
        return KH_E_FIELD;
    }
    if (!kh_id_date(req->effective_from)) {
        refdb_set_msg(msg, msglen, "effective_from: expects a real calendar date as YYYYMMDD");
        return KH_E_FIELD;
    }
    if (req->delete_ && req->n_fields > 0) {
        refdb_set_msg(msg, msglen, "fields: a delete carries no fields");
        return KH_E_FIELD;
    }
    e = refdb_layout_load(c, req->item_code, &layout, msg, msglen);
    if (e != KH_OK)
        return e;
    if (!req->delete_) {
        e = refdb_validate(&layout, (const Kh__Field *const *)req->fields, req->n_fields, msg,
                           msglen);
    }
    refdb_layout_free(&layout);
    if (e != KH_OK)
        return e;

    PGresult *r;
    /* The stored data: flattened name -> value, only non-empty values ("no
     * value" is the absence of the key). */
    size_t given = req->delete_ ? 0 : req->n_fields, n = 0;
    const char **names = calloc(given + 1, sizeof *names);
    const char **values = calloc(given + 1, sizeof *values);
    char *names_lit = NULL, *values_lit = NULL;
    if (names != NULL && values != NULL) {
        for (size_t i = 0; i < given; i++) {
            const char *v = req->fields[i]->value;
            if (v == NULL || v[0] == '\0')
                continue;
            names[n] = req->fields[i]->name;
            values[n] = v;
            n++;
        }
        names_lit = text_array(names, n);
        values_lit = text_array(values, n);
    }
    free(names);
    free(values);
    if (names_lit == NULL || values_lit == NULL) {
        free(names_lit);
        free(values_lit);
        refdb_set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    const char *params[7] = {req->local_id,
                             req->item_code,
                             req->effective_from,
                             req->delete_ ? "true" : "false",
                             names_lit,
                             values_lit,
                             system_id};
    r = kh_db_try(c,
                  "INSERT INTO replica (local_id, item_code, version, effective_from, deleted, "
                  "                     data, system_id) VALUES ($1, $2, "
                  "nextval('replica_version_seq'), $3::date, $4::bool, "
                  "        json_object($5::text[], $6::text[]), $7) "
                  "RETURNING version",
                  7, params);
    free(names_lit);
    free(values_lit);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return refdb_db_fail(c, r, "registration", msg, msglen);
    *version = (uint64_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return KH_OK;
}

void refdb_items_free(Kh__ItemData **items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        Kh__ItemData *d = items[i];
        if (d == NULL)
            continue;
        for (size_t j = 0; j < d->n_fields; j++) {
            if (d->fields[j] == NULL)
                continue;
            free(d->fields[j]->name);
            free(d->fields[j]->value);
            free(d->fields[j]);
        }
        free(d->fields);
        free(d->item_code);
        free(d->effective_from);
        free(d);
    }
    free(items);
}

/* Builds the items from the rows of the as-of query: rows come grouped by
 * item (item_code, version, effective_from, key, value), key NULL for an
 * item with no fields. */
static kh_err build_items(PGresult *r, Kh__ItemData ***out, size_t *n)
{
    int nrows = PQntuples(r);
    size_t nitems = 0;
    for (int i = 0; i < nrows; i++)
        if (i == 0 || strcmp(PQgetvalue(r, i, 0), PQgetvalue(r, i - 1, 0)) != 0)
            nitems++;
    if (nitems == 0)
        return KH_OK;
    Kh__ItemData **items = calloc(nitems, sizeof *items);
    if (items == NULL)
        return KH_E_INTERNAL;
    size_t k = 0;
    for (int i = 0; i < nrows;) {
        int end = i + 1;
        while (end < nrows && strcmp(PQgetvalue(r, end, 0), PQgetvalue(r, i, 0)) == 0)
            end++;
        Kh__ItemData *d = malloc(sizeof *d);
        if (d == NULL)
            goto oom;
        kh__item_data__init(d);
        items[k++] = d;
        d->item_code = strdup(PQgetvalue(r, i, 0));
        d->effective_from = strdup(PQgetvalue(r, i, 2));
        d->version = (uint32_t)strtoul(PQgetvalue(r, i, 1), NULL, 10);
        if (d->item_code == NULL || d->effective_from == NULL)
            goto oom;
        size_t nf = PQgetisnull(r, i, 3) ? 0 : (size_t)(end - i);
        if (nf > 0) {
            d->fields = calloc(nf, sizeof *d->fields);
            if (d->fields == NULL)
                goto oom;
        }
        for (size_t j = 0; j < nf; j++) {
            int row = i + (int)j;
            Kh__Field *f = malloc(sizeof *f);
            if (f == NULL)
                goto oom;
            kh__field__init(f);
            d->fields[d->n_fields++] = f;
            f->name = strdup(PQgetvalue(r, row, 3));
            f->value = strdup(PQgetisnull(r, row, 4) ? "" : PQgetvalue(r, row, 4));
            if (f->name == NULL || f->value == NULL)
                goto oom;
        }
        i = end;
    }
    *out = items;
    *n = nitems;
    return KH_OK;
oom:
    /* Unset strings still point at protobuf_c_empty_string: make them NULL
     * before freeing. */
    for (size_t i = 0; i < k; i++) {
        Kh__ItemData *d = items[i];
        if (d->item_code == protobuf_c_empty_string)
            d->item_code = NULL;
        if (d->effective_from == protobuf_c_empty_string)
            d->effective_from = NULL;
        for (size_t j = 0; j < d->n_fields; j++) {
            if (d->fields[j]->name == protobuf_c_empty_string)
                d->fields[j]->name = NULL;
            if (d->fields[j]->value == protobuf_c_empty_string)
                d->fields[j]->value = NULL;
        }
    }
    refdb_items_free(items, k);
    return KH_E_INTERNAL;
}

kh_err refdb_read_items(PGconn *c, const char *local_id, const char *const *items, size_t nitems,
                        const char *as_of, Kh__ItemData ***out, size_t *n, char *msg, size_t msglen)
{
    *out = NULL;
    *n = 0;
    if (!kh_id_local_id(local_id)) {
        refdb_set_msg(msg, msglen, "local_id: expects 1..%d digits", KH_ID_LOCAL_ID_MAX);
        return KH_E_FIELD;
    }
    if (!kh_id_date(as_of)) {
        refdb_set_msg(msg, msglen, "as_of: expects a real calendar date as YYYYMMDD");
        return KH_E_FIELD;
    }
    if (nitems > REFDB_MAX_ITEMS || (nitems > 0 && items == NULL)) {
        refdb_set_msg(msg, msglen, "items: expects at most %d item codes", REFDB_MAX_ITEMS);
        return KH_E_FIELD;
    }
    for (size_t i = 0; i < nitems; i++) {
        if (!kh_id_code(items[i], REFDB_ITEM_CODE_MAX)) {
            refdb_set_msg(msg, msglen, "items: an item code expects 1..%d characters A-Z 0-9",
                          REFDB_ITEM_CODE_MAX);
            return KH_E_FIELD;
        }
    }
    if (nitems == 0)
        return KH_OK;
    char *items_lit = text_array(items, nitems);
    if (items_lit == NULL) {
        refdb_set_msg(msg, msglen, "out of memory");
        return KH_E_INTERNAL;
    }
    const char *params[3] = {local_id, items_lit, as_of};
    /* The version in force is chosen before deleted versions are dropped, so
     * that a delete hides every earlier version. */
    PGresult *r =
        kh_db_try(c,
                  "WITH v AS ("
                  "  SELECT DISTINCT ON (item_code) item_code, version, effective_from, "
                  "         deleted, data "
                  "  FROM replica "
                  "  WHERE local_id = $1 AND item_code = ANY ($2::text[]) "
                  "    AND effective_from <= $3::date "
                  "  ORDER BY item_code, version DESC) "
                  "SELECT v.item_code, v.version, to_char(v.effective_from, 'YYYYMMDD'), "
                  "       e.key, e.value "
                  "FROM v JOIN kh.item i ON i.item_code = v.item_code "
                  "LEFT JOIN LATERAL json_each_text(v.data) e ON true "
                  /* a flattened name: top, top[occ] or top[occ].member */
                  "LEFT JOIN LATERAL (SELECT "
                  "  substring(e.key FROM '^[a-z][a-z0-9_]*') AS top, "
                  "  substring(e.key FROM '^[a-z][a-z0-9_]*\\[([0-9]{1,6})\\]')::int AS occ, "
                  "  substring(e.key FROM '\\]\\.([a-z][a-z0-9_]*)$') AS member) k ON true "
                  "LEFT JOIN kh.item_field f ON f.item_code = v.item_code "
                  "  AND f.layout_version = i.layout_version AND f.name = k.top "
                  "LEFT JOIN kh.item_field m ON m.item_code = v.item_code "
                  "  AND m.layout_version = i.layout_version AND m.name = k.member "
                  "  AND m.group_name = k.top "
                  "WHERE NOT v.deleted "
                  "ORDER BY array_position($2::text[], v.item_code), f.seq NULLS LAST, "
                  "         k.occ NULLS FIRST, m.seq NULLS FIRST, e.key",
                  3, params);
    free(items_lit);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return refdb_db_fail(c, r, "replica read", msg, msglen);
    kh_err e = build_items(r, out, n);
    PQclear(r);
    if (e != KH_OK)
        refdb_set_msg(msg, msglen, "out of memory");
    return e;
}
