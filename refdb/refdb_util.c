/* refdb_util.c: the helpers the files of refdb/ share (refdb_internal.h):
 * messages and database failures explained without data. */
#include "refdb_internal.h"

#include "khpool.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void refdb_set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;
    if (msg == NULL || msglen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
}

/* Turns a failed result into its code (kh_db_err: KH_E_DB when the database
 * is unavailable, KH_E_FIELD for data it cannot take, KH_E_INTERNAL for a
 * statement gone wrong) with a message that names the step and
 * the SQLSTATE. The server's text is added only for classes whose messages
 * name objects, not data (connection, transaction state, access rules,
 * resources): a data exception may quote the offending value. Clears r. */
kh_err refdb_db_fail(PGconn *c, PGresult *r, const char *what, char *msg, size_t msglen)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *text = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    static const char *const shown[] = {"08", "25", "3F", "42", "53", "57"};
    bool show = false;
    if (state == NULL) {
        /* no result: the connection's own message, if the connection is
         * what failed (it names the server); otherwise it may be an earlier
         * deferred statement's, which can quote a value */
        show = PQstatus(c) != CONNECTION_OK;
        text = show ? PQerrorMessage(c) : NULL;
    } else {
        for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
            show = show || strncmp(state, shown[i], 2) == 0;
    }
    char line[200];
    snprintf(line, sizeof line, "%s", show && text != NULL ? text : "");
    line[strcspn(line, "\n")] = '\0';
    refdb_set_msg(msg, msglen, "database error in %s (SQLSTATE %s)%s%s", what,
                  state != NULL ? state : "none", line[0] != '\0' ? ": " : "", line);
    kh_err e = kh_db_err(r);
    PQclear(r);
    return e;
}
