/* kherrdoc: prints proto/ERRORS.md from the refusal-code table, so the
 * documented table can never drift from the code (a test diffs the two). */
#include "kherr.h"

#include <stdio.h>

int main(void)
{
    printf(
        "# Kakehashi refusal codes\n\n"
        "Every refusal on every wire (business API, peer API, admin API, router) carries one of\n"
        "these codes in its `Status.code`, with a message that says what was wrong and where;\n"
        "the admin API sends the same code and message as JSON: "
        "`{\"code\":\"KH-6001\",\"message\":\"...\"}`.\n"
        "Generated from `proto/errors.def` by `build/plain/tools/kherrdoc`; do not edit by "
        "hand.\n\n"
        "| code | HTTP | meaning | likely cause | what to do |\n"
        "|---|---|---|---|---|\n");
    for (int i = 1; i < KH_E__COUNT; i++) {
        const kh_err_info *e = kh_err_get((kh_err)i);
        printf("| %s | %d | %s | %s | %s |\n", e->code, e->http_status, e->meaning, e->cause,
               e->action);
    }
    return 0;
}
