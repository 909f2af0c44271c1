/* khseen.h: replay protection, the one path the router and the gateways
 * share. Every message is registered once per (sender, message id) in a seen
 * table, in the caller's transaction, so that a message and what it caused
 * commit together or not at all. Registrations are kept until an hour past
 * the message's expiry and removed by kh_seen_purge, which only sweepers
 * call, never a message's own path. */
#ifndef KH_SEEN_H
#define KH_SEEN_H

#include "kherr.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    KH_SEEN_TENANT, /* seen_msg of the tenant the transaction switched to */
    KH_SEEN_ROUTER, /* router.seen_msg */
} kh_seen_table;

typedef enum {
    KH_SEEN_NEW,    /* first time: go on */
    KH_SEEN_AGAIN,  /* registered before with the same payload digest: a retransmission */
    KH_SEEN_REPLAY, /* registered before, with another digest or none to compare */
} kh_seen_verdict;

/* Registers (sender, msg_hex) with its expiry and the digest of its payload
 * (NULL: none; then any second arrival is a replay). reply/replylen: if not
 * NULL, on KH_SEEN_AGAIN the reply kept for the first arrival (malloc'd; NULL
 * if none was kept yet). KH_OK with *v set, or KH_E_DB. */
KH_MUST_CHECK kh_err kh_seen_register(PGconn *c, kh_seen_table table, const char *sender,
                                      const char *msg_hex, int64_t expires_at,
                                      const uint8_t digest[32], kh_seen_verdict *v, uint8_t **reply,
                                      size_t *replylen);
/* Keeps the reply sent for a registered message, for its retransmissions.
 * Deferred (kh_db_defer): a failure shows at the commit. */
KH_MUST_CHECK kh_err kh_seen_keep_reply(PGconn *c, kh_seen_table table, const char *sender,
                                        const char *msg_hex, const uint8_t *reply, size_t len);
/* Removes registrations whose message expired more than an hour ago (on
 * their own, outside any message's transaction). *removed (may be NULL): how
 * many. KH_OK or KH_E_DB. */
KH_MUST_CHECK kh_err kh_seen_purge(PGconn *c, kh_seen_table table, long *removed);

#endif
