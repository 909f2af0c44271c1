/* Database tests for refdb and idconv against a private cluster prepared by
 * test_db.sh (database khtest, tenants 131016 and 271004, gateway login role
 * kh_gw_test). KH_TEST_CONNINFO holds the connection string base
 * (tools/khdb url). Each test connects as the gateway does: as kh_gw_test,
 * in a transaction that has run SET LOCAL ROLE and SET LOCAL search_path. */
#include "idconv.h"
#include "khpool.h"
#include "refdb.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static PGconn *conn;

static PGconn *connect_gw(void)
{
    const char *base = getenv("KH_TEST_CONNINFO");
    char info[512];
    ck_assert_msg(base != NULL, "KH_TEST_CONNINFO not set (run through test_db.sh)");
    snprintf(info, sizeof info, "%s dbname=khtest user=kh_gw_test", base);
    PGconn *c = PQconnectdb(info);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

/* BEGIN; SET LOCAL ROLE <role>; SET LOCAL search_path = <schema>, kh */
static void begin_as(PGconn *c, const char *role, const char *schema)
{
    char sql[256];
    exec_ok(c, "BEGIN");
    if (role != NULL) {
        snprintf(sql, sizeof sql, "SET LOCAL ROLE %s", role);
        exec_ok(c, sql);
    }
    snprintf(sql, sizeof sql, "SET LOCAL search_path = %s, kh", schema);
    exec_ok(c, sql);
}

static void setup(void)
{
    conn = connect_gw();
    begin_as(conn, "kh_t_131016", "t_131016");
}

static void teardown(void)
{
    PQfinish(conn);
    conn = NULL;
}

typedef struct {
    const char *name, *value;
} nv;

/* Registers one version; returns the code and sets *version. */
static kh_err reg(const char *local_id, const char *item, const char *eff, bool del, const nv *f,
                  size_t n, uint64_t *version, char *msg, size_t msglen)
{
    Kh__RegisterRequest req;
    Kh__Field store[16];
    Kh__Field *fields[16];
    kh__register_request__init(&req);
    req.local_id = (char *)local_id;
    req.item_code = (char *)item;
    req.effective_from = (char *)eff;
    req.delete_ = del;
    for (size_t i = 0; i < n; i++) {
        kh__field__init(&store[i]);
        store[i].name = (char *)f[i].name;
        store[i].value = (char *)f[i].value;
        fields[i] = &store[i];
    }
    req.n_fields = n;
    req.fields = fields;
    return refdb_register(conn, "SYS_TAX", &req, version, msg, msglen);
}

static const char *field_value(const Kh__ItemData *d, const char *name)
{
    for (size_t i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i]->name, name) == 0)
            return d->fields[i]->value;
    return NULL;
}

/* Reads the items as of a date and returns how many were found. */
static size_t read_as_of(const char *local_id, const char *const *items, size_t nitems,
                         const char *as_of, Kh__ItemData ***out)
{
    size_t n = 99;
    char msg[256] = "";
    kh_err e = refdb_read_items(conn, local_id, items, nitems, as_of, out, &n, msg, sizeof msg);
    ck_assert_msg(e == KH_OK, "read as of %s: %s %s", as_of, kh_err_code(e), msg);
    return n;
}

static const nv tax_2024[] = {{"total_income", "3500000"},
                              {"fiscal_year", "2024"},
                              {"spouse_category", "1"},
                              {"annual_tax", "-15000"},
                              {"municipal_tax_flat", "5000"}};
static const nv tax_2025[] = {{"fiscal_year", "2025"}, {"total_income", "4200000"}};

