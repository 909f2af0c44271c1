/* gw_admin_diag.c: GET /admin/v1/diagnose, the connectivity check the
 * refusal table sends operators to (KH-5004, KH-5002, KH-5006). Platform
 * admins only: it reads every tenant's state.
 *
 * Two steps. On a database worker (adm_diagnose_work): the gateway's own
 * database (reachable, its migrations those this build expects) and each
 * tenant's (reachable, migrations), every certificate's remaining validity,
 * each tenant's keys (a signature made and verified, a payload sealed to the
 * tenant and opened). Then on the event loop (adm_diagnose_router): the
 * router is asked for its directory over mutual TLS, the answer's signature
 * is checked like at start, its issue time compared with the directory in
 * use, and the router's clock (its Date header) with this one. Each check
 * is a row {check, target, status ok|warn|fail, detail}; the answer is 200
 * with every row and "ok" false if one failed. Nothing is changed: the
 * database is only read, the directory fetched is checked and dropped. */
#include "gw_adm.h"
#include "gw_dir.h"
#include "gw_stamp.h"
#include "gw_tenants.h"
#include "gw_admin.h"

#include "khcrypto.h"
#include "khenv.h"
#include "khhttp.h"
#include "khjson.h"
#include "khlog.h"
#include "khpool.h"
#include "khtls.h"

#include "kakehashi.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef struct {
    char check[16], target[40], status[8], detail[200];
} diag_row;

struct adm_diag {
    diag_row *rows;
    size_t n, cap;
    size_t nt;            /* the tenants checked: those there were at the start */
    struct timeval asked; /* when the router was asked */
    void (*finish)(adm_call *call);
};

