/* khload: an open-loop load generator for the business, peer and admin APIs, for
 * tools/khbench-overload. Queries are sent at a fixed rate, whatever the
 * gateway answers, from one business system over kept-alive mutual-TLS
 * connections (khhttp's client, as the gateway's own outgoing requests),
 * or, with --envelopes, envelopes built beforehand (khforge --batch) are
 * posted to a gateway's peer API as the router forwards them, each once (a
 * message id is used once: the run ends early when they are all sent),
 * with at most --outstanding of them waiting at once (a send that would go
 * over is counted as dropped: the generator, not the gateway, was the limit).
 * At the end it prints one line of figures:
 *   offered sent dropped ok refused other failed
 *                                           counts (refused: 503 KH-5003;
 *                                           failed: no HTTP answer, e.g. a
 *                                           TLS handshake refused)
 *   ok_per_s refused_per_s                  over the run
 *   ok_p50_ms ok_p99_ms refused_p99_ms      latencies of answered and refused
 *   refused_late_p99_ms                     of refusals sent in the second half
 *   refused_p50_ms
 *   conns_opened conns_reused               outgoing connections opened (each a
 *                                           TLS handshake), requests sent on a
 *                                           kept-alive one
 * usage: khload --gateway H:P --gateway-name NAME --cert C --key K --ca CA
 *               --rate R --seconds S [--outstanding N] [--source ADDR]
 *               --query STAFF PROCEDURE PROVIDER ITEM[,ITEM] --local-ids FILE
 *        khload ... --envelopes PREFIX --count N
 *        khload ... --admin PATH --token-file F   (an operator's GETs) */
#include "kakehashi.pb-c.h"
#include "khcrypto.h"
#include "khhttp.h"
#include "khpb.h"
#include "khtls.h"

#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    struct event_base *base;
    SSL_CTX *ctx;
    const char *gateway, *name;
    uint8_t **bodies; /* one QueryRequest per local ID, or one envelope each */
    size_t *lens, nbodies;
    const char *path; /* /v1/query, or /v1/envelope (envelopes: each sent once) */
    bool once;
    bool admin;    /* GET path on the admin API, as an operator's session */
    char auth[80]; /* "Bearer " and the session's token */
    size_t next;   /* the next envelope to send (a dropped send uses none) */
    double ended;  /* seconds from t0 when the last was sent early; 0: ran its time */
    double rate, seconds;
    long outstanding_max, outstanding;
    long offered, sent, dropped, ok, refused, other;
    long failed; /* no HTTP answer: the connection or its TLS handshake failed */
    double *ok_ms, *ref_ms, *late_ms; /* late: refusals of requests sent in the second half */
    size_t nok, nref, nlate, cap;
    struct timespec t0;
    struct event *tick;
    bool stopping;
} load;

typedef struct {
    load *L;
    struct timespec t;
} shot;

static double since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void keep(double *v, size_t *n, size_t cap, double x)
{
    if (*n < cap)
        v[(*n)++] = x;
}

static void done(int status, const uint8_t *body, size_t len, void *arg)
{
    shot *s = arg;
    load *L = s->L;
    double ms = since(&s->t) * 1000.0;
    double s_sent =
        (double)(s->t.tv_sec - L->t0.tv_sec) + (double)(s->t.tv_nsec - L->t0.tv_nsec) / 1e9;
    char code[32] = "", msg[8];
    free(s);
    L->outstanding--;
    if (status == 0) {
        L->failed++;
    } else if (status == 200 && (L->once || L->admin)) { /* an answer envelope, an admin reply */
        L->ok++;
        keep(L->ok_ms, &L->nok, L->cap, ms);
    } else if (status == 200) {
        Kh__QueryResponse *r = (Kh__QueryResponse *)kh_pb_unpack(&kh__query_response__descriptor,
                                                                 body, len, NULL, NULL, 0);
        bool answered = r && r->status && strcmp(r->status->code, "OK") == 0;
        if (r)
            kh__query_response__free_unpacked(r, NULL);
        if (answered) {
            L->ok++;
            keep(L->ok_ms, &L->nok, L->cap, ms);
        } else {
            L->other++;
        }
    } else if (status == 503) {
        /* a refusal for overload: kh.Status, or JSON on the admin API */
        static const char json[] = "{\"code\":\"KH-5003\"";
        bool overload = false;
        if (L->admin) {
            overload = len >= sizeof json - 1 && memcmp(body, json, sizeof json - 1) == 0;
        } else {
            kh_http_parse_status(body, len, code, sizeof code, msg, sizeof msg);
            overload = strcmp(code, "KH-5003") == 0;
        }
        if (overload) {
            L->refused++;
            keep(L->ref_ms, &L->nref, L->cap, ms);
            if (s_sent >= L->seconds / 2)
                keep(L->late_ms, &L->nlate, L->cap, ms);
        } else {
            L->other++;
        }
    } else {
        L->other++;
    }
    if (L->stopping && L->outstanding == 0)
        event_base_loopbreak(L->base);
}