START_TEST(layout_load)
{
    refdb_layout l;
    char msg[256];
    ck_assert_int_eq(refdb_layout_load(conn, "TK001", &l, msg, sizeof msg), KH_OK);
    ck_assert_int_eq(l.layout_version, 1);
    ck_assert_uint_eq(l.nfields, 23);
    ck_assert_uint_eq(l.ncols, 43);
    ck_assert_str_eq(l.cols[19].name, "dependents[1].relation");
    ck_assert_str_eq(l.fields[0].name, "fiscal_year");
    ck_assert_str_eq(l.fields[0].pad, "zero");
    ck_assert(l.fields[0].mandatory);
    ck_assert_str_eq(l.fields[8].name, "spouse_category");
    ck_assert_str_eq(l.fields[8].code_table, "SPOUSE");
    ck_assert_uint_eq(l.fields[8].ncodes, 4);
    ck_assert_str_eq(l.fields[8].codes[3], "3");
    refdb_layout_free(&l);
    ck_assert_int_eq(refdb_layout_load(conn, "TK002", &l, msg, sizeof msg), KH_OK);
    ck_assert_uint_eq(l.fields[4].ncodes, 11); /* CHANGE_REASON */
    ck_assert_str_eq(l.fields[8].charset, "kana");
    refdb_layout_free(&l);
    ck_assert_int_eq(refdb_layout_load(conn, "TK999", &l, msg, sizeof msg), KH_E_UNKNOWN_ITEM);
    refdb_layout_free(&l);
    ck_assert_int_eq(refdb_layout_load(conn, "tk001'", &l, msg, sizeof msg), KH_E_FIELD);
}
END_TEST

START_TEST(versions_as_of)
{
    uint64_t v1 = 0, v2 = 0;
    char msg[256] = "";
    const char *tk1[] = {"TK001"};
    Kh__ItemData **d = NULL;
    /* versions come from one sequence per tenant: increasing, not per person */
    ck_assert_int_eq(reg("1001", "TK001", "20240401", false, tax_2024, 5, &v1, msg, sizeof msg),
                     KH_OK);
    ck_assert_int_eq(reg("1001", "TK001", "20250401", false, tax_2025, 2, &v2, msg, sizeof msg),
                     KH_OK);
    ck_assert_uint_gt(v2, v1);

    /* before the first version: nothing in force */
    ck_assert_uint_eq(read_as_of("1001", tk1, 1, "20240331", &d), 0);
    ck_assert_ptr_null(d);
    /* on and after the first effective date: version 1, fields in layout order */
    ck_assert_uint_eq(read_as_of("1001", tk1, 1, "20240401", &d), 1);
    ck_assert_str_eq(d[0]->item_code, "TK001");
    ck_assert_uint_eq(d[0]->version, v1);
    ck_assert_str_eq(d[0]->effective_from, "20240401");
    ck_assert_uint_eq(d[0]->n_fields, 5);
    ck_assert_str_eq(d[0]->fields[0]->name, "fiscal_year");
    ck_assert_str_eq(d[0]->fields[1]->name, "annual_tax");
    ck_assert_str_eq(d[0]->fields[2]->name, "municipal_tax_flat");
    ck_assert_str_eq(d[0]->fields[3]->name, "total_income");
    ck_assert_str_eq(d[0]->fields[4]->name, "spouse_category");
    ck_assert_str_eq(field_value(d[0], "total_income"), "3500000");
    ck_assert_str_eq(field_value(d[0], "annual_tax"), "-15000");
    refdb_items_free(d, 1);
    /* between the two: still version 1 */
    ck_assert_uint_eq(read_as_of("1001", tk1, 1, "20250331", &d), 1);
    ck_assert_uint_eq(d[0]->version, v1);
    refdb_items_free(d, 1);
    /* after the second: version 2 */
    ck_assert_uint_eq(read_as_of("1001", tk1, 1, "20250401", &d), 1);
    ck_assert_uint_eq(d[0]->version, v2);
    ck_assert_str_eq(field_value(d[0], "total_income"), "4200000");
    ck_assert_ptr_null(field_value(d[0], "annual_tax"));
    refdb_items_free(d, 1);
    ck_assert_uint_eq(read_as_of("1001", tk1, 1, "20991231", &d), 1);
    ck_assert_uint_eq(d[0]->version, v2);
    refdb_items_free(d, 1);
    /* another person, or an item never registered: nothing */
    ck_assert_uint_eq(read_as_of("1002", tk1, 1, "20991231", &d), 0);
    const char *tk2[] = {"TK002"};
    ck_assert_uint_eq(read_as_of("1001", tk2, 1, "20991231", &d), 0);
}
END_TEST

