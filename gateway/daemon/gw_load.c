/* gw_load.c: one bulk file applied for a tenant (gw_load.h), for uploads
 * (gw_bulk.c) and the drop folder (gw_drop.c) alike. */
#include "gw_load.h"

#include "gw_ident.h"

#include "khlog.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Creates or truncates an output file without following a symbolic link at
 * its path (drop folders are written by other parties too). */
FILE *gw_load_open_out(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    if (f == NULL)
        close(fd);
    return f;
}

static void run_issue(const refdb_issue *is, void *arg)
{
    gw_load_ctx *rc = arg;
    if (rc->report)
        refdb_report_row(rc->report, is);
}

static void run_progress(const refdb_file_stats *st, void *arg)
{
    gw_load_ctx *rc = arg;
    if (rc->on_stats)
        rc->on_stats(st, rc->arg);
    if (rc->progress_path[0]) {
        FILE *f = gw_load_open_out(rc->progress_path);
        if (f) {
            fprintf(f, "records=%zu bad_records=%zu issues=%zu bytes=%llu\n", st->records,
                    st->bad_records, st->issues, (unsigned long long)st->bytes);
            fclose(f);
        }
    }
    if (st->records % 100000 == 0 && st->records > 0)
        kh_info("bulk", "%s: %zu records read", rc->what, st->records);
}

kh_err gw_load_run(PGconn *c, gw_tenant *t, const char *system, const char *item, const char *mode,
                   const char *as_of, const char *file_name, const char *sha256, int fd,
                   gw_load_ctx *rc, refdb_file_stats *st, refdb_bulk_result *res, char *msg,
                   size_t msglen)
{
    refdb_layout l;
    memset(&l, 0, sizeof l);
    memset(st, 0, sizeof *st);
    memset(res, 0, sizeof *res);
    kh_err e = kh_db_tenant_begin(&c, t->id.code);
    if (e != KH_OK) {
        snprintf(msg, msglen, "database unavailable");
        return e;
    }
    e = gw_permitted(c, system, "register", item, msg, msglen);
    if (e == KH_E_SYSTEM_PERMISSION)
        snprintf(msg, msglen, "business system '%s' may not register %s", system, item);
    if (e == KH_OK)
        e = refdb_layout_load(c, item, &l, msg, msglen);
    if (e == KH_OK) {
        if (rc->report)
            refdb_report_header(rc->report);
        e = refdb_bulk_load(c, fd, &l, system, mode, as_of, file_name, sha256, run_issue,
                            run_progress, rc, st, res, msg, msglen);
    }
    refdb_layout_free(&l);
    if (e == KH_OK && !res->duplicate && rc->before_commit != NULL)
        e = rc->before_commit(c, st, res, rc->arg, msg, msglen);
    if (e == KH_OK && !res->duplicate) {
        e = kh_db_commit(c);
        if (e != KH_OK)
            snprintf(msg, msglen, "commit failed");
    } else {
        kh_db_rollback(c);
    }
    if (rc->report)
        fflush(rc->report);
    return e;
}
