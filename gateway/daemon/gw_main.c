/* gw_main.c: kakehashi-gw, the gateway daemon: configuration, start-up
 * (keys, TLS, database pool, the router's directory), listeners, shutdown. */
#include "gw_state.h"
#include "gw_biz.h"
#include "gw_peer.h"
#include "gw_bulk.h"
#include "gw_admin.h"
#include "gw_chain.h"
#include "gw_expiry.h"
#include "gw_stamp.h"
#include "gw_query.h"
#include "gw_decide.h"
#include "gw_health.h"
#include "gw_lease.h"
#include "gw_dir.h"
#include "gw_tenants.h"
#include "gw_tls.h"

#include "khadmin.h"
#include "khid.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"

#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: kakehashi-gw -c FILE [-t]\n"
               "  -c, --config FILE  configuration file (key = value lines)\n"
               "  -t, --check        check every option, load the keys and certificates, then\n"
               "                     what needs no running gateway: the databases (reachable,\n"
               "                     migrations current), every certificate's validity, each\n"
               "                     tenant's keys; changes nothing; exit 1 if one failed\n"
               "  -h, --help         this text\n"
               "Signals: SIGTERM or SIGINT stop (after drain_s, a second one at once); SIGHUP "
               "reads FILE again and applies the options\n"
               "marked [reloadable] if the whole file is valid and no other option changed;\n"
               "it also adds and retires tenants as the tenant lines say, and reads the TLS\n"
               "certificate, its key, the national and operator CAs again if they changed.\n"
               "Options in FILE:\n");
    gw_conf_usage(f);
}

/* The settings' options that may change at run time, put to use. */
static void apply_reloadable(const gw_settings *s)
{
    static const kh_log_level levels[] = {KH_LOG_DEBUG, KH_LOG_INFO, KH_LOG_WARN, KH_LOG_ERROR};
    kh_log_set_level(levels[s->log_level]);
    G.skew = s->max_skew;
    G.ttl = s->msg_ttl;
    G.default_timeout_ms = s->timeout_ms;
    gw_dir_schedule(s->directory_refresh_s); /* runs from the first directory on */
    gw_tenants_schedule(s->crl_refresh_s);   /* runs once the listeners are up */
    gw_admin_reload(s);
    /* admission (khhttp.h): a tenant and a business system on the business
     * API; on the peer API there is one client, the router */
    kh_http_limits biz = {.max_conns = s->max_connections,
                          .max_inflight = s->max_inflight,
                          .org_max = s->tenant_max_inflight,
                          .client_max = s->system_max_inflight,
                          .client_max_conns = s->system_max_connections,
                          .handshake_rate = s->handshake_rate};
    /* on the peer listener the tenant is the recipient (gw_peer.c) */
    kh_http_limits peer = {.max_conns = s->max_connections,
                           .max_inflight = s->max_inflight,
                           .tenant_max = s->tenant_max_inflight,
                           .handshake_rate = s->peer_handshake_rate};
    /* on the admin listener every operator's certificate has the same O=:
     * the operator (CN=) is the unit of fairness */
    kh_http_limits adm = {.max_conns = s->admin_max_connections,
                          .max_inflight = s->admin_max_inflight,
                          .client_max = s->operator_max_inflight,
                          .client_max_conns = s->operator_max_connections,
                          .by_client = true,
                          .handshake_rate = s->handshake_rate};
    if (G.biz_http != NULL)
        kh_http_set_limits(G.biz_http, &biz);
    if (G.peer_http != NULL)
        kh_http_set_limits(G.peer_http, &peer);
    if (G.admin_http != NULL)
        kh_http_set_limits(G.admin_http, &adm);
}

static int setup(const char *config, char *err, size_t errlen)
{
    G.conf = gw_conf_load(config, &G.set, err, errlen);
    if (G.conf == NULL)
        return -1;
    apply_reloadable(&G.set);
    if (gw_tls_load(err, errlen) != 0)
        return -1;
    /* business systems are trusted through their tenants' CAs only */
    /* the TSA's CA too, so that -t checks it */
    if (gw_tenants_load(err, errlen) != 0)
        return -1;
    gw_tls_settle();
    return gw_stamp_start(err, errlen);
}