START_TEST(several_items_in_request_order)
{
    uint64_t v = 0;
    char msg[256] = "";
    const nv res[] = {{"household_no", "0000012345"},  {"relation", "01"},
                      {"municipality_code", "131016"}, {"change_reason", "A1"},
                      {"move_in_date", "20230115"},    {"resident_status", "1"},
                      {"remarks", "転入（区外）"}};
    ck_assert_int_eq(reg("2001", "TK002", "20230115", false, res, 7, &v, msg, sizeof msg), KH_OK);
    ck_assert_int_eq(reg("2001", "TK001", "20240401", false, tax_2024, 5, &v, msg, sizeof msg),
                     KH_OK);
    const char *items[] = {"TK002", "TK003", "TK001", "TK002"};
    Kh__ItemData **d = NULL;
    ck_assert_uint_eq(read_as_of("2001", items, 4, "20240601", &d), 2);
    ck_assert_str_eq(d[0]->item_code, "TK002");
    ck_assert_str_eq(d[1]->item_code, "TK001");
    ck_assert_uint_eq(d[0]->n_fields, 7);
    ck_assert_str_eq(d[0]->fields[0]->name, "household_no");
    ck_assert_str_eq(d[0]->fields[0]->value, "0000012345");
    ck_assert_str_eq(field_value(d[0], "remarks"), "転入（区外）");
    refdb_items_free(d, 2);
    /* as of a date when only TK002 was in force */
    ck_assert_uint_eq(read_as_of("2001", items, 4, "20231231", &d), 1);
    ck_assert_str_eq(d[0]->item_code, "TK002");
    refdb_items_free(d, 1);
}
END_TEST

START_TEST(delete_hides_item)
{
    uint64_t v = 0, v1 = 0, v2 = 0;
    char msg[256] = "";
    const char *tk1[] = {"TK001"};
    Kh__ItemData **d = NULL;
    ck_assert_int_eq(reg("3001", "TK001", "20240401", false, tax_2024, 5, &v1, msg, sizeof msg),
                     KH_OK);
    ck_assert_int_eq(reg("3001", "TK001", "20250101", true, NULL, 0, &v2, msg, sizeof msg), KH_OK);
    ck_assert_uint_gt(v2, v1);
    ck_assert_uint_eq(read_as_of("3001", tk1, 1, "20241231", &d), 1);
    ck_assert_uint_eq(d[0]->version, v1);
    refdb_items_free(d, 1);
    ck_assert_uint_eq(read_as_of("3001", tk1, 1, "20250101", &d), 0);
    ck_assert_uint_eq(read_as_of("3001", tk1, 1, "20300101", &d), 0);
    /* a later registration brings it back */
    ck_assert_int_eq(reg("3001", "TK001", "20260401", false, tax_2025, 2, &v, msg, sizeof msg),
                     KH_OK);
    ck_assert_uint_gt(v, v2);
    ck_assert_uint_eq(read_as_of("3001", tk1, 1, "20300101", &d), 1);
    ck_assert_uint_eq(d[0]->version, v);
    refdb_items_free(d, 1);
    /* a delete carries no fields */
    ck_assert_int_eq(reg("3001", "TK001", "20270101", true, tax_2025, 2, &v, msg, sizeof msg),
                     KH_E_FIELD);
}
END_TEST

START_TEST(register_refusals)
{
    uint64_t v = 7;
    char msg[256] = "";
    ck_assert_int_eq(reg("12a", "TK001", "20240401", false, tax_2025, 2, &v, msg, sizeof msg),
                     KH_E_FIELD);
    ck_assert_ptr_nonnull(strstr(msg, "local_id"));
    ck_assert_ptr_null(strstr(msg, "12a"));
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(reg("4001", "TK001", "20240230", false, tax_2025, 2, &v, msg, sizeof msg),
                     KH_E_FIELD);
    ck_assert_ptr_nonnull(strstr(msg, "effective_from"));
    ck_assert_int_eq(reg("4001", "TK999", "20240401", false, tax_2025, 2, &v, msg, sizeof msg),
                     KH_E_UNKNOWN_ITEM);
    const nv bad[] = {{"fiscal_year", "2024"}, {"total_income", "98765x"}};
    ck_assert_int_eq(reg("4001", "TK001", "20240401", false, bad, 2, &v, msg, sizeof msg),
                     KH_E_ITEM_INVALID);
    ck_assert_ptr_nonnull(strstr(msg, "field total_income:"));
    ck_assert_ptr_null(strstr(msg, "98765x"));
    const nv badcode[] = {{"household_no", "0000000001"},
                          {"relation", "01"},
                          {"municipality_code", "131016"},
                          {"resident_status", "1"},
                          {"change_reason", "Z9"}};
    ck_assert_int_eq(reg("4001", "TK002", "20240401", false, badcode, 5, &v, msg, sizeof msg),
                     KH_E_ITEM_INVALID);
    ck_assert_ptr_nonnull(strstr(msg, "CHANGE_REASON"));
    /* nothing was written */
    const char *tk[] = {"TK001", "TK002"};
    Kh__ItemData **d = NULL;
    ck_assert_uint_eq(read_as_of("4001", tk, 2, "20991231", &d), 0);
    size_t n = 0;
    ck_assert_int_eq(refdb_read_items(conn, "4001", tk, 2, "2024", &d, &n, msg, sizeof msg),
                     KH_E_FIELD);
    const char *badtk[] = {"TK001'"};
    ck_assert_int_eq(refdb_read_items(conn, "4001", badtk, 1, "20240101", &d, &n, msg, sizeof msg),
                     KH_E_FIELD);
}
END_TEST

