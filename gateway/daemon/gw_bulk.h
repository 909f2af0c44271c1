/* gw_bulk.h: bulk registration (gw_bulk.c): uploads in parts over the
 * business API, stored in the tenant's schema as they arrive, committed, then
 * loaded by whichever node claims them (gw_bulkq.c); the drop folder
 * (gw_drop.c) loads files of its own. */
#ifndef KH_GW_BULK_H
#define KH_GW_BULK_H

#include "kherr.h"

#include "gw_bulkq.h"
#include "gw_state.h"

#include <event2/http.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Handlers called by the business API once the client is identified. */
void gw_bulk_on_open(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_part(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_commit(struct evhttp_request *req, gw_tenant *t, const char *system);
void gw_bulk_on_status(struct evhttp_request *req, gw_tenant *t, const char *system);
/* Starts the loads (gw_bulkq.c) and the drop folder (if configured); 0 or
 * -1 with err. */
KH_MUST_CHECK int gw_bulk_start(char *err, size_t errlen);
void gw_bulk_stop(void);

/* A rejected upload's report (refdb/FORMAT.md section 4: no personal data)
 * is read a page at a time: at most this many bytes per answer. */
#define GW_BULK_REPORT_PAGE (8 * GW_BULK_REPORT_CHUNK)
KH_MUST_CHECK kh_err gw_bulk_report_read(PGconn *c, const char *upload_id, uint64_t offset,
                                         uint64_t size, char **data, size_t *len);

#endif
