/* gw_qstate.c: a query's state and answer as the asking side keeps them
 * (gw_qstate.h), shared by the query's own path (gw_query.c), the lookups
 * by handle (gw_lookup.c) and deferred answers (gw_deferred.c). */
#include "gw_qstate.h"

#include "khcrypto.h"
#include "khhttp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the CHECK of query.state (sql/tenant/015_hold_expiry.sql), in order */
const char *const gw_qstate_names[] = {"sent",    "answered", "pending",   "refused",
                                       "expired", "failed",   "timed_out", NULL};
static const char *const upper[] = {"SENT",    "ANSWERED", "PENDING",   "REFUSED",
                                    "EXPIRED", "FAILED",   "TIMED_OUT", NULL};

const char *gw_qstate_upper(const char *s)
{
    for (size_t i = 0; gw_qstate_names[i] != NULL; i++)
        if (strcmp(s, gw_qstate_names[i]) == 0)
            return upper[i];
    return "SENT";
}

/* Replies with a QueryResponse: the handle, the state, and the answer if any. */
void gw_qstate_reply(struct evhttp_request *req, const char *handle, const char *state, kh_err code,
                     const char *msg, const Kh__AnswerBody *ans)
{
    Kh__Status st = KH__STATUS__INIT;
    st.code = (char *)(code == KH_OK ? "OK" : kh_err_code(code));
    st.message = (char *)(msg ? msg : "");
    Kh__QueryResponse resp = KH__QUERY_RESPONSE__INIT;
    resp.status = &st;
    resp.handle = (char *)handle;
    resp.state = (char *)gw_qstate_upper(state);
    if (ans != NULL) {
        resp.result = ans->result;
        resp.data = ans->data;
        resp.n_data = ans->n_data;
        resp.withheld = ans->withheld;
        resp.n_withheld = ans->n_withheld;
        resp.deferred = ans->deferred;
        if (strcmp(state, "pending") == 0)
            resp.decide_by = ans->decide_by;
    }
    kh_http_reply_pb(req, &resp.base);
}

/* The result agrees with what the answer carries, and the answer holds no
 * field this gateway does not know (it would be stored unchecked). */
bool gw_answer_consistent(const Kh__AnswerBody *a)
{
    bool found = strcmp(a->result, "FOUND") == 0;
    if (found != (a->n_data > 0) || a->base.n_unknown_fields != 0)
        return false;
    if (strcmp(a->result, "WITHHELD") == 0 && a->n_withheld == 0)
        return false;
    for (size_t i = 0; i < a->n_data; i++) {
        if (a->data[i]->base.n_unknown_fields != 0)
            return false;
        for (size_t k = 0; k < a->data[i]->n_fields; k++)
            if (a->data[i]->fields[k]->base.n_unknown_fields != 0)
                return false;
    }
    return true;
}

bool gw_answer_within_basis(const kh_dir *dir, const char *row, const Kh__AnswerBody *a)
{
    for (size_t i = 0; i < a->n_data; i++)
        for (size_t k = 0; k < a->data[i]->n_fields; k++)
            if (!kh_dir_field_allowed(dir, row, a->data[i]->item_code, a->data[i]->fields[k]->name))
                return false;
    return true;
}

bool gw_decide_by_plausible(int64_t decide_by)
{
    int64_t now = (int64_t)time(NULL), skew = atomic_load(&G.skew);
    return decide_by > now - skew && decide_by <= now + GW_HOLD_DEADLINE_MAX_S + skew;
}

const char *gw_answer_outcome(const char *state, const Kh__AnswerBody *a)
{
    if (strcmp(state, "answered") != 0)
        return state;
    /* as the provider records it: withheld if anything was withheld */
    return strcmp(a->result, "FOUND") == 0 ? "provided"
           : a->n_withheld > 0             ? "withheld"
                                           : "not_found";
}

char *gw_pb_bytea(const ProtobufCMessage *m)
{
    uint8_t *raw = NULL;
    size_t n = 0;
    if (kh_pb_pack(m, &raw, &n) != 0)
        return NULL;
    char *hex = malloc(2 * n + 3);
    if (hex != NULL) {
        memcpy(hex, "\\x", 2);
        khc_hex(raw, n, hex + 2);
    }
    khc_free_secret(raw, n);
    return hex;
}
