/* gw_main.c: kakehashi-gw, the gateway daemon: configuration, start-up
 * (keys, TLS, database pool, the router's directory), listeners, shutdown. */
#include "gw.h"
#include "gw_decide.h"
#include "gw_util.h"

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

gw G;

static const char *const known_options[] = {"name",
                                            "pki",
                                            "router",
                                            "db",
                                            "business_listen",
                                            "peer_listen",
                                            "tenant",
                                            "db_workers",
                                            "db_queue",
                                            "max_skew",
                                            "msg_ttl",
                                            "max_body",
                                            "timeout_ms",
                                            "log_level",
                                            "spool_dir",
                                            "drop_dir",
                                            "drop_system",
                                            "chain_sign_interval",
                                            "max_upload_mb",
                                            "admin_listen",
                                            "admin_session_idle",
                                            "admin_session_max",
                                            "admin_lockout",
                                            NULL};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kakehashi-gw -c FILE [-t]\n"
            "  -c, --config FILE  configuration file (key = value lines)\n"
            "  -t, --check        load and check the configuration and keys, then exit\n"
            "  -h, --help         this text\n"
            "Options in FILE:\n"
            "  name = gw-a               this host's name (CN of pki/gw/NAME/tls.crt)\n"
            "  pki = DIR                 folder made by tools/khpki\n"
            "  router = HOST:PORT        the router's address\n"
            "  db = CONNINFO             libpq connection string (the gateway's login role)\n"
            "  business_listen = H:P     business API (tenants' business systems)\n"
            "  peer_listen = H:P         peer API (only the router)\n"
            "  admin_listen = H:P        admin API (operators; JSON; client certificates of\n"
            "                            pki/operator-ca.crt only; optional)\n"
            "  tenant = CODE             a hosted organisation; repeat for each tenant\n"
            "  db_workers = 4            database worker threads (1-64)\n"
            "  db_queue = 1024           bound of the database job queue\n"
            "  max_skew = 120            allowed clock skew, seconds\n"
            "  msg_ttl = 300             validity of a message, seconds\n"
            "  max_body = 1048576        largest request body, bytes\n"
            "  timeout_ms = 30000        default wait for an answer\n"
            "  log_level = info          debug, info, warn or error\n"
            "  spool_dir = DIR           where bulk uploads are spooled (enables /v1/bulk/*)\n"
            "  drop_dir = DIR            watched drop folder: DIR/<tenant>/in/*.csv (optional)\n"
            "  drop_system = dropfolder  business system the drop folder registers as\n"
            "  chain_sign_interval = 60  seconds between signatures of the record chains' heads\n"
            "  max_upload_mb = 4096      largest bulk file accepted, MiB\n"
            "  admin_session_idle = 1800 an operator session ends after this many idle seconds\n"
            "  admin_session_max = 28800 and at the latest this many seconds after its login\n"
            "  admin_lockout = 900       seconds an operator is locked after 5 failed logins\n");
}

gw_tenant *gw_tenant_find(const char *code)
{
    for (size_t i = 0; code && i < G.ntenants; i++)
        if (strcmp(G.tenants[i].id.code, code) == 0)
            return &G.tenants[i];
    return NULL;
}

