/* gw_qstate.h: a query's state and its answer on the asking side: the
 * states of the tenant's query table as a business system sees them, the
 * checks every answer passes (immediate or deferred), and how an answer is
 * stored and recorded. */
#ifndef KH_GW_QSTATE_H
#define KH_GW_QSTATE_H

#include "gw_state.h"

#include <event2/http.h>
#include <stdbool.h>

/* The states of a query, as the tenant's query table keeps them, NULL-ended. */
extern const char *const gw_qstate_names[];
/* The state as the API writes it (sent -> SENT, timed_out -> TIMED_OUT...). */
const char *gw_qstate_upper(const char *state);
/* Replies with a QueryResponse: the handle, the state, and the answer if any. */
void gw_qstate_reply(struct evhttp_request *req, const char *handle, const char *state, kh_err code,
                     const char *msg, const Kh__AnswerBody *ans);
/* The result agrees with what the answer carries (FOUND has data, WITHHELD
 * names items, no unknown fields anywhere). */
bool gw_answer_consistent(const Kh__AnswerBody *a);
/* Minimisation checked at the asking end: every field carried is one that
 * legal-basis row (of directory version dir) allows. */
bool gw_answer_within_basis(const kh_dir *dir, const char *row, const Kh__AnswerBody *a);
/* The longest a held query may wait for a responder (a tenant's
 * hold_policy: 90 days). */
#define GW_HOLD_DEADLINE_MAX_S 7776000
/* A PENDING answer's deadline is believable: after now (less the skew) and
 * at most the longest deadline (and the skew) away. */
bool gw_decide_by_plausible(int64_t decide_by);
/* The provision record's outcome of a query in state (answered: provided,
 * withheld or not_found, as the provider records it). */
const char *gw_answer_outcome(const char *state, const Kh__AnswerBody *a);
/* A message packed as a bytea input literal (\x...), malloc'd (NULL on no
 * memory); the packed bytes are wiped. */
char *gw_pb_bytea(const ProtobufCMessage *m);

#endif
