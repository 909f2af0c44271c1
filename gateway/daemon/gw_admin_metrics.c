/* gw_admin_metrics.c: GET /metrics. Every caller gets the usage counts of
 * its tenants (gw_usage.c) and the remaining validity of their keys'
 * certificates; platform admins and metrics operators also the gateway's
 * own figures, which hold no tenant's data: its listeners (connections,
 * admission, time per endpoint, refusals by code), its database job queue,
 * its directory's age, its time-stamping and its own certificates. */
#include "gw_adm.h"
#include "gw_dir.h"
#include "gw_stamp.h"
#include "gw_usage.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khpool.h"
#include "khprom.h"
#include "khtls.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds until each certificate's notAfter: the tenants' (orgs) signing,
 * encryption and business-CA certificates; with gateway, its TLS
 * certificates and the router's from the directory too. */
static int render_certs(struct evbuffer *b, const char *const *orgs, size_t n, bool gateway)
{
    static const char fam[] = "kakehashi_certificate_expiry_seconds";
    int rc = khprom_family(b, fam, "gauge",
                           "Seconds until a certificate's notAfter (negative: expired), by "
                           "tenant and key, or for the gateway's own (tls_business, tls_peer, "
                           "tls_admin, tls_client, router_sign, router_enc) and the CAs it "
                           "trusts (national_ca, operator_ca, tsa_ca).");
    bool ok;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const gw_tenant *t = gw_tenant_find(orgs[i]);
        if (t == NULL)
            continue;
        gw_tenant_cert certs[GW_TENANT_CERTS];
        gw_tenant_certs(t, certs);
        for (size_t k = 0; rc == 0 && k < GW_TENANT_CERTS; k++) {
            int64_t left = khc_cert_left(certs[k].cert, &ok);
            const char *l[] = {"tenant", orgs[i], "cert", certs[k].key, NULL};
            if (ok)
                rc = khprom_sample(b, fam, l, left);
        }
    }
    if (!gateway)
        return rc;
    const kh_dir *dir = gw_dir_hold();
    gw_tenant_cert own[GW_OWN_CERTS];
    gw_own_certs(dir, own);
    for (size_t k = 0; rc == 0 && k < GW_OWN_CERTS; k++) {
        if (own[k].cert == NULL)
            continue;
        int64_t left = khc_cert_left(own[k].cert, &ok);
        const char *l[] = {"cert", own[k].key, NULL};
        if (ok)
            rc = khprom_sample(b, fam, l, left);
    }
    gw_dir_drop(dir);
    return rc;
}

/* The time-stamps on the chain heads (gw_stamp.c), if a TSA is set. */
static int render_tsa(struct evbuffer *b)
{
    gw_stamp_status ts;
    gw_stamp_status_get(&ts);
    if (!ts.configured)
        return 0;
    const struct {
        const char *name, *type, *help;
        int64_t v;
    } f[] = {
        {"kakehashi_tsa_up", "gauge",
         "1 if the last exchange with the time-stamping authority (tsa_url) gave tokens, 0 if "
         "one failed (unreachable, refused, or a token that does not verify).",
         ts.up ? 1 : 0},
        {"kakehashi_tsa_down_seconds", "gauge",
         "Seconds since the TSA stopped giving tokens (0 while it gives them).",
         ts.down_since ? (int64_t)time(NULL) - ts.down_since : 0},
        {"kakehashi_tsa_heads_waiting", "gauge",
         "Signed chain heads without a time-stamp token yet, every tenant, at the last "
         "signing pass: they are stamped in order once the TSA answers.",
         ts.waiting < 0 ? 0 : ts.waiting},
        {"kakehashi_tsa_stamped_total", "counter",
         "Time-stamp tokens checked and stored since the gateway started.", (int64_t)ts.stamped},
        {"kakehashi_tsa_failures_total", "counter",
         "Time-stamp requests that gave no token since the gateway started.", (int64_t)ts.failures},
    };
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof f / sizeof f[0]; i++) {
        rc = khprom_family(b, f[i].name, f[i].type, f[i].help);
        if (rc == 0)
            rc = khprom_sample(b, f[i].name, NULL, f[i].v);
    }
    return rc;
}

