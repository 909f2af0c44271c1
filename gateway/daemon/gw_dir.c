/* gw_dir.c: the directory in use, its versions and its refresh (gw_dir.h).
 *
 * A fetched directory is installed only if it verifies (kh_dir_load: the
 * router's signature, its certificate chained to the national CA with
 * O=ROUTER) and may replace the one in use: the same spec version, issued
 * after it (an older directory, however well signed, is a replay: refused)
 * and not in the future beyond max_skew, and every hosted tenant still
 * listed with the certificates this gateway holds. The bytes of the version
 * in use fetched again are no news (only checked_at moves). Verifying is a
 * chain check per organisation: done on a worker, installing on the event
 * loop.
 *
 * Versions: each has a count of holds; the version in use holds one itself.
 * Replaced, it is retired and freed when its last hold is dropped. One mutex
 * guards the list and G.dir's replacement; the event loop, the only writer
 * of G.dir, reads it without it. */
#include "gw_dir.h"
#include "gw_state.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khlog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct version version;
struct version {
    kh_dir *d;
    int holds;
    version *next;
};

typedef struct waiter waiter;
struct waiter {
    gw_dir_done_fn done;
    void *arg;
    waiter *next;
};

static struct {
    pthread_mutex_t mu;
    version *versions; /* the one in use first, then the retired ones held */
    gw_dir_status st;
    struct event *timer;
    atomic_int interval_s; /* directory_refresh_s in force (SIGHUP changes it) */
    bool fetching;
    waiter *waiting; /* called back when the fetch under way ends */
    waiter *later;   /* asked while it was under way: a fetch of their own next */
} D = {.mu = PTHREAD_MUTEX_INITIALIZER};

const kh_dir *gw_dir_hold(void)
{
    pthread_mutex_lock(&D.mu);
    const kh_dir *d = NULL;
    if (D.versions != NULL && D.versions->d == G.dir) {
        D.versions->holds++;
        d = G.dir;
    }
    pthread_mutex_unlock(&D.mu);
    return d;
}

void gw_dir_drop(const kh_dir *d)
{
    if (d == NULL)
        return;
    kh_dir *gone = NULL;
    pthread_mutex_lock(&D.mu);
    for (version **p = &D.versions; *p != NULL; p = &(*p)->next) {
        version *v = *p;
        if (v->d != d)
            continue;
        if (--v->holds == 0) {
            gone = v->d;
            *p = v->next;
            free(v);
        }
        break;
    }
    pthread_mutex_unlock(&D.mu);
    kh_dir_free(gone); /* outside the lock: nobody can reach it any more */
}

bool gw_dir_lists(const kh_dir *d, const gw_tenant *t)
{
    const kh_org *o = d != NULL ? kh_dir_org(d, t->id.code) : NULL;
    return o != NULL && khc_cert_equal(o->sign_cert, t->id.sign_cert) &&
           khc_cert_equal(o->enc_cert, t->id.enc_cert);
}

/* Why fresh may not replace cur (NULL: it may). */
static const char *refusal(const kh_dir *cur, const kh_dir *fresh, char *why, size_t whylen)
{
    if (kh_dir_successor_why(cur, fresh, (int64_t)time(NULL), atomic_load(&G.skew), why, whylen) !=
        NULL)
        return why;
    for (size_t i = 0, nt = gw_tenant_count(); i < nt; i++) {
        const gw_tenant *t = gw_tenant_at(i);
        if (t == NULL)
            continue; /* retired */
        if (!gw_dir_lists(fresh, t)) {
            snprintf(why, whylen,
                     "tenant %s is missing from it or its certificates differ from ours",
                     t->id.code);
            return why;
        }
    }
    return NULL;
}

static void arm(void);

bool gw_dir_install(kh_dir *fresh, char *why, size_t whylen)
{
    uint8_t md[32];
    char hex[65] = "?";
    if (khc_sha256(fresh->raw, fresh->rawlen, NULL, 0, md) == 0)
        khc_hex(md, sizeof md, hex);
    version *v = calloc(1, sizeof *v);
    if (v == NULL) {
        snprintf(why, whylen, "out of memory");
        kh_dir_free(fresh);
        return false;
    }
    if (refusal(G.dir, fresh, why, whylen) != NULL) {
        free(v);
        kh_dir_free(fresh);
        return false;
    }
    v->d = fresh;
    v->holds = 1; /* in use */
    kh_dir *gone = NULL;
    pthread_mutex_lock(&D.mu);
    version *old = D.versions;
    bool first = old == NULL;
    v->next = old;
    D.versions = v;
    G.dir = fresh;
    if (old != NULL && --old->holds == 0) { /* nothing held it: freed now */
        gone = old->d;
        v->next = old->next;
        free(old);
    }
    memcpy(D.st.sha256, hex, sizeof hex);
    D.st.issued_at = fresh->pb->issued_at;
    D.st.installed_at = D.st.checked_at = (int64_t)time(NULL);
    D.st.installs++;
    D.st.last_error[0] = '\0';
    pthread_mutex_unlock(&D.mu);
    kh_dir_free(gone);
    if (first)
        arm(); /* the periodic refresh, from the first version on */
    kh_info("dir", "directory installed: issued at %lld, legal-basis version %s, %zu organisations",
            (long long)fresh->pb->issued_at, fresh->pb->legal_basis_version, fresh->norgs);
    return true;
}

