/* gw_disclose.h: records disclosure for the national portal (gw_disclose.c),
 * answering side: a person's provision records and own information. */
#ifndef KH_GW_DISCLOSE_H
#define KH_GW_DISCLOSE_H

#include "gw_state.h"

#include <event2/http.h>

/* A disclosure request from the router (header signature and recipient
 * already verified by the peer API) for tenant t; takes env and h. */
void gw_disclose_on_request(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
                            Kh__Header *h);

#endif
