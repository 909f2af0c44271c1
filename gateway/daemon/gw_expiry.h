/* gw_expiry.h: warnings in the log ahead of certificate expiry (gw_expiry.c). */
#ifndef KH_GW_EXPIRY_H
#define KH_GW_EXPIRY_H

#include "kherr.h"

#include <stddef.h>

/* Checks at once, then every 24 hours. 0, or -1 with err. */
KH_MUST_CHECK int gw_expiry_start(char *err, size_t errlen);
void gw_expiry_stop(void);

#endif
