/* gw_state.c: the daemon's one instance of its shared state (gw_state.h). */
#include "gw_state.h"

#include <string.h>

gw G;

gw_tenant *gw_tenant_find(const char *code)
{
    for (size_t i = 0; code && i < G.ntenants; i++)
        if (strcmp(G.tenants[i].id.code, code) == 0)
            return &G.tenants[i];
    return NULL;
}
