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

#include "khcrypto.h"
#include "khenv.h"
#include "khhttp.h"
#include "khjson.h"
#include "khlog.h"
#include "khtls.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define CERT_WARN_DAYS 30 /* a certificate ending sooner is a warning */

typedef struct {
    char check[16], target[40], status[8], detail[200];
} diag_row;

struct adm_diag {
    diag_row *rows;
    size_t n, cap;
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
    PGresult *r = kh_db_exec(c, sql, 0, NULL);
    const char *have =
        r != NULL && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : NULL;
    if (r == NULL)
        row(d, "migrations", target, "fail", "cannot read schema_migrations");
    else if (have == NULL)
        row(d, "migrations", target, "fail", "no migration applied (tools/khdb)");
    else if (strcmp(have, expected) == 0)
        row(d, "migrations", target, "ok", "current (%s)", have);
    else if (strcmp(have, expected) < 0)
        row(d, "migrations", target, "fail",
            "behind: last applied %s, this gateway needs %s (tools/khdb migrate or tenant)", have,
            expected);
    else
        row(d, "migrations", target, "warn",
            "newer than this gateway: last applied %s, built for %s (upgrade the gateway)", have,
            expected);
    PQclear(r);
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
        row(d, "certificate", target, left < CERT_WARN_DAYS * 86400 ? "warn" : "ok",
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

void adm_diagnose_work(PGconn *c, adm_call *call)
{
    static const char *const none[] = {NULL};
    if (!adm_query_known(call, none))
        return;
    adm_diag *d = calloc(1, sizeof *d);
    if (d != NULL) {
        d->cap = 24 + 8 * G.ntenants;
        d->rows = calloc(d->cap, sizeof *d->rows);
    }
    if (d == NULL || d->rows == NULL) {
        adm_diag_free(d);
        adm_set_err(call, KH_E_INTERNAL, "out of memory");
        return;
    }
    /* the gateway's own database (the job's connection works: it got here) */
    if (adm_platform_begin(c) == KH_OK) {
        row(d, "database", "gateway", "ok", "reachable");
        migrations(c, d, "gateway", "SELECT max(version) FROM kh.schema_migrations",
                   KH_SQL_PLATFORM_LATEST);
        kh_db_rollback(c);
    } else {
        row(d, "database", "gateway", "fail", "cannot begin a transaction");
    }
    for (size_t i = 0; i < G.ntenants; i++) {
        const gw_tenant *t = &G.tenants[i];
        PGconn *tc = c;
        if (kh_db_tenant_begin(&tc, t->id.code) != KH_OK) {
            row(d, "database", t->id.code, "fail",
                "unreachable or refused (the tenant's database: tenant_db or db)");
        } else {
            row(d, "database", t->id.code, "ok", "reachable");
            migrations(tc, d, t->id.code, "SELECT max(version) FROM schema_migrations",
                       KH_SQL_TENANT_LATEST);
            kh_db_rollback(tc);
        }
    }
    for (size_t i = 0; i < G.ntenants; i++) {
        const gw_tenant *t = &G.tenants[i];
        char target[40];
        snprintf(target, sizeof target, "%s sign", t->id.code);
        cert(d, target, t->id.sign_cert);
        snprintf(target, sizeof target, "%s enc", t->id.code);
        cert(d, target, t->id.enc_cert);
        snprintf(target, sizeof target, "%s business CA", t->id.code);
        cert(d, target, t->business_ca);
        keys(d, t);
    }
    cert(d, "gateway TLS (business)", kh_tls_ctx_cert(G.biz_ctx));
    cert(d, "gateway TLS (peer)", kh_tls_ctx_cert(G.peer_ctx));
    cert(d, "gateway TLS (admin)", kh_tls_ctx_cert(G.admin_ctx));
    cert(d, "gateway TLS (client)", kh_tls_ctx_cert(G.client_ctx));
    call->diag = d; /* the router is asked next, on the event loop */
    call->err = KH_OK;
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

/* Whether two directories say the same: legal-basis version, the
 * organisations and their certificates (not when each was signed). */
static bool same_directory(const kh_dir *a, const kh_dir *b)
{
    if (strcmp(a->pb->legal_basis_version, b->pb->legal_basis_version) != 0 ||
        a->norgs != b->norgs || a->pb->n_legal_basis != b->pb->n_legal_basis)
        return false;
    for (size_t i = 0; i < b->norgs; i++) {
        const kh_org *o = kh_dir_org(a, b->orgs[i].code);
        if (o == NULL || !khc_cert_equal(o->sign_cert, b->orgs[i].sign_cert) ||
            !khc_cert_equal(o->enc_cert, b->orgs[i].enc_cert) ||
            strcmp(o->endpoint, b->orgs[i].endpoint) != 0)
            return false;
    }
    return true;
}

static void router_answered(int status, const uint8_t *body, size_t len, void *arg)
{
    adm_call *call = arg;
    adm_diag *d = call->diag;
    struct timeval now;
    gettimeofday(&now, NULL);
    long ms = (now.tv_sec - d->asked.tv_sec) * 1000 + (now.tv_usec - d->asked.tv_usec) / 1000;
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
    row(d, "router", G.set.router, "ok", "reachable with mutual TLS, answered in %ld ms", ms);
    char err[256] = "";
    kh_dir *fresh = kh_dir_load(body, len, G.national, err, sizeof err);
    if (fresh == NULL) {
        row(d, "directory", "router", "fail", "the router's directory fails its check: %s", err);
    } else {
        int64_t age = (int64_t)time(NULL) - fresh->pb->issued_at;
        row(d, "directory", "router", "ok", "signature valid; issued %lld s ago, legal basis %s",
            (long long)age, fresh->pb->legal_basis_version);
        if (G.dir == NULL)
            row(d, "directory", "in use", "fail", "no directory loaded yet");
        else if (!same_directory(G.dir, fresh))
            row(d, "directory", "in use", "warn",
                "differs from the router's (legal basis %s against %s, %zu organisations "
                "against %zu): restart to take the router's",
                G.dir->pb->legal_basis_version, fresh->pb->legal_basis_version, G.dir->norgs,
                fresh->norgs);
        else
            row(d, "directory", "in use", "ok",
                "the same as the router's (legal basis %s, %zu organisations)",
                G.dir->pb->legal_basis_version, G.dir->norgs);
        kh_dir_free(fresh);
    }
    if (date == 0) {
        row(d, "clock", "router", "warn", "the router's answer has no Date header to compare");
    } else {
        /* the router's second against the middle of the exchange */
        int64_t mid = ((int64_t)d->asked.tv_sec + (int64_t)now.tv_sec) / 2;
        int64_t skew = date - mid;
        int64_t lim = atomic_load(&G.skew);
        row(d, "clock", "router", (skew < 0 ? -skew : skew) <= lim ? "ok" : "fail",
            "%+lld s against the router (max_skew %lld s; the Date header's resolution is 1 s)",
            (long long)skew, (long long)lim);
    }
    answer(call);
    d->finish(call);
}

bool adm_diagnose_router(adm_call *call, void (*finish)(adm_call *call))
{
    adm_diag *d = call->diag;
    if (d == NULL || call->err != KH_OK)
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
