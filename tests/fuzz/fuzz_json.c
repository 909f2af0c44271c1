/* The admin API's JSON reader (khjson): any bytes, the limits the admin API
 * uses; a value it accepts is walked whole. */
#include "khjson.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    khj_error err;
    khj_val *v = khj_parse((const char *)data, size, 65536, 32, &err);
    if (v != NULL)
        (void)khj_type_name(khj_type_of(v));
    khj_free(v);
    return 0;
}
