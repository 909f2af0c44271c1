/* gw_tenants.h: the tenants a gateway hosts, loaded at the start and changed
 * while it runs (gw_tenants.c). The configuration file is the list: on
 * SIGHUP a tenant listed anew is added (its keys and business CA from the
 * PKI folder, its schema checked, the business listener's trust extended),
 * one no longer listed is retired (found by no look-up, refused from then
 * on; the work that holds it finishes). The schema and its role are made
 * beforehand with tools/khdb tenant: the gateway's login role makes none. */
#ifndef KH_GW_TENANTS_H
#define KH_GW_TENANTS_H

#include "gw_conf.h"

#include "kherr.h"
#include "khjson.h"

#include <libpq-fe.h>
#include <stddef.h>

/* The statement that reads a tenant's last migration (in its transaction). */
#define GW_TENANT_SCHEMA_SQL                                                                       \
    "SELECT version FROM schema_migrations ORDER BY version COLLATE \"C\" DESC LIMIT 1"

/* Every tenant of G.set, and the business listener's context that trusts
 * their business CAs (G.biz_ctx). At the start, before the event loop: 0, or
 * -1 with err. */
KH_MUST_CHECK int gw_tenants_load(char *err, size_t errlen);

/* The tenant list of a configuration just read (SIGHUP, on the event loop):
 * the difference with the tenants hosted now is worked out and carried out
 * on a worker, with the reload of the gateway's TLS files (gw_tls.h); a
 * change asked while one runs follows it. Every outcome is logged, and a
 * change of the tenants kept for gw_tenants_write. */
void gw_tenants_reload(const gw_settings *fresh);

/* The same tenants as now (crl_refresh_s's timer): a change that only reads
 * the gateway's TLS files and the CRLs again (none if one is under way). */
void gw_tenants_refresh(void);
/* The refresh's timer: every interval_s, once the listeners are up. At the
 * start and on SIGHUP, on the event loop. */
void gw_tenants_schedule(int interval_s);

/* A database's last migration (sql answers one version) against the one
 * this gateway was built for: "ok", "fail" (unreadable, none, behind) or
 * "warn" (newer), with why in plain words. */
const char *gw_schema_verdict(PGconn *c, const char *sql, const char *expected, char *why,
                              size_t whylen);

/* {"tenants": [{code, state, database, added_at, retired_at}],
 *  "last_change": {...} or null} for GET /admin/v1/tenants. On a worker. */
void gw_tenants_write(khj_writer *w);

/* At exit, after every worker and listener stopped. */
void gw_tenants_free(void);

#endif
