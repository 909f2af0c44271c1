/* gw_conf.c: kakehashi-gw's options, declared once (gw_conf.h). The help,
 * the defaults, the bounds, what -t checks and what SIGHUP may change all
 * come from the table below. */
#include "gw_conf.h"

#include "khhttp.h"
#include "khid.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static bool org_code(const char *v, char *why, size_t whylen)
{
    if (kh_id_org(v))
        return true;
    snprintf(why, whylen,
             "'%s' is not an organisation code (6 of [0-9A-Z], check digit for "
             "municipalities and prefectures)",
             v);
    return false;
}

/* "ORG conninfo" (the conninfo may hold a password: never quoted back) */
static bool tenant_db(const char *v, char *why, size_t whylen)
{
    char org[8];
    size_t n = strcspn(v, " \t");
    if (n < sizeof org) {
        memcpy(org, v, n);
        org[n] = '\0';
    }
    if (n >= sizeof org || !kh_id_org(org) || v[n + strspn(v + n, " \t")] == '\0') {
        snprintf(why, whylen,
                 "expected an organisation code, a space and a libpq connection string");
        return false;
    }
    return true;
}

const char *gw_conf_tenant_db(const gw_settings *s, const char *org)
{
    size_t n = strlen(org);
    for (size_t i = 0; i < s->tenant_dbs.n; i++) {
        const char *v = s->tenant_dbs.v[i];
        if (strncmp(v, org, n) == 0 && (v[n] == ' ' || v[n] == '\t'))
            return v + n + strspn(v + n, " \t");
    }
    return s->db;
}

static bool host_name(const char *v, char *why, size_t whylen)
{
    if (kh_id_token(v, 64))
        return true;
    snprintf(why, whylen, "'%s' is not a host name (1-64 of [A-Za-z0-9_-])", v);
    return false;
}

static bool tsa_url(const char *v, char *why, size_t whylen)
{
    char hp[80], path[128];
    return kh_http_url(v, hp, sizeof hp, path, sizeof path, why, whylen) == 0;
}

static bool system_id(const char *v, char *why, size_t whylen)
{
    if (kh_id_token(v, 32))
        return true;
    snprintf(why, whylen, "'%s' is not a business-system ID (1-32 of [A-Za-z0-9_-])", v);
    return false;
}

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

#define OFF(f) offsetof(gw_settings, f)
#define REQ KH_OPT_REQUIRED
#define RELOAD KH_OPT_RELOAD
#define SECRET KH_OPT_SECRET

