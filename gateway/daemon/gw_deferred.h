/* gw_deferred.h: deferred answers to this gateway's queries, received
 * through the peer API (gw_deferred.c). */
#ifndef KH_GW_DEFERRED_H
#define KH_GW_DEFERRED_H

#include "gw_state.h"

#include <event2/http.h>

/* A deferred answer from the router (header signature and recipient already
 * verified by the peer API) to a query of tenant t; takes env and h. */
void gw_deferred_on_answer(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
                           Kh__Header *h);

#endif
