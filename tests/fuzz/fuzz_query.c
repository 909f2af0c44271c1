/* HTTP query strings as the admin API reads them (kh_http_query): decoded,
 * refused with a reason (a %00, bad UTF-8, a malformed string), never cut. */
#include "khhttp.h"

#include <sys/queue.h>

#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *q = malloc(size + 1);
    if (q == NULL)
        return 0;
    memcpy(q, data, size);
    q[size] = '\0';
    struct evkeyvalq out;
    TAILQ_INIT(&out);
    char why[160];
    if (kh_http_query(q, &out, why, sizeof why) == 0)
        evhttp_clear_headers(&out);
    /* a refusal leaves out empty: anything left in it leaks, and fails here */
    free(q);
    return 0;
}
