/* khhttp_probe: one outgoing request through kh_http_request, exactly as the
 * gateway and the router send theirs, against whatever server the test
 * started (test_http_limits.sh puts a misbehaving one there). Prints
 * "status=N len=N ms=N": the HTTP status (0: the request failed, as it must
 * for a reply over the limits or past its deadline), the body's length and
 * how long the answer took.
 * usage: khhttp_probe CERT KEY CA HOST:PORT TIMEOUT_MS */
#include "khhttp.h"
#include "khtls.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

static struct timeval t0;

static void done(int status, const uint8_t *body, size_t len, void *arg)
{
    struct timeval t1;
    (void)body;
    gettimeofday(&t1, NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
    printf("status=%d len=%zu ms=%ld\n", status, len, ms);
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    char err[256];
    if (argc != 6) {
        fprintf(stderr, "usage: khhttp_probe CERT KEY CA HOST:PORT TIMEOUT_MS\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    SSL_CTX *ctx = kh_tls_client_ctx(argv[1], argv[2], argv[3], err, sizeof err);
    if (base == NULL || ctx == NULL) {
        fprintf(stderr, "khhttp_probe: %s\n", ctx == NULL ? err : "no event base");
        return 1;
    }
    gettimeofday(&t0, NULL);
    if (kh_http_request(base, ctx, EVHTTP_REQ_GET, argv[4], "/v1/directory", NULL, 0, atoi(argv[5]),
                        NULL, NULL, done, base) != 0) {
        fprintf(stderr, "khhttp_probe: the request could not be sent\n");
        return 1;
    }
    event_base_dispatch(base);
    kh_http_client_close(base);
    event_base_loop(base, EVLOOP_NONBLOCK); /* let the connection be freed */
    kh_tls_ctx_free(ctx);
    event_base_free(base);
    return 0;
}
