/* idconv.c: the tenant's link-code table (linkcode in the schema the caller's transaction
 * selected). */
#include "idconv.h"
#include "khpool.h"

#include <string.h>

kh_err idconv_store(PGconn *c, const char *local_id, const char *link_code)
{
    if (!kh_id_local_id(local_id) || !kh_id_link_code(link_code))
        return KH_E_FIELD;
    const char *params[2] = {local_id, link_code};
    PGresult *r = kh_db_try(c,
                            "INSERT INTO linkcode (local_id, link_code) VALUES ($1, $2) "
                            "ON CONFLICT (local_id) DO UPDATE "
                            "SET link_code = EXCLUDED.link_code, acquired_at = now()",
                            2, params);
    kh_err e = KH_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *con = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
        /* the local_id conflict is the upsert's; only the link code's own
         * uniqueness can fail: the resident has another local ID here */
        e = state != NULL && strcmp(state, "23505") == 0 && con != NULL &&
                    strcmp(con, "linkcode_link_code_key") == 0
                ? KH_E_LINK_TAKEN
                : kh_db_err(r);
    }
    PQclear(r);
    return e;
}

/* Runs a one-parameter lookup returning at most one text value into out. */
static kh_err lookup(PGconn *c, const char *sql, const char *param, char *out, size_t outlen,
                     kh_err absent)
{
    const char *params[1] = {param};
    PGresult *r = kh_db_try(c, sql, 1, params);
    kh_err e = KH_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        e = kh_db_err(r);
    } else if (PQntuples(r) == 0) {
        e = absent;
    } else {
        const char *v = PQgetvalue(r, 0, 0);
        size_t n = strlen(v);
        if (n >= outlen)
            e = KH_E_INTERNAL;
        else
            memcpy(out, v, n + 1);
    }
    PQclear(r);
    return e;
}

kh_err idconv_link_of(PGconn *c, const char *local_id, char out[KH_ID_LINK_CODE_LEN + 1])
{
    out[0] = '\0';
    if (!kh_id_local_id(local_id))
        return KH_E_FIELD;
    return lookup(c, "SELECT link_code FROM linkcode WHERE local_id = $1", local_id, out,
                  KH_ID_LINK_CODE_LEN + 1, KH_E_UNKNOWN_LOCAL_ID);
}

kh_err idconv_local_of(PGconn *c, const char *link_code, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0)
        return KH_E_INTERNAL;
    out[0] = '\0';
    if (!kh_id_link_code(link_code))
        return KH_E_FIELD;
    return lookup(c, "SELECT local_id FROM linkcode WHERE link_code = $1", link_code, out, outlen,
                  KH_E_UNKNOWN_LINK_CODE);
}
