/* gw_lease.h: queries in flight outlive the node that sent them (gw_lease.c).
 * Several kakehashi-gw processes ("nodes") may serve the same tenants from
 * the same database. Each query in flight has a lease held by the node that
 * sends and retries it; that node renews it while it runs. A query whose
 * lease ran out (its node died or stopped) is taken over by another node, or
 * by the same one restarted, which sends the same sealed envelope again. */
#ifndef KH_GW_LEASE_H
#define KH_GW_LEASE_H

#include "kherr.h"

#include <stddef.h>

#define GW_LEASE_TICK_S 5 /* renewals and take-overs, every this often */
#define GW_LEASE_BATCH 64 /* queries taken over per tenant and tick, at most */

/* G.node for this process. 0, or -1 (no randomness). */
KH_MUST_CHECK int gw_lease_node_init(void);
/* Starts the lease timer (at once, then every GW_LEASE_TICK_S) and the
 * sweeper (at once, then every 30 s). */
KH_MUST_CHECK int gw_lease_start(char *err, size_t errlen);
/* At a clean stop, once the loop has ended and the pool has stopped: ends
 * the leases of this node's queries in flight (on a connection of its own),
 * so that the other nodes take them over at once. */
void gw_lease_hand_over(void);
void gw_lease_stop(void);

#endif
