/* gw_lookup.h: /v1/query/status and /v1/query/list (gw_lookup.c). */
#ifndef KH_GW_LOOKUP_H
#define KH_GW_LOOKUP_H

#include <event2/http.h>

void gw_lookup_register(struct evhttp *http);

#endif