static void send_one(load *L)
{
    size_t i = L->once ? L->next : L->admin ? 0 : (size_t)L->offered % L->nbodies;
    if (L->once && i >= L->nbodies) { /* all sent: the run ends */
        if (!L->stopping) {
            L->stopping = true;
            L->ended = since(&L->t0);
            event_del(L->tick);
            if (L->outstanding == 0)
                event_base_loopbreak(L->base);
        }
        return;
    }
    L->offered++;
    if (L->outstanding >= L->outstanding_max) {
        L->dropped++;
        return;
    }
    shot *s = malloc(sizeof *s);
    if (s == NULL) {
        L->dropped++;
        return;
    }
    s->L = L;
    clock_gettime(CLOCK_MONOTONIC, &s->t);
    const char *const adm[] = {"Authorization", L->auth, "Content-Type", "application/json", NULL};
    int rc = L->admin ? kh_http_request_hdrs(L->base, L->ctx, EVHTTP_REQ_GET, L->gateway, L->path,
                                             NULL, 0, 60000, "KH-GW", L->name, adm, done, s)
                      : kh_http_request(L->base, L->ctx, EVHTTP_REQ_POST, L->gateway, L->path,
                                        L->bodies[i], L->lens[i], 60000, "KH-GW", L->name, done, s);
    if (rc != 0) {
        free(s);
        L->other++;
        return;
    }
    L->sent++;
    L->outstanding++;
    L->next++;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    load *L = arg;
    (void)fd;
    (void)what;
    double t = since(&L->t0);
    if (t >= L->seconds) {
        L->stopping = true;
        event_del(L->tick);
        if (L->outstanding == 0)
            event_base_loopbreak(L->base);
        return;
    }
    long due = (long)(t * L->rate);
    while (L->offered < due && !L->stopping)
        send_one(L);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return v[k];
}

static int read_ids(const char *path, const char *const q[4], load *L)
{
    FILE *f = fopen(path, "r");
    char line[64];
    char *items[16];
    size_t nitems = 0;
    char *list = strdup(q[3]);
    if (f == NULL || list == NULL) {
        free(list);
        if (f)
            fclose(f);
        return -1;
    }
    for (char *sv = NULL, *t = strtok_r(list, ",", &sv); t && nitems < 16;
         t = strtok_r(NULL, ",", &sv))
        items[nitems++] = t;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        uint8_t **b = realloc(L->bodies, (L->nbodies + 1) * sizeof *b);
        size_t *l = b ? realloc(L->lens, (L->nbodies + 1) * sizeof *l) : NULL;
        if (b)
            L->bodies = b;
        if (l == NULL)
            break;
        L->lens = l;
        Kh__QueryRequest r = KH__QUERY_REQUEST__INIT;
        r.staff_id = (char *)q[0];
        r.procedure = (char *)q[1];
        r.provider = (char *)q[2];
        r.items = items;
        r.n_items = nitems;
        r.local_id = line;
        if (kh_pb_pack(&r.base, &L->bodies[L->nbodies], &L->lens[L->nbodies]) != 0)
            break;
        L->nbodies++;
    }
    fclose(f);
    free(list);
    return L->nbodies > 0 ? 0 : -1;
}

/* PREFIX.000001 ... PREFIX.<count>, as khforge --batch wrote them. */
static int read_envelopes(const char *prefix, long count, load *L)
{
    char path[1024];
    L->bodies = calloc((size_t)count, sizeof *L->bodies);
    L->lens = calloc((size_t)count, sizeof *L->lens);
    if (L->bodies == NULL || L->lens == NULL)
        return -1;
    for (long n = 1; n <= count; n++) {
        snprintf(path, sizeof path, "%s.%06ld", prefix, n);
        if (khc_read_file_max(path, KH_HTTP_MAX_RESPONSE, &L->bodies[L->nbodies],
                              &L->lens[L->nbodies]) != 0 ||
            L->lens[L->nbodies] == 0) {
            free(L->bodies[L->nbodies]);
            return -1;
        }
        L->nbodies++;
    }
    return 0;
}

