/* gw_admin.h: the admin API (gw_admin.c and gw_admin_*.c): operators with
 * roles and tenant scopes. gw_admin_register serves the API on a listener
 * made with G.admin_ctx (gw_tls.c: it trusts only the operator CA). */
#ifndef KH_GW_ADMIN_H
#define KH_GW_ADMIN_H

#include "kherr.h"

#include "gw_conf.h"

#include <event2/http.h>
#include <stddef.h>
#include <stdio.h>

/* Takes the session limits of settings (at the start and on SIGHUP; gw_conf.c
 * checked them). */
void gw_admin_reload(const gw_settings *s);
void gw_admin_register(struct evhttp *http);
void gw_admin_stop(void);
/* kakehashi-gw -t: the diagnosis's checks that need no running gateway
 * (databases and their migrations, certificates, keys; nothing changed),
 * each problem a line on out. The number of failed checks, or -1. */
int gw_admin_check_offline(FILE *out);

#endif