/* The database job queue, the directory and the time-stamps. */
static int render_platform(struct evbuffer *b)
{
    kh_pool_depth d = kh_pool_depth_of(G.pool);
    int rc = khprom_family(b, "kakehashi_db_jobs", "gauge",
                           "Database jobs: state=waiting (submitted, no worker yet), running; "
                           "state=limit is the queue's bound (queue_max), state=workers the "
                           "workers.");
    const struct {
        const char *state;
        int v;
    } js[] = {{"waiting", d.waiting},
              {"running", d.running},
              {"limit", d.queue_max},
              {"workers", d.workers}};
    for (size_t i = 0; rc == 0 && i < sizeof js / sizeof js[0]; i++) {
        const char *l[] = {"state", js[i].state, NULL};
        rc = khprom_sample(b, "kakehashi_db_jobs", l, js[i].v < 0 ? 0 : js[i].v);
    }
    if (rc == 0)
        rc = khprom_family(b, "kakehashi_directory_age_seconds", "gauge",
                           "Seconds since the router issued the signed directory this gateway "
                           "uses (absent before one is loaded).");
    gw_dir_status ds;
    gw_dir_status_get(&ds);
    if (rc == 0 && ds.installs > 0)
        rc = khprom_sample(b, "kakehashi_directory_age_seconds", NULL,
                           (int64_t)time(NULL) - ds.issued_at);
    if (rc == 0)
        rc = khprom_family(b, "kakehashi_directory_installs_total", "counter",
                           "Directory versions installed since the gateway started (the first "
                           "one included).");
    if (rc == 0)
        rc = khprom_sample(b, "kakehashi_directory_installs_total", NULL, ds.installs);
    if (rc == 0)
        rc = khprom_family(b, "kakehashi_directory_refresh_ok", "gauge",
                           "1 if the last refresh found the router's directory in use (new or "
                           "not), 0 if it failed (unreachable, a signature or version refused).");
    if (rc == 0 && ds.installs > 0)
        rc = khprom_sample(b, "kakehashi_directory_refresh_ok", NULL, ds.last_error[0] ? 0 : 1);
    return rc == 0 ? render_tsa(b) : rc;
}

/* What each listener answered: a latency histogram per endpoint and the
 * refusals by code (kh_http_answers). */
static int render_answers(struct evbuffer *b, const char *const *names,
                          const kh_http_answers *stats)
{
    static const char dur[] = "kakehashi_http_request_duration_seconds";
    static const char ref[] = "kakehashi_http_refusals_total";
    int rc = khprom_family(b, dur, "histogram",
                           "Time from a request read whole to its answer sent, by listener and "
                           "endpoint (a path; on the admin listener, the action), since the "
                           "gateway started.");
    char le[16], v[32];
    for (size_t i = 0; rc == 0 && i < 3; i++) {
        for (size_t k = 0; rc == 0 && k < stats[i].nep; k++) {
            const kh_http_endpoint_stat *e = &stats[i].ep[k];
            uint64_t cum = 0;
            for (size_t q = 0; rc == 0 && q < KH_HTTP_BUCKETS; q++) {
                cum += e->bucket[q];
                if (q < KH_HTTP_BUCKETS - 1)
                    snprintf(le, sizeof le, "%g", kh_http_bucket_ms[q] / 1000.0);
                else
                    snprintf(le, sizeof le, "+Inf");
                const char *l[] = {"listener", names[i], "endpoint", e->endpoint, "le", le, NULL};
                rc = khprom_sample(b, "kakehashi_http_request_duration_seconds_bucket", l,
                                   (int64_t)cum);
            }
            const char *l[] = {"listener", names[i], "endpoint", e->endpoint, NULL};
            snprintf(v, sizeof v, "%.6f", (double)e->sum_us / 1e6);
            if (rc == 0)
                rc = khprom_sample_text(b, "kakehashi_http_request_duration_seconds_sum", l, v);
            if (rc == 0)
                rc = khprom_sample(b, "kakehashi_http_request_duration_seconds_count", l,
                                   (int64_t)e->count);
        }
    }
    if (rc == 0)
        rc = khprom_family(b, ref, "counter",
                           "Refusals sent by listener and code (KH-xxxx, proto/ERRORS.md) since "
                           "the gateway started; codes never sent are left out.");
    for (size_t i = 0; rc == 0 && i < 3; i++)
        for (int e = 1; rc == 0 && e < KH_E__COUNT; e++) {
            if (stats[i].refusals[e] == 0)
                continue;
            const char *l[] = {"listener", names[i], "code", kh_err_code((kh_err)e), NULL};
            rc = khprom_sample(b, ref, l, (int64_t)stats[i].refusals[e]);
        }
    return rc;
}

