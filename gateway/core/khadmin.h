/* khadmin.h: what the admin API's server (gateway/gw_admin.c) and its
 * client (tools/khctl_admin.c) must agree on: operator names, roles and the
 * limits on tenants and passwords. */
#ifndef KH_ADMIN_H
#define KH_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#define KHADM_NAME_MAX 32    /* operator names, bytes */
#define KHADM_MAX_TENANTS 64 /* tenants of one operator */
#define KHADM_PW_MIN 12      /* new passwords, bytes (at most KHC_PASSWORD_MAX) */
/* The largest CSV import (the admin listener's body limit; JSON bodies are
 * held to 64 KiB by the API itself). */
#define KHADM_MAX_CSV (4u << 20)

/* An operator name: [a-z0-9][a-z0-9._-]{0,31}; also the CN of the
 * operator's certificate and a folder name in the dev PKI. */
bool khadm_name_ok(const char *s);

/* Roles, as bits: a route allows a set of them. */
enum {
    KHADM_PLATFORM_ADMIN = 1,
    KHADM_TENANT_ADMIN = 2,
    KHADM_RESPONDER = 4,
    KHADM_AUDITOR = 8,
    KHADM_METRICS = 16, /* Prometheus scrapes: /metrics only, no personal data */
    KHADM_ANY_ROLE = 31
};
/* The bit of a role name ("platform_admin", ...), or 0 if it is none. */
unsigned khadm_role(const char *name);

/* The admin API's paths. A route's pattern is a whole path, or for a
 * tenant route (tenant true) the part after KHADM_TENANT_PREFIX and the
 * tenant's code, where '#' stands for a flag id (1 to 18 digits, no leading
 * zero). Whether path (as sent, not decoded) is the pattern's; for a tenant
 * route, org gets the code as sent (1 to 7 bytes without '/', checked by
 * the caller) and id the flag id. Compares bytes: "%2F" or "%00" match
 * nothing but themselves. */
#define KHADM_TENANT_PREFIX "/admin/v1/tenants/"
bool khadm_path_match(const char *pattern, bool tenant, const char *path, char org[8], int64_t *id);

#endif