static void row(adm_diag *d, const char *check, const char *target, const char *status,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void row(adm_diag *d, const char *check, const char *target, const char *status,
                const char *fmt, ...)
{
    if (d->n == d->cap)
        return; /* sized for every row at the start */
    diag_row *r = &d->rows[d->n++];
    snprintf(r->check, sizeof r->check, "%s", check);
    snprintf(r->target, sizeof r->target, "%s", target);
    snprintf(r->status, sizeof r->status, "%s", status);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

void adm_diag_free(adm_diag *d)
{
    if (d != NULL)
        free(d->rows);
    free(d);
}

/* ------------------------------------------------ on a database worker */

/* The last migration applied, read by sql (one text value), against the
 * one this build expects. */
static void migrations(PGconn *c, adm_diag *d, const char *target, const char *sql,
                       const char *expected)
{
    char why[200];
    const char *verdict = gw_schema_verdict(c, sql, expected, why, sizeof why);
    row(d, "migrations", target, verdict, "%s", why);
}

static void cert(adm_diag *d, const char *target, X509 *c)
{
    bool ok;
    int64_t left = khc_cert_left(c, &ok);
    if (c == NULL)
        return;
    if (!ok)
        row(d, "certificate", target, "fail", "cannot read its validity");
    else if (left <= 0)
        row(d, "certificate", target, "fail", "expired %lld days ago", (long long)(-left / 86400));
    else
        row(d, "certificate", target, left < GW_CERT_WARN_DAYS * 86400 ? "warn" : "ok",
            "%lld days left", (long long)(left / 86400));
}

/* The tenant's keys work: a signature made with its signing key verifies
 * with its certificate, and a payload sealed to it opens with its
 * encryption key. */
static void keys(adm_diag *d, const gw_tenant *t)
{
    static const uint8_t probe[] = "kakehashi diagnose: key check";
    uint8_t *sig = NULL, *sealed = NULL, *body = NULL;
    size_t siglen = 0, slen = 0, blen = 0;
    char target[40];
    snprintf(target, sizeof target, "%s", t->id.code);
    const kh_identity *id = &t->id;
    if (khc_sign(id->sign_key, probe, sizeof probe, &sig, &siglen) != 0 ||
        khc_verify(id->sign_cert, probe, sizeof probe, sig, siglen) != 0)
        row(d, "keys", target, "fail", "the signing key does not sign, or not for its certificate");
    else if (khc_seal(probe, sizeof probe, id->sign_cert, id->sign_key, id->enc_cert, &sealed,
                      &slen) != 0 ||
             khc_open(sealed, slen, id->enc_cert, id->enc_key, G.national, id->sign_cert, &body,
                      &blen) != KH_OK ||
             blen != sizeof probe || memcmp(body, probe, blen) != 0)
        row(d, "keys", target, "fail",
            "a payload sealed to the encryption certificate does not open with its key");
    else
        row(d, "keys", target, "ok", "signing and encryption keys work with their certificates");
    free(sig);
    khc_free_secret(sealed, slen);
    khc_free_secret(body, blen);
}

/* The time-stamping of the chain heads (gw_stamp.c): a TSA that does not
 * answer is a warning (nothing is refused; the heads wait for it). */
static void tsa(adm_diag *d)
{
    gw_stamp_status ts;
    gw_stamp_status_get(&ts);
    if (!ts.configured)
        return;
    if (ts.up)
        row(d, "timestamps", "TSA", "ok", "%s gives tokens: %llu since start, %lld head(s) waiting",
            G.set.tsa_url, (unsigned long long)ts.stamped, ts.waiting);
    else
        row(d, "timestamps", "TSA", "warn",
            "no tokens for %lld s; %lld signed head(s) wait, stamped when it answers again: %s",
            (long long)(time(NULL) - ts.down_since), ts.waiting, ts.last_error);
}

static adm_diag *diag_new(void)
{
    adm_diag *d = calloc(1, sizeof *d);
    if (d != NULL) {
        d->nt = gw_tenant_count();
        d->cap = 24 + 8 * d->nt;
        d->rows = calloc(d->cap, sizeof *d->rows);
    }
    if (d != NULL && d->rows == NULL) {
        adm_diag_free(d);
        d = NULL;
    }
    return d;
}

/* The checks of the databases, certificates and keys. c: the gateway's
 * database, or NULL if it could not be reached. own: not a pool's worker
 * (kakehashi-gw -t): a tenant whose database is another is reached with a
 * connection of its own, closed again. */
static void local_checks(PGconn *c, adm_diag *d, bool own)
{
    if (c == NULL) {
        row(d, "database", "gateway", "fail", "unreachable (db)");
    } else if (adm_platform_begin(c) == KH_OK) {
        row(d, "database", "gateway", "ok", "reachable");
        /* before 007 the operator store may not read which were applied */
        migrations(c, d, "gateway",
                   "SELECT CASE WHEN has_table_privilege('kh.schema_migrations', 'SELECT') THEN "
                   "(SELECT version FROM kh.schema_migrations ORDER BY version COLLATE \"C\" "
                   "DESC LIMIT 1) ELSE '006 or older' END",
                   KH_SQL_PLATFORM_LATEST);
        kh_db_rollback(c);
    } else {
        row(d, "database", "gateway", "fail", "cannot begin a transaction");
    }
    for (size_t i = 0; i < d->nt; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        bool other = own && strcmp(t->db, G.set.db) != 0;
        PGconn *tc = other ? kh_db_connect(t->db) : c;
        PGresult *one = NULL;
        /* a statement goes with the transaction's start: the role and the
         * schema are checked too, not only the connection */
        kh_err be = tc != NULL ? kh_db_tenant_begin(&tc, t->id.code) : KH_E_DB;
        if (be == KH_OK)
            one = kh_db_exec(tc, "SELECT 1", 0, NULL);
        if (one == NULL) {
            row(d, "database", t->id.code, "fail",
                "unreachable, or the tenant's role or schema refused (tenant_db or db; "
                "tools/khdb tenant)");
            if (be == KH_OK)
                kh_db_rollback(tc);
        } else {
            PQclear(one);
            row(d, "database", t->id.code, "ok", "reachable");
            migrations(tc, d, t->id.code, GW_TENANT_SCHEMA_SQL, KH_SQL_TENANT_LATEST);
            kh_db_rollback(tc);
        }
        if (other && tc != NULL)
            PQfinish(tc);
    }
    for (size_t i = 0; i < d->nt; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        char target[40];
        gw_tenant_cert tc[GW_TENANT_CERTS];
        gw_tenant_certs(t, tc);
        for (size_t k = 0; k < GW_TENANT_CERTS; k++) {
            snprintf(target, sizeof target, "%s %s", t->id.code, tc[k].label);
            cert(d, target, tc[k].cert);
        }
        keys(d, t);
    }
    if (!own)
        tsa(d); /* a running gateway's exchanges */
    /* the directory's router certificates: a running gateway's (none with -t) */
    const kh_dir *dir = own ? NULL : gw_dir_hold();
    gw_tenant_cert oc[GW_OWN_CERTS];
    gw_own_certs(dir, oc);
    for (size_t k = 0; k < GW_OWN_CERTS; k++)
        cert(d, oc[k].label, oc[k].cert);
    gw_dir_drop(dir);
}

void adm_diagnose_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none))
        return;
    adm_diag *d = diag_new();
    if (d == NULL) {
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    local_checks(c, d, false); /* c works: the job got here */
    call->diag = d;            /* the router is asked next, on the event loop */
    call->then = adm_diagnose_router;
    call->err = KH_OK;
}

