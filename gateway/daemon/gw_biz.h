/* gw_biz.h: the business API's listener (gw_biz.c): identifies the business
 * system by its client certificate and dispatches /v1/replica, /v1/linkcode,
 * the query paths (gw_query.h, gw_lookup.h) and the bulk paths (gw_bulk.h). */
#ifndef KH_GW_BIZ_H
#define KH_GW_BIZ_H

#include <event2/http.h>

void gw_biz_register(struct evhttp *http);

#endif
