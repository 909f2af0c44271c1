/* An envelope as the router and the peer API first read it (kh_env_parse:
 * the envelope, then its header, each checked), and its clock check. */
#include "khenv.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    char why[160];
    if (kh_env_parse(data, size, &env, &h, why, sizeof why) == KH_OK) {
        (void)kh_env_check_time(h, 1800000000, 120, 300);
        kh_env_free(env, h);
    }
    return 0;
}