int gw_admin_check_offline(FILE *out)
{
    adm_diag *d = diag_new();
    if (d == NULL)
        return -1;
    PGconn *c = kh_db_connect(G.set.db);
    local_checks(c, d, true);
    if (c != NULL)
        PQfinish(c);
    kh_db_forget();
    int failed = 0;
    for (size_t i = 0; i < d->n; i++) {
        const diag_row *r = &d->rows[i];
        failed += strcmp(r->status, "fail") == 0;
        if (strcmp(r->status, "ok") != 0)
            fprintf(out, "%s: %s %s: %s\n", r->status, r->check, r->target, r->detail);
    }
    fprintf(out, "checked: %zu database, certificate and key checks, %d failed%s\n", d->n, failed,
            failed ? "" : " (the router: khctl admin diagnose once running)");
    adm_diag_free(d);
    return failed;
}

/* --------------------------------------------------- on the event loop */

static void answer(adm_call *call)
{
    adm_diag *d = call->diag;
    bool ok = true;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "gateway", G.set.name);
    for (size_t i = 0; i < d->n; i++)
        ok = ok && strcmp(d->rows[i].status, "fail") != 0;
    khjw_kbool(&w, "ok", ok);
    khjw_key(&w, "checks");
    khjw_arr(&w);
    for (size_t i = 0; i < d->n; i++) {
        khjw_obj(&w);
        khjw_kstr(&w, "check", d->rows[i].check);
        khjw_kstr(&w, "target", d->rows[i].target);
        khjw_kstr(&w, "status", d->rows[i].status);
        khjw_kstr(&w, "detail", d->rows[i].detail);
        khjw_obj_end(&w);
    }
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

/* Whether two directories say the same, whenever each was signed: the
 * messages packed with the same issue time are the same bytes (legal-basis
 * rows, organisations, their addresses and certificates, the router's). */
static bool same_directory(const kh_dir *inuse, kh_dir *fresh)
{
    int64_t issued = fresh->pb->issued_at;
    fresh->pb->issued_at = inuse->pb->issued_at;
    size_t na = kh__directory__get_packed_size(inuse->pb);
    size_t nb = kh__directory__get_packed_size(fresh->pb);
    uint8_t *a = na == nb ? malloc(na ? na : 1) : NULL, *b = a ? malloc(nb ? nb : 1) : NULL;
    bool same = b != NULL && kh__directory__pack(inuse->pb, a) == na &&
                kh__directory__pack(fresh->pb, b) == nb && memcmp(a, b, na) == 0;
    fresh->pb->issued_at = issued;
    free(a);
    free(b);
    return same;
}

/* The router's directory when it is not the very one in use: loaded and
 * compared on a worker (a chain check per certificate of every
 * organisation: not for the event loop). */
typedef struct {
    adm_call *call;
    uint8_t *body;
    size_t len;
} dir_job;

