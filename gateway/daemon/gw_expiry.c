/* gw_expiry.c: warnings ahead of certificate expiry. Once the gateway runs,
 * and every 24 hours after, each certificate of the hosted tenants (signing,
 * encryption, business CA) and each of the gateway's own (gw_own_certs: its
 * TLS certificate, the router's from the directory in use, the CAs it
 * trusts) that ends within GW_CERT_WARN_DAYS is named in the log (warn), and
 * one that has ended is an error. The metrics carry the same figures
 * (kakehashi_certificate_expiry_seconds) for alerting, and the connectivity
 * check rates them. Runs on the event loop: it reads certificates already in
 * memory. */
#include "gw_expiry.h"
#include "gw_dir.h"
#include "gw_state.h"

#include "khcrypto.h"
#include "khlog.h"

#include <stdio.h>

#define EVERY_S 86400

static struct event *ev;

static void check(const char *tenant, const gw_tenant_cert *c, size_t *near)
{
    bool ok;
    if (c->cert == NULL)
        return;
    int64_t left = khc_cert_left(c->cert, &ok);
    if (!ok || left >= (int64_t)GW_CERT_WARN_DAYS * 86400)
        return;
    (*near)++;
    char target[64];
    snprintf(target, sizeof target, "%s%s%s", tenant ? tenant : "", tenant ? " " : "", c->label);
    if (left <= 0)
        kh_error("expiry", "certificate %s has expired (%lld day(s) ago): replace it", target,
                 (long long)(-left / 86400));
    else
        kh_warn("expiry",
                "certificate %s ends in %lld day(s): renew it before then (in development "
                "tools/khpki makes the next one)",
                target, (long long)(left / 86400));
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    size_t near = 0;
    gw_tenant_cert tc[GW_TENANT_CERTS], oc[GW_OWN_CERTS];
    for (size_t i = 0, n = gw_tenant_count(); i < n; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        gw_tenant_certs(t, tc);
        for (size_t k = 0; k < GW_TENANT_CERTS; k++)
            check(t->id.code, &tc[k], &near);
    }
    const kh_dir *dir = gw_dir_hold();
    gw_own_certs(dir, oc);
    for (size_t k = 0; k < GW_OWN_CERTS; k++)
        check(NULL, &oc[k], &near);
    gw_dir_drop(dir);
    if (near == 0)
        kh_debug("expiry", "no certificate ends within %d days", GW_CERT_WARN_DAYS);
}

int gw_expiry_start(char *err, size_t errlen)
{
    struct timeval tv = {EVERY_S, 0};
    ev = event_new(G.base, -1, EV_PERSIST, on_tick, NULL);
    if (ev == NULL || event_add(ev, &tv) != 0) {
        snprintf(err, errlen, "cannot start the certificate expiry check");
        return -1;
    }
    on_tick(-1, 0, NULL);
    return 0;
}

void gw_expiry_stop(void)
{
    if (ev)
        event_free(ev);
    ev = NULL;
}
