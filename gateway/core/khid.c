/* khid.c: the identifier formats (khid.h). Pure functions, no allocation. */
#include "khid.h"

#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* min..max digits and nothing else. */
static bool all_digits(const char *s, size_t min, size_t max)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++)
        if (!is_digit(s[n]) || n >= max)
            return false;
    return n >= min;
}

bool kh_id_municipality(const char *s)
{
    static const int w[5] = {6, 5, 4, 3, 2};
    int sum = 0;
    if (!all_digits(s, KH_ID_ORG_LEN, KH_ID_ORG_LEN))
        return false;
    for (int i = 0; i < 5; i++)
        sum += (s[i] - '0') * w[i];
    return (s[5] - '0') == (11 - sum % 11) % 10;
}

bool kh_id_org(const char *s)
{
    if (!kh_id_code(s, KH_ID_ORG_LEN) || strlen(s) != KH_ID_ORG_LEN)
        return false;
    return all_digits(s, KH_ID_ORG_LEN, KH_ID_ORG_LEN) ? kh_id_municipality(s) : true;
}

bool kh_id_local_id(const char *s)
{
    return all_digits(s, 1, KH_ID_LOCAL_ID_MAX);
}

bool kh_id_resident_code(const char *s)
{
    return all_digits(s, KH_ID_RESIDENT_CODE_LEN, KH_ID_RESIDENT_CODE_LEN);
}

bool kh_id_link_code(const char *s)
{
    return kh_id_hex(s, KH_ID_LINK_CODE_LEN);
}

bool kh_id_code(const char *s, size_t max)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++)
        if (n >= max || !(is_digit(s[n]) || (s[n] >= 'A' && s[n] <= 'Z')))
            return false;
    return n >= 1;
}

bool kh_id_token(const char *s, size_t max)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= max || !(is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          c == '-' || c == '_'))
            return false;
    }
    return n >= 1;
}

bool kh_id_hex(const char *s, size_t len)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++)
        if (n >= len || !(is_digit(s[n]) || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == len;
}

/* y (1..9999), m, d from their digits: a real calendar day? */
static bool calendar_day(int y, int m, int d)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= mdays[m - 1] + (m == 2 && leap ? 1 : 0);
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

bool kh_id_date(const char *s)
{
    if (!all_digits(s, 8, 8))
        return false;
    return calendar_day(num(s, 4), num(s + 4, 2), num(s + 6, 2));
}

bool kh_id_iso_date(const char *s)
{
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !is_digit(s[i]))
            return false;
    return calendar_day(num(s, 4), num(s + 5, 2), num(s + 8, 2));
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if it is not one:
 * no overlong forms, no encoded surrogates, nothing above U+10FFFF. */
size_t kh_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* U+D800..U+DFFF */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

long kh_text_bad(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = *p == 0 ? 0 : kh_utf8_seq(p, end);
        if (n == 0)
            return (long)(p - (const unsigned char *)s);
        p += n;
    }
    return -1;
}

bool kh_id_text(const char *s, size_t len)
{
    return s != NULL && kh_text_bad(s, len) < 0;
}