static int load_tenants(char *err, size_t errlen)
{
    const char *codes[256];
    size_t n = kh_conf_all(G.conf, "tenant", codes, 256);
    if (n == 0) {
        snprintf(err, errlen, "no 'tenant' configured");
        return -1;
    }
    G.tenants = calloc(n, sizeof *G.tenants);
    if (G.tenants == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char dir[1024], path[1100];
        if (!kh_id_org(codes[i])) {
            snprintf(err, errlen, "tenant '%s' is not an organisation code", codes[i]);
            return -1;
        }
        if (gw_tenant_find(codes[i]) != NULL) {
            snprintf(err, errlen, "tenant %s listed twice", codes[i]);
            return -1;
        }
        snprintf(dir, sizeof dir, "%s/org/%s", G.pki, codes[i]);
        gw_tenant *t = &G.tenants[G.ntenants];
        if (kh_identity_load(&t->id, codes[i], dir, err, errlen) != 0)
            return -1;
        G.ntenants++;
        snprintf(path, sizeof path, "%s/business-ca.crt", dir);
        if ((t->business_ca = khc_load_cert(path, err, errlen)) == NULL)
            return -1;
        if (kh_tls_add_ca(G.biz_ctx, path, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int setup(const char *config, char *err, size_t errlen)
{
    char cert[1024], key[1024], ca[1024];
    G.conf = kh_conf_load(config, known_options, err, errlen);
    if (G.conf == NULL)
        return -1;
    G.name = kh_conf_str(G.conf, "name", NULL);
    G.pki = kh_conf_str(G.conf, "pki", NULL);
    G.router = kh_conf_str(G.conf, "router", NULL);
    const char *lvl = kh_conf_str(G.conf, "log_level", "info");
    kh_log_set_level(strcmp(lvl, "debug") == 0   ? KH_LOG_DEBUG
                     : strcmp(lvl, "warn") == 0  ? KH_LOG_WARN
                     : strcmp(lvl, "error") == 0 ? KH_LOG_ERROR
                                                 : KH_LOG_INFO);
    if (!G.name || !G.pki || !G.router || !kh_conf_str(G.conf, "db", NULL) ||
        !kh_conf_str(G.conf, "business_listen", NULL) ||
        !kh_conf_str(G.conf, "peer_listen", NULL)) {
        snprintf(err, errlen,
                 "name, pki, router, db, business_listen and peer_listen are all required");
        return -1;
    }
    if (kh_conf_int(G.conf, "max_skew", 120, 0, 3600, &G.skew, err, errlen) ||
        kh_conf_int(G.conf, "msg_ttl", 300, 10, 86400, &G.ttl, err, errlen) ||
        kh_conf_int(G.conf, "max_body", 1 << 20, 1024, 64 << 20, &G.max_body, err, errlen) ||
        kh_conf_int(G.conf, "timeout_ms", 30000, 100, 120000, &G.default_timeout_ms, err, errlen))
        return -1;
    snprintf(cert, sizeof cert, "%s/gw/%s/tls.crt", G.pki, G.name);
    snprintf(key, sizeof key, "%s/gw/%s/tls.key", G.pki, G.name);
    snprintf(ca, sizeof ca, "%s/national-ca.crt", G.pki);
    /* business systems are trusted through their tenants' CAs only */
    if ((G.biz_ctx = kh_tls_server_ctx(cert, key, NULL, err, errlen)) == NULL ||
        (G.peer_ctx = kh_tls_server_ctx(cert, key, ca, err, errlen)) == NULL ||
        (G.client_ctx = kh_tls_client_ctx(cert, key, ca, err, errlen)) == NULL ||
        (G.national = khc_store_from_file(ca, err, errlen)) == NULL)
        return -1;
    if (gw_admin_setup(err, errlen) != 0)
        return -1;
    return load_tenants(err, errlen);
}

static void start_listeners(void)
{
    char err[256];
    int workers, queue;
    if (kh_conf_int(G.conf, "db_workers", 4, 1, 64, &workers, err, sizeof err) ||
        kh_conf_int(G.conf, "db_queue", 1024, 1, 1 << 20, &queue, err, sizeof err)) {
        kh_error("main", "%s", err);
        event_base_loopbreak(G.base);
        return;
    }
    G.pool = kh_pool_new(G.base, kh_conf_str(G.conf, "db", ""), workers, queue);
    G.biz_http = kh_http_listen(G.base, G.biz_ctx, kh_conf_str(G.conf, "business_listen", ""),
                                (size_t)G.max_body, err, sizeof err);
    if (G.biz_http != NULL)
        G.peer_http = kh_http_listen(G.base, G.peer_ctx, kh_conf_str(G.conf, "peer_listen", ""),
                                     (size_t)G.max_body, err, sizeof err);
    const char *admin = kh_conf_str(G.conf, "admin_listen", NULL);
    if (admin != NULL && G.peer_http != NULL)
        G.admin_http = kh_http_listen(G.base, G.admin_ctx, admin, 65536, err, sizeof err);
    if (G.pool == NULL || G.biz_http == NULL || G.peer_http == NULL ||
        (admin != NULL && G.admin_http == NULL)) {
        kh_error("main", "cannot start: %s", G.pool ? err : "database pool");
        event_base_loopbreak(G.base);
        return;
    }
    if (gw_bulk_start(err, sizeof err) != 0 || gw_chain_start(err, sizeof err) != 0 ||
        gw_outbox_start(err, sizeof err) != 0) {
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
            "with %zu organisations",
            kh_conf_str(G.conf, "business_listen", ""), kh_conf_str(G.conf, "peer_listen", ""),
            admin ? admin : "(none)", G.ntenants, G.dir->norgs);
}

static void fetch_directory(evutil_socket_t fd, short what, void *arg);

static void directory_arrived(int status, const uint8_t *body, size_t len, void *arg)
{
    char err[256] = "router unreachable";
    if (status == 200) {
        G.dir = kh_dir_load(body, len, G.national, err, sizeof err);
        if (G.dir != NULL) {
            for (size_t i = 0; i < G.ntenants; i++) {
                const kh_org *o = kh_dir_org(G.dir, G.tenants[i].id.code);
                if (o == NULL || !khc_cert_equal(o->sign_cert, G.tenants[i].id.sign_cert) ||
                    !khc_cert_equal(o->enc_cert, G.tenants[i].id.enc_cert)) {
                    kh_error("main",
                             "tenant %s is missing from the directory or its certificates "
                             "differ from ours",
                             G.tenants[i].id.code);
                    event_base_loopbreak(G.base);
                    return;
                }
            }
            kh_info("main", "directory verified (legal-basis version %s)",
                    G.dir->pb->legal_basis_version);
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
    if (kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_GET, G.router, "/v1/directory", NULL, 0,
                        5000, "ROUTER", "router", directory_arrived, NULL) != 0)
        directory_arrived(0, NULL, 0, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    kh_info("main", "signal %d: stopping", (int)sig);
    G.stopping = true;
    event_base_loopexit(G.base, NULL);
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
    kh_pool_free(G.pool); /* first: its last completions may still use uploads */
    gw_query_stop();
    gw_outbox_stop();
    gw_bulk_stop();
    gw_chain_stop();
    for (size_t i = 0; i < G.ntenants; i++) {
        kh_identity_clear(&G.tenants[i].id);
        khc_cert_free(G.tenants[i].business_ca);
    }
    free(G.tenants);
    kh_dir_free(G.dir);
    kh_tls_ctx_free(G.biz_ctx);
    kh_tls_ctx_free(G.peer_ctx);
    kh_tls_ctx_free(G.client_ctx);
    gw_admin_stop();
    khc_store_free(G.national);
    for (int i = 0; i < 2; i++)
        if (G.sig_ev[i])
            event_free(G.sig_ev[i]);
    if (G.retry_ev)
        event_free(G.retry_ev);
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
            config = optarg;
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
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    char err[512] = "";
    int rc = 1;
    if (setup(config, err, sizeof err) != 0) {
        kh_error("main", "configuration %s: %s", config, err);
        goto out;
    }
    if (check) {
        printf("configuration ok: %zu tenants\n", G.ntenants);
        rc = 0;
        goto out;
    }
    G.base = event_base_new();
    G.retry_ev = evtimer_new(G.base, fetch_directory, NULL);
    G.sig_ev[0] = evsignal_new(G.base, SIGTERM, on_signal, NULL);
    G.sig_ev[1] = evsignal_new(G.base, SIGINT, on_signal, NULL);
    event_add(G.sig_ev[0], NULL);
    event_add(G.sig_ev[1], NULL);
    fetch_directory(-1, 0, NULL);
    event_base_dispatch(G.base);
    rc = G.peer_http != NULL ? 0 : 1;
    kh_info("main", "stopped");
out:
    teardown();
    return rc;
}
