/* gw_drop.h: the watched drop folder (gw_drop.c). */
#ifndef KH_GW_DROP_H
#define KH_GW_DROP_H

#include "kherr.h"

#include <stddef.h>

/* Prepares DIR/<tenant>/{in,work,done,rejected} for every tenant, puts back
 * what an interrupted run left, and checks in/ every second. 0 or -1. */
KH_MUST_CHECK int gw_drop_start(const char *drop_dir, char *err, size_t errlen);
/* A tenant's folders under drop_dir (in, work, done, rejected; 0700): made
 * for each tenant at the start and for one added while running. */
KH_MUST_CHECK int gw_drop_tenant(const char *drop_dir, const char *org, char *err, size_t errlen);
void gw_drop_stop(void);

#endif
