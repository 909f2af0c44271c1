/* checked_cleanse.c: OPENSSL_cleanse, checked, linked into every fuzz target.
 *
 * libcrypto's own OPENSSL_cleanse is assembly, which AddressSanitizer cannot
 * see: a wipe past the end of a buffer, or of memory already freed, would
 * zero a neighbour's bytes unreported and surface much later as a corrupt
 * allocator chunk far from its cause. libcrypto calls OPENSSL_cleanse
 * through its PLT (OPENSSL_clear_free and the secure-memory BIO included),
 * so the executable's definition, exported, takes the place of libcrypto's
 * for every caller; this one wipes through memset, which ASan checks. */
#include <stddef.h>
#include <string.h>

void OPENSSL_cleanse(void *ptr, size_t len);

void OPENSSL_cleanse(void *ptr, size_t len)
{
    /* through a volatile pointer: the compiler may not drop a wipe of
     * memory about to be freed */
    void *(*volatile set)(void *, int, size_t) = memset;
    if (ptr != NULL && len > 0)
        set(ptr, 0, len);
}
