/* gw_admin_dir.c: the directory in use through the admin API (gw_dir.h
 * keeps it and refreshes it).
 *
 *   GET  /admin/v1/directory          the version in use: when the router
 *                                     issued it, its digest, legal-basis
 *                                     version, organisations; when it was
 *                                     installed and last checked, the last
 *                                     refresh's error
 *   POST /admin/v1/directory/refresh  asks the router now (platform admins);
 *                                     answers when the refresh ends: changed
 *                                     (a newer version was installed) or
 *                                     not, and the version in use
 *
 *   GET  /admin/v1/tenants            the organisations this gateway hosts
 *                                     and those it retired while running,
 *                                     and the last change of the list
 *                                     (gw_tenants.c; platform admins)
 *
 * A refresh asked for is a kh.operator_audit row (directory.refresh); what
 * it found is in the answer and the gateway's log. */
#include "gw_adm.h"
#include "gw_dir.h"
#include "gw_tenants.h"

#include "khjson.h"
#include "khlog.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void iso(char out[24], int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL)
        snprintf(out, 24, "-");
    else
        strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* {"issued_at", ..., "organisations": [...]} of version d (held) */
static void write_version(khj_writer *w, const kh_dir *d)
{
    gw_dir_status st;
    char t[24];
    gw_dir_status_get(&st);
    khjw_obj(w);
    iso(t, d->pb->issued_at);
    khjw_kstr(w, "issued_at", t);
    khjw_kint(w, "spec_version", d->pb->spec_version);
    khjw_kstr(w, "legal_basis_version", d->pb->legal_basis_version);
    khjw_kint(w, "legal_basis_rows", (int64_t)d->pb->n_legal_basis);
    /* the digest is of the version installed last: d is it unless a
     * refresh replaced it meanwhile */
    khjw_kstr(w, "sha256", st.issued_at == d->pb->issued_at ? st.sha256 : "");
    iso(t, st.installed_at);
    khjw_kstr(w, "installed_at", t);
    iso(t, st.checked_at);
    khjw_kstr(w, "checked_at", t);
    khjw_kint(w, "installs", st.installs);
    khjw_kint(w, "replaced_still_in_use", st.retired_held);
    khjw_kint(w, "refresh_s", gw_dir_interval());
    khjw_kstr(w, "last_error", st.last_error);
    khjw_key(w, "organisations");
    khjw_arr(w);
    for (size_t i = 0; i < d->pb->n_orgs; i++) {
        const Kh__OrgEntry *o = d->pb->orgs[i];
        khjw_obj(w);
        khjw_kstr(w, "code", o->code);
        khjw_kstr(w, "name", o->name);
        khjw_kstr(w, "class", o->org_class);
        khjw_obj_end(w);
    }
    khjw_arr_end(w);
    khjw_obj_end(w);
}

void adm_directory_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    (void)c;
    if (!adm_query_known(call, none))
        return;
    const kh_dir *d = gw_dir_hold();
    if (d == NULL) {
        adm_set_err(call, KH_E_DIRECTORY, "no directory loaded yet");
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_key(&w, "directory");
    write_version(&w, d);
    khjw_obj_end(&w);
    gw_dir_drop(d);
    adm_set_out(call, &w, 200);
}

void adm_tenants_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    (void)c;
    if (!adm_query_known(call, none))
        return;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    gw_tenants_write(&w);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

/* The refresh ended (event loop): the answer, then the reply. */
static void refreshed(bool changed, kh_err e, const char *error, void *arg)
{
    adm_call *call = arg;
    if (e != KH_OK) {
        adm_set_err(call, e, "%s", error);
    } else {
        khj_writer w;
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kbool(&w, "changed", changed);
        khjw_key(&w, "directory");
        write_version(&w, G.dir); /* the event loop: the version in use */
        khjw_obj_end(&w);
        adm_set_out(call, &w, 200);
    }
    call->finish(call);
}

static bool refresh_start(adm_call *call, void (*finish)(adm_call *call))
{
    if (call->req == NULL) /* nobody to answer */
        return false;
    call->finish = finish;
    if (gw_dir_refresh(refreshed, call) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return false;
    }
    return true;
}

void adm_directory_refresh_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none))
        return;
    if (call->body != NULL && khj_len(call->body) > 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "refresh takes no fields");
        return;
    }
    if (!adm_platform_open(c, call))
        return;
    if (adm_operator_audit(c, call->op, call->route->action, "directory", "{}", KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    call->then = refresh_start; /* the router is asked on the event loop */
}
