/* gw_load.h: applying one bulk file (refdb/FORMAT.md) for a tenant, all or
 * nothing, on a worker thread: the business system's permission, the item's
 * layout, the streaming check and load, the commit. Uploads (gw_bulk.c) and
 * the drop folder (gw_drop.c) both load through here. */
#ifndef KH_GW_LOAD_H
#define KH_GW_LOAD_H

#include "kherr.h"

#include "gw_state.h"

#include "refdb.h"

#include <libpq-fe.h>
#include <stdio.h>

typedef struct {
    FILE *report;             /* the report's rows go here (NULL: nowhere) */
    const char *what;         /* names the load in progress logs */
    char progress_path[1100]; /* a file rewritten with the progress, or "" */
    /* called with the figures so far as the load goes on (may be NULL) */
    void (*on_stats)(const refdb_file_stats *st, void *arg);
    /* called in the load's transaction just before it commits an applied
     * file (may be NULL): anything else than KH_OK (with msg) rolls it back */
    kh_err (*before_commit)(PGconn *c, const refdb_file_stats *st, const refdb_bulk_result *res,
                            void *arg, char *msg, size_t msglen);
    void *arg;
} gw_load_ctx;

/* Creates or truncates an output file without following a symbolic link at
 * its path (drop folders are written by other parties too); NULL on failure. */
FILE *gw_load_open_out(const char *path);

/* Applies the file on fd as system (which needs the register permission on
 * item), in one tenant transaction committed only if every record is good
 * and the content is new. st, res: the figures and the result; msg explains
 * a failure. */
KH_MUST_CHECK kh_err gw_load_run(PGconn *c, gw_tenant *t, const char *system, const char *item,
                                 const char *mode, const char *as_of, const char *file_name,
                                 const char *sha256, int fd, gw_load_ctx *rc, refdb_file_stats *st,
                                 refdb_bulk_result *res, char *msg, size_t msglen);

#endif
