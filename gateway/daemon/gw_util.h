/* gw_util.h: small helpers shared by the business and peer handlers. */
#ifndef KH_GW_UTIL_H
#define KH_GW_UTIL_H

#include "gw.h"
#include "khid.h"

#include <libpq-fe.h>
#include <stdbool.h>

/* Builds a PostgreSQL text[] literal from validated codes. */
void gw_codes_literal(char *const *items, size_t n, char *out, size_t outlen);
/* Writes one provision record in the current tenant transaction. data/ndata:
 * the items an answer carried (their versions are recorded, so "what did we
 * provide on date D" has an exact answer); NULL/0 otherwise. */
kh_err gw_record(PGconn *c, const char *msg_id, const char *direction, const char *counterpart,
                 const char *procedure, char *const *items, size_t nitems, const char *local_id,
                 const char *staff_id, const char *outcome, kh_err code, Kh__ItemData *const *data,
                 size_t ndata);

/* Reads and unpacks the protobuf body of a request of type d, or replies with
 * the refusal (size, method, type) and returns NULL. The raw body is wiped. */
void *gw_read_pb(struct evhttp_request *req, const ProtobufCMessageDescriptor *d);

/* The tenant and system named by a verified business client certificate: O=
 * a hosted tenant whose business CA issued it, CN= the system. Otherwise
 * replies KH-2005 and returns NULL. sys: at least 40 bytes. */
gw_tenant *gw_identify(struct evhttp_request *req, char *sys, size_t syslen);
/* In the tenant transaction: the system exists and may do op on scope (a
 * procedure, an item code or "*"); msg explains a refusal. */
kh_err gw_permitted(PGconn *c, const char *sys, const char *op, const char *scope, char *msg,
                    size_t msglen);
/* The code of a refusal relayed by the router (KH-5004 if it names none). */
kh_err gw_relayed_refusal(const uint8_t *buf, size_t len, char *msg, size_t msglen);
/* Verifies and opens an envelope from the router for tenant t: header signed
 * by the router, of type want, from expect_sender (NULL: any), answering
 * in_reply_to (NULL: any, but one must be named), fresh; the payload signed
 * by expect_signer (NULL: the directory's certificate of the header's
 * sender). Returns the body (free with khc_free_secret) and *hp, or NULL
 * with *err and msg set. */
uint8_t *gw_open_from_router(gw_tenant *t, const uint8_t *buf, size_t len, Kh__MsgType want,
                             const uint8_t *in_reply_to, X509 *expect_signer,
                             const char *expect_sender, Kh__Header **hp, size_t *blen, kh_err *err,
                             char *msg, size_t msglen);
/* Writes one access record (an authorisation decision) in the current
 * tenant transaction. direction: business, peer or admin. */
kh_err gw_access(PGconn *c, const char *msg_id, const char *direction, const char *actor,
                 const char *operation, const char *staff_id, const char *procedure,
                 char *const *items, size_t nitems, kh_err code);

/* Replay protection for a message addressed to the tenant, in the tenant
 * transaction: registers (sender, message id) with the digest of its
 * payload. KH_OK and *reply NULL: new. KH_OK and *reply set (malloc'd, the
 * sealed reply stored with gw_seen_reply): the same payload again, a
 * retransmission, to be answered with that reply and nothing else.
 * KH_E_REPLAY: seen with another payload, or not answered yet. */
kh_err gw_seen(PGconn *c, const char *sender, const char *msg_hex, int64_t expires_at,
               const uint8_t digest[32], uint8_t **reply, size_t *replylen);
/* Keeps the sealed reply sent for a message registered by gw_seen. */
kh_err gw_seen_reply(PGconn *c, const char *sender, const char *msg_hex, const uint8_t *reply,
                     size_t len);

/* A refusal of a message to tenant t as an access record (direction peer),
 * best effort: in a transaction of its own on worker connection c (no
 * transaction open), or, from the event loop, queued for a worker (a full
 * queue only logs). procedure and items may be NULL/0. */
void gw_access_refused(PGconn *c, gw_tenant *t, const char *msg_hex, const char *actor,
                       const char *operation, const char *procedure, char *const *items,
                       size_t nitems, kh_err e);
void gw_access_refused_later(gw_tenant *t, const char *msg_hex, const char *actor,
                             const char *operation, const char *procedure, char *const *items,
                             size_t nitems, kh_err e);

/* Records disclosure (gw_disclose.c): a disclosure request from the router
 * (header signature and recipient already verified) for tenant t; takes env
 * and h. */
void gw_disclose_on_request(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
                            Kh__Header *h);

/* Queries, asking side (gw_query.c). */
void gw_query_register(struct evhttp *http);
/* A deferred answer from the router (header signature and recipient already
 * verified) to a query of tenant t; takes env and h. */
void gw_query_on_deferred(struct evhttp_request *req, gw_tenant *t, Kh__Envelope *env,
                          Kh__Header *h);
void gw_query_stop(void);

#endif
