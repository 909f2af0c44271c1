/* khadmin.c: operator names and roles (see khadmin.h). */
#include "khadmin.h"

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
                 {"auditor", KHADM_AUDITOR}};
    for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}