/* The listeners' admission figures (kh_http_load): the gateway's, not a
 * tenant's. 0, or -1 out of memory. */
static int render_listeners(struct evbuffer *b, const kh_http_load *load,
                            const kh_http_answers *answers)
{
    static const char *const names[3] = {"business", "peer", "admin"};
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"kakehashi_http_connections", "gauge",
         "Connections open on the listener (state=open: all, handshaking included; "
         "state=counted: those counted against max_connections, from their first request)."},
        {"kakehashi_http_requests_in_flight", "gauge",
         "Requests the listener admitted and has not answered yet."},
        {"kakehashi_http_overload_refusals_total", "counter",
         "Requests refused for overload (503 KH-5003) since the gateway started."},
        {"kakehashi_http_slow_closed_total", "counter",
         "Connections closed for a TLS handshake or a request too slow since the gateway "
         "started."},
        {"kakehashi_http_handshakes_refused_total", "counter",
         "TLS handshakes refused at the client's first message since the gateway started: its "
         "address had started handshake_rate handshakes in the last second."},
    };
    int rc = 0;
    if (answers != NULL)
        rc = render_answers(b, names, answers);
    for (size_t f = 0; rc == 0 && f < sizeof fams / sizeof fams[0]; f++) {
        rc = khprom_family(b, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; rc == 0 && i < 3; i++) {
            const kh_http_load *ld = &load[i];
            if (f == 0) {
                const char *open[] = {"listener", names[i], "state", "open", NULL};
                const char *counted[] = {"listener", names[i], "state", "counted", NULL};
                rc = khprom_sample(b, fams[f].name, open, ld->open);
                if (rc == 0)
                    rc = khprom_sample(b, fams[f].name, counted, ld->conns);
                continue;
            }
            const char *l[] = {"listener", names[i], NULL};
            int64_t v = f == 1   ? ld->inflight
                        : f == 2 ? (int64_t)ld->refused
                        : f == 3 ? (int64_t)ld->slow_closed
                                 : (int64_t)ld->hello_refused;
            rc = khprom_sample(b, fams[f].name, l, v);
        }
    }
    return rc;
}

/* GET /metrics: Prometheus text of the operator's tenants (a platform
 * admin's: every hosted tenant), from gw_usage_metrics; for a platform
 * admin, the listeners' load too. */
void adm_metrics_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none))
        return;
    size_t nt = gw_tenant_count(), n = 0;
    const char **orgs = calloc(nt ? nt : 1, sizeof *orgs);
    if (orgs == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < nt; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t != NULL && adm_has_tenant(call, t->id.code))
            orgs[n++] = t->id.code;
    }
    kh_err e = gw_usage_metrics(c, orgs, n, &call->out, &call->outlen);
    /* the gateway's own figures (no tenant, no personal data): for platform
     * admins and scrapes */
    bool own = call->role == KHADM_PLATFORM_ADMIN || call->role == KHADM_METRICS;
    if (e == KH_OK) {
        struct evbuffer *b = evbuffer_new();
        char *all = NULL;
        if (b == NULL || evbuffer_add(b, call->out, call->outlen) != 0 ||
            render_certs(b, orgs, n, own) != 0 ||
            (own && render_listeners(b, call->load, call->answers) != 0) ||
            (own && render_platform(b) != 0) ||
            (all = malloc(evbuffer_get_length(b) + 1)) == NULL) {
            e = KH_E_INTERNAL;
        } else {
            call->outlen = evbuffer_get_length(b);
            evbuffer_copyout(b, all, call->outlen);
            all[call->outlen] = '\0';
            free(call->out);
            call->out = all;
        }
        if (b != NULL)
            evbuffer_free(b);
    }
    free(orgs);
    if (e != KH_OK) {
        adm_set_err(call, e, "cannot build the metrics");
        return;
    }
    call->err = KH_OK;
    call->status = 200;
    call->content_type = KHPROM_CONTENT_TYPE;
}
