/* gw_tenants.c: the tenants a gateway hosts (gw_tenants.h), at the start and
 * while it runs.
 *
 * A change goes in three steps. On the event loop (SIGHUP's reload): the
 * configuration's list against the tenants hosted now gives those to add
 * and those to retire; an added tenant on a database of its own is routed
 * in the pool (only to a database the pool opened at its start). On a
 * worker: each added tenant's keys and business CA are read from the PKI
 * folder, it must be in the directory in use with the same certificates, its
 * schema must answer through its role with the migrations this gateway was
 * built for, its drop folders are made; then the business listener's next
 * TLS context is built, trusting the CAs of the tenants hosted after the
 * change only. Back on the event loop: the added tenants are published,
 * the retired ones marked, the listener takes the new context for its next
 * connections. A tenant that fails a check is not added and the log and
 * GET /admin/v1/tenants say why; the others go ahead. Every SIGHUP runs a
 * change, even with the same list: its worker also reads the gateway's own
 * TLS files again (gw_tls.c) and, if they changed, the business listener's
 * context is built anew with the others and all are swapped together. Nothing is ever
 * freed while the process runs: a retired tenant and an old context stay
 * for the work and the connections that still hold them. */
#include "gw_tenants.h"
#include "gw_dir.h"
#include "gw_drop.h"
#include "gw_state.h"
#include "gw_tls.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"
#include "khtls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- loading */

static void tenant_free(gw_tenant *t)
{
    if (t == NULL)
        return;
    kh_identity_clear(&t->id);
    khc_cert_free(t->business_ca);
    free(t->db_copy);
    free(t);
}

/* org's keys and business CA from the PKI folder; db: its tenant_db (a
 * copy the tenant takes), NULL for the gateway's db. NULL with err. */
static gw_tenant *tenant_load(const char *org, char *db, char *err, size_t errlen)
{
    char dir[1024], path[1100];
    gw_tenant *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        free(db);
        return NULL;
    }
    t->db_copy = db;
    t->own_db = db != NULL;
    t->db = db != NULL ? db : G.set.db;
    snprintf(dir, sizeof dir, "%s/org/%s", G.set.pki, org);
    snprintf(path, sizeof path, "%s/business-ca.crt", dir);
    if (kh_identity_load(&t->id, org, dir, err, errlen) != 0 ||
        (t->business_ca = khc_load_cert(path, err, errlen)) == NULL) {
        tenant_free(t);
        return NULL;
    }
    return t;
}

static bool listed(const char *org, char (*codes)[8], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(codes[i], org) == 0)
            return true;
    return false;
}

/* A tenant's business CA, with its CRL (fail-closed: a system's certificate
 * is refused when the CRL has expired). */
static int trust(SSL_CTX *ctx, const gw_tenant *t, char *err, size_t errlen)
{
    char crl[1024];
    gw_tls_business_crl(t->id.code, crl);
    return kh_tls_add_ca_cert(ctx, t->business_ca, err, errlen) != 0 ||
                   kh_tls_add_crls(ctx, crl, NULL, err, errlen) != 0
               ? -1
               : 0;
}

/* The business listener's context: the gateway's certificate, trusting the
 * business CAs of the tenants hosted now but those in skip, and of extra. */
static SSL_CTX *biz_ctx_make(gw_tenant *const *extra, size_t nextra, char (*skip)[8], size_t nskip,
                             char *err, size_t errlen)
{
    char cert[1024], key[1024];
    gw_tls_paths(cert, key);
    SSL_CTX *ctx = kh_tls_server_ctx(cert, key, NULL, err, errlen);
    for (size_t i = 0, n = gw_tenant_count(); ctx != NULL && i < n; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t != NULL && !listed(t->id.code, skip, nskip) && trust(ctx, t, err, errlen) != 0) {
            kh_tls_ctx_free(ctx);
            ctx = NULL;
        }
    }
    for (size_t i = 0; ctx != NULL && i < nextra; i++)
        if (trust(ctx, extra[i], err, errlen) != 0) {
            kh_tls_ctx_free(ctx);
            ctx = NULL;
        }
    return ctx;
}