static const kh_opt options[] = {
    {"name", KH_OPT_STR, REQ, NULL, 0, 64, NULL, OFF(name), host_name,
     "this host's name (CN of pki/gw/NAME/tls.crt)"},
    {"pki", KH_OPT_STR, REQ, NULL, 0, 900, NULL, OFF(pki), NULL, "folder made by tools/khpki"},
    {"router", KH_OPT_ADDR, REQ, NULL, 0, 0, NULL, OFF(router), NULL, "the router's address"},
    {"db", KH_OPT_STR, REQ | SECRET, NULL, 0, 1024, NULL, OFF(db), NULL,
     "libpq connection string or URI (the gateway's login role; several hosts with "
     "target_session_attrs=read-write follow a failover)"},
    {"business_listen", KH_OPT_ADDR, REQ, NULL, 0, 0, NULL, OFF(business_listen), NULL,
     "business API (tenants' business systems)"},
    {"peer_listen", KH_OPT_ADDR, REQ, NULL, 0, 0, NULL, OFF(peer_listen), NULL,
     "peer API (only the router)"},
    {"admin_listen", KH_OPT_ADDR, 0, NULL, 0, 0, NULL, OFF(admin_listen), NULL,
     "admin API (operators; JSON; client certificates of pki/operator-ca.crt only; optional)"},
    {"health_listen", KH_OPT_ADDR, 0, NULL, 0, 0, NULL, OFF(health_listen), NULL,
     "GET /health and /ready for load balancers and monitoring: plain HTTP, no TLS, nothing "
     "secret; bind it to a management address (optional)"},
    {"tenant", KH_OPT_LIST, REQ | RELOAD, NULL, 0, KH_OPT_LIST_MAX, NULL, OFF(tenants), org_code,
     "a hosted organisation; on SIGHUP one listed anew is added (made first with tools/khpki org "
     "and tools/khdb tenant, and in the router's directory), one no longer listed is retired"},
    {"tenant_db", KH_OPT_LIST, SECRET | RELOAD, NULL, 0, KH_OPT_LIST_MAX, NULL, OFF(tenant_dbs),
     tenant_db,
     "'ORG conninfo': tenant ORG's schema lives in that database (another PostgreSQL cluster, "
     "migrated with tools/khdb), not in db; db keeps the operators' tables and the other "
     "tenants (a tenant added on SIGHUP only on a database already in use)"},
    {"db_workers", KH_OPT_INT, 0, "4", 1, 64, NULL, OFF(db_workers), NULL,
     "database worker threads"},
    {"db_queue", KH_OPT_INT, 0, "1024", 1, 1 << 20, NULL, OFF(db_queue), NULL,
     "bound of the database job queue"},
    {"worker_nice", KH_OPT_INT, 0, "19", 0, 19, NULL, OFF(worker_nice), NULL,
     "the database and crypto workers run this much below the event loop"},
    {"max_skew", KH_OPT_INT, RELOAD, "120", 0, 3600, NULL, OFF(max_skew), NULL,
     "allowed clock skew, seconds"},
    {"msg_ttl", KH_OPT_INT, RELOAD, "300", 10, 86400, NULL, OFF(msg_ttl), NULL,
     "validity of a message, seconds"},
    {"max_body", KH_OPT_INT, 0, "1048576", 1024, 64 << 20, NULL, OFF(max_body), NULL,
     "largest request body, bytes"},
    {"max_connections", KH_OPT_INT, RELOAD, "1000", 0, 1 << 20, NULL, OFF(max_connections), NULL,
     "connections per listener (business, peer); more are refused (KH-5003); 0: no limit"},
    {"max_inflight", KH_OPT_INT, RELOAD, "128", 1, 1 << 20, NULL, OFF(max_inflight), NULL,
     "requests being answered per listener (business, peer); more are refused at once"},
    {"tenant_max_inflight", KH_OPT_INT, RELOAD, "64", 1, 1 << 20, NULL, OFF(tenant_max_inflight),
     NULL,
     "of them, at most this many for one tenant (business: the client's; peer: the recipient)"},
    {"system_max_inflight", KH_OPT_INT, RELOAD, "32", 1, 1 << 20, NULL, OFF(system_max_inflight),
     NULL, "and this many for one business system"},
    {"system_max_connections", KH_OPT_INT, RELOAD, "100", 0, 1 << 20, NULL,
     OFF(system_max_connections), NULL,
     "connections of one business system on the business listener; 0: no limit"},
    {"handshake_rate", KH_OPT_INT, RELOAD, "100", 0, 1 << 20, NULL, OFF(handshake_rate), NULL,
     "TLS handshakes one client address may start per second on the business and admin "
     "listeners (and at once); more are refused before any costly step; 0: no limit"},
    {"peer_handshake_rate", KH_OPT_INT, RELOAD, "0", 0, 1 << 20, NULL, OFF(peer_handshake_rate),
     NULL,
     "the same on the peer listener; 0 (the default): no limit, its one client, the router, "
     "must never be cut off (let only the router's address reach it)"},
    {"drain_s", KH_OPT_INT, 0, "0", 0, 300, NULL, OFF(drain_s), NULL,
     "on SIGTERM or SIGINT, seconds the node goes on serving while GET /ready says 503 "
     "(draining) and every reply closes its connection, so that load balancers and the "
     "router move its traffic to the other nodes; then it stops once nothing is in flight "
     "(at most 10 s more). A second signal stops at once; 0: stop at once"},
    {"timeout_ms", KH_OPT_INT, RELOAD, "30000", 100, 120000, NULL, OFF(timeout_ms), NULL,
     "default wait for an answer"},
    {"directory_refresh_s", KH_OPT_INT, RELOAD, "300", 0, 86400, NULL, OFF(directory_refresh_s),
     NULL,
     "ask the router for its signed directory this often, seconds, and take a newer one "
     "(verified; work in flight finishes under the version it started with); 0: only at "
     "start and on demand (POST /admin/v1/directory/refresh)"},
    {"crl_refresh_s", KH_OPT_INT, RELOAD, "300", 1, 86400, NULL, OFF(crl_refresh_s), NULL,
     "read the CRLs (pki/national-ca.crl, pki/operator-ca.crl, each tenant's "
     "pki/org/ORG/business-ca.crl) and the gateway's TLS files again this often, seconds; a "
     "certificate revoked is refused from the next refresh on, and every certificate of a CA "
     "whose CRL has expired is refused (fail-closed)"},
    {"log_level", KH_OPT_ENUM, RELOAD, "info", 0, 0, log_levels, OFF(log_level), NULL,
     "least severe level logged"},
    {"spool_dir", KH_OPT_STR, 0, NULL, 0, 900, NULL, OFF(spool_dir), NULL,
     "a node's own folder for the files of its bulk loads (enables /v1/bulk/*)"},
    {"drop_dir", KH_OPT_STR, 0, NULL, 0, 900, NULL, OFF(drop_dir), NULL,
     "watched drop folder: DIR/<tenant>/in/*.csv (optional)"},
    {"drop_system", KH_OPT_STR, 0, "dropfolder", 0, 32, NULL, OFF(drop_system), system_id,
     "business system the drop folder registers as"},
    {"chain_sign_interval", KH_OPT_INT, 0, "60", 1, 86400, NULL, OFF(chain_sign_interval), NULL,
     "seconds between signatures of the record chains' heads"},
    {"tsa_url", KH_OPT_STR, 0, NULL, 0, 200, NULL, OFF(tsa_url), tsa_url,
     "http://HOST:PORT/PATH of an RFC 3161 time-stamping authority: every signed chain "
     "head is time-stamped there (gw_stamp.c; heads wait while it is unreachable); "
     "unset: heads are signed only"},
    {"tsa_ca", KH_OPT_STR, 0, NULL, 0, 900, NULL, OFF(tsa_ca), NULL,
     "the CA certificate(s) (PEM) the TSA's certificate must chain to; needed with tsa_url"},
    {"tsa_timeout_ms", KH_OPT_INT, 0, "10000", 100, 120000, NULL, OFF(tsa_timeout_ms), NULL,
     "wait at most this long for the TSA's reply"},
    {"max_upload_mb", KH_OPT_INT, 0, "4096", 1, 1 << 20, NULL, OFF(max_upload_mb), NULL,
     "largest bulk file accepted, MiB"},
    {"admin_session_idle", KH_OPT_INT, RELOAD, "1800", 60, 86400, NULL, OFF(admin_session_idle),
     NULL, "an operator session ends after this many idle seconds"},
    {"admin_session_max", KH_OPT_INT, RELOAD, "28800", 60, 7 * 86400, NULL, OFF(admin_session_max),
     NULL, "and at the latest this many seconds after its login"},
    {"admin_lockout", KH_OPT_INT, RELOAD, "900", 1, 86400, NULL, OFF(admin_lockout), NULL,
     "seconds an operator is locked after 5 failed logins"},
    {"admin_max_connections", KH_OPT_INT, RELOAD, "64", 0, 1 << 20, NULL,
     OFF(admin_max_connections), NULL,
     "connections on the admin listener; more are refused (KH-5003); 0: no limit"},
    {"admin_max_inflight", KH_OPT_INT, RELOAD, "16", 1, 1 << 20, NULL, OFF(admin_max_inflight),
     NULL, "requests being answered on the admin listener; more are refused at once"},
    {"operator_max_inflight", KH_OPT_INT, RELOAD, "4", 1, 1 << 20, NULL, OFF(operator_max_inflight),
     NULL, "of them, at most this many for one operator"},
    {"operator_max_connections", KH_OPT_INT, RELOAD, "8", 0, 1 << 20, NULL,
     OFF(operator_max_connections), NULL,
     "connections of one operator on the admin listener; 0: no limit"},
    {NULL, KH_OPT_STR, 0, NULL, 0, 0, NULL, 0, NULL, NULL},
};

