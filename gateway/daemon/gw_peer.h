/* gw_peer.h: the peer API's listener (gw_peer.c), the router's only way in:
 * queries to answer (flow 3), deferred answers to our queries (gw_deferred.h)
 * and records-disclosure requests (gw_disclose.h). */
#ifndef KH_GW_PEER_H
#define KH_GW_PEER_H

#include <event2/http.h>

void gw_peer_register(struct evhttp *http);

#endif
