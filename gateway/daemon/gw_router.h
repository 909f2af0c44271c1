/* gw_router.h: messages that come back from the router: refusals it relays
 * and envelopes it forwards to one of our tenants. */
#ifndef KH_GW_ROUTER_H
#define KH_GW_ROUTER_H

#include "kherr.h"

#include "gw_state.h"

#include <stddef.h>
#include <stdint.h>

/* The code of a refusal relayed by the router (KH-5004 if it names none). */
KH_MUST_CHECK kh_err gw_relayed_refusal(const uint8_t *buf, size_t len, char *msg, size_t msglen);
/* Verifies and opens an envelope from the router for tenant t: header signed
 * by the router, of type want, from expect_sender (NULL: any), answering
 * in_reply_to (NULL: any, but one must be named), fresh; the payload signed
 * by expect_signer (NULL: the directory's certificate of the header's
 * sender). Returns the body (free with khc_free_secret) and *hp, or NULL
 * with *err and msg set. */
uint8_t *gw_open_from_router(gw_tenant *t, const kh_dir *dir, const uint8_t *buf, size_t len,
                             Kh__MsgType want, const uint8_t *in_reply_to, X509 *expect_signer,
                             const char *expect_sender, Kh__Header **hp, size_t *blen, kh_err *err,
                             char *msg, size_t msglen);

#endif
