/* khrouter_ep.h: the router's view of the gateways' nodes. An organisation's
 * gateway may run on several nodes, each an endpoint (HOST:PORT of its peer
 * API) listed in the signed directory. The router spreads envelopes over the
 * endpoints that are up (round robin), probes every endpoint's
 * GET /v1/ready (mutual TLS, as an envelope) every probe interval, takes an
 * endpoint out at once when a send to it fails, and puts it back when a
 * probe says it is ready. Only on the event loop's thread. */
#ifndef KH_KHROUTER_EP_H
#define KH_KHROUTER_EP_H

#include "khtls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define KHR_MAX_EP 64    /* distinct endpoints of all gateways */
#define KHR_MAX_ORG_EP 8 /* endpoints of one organisation */
#define KHR_EP_LEN 64    /* HOST:PORT, and a gateway's name */

/* The endpoint (gateway, hostport), added if new: its index, or -1 if the
 * table is full or a string too long. On the event loop's thread (at start,
 * and when SIGHUP adds an organisation: its endpoints join the probes; those
 * of an organisation removed stay in the table and are still probed). The
 * count is published after the entry is written: a worker that reads an
 * index from a published organisation reads a complete entry. */
int khr_ep_add(const char *gateway, const char *hostport);
/* The endpoint (gateway, hostport) if it is in the table, else -1. */
int khr_ep_find(const char *gateway, const char *hostport);

/* The endpoint to send to next among idx[0..n) (one organisation's), not in
 * tried (bit i: idx[i] was tried): the next that is up in round-robin order
 * (*rr advances), else, unless up_only, the first untried one that is down
 * (a try is better than a refusal when every probe failed). The position in
 * idx, or -1 if there is none. */
int khr_ep_pick(const int *idx, size_t n, unsigned *rr, uint32_t tried, bool up_only);

/* A send to endpoint i got no answer (status 0): out until a probe finds it
 * ready. why is logged with it. */
void khr_ep_failed(int i, const char *why);

const char *khr_ep_hostport(int i);
int khr_ep_count(void);
const char *khr_ep_gateway(int i);
bool khr_ep_up(int i);

/* Starts probing every endpoint every probe_ms (the first round at once),
 * each probe bounded by the same time; ctx is the router's client context. */
/* The client context of the next probes (a TLS reload). */
void khr_ep_set_ctx(SSL_CTX *ctx);
int khr_ep_start(struct event_base *base, SSL_CTX *ctx, int probe_ms);
void khr_ep_stop(void);

#endif
