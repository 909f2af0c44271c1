/* kherr.c: lookups in the refusal-code table. */
#include "kherr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const kh_err_info kh_ok_info = {"OK", 200, "Success", "", ""};

static const kh_err_info kh_err_table[] = {
#define KH_ERR(name, code, http, meaning, cause, action) {code, http, meaning, cause, action},
#include "errors.def"
#undef KH_ERR
};

const kh_err_info *kh_err_get(kh_err e)
{
    if (e <= KH_OK || e >= KH_E__COUNT)
        return &kh_ok_info;
    return &kh_err_table[e - 1];
}

const char *kh_err_code(kh_err e)
{
    return kh_err_get(e)->code;
}

kh_err kh_err_from_code(const char *code)
{
    if (code == NULL)
        return KH_E__COUNT;
    if (strcmp(code, "OK") == 0)
        return KH_OK;
    for (int i = 1; i < KH_E__COUNT; i++)
        if (strcmp(kh_err_table[i - 1].code, code) == 0)
            return (kh_err)i;
    return KH_E__COUNT;
}

void kh_err_set(kh_err *err, char *msg, size_t msglen, kh_err e, const char *fmt, ...)
{
    va_list ap;
    *err = e;
    if (msg == NULL || msglen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}
