/* kherr.h: the refusal-code table (proto/errors.def) as a C enum and lookups. */
#ifndef KH_ERR_H
#define KH_ERR_H

#include <stddef.h>

/* On a function whose result says whether it worked (a kh_err, or 0/-1):
 * ignoring that result is a compile error (-Werror). */
#define KH_MUST_CHECK __attribute__((warn_unused_result))

#define KH_SPEC_VERSION 1

typedef enum {
    KH_OK = 0,
#define KH_ERR(name, code, http, meaning, cause, action) name,
#include "errors.def"
#undef KH_ERR
    KH_E__COUNT
} kh_err;

typedef struct {
    const char *code; /* "KH-1001" */
    int http_status;
    const char *meaning;
    const char *cause;
    const char *action;
} kh_err_info;

/* Never NULL: KH_OK and out-of-range values map to an "OK" entry. */
const kh_err_info *kh_err_get(kh_err e);
const char *kh_err_code(kh_err e);
/* Reverse lookup by code string; returns KH_E__COUNT if unknown. */
kh_err kh_err_from_code(const char *code);

/* The one way to set an outcome: *err = e, and msg (msglen bytes) formatted
 * from fmt, cut to fit. Messages must not carry personal data. Every
 * handler's "set code and message" helper is this, on its own fields. */
void kh_err_set(kh_err *err, char *msg, size_t msglen, kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