static void start_listeners(void)
{
    char err[256];
    G.pool = kh_pool_new(G.base, G.set.db, G.set.db_workers, G.set.db_queue, G.set.worker_nice);
    for (size_t i = 0, n = gw_tenant_count(); G.pool != NULL && i < n; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        /* every tenant, those of the home too: a route never changes */
        if (kh_pool_route(G.pool, t->id.code, t->db) != 0) {
            kh_error("main", "cannot start: tenant %s's database route", t->id.code);
            event_base_loopbreak(G.base);
            return;
        }
    }
    G.biz_http = kh_http_listen(G.base, atomic_load(&G.biz_ctx), G.set.business_listen,
                                (size_t)G.set.max_body, err, sizeof err);
    if (G.biz_http != NULL)
        G.peer_http = kh_http_listen(G.base, G.peer_ctx, G.set.peer_listen, (size_t)G.set.max_body,
                                     err, sizeof err);
    const char *admin = G.set.admin_listen;
    if (admin != NULL && G.peer_http != NULL)
        G.admin_http = kh_http_listen(G.base, G.admin_ctx, admin, KHADM_MAX_CSV, err, sizeof err);
    if (G.pool == NULL || G.biz_http == NULL || G.peer_http == NULL ||
        (admin != NULL && G.admin_http == NULL)) {
        kh_error("main", "cannot start: %s", G.pool ? err : "database pool");
        event_base_loopbreak(G.base);
        return;
    }
    apply_reloadable(&G.set); /* the listeners' limits */
    if (gw_bulk_start(err, sizeof err) != 0 || gw_chain_start(err, sizeof err) != 0 ||
        gw_expiry_start(err, sizeof err) != 0 || gw_outbox_start(err, sizeof err) != 0 ||
        gw_lease_start(err, sizeof err) != 0) {
        kh_error("main", "cannot start: %s", err);
        event_base_loopbreak(G.base);
        return;
    }
    gw_biz_register(G.biz_http);
    gw_peer_register(G.peer_http);
    if (G.admin_http != NULL)
        gw_admin_register(G.admin_http);
    kh_info("main",
            "ready: business API on %s, peer API on %s, admin API on %s, %zu tenants, directory "
            "with %zu organisations, node %s",
            G.set.business_listen, G.set.peer_listen, admin ? admin : "(none)", gw_tenant_count(),
            G.dir->norgs, G.node);
}

static void fetch_directory(evutil_socket_t fd, short what, void *arg);

static void directory_arrived(int status, const uint8_t *body, size_t len, void *arg)
{
    char err[256] = "router unreachable";
    if (status == 200) {
        /* verified on the event loop: nothing else runs yet */
        kh_dir *fresh = kh_dir_load(body, len, G.national, err, sizeof err);
        if (fresh != NULL) {
            if (!gw_dir_install(fresh, err, sizeof err)) {
                kh_error("main", "%s: the router's directory is not taken: %s",
                         kh_err_code(KH_E_DIRECTORY), err);
                event_base_loopbreak(G.base);
                return;
            }
            start_listeners();
            return;
        }
    } else if (status != 0) {
        snprintf(err, sizeof err, "router answered HTTP %d", status);
    }
    if (++G.dir_attempts >= 30) {
        kh_error("main", "%s: %s; giving up", kh_err_code(KH_E_DIRECTORY), err);
        event_base_loopbreak(G.base);
        return;
    }
    kh_warn("main", "directory not loaded (%s); retrying", err);
    struct timeval tv = {1, 0};
    evtimer_add(G.retry_ev, &tv);
}

static void fetch_directory(evutil_socket_t fd, short what, void *arg)
{
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_GET, G.set.router, "/v1/directory", NULL,
                        0, 5000, "ROUTER", "router", directory_arrived, NULL) != 0)
        directory_arrived(0, NULL, 0, NULL);
}

static const char *config_path;

/* SIGHUP (kh_conf_reload): the file checked whole; only options marked
 * reloadable change, and only if nothing else did. */
static void apply_fresh(const void *fresh)
{
    apply_reloadable(fresh);
    gw_tenants_reload(fresh); /* before the file is freed: what it needs is copied */
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    gw_settings fresh;
    kh_conf_reload(config_path, gw_conf_table(), gw_conf_loader, &G.set, &fresh, apply_fresh);
}

/* A stop signal with drain_s: the node drains first. GET /ready says 503
 * (load balancers and the router's probes take it out of service), every
 * reply closes its connection (kept-alive clients reconnect elsewhere), and
 * it goes on serving for drain_s seconds; then it stops once no request is
 * in flight, at most GW_DRAIN_WAIT_S later. A second signal, or drain_s 0,
 * stops at once. */
#define GW_DRAIN_WAIT_S 10
static struct event *drain_ev;
static int64_t drain_until_ms;

static int in_flight(void)
{
    struct evhttp *l[] = {G.biz_http, G.peer_http, G.admin_http};
    int n = 0;
    for (size_t i = 0; i < sizeof l / sizeof l[0]; i++)
        if (l[i] != NULL)
            n += kh_http_load_of(l[i]).inflight;
    return n;
}

