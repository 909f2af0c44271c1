/* gw_util.h: small helpers shared by the business and peer handlers. */
#ifndef KH_GW_UTIL_H
#define KH_GW_UTIL_H

#include "gw.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* [0-9A-Z]{1,max} */
bool gw_code_ok(const char *s, size_t max);
/* YYYYMMDD with a plausible month/day (the database checks the calendar). */
bool gw_date_ok(const char *s);
/* [A-Za-z0-9_-]{1,max} */
bool gw_token_ok(const char *s, size_t max);
/* Builds a PostgreSQL text[] literal from validated codes. */
void gw_codes_literal(char *const *items, size_t n, char *out, size_t outlen);
/* Writes one provision record in the current tenant transaction. data/ndata:
 * the items an answer carried (their versions are recorded, so "what did we
 * provide on date D" has an exact answer); NULL/0 otherwise. */
kh_err gw_record(PGconn *c, const char *msg_id, const char *direction, const char *counterpart,
                 const char *procedure, char *const *items, size_t nitems, const char *local_id,
                 const char *staff_id, const char *outcome, kh_err code, Kh__ItemData *const *data,
                 size_t ndata);

/* Reads and unpacks the protobuf body of a request of type d, or replies with
 * the refusal (size, method, type) and returns NULL. The raw body is wiped. */
void *gw_read_pb(struct evhttp_request *req, const ProtobufCMessageDescriptor *d);

#endif
