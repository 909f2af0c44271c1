/* gw_util.c: validation and record helpers for the gateway handlers. */
#include "gw_util.h"

#include "khcrypto.h"
#include "khhttp.h"

#include <stdio.h>
#include <string.h>

bool gw_code_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

bool gw_date_ok(const char *s)
{
    if (s == NULL || strlen(s) != 8)
        return false;
    for (int i = 0; i < 8; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    int m = (s[4] - '0') * 10 + (s[5] - '0'), d = (s[6] - '0') * 10 + (s[7] - '0');
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

bool gw_token_ok(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

void gw_codes_literal(char *const *items, size_t n, char *out, size_t outlen)
{
    size_t pos = 0;
    pos += (size_t)snprintf(out, outlen, "{");
    for (size_t i = 0; i < n && pos < outlen; i++)
        pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "", items[i]);
    if (pos < outlen)
        snprintf(out + pos, outlen - pos, "}");
}

kh_err gw_record(PGconn *c, const char *msg_id, const char *direction, const char *counterpart,
                 const char *procedure, char *const *items, size_t nitems, const char *local_id,
                 const char *staff_id, const char *outcome, kh_err code, Kh__ItemData *const *data,
                 size_t ndata)
{
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    char provided[KH_MAX_ITEMS * (KH_CODE_MAX + 32) + 4];
    size_t pos = 0;
    gw_codes_literal(items, nitems, lit, sizeof lit);
    /* item codes are validated codes and versions numbers: no escaping needed */
    pos += (size_t)snprintf(provided, sizeof provided, "{");
    for (size_t i = 0; i < ndata && i < KH_MAX_ITEMS && pos < sizeof provided; i++)
        pos +=
            (size_t)snprintf(provided + pos, sizeof provided - pos, "%s\"%s\": %llu", i ? ", " : "",
                             data[i]->item_code, (unsigned long long)data[i]->version);
    if (pos < sizeof provided)
        snprintf(provided + pos, sizeof provided - pos, "}");
    const char *p[10] = {
        msg_id,   direction, counterpart, procedure,         lit,
        local_id, staff_id,  outcome,     kh_err_code(code), ndata ? provided : NULL};
    PGresult *r = kh_db_exec(c,
                             "INSERT INTO provision_record (msg_id, direction, counterpart, "
                             "procedure, items, local_id, staff_id, outcome, code, provided) "
                             "VALUES ($1,$2,$3,$4,$5::text[],$6,$7,$8,$9,$10::jsonb)",
                             10, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

void *gw_read_pb(struct evhttp_request *req, const ProtobufCMessageDescriptor *d)
{
    uint8_t *body;
    size_t len;
    kh_err e = kh_http_body(req, (size_t)G.max_body, &body, &len);
    if (e != KH_OK) {
        kh_http_reply_err(req, e, "expected POST with a protobuf body of at most %d bytes",
                          G.max_body);
        return NULL;
    }
    void *m = protobuf_c_message_unpack(d, NULL, len, body);
    /* the raw body may hold a national reference or personal data */
    khc_free_secret(body, len);
    if (m == NULL)
        kh_http_reply_err(req, KH_E_BAD_REQUEST, "body is not a %s", d->name);
    return m;
}
