/* gw_chain.h: signing of the tenants' chain heads, and their monthly
 * partitions kept ready (gw_chain.c). */
#ifndef KH_GW_CHAIN_H
#define KH_GW_CHAIN_H

#include "kherr.h"

#include <stddef.h>

KH_MUST_CHECK int gw_chain_start(char *err, size_t errlen);
void gw_chain_stop(void);

#endif
