/* gw_decide.h: responders' decisions on held queries and the outbox that
 * delivers the deferred answers (gw_decide.c). */
#ifndef KH_GW_DECIDE_H
#define KH_GW_DECIDE_H

#include "kherr.h"

#include "gw_state.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct {
    /* the decision (validated by the caller) */
    gw_tenant *t;
    char operator_name[40];
    char msg_id[2 * KH_MSG_ID_LEN + 1]; /* the held query's message id */
    bool approve;
    char items[KH_MAX_ITEMS][KH_CODE_MAX + 1]; /* approve: the items approved; none = all */
    size_t nitems;
    char reason[200 * 4 + 1]; /* 200 characters of UTF-8 */
    /* the outcome */
    kh_err err;
    char msg[200];
    const char *result;                    /* FOUND, NOT_FOUND, WITHHELD or REFUSED */
    char answer_id[2 * KH_MSG_ID_LEN + 1]; /* the deferred answer's message id */
} gw_decision;

/* Takes the decision in the calling worker's connection (its own tenant
 * transaction); d->err says how it went. The outbox picks the deferred
 * answer up within a second. */
void gw_decide_run(PGconn *c, gw_decision *d);

KH_MUST_CHECK int gw_outbox_start(char *err, size_t errlen);
void gw_outbox_stop(void);

#endif
