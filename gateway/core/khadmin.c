/* khadmin.c: operator names and roles (see khadmin.h). */
#include "khadmin.h"

#include <stdlib.h>
#include <string.h>

bool khadm_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > KHADM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

unsigned khadm_role(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } roles[] = {{"platform_admin", KHADM_PLATFORM_ADMIN},
                 {"tenant_admin", KHADM_TENANT_ADMIN},
                 {"responder", KHADM_RESPONDER},
                 {"auditor", KHADM_AUDITOR},
                 {"metrics", KHADM_METRICS}};
    for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}

bool khadm_path_match(const char *pattern, bool tenant, const char *path, char org[8], int64_t *id)
{
    if (!tenant)
        return strcmp(pattern, path) == 0;
    size_t plen = strlen(KHADM_TENANT_PREFIX);
    if (strncmp(path, KHADM_TENANT_PREFIX, plen) != 0)
        return false;
    const char *o = path + plen, *rest = strchr(o, '/');
    if (rest == NULL || rest - o > 7)
        return false;
    rest++;
    const char *hash = strchr(pattern, '#');
    if (hash == NULL) {
        if (strcmp(pattern, rest) != 0)
            return false;
    } else {
        size_t pre = (size_t)(hash - pattern);
        if (strncmp(pattern, rest, pre) != 0)
            return false;
        const char *d = rest + pre, *e = d;
        while (*e >= '0' && *e <= '9')
            e++;
        if (e == d || e - d > 18 || *d == '0' || strcmp(e, hash + 1) != 0)
            return false;
        *id = strtoll(d, NULL, 10);
    }
    memcpy(org, o, (size_t)(rest - 1 - o));
    org[rest - 1 - o] = '\0';
    return true;
}
