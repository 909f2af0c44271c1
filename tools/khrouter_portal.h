/* khrouter_portal.h: the router simulator's portal API (records disclosure,
 * flow 5). The national portal, acting on a person's behalf, asks the router
 * for the person's provision records and own information at every
 * organisation holding a link code for them (or at one); the router asks each
 * organisation's gateway with a DISCLOSURE_REQUEST it originates, opens the
 * answers sealed to it, records every message and hands the results back.
 * khrouter.c owns the configuration, the keys and the link-code secret; this
 * module sees the secret only through the person_key function. */
#ifndef KH_ROUTER_PORTAL_H
#define KH_ROUTER_PORTAL_H

#include "khcrypto.h"
#include "khenv.h"
#include "khpool.h"

#include <event2/event.h>
#include <event2/http.h>
#include "khtls.h"
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct {
    struct event_base *base;
    SSL_CTX *client_ctx; /* the router's TLS identity towards the gateways */
    X509_STORE *national;
    kh_pool *pool;
    const kh_dir *(*dir)(void); /* the directory in use (SIGHUP may replace it) */
    const kh_identity *id;      /* the router's signing and encryption keys */
    /* the router's own values, which SIGHUP may change (read at each use) */
    const atomic_int *skew, *ttl, *timeout_ms;
    int max_body;
    const char *const *portals; /* CNs of the portal certificates served (O=PORTAL) */
    size_t nportals;
    /* The gateway (its TLS CN) and peer endpoint of an organisation; false
     * if the organisation is not configured. */
    bool (*route)(const char *org, const char **gateway, const char **endpoint);
    /* The router's person key (64 hex) of a resident-record code. */
    void (*person_key)(const char *resident_code, char out[65]);
    const bool *stopping;
} khr_portal;

/* Serves POST /v1/portal/disclose on http with p (kept; must outlive http). */
void khr_portal_register(struct evhttp *http, const khr_portal *p);
/* [a-z0-9-]{1,32}: a portal's name (its certificate's CN). */
bool khr_portal_name_ok(const char *s);

#endif