static void dir_work(PGconn *c, void *arg)
{
    dir_job *j = arg;
    adm_diag *d = j->call->diag;
    char err[256] = "";
    (void)c;
    kh_dir *fresh = kh_dir_load(j->body, j->len, G.national, err, sizeof err);
    if (fresh == NULL) {
        row(d, "directory", "router", "fail", "the router's directory fails its check: %s", err);
        return;
    }
    row(d, "directory", "router", "ok", "signature valid; issued %lld s ago, legal basis %s",
        (long long)((int64_t)time(NULL) - fresh->pb->issued_at), fresh->pb->legal_basis_version);
    const kh_dir *inuse = gw_dir_hold();
    if (inuse == NULL)
        row(d, "directory", "in use", "fail", "no directory loaded yet");
    else if (!same_directory(inuse, fresh))
        row(d, "directory", "in use", "warn",
            "differs from the router's (legal basis %s against %s, %zu organisations against "
            "%zu): the next refresh takes it (directory_refresh_s), or now: khctl admin "
            "directory refresh",
            inuse->pb->legal_basis_version, fresh->pb->legal_basis_version, inuse->norgs,
            fresh->norgs);
    else
        row(d, "directory", "in use", "ok",
            "says the same as the router's, signed again since (legal basis %s, %zu "
            "organisations)",
            inuse->pb->legal_basis_version, inuse->norgs);
    gw_dir_drop(inuse);
    kh_dir_free(fresh);
}

static void dir_done(void *arg)
{
    dir_job *j = arg;
    adm_call *call = j->call;
    free(j->body);
    free(j);
    answer(call);
    call->diag->finish(call);
}

static void router_answered(int status, const uint8_t *body, size_t len, void *arg)
{
    adm_call *call = arg;
    adm_diag *d = call->diag;
    struct timeval now;
    gettimeofday(&now, NULL);
    int64_t t0 = (int64_t)d->asked.tv_sec * 1000 + d->asked.tv_usec / 1000;
    int64_t t1 = (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
    int64_t date = kh_http_reply_date();
    if (status != 200) {
        if (status == 0)
            row(d, "router", G.set.router, "fail",
                "unreachable: no TLS connection within 5 s (address, firewall, certificates)");
        else
            row(d, "router", G.set.router, "fail", "answered HTTP %d to GET /v1/directory", status);
        answer(call);
        d->finish(call);
        return;
    }
    row(d, "router", G.set.router, "ok", "reachable with mutual TLS, answered in %lld ms",
        (long long)(t1 - t0));
    if (date == 0) {
        row(d, "clock", "router", "warn", "the router's answer has no Date header to compare");
    } else {
        /* the router's second (its Date is floored: + 500 ms) against the
         * middle of the exchange, with half the exchange as uncertainty */
        int64_t skew_ms = date * 1000 + 500 - (t0 + t1) / 2;
        int64_t lim_ms = (int64_t)atomic_load(&G.skew) * 1000 + 500 + (t1 - t0) / 2;
        row(d, "clock", "router", (skew_ms < 0 ? -skew_ms : skew_ms) <= lim_ms ? "ok" : "fail",
            "%+.1f s against the router (max_skew %d s; the Date header has 1 s resolution)",
            (double)skew_ms / 1000, atomic_load(&G.skew));
    }
    if (G.dir != NULL && len == G.dir->rawlen && memcmp(body, G.dir->raw, len) == 0) {
        /* the very bytes of the version in use */
        row(d, "directory", "router", "ok", "signature valid; issued %lld s ago, legal basis %s",
            (long long)((int64_t)time(NULL) - G.dir->pb->issued_at),
            G.dir->pb->legal_basis_version);
        row(d, "directory", "in use", "ok", "the router's very directory (legal basis %s)",
            G.dir->pb->legal_basis_version);
        answer(call);
        d->finish(call);
        return;
    }
    dir_job *j = calloc(1, sizeof *j);
    if (j != NULL && (j->body = malloc(len ? len : 1)) != NULL) {
        memcpy(j->body, body, len);
        j->len = len;
        j->call = call;
        if (!G.stopping && kh_pool_submit(G.pool, dir_work, dir_done, j) == 0)
            return;
        free(j->body);
    }
    free(j);
    row(d, "directory", "router", "fail", "cannot check it now (out of memory or queue full)");
    answer(call);
    d->finish(call);
}

bool adm_diagnose_router(adm_call *call, void (*finish)(adm_call *call))
{
    adm_diag *d = call->diag;
    if (d == NULL || call->err != KH_OK || call->req == NULL) /* nobody to answer */
        return false;
    d->finish = finish;
    gettimeofday(&d->asked, NULL);
    if (G.stopping ||
        kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_GET, G.set.router, "/v1/directory", NULL,
                        0, 5000, "ROUTER", "router", router_answered, call) != 0) {
        row(d, "router", G.set.router, "fail", "the request could not be started");
        answer(call);
        return false;
    }
    return true;
}
