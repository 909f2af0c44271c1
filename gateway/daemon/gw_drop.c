/* gw_drop.c: the watched drop folder (gateway/README.md, Bulk registration).
 * A file DIR/<tenant>/in/<ITEM>_<full|diff>_<YYYYMMDD>[_x].csv is moved to
 * work/, loaded as business system drop_system (gw_load.c), and ends in done/
 * or rejected/ with NAME.report and NAME.result; work/NAME.progress shows the
 * progress meanwhile. One file at a time, on one worker, checked every
 * second. */
#include "gw_drop.h"

#include "gw_load.h"

#include "khid.h"
#include "khlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct event *drop_ev;
static bool drop_running;

/* <ITEM>_<full|diff>_<YYYYMMDD>[_anything].csv */
static bool parse_drop_name(const char *name, char *item, char *mode, char *as_of)
{
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 4, ".csv") != 0 || n > 200)
        return false;
    char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(n - 4), name);
    char *save = NULL, *a = strtok_r(buf, "_", &save), *b = strtok_r(NULL, "_", &save),
         *c = strtok_r(NULL, "_", &save);
    if (!a || !b || !c || !kh_id_code(a, KH_CODE_MAX) ||
        (strcmp(b, "full") != 0 && strcmp(b, "diff") != 0) || !kh_id_date(c))
        return false;
    strcpy(item, a);
    strcpy(mode, b);
    strcpy(as_of, c);
    return true;
}

