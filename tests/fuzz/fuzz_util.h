/* fuzz_util.h: what the targets that need keys share. Their keys and
 * certificates come from a dev PKI made by tools/khpki (tools/fuzz makes it
 * in var/fuzz/pki and passes it in KH_FUZZ_PKI); their seeds are made from
 * it at start (a signature from another PKI would stop every input at the
 * first check), into the folder KH_FUZZ_SEEDS names, when it is set. */
#ifndef KH_FUZZ_UTIL_H
#define KH_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_die(const char *what)
{
    fprintf(stderr, "fuzz: %s\n", what);
    exit(2);
}

/* KH_FUZZ_PKI/rel into out. */
static inline void fuzz_pki(const char *rel, char *out, size_t n)
{
    const char *pki = getenv("KH_FUZZ_PKI");
    if (pki == NULL || *pki == '\0')
        fuzz_die("KH_FUZZ_PKI must name a dev PKI (tools/khpki; tools/fuzz makes one)");
    if ((size_t)snprintf(out, n, "%s/%s", pki, rel) >= n)
        fuzz_die("KH_FUZZ_PKI is too long");
}

/* Writes a seed as KH_FUZZ_SEEDS/name (nothing if it is not set). */
static inline void fuzz_seed(const char *name, const uint8_t *a, size_t alen, const uint8_t *b,
                             size_t blen)
{
    const char *dir = getenv("KH_FUZZ_SEEDS");
    char path[1024];
    if (dir == NULL || *dir == '\0')
        return;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
        fclose(f) != 0)
        fuzz_die("cannot write a seed in KH_FUZZ_SEEDS");
}

#endif
