/* gw_usage.h: usage counts per tenant by day (for cost sharing) and the
 * Prometheus metrics of the admin listener. Everything is read from the
 * tenant's own records (sql/tenant/015_hold_expiry.sql), each tenant in its own
 * tenant transaction, on a database worker. gw_admin.c checks who may ask
 * and the parameters; this module reads and writes the answers. */
#ifndef KH_GW_USAGE_H
#define KH_GW_USAGE_H

#include "khjson.h"
#include "kherr.h"

#include <libpq-fe.h>
#include <stddef.h>

#define GW_USAGE_DEFAULT_DAYS 31 /* a report without since: until and the 30 days before */
#define GW_USAGE_MAX_DAYS 366    /* the longest report */

/* The period of a report, from the parameters as given (validated dates
 * YYYY-MM-DD, or NULL): until defaults to today in the database's time
 * zone, since to the 30 days before until. KH_E_ADM_FIELD (msg names the
 * parameter) if since is after until or the period is longer than
 * GW_USAGE_MAX_DAYS days; KH_E_DB. since_out, until_out: 11 bytes. */
KH_MUST_CHECK kh_err gw_usage_period(PGconn *c, const char *since, const char *until,
                                     char *since_out, char *until_out, char *msg, size_t msglen);

/* Writes one tenant's report as an object into w: {"tenant", "days": [one
 * row a day of [since, until], zeros included], "total": {...}}, read in a
 * transaction of that tenant. KH_OK or KH_E_DB. */
KH_MUST_CHECK kh_err gw_usage_write(PGconn *c, const char *org, const char *since,
                                    const char *until, khj_writer *w);

/* The metrics of the tenants named (hosted ones), as Prometheus text in a
 * malloc'd buffer. Each tenant's figures come from one statement in its own
 * transaction and are kept GW_USAGE_CACHE_MS; counts of the days before
 * yesterday are added up once and kept (records are append-only), so a
 * scrape reads about two days of records per tenant. A tenant that cannot
 * be read is reported with kakehashi_usage_read_ok 0. KH_OK or
 * KH_E_INTERNAL (out of memory). */
#define GW_USAGE_CACHE_MS 5000
KH_MUST_CHECK kh_err gw_usage_metrics(PGconn *c, const char *const *orgs, size_t norgs, char **out,
                                      size_t *outlen);

/* Frees what the metrics keep (at shutdown, after the workers stopped). */
void gw_usage_stop(void);

#endif
