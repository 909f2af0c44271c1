/* gw_query.h: queries, asking side (flow 2; gw_query.c): checks, sealing,
 * sending with retries, the answer's checks and records, the query's state
 * in the tenant's query table. */
#ifndef KH_GW_QUERY_H
#define KH_GW_QUERY_H

#include "gw_state.h"

#include "kakehashi.pb-c.h"

#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

/* A query in flight is leased to the node that sends it, for this long
 * unless renewed (gw_lease.c renews and takes over). */
#define GW_LEASE_S 15

/* Serves POST /v1/query (the sweeper that ends queries left unfinished is
 * gw_lease.c's). */
void gw_query_register(struct evhttp *http);
void gw_query_stop(void);
/* A node about to stop (drain_s): every business system still waiting on a
 * query gets TIMED_OUT with its handle now, as if its wait were over; the
 * query goes on (its lease lets another node finish it once this one stops). */
void gw_query_release_waiters(void);
/* The message ids of the queries this node has in memory, as a text[]
 * literal ("{id,...}"), malloc'd; NULL on no memory. Only their leases are
 * renewed (gw_lease.c): one dropped without an outcome is taken over. */
char *gw_query_live_ids(void);
/* A query in flight taken over from a node whose lease on it ran out
 * (gw_lease.c), sent again with the same retries as a new one; q and env
 * (its sealed envelope, as first sent) become the query's, freed with it.
 * Nobody waits for its answer: the business system reads it by handle. */
void gw_query_resume(gw_tenant *t, const char *hex, const char *system, Kh__QueryRequest *q,
                     uint8_t *env, size_t envlen, int64_t expires_at, int attempts);

#endif
