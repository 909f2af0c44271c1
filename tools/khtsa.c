/* khtsa: a time-stamping authority (RFC 3161) for the demo and the tests,
 * built on OpenSSL's TS API (gateway/core/khtsp.c). It answers
 *     POST /tsr   Content-Type: application/timestamp-query
 * with a TimeStampResp (application/timestamp-reply), over plain HTTP as
 * TSAs commonly do: a token is signed on its own. Requests are answered one
 * at a time on the event loop; serial numbers are unique across restarts
 * (the start time in seconds, then a counter, in the low 20 bits).
 * Stops on SIGTERM/SIGINT. A gateway names it with tsa_url (gateway/README.md). */
#include "khhttp.h"
#include "khlog.h"
#include "khtsp.h"

#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TSA_CTYPE_REQ "application/timestamp-query"
#define TSA_CTYPE_REPLY "application/timestamp-reply"
/* a private arc for development policies (2.999: "example", ITU-T X.660) */
#define TSA_DEV_POLICY "2.999.3161.1"

static khtsp_tsa *tsa;
static uint64_t serial;
static unsigned long granted_n, rejected_n;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: khtsa --listen HOST:PORT --cert TSA.crt --key TSA.key [--policy OID]\n"
            "  --listen H:P   where to answer POST /tsr (plain HTTP)\n"
            "  --cert, --key  the TSA's certificate (extended key usage timeStamping,\n"
            "                 tools/khpki tsa) and its private key (mode 0600)\n"
            "  --policy OID   the policy of the tokens (default %s, a development arc)\n"
            "A request must be Content-Type %s; the reply is %s\n"
            "(granted, or a rejection with its failure info). Anything else: HTTP 400/405.\n",
            TSA_DEV_POLICY, TSA_CTYPE_REQ, TSA_CTYPE_REPLY);
}

static void on_tsr(struct evhttp_request *req, void *arg)
{
    uint8_t *body = NULL, *der = NULL;
    size_t len = 0, dlen = 0;
    char why[160];
    int granted = 0;
    (void)arg;
    if (kh_http_body(req, KHTSP_MAX_REPLY, TSA_CTYPE_REQ, &body, &len, why, sizeof why) != KH_OK) {
        kh_http_reply_json(req, 400, why, strlen(why), "text/plain; charset=utf-8");
        return;
    }
    if (khtsp_tsa_reply(tsa, body, len, ++serial, &der, &dlen, &granted) != 0) {
        free(body);
        kh_http_reply_json(req, 500, "cannot make a reply", 19, "text/plain; charset=utf-8");
        return;
    }
    free(body);
    if (granted)
        granted_n++;
    else
        rejected_n++;
    kh_debug("tsa", "serial %llu: %s", (unsigned long long)serial,
             granted ? "granted" : "rejected");
    kh_http_reply_json(req, 200, (const char *)der, dlen, TSA_CTYPE_REPLY);
    free(der);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'}, {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},    {"policy", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *listen = NULL, *cert = NULL, *key = NULL, *policy = TSA_DEV_POLICY;
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'p':
            policy = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (listen == NULL || cert == NULL || key == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    kh_log_set_component("tsa");
    signal(SIGPIPE, SIG_IGN);
    char err[256] = "";
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct event *sig[2] = {NULL, NULL};
    if ((tsa = khtsp_tsa_new(cert, key, policy, err, sizeof err)) == NULL) {
        kh_error("main", "%s", err);
        goto out;
    }
    serial = (uint64_t)time(NULL) << 20;
    base = event_base_new();
    http = base ? kh_http_listen_plain(base, listen, KHTSP_MAX_REPLY, err, sizeof err) : NULL;
    if (http == NULL) {
        kh_error("main", "cannot start: %s", base ? err : "no event base");
        goto out;
    }
    kh_http_route(http, "/tsr", on_tsr, NULL);
    sig[0] = evsignal_new(base, SIGTERM, on_signal, base);
    sig[1] = evsignal_new(base, SIGINT, on_signal, base);
    if (sig[0] == NULL || sig[1] == NULL || event_add(sig[0], NULL) != 0 ||
        event_add(sig[1], NULL) != 0) {
        kh_error("main", "cannot catch signals");
        goto out;
    }
    kh_info("main", "ready on %s: POST /tsr, policy %s", listen, policy);
    event_base_dispatch(base);
    kh_info("main", "%lu request(s) granted, %lu rejected", granted_n, rejected_n);
    kh_info("main", "stopped");
    rc = 0;
out:
    for (int i = 0; i < 2; i++)
        if (sig[i])
            event_free(sig[i]);
    if (http)
        evhttp_free(http);
    if (base)
        event_base_free(base);
    khtsp_tsa_free(tsa);
    return rc;
}
