/* khfmt.c: numbers into text (khfmt.h). */
#include "khfmt.h"

size_t kh_fmt_ll(char *out, long long v)
{
    char tmp[24];
    size_t n = 0, k = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        out[k++] = '-';
    while (n > 0)
        out[k++] = tmp[--n];
    out[k] = '\0';
    return k;
}

char *kh_fmt_zero(char *out, unsigned long long v, int width)
{
    out[width] = '\0';
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return out + width;
}
