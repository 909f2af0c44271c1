/* idconv.c: format rules for the identifiers idconv maps, and the tenant's
 * link-code table (linkcode in the schema the caller's transaction selected). */
#include "idconv.h"

#include <string.h>

static bool all_digits(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= max)
            return false;
    }
    return n >= min;
}

bool idconv_municipality_code_valid(const char *code)
{
    static const int w[5] = {6, 5, 4, 3, 2};
    int sum = 0;
    if (!all_digits(code, 6, 6))
        return false;
    for (int i = 0; i < 5; i++)
        sum += (code[i] - '0') * w[i];
    return (code[5] - '0') == (11 - sum % 11) % 10;
}

bool idconv_org_code_valid(const char *code)
{
    if (code == NULL || strlen(code) != 6)
        return false;
    for (int i = 0; i < 6; i++) {
        char c = code[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    if (all_digits(code, 6, 6))
        return idconv_municipality_code_valid(code);
    return true;
}

bool idconv_local_id_valid(const char *s)
{
    return all_digits(s, 1, IDCONV_LOCAL_ID_MAX);
}

bool idconv_resident_code_valid(const char *s)
{
    return all_digits(s, IDCONV_RESIDENT_CODE_LEN, IDCONV_RESIDENT_CODE_LEN);
}

bool idconv_link_code_valid(const char *s)
{
    if (s == NULL || strlen(s) != IDCONV_LINK_CODE_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

kh_err idconv_store(PGconn *c, const char *local_id, const char *link_code)
{
    if (!idconv_local_id_valid(local_id) || !idconv_link_code_valid(link_code))
        return KH_E_FIELD;
    const char *params[2] = {local_id, link_code};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO linkcode (local_id, link_code) VALUES ($1, $2) "
                               "ON CONFLICT (local_id) DO UPDATE "
                               "SET link_code = EXCLUDED.link_code, acquired_at = now()",
                               2, NULL, params, NULL, NULL, 0);
    kh_err e = PQresultStatus(r) == PGRES_COMMAND_OK ? KH_OK : KH_E_DB;
    PQclear(r);
    return e;
}

/* Runs a one-parameter lookup returning at most one text value into out. */
static kh_err lookup(PGconn *c, const char *sql, const char *param, char *out, size_t outlen,
                     kh_err absent)
{
    const char *params[1] = {param};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    kh_err e = KH_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        e = KH_E_DB;
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

kh_err idconv_link_of(PGconn *c, const char *local_id, char out[IDCONV_LINK_CODE_LEN + 1])
{
    out[0] = '\0';
    if (!idconv_local_id_valid(local_id))
        return KH_E_FIELD;
    return lookup(c, "SELECT link_code FROM linkcode WHERE local_id = $1", local_id, out,
                  IDCONV_LINK_CODE_LEN + 1, KH_E_UNKNOWN_LOCAL_ID);
}

kh_err idconv_local_of(PGconn *c, const char *link_code, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0)
        return KH_E_INTERNAL;
    out[0] = '\0';
    if (!idconv_link_code_valid(link_code))
        return KH_E_FIELD;
    return lookup(c, "SELECT local_id FROM linkcode WHERE link_code = $1", link_code, out, outlen,
                  KH_E_UNKNOWN_LINK_CODE);
}
