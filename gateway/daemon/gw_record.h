/* gw_record.h: what the daemon writes into a tenant's records (their tables
 * and hash chains: sql/README.md), in the caller's tenant transaction unless
 * said otherwise. */
#ifndef KH_GW_RECORD_H
#define KH_GW_RECORD_H

#include "kherr.h"

#include "gw_state.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* Builds a PostgreSQL text[] literal from validated codes. */
void gw_codes_literal(char *const *items, size_t n, char *out, size_t outlen);
/* The bytes as a bytea input literal (\x...), malloc'd; NULL on no memory. */
char *gw_bytea_literal(const uint8_t *b, size_t n);
/* Writes one provision record in the current tenant transaction. data/ndata:
 * the items an answer carried (their versions are recorded, so "what did we
 * provide on date D" has an exact answer); NULL/0 otherwise. Deferred
 * (kh_db_defer): a failure shows at the commit or the next statement. */
KH_MUST_CHECK kh_err gw_record(PGconn *c, const char *msg_id, const char *direction,
                               const char *counterpart, const char *procedure, char *const *items,
                               size_t nitems, const char *local_id, const char *staff_id,
                               const char *outcome, kh_err code, Kh__ItemData *const *data,
                               size_t ndata);
/* Writes one access record (an authorisation decision) in the current
 * tenant transaction. direction: business, peer or admin. Deferred, as
 * gw_record. */
KH_MUST_CHECK kh_err gw_access(PGconn *c, const char *msg_id, const char *direction,
                               const char *actor, const char *operation, const char *staff_id,
                               const char *procedure, char *const *items, size_t nitems,
                               kh_err code);
/* A refusal of a message to tenant t as an access record (direction peer),
 * best effort: in a transaction of its own on worker connection c (no
 * transaction open), or, from the event loop, queued for a worker (a full
 * queue only logs). procedure and items may be NULL/0. */
void gw_access_refused(PGconn *c, gw_tenant *t, const char *msg_hex, const char *actor,
                       const char *operation, const char *procedure, char *const *items,
                       size_t nitems, kh_err e);
void gw_access_refused_later(gw_tenant *t, const char *msg_hex, const char *actor,
                             const char *operation, const char *procedure, char *const *items,
                             size_t nitems, kh_err e);

#endif