/* Values travel inside text[] literals: quotes, backslashes, commas, braces
 * and NULL-looking text must come back byte for byte. */
START_TEST(awkward_values_round_trip)
{
    static const char *const awkward[] = {"a\"b", "c\\d", "e,f", "{g}", "NULL", " h ", "'i';--"};
    for (size_t i = 0; i < sizeof awkward / sizeof awkward[0]; i++) {
        char id[16];
        uint64_t v = 0;
        char msg[256] = "";
        snprintf(id, sizeof id, "50%zu", i);
        const nv res[] = {{"household_no", "0000000007"},
                          {"relation", "99"},
                          {"municipality_code", "271004"},
                          {"resident_status", "2"},
                          {"remarks", awkward[i]}};
        ck_assert_int_eq(reg(id, "TK002", "20240401", false, res, 5, &v, msg, sizeof msg), KH_OK);
        const char *tk2[] = {"TK002"};
        Kh__ItemData **d = NULL;
        ck_assert_uint_eq(read_as_of(id, tk2, 1, "20240401", &d), 1);
        ck_assert_str_eq(field_value(d[0], "remarks"), awkward[i]);
        refdb_items_free(d, 1);
    }
}
END_TEST

/* A committed registration is visible to a fresh connection. */
START_TEST(committed_is_durable)
{
    uint64_t v = 0;
    char msg[256] = "";
    ck_assert_int_eq(reg("6001", "TK001", "20240401", false, tax_2024, 5, &v, msg, sizeof msg),
                     KH_OK);
    exec_ok(conn, "COMMIT");
    PGconn *other = connect_gw();
    PGconn *mine = conn;
    conn = other;
    begin_as(conn, "kh_t_131016", "t_131016");
    const char *tk1[] = {"TK001"};
    Kh__ItemData **d = NULL;
    ck_assert_uint_eq(read_as_of("6001", tk1, 1, "20240401", &d), 1);
    refdb_items_free(d, 1);
    exec_ok(conn, "ROLLBACK");
    PQfinish(other);
    conn = mine;
}
END_TEST

START_TEST(idconv_table)
{
    const char *lc1 = "0123456789abcdef0123456789abcdef";
    const char *lc2 = "fedcba9876543210fedcba9876543210";
    char link[KH_ID_LINK_CODE_LEN + 1];
    char local[KH_ID_LOCAL_ID_MAX + 1];
    ck_assert_int_eq(idconv_link_of(conn, "7001", link), KH_E_UNKNOWN_LOCAL_ID);
    ck_assert_int_eq(idconv_local_of(conn, lc1, local, sizeof local), KH_E_UNKNOWN_LINK_CODE);
    ck_assert_int_eq(idconv_store(conn, "7001", lc1), KH_OK);
    ck_assert_int_eq(idconv_link_of(conn, "7001", link), KH_OK);
    ck_assert_str_eq(link, lc1);
    ck_assert_int_eq(idconv_local_of(conn, lc1, local, sizeof local), KH_OK);
    ck_assert_str_eq(local, "7001");
    ck_assert_int_eq(idconv_local_of(conn, lc1, local, 4), KH_E_INTERNAL);
    /* upsert: a new link code replaces the old one */
    ck_assert_int_eq(idconv_store(conn, "7001", lc2), KH_OK);
    ck_assert_int_eq(idconv_link_of(conn, "7001", link), KH_OK);
    ck_assert_str_eq(link, lc2);
    ck_assert_int_eq(idconv_local_of(conn, lc1, local, sizeof local), KH_E_UNKNOWN_LINK_CODE);
    /* malformed input never reaches the database */
    ck_assert_int_eq(idconv_store(conn, "7002", "0123"), KH_E_FIELD);
    ck_assert_int_eq(idconv_link_of(conn, "x", link), KH_E_FIELD);
    ck_assert_int_eq(idconv_local_of(conn, "ABC", local, sizeof local), KH_E_FIELD);
    /* one link code, one person: a client's conflict, with its own code */
    ck_assert_int_eq(idconv_store(conn, "7002", lc2), KH_E_LINK_TAKEN);
}
END_TEST

