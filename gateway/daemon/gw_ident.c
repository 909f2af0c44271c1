/* gw_ident.c: who a business request comes from (gw_ident.h). */
#include "gw_ident.h"
#include "gw_maint.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khid.h"
#include "khlog.h"
#include "khtls.h"

#include <stdio.h>
#include <string.h>

/* The tenant and system named by a verified client certificate: O= must be a
 * hosted tenant whose business CA issued the certificate; CN= is the system. */
static gw_tenant *identify(struct evhttp_request *req, char *sys, size_t syslen)
{
    SSL *ssl = kh_http_req_ssl(req);
    X509 *peer = kh_tls_peer_cert(ssl);
    char org[16];
    gw_tenant *t = NULL;
    if (peer == NULL || khc_cert_org(peer, org, sizeof org) != 0)
        goto out;
    t = gw_tenant_find(org);
    X509 *issuer = kh_tls_peer_issuer(ssl);
    if (t == NULL || issuer == NULL || !khc_cert_equal(issuer, t->business_ca)) {
        t = NULL;
        goto out;
    }
    if (khc_cert_cn(peer, sys, syslen) != 0 || !kh_id_token(sys, 32))
        t = NULL;
out:
    khc_cert_free(peer);
    return t;
}

/* Checks in the tenant transaction that the system exists and may do op on scope. */
kh_err gw_permitted(PGconn *c, const char *sys, const char *op, const char *scope, char *msg,
                    size_t msglen)
{
    const char *p[3] = {sys, op, scope};
    PGresult *r = kh_db_exec(c,
                             "SELECT (SELECT count(*) FROM business_system WHERE system_id = $1), "
                             "(SELECT count(*) FROM system_permission WHERE system_id = $1 "
                             " AND operation = $2 AND scope IN ('*', $3))",
                             3, p);
    if (r == NULL)
        return KH_E_DB;
    bool known = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    bool allowed = strcmp(PQgetvalue(r, 0, 1), "0") != 0;
    PQclear(r);
    if (!known) {
        snprintf(msg, msglen, "business system '%s' is not registered for this tenant", sys);
        return KH_E_CLIENT_UNKNOWN;
    }
    if (!allowed) {
        snprintf(msg, msglen, "business system '%s' may not %s for %s", sys, op, scope);
        return KH_E_SYSTEM_PERMISSION;
    }
    return KH_OK;
}

gw_tenant *gw_identify(struct evhttp_request *req, char *sys, size_t syslen, bool new_work)
{
    gw_tenant *t = identify(req, sys, syslen);
    char msg[160];
    if (t == NULL) {
        kh_warn("biz", "refused a client certificate that names no hosted tenant/system");
        kh_http_reply_err(req, KH_E_CLIENT_UNKNOWN, "client certificate not recognised");
    } else if (new_work && gw_maint_check(t, msg, sizeof msg) != KH_OK) {
        kh_http_reply_err(req, KH_E_MAINTENANCE, "%s", msg);
        t = NULL;
    }
    return t;
}
