/* khhttp_probe: outgoing requests through kh_http_request, exactly as the
 * gateway and the router send theirs, against whatever server the test
 * started.
 * One request (test_http_limits.sh puts a misbehaving server there): prints
 * "status=N len=N ms=N": the HTTP status (0: the request failed, as it must
 * for a reply over the limits or past its deadline), the body's length and
 * how long the answer took.
 * With PARALLEL and ROUNDS (it_keepalive.sh, against the router): ROUNDS
 * times, PARALLEL requests at once, each round sent when the last one is
 * answered whole; prints "answered=N opened=N reused=N": the requests that
 * got an HTTP status, the connections opened (a TLS handshake each), the
 * requests sent on a kept-alive connection and those sent again on a new one
 * after a kept-alive one failed. A pool that keeps what it
 * opened opens PARALLEL connections and reuses them in every later round.
 * usage: khhttp_probe CERT KEY CA HOST:PORT TIMEOUT_MS [PARALLEL ROUNDS] */
#include "khhttp.h"
#include "khtls.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

static struct timeval t0;
static long waiting, answered;

static void done(int status, const uint8_t *body, size_t len, void *arg)
{
    struct timeval t1;
    (void)body;
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    printf("status=%d len=%zu ms=%ld\n", status, len, ms);
    event_base_loopbreak(arg);
}

static void done_one(int status, const uint8_t *body, size_t len, void *arg)
{
    (void)body;
    (void)len;
    answered += status != 0;
    if (--waiting == 0)
        event_base_loopbreak(arg);
}

/* the positive number in s, at most max; 0 if it is not one */
static long count_arg(const char *s, long max)
{
    char *end;
    long n = strtol(s, &end, 10);
    return *s != '\0' && *end == '\0' && n > 0 && n <= max ? n : 0;
}

int main(int argc, char **argv)
{
    char err[256];
    long parallel = 0, rounds = 0;
    if (argc == 8) {
        parallel = count_arg(argv[6], 1000);
        rounds = count_arg(argv[7], 100);
    }
    if ((argc != 6 && argc != 8) || (argc == 8 && (parallel == 0 || rounds == 0))) {
        fprintf(stderr, "usage: khhttp_probe CERT KEY CA HOST:PORT TIMEOUT_MS [PARALLEL ROUNDS]\n"
                        "  (PARALLEL 1..1000, ROUNDS 1..100)\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    SSL_CTX *ctx = kh_tls_client_ctx(argv[1], argv[2], argv[3], err, sizeof err);
    if (base == NULL || ctx == NULL) {
        fprintf(stderr, "khhttp_probe: %s\n", ctx == NULL ? err : "no event base");
        return 1;
    }
    gettimeofday(&t0, NULL);
    if (parallel == 0) {
        if (kh_http_request(base, ctx, EVHTTP_REQ_GET, argv[4], "/v1/directory", NULL, 0,
                            atoi(argv[5]), NULL, NULL, done, base) != 0) {
            fprintf(stderr, "khhttp_probe: the request could not be sent\n");
            return 1;
        }
        event_base_dispatch(base);
    }
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < parallel; i++) {
            if (kh_http_request(base, ctx, EVHTTP_REQ_GET, argv[4], "/v1/directory", NULL, 0,
                                atoi(argv[5]), NULL, NULL, done_one, base) != 0) {
                fprintf(stderr, "khhttp_probe: a request could not be sent\n");
                return 1;
            }
            waiting++;
        }
        event_base_dispatch(base);
    }
    if (parallel > 0) {
        kh_http_stats st = kh_http_client_stats();
        printf("answered=%ld opened=%" PRIu64 " reused=%" PRIu64 " resent=%" PRIu64 "\n", answered,
               st.opened, st.reused, st.resent);
    }
    kh_http_client_close(base);
    event_base_loop(base, EVLOOP_NONBLOCK); /* let the connections be freed */
    kh_tls_ctx_free(ctx);
    event_base_free(base);
    return 0;
}