/* Tenant isolation as seen by refdb: the gateway acting as tenant 131016
 * cannot read tenant 271004's schema, and without SET ROLE it reads nothing.
 * PostgreSQL skips search_path schemas the role may not use, so unqualified
 * names fail as "does not exist" (42P01) rather than "permission denied"
 * (42501, which test_db.sh shows for qualified names): either way no rows,
 * and KH_E_INTERNAL (kh_db_err: a statement gone wrong is the server's fault,
 * not "database unavailable"). */
START_TEST(isolation_through_refdb)
{
    const char *tk1[] = {"TK001"};
    Kh__ItemData **d = NULL;
    size_t n = 0;
    char msg[256] = "";
    exec_ok(conn, "ROLLBACK");
    begin_as(conn, "kh_t_131016", "t_271004");
    ck_assert_int_eq(refdb_read_items(conn, "1001", tk1, 1, "20240401", &d, &n, msg, sizeof msg),
                     KH_E_INTERNAL);
    ck_assert_msg(strstr(msg, "(SQLSTATE 42P01)") != NULL, "%s", msg);
    exec_ok(conn, "ROLLBACK");
    char link[KH_ID_LINK_CODE_LEN + 1];
    begin_as(conn, "kh_t_131016", "t_271004");
    ck_assert_int_eq(idconv_link_of(conn, "1001", link), KH_E_INTERNAL);
    exec_ok(conn, "ROLLBACK");
    begin_as(conn, NULL, "t_131016");
    ck_assert_int_eq(refdb_read_items(conn, "1001", tk1, 1, "20240401", &d, &n, msg, sizeof msg),
                     KH_E_INTERNAL);
    ck_assert_msg(strstr(msg, "(SQLSTATE 42P01)") != NULL, "%s", msg);
    ck_assert_ptr_null(d);
    exec_ok(conn, "ROLLBACK");
}
END_TEST

/* After tools/khdb migrate, the database holds the catalogue files: for
 * every item, refdb_layout_load and refdb_layout_from_tsv give the same
 * layout (every field member, the code values, the columns in order). */
START_TEST(db_layout_equals_tsv)
{
    const char *dir = getenv("KH_TEST_CATALOGUE");
    ck_assert_msg(dir != NULL, "KH_TEST_CATALOGUE not set (run through test_db.sh)");
    PGresult *r = PQexec(conn, "SELECT item_code FROM kh.item ORDER BY item_code");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(r), 8);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *item = PQgetvalue(r, i, 0);
        refdb_layout d, t;
        char msg[256] = "";
        ck_assert_msg(refdb_layout_load(conn, item, &d, msg, sizeof msg) == KH_OK, "%s: %s", item,
                      msg);
        ck_assert_msg(refdb_layout_from_tsv(dir, item, &t, msg, sizeof msg) == KH_OK, "%s: %s",
                      item, msg);
        ck_assert_str_eq(d.item_code, t.item_code);
        ck_assert_int_eq(d.layout_version, t.layout_version);
        ck_assert_uint_eq(d.nfields, t.nfields);
        for (size_t f = 0; f < d.nfields; f++) {
            const refdb_field_spec *a = &d.fields[f], *b = &t.fields[f];
            ck_assert_str_eq(a->name, b->name);
            ck_assert_str_eq(a->type, b->type);
            ck_assert_int_eq(a->length, b->length);
            ck_assert_int_eq(a->mandatory, b->mandatory);
            ck_assert_str_eq(a->code_table, b->code_table);
            ck_assert_str_eq(a->pad, b->pad);
            ck_assert_str_eq(a->charset, b->charset);
            ck_assert_int_eq(a->min_occurs, b->min_occurs);
            ck_assert_int_eq(a->max_occurs, b->max_occurs);
            ck_assert_int_eq(a->group, b->group);
            ck_assert_uint_eq(a->ncodes, b->ncodes);
            for (size_t k = 0; k < a->ncodes; k++)
                ck_assert_str_eq(a->codes[k], b->codes[k]);
        }
        ck_assert_uint_eq(d.ncols, t.ncols);
        for (size_t c = 0; c < d.ncols; c++) {
            ck_assert_str_eq(d.cols[c].name, t.cols[c].name);
            ck_assert_int_eq(d.cols[c].field, t.cols[c].field);
            ck_assert_int_eq(d.cols[c].occurrence, t.cols[c].occurrence);
        }
        refdb_layout_free(&d);
        refdb_layout_free(&t);
    }
    PQclear(r);
}
END_TEST

