/* khadmin.h: what the admin API's server (gateway/gw_admin.c) and its
 * client (tools/khctl_admin.c) must agree on: operator names, roles and the
 * limits on tenants and passwords. */
#ifndef KH_ADMIN_H
#define KH_ADMIN_H

#include <stdbool.h>

#define KHADM_NAME_MAX 32    /* operator names, bytes */
#define KHADM_MAX_TENANTS 64 /* tenants of one operator */
#define KHADM_PW_MIN 12      /* new passwords, bytes (at most KHC_PASSWORD_MAX) */

/* An operator name: [a-z0-9][a-z0-9._-]{0,31}; also the CN of the
 * operator's certificate and a folder name in the dev PKI. */
bool khadm_name_ok(const char *s);

/* Roles, as bits: a route allows a set of them. */
enum {
    KHADM_PLATFORM_ADMIN = 1,
    KHADM_TENANT_ADMIN = 2,
    KHADM_RESPONDER = 4,
    KHADM_AUDITOR = 8,
    KHADM_ANY_ROLE = 15
};
/* The bit of a role name ("platform_admin", ...), or 0 if it is none. */
unsigned khadm_role(const char *name);

#endif