/* "Bearer TOKEN" from the first line of path (khctl admin login --token-file). */
static int read_token(const char *path, char *out, size_t outlen)
{
    char line[128];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[got ? strcspn(line, "\r\n") : 0] = '\0';
    if (strlen(line) != 64 || line[strspn(line, "0123456789abcdef")] != '\0')
        return -1;
    snprintf(out, outlen, "Bearer %s", line);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: khload --gateway H:P --gateway-name NAME --cert C --key K --ca CA\n"
            "              --rate R --seconds S [--outstanding N] [--source ADDR]\n"
            "              --query STAFF PROCEDURE PROVIDER ITEM[,ITEM] --local-ids FILE\n"
            "       khload ... --envelopes PREFIX --count N   (instead of --query, --local-ids)\n"
            "       khload ... --admin PATH --token-file F    (GET PATH on an admin API)\n"
            "Connects from ADDR if given (a client address of its own: the gateway's\n"
            "handshake_rate is per address). Sends business-API queries at R per second for S "
            "seconds (open loop), at most N\n"
            "waiting at once (default 300), asking about the local IDs of FILE in turn; or\n"
            "posts the envelopes PREFIX.000001 ... PREFIX.N (khforge --batch) to a peer API\n"
            "(/v1/envelope), each once, ending early when all are sent (then the rates are\n"
            "over the time it took); or GETs PATH of an admin API with the operator's\n"
            "session (F: khctl admin login --token-file; --cert and --key: the\n"
            "operator's). ok: 200 (an answer, whatever its result).\n"
            "Prints: offered sent dropped ok refused other ok_per_s refused_per_s ok_p50_ms\n"
            "ok_p99_ms refused_p99_ms refused_late_p99_ms (refused: 503 KH-5003; late: of\n"
            "those sent in the run's second half, its connections open by then; other: any\n"
            "other outcome; failed: no HTTP answer, the connection or its handshake\n"
            "failed), refused_p50_ms, conns_opened (outgoing connections opened, a TLS\n"
            "handshake each) and conns_reused (requests sent on a kept-alive one).\n");
}

