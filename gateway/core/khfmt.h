/* khfmt.h: numbers into text without printf, for loops over millions of
 * rows (khgen's files, khctl's canonical texts), where snprintf's parsing of
 * its format costs more than the digits. */
#ifndef KH_FMT_H
#define KH_FMT_H

#include <stddef.h>

/* v in decimal, without leading zeros, into out (at least 21 bytes),
 * NUL-terminated; returns its length. */
size_t kh_fmt_ll(char *out, long long v);

/* The last `width` decimal digits of v, zero-padded, into out (at least
 * width + 1 bytes), NUL-terminated; returns out + width (the NUL), where
 * more text may follow. */
char *kh_fmt_zero(char *out, unsigned long long v, int width);

#endif