kh_conf *gw_conf_load(const char *path, gw_settings *s, char *err, size_t errlen)
{
    kh_conf *c = kh_conf_load(path, options, s, err, errlen);
    if (c == NULL)
        return NULL;
    for (size_t i = 0; i < s->tenants.n; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(s->tenants.v[i], s->tenants.v[k]) == 0) {
                snprintf(err, errlen, "%s: tenant %s listed twice", path, s->tenants.v[i]);
                goto fail;
            }
    for (size_t i = 0; i < s->tenant_dbs.n; i++) {
        const char *v = s->tenant_dbs.v[i];
        size_t n = strcspn(v, " \t"), listed = 0;
        for (size_t k = 0; k < s->tenants.n; k++)
            listed += strncmp(s->tenants.v[k], v, n) == 0 && s->tenants.v[k][n] == '\0';
        for (size_t k = 0; k < i; k++)
            if (strncmp(s->tenant_dbs.v[k], v, n) == 0 && strcspn(s->tenant_dbs.v[k], " \t") == n) {
                snprintf(err, errlen, "%s: tenant_db of %.*s given twice", path, (int)n, v);
                goto fail;
            }
        if (listed == 0) {
            snprintf(err, errlen, "%s: tenant_db for %.*s, which is not a tenant", path, (int)n, v);
            goto fail;
        }
    }
    if ((s->tsa_url == NULL) != (s->tsa_ca == NULL)) {
        snprintf(err, errlen, "%s: tsa_url and tsa_ca go together (one is given without the other)",
                 path);
        goto fail;
    }
    if (s->admin_session_idle > s->admin_session_max) {
        snprintf(err, errlen, "%s: admin_session_idle (%d) is longer than admin_session_max (%d)",
                 path, s->admin_session_idle, s->admin_session_max);
        goto fail;
    }
    if (s->spool_dir != NULL && s->max_body < 65536) {
        snprintf(err, errlen, "%s: max_body must be at least 65536 when spool_dir is set", path);
        goto fail;
    }
    return c;
fail:
    kh_conf_free(c);
    return NULL;
}

kh_conf *gw_conf_loader(const char *path, void *s, char *err, size_t errlen)
{
    return gw_conf_load(path, s, err, errlen);
}

const kh_opt *gw_conf_table(void)
{
    return options;
}

void gw_conf_usage(FILE *f)
{
    kh_conf_usage(f, options);
}
