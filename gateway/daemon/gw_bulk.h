/* gw_bulk.h: bulk registration (gw_bulk.c): uploads in parts over the
 * business API, stored in the tenant's schema as they arrive, committed, then
 * loaded by whichever node claims them (gw_bulkq.c); the drop folder
 * (gw_drop.c) loads files of its own. */
#ifndef KH_GW_BULK_H
#define KH_GW_BULK_H

#include "kherr.h"

#include "gw_state.h"

#include <event2/http.h>
#include <stddef.h>

/* Handlers called by the business API once the client is identified. */
void gw_bulk_on_open(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_part(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_commit(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_status(struct evhttp_request *req, gw_tenant *t, const char *system);
/* Starts the loads (gw_bulkq.c) and the drop folder (if configured); 0 or
 * -1 with err. */
KH_MUST_CHECK int gw_bulk_start(char *err, size_t errlen);
void gw_bulk_stop(void);

#endif
