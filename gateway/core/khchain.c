/* khchain.c: the chain head's signed message (khchain.h). */
#include "khchain.h"

#include <stdio.h>

int kh_chain_head_message(const char *tenant, const char *chain, const char *seq,
                          const char *hash_hex, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "kakehashi-chain-head\n%s\n%s\n%s\n%s\n", tenant, chain, seq,
                     hash_hex);
    return n > 0 && (size_t)n < outlen ? n : -1;
}