int gw_tenants_load(char *err, size_t errlen)
{
    /* gw_conf.c checked the codes, that none is listed twice, and that
     * there are no more than GW_MAX_TENANTS */
    for (size_t i = 0; i < G.set.tenants.n; i++) {
        const char *org = G.set.tenants.v[i];
        const char *db = gw_conf_tenant_db(&G.set, org);
        char *copy = NULL;
        if (db != G.set.db && (copy = strdup(db)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        gw_tenant *t = tenant_load(org, copy, err, errlen);
        if (t == NULL)
            return -1;
        if (gw_tenant_publish(t) != 0) {
            tenant_free(t);
            snprintf(err, errlen, "no room for tenant %s", org);
            return -1;
        }
    }
    G.biz_ctx = biz_ctx_make(NULL, 0, NULL, 0, err, errlen);
    return G.biz_ctx != NULL ? 0 : -1;
}

const char *gw_schema_verdict(PGconn *c, const char *sql, const char *expected, char *why,
                              size_t whylen)
{
    PGresult *r = kh_db_exec(c, sql, 0, NULL);
    const char *have =
        r != NULL && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : NULL;
    const char *v = "fail";
    if (r == NULL)
        snprintf(why, whylen, "cannot read schema_migrations");
    else if (have == NULL)
        snprintf(why, whylen, "no migration applied (tools/khdb)");
    else if (strcmp(have, expected) == 0) {
        snprintf(why, whylen, "current (%s)", have);
        v = "ok";
    } else if (strcmp(have, expected) < 0) {
        snprintf(why, whylen,
                 "behind: last applied %s, this gateway needs %s (tools/khdb migrate or tenant)",
                 have, expected);
    } else {
        snprintf(why, whylen,
                 "newer than this gateway: last applied %s, built for %s (upgrade the gateway)",
                 have, expected);
        v = "warn";
    }
    PQclear(r);
    return v;
}

/* ------------------------------------------------------------- changes */

typedef struct {
    char org[8];
    char *db;      /* its tenant_db (NULL: the gateway's db); the tenant takes it */
    gw_tenant *t;  /* loaded and checked: to publish */
    char why[320]; /* or why not */
} add_item;

typedef struct {
    add_item *add;
    size_t nadd;
    char (*retire)[8];
    size_t nretire;
    char (*moved)[8]; /* hosted, listed with another tenant_db: left as they are */
    size_t nmoved;
    gw_tls_next tls; /* the gateway's own TLS, if its files changed */
    SSL_CTX *ctx;    /* the business listener's next context */
    bool made;       /* the change was made (else err says why not) */
    char err[256];
} change;

/* The list a reload asked for, copied (the configuration it came from is
 * freed once the reload is applied). */
typedef struct {
    char (*codes)[8];
    char **dbs; /* NULL: the gateway's db */
    size_t n;
} wanted;

static bool busy;
static wanted *pending;   /* the latest list asked while busy */
static SSL_CTX **old_ctx; /* replaced (one per change that added or retired), kept until exit */
static size_t nold;
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;
static char *last_json; /* the last change, as JSON (under last_mu) */
static int64_t changes; /* its number: 1 for the first since the start (under last_mu) */

static void wanted_free(wanted *w)
{
    for (size_t i = 0; w != NULL && i < w->n; i++)
        free(w->dbs[i]);
    if (w != NULL) {
        free(w->codes);
        free(w->dbs);
    }
    free(w);
}

static void change_free(change *ch)
{
    for (size_t i = 0; i < ch->nadd; i++) {
        free(ch->add[i].db);
        tenant_free(ch->add[i].t);
    }
    free(ch->add);
    free(ch->retire);
    free(ch->moved);
    kh_tls_ctx_free(ch->ctx);
    gw_tls_next_clear(&ch->tls);
    free(ch);
}

static void iso(int64_t t, char out[24])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Whether a tenant's business CA's CRL cannot be used (missing, expired,
 * not its CA's): checked alone, so that one tenant's refusal leaves the
 * others of the change to go ahead. */
static bool crl_unusable(const gw_tenant *t, char *err, size_t errlen)
{
    char ca[1024], crl[1024];
    snprintf(ca, sizeof ca, "%s/org/%s/business-ca.crt", G.set.pki, t->id.code);
    gw_tls_business_crl(t->id.code, crl);
    X509_STORE *s = khc_store_from_file(ca, err, errlen);
    bool bad = s == NULL || khc_store_add_crls(s, crl, NULL, err, errlen) != 0;
    khc_store_free(s);
    return bad;
}

static void change_work(PGconn *home, void *arg)
{
    change *ch = arg;
    const kh_dir *dir = gw_dir_hold();
    gw_tenant **ok = calloc(ch->nadd ? ch->nadd : 1, sizeof *ok);
    size_t nok = 0;
    for (size_t i = 0; ok != NULL && i < ch->nadd; i++) {
        add_item *a = &ch->add[i];
        if (a->why[0] != '\0')
            continue;
        gw_tenant *t = tenant_load(a->org, a->db, a->why, sizeof a->why);
        a->db = NULL; /* the tenant's now, or freed */
        if (t == NULL)
            continue;
        char v[200];
        PGconn *c = home; /* kh_db_tenant_begin takes the tenant's database's */
        char crlerr[256];
        if (crl_unusable(t, crlerr, sizeof crlerr)) {
            snprintf(a->why, sizeof a->why,
                     "its business CA's CRL: %s (tools/khpki crl signs it anew)", crlerr);
        } else if (!gw_dir_lists(dir, t)) {
            snprintf(a->why, sizeof a->why,
                     "not in the directory in use, or its certificates there differ from "
                     "pki/org/%s: add it to the router first, then refresh the directory",
                     a->org);
        } else if (kh_db_tenant_begin(&c, a->org) != KH_OK) {
            snprintf(a->why, sizeof a->why, "its database cannot be reached");
        } else {
            const char *verdict =
                gw_schema_verdict(c, GW_TENANT_SCHEMA_SQL, KH_SQL_TENANT_LATEST, v, sizeof v);
            kh_db_rollback(c);
            if (strcmp(verdict, "fail") == 0)
                snprintf(a->why, sizeof a->why,
                         "its schema through its role: %s (make both with tools/khdb tenant)", v);
            else if (strcmp(verdict, "warn") == 0)
                kh_warn("tenants", "tenant %s: schema %s", a->org, v);
        }
        char err[256];
        if (a->why[0] == '\0' && G.set.drop_dir != NULL &&
            gw_drop_tenant(G.set.drop_dir, a->org, err, sizeof err) != 0)
            snprintf(a->why, sizeof a->why, "drop folder: %s", err);
        if (a->why[0] != '\0') {
            tenant_free(t);
            continue;
        }
        a->t = ok[nok++] = t;
    }
    gw_dir_drop(dir);
    /* the gateway's certificate, key or CAs replaced: every listener's
     * context anew, the business listener's with them */
    gw_tls_prepare(&ch->tls);
    bool tls = ch->tls.changed && ch->tls.err[0] == '\0';
    if (ok == NULL)
        snprintf(ch->err, sizeof ch->err, "out of memory");
    else if (ch->tls.changed && !tls) /* its files bad: nothing is built from them */
        snprintf(ch->err, sizeof ch->err, "the gateway's TLS files: %s", ch->tls.err);
    else if (nok > 0 || ch->nretire > 0 || tls)
        ch->ctx = biz_ctx_make(ok, nok, ch->retire, ch->nretire, ch->err, sizeof ch->err);
    free(ok);
}

static void start_change(wanted *w);

/* The outcome, as the log says it and as GET /admin/v1/tenants shows it. */
static void record(const change *ch, int64_t at)
{
    char when[24];
    iso(at, when);
    pthread_mutex_lock(&last_mu);
    int64_t seq = ++changes;
    pthread_mutex_unlock(&last_mu);
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kint(&w, "seq", seq);
    khjw_kstr(&w, "at", when);
    khjw_kstr(&w, "error", ch->made ? NULL : ch->err);
    khjw_key(&w, "added");
    khjw_arr(&w);
    for (size_t i = 0; i < ch->nadd; i++)
        if (ch->add[i].why[0] == '\0' && ch->made)
            khjw_str(&w, ch->add[i].org);
    khjw_arr_end(&w);
    khjw_key(&w, "retired");
    khjw_arr(&w);
    for (size_t i = 0; ch->made && i < ch->nretire; i++)
        khjw_str(&w, ch->retire[i]);
    khjw_arr_end(&w);
    khjw_key(&w, "refused");
    khjw_arr(&w);
    for (size_t i = 0; i < ch->nadd; i++)
        if (ch->add[i].why[0] != '\0') {
            khjw_obj(&w);
            khjw_kstr(&w, "tenant", ch->add[i].org);
            khjw_kstr(&w, "reason", ch->add[i].why);
            khjw_obj_end(&w);
        }
    for (size_t i = 0; i < ch->nmoved; i++) {
        khjw_obj(&w);
        khjw_kstr(&w, "tenant", ch->moved[i]);
        khjw_kstr(&w, "reason",
                  "hosted, and listed with another tenant_db: a tenant's database does not "
                  "change while the gateway runs (retire it, then add it again, or restart)");
        khjw_obj_end(&w);
    }
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    char *json = khjw_finish(&w, NULL);
    pthread_mutex_lock(&last_mu);
    free(last_json);
    last_json = json;
    pthread_mutex_unlock(&last_mu);
}

/* Each added tenant that passed its checks gets why instead. */
static void refuse_all(change *ch, const char *why)
{
    for (size_t i = 0; i < ch->nadd; i++)
        if (ch->add[i].why[0] == '\0') {
            snprintf(ch->add[i].why, sizeof ch->add[i].why, "%s", why);
            tenant_free(ch->add[i].t);
            ch->add[i].t = NULL;
        }
}

/* The business listener takes ctx for its next connections; the one it
 * had is kept (a worker or a connection may still read it). */
static bool swap_ctx(SSL_CTX *ctx)
{
    SSL_CTX **more = realloc(old_ctx, (nold + 1) * sizeof *more);
    if (more == NULL)
        return false;
    old_ctx = more;
    if (kh_http_set_ctx(G.biz_http, ctx) != 0)
        return false;
    old_ctx[nold++] = atomic_exchange(&G.biz_ctx, ctx);
    return true;
}

static void change_done(void *arg)
{
    change *ch = arg;
    int64_t now = (int64_t)time(NULL);
    if (G.stopping) { /* the listener is gone: nothing to change */
        change_free(ch);
        return;
    }
    for (size_t i = 0; i < ch->nmoved; i++)
        kh_error("tenants",
                 "tenant %s: its tenant_db cannot change while the gateway runs; left as it is",
                 ch->moved[i]);
    /* a directory installed while the worker checked may have lost the
     * tenant (gw_dir.c's rule holds only for the tenants published) */
    bool any = ch->nretire > 0;
    for (size_t i = 0; i < ch->nadd; i++) {
        add_item *a = &ch->add[i];
        if (a->t == NULL)
            continue;
        if (!gw_dir_lists(G.dir, a->t)) {
            snprintf(a->why, sizeof a->why,
                     "the directory installed meanwhile no longer lists it with these "
                     "certificates");
            tenant_free(a->t);
            a->t = NULL;
        } else {
            any = true;
        }
    }
    bool tls = ch->tls.changed && ch->tls.err[0] == '\0';
    if (ch->tls.changed && !tls)
        kh_error("tls", "TLS unchanged, the certificates in use stay: %s", ch->tls.err);
    if ((any || tls) && ch->ctx == NULL) {
        kh_error("tenants", "%s unchanged: the business listener's TLS context: %s",
                 tls ? "tenants and TLS" : "tenants", ch->err);
        refuse_all(ch, ch->err);
    } else if (!any && !tls) {
        snprintf(ch->err, sizeof ch->err, "nothing changed");
    } else if (tls && !gw_tls_install(&ch->tls)) { /* first: it fails as a whole */
        snprintf(ch->err, sizeof ch->err, "the listeners cannot take new TLS contexts: %s",
                 ch->tls.err);
        kh_error("tenants", "tenants and TLS unchanged: %s", ch->err);
        refuse_all(ch, ch->err);
    } else if (!swap_ctx(ch->ctx)) {
        snprintf(ch->err, sizeof ch->err, "the business listener cannot take a new TLS context");
        kh_error("tenants", "tenants unchanged%s: %s",
                 tls ? " (the other listeners took the new TLS files)" : "", ch->err);
        refuse_all(ch, ch->err);
    } else {
        ch->ctx = NULL; /* the listener's */
        ch->made = any;
        if (!any)
            snprintf(ch->err, sizeof ch->err, "nothing changed");
        if (tls)
            kh_info("tls",
                    "TLS reloaded: the gateway's certificate, key, CAs and CRLs read again; new "
                    "connections use them, an open one is checked again at its next request");
        for (size_t i = 0; i < ch->nadd; i++) {
            add_item *a = &ch->add[i];
            if (a->t == NULL)
                continue;
            a->t->added_at = now;
            if (gw_tenant_publish(a->t) != 0) { /* start_change counted the slots */
                snprintf(a->why, sizeof a->why, "every one of the %d tenant slots is taken",
                         GW_MAX_TENANTS);
                tenant_free(a->t);
                a->t = NULL;
                continue;
            }
            kh_info("tenants", "tenant %s added: keys, business CA, schema and directory checked%s",
                    a->org, a->t->own_db ? "; its own database" : "");
            a->t = NULL; /* hosted */
        }
        for (size_t i = 0; i < ch->nretire; i++) {
            gw_tenant *t = gw_tenant_find(ch->retire[i]);
            if (t == NULL)
                continue;
            t->retired_at = now;
            atomic_store(&t->retired, true);
            kh_info("tenants",
                    "tenant %s retired: its new work is refused, its work in flight finishes",
                    t->id.code);
        }
    }
    for (size_t i = 0; i < ch->nadd; i++)
        if (ch->add[i].why[0] != '\0')
            kh_error("tenants", "tenant %s not added: %s", ch->add[i].org, ch->add[i].why);
    if (ch->nadd > 0 || ch->nretire > 0 || ch->nmoved > 0) /* a TLS reload alone is not one */
        record(ch, now);
    change_free(ch);
    busy = false;
    if (pending != NULL) {
        wanted *w = pending;
        pending = NULL;
        start_change(w);
    }
}

/* The tenant's database as a list names it: NULL for the gateway's db. */
static bool same_db(const gw_tenant *t, const char *db)
{
    return t->own_db ? db != NULL && strcmp(db, t->db) == 0 : db == NULL;
}

static void start_change(wanted *w)
{
    change *ch = calloc(1, sizeof *ch);
    if (ch == NULL || (ch->add = calloc(w->n ? w->n : 1, sizeof *ch->add)) == NULL ||
        (ch->retire = calloc(GW_MAX_TENANTS, sizeof *ch->retire)) == NULL ||
        (ch->moved = calloc(w->n ? w->n : 1, sizeof *ch->moved)) == NULL) {
        kh_error("tenants", "tenants unchanged: out of memory");
        if (ch != NULL)
            change_free(ch);
        wanted_free(w);
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        const gw_tenant *t = gw_tenant_find(w->codes[i]);
        if (t != NULL) {
            if (!same_db(t, w->dbs[i]))
                snprintf(ch->moved[ch->nmoved++], sizeof *ch->moved, "%s", w->codes[i]);
            continue;
        }
        add_item *a = &ch->add[ch->nadd++];
        snprintf(a->org, sizeof a->org, "%s", w->codes[i]);
        a->db = w->dbs[i];
        w->dbs[i] = NULL;
        /* a slot for each before anything is trusted (retired ones keep theirs) */
        if (gw_tenant_count() + ch->nadd > GW_MAX_TENANTS)
            snprintf(a->why, sizeof a->why,
                     "every one of the %d tenant slots is taken (retired tenants keep theirs "
                     "until a restart)",
                     GW_MAX_TENANTS);
        else if (a->db != NULL && kh_pool_route(G.pool, a->org, a->db) != 0)
            snprintf(a->why, sizeof a->why,
                     "its tenant_db is a database this gateway did not open at its start, or "
                     "the tenant was on another database before: restart the gateway to add it");
        else if (a->db == NULL && kh_pool_route(G.pool, a->org, G.set.db) != 0)
            snprintf(a->why, sizeof a->why,
                     "the tenant was on another database before: restart the gateway to add it");
    }
    for (size_t i = 0, n = gw_tenant_count(); i < n; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t != NULL && !listed(t->id.code, w->codes, w->n))
            snprintf(ch->retire[ch->nretire++], sizeof *ch->retire, "%s", t->id.code);
    }
    wanted_free(w);
    /* the worker also reads the gateway's TLS files again (gw_tls.c) */
    gw_tls_begin(&ch->tls);
    if (ch->nadd > 0 || ch->nretire > 0)
        kh_info("tenants", "tenants changing: %zu to add, %zu to retire", ch->nadd, ch->nretire);
    busy = true;
    if (kh_pool_submit(G.pool, change_work, change_done, ch) != 0) {
        busy = false;
        kh_error("tenants",
                 "tenants and TLS unchanged: the database queue is full; send SIGHUP again");
        change_free(ch);
    }
}

void gw_tenants_refresh(void)
{
    if (busy) /* the change under way reads the files: the next tick will too */
        return;
    wanted *w = calloc(1, sizeof *w);
    size_t n = gw_tenant_count();
    if (w == NULL || (w->codes = calloc(n ? n : 1, sizeof *w->codes)) == NULL ||
        (w->dbs = calloc(n ? n : 1, sizeof *w->dbs)) == NULL) {
        kh_error("tls", "CRLs not read again: out of memory");
        wanted_free(w);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue;
        snprintf(w->codes[w->n], sizeof w->codes[w->n], "%s", t->id.code);
        if (t->own_db && (w->dbs[w->n] = strdup(t->db)) == NULL) {
            kh_error("tls", "CRLs not read again: out of memory");
            wanted_free(w);
            return;
        }
        w->n++;
    }
    start_change(w); /* the same tenants: only the TLS files are read again */
}

static struct event *refresh_ev; /* crl_refresh_s */

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (G.biz_http != NULL && !G.stopping)
        gw_tenants_refresh();
}

void gw_tenants_schedule(int interval_s)
{
    if (G.base == NULL) /* -t, or before the event loop: start_listeners arms it */
        return;
    if (refresh_ev == NULL &&
        (refresh_ev = event_new(G.base, -1, EV_PERSIST, on_refresh, NULL)) == NULL) {
        kh_error("tls", "no timer for the CRL refresh: out of memory");
        return;
    }
    struct timeval tv = {.tv_sec = interval_s};
    evtimer_add(refresh_ev, &tv);
}

void gw_tenants_reload(const gw_settings *fresh)
{
    if (G.biz_http == NULL || G.pool == NULL) {
        kh_warn("tenants", "tenants unchanged: the gateway is not serving yet");
        return;
    }
    wanted *w = calloc(1, sizeof *w);
    size_t n = fresh->tenants.n;
    if (w == NULL || (w->codes = calloc(n ? n : 1, sizeof *w->codes)) == NULL ||
        (w->dbs = calloc(n ? n : 1, sizeof *w->dbs)) == NULL) {
        kh_error("tenants", "tenants unchanged: out of memory");
        wanted_free(w);
        return;
    }
    for (size_t i = 0; i < n; i++, w->n++) {
        const char *db = gw_conf_tenant_db(fresh, fresh->tenants.v[i]);
        snprintf(w->codes[i], sizeof w->codes[i], "%s", fresh->tenants.v[i]);
        if (db != fresh->db && (w->dbs[i] = strdup(db)) == NULL) {
            kh_error("tenants", "tenants unchanged: out of memory");
            wanted_free(w);
            return;
        }
    }
    if (busy) { /* after the change under way, from what it left */
        wanted_free(pending);
        pending = w;
        return;
    }
    start_change(w);
}

/* -------------------------------------------------------------- report */

void gw_tenants_write(khj_writer *w)
{
    khjw_key(w, "tenants");
    khjw_arr(w);
    for (size_t i = 0, n = gw_tenant_count(); i < n; i++) {
        const gw_tenant *t = gw_tenant_slot(i);
        bool retired = atomic_load(&t->retired);
        char when[24];
        khjw_obj(w);
        khjw_kstr(w, "code", t->id.code);
        khjw_kstr(w, "state", retired ? "retired" : "hosted");
        /* never the conninfo: it may hold a password */
        khjw_kstr(w, "database", t->own_db ? "tenant_db" : "db");
        if (t->added_at != 0)
            iso(t->added_at, when);
        khjw_kstr(w, "added_at", t->added_at != 0 ? when : "start");
        if (retired)
            iso(t->retired_at, when);
        khjw_kstr(w, "retired_at", retired ? when : NULL);
        khjw_obj_end(w);
    }
    khjw_arr_end(w);
    khjw_key(w, "last_change");
    pthread_mutex_lock(&last_mu);
    if (last_json != NULL)
        khjw_raw(w, last_json, strlen(last_json));
    else
        khjw_null(w);
    pthread_mutex_unlock(&last_mu);
}

void gw_tenants_free(void)
{
    for (size_t i = 0, n = gw_tenant_count(); i < n; i++)
        tenant_free(gw_tenant_slot(i));
    for (size_t i = 0; i < nold; i++)
        kh_tls_ctx_free(old_ctx[i]);
    free(old_ctx);
    kh_tls_ctx_free(atomic_load(&G.biz_ctx));
    if (refresh_ev != NULL)
        event_free(refresh_ev);
    refresh_ev = NULL;
    wanted_free(pending);
    free(last_json);
}