int main(int argc, char **argv)
{
    enum {
        O_GW = 1,
        O_NAME,
        O_CERT,
        O_KEY,
        O_CA,
        O_RATE,
        O_SECS,
        O_OUT,
        O_QUERY,
        O_IDS,
        O_ENV,
        O_N,
        O_ADMIN,
        O_TOKEN,
        O_SOURCE
    };
    static const struct option opts[] = {{"gateway", required_argument, NULL, O_GW},
                                         {"gateway-name", required_argument, NULL, O_NAME},
                                         {"cert", required_argument, NULL, O_CERT},
                                         {"key", required_argument, NULL, O_KEY},
                                         {"ca", required_argument, NULL, O_CA},
                                         {"rate", required_argument, NULL, O_RATE},
                                         {"seconds", required_argument, NULL, O_SECS},
                                         {"outstanding", required_argument, NULL, O_OUT},
                                         {"query", required_argument, NULL, O_QUERY},
                                         {"local-ids", required_argument, NULL, O_IDS},
                                         {"envelopes", required_argument, NULL, O_ENV},
                                         {"count", required_argument, NULL, O_N},
                                         {"admin", required_argument, NULL, O_ADMIN},
                                         {"token-file", required_argument, NULL, O_TOKEN},
                                         {"source", required_argument, NULL, O_SOURCE},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    load L = {.outstanding_max = 300};
    const char *cert = NULL, *key = NULL, *ca = NULL, *ids = NULL, *q[4] = {NULL}, *envs = NULL;
    const char *admin = NULL, *token = NULL;
    long count = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_GW:
            L.gateway = optarg;
            break;
        case O_NAME:
            L.name = optarg;
            break;
        case O_CERT:
            cert = optarg;
            break;
        case O_KEY:
            key = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        case O_RATE:
            L.rate = atof(optarg);
            break;
        case O_SECS:
            L.seconds = atof(optarg);
            break;
        case O_OUT:
            L.outstanding_max = atol(optarg);
            break;
        case O_QUERY:
            /* STAFF PROCEDURE PROVIDER ITEMS: this and the next three words */
            if (optind + 2 >= argc) {
                usage(stderr);
                return 2;
            }
            q[0] = optarg;
            q[1] = argv[optind++];
            q[2] = argv[optind++];
            q[3] = argv[optind++];
            break;
        case O_IDS:
            ids = optarg;
            break;
        case O_ENV:
            envs = optarg;
            break;
        case O_N:
            count = atol(optarg);
            break;
        case O_ADMIN:
            admin = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_SOURCE:
            if (kh_http_client_source(optarg) != 0) {
                fprintf(stderr, "khload: --source: a numeric address, e.g. 127.0.0.2\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !L.gateway || !L.name || !cert || !key || !ca ||
        (admin  ? !token || envs || ids || q[0] || count || admin[0] != '/'
         : envs ? token || ids || q[0] || count < 1 || count > 1000000
                : token || !ids || !q[0] || count) ||
        L.rate <= 0 || L.rate > 1e5 || L.seconds <= 0 || L.seconds > 3600 ||
        L.outstanding_max < 1 || L.outstanding_max > 10000) {
        usage(stderr);
        return 2;
    }
    char err[256];
    L.cap = (size_t)(L.rate * L.seconds) + 16;
    L.ok_ms = malloc(L.cap * sizeof *L.ok_ms);
    L.ref_ms = malloc(L.cap * sizeof *L.ref_ms);
    L.late_ms = malloc(L.cap * sizeof *L.late_ms);
    L.base = event_base_new();
    L.ctx = kh_tls_client_ctx(cert, key, ca, err, sizeof err);
    if (!L.ok_ms || !L.ref_ms || !L.late_ms || !L.base || !L.ctx) {
        fprintf(stderr, "khload: %s\n", L.ctx ? "out of memory" : err);
        return 1;
    }
    L.once = envs != NULL;
    L.admin = admin != NULL;
    L.path = admin ? admin : envs ? "/v1/envelope" : "/v1/query";
    if (admin) {
        if (read_token(token, L.auth, sizeof L.auth) != 0) {
            fprintf(stderr, "khload: %s: no session token (64 hex digits) on its first line\n",
                    token);
            return 1;
        }
    } else if (envs ? read_envelopes(envs, count, &L) != 0 : read_ids(ids, q, &L) != 0) {
        fprintf(stderr, "khload: %s\n",
                envs ? "cannot read the envelopes (PREFIX.000001 ...)" : "no local IDs read");
        return 1;
    }
    struct timeval ms = {0, 1000};
    L.tick = event_new(L.base, -1, EV_PERSIST, on_tick, &L);
    clock_gettime(CLOCK_MONOTONIC, &L.t0);
    if (L.tick == NULL || event_add(L.tick, &ms) != 0) {
        fprintf(stderr, "khload: cannot start the clock\n");
        return 1;
    }
    event_base_dispatch(L.base);
    kh_http_stats st = kh_http_client_stats();
    if (L.ended > 0) /* all the envelopes sent early: rates over the time taken */
        L.seconds = since(&L.t0);
    printf("offered=%ld sent=%ld dropped=%ld ok=%ld refused=%ld other=%ld failed=%ld ok_per_s=%.1f "
           "refused_per_s=%.1f ok_p50_ms=%.1f ok_p99_ms=%.1f refused_p99_ms=%.1f "
           "refused_late_p99_ms=%.1f refused_p50_ms=%.1f conns_opened=%" PRIu64
           " conns_reused=%" PRIu64 "\n",
           L.offered, L.sent, L.dropped, L.ok, L.refused, L.other, L.failed,
           (double)L.ok / L.seconds, (double)L.refused / L.seconds, pct(L.ok_ms, L.nok, 0.50),
           pct(L.ok_ms, L.nok, 0.99), pct(L.ref_ms, L.nref, 0.99), pct(L.late_ms, L.nlate, 0.99),
           pct(L.ref_ms, L.nref, 0.50), st.opened, st.reused);
    kh_http_client_close(L.base);
    event_free(L.tick);
    for (size_t i = 0; i < L.nbodies; i++)
        free(L.bodies[i]);
    free(L.bodies);
    free(L.lens);
    free(L.ok_ms);
    free(L.ref_ms);
    free(L.late_ms);
    kh_tls_ctx_free(L.ctx);
    event_base_free(L.base);
    return 0;
}
