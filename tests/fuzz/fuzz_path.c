/* A request target as the listeners read it: libevent parses it as it does
 * for every incoming request (evhttp_uri_parse_with_flags, nonconformant
 * mode), then the path is matched byte for byte against the admin API's
 * patterns (khadm_path_match) and the query string is decoded
 * (kh_http_query). Checks what each promises: a matched tenant route names
 * a code of at most 7 bytes without '/' and, with '#', a positive flag id;
 * a refused query leaves nothing behind. */
#include "khadmin.h"
#include "khhttp.h"

#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the admin API's kinds of pattern (gw_admin.c's routes) */
static const struct {
    const char *pattern;
    bool tenant;
} pats[] = {
    {"/admin/v1/login", false}, {"/metrics", false}, {"flags", true},
    {"flags/#/revoke", true},   {"#", true},         {"pending", true},
    {"/admin/v1/usage", false}, {"x/#", true},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(s, EVHTTP_URI_NONCONFORMANT);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    const char *query = u ? evhttp_uri_get_query(u) : NULL;
    for (size_t i = 0; path && i < sizeof pats / sizeof pats[0]; i++) {
        char org[8] = "unset";
        int64_t id = -1;
        if (!khadm_path_match(pats[i].pattern, pats[i].tenant, path, org, &id))
            continue;
        if (pats[i].tenant && (strlen(org) > 7 || strchr(org, '/') != NULL))
            abort();
        if (strchr(pats[i].pattern, '#') != NULL && id <= 0)
            abort();
    }
    if (query != NULL) {
        struct evkeyvalq out;
        char why[160];
        TAILQ_INIT(&out);
        if (kh_http_query(query, &out, why, sizeof why) == 0)
            evhttp_clear_headers(&out);
        else if (TAILQ_FIRST(&out) != NULL)
            abort();
    }
    if (u != NULL)
        evhttp_uri_free(u);
    free(s);
    return 0;
}
