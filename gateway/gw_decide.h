/* gw_decide.h: responders' decisions on held queries and the outbox that
 * delivers the deferred answers (gw_decide.c). */
#ifndef KH_GW_DECIDE_H
#define KH_GW_DECIDE_H

#include "gw.h"

#include <stdbool.h>

#define KH_STR_(x) #x
#define KH_STR(x) KH_STR_(x)

typedef struct {
    /* the decision (validated by the caller) */
    gw_tenant *t;
    char operator_name[40];
    char msg_id[2 * KH_MSG_ID_LEN + 1]; /* the held query's message id */
    bool approve;
    char items[KH_MAX_ITEMS][KH_CODE_MAX + 1]; /* approve: the items approved; none = all */
    size_t nitems;
    char reason[201];
    /* the outcome */
    kh_err err;
    char msg[200];
    const char *result;                    /* FOUND, NOT_FOUND, WITHHELD or REFUSED */
    char answer_id[2 * KH_MSG_ID_LEN + 1]; /* the deferred answer's message id */
} gw_decision;

typedef void (*gw_decide_done)(gw_decision *d, void *arg);
/* Takes the decision on a worker; done runs on the loop. 0, or -1 if the
 * queue is full (done is not called). d must live until done. */
int gw_decide(gw_decision *d, gw_decide_done done, void *arg);

int gw_outbox_start(char *err, size_t errlen);
void gw_outbox_stop(void);
/* Looks for deferred answers to deliver now (after a decision). */
void gw_outbox_kick(void);

#endif
