/* gw_health.h: GET /health and GET /ready on health_listen, for load
 * balancers (HAProxy's httpchk) and monitoring: plain HTTP, answered from
 * memory at once, nothing secret in them (gw_health.c). */
#ifndef KH_GW_HEALTH_H
#define KH_GW_HEALTH_H

#include "kherr.h"

#include <stddef.h>

/* The database part of /ready is stale after this many seconds without a
 * completed check (checks run every second). */
#define GW_HEALTH_STALE_S 5

/* Binds health_listen (if set) and starts the checks: before the directory
 * is fetched, so that a node that cannot load it says so. 0, or -1 with
 * err set. */
KH_MUST_CHECK int gw_health_start(char *err, size_t errlen);
void gw_health_stop(void);

/* GET /ready's answer (200, or 503 with KH-5007 and what is not ready), for
 * a route of another listener too: the peer listener serves it as
 * GET /v1/ready for the router's probes. */
struct evhttp_request;
void gw_health_ready(struct evhttp_request *req, void *arg);

#endif