/* Flattened names: groups and repeats are registered and read back in
 * column order; empty values are not stored; occurrence rules refuse. */
START_TEST(flattened_round_trip)
{
    uint64_t v = 0;
    char msg[256] = "";
    const nv tax[] = {{"dependents[2].birth_date", "20120229"},
                      {"fiscal_year", "2026"},
                      {"dependents[1].relation", "01"},
                      {"total_income", "3250000"},
                      {"dependents[2].relation", "01"},
                      {"dependents[1].birth_date", "20100401"},
                      {"annual_tax", ""},
                      {"dependents[1].dependent_category", "2"}};
    ck_assert_msg(reg("8001", "TK001", "20260601", false, tax, 8, &v, msg, sizeof msg) == KH_OK,
                  "%s", msg);
    const char *tk1[] = {"TK001"};
    Kh__ItemData **d = NULL;
    ck_assert_uint_eq(read_as_of("8001", tk1, 1, "20260601", &d), 1);
    static const char *const want[] = {"fiscal_year",
                                       "total_income",
                                       "dependents[1].relation",
                                       "dependents[1].birth_date",
                                       "dependents[1].dependent_category",
                                       "dependents[2].relation",
                                       "dependents[2].birth_date"};
    ck_assert_uint_eq(d[0]->n_fields, 7);
    for (size_t i = 0; i < 7; i++)
        ck_assert_str_eq(d[0]->fields[i]->name, want[i]);
    ck_assert_ptr_null(field_value(d[0], "annual_tax"));
    refdb_items_free(d, 1);

    const nv gap[] = {{"fiscal_year", "2026"},
                      {"total_income", "1"},
                      {"dependents[2].relation", "01"},
                      {"dependents[2].birth_date", "20120229"}};
    ck_assert_int_eq(reg("8002", "TK001", "20260601", false, gap, 4, &v, msg, sizeof msg),
                     KH_E_ITEM_INVALID);
    ck_assert_ptr_nonnull(strstr(msg, "field dependents[2].relation: KH-1114"));
    const nv svc[] = {{"certificate_type", "1"},
                      {"certificate_no", "AB-123"},
                      {"issue_date", "20200401"},
                      {"service_type[1]", "05"},
                      {"service_type[2]", "01"}};
    ck_assert_int_eq(reg("8003", "TK006", "20260601", false, svc, 5, &v, msg, sizeof msg), KH_OK);
    const char *tk6[] = {"TK006"};
    ck_assert_uint_eq(read_as_of("8003", tk6, 1, "20260601", &d), 1);
    ck_assert_str_eq(d[0]->fields[3]->name, "service_type[1]");
    ck_assert_str_eq(d[0]->fields[4]->name, "service_type[2]");
    refdb_items_free(d, 1);
}
END_TEST

/* ---- deferred statements (khpool's kh_db_defer) ---- */

static const char *const ins_a = "INSERT INTO linkcode (local_id, link_code) VALUES ($1, $2)";
static const char *const ins_b =
    "INSERT INTO linkcode (link_code, local_id) VALUES ($2, $1)"; /* another text */

static kh_err defer_link(const char *sql, const char *local_id, const char *code)
{
    const char *p[2] = {local_id, code};
    return kh_db_defer(conn, sql, 2, p);
}

