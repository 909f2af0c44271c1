/* gw_query.h: queries, asking side (flow 2; gw_query.c): checks, sealing,
 * sending with retries, the answer's checks and records, the query's state
 * in the tenant's query table. */
#ifndef KH_GW_QUERY_H
#define KH_GW_QUERY_H

#include "gw_state.h"

#include <event2/http.h>

/* Serves POST /v1/query and starts the sweeper that ends queries left
 * unfinished (at once, then every 30 s). */
void gw_query_register(struct evhttp *http);
void gw_query_stop(void);

#endif