void gw_dir_status_get(gw_dir_status *s)
{
    pthread_mutex_lock(&D.mu);
    *s = D.st;
    s->retired_held = 0;
    for (const version *v = D.versions; v != NULL; v = v->next)
        s->retired_held += v->d != G.dir;
    pthread_mutex_unlock(&D.mu);
}

/* ------------------------------------------------------------ refreshing */

typedef struct {
    uint8_t *body;
    size_t len;
    kh_dir *fresh;
    char err[200];
} load_job;

/* The refresh ended: its outcome recorded, its waiters called back. Those
 * that asked while it was under way asked after it began: another fetch is
 * made for them. */
static int fetch(void);

static void finish(bool changed, kh_err e, const char *error)
{
    pthread_mutex_lock(&D.mu);
    D.st.checked_at = (int64_t)time(NULL);
    snprintf(D.st.last_error, sizeof D.st.last_error, "%s%s%s", e == KH_OK ? "" : kh_err_code(e),
             e == KH_OK ? "" : ": ", error);
    pthread_mutex_unlock(&D.mu);
    if (e != KH_OK)
        kh_warn("dir", "directory not refreshed: %s %s", kh_err_code(e), error);
    waiter *w = D.waiting;
    D.waiting = D.later;
    D.later = NULL;
    D.fetching = false;
    while (w != NULL) {
        waiter *next = w->next;
        if (w->done != NULL)
            w->done(changed, e, error, w->arg);
        free(w);
        w = next;
    }
    if (D.waiting != NULL && !D.fetching)
        (void)fetch();
}

static void load_work(PGconn *c, void *arg)
{
    load_job *j = arg;
    (void)c;
    j->fresh = kh_dir_load(j->body, j->len, G.national, j->err, sizeof j->err);
}

static void load_done(void *arg)
{
    load_job *j = arg;
    char why[200] = "", msg[240] = "";
    bool changed = false;
    if (j->fresh == NULL)
        snprintf(msg, sizeof msg, "the router's directory fails its check: %s", j->err);
    else if (!(changed = gw_dir_install(j->fresh, why, sizeof why)))
        snprintf(msg, sizeof msg, "the router's directory is not taken: %s", why);
    free(j->body);
    free(j);
    finish(changed, msg[0] ? KH_E_DIRECTORY : KH_OK, msg);
}

static void arrived(int status, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    if (status != 200) {
        finish(false, KH_E_UPSTREAM,
               status == 0 ? "router unreachable" : "router answered another status than 200");
        return;
    }
    if (G.dir != NULL && len == G.dir->rawlen && memcmp(body, G.dir->raw, len) == 0) {
        finish(false, KH_OK, ""); /* the version in use */
        return;
    }
    load_job *j = calloc(1, sizeof *j);
    if (j != NULL && (j->body = malloc(len ? len : 1)) != NULL) {
        memcpy(j->body, body, len);
        j->len = len;
        if (!G.stopping && kh_pool_submit(G.pool, load_work, load_done, j) == 0)
            return;
        free(j->body);
    }
    free(j);
    finish(false, KH_E_OVERLOADED, "cannot check it now (queue full)");
}

/* Asks the router for the waiters in D.waiting. */
static int fetch(void)
{
    D.fetching = true;
    if (G.stopping ||
        kh_http_request(G.base, G.client_ctx, EVHTTP_REQ_GET, G.set.router, "/v1/directory", NULL,
                        0, 5000, "ROUTER", "router", arrived, NULL) != 0) {
        /* the waiters are called back from here: the caller must expect it */
        arrived(0, NULL, 0, NULL);
    }
    return 0;
}

int gw_dir_refresh(gw_dir_done_fn done, void *arg)
{
    waiter *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -1;
    w->done = done;
    w->arg = arg;
    if (D.fetching) { /* after the fetch under way, one of its own */
        w->next = D.later;
        D.later = w;
        return 0;
    }
    w->next = D.waiting;
    D.waiting = w;
    return fetch();
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!G.stopping && !D.fetching)
        (void)gw_dir_refresh(NULL, NULL);
}

/* The timer armed with the interval in force, once a directory is in use. */
static void arm(void)
{
    if (D.timer == NULL && G.dir != NULL)
        D.timer = event_new(G.base, -1, EV_PERSIST, on_timer, NULL);
    if (D.timer == NULL)
        return;
    event_del(D.timer);
    int s = atomic_load(&D.interval_s);
    if (s > 0) {
        struct timeval tv = {s, 0};
        event_add(D.timer, &tv);
    }
}

void gw_dir_schedule(int interval_s)
{
    atomic_store(&D.interval_s, interval_s);
    arm();
}

int gw_dir_interval(void)
{
    return atomic_load(&D.interval_s);
}

void gw_dir_shutdown(void)
{
    if (D.timer != NULL)
        event_free(D.timer);
    D.timer = NULL;
    /* a fetch under way never ends now: its waiters are told so */
    for (waiter *lists[2] = {D.waiting, D.later}, **l = lists; l < lists + 2; l++)
        while (*l != NULL) {
            waiter *w = *l;
            *l = w->next;
            if (w->done != NULL)
                w->done(false, KH_E_UPSTREAM, "the gateway is stopping", w->arg);
            free(w);
        }
    D.waiting = D.later = NULL;
    pthread_mutex_lock(&D.mu);
    version *v = D.versions;
    D.versions = NULL;
    G.dir = NULL;
    pthread_mutex_unlock(&D.mu);
    while (v != NULL) {
        version *next = v->next;
        kh_dir_free(v->d);
        free(v);
        v = next;
    }
}
