/* khprom.c: the Prometheus text exposition format (see khprom.h). */
#include "khprom.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool name_chars(const char *s, bool colon)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || (colon && *s == ':')))
            return false;
    return true;
}

bool khprom_name_ok(const char *name)
{
    return name_chars(name, true);
}

bool khprom_label_name_ok(const char *name)
{
    return name_chars(name, false) && strncmp(name, "__", 2) != 0;
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4), or 0. */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xc2 && s[0] <= 0xdf   ? 2
               : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong forms, surrogates, above U+10FFFF */
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (n == 3 && s[0] == 0xed && s[1] > 0x9f) ||
        (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

/* Text with '\' and newline escaped, and '"' too if quote. */
static int escaped(struct evbuffer *b, const char *text, bool quote)
{
    const unsigned char *s = (const unsigned char *)text;
    int rc = 0;
    while (*s && rc == 0) {
        size_t n = utf8_len(s);
        if (*s == '\\')
            rc = evbuffer_add(b, "\\\\", 2);
        else if (*s == '\n')
            rc = evbuffer_add(b, "\\n", 2);
        else if (*s == '"' && quote)
            rc = evbuffer_add(b, "\\\"", 2);
        else if (n == 0)
            rc = evbuffer_add(b, "\xef\xbf\xbd", 3); /* U+FFFD */
        else
            rc = evbuffer_add(b, s, n);
        s += n ? n : 1;
    }
    return rc;
}

int khprom_label_value(struct evbuffer *b, const char *value)
{
    return escaped(b, value ? value : "", true);
}

int khprom_family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    if (!khprom_name_ok(name) || type == NULL ||
        (strcmp(type, "counter") != 0 && strcmp(type, "gauge") != 0 &&
         strcmp(type, "histogram") != 0))
        return -1;
    if (evbuffer_add_printf(b, "# HELP %s ", name) < 0 || escaped(b, help ? help : "", false) ||
        evbuffer_add_printf(b, "\n# TYPE %s %s\n", name, type) < 0)
        return -1;
    return 0;
}

int khprom_sample(struct evbuffer *b, const char *name, const char *const *labels, int64_t value)
{
    char v[24];
    snprintf(v, sizeof v, "%" PRId64, value);
    return khprom_sample_text(b, name, labels, v);
}

int khprom_sample_text(struct evbuffer *b, const char *name, const char *const *labels,
                       const char *value)
{
    /* a number as the format writes it: digits, '.', 'e', signs, or +Inf */
    if (value == NULL || value[0] == '\0' ||
        (strcmp(value, "+Inf") != 0 && strspn(value, "0123456789.e+-") != strlen(value)))
        return -1;
    if (!khprom_name_ok(name) || evbuffer_add(b, name, strlen(name)) != 0)
        return -1;
    for (size_t i = 0; labels != NULL && labels[i] != NULL; i += 2) {
        if (!khprom_label_name_ok(labels[i]) ||
            evbuffer_add_printf(b, "%s%s=\"", i == 0 ? "{" : ",", labels[i]) < 0 ||
            khprom_label_value(b, labels[i + 1]) != 0 || evbuffer_add(b, "\"", 1) != 0)
            return -1;
    }
    if (evbuffer_add_printf(b, "%s %s\n", labels && labels[0] ? "}" : "", value) < 0)
        return -1;
    return 0;
}