/* how many of the local IDs from..to exist, read on a connection of its own */
static long committed_links(const char *from, const char *to)
{
    PGconn *o = connect_gw();
    begin_as(o, "kh_t_131016", "t_131016");
    const char *p[2] = {from, to};
    PGresult *r = PQexecParams(o, "SELECT count(*) FROM linkcode WHERE local_id BETWEEN $1 AND $2",
                               2, NULL, p, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(o);
    return n;
}

START_TEST(deferred_commit)
{
    ck_assert_int_eq(defer_link(ins_a, "9101", "91010000000000000000000000000001"), KH_OK);
    /* a text not prepared yet while one is pending: settled, prepared, sent */
    ck_assert_int_eq(defer_link(ins_b, "9102", "91020000000000000000000000000002"), KH_OK);
    ck_assert_int_eq(defer_link(ins_a, "9103", "91030000000000000000000000000003"), KH_OK);
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_ON);
    ck_assert_int_eq(committed_links("9101", "9103"), 0); /* not yet */
    ck_assert_int_eq(kh_db_commit(conn), KH_OK);
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(committed_links("9101", "9103"), 3);
}
END_TEST

/* A statement that fails among deferred ones: the commit reports it (as a
 * failed kh_db_exec: KH_E_DB), nothing of the transaction stays, and the
 * connection serves the next transaction. */
START_TEST(deferred_failure_rolls_back)
{
    ck_assert_int_eq(defer_link(ins_a, "9201", "92010000000000000000000000000001"), KH_OK);
    ck_assert_int_eq(defer_link(ins_a, "9202", "92010000000000000000000000000001"), KH_OK);
    ck_assert_int_eq(defer_link(ins_a, "9203", "92030000000000000000000000000003"), KH_OK);
    ck_assert_int_eq(kh_db_commit(conn), KH_E_DB); /* 23505: one link code, two persons */
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(committed_links("9201", "9203"), 0);
    ck_assert_int_eq(kh_db_tenant_begin(&conn, "131016"), KH_OK);
    ck_assert_int_eq(defer_link(ins_a, "9204", "92040000000000000000000000000004"), KH_OK);
    ck_assert_int_eq(kh_db_commit(conn), KH_OK);
    ck_assert_int_eq(committed_links("9201", "9204"), 1);
    begin_as(conn, "kh_t_131016", "t_131016");
}
END_TEST

/* A statement after deferred ones runs after them (it sees their rows), and
 * fails if one of them failed; a rollback then leaves the connection clean. */
START_TEST(deferred_then_statement)
{
    ck_assert_int_eq(defer_link(ins_a, "9301", "93010000000000000000000000000001"), KH_OK);
    const char *p[1] = {"9301"};
    PGresult *r = kh_db_exec(conn, "SELECT link_code FROM linkcode WHERE local_id = $1", 1, p);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(PQntuples(r), 1);
    PQclear(r);
    ck_assert_int_eq(defer_link(ins_a, "9302", "93010000000000000000000000000001"), KH_OK);
    ck_assert_ptr_null(kh_db_exec(conn, "SELECT 1", 0, NULL));
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
    kh_db_rollback(conn);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(committed_links("9301", "9302"), 0);
    /* deferred then rolled back: nothing stays either */
    begin_as(conn, "kh_t_131016", "t_131016");
    ck_assert_int_eq(defer_link(ins_a, "9303", "93030000000000000000000000000003"), KH_OK);
    kh_db_rollback(conn);
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
    ck_assert_int_eq(committed_links("9301", "9303"), 0);
    begin_as(conn, "kh_t_131016", "t_131016");
}
END_TEST

/* BEGIN and the tenant's SETs travel with the first statement: the statement
 * runs as the tenant, in its schema; a missing role fails that statement. */
