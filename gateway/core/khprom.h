/* khprom.h: the Prometheus text exposition format, version 0.0.4, for the
 * admin listener's /metrics (gateway/gw_usage.c). A family is its HELP and
 * TYPE lines followed by its samples, one a line:
 *
 *     # HELP kakehashi_queries_asked_total Queries this tenant asked.
 *     # TYPE kakehashi_queries_asked_total counter
 *     kakehashi_queries_asked_total{tenant="131016"} 42
 *
 * Names are checked ([a-zA-Z_:][a-zA-Z0-9_:]*; label names without ':' and
 * not starting with "__"); HELP text escapes '\' and newline; label values
 * escape '\', '"' and newline, and bytes that are not UTF-8 become U+FFFD,
 * so whatever a caller passes, the output parses. */
#ifndef KH_PROM_H
#define KH_PROM_H

#include "kherr.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KHPROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

bool khprom_name_ok(const char *name);
bool khprom_label_name_ok(const char *name);

/* Appends a label value, escaped, to b. 0, or -1 out of memory. */
KH_MUST_CHECK int khprom_label_value(struct evbuffer *b, const char *value);

/* The HELP and TYPE lines of a family; type "counter", "gauge" or
 * "histogram" (its samples NAME_bucket{le=...}, NAME_sum, NAME_count). 0, or -1
 * (a bad name or type, out of memory). */
KH_MUST_CHECK int khprom_family(struct evbuffer *b, const char *name, const char *type,
                                const char *help);

/* One sample line: name{k="v",...} value. labels: NULL, or pairs of label
 * name and value ending with a NULL name. 0, or -1 (a bad name, out of
 * memory). */
KH_MUST_CHECK int khprom_sample(struct evbuffer *b, const char *name, const char *const *labels,
                                int64_t value);
/* The same with the value as text: a number in the format's notation
 * (digits, '.', 'e', signs) or +Inf, else -1. For a histogram's sum and its
 * le labels' companions. */
KH_MUST_CHECK int khprom_sample_text(struct evbuffer *b, const char *name,
                                     const char *const *labels, const char *value);

#endif
