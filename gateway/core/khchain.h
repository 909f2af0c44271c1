/* khchain.h: what the signer (the gateway, gateway/daemon/gw_chain.c) and the
 * verifier (khctl verify) of the tenants' record chains must agree on: the
 * message a chain head's signature covers. sql/README.md describes the
 * chains themselves. */
#ifndef KH_CHAIN_H
#define KH_CHAIN_H

#include "kherr.h"

#include <stddef.h>

/* "kakehashi-chain-head\n<tenant>\n<chain>\n<seq>\n<hash hex>\n" into out;
 * its length, or -1 if it does not fit. seq is the decimal position. */
KH_MUST_CHECK int kh_chain_head_message(const char *tenant, const char *chain, const char *seq,
                                        const char *hash_hex, char *out, size_t outlen);

#endif
