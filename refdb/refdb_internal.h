/* refdb_internal.h: helpers shared by the files of refdb/, not part of the
 * API. */
#ifndef KH_REFDB_INTERNAL_H
#define KH_REFDB_INTERNAL_H

#include "kherr.h"

#include "refdb.h"

/* vsnprintf into msg; does nothing when msg is NULL or msglen 0. */
void refdb_set_msg(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Turns a failed result into KH_E_DB with a message that names the step and
 * the SQLSTATE, never data. Clears r. */
KH_MUST_CHECK kh_err refdb_db_fail(PGconn *c, PGresult *r, const char *what, char *msg,
                                   size_t msglen);

/* The value and occurrence rules of a layout worked out once, for many
 * records (refdb_check_stream): refdb_vplan_validate(p, vals, ...) reports
 * exactly what refdb_validate_values(l, vals, ...) does, but takes no NULL
 * in vals (give "" for no value). The plan points into
 * l, which must outlive it unchanged. NULL if out of memory. */
typedef struct refdb_vplan refdb_vplan;
refdb_vplan *refdb_vplan_new(const refdb_layout *l);
void refdb_vplan_free(refdb_vplan *p);
size_t refdb_vplan_validate(const refdb_vplan *p, const char *const *vals, size_t line,
                            refdb_issue_fn fn, void *arg);

#endif
