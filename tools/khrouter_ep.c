/* khrouter_ep.c: see khrouter_ep.h.
 *
 * An endpoint starts up (a gateway listed in the directory is expected to
 * serve; a dead one costs one refused connect and a retry elsewhere), goes
 * down when a send or a probe fails, and up again when a probe gets 200 from
 * GET /v1/ready: the node's database takes writes and its directory is
 * loaded. Every change is logged once, with the endpoint and the reason; the
 * log never says more than a hostport and a status. */
#include "khrouter_ep.h"

#include "khhttp.h"
#include "khlog.h"

#include <event2/event.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char gateway[KHR_EP_LEN], hostport[KHR_EP_LEN];
    bool up;
    bool probing; /* a probe is on its way */
} ep;

static struct {
    ep ep[KHR_MAX_EP];
    atomic_int n; /* written on the event loop only; read by workers too */
    struct event_base *base;
    SSL_CTX *ctx;
    struct event *tick;
    int probe_ms;
} E;

int khr_ep_find(const char *gateway, const char *hostport)
{
    int n = atomic_load(&E.n);
    for (int i = 0; i < n; i++)
        if (strcmp(E.ep[i].gateway, gateway) == 0 && strcmp(E.ep[i].hostport, hostport) == 0)
            return i;
    return -1;
}

int khr_ep_add(const char *gateway, const char *hostport)
{
    if (strlen(gateway) >= KHR_EP_LEN || strlen(hostport) >= KHR_EP_LEN)
        return -1;
    int i = khr_ep_find(gateway, hostport), n = atomic_load(&E.n);
    if (i >= 0)
        return i;
    if (n == KHR_MAX_EP)
        return -1;
    ep *e = &E.ep[n];
    snprintf(e->gateway, sizeof e->gateway, "%s", gateway);
    snprintf(e->hostport, sizeof e->hostport, "%s", hostport);
    e->up = true;
    atomic_store(&E.n, n + 1);
    return n;
}

int khr_ep_pick(const int *idx, size_t n, unsigned *rr, uint32_t tried, bool up_only)
{
    if (n == 0 || n > KHR_MAX_ORG_EP)
        return -1;
    for (size_t k = 0; k < n; k++) {
        size_t j = (*rr + k) % n;
        if (!(tried & (1u << j)) && E.ep[idx[j]].up) {
            *rr = (unsigned)(j + 1);
            return (int)j;
        }
    }
    for (size_t j = 0; !up_only && j < n; j++)
        if (!(tried & (1u << j)))
            return (int)j;
    return -1;
}

static void set_up(ep *e, bool up, const char *why)
{
    if (e->up == up)
        return;
    e->up = up;
    if (up)
        kh_info("nodes", "endpoint %s of %s up: %s", e->hostport, e->gateway, why);
    else
        kh_warn("nodes", "endpoint %s of %s down: %s", e->hostport, e->gateway, why);
}

void khr_ep_failed(int i, const char *why)
{
    if (i >= 0 && i < E.n)
        set_up(&E.ep[i], false, why);
}

const char *khr_ep_hostport(int i)
{
    return i >= 0 && i < E.n ? E.ep[i].hostport : "";
}

int khr_ep_count(void)
{
    return E.n;
}

const char *khr_ep_gateway(int i)
{
    return i >= 0 && i < E.n ? E.ep[i].gateway : "";
}

bool khr_ep_up(int i)
{
    return i >= 0 && i < E.n && E.ep[i].up;
}

/* ---- probes ---- */

static void probed(int status, const uint8_t *body, size_t len, void *arg)
{
    (void)body;
    (void)len;
    ep *e = arg;
    e->probing = false;
    char why[48];
    if (status == 200)
        set_up(e, true, "ready");
    else if (status == 0)
        set_up(e, false, "no answer to the readiness probe");
    else {
        snprintf(why, sizeof why, "readiness probe answered %d", status);
        set_up(e, false, why);
    }
}

static void probe_all(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (int i = 0; i < E.n; i++) {
        ep *e = &E.ep[i];
        if (e->probing)
            continue;
        e->probing = true;
        if (kh_http_request(E.base, E.ctx, EVHTTP_REQ_GET, e->hostport, "/v1/ready", NULL, 0,
                            E.probe_ms, "KH-GW", e->gateway, probed, e) != 0)
            probed(0, NULL, 0, e);
    }
}

void khr_ep_set_ctx(SSL_CTX *ctx)
{
    E.ctx = ctx;
}

int khr_ep_start(struct event_base *base, SSL_CTX *ctx, int probe_ms)
{
    E.base = base;
    E.ctx = ctx;
    E.probe_ms = probe_ms;
    E.tick = event_new(base, -1, EV_PERSIST, probe_all, NULL);
    struct timeval tv = {probe_ms / 1000, (probe_ms % 1000) * 1000};
    if (E.tick == NULL || event_add(E.tick, &tv) != 0)
        return -1;
    probe_all(-1, 0, NULL);
    return 0;
}

void khr_ep_stop(void)
{
    if (E.tick != NULL)
        event_free(E.tick);
    E.tick = NULL;
}
