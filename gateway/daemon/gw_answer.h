/* gw_answer.h: building an answer at the providing tenant (flow 3), shared by
 * the immediate answer (gw_peer.c) and the deferred one after a responder's
 * decision (gw_decide.c): flags in force, reading the reference copy as of a
 * date without the withheld items, minimisation, sealing to the asker. */
#ifndef KH_GW_ANSWER_H
#define KH_GW_ANSWER_H

#include "kherr.h"

#include "gw_state.h"

#include <libpq-fe.h>
#include <stdbool.h>

typedef struct {
    /* the query being answered (borrowed; items are the codes asked) */
    gw_tenant *t;
    const char *asker;
    const char *procedure;
    char *const *items;
    size_t nitems;
    const char *subject; /* the person's link code at this tenant */
    const kh_dir *dir;   /* the directory version the work holds (gw_dir.h) */
    const char *row;     /* the legal-basis row that allows the query (in dir) */
    uint8_t in_reply_to[KH_MSG_ID_LEN];
    /* the answer */
    const char *result;  /* FOUND, NOT_FOUND, WITHHELD, PENDING, REFUSED, EXPIRED */
    const char *outcome; /* for the provision record */
    Kh__ItemData **data;
    size_t ndata;
    char *withheld[KH_MAX_ITEMS]; /* point into items */
    size_t nwithheld;
    uint8_t *sealed; /* the sealed envelope */
    size_t sealedlen;
    uint8_t msg_id[KH_MSG_ID_LEN]; /* the answer's own message id */
    int64_t decide_by;             /* PENDING: the hold's deadline (unix seconds) */
} gw_answer;

/* In the tenant transaction: the flags in force today for this query and
 * person (local_id "" if unknown). Writes the ids of the holds as a
 * bigint[] literal into hold_ids ("" if none) and marks the items that
 * non-disclosure withholds. */
KH_MUST_CHECK kh_err gw_answer_flags(PGconn *c, gw_answer *a, const char *local_id, char *hold_ids,
                                     size_t hlen);
/* Marks an item withheld (if asked and not yet marked). */
void gw_answer_withhold(gw_answer *a, const char *item);
/* Reads the items not withheld as of as_of (YYYYMMDD), keeps only the fields
 * the row allows, and sets result and outcome. local_id "" reads nothing. */
KH_MUST_CHECK kh_err gw_answer_read(PGconn *c, gw_answer *a, const char *local_id,
                                    const char *as_of, char *msg, size_t msglen);
/* Seals the answer to the asker. answer_state: "" (immediate), "PENDING" or
 * "DEFERRED"; code: the code of a REFUSED or EXPIRED answer, or NULL. */
KH_MUST_CHECK kh_err gw_answer_seal(gw_answer *a, const char *answer_state, const char *code);
/* Frees what the answer owns (data wiped first) and the sealed bytes. */
void gw_answer_clear(gw_answer *a);

#endif