/* Loads the first file (by name) waiting in the tenant's in/; false if none. */
static bool drop_one(PGconn *c, gw_tenant *t, const char *root)
{
    char in[1024], work[1024], path[1100], wpath[1100], dest[1100], rpath[1100];
    snprintf(in, sizeof in, "%s/%s/in", root, t->id.code);
    snprintf(work, sizeof work, "%s/%s/work", root, t->id.code);
    DIR *d = opendir(in);
    if (d == NULL)
        return false;
    char best[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 4 && n < sizeof best && strcmp(de->d_name + n - 4, ".csv") == 0 &&
            (best[0] == '\0' || strcmp(de->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", de->d_name);
    }
    closedir(d);
    if (best[0] == '\0')
        return false;
    snprintf(path, sizeof path, "%s/%s", in, best);
    snprintf(wpath, sizeof wpath, "%s/%s", work, best);
    snprintf(rpath, sizeof rpath, "%s/%s.report", work, best);
    /* Only a plain file with one name is read: a symbolic link could point at
     * another tenant's data, a FIFO or a device would block a worker. It is
     * opened before it is moved, so what is checked is what is read. */
    struct stat sb;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    bool plain = fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1;
    if (!plain || rename(path, wpath) != 0) {
        if (fd >= 0)
            close(fd);
        snprintf(dest, sizeof dest, "%s/%s/rejected/%s", root, t->id.code, best);
        /* moved aside (the link itself, not its target) so it is not tried again */
        if (rename(path, dest) != 0)
            unlink(path);
        kh_warn("drop", "tenant %s: a dropped entry is not a plain file; moved to rejected/",
                t->id.code);
        return true;
    }
    char item[32], mode[8], as_of[16], msg[256] = "";
    refdb_file_stats st;
    refdb_bulk_result res;
    memset(&st, 0, sizeof st);
    memset(&res, 0, sizeof res);
    gw_load_ctx rc = {0};
    rc.what = "dropped file";
    snprintf(rc.progress_path, sizeof rc.progress_path, "%s/%s.progress", work, best);
    rc.report = gw_load_open_out(rpath);
    kh_err e;
    if (!parse_drop_name(best, item, mode, as_of)) {
        e = KH_E_FIELD;
        snprintf(msg, sizeof msg,
                 "file name: expected <ITEM>_<full|diff>_<YYYYMMDD>[_anything].csv");
        if (rc.report) {
            refdb_issue is = {0, "-", KH_E_FIELD, ""};
            snprintf(is.reason, sizeof is.reason, "%s", msg);
            refdb_report_header(rc.report);
            refdb_report_row(rc.report, &is);
        }
    } else if (fd < 0 || rc.report == NULL) {
        e = KH_E_INTERNAL;
        snprintf(msg, sizeof msg, "cannot open the file or its report");
    } else {
        kh_info("drop", "tenant %s: loading dropped file (%s %s)", t->id.code, item, mode);
        e = gw_load_run(c, t, G.set.drop_system, item, mode, as_of, best, NULL, fd, &rc, &st, &res,
                        msg, sizeof msg);
    }
    if (fd >= 0)
        close(fd);
    if (rc.report)
        fclose(rc.report);
    unlink(rc.progress_path);
    const char *where = e == KH_OK ? "done" : "rejected";
    snprintf(dest, sizeof dest, "%s/%s/%s/%s", root, t->id.code, where, best);
    if (rename(wpath, dest) != 0)
        kh_warn("drop", "tenant %s: cannot move a file to %s/", t->id.code, where);
    snprintf(dest, sizeof dest, "%s/%s/%s/%s.report", root, t->id.code, where, best);
    if (rename(rpath, dest) != 0)
        kh_warn("drop", "tenant %s: cannot move a report to %s/", t->id.code, where);
    snprintf(dest, sizeof dest, "%s/%s/%s/%s.result", root, t->id.code, where, best);
    FILE *f = gw_load_open_out(dest);
    if (f) {
        fprintf(f,
                "state=%s\ncode=%s\nmessage=%s\nrecords=%zu\nbad_records=%zu\nissues=%zu\n"
                "persons=%llu\ndeleted_absent=%llu\nsha256=%s\nfile_id=%lld\n",
                e == KH_OK                ? (res.duplicate ? "DUPLICATE" : "APPLIED")
                : e == KH_E_FILE_REJECTED ? "REJECTED"
                                          : "FAILED",
                e == KH_OK ? "OK" : kh_err_code(e), msg, st.records, st.bad_records, st.issues,
                (unsigned long long)res.persons, (unsigned long long)res.deleted_absent, res.sha256,
                (long long)res.file_id);
        fclose(f);
    }
    kh_info("drop", "tenant %s: dropped file %s: %s (%zu records, %zu bad)", t->id.code, where,
            e == KH_OK ? (res.duplicate ? "duplicate" : "applied") : kh_err_code(e), st.records,
            st.bad_records);
    return true;
}

static void drop_work(PGconn *c, void *arg)
{
    const char *root = G.set.drop_dir;
    if (root == NULL || c == NULL)
        return;
    /* everything waiting, one file at a time, until the folders are empty */
    for (bool any = true; any && !G.stopping;) {
        any = false;
        for (size_t i = 0, nt = gw_tenant_count(); i < nt && !G.stopping; i++) {
            gw_tenant *t = gw_tenant_at(i);
            if (t != NULL)
                any = drop_one(c, t, root) || any;
        }
    }
}

static void drop_done(void *arg)
{
    drop_running = false;
}

static void on_drop_timer(evutil_socket_t fd, short what, void *arg)
{
    if (drop_running || G.stopping)
        return;
    drop_running = true;
    if (kh_pool_submit(G.pool, drop_work, drop_done, NULL) != 0)
        drop_running = false;
}

/* At start-up no drop load is in progress: a dropped file left in work/ by a
 * crash had its load rolled back; it goes back to in/ (the claim by SHA-256
 * makes the retry safe). Anything else in work/ is removed. */
static void tidy_work(const char *drop)
{
    for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++) {
        char dir[1100], from[1400], to[1400];
        struct dirent *de;
        DIR *d;
        snprintf(dir, sizeof dir, "%s/%s/work", drop, gw_tenant_slot(i)->id.code);
        if ((d = opendir(dir)) == NULL)
            continue;
        while ((de = readdir(d)) != NULL) {
            size_t n = strlen(de->d_name);
            if (de->d_name[0] == '.')
                continue;
            snprintf(from, sizeof from, "%s/%s", dir, de->d_name);
            if (n > 4 && strcmp(de->d_name + n - 4, ".csv") == 0) {
                snprintf(to, sizeof to, "%s/%s/in/%s", drop, gw_tenant_slot(i)->id.code,
                         de->d_name);
                if (rename(from, to) == 0)
                    kh_info("drop", "tenant %s: an interrupted load is retried",
                            gw_tenant_slot(i)->id.code);
            } else {
                unlink(from);
            }
        }
        closedir(d);
    }
}

int gw_drop_tenant(const char *drop, const char *org, char *err, size_t errlen)
{
    static const char *const subs[] = {"in", "work", "done", "rejected"};
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", drop, org);
    bool ok =
        (mkdir(drop, 0700) == 0 || errno == EEXIST) && (mkdir(p, 0700) == 0 || errno == EEXIST);
    for (size_t k = 0; ok && k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s/%s", drop, org, subs[k]);
        ok = mkdir(p, 0700) == 0 || errno == EEXIST;
    }
    if (!ok)
        snprintf(err, errlen, "cannot make %s: %s", p, strerror(errno));
    return ok ? 0 : -1;
}

int gw_drop_start(const char *drop, char *err, size_t errlen)
{
    tidy_work(drop);
    for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++)
        if (gw_drop_tenant(drop, gw_tenant_slot(i)->id.code, err, errlen) != 0)
            return -1;
    struct timeval tv = {1, 0};
    drop_ev = event_new(G.base, -1, EV_PERSIST, on_drop_timer, NULL);
    if (drop_ev == NULL || event_add(drop_ev, &tv) != 0) {
        snprintf(err, errlen, "cannot watch drop_dir %s", drop);
        return -1;
    }
    return 0;
}

void gw_drop_stop(void)
{
    if (drop_ev)
        event_free(drop_ev);
    drop_ev = NULL;
}