START_TEST(deferred_begin)
{
    exec_ok(conn, "ROLLBACK");
    ck_assert_int_eq(kh_db_tenant_begin(&conn, "131016"), KH_OK);
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_ON); /* nothing sent yet */
    PGresult *r = kh_db_exec(conn, "SELECT current_user, current_setting('search_path')", 0, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "kh_t_131016");
    ck_assert_str_eq(PQgetvalue(r, 0, 1), "t_131016, kh");
    PQclear(r);
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INTRANS);
    ck_assert_int_eq(kh_db_commit(conn), KH_OK);
    /* a begin and nothing else: BEGIN and COMMIT in one round trip */
    ck_assert_int_eq(kh_db_tenant_begin(&conn, "131016"), KH_OK);
    ck_assert_int_eq(kh_db_commit(conn), KH_OK);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    /* no such tenant role: the first statement fails, the rollback cleans up */
    ck_assert_int_eq(kh_db_tenant_begin(&conn, "999999"), KH_OK);
    ck_assert_ptr_null(kh_db_exec(conn, "SELECT 1", 0, NULL));
    kh_db_rollback(conn);
    ck_assert_int_eq(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    ck_assert_int_eq(kh_db_tenant_begin(&conn, "999999"), KH_OK);
    ck_assert_int_eq(kh_db_commit(conn), KH_E_DB);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    /* the transaction's date arrives with its first statement */
    char day[9] = "x";
    ck_assert_int_eq(kh_db_tenant_begin_day(&conn, "131016", day), KH_OK);
    ck_assert_str_eq(day, "");
    r = kh_db_exec(conn, "SELECT to_char(current_date, 'YYYYMMDD'), current_user", 0, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(day, PQgetvalue(r, 0, 0));
    ck_assert_str_eq(PQgetvalue(r, 0, 1), "kh_t_131016");
    PQclear(r);
    ck_assert_uint_eq(strlen(day), 8);
    kh_db_rollback(conn);
    begin_as(conn, "kh_t_131016", "t_131016");
}
END_TEST

/* COMMIT of a transaction a statement aborted is answered "ROLLBACK" without
 * an error: kh_db_commit reports it as the failure it is. */
START_TEST(commit_of_failed_transaction)
{
    PGresult *r = kh_db_try(conn, "SELECT 1 / 0", 0, NULL);
    ck_assert_int_eq(PQresultStatus(r), PGRES_FATAL_ERROR);
    PQclear(r);
    ck_assert_int_eq(kh_db_commit(conn), KH_E_DB);
    ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
    begin_as(conn, "kh_t_131016", "t_131016");
}
END_TEST

/* A server's notice (a FATAL at a terminated connection, a WARNING) on a
 * connection made by kh_db_connect goes into the JSON log by severity and
 * SQLSTATE, not to stderr as libpq's text with its message (values). */
START_TEST(notices_go_to_the_log)
{
    const char *base = getenv("KH_TEST_CONNINFO");
    char info[512], out[4096];
    ck_assert_ptr_nonnull(base);
    snprintf(info, sizeof info, "%s dbname=khtest user=kh_gw_test", base);
    PGconn *c = kh_db_connect(info);
    ck_assert_ptr_nonnull(c);
    FILE *tmp = tmpfile();
    ck_assert_ptr_nonnull(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fileno(tmp), STDERR_FILENO), 0);
    PQclear(PQexec(c, "DO $$ BEGIN RAISE WARNING 'kh-value-0123456789'; END $$"));
    fflush(stderr);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, sizeof out - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    PQfinish(c);
    ck_assert_msg(strstr(out, "\"msg\":\"server notice: severity=WARNING sqlstate=01000\"}") !=
                      NULL,
                  "not in the log: [%s]", out);
    ck_assert_msg(strstr(out, "kh-value-0123456789") == NULL, "the message leaked: [%s]", out);
    ck_assert_msg(out[0] == '{', "a line outside the JSON log: [%s]", out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("refdb_db");
    TCase *tc = tcase_create("tenant 131016");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, layout_load);
    tcase_add_test(tc, db_layout_equals_tsv);
    tcase_add_test(tc, flattened_round_trip);
    tcase_add_test(tc, versions_as_of);
    tcase_add_test(tc, several_items_in_request_order);
    tcase_add_test(tc, delete_hides_item);
    tcase_add_test(tc, register_refusals);
    tcase_add_test(tc, awkward_values_round_trip);
    tcase_add_test(tc, committed_is_durable);
    tcase_add_test(tc, idconv_table);
    tcase_add_test(tc, isolation_through_refdb);
    tcase_add_test(tc, deferred_commit);
    tcase_add_test(tc, deferred_failure_rolls_back);
    tcase_add_test(tc, deferred_then_statement);
    tcase_add_test(tc, deferred_begin);
    tcase_add_test(tc, commit_of_failed_transaction);
    tcase_add_test(tc, notices_go_to_the_log);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
