/* gw_admin_bulk.c: a tenant's bulk registration as operators see it: the
 * uploads still known (state, figures, the refusal; kept an hour after they
 * end, sql/tenant/014_bulk_upload.sql), the files applied (bulk_file, the
 * lasting history) and a rejected upload's report, a page at a time
 * (gw_bulk_report_read; reports name lines and fields, never values). */
#include "gw_adm.h"
#include "gw_bulk.h"

#include "khid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_STATES                                                                              \
    {                                                                                              \
        "RECEIVING", "QUEUED", "LOADING", "APPLIED", "DUPLICATE", "REJECTED", "FAILED", NULL       \
    }

void adm_bulk_uploads_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"state", "limit", NULL};
    static const char *const states[] = UPLOAD_STATES;
    const char *state;
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_enum(call, "state", states, &state) ||
        !adm_query_limit(call, limit))
        return;
    adm_listing l = {.n = 0};
    /* never the parts: the rows' figures and outcome only */
    snprintf(
        l.sql, sizeof l.sql,
        "SELECT upload_id, system_id, item_code, mode, as_of, file_name, state, bytes, sha256, "
        "records, bad_records, issues, persons, deleted_absent, code, message, report_size, "
        "opened_at, committed_at, finished_at FROM bulk_upload WHERE true");
    adm_list_where(&l, "state = ", "", state);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "opened_at DESC", limit, "uploads");
    kh_db_rollback(c);
}

void adm_bulk_files_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"since", "until", "limit", NULL};
    const char *since, *until;
    char limit[8];
    if (!adm_query_known(call, known) || !adm_query_period(call, &since, &until) ||
        !adm_query_limit(call, limit))
        return;
    adm_listing l = {.n = 0};
    snprintf(l.sql, sizeof l.sql,
             "SELECT id, item_code, mode, sha256, file_name, system_id, as_of, records, persons, "
             "deleted_absent, started_at, applied_at FROM bulk_file WHERE true");
    adm_list_where(&l, "started_at >= ", "::date", since);
    adm_list_where(&l, "started_at < ", "::date + 1", until);
    if (!adm_tenant_begin(&c, call))
        return;
    adm_list_json(c, call, &l, "id DESC", limit, "files");
    kh_db_rollback(c);
}

/* ?upload=ID[&offset=N]: text/csv, at most GW_BULK_REPORT_PAGE bytes of the
 * report from offset (the upload's report_size says where it ends). */
void adm_bulk_report_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"upload", "offset", NULL};
    if (!adm_query_known(call, known))
        return;
    const char *id = adm_query_get(call, "upload"), *off = adm_query_get(call, "offset");
    uint64_t offset = 0;
    if (id == NULL || !kh_id_hex(id, 32)) {
        adm_set_err(call, KH_E_ADM_FIELD, "upload: the upload's ID, 32 hex digits");
        return;
    }
    if (off != NULL) {
        if (strspn(off, "0123456789") != strlen(off) || strlen(off) > 12) {
            adm_set_err(call, KH_E_ADM_FIELD, "offset: a byte offset, 0 to 999999999999");
            return;
        }
        offset = strtoull(off, NULL, 10);
    }
    if (!adm_tenant_begin(&c, call))
        return;
    const char *p[1] = {id};
    PGresult *r = kh_db_exec(c, "SELECT report_size FROM bulk_upload WHERE upload_id = $1", 1, p);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        kh_db_rollback(c);
        adm_set_err(call, KH_E_ADM_NOT_FOUND,
                    "upload: no such upload in this tenant (an ended "
                    "upload is kept an hour)");
        return;
    }
    uint64_t size = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    char *data = NULL;
    size_t len = 0;
    kh_err e = gw_bulk_report_read(c, id, offset, size, &data, &len);
    kh_db_rollback(c);
    if (e == KH_OK && data == NULL && (data = malloc(1)) == NULL)
        e = KH_E_INTERNAL;
    if (e != KH_OK) {
        free(data);
        adm_set_err(call, e, e == KH_E_DB ? "database unavailable" : "out of memory");
        return;
    }
    call->out = data;
    call->outlen = len;
    call->err = KH_OK;
    call->status = 200;
    call->content_type = "text/csv; charset=utf-8";
}
