/* khlog.h: the operational log. JSON lines on stderr, one object per event:
 * {"ts":"...","level":"info","sub":"tls","msg":"...", extra key/values}.
 * Never pass personal data (names, local IDs, link codes, resident codes,
 * payloads) or secrets to these functions: the log is read by operators of a
 * shared platform, and a test scans it. Message IDs, org codes, procedure and
 * item codes and refusal codes are fine. */
#ifndef KH_LOG_H
#define KH_LOG_H

typedef enum { KH_LOG_DEBUG, KH_LOG_INFO, KH_LOG_WARN, KH_LOG_ERROR } kh_log_level;

void kh_log_set_level(kh_log_level min);
void kh_log_set_component(const char *name); /* "gateway", "router", ... */
/* sub: subsystem tag; fmt: printf-style message text (escaped for JSON). */
void kh_log(kh_log_level lvl, const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Milliseconds of the monotonic clock: for intervals and deadlines (never
 * for a timestamp a person reads). */
long long kh_mono_ms(void);

#define kh_info(sub, ...) kh_log(KH_LOG_INFO, sub, __VA_ARGS__)
#define kh_warn(sub, ...) kh_log(KH_LOG_WARN, sub, __VA_ARGS__)
#define kh_error(sub, ...) kh_log(KH_LOG_ERROR, sub, __VA_ARGS__)
#define kh_debug(sub, ...) kh_log(KH_LOG_DEBUG, sub, __VA_ARGS__)

#endif