static void stop_now(void)
{
    G.stopping = true;
    event_base_loopexit(G.base, NULL);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    static bool released;
    int64_t now = kh_mono_ms();
    if (now >= drain_until_ms && !released) {
        /* a business system waiting on an answer gets its handle now */
        gw_query_release_waiters();
        released = true;
    }
    int n = in_flight();
    if (now >= drain_until_ms && (n == 0 || now >= drain_until_ms + GW_DRAIN_WAIT_S * 1000)) {
        kh_info("main", "drained: stopping with %d request(s) in flight", n);
        stop_now();
        return;
    }
    struct timeval tv = {0, 100000};
    evtimer_add(drain_ev, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    if (G.draining || G.set.drain_s == 0 || G.peer_http == NULL ||
        (drain_ev = evtimer_new(G.base, on_drain_tick, NULL)) == NULL) {
        kh_info("main", "signal %d: stopping", (int)sig);
        stop_now();
        return;
    }
    G.draining = true;
    kh_http_set_closing(true);
    drain_until_ms = kh_mono_ms() + (int64_t)G.set.drain_s * 1000;
    kh_info("main",
            "signal %d: draining for %d s (not ready, each connection closed after its reply), "
            "then stopping",
            (int)sig, G.set.drain_s);
    on_drain_tick(-1, 0, NULL);
}

static void teardown(void)
{
    G.stopping = true;
    if (G.biz_http)
        evhttp_free(G.biz_http);
    if (G.peer_http)
        evhttp_free(G.peer_http);
    if (G.admin_http)
        evhttp_free(G.admin_http);
    gw_health_stop();
    kh_pool_free(G.pool); /* first: its last completions may still use uploads */
    gw_lease_hand_over(); /* after every job of the pool */
    gw_lease_stop();
    gw_query_stop();
    gw_outbox_stop();
    gw_bulk_stop();
    gw_chain_stop();
    gw_expiry_stop();
    gw_tenants_free(); /* the business listener's contexts too */
    gw_dir_shutdown();
    if (G.base)
        kh_http_client_close(G.base);
    gw_stamp_stop(); /* after the client: no reply comes any more */
    gw_admin_stop();
    gw_tls_free();
    for (int i = 0; i < 3; i++)
        if (G.sig_ev[i])
            event_free(G.sig_ev[i]);
    /* a late second stop signal must not kill the process while it ends (a
     * sanitizer's report at exit would be lost) */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (G.retry_ev)
        event_free(G.retry_ev);
    if (drain_ev)
        event_free(drain_ev);
    if (G.base)
        event_base_free(G.base);
    kh_conf_free(G.conf);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:th", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = config_path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    kh_log_set_component("gateway");
    /* no core dumps: they would hold keys and personal data */
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    kh_http_raise_open_files();
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    char err[512] = "";
    int rc = 1;
    if (setup(config, err, sizeof err) != 0) {
        kh_error("main", "configuration %s: %s", config, err);
        goto out;
    }
    /* the business and peer listeners' connections, the idle ones to the
     * router, the database's and the files' must fit under the limit */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        (rlim_t)2 * (rlim_t)G.set.max_connections + (rlim_t)G.set.db_workers +
                KH_HTTP_IDLE_MAX_PER_DEST + 64 >
            nofile.rlim_cur)
        kh_warn("main",
                "max_connections %d on two listeners may exceed the limit of %llu open files: "
                "a listener that runs out stops accepting for a second at a time",
                G.set.max_connections, (unsigned long long)nofile.rlim_cur);
    if (check) {
        printf("configuration ok: %zu tenants\n", gw_tenant_count());
        /* then what can be checked without running: databases, migrations,
         * certificates, keys (a failure is exit 1) */
        rc = gw_admin_check_offline(stdout) == 0 ? 0 : 1;
        goto out;
    }
    if (gw_lease_node_init() != 0) {
        kh_error("main", "cannot start: no randomness for the node's name");
        goto out;
    }
    G.base = event_base_new();
    G.retry_ev = evtimer_new(G.base, fetch_directory, NULL);
    G.sig_ev[0] = evsignal_new(G.base, SIGTERM, on_signal, NULL);
    G.sig_ev[1] = evsignal_new(G.base, SIGINT, on_signal, NULL);
    G.sig_ev[2] = evsignal_new(G.base, SIGHUP, on_reload, NULL);
    for (int i = 0; i < 3; i++)
        event_add(G.sig_ev[i], NULL);
    if (gw_health_start(err, sizeof err) != 0) {
        kh_error("main", "cannot start: %s", err);
        goto out;
    }
    fetch_directory(-1, 0, NULL);
    event_base_dispatch(G.base);
    rc = G.peer_http != NULL ? 0 : 1;
    kh_info("main", "stopped");
out:
    teardown();
    return rc;
}
