/* gw_maint.h: maintenance mode (gw_maint.c). */
#ifndef KH_GW_MAINT_H
#define KH_GW_MAINT_H

#include "kherr.h"

#include "gw_state.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

/* Reads kh.maintenance into the gateway's and the tenants' flags (a worker,
 * with the health check's connection; the flags are atomics). A failed
 * read leaves them as they were. */
void gw_maint_read(PGconn *c);
/* Sets one flag at once on this node (the admin API, after its commit;
 * other nodes follow at their next read). org NULL: the gateway's. */
void gw_maint_set_local(const char *org, bool on);
/* New work for t (NULL: work of no tenant) may start: KH_OK, or
 * KH_E_MAINTENANCE with a message saying whose maintenance it is. */
kh_err gw_maint_check(const gw_tenant *t, char *msg, size_t msglen);
/* The kh_operator_store transaction on c (the operator and maintenance
 * tables; sql/platform/003): KH_OK, or KH_E_DB with nothing left open. */
KH_MUST_CHECK kh_err gw_operator_store_begin(PGconn *c);

#endif
