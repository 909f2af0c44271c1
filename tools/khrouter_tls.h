/* khrouter_tls.h: the router's TLS contexts: its listener's (the gateways
 * and the portals connect) and its client's (to the gateways' peer
 * listeners), both with pki/router/tls.{crt,key} and trusting the national
 * CA (pki/national-ca.crt) with its CRL (pki/national-ca.crl): a revoked
 * gateway certificate is refused in the handshake. Read at the start; read
 * again every crl_refresh_s and on SIGHUP, on a worker, when the files
 * changed, and swapped in on the event loop (the old contexts kept until
 * exit; a connection open is checked again at its next request: khhttp). */
#ifndef KH_KHROUTER_TLS_H
#define KH_KHROUTER_TLS_H

#include "khpool.h"
#include "khtls.h"

#include <event2/http.h>

/* At the start: both contexts (freed by khr_tls_free). 0, or -1 with err. */
KH_MUST_CHECK int khr_tls_load(const char *pki, SSL_CTX **server, SSL_CTX **client, char *err,
                               size_t errlen);
/* Once the listener is up: the refresh every interval_s (at most 86400);
 * took(client) is called on the event loop with each new client context. */
void khr_tls_start(struct event_base *base, kh_pool *pool, struct evhttp *http, int interval_s,
                   void (*took)(SSL_CTX *client));
/* SIGHUP: the interval (again), and the files read now. */
void khr_tls_reload(int interval_s);
/* At exit, after the listener and the client are gone: every context made. */
void khr_tls_free(void);

#endif
