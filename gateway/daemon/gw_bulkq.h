/* gw_bulkq.h: the loads of committed bulk uploads (gw_bulkq.c). An upload
 * committed through any node waits in its tenant's bulk_upload (QUEUED)
 * until a node with a free load slot claims it with a lease and loads it;
 * a load whose node died is loaded again by another (or the same one
 * restarted), at most GW_BULK_ATTEMPTS times. */
#ifndef KH_GW_BULKQ_H
#define KH_GW_BULKQ_H

#include "kherr.h"

#include "gw_state.h"

#include "refdb.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_BULK_ATTEMPTS 3
/* A rejected file's report is stored in chunks of this many bytes. */
#define GW_BULK_REPORT_CHUNK 65536

/* Starts the claims and lease renewals (every GW_LEASE_TICK_S) and the
 * sweeper (every minute); 0 or -1 with err. */
KH_MUST_CHECK int gw_bulkq_start(char *err, size_t errlen);
void gw_bulkq_stop(void);
/* An upload of t was just committed on this node: claim it now if a load
 * slot is free (loop only). */
void gw_bulkq_kick(gw_tenant *t);
/* The figures so far of upload id of t if this node is loading it (true);
 * any thread. */
bool gw_bulkq_figures(const gw_tenant *t, const char *id, refdb_file_stats *st);
/* Part seq of upload id, in the tenant transaction open on c: a result whose
 * value (0, 0) holds the part's raw bytes (PQgetlength), or NULL if it cannot
 * be read. Free with gw_bulk_part_free, which wipes the bytes. */
PGresult *gw_bulk_part(PGconn *c, const char *id, uint32_t seq);
void gw_bulk_part_free(PGresult *r);

#endif
