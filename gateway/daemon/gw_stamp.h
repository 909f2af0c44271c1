/* gw_stamp.h: RFC 3161 time-stamps on the signed chain heads (gw_stamp.c),
 * from the time-stamping authority named by tsa_url. */
#ifndef KH_GW_STAMP_H
#define KH_GW_STAMP_H

#include "gw_state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Loads tsa_ca (nothing without tsa_url). At start: 0, or -1 with err. */
KH_MUST_CHECK int gw_stamp_start(char *err, size_t errlen);
void gw_stamp_stop(void);

/* On the signing worker, at the start of a pass: whether this pass collects
 * (not while the last stamping is still at work). */
void gw_stamp_begin(void);
/* On a worker, in the signing pass (gw_chain.c), per tenant: the signed
 * heads still without a token are noted for gw_stamp_send, and counted. */
void gw_stamp_collect(PGconn *c, const gw_tenant *t);
/* On the event loop, after the signing pass: asks the TSA for a token for
 * each head noted, then checks and stores the tokens on a worker, while the
 * signing goes on (a pass that finds this one at work stamps nothing). */
void gw_stamp_send(void);

/* What the time-stamping is doing (any thread). */
typedef struct {
    bool configured;             /* tsa_url is set */
    bool up;                     /* the last exchange with the TSA went well (true before any) */
    int64_t down_since, last_ok; /* unix seconds; 0: never */
    uint64_t stamped, failures;  /* tokens stored / exchanges failed, since start */
    long long waiting;           /* signed heads without a token, at the last pass */
    char last_error[200];        /* the last failure's reason */
} gw_stamp_status;
void gw_stamp_status_get(gw_stamp_status *out);

#endif
