/* idconv.c: format rules for the identifiers idconv maps. */
#include "idconv.h"

#include <string.h>

static bool all_digits(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= max)
            return false;
    }
    return n >= min;
}

bool idconv_municipality_code_valid(const char *code)
{
    static const int w[5] = {6, 5, 4, 3, 2};
    int sum = 0;
    if (!all_digits(code, 6, 6))
        return false;
    for (int i = 0; i < 5; i++)
        sum += (code[i] - '0') * w[i];
    return (code[5] - '0') == (11 - sum % 11) % 10;
}

bool idconv_org_code_valid(const char *code)
{
    if (code == NULL || strlen(code) != 6)
        return false;
    for (int i = 0; i < 6; i++) {
        char c = code[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    if (all_digits(code, 6, 6))
        return idconv_municipality_code_valid(code);
    return true;
}

bool idconv_local_id_valid(const char *s)
{
    return all_digits(s, 1, IDCONV_LOCAL_ID_MAX);
}

bool idconv_resident_code_valid(const char *s)
{
    return all_digits(s, IDCONV_RESIDENT_CODE_LEN, IDCONV_RESIDENT_CODE_LEN);
}

bool idconv_link_code_valid(const char *s)
{
    if (s == NULL || strlen(s) != IDCONV_LINK_CODE_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}
