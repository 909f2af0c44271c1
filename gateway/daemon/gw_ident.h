/* gw_ident.h: who a business request comes from, and what that business
 * system may do. */
#ifndef KH_GW_IDENT_H
#define KH_GW_IDENT_H

#include "kherr.h"

#include "gw_state.h"

#include <event2/http.h>
#include <libpq-fe.h>

/* The tenant and system named by a verified business client certificate: O=
 * a hosted tenant whose business CA issued it, CN= the system. Otherwise
 * replies KH-2005 and returns NULL. sys: at least 40 bytes. new_work: the
 * request starts something (not the status of work in flight): refused with
 * KH-5008 (replied, NULL) while the tenant or the gateway is in maintenance. */
gw_tenant *gw_identify(struct evhttp_request *req, char *sys, size_t syslen, bool new_work);
/* In the tenant transaction: the system exists and may do op on scope (a
 * procedure, an item code or "*"); msg explains a refusal. */
KH_MUST_CHECK kh_err gw_permitted(PGconn *c, const char *sys, const char *op, const char *scope,
                                  char *msg, size_t msglen);

#endif
