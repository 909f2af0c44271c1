/* khrouter: the national query router simulator. It publishes a signed
 * directory, issues link codes (a keyed hash of the national reference per
 * organisation, so the same person has unrelated codes at different
 * organisations), authorises every query against the legal-basis table,
 * translates the subject's link code, forwards the query to the answering
 * gateway, relays the answer, and keeps its own record of each message. It
 * never sees the personal data of queries: payloads are sealed end to end.
 * For records disclosure (flow 5, khrouter_portal.c) it acts for the national
 * portal: it originates the requests and the answers are sealed to it. */
#include "khid.h"
#include "kakehashi.pb-c.h"
#include "khconf.h"
#include "khcrypto.h"
#include "khenv.h"
#include "khhttp.h"
#include "khlog.h"
#include "khpool.h"
#include "khseen.h"
#include "khrouter_ep.h"
#include "khrouter_tls.h"
#include "khrouter_portal.h"
#include "khtls.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char code[8], org_class[24], name[64], gateway[KHR_EP_LEN];
    int ep[KHR_MAX_ORG_EP]; /* its gateway's endpoints (khrouter_ep.h) */
    char hp[KHR_MAX_ORG_EP][KHR_EP_LEN];
    char *endpoints[KHR_MAX_ORG_EP]; /* hp, for the directory */
    size_t nep;
    unsigned rr; /* round robin over ep */
} r_org;

/* The organisations and the signed directory made of them and of the
 * legal-basis table: one version, replaced whole when SIGHUP rebuilds it.
 * Every thread reads the current one through R.world (atomic). A replaced
 * version is kept until the router stops: a request on its way or a portal
 * lookup on a worker may still hold its organisations, and a reload is an
 * operator's act (a few kilobytes each), so nothing in one is ever freed
 * under a reader. */
typedef struct r_world {
    r_org *orgs;
    size_t norgs;
    kh_dir *dir; /* our own directory, parsed back: used for legal checks and certificates */
    uint8_t content[32]; /* SHA-256 of the directory without its issue time */
    struct r_world *older;
} r_world;

/* Every option's value once the file is read (strings point into R.conf). */
typedef struct {
    const char *listen, *pki, *db, *secret, *capture;
    kh_opt_list orgs, portals;
    int max_skew, msg_ttl, max_body, timeout_ms, db_workers, log_level, probe_ms, crl_refresh_s;
} r_settings;

static struct {
    struct event_base *base;
    kh_conf *conf;
    const char *pki, *capture;
    r_settings set; /* every option (the table below) */
    /* the options that may change at run time (SIGHUP), read by every thread */
    atomic_int skew, ttl, timeout_ms;
    int max_body;
    SSL_CTX *server_ctx, *client_ctx;
    X509_STORE *national;
    kh_identity id;
    uint8_t secret[32];
    _Atomic(r_world *) world;
    bool rebuilding; /* a SIGHUP's directory is being built on a worker */
    kh_pool *pool;
    struct evhttp *http;
    struct event *sig_ev[3]; /* SIGTERM, SIGINT, SIGHUP */
    struct event *sweep_ev;  /* purges old replay registrations (khseen.h) */
    bool sweeping;
    bool stopping;
    const char *portals[16]; /* CNs of the portal certificates served */
    size_t nportals;
    khr_portal portal;
} R;

static bool portal_name(const char *v, char *why, size_t whylen)
{
    if (khr_portal_name_ok(v))
        return true;
    snprintf(why, whylen, "'%s': expected a name of [a-z0-9-]{1,32}", v);
    return false;
}

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

#define OFF(f) offsetof(r_settings, f)
/* The router's options, declared once: --help, defaults, bounds, -t and
 * SIGHUP all come from here (gateway/core/khconf.h). */
static const kh_opt options[] = {
    {"listen", KH_OPT_ADDR, KH_OPT_REQUIRED, NULL, 0, 0, NULL, OFF(listen), NULL,
     "where gateways connect (mutual TLS)"},
    {"pki", KH_OPT_STR, KH_OPT_REQUIRED, NULL, 0, 900, NULL, OFF(pki), NULL,
     "folder made by tools/khpki"},
    {"db", KH_OPT_STR, KH_OPT_REQUIRED | KH_OPT_SECRET, NULL, 0, 1024, NULL, OFF(db), NULL,
     "the router's database (schema router)"},
    {"secret", KH_OPT_STR, KH_OPT_REQUIRED, NULL, 0, 900, NULL, OFF(secret), NULL,
     "file of 32+ random bytes, mode 0600: the link-code key"},
    {"org", KH_OPT_LIST, KH_OPT_REQUIRED | KH_OPT_RELOAD, NULL, 0, 256, NULL, OFF(orgs), NULL,
     "CODE,CLASS,NAME,GATEWAY,HOST:PORT[,HOST:PORT...]: an organisation and the peer "
     "endpoints of its gateway's nodes (at most 8; envelopes are spread over those that are "
     "ready); SIGHUP rebuilds the directory with the organisations then listed"},
    {"capture_dir", KH_OPT_STR, 0, NULL, 0, 900, NULL, OFF(capture), NULL,
     "keep each authenticated envelope as received (SENDER-MSGID.envelope)"},
    {"portal", KH_OPT_LIST, 0, NULL, 0, 16, NULL, OFF(portals), portal_name,
     "a national portal served on POST /v1/portal/disclose: its client certificate has "
     "O=PORTAL, CN=NAME (none: every disclosure request is refused)"},
    {"max_skew", KH_OPT_INT, KH_OPT_RELOAD, "120", 0, 3600, NULL, OFF(max_skew), NULL,
     "allowed clock skew, seconds"},
    {"msg_ttl", KH_OPT_INT, KH_OPT_RELOAD, "300", 10, 86400, NULL, OFF(msg_ttl), NULL,
     "validity of a message, seconds"},
    {"max_body", KH_OPT_INT, 0, "1048576", 1024, 64 << 20, NULL, OFF(max_body), NULL,
     "largest request body, bytes"},
    {"timeout_ms", KH_OPT_INT, KH_OPT_RELOAD, "30000", 100, 120000, NULL, OFF(timeout_ms), NULL,
     "wait for the answering gateway"},
    {"probe_ms", KH_OPT_INT, 0, "2000", 200, 60000, NULL, OFF(probe_ms), NULL,
     "interval of the readiness probes (GET /v1/ready) of every gateway endpoint, ms"},
    {"db_workers", KH_OPT_INT, 0, "4", 1, 64, NULL, OFF(db_workers), NULL,
     "database worker threads"},
    {"crl_refresh_s", KH_OPT_INT, KH_OPT_RELOAD, "300", 1, 86400, NULL, OFF(crl_refresh_s), NULL,
     "read the national CA's CRL (pki/national-ca.crl) and the router's TLS files again this "
     "often, seconds (and on SIGHUP): a revoked gateway certificate is refused from then on; "
     "every certificate of the CA is refused once its CRL has expired (fail-closed)"},
    {"log_level", KH_OPT_ENUM, KH_OPT_RELOAD, "info", 0, 0, log_levels, OFF(log_level), NULL,
     "least severe level logged"},
    {NULL, KH_OPT_STR, 0, NULL, 0, 0, NULL, 0, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: khrouter -c FILE [-t]\n"
               "  -c, --config FILE  configuration file (key = value lines)\n"
               "  -t, --check        check every option, build the directory, exit\n"
               "  -h, --help         this text\n"
               "Signals: SIGTERM or SIGINT stop; SIGHUP reads FILE again and applies the options\n"
               "marked [reloadable] if the whole file is valid and no other option changed.\n"
               "Options in FILE:\n");
    kh_conf_usage(f, options);
}

/* The options that may change at run time, put to use. */
static void apply_reloadable(const r_settings *s)
{
    static const kh_log_level levels[] = {KH_LOG_DEBUG, KH_LOG_INFO, KH_LOG_WARN, KH_LOG_ERROR};
    kh_log_set_level(levels[s->log_level]);
    R.skew = s->max_skew;
    R.ttl = s->msg_ttl;
    R.timeout_ms = s->timeout_ms;
}

static r_world *world(void)
{
    return atomic_load(&R.world);
}

static const kh_dir *dir_now(void)
{
    return world()->dir;
}

static r_org *org_in(r_world *w, const char *code)
{
    for (size_t i = 0; code && i < w->norgs; i++)
        if (strcmp(w->orgs[i].code, code) == 0)
            return &w->orgs[i];
    return NULL;
}

static r_org *org_find(const char *code)
{
    return org_in(world(), code);
}

static void world_free(r_world *w)
{
    while (w != NULL) {
        r_world *older = w->older;
        kh_dir_free(w->dir);
        free(w->orgs);
        free(w);
        w = older;
    }
}

/* ------------------------------------------------------------- directory */

/* The org options into w's organisations (copied: list may go away). Their
 * endpoints join the readiness probes only when w is put in place
 * (attach_endpoints). */
static int parse_orgs(const kh_opt_list *list, r_world *w, char *err, size_t errlen)
{
    const char *const *vals = list->v;
    size_t n = list->n;
    w->orgs = calloc(n ? n : 1, sizeof *w->orgs);
    if (w->orgs == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        r_org *o = &w->orgs[i];
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", vals[i]);
        enum { MAXF = 4 + KHR_MAX_ORG_EP + 1 };
        char *f[MAXF], *save = NULL, *p = buf;
        int k = 0;
        for (char *tok; k < MAXF && (tok = strtok_r(p, ",", &save)); p = NULL)
            f[k++] = tok;
        if (k < 5 || k > 4 + KHR_MAX_ORG_EP || !kh_id_org(f[0]) ||
            strlen(f[1]) >= sizeof o->org_class || strlen(f[2]) >= sizeof o->name ||
            strlen(f[3]) >= sizeof o->gateway || f[3][0] == '\0') {
            snprintf(err, errlen,
                     "org '%.300s': expected CODE,CLASS,NAME,GATEWAY,HOST:PORT[,HOST:PORT...] "
                     "(at most %d endpoints)",
                     vals[i], KHR_MAX_ORG_EP);
            return -1;
        }
        if (org_in(w, f[0]) != NULL) {
            snprintf(err, errlen, "org %s is configured twice", f[0]);
            return -1;
        }
        snprintf(o->code, sizeof o->code, "%s", f[0]);
        snprintf(o->org_class, sizeof o->org_class, "%s", f[1]);
        snprintf(o->name, sizeof o->name, "%s", f[2]);
        snprintf(o->gateway, sizeof o->gateway, "%s", f[3]);
        for (int j = 4; j < k; j++) {
            char host[128];
            uint16_t port;
            bool ok = strlen(f[j]) < KHR_EP_LEN &&
                      kh_hostport(f[j], host, sizeof host, &port) == 0 && kh_host_numeric(host);
            for (size_t m = 0; ok && m < o->nep; m++)
                ok = strcmp(o->hp[m], f[j]) != 0;
            if (!ok) {
                snprintf(err, errlen,
                         "org %s: endpoint '%.100s' is not a numeric HOST:PORT or is "
                         "listed twice",
                         f[0], f[j]);
                return -1;
            }
            snprintf(o->hp[o->nep], sizeof o->hp[o->nep], "%s", f[j]);
            o->endpoints[o->nep] = o->hp[o->nep];
            o->nep++;
        }
        w->norgs++;
    }
    return 0;
}

/* Each endpoint of w's organisations in the probes' table (khr_ep_add),
 * those new added: all, or none if the table has no room for them. On the
 * event loop's thread, just before w is put in place. */
static int attach_endpoints(r_world *w, char *err, size_t errlen)
{
    int missing = 0;
    for (size_t i = 0; i < w->norgs; i++)
        for (size_t j = 0; j < w->orgs[i].nep; j++)
            missing += khr_ep_find(w->orgs[i].gateway, w->orgs[i].hp[j]) < 0;
    if (missing > KHR_MAX_EP - khr_ep_count()) {
        snprintf(err, errlen, "%d endpoints more than the %d the router probes", missing,
                 KHR_MAX_EP - khr_ep_count());
        return -1;
    }
    for (size_t i = 0; i < w->norgs; i++)
        for (size_t j = 0; j < w->orgs[i].nep; j++)
            if ((w->orgs[i].ep[j] = khr_ep_add(w->orgs[i].gateway, w->orgs[i].hp[j])) < 0) {
                snprintf(err, errlen, "endpoint %s: cannot be probed", w->orgs[i].hp[j]);
                return -1;
            }
    return 0;
}

static int read_pem(const char *path, ProtobufCBinaryData *out, char *err, size_t errlen)
{
    if (khc_read_file(path, &out->data, &out->len) != 0) {
        snprintf(err, errlen, "cannot read %.400s", path);
        return -1;
    }
    return 0;
}

/* Builds and signs w's directory from its organisations, their certificates
 * in the PKI folder, and the legal-basis table read on c; issued at the
 * current second, or at not_before if that is later (a gateway takes only a
 * directory issued after the one it has). At start-up before the event
 * loop, and on a database worker when SIGHUP rebuilds it. */
static int build_directory(PGconn *c, r_world *w, int64_t not_before, char *err, size_t errlen)
{
    int rc = -1;
    PGresult *res = NULL, *ver = NULL, *fres = NULL;
    Kh__ItemFields *ifs = NULL, **ifptr = NULL;
    char **names = NULL;
    Kh__Directory d = KH__DIRECTORY__INIT;
    Kh__OrgEntry *entries = calloc(w->norgs ? w->norgs : 1, sizeof *entries);
    Kh__OrgEntry **eptr = calloc(w->norgs ? w->norgs : 1, sizeof *eptr);
    Kh__LegalBasisRow *rows = NULL, **rptr = NULL;
    uint8_t *dbytes = NULL, *sig = NULL, *signed_bytes = NULL;
    size_t dlen, slen, sblen;
    char path[1024];
    if (entries == NULL || eptr == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    res = PQexec(c, "SELECT id, asker_class, procedure, provider_class, items FROM "
                    "router.legal_basis ORDER BY id");
    /* the version names the table's content, so gateways can tell tables apart */
    ver = PQexec(c, "SELECT 'lb-' || left(md5(coalesce(string_agg(id || asker_class || procedure "
                    "|| provider_class || items::text, ';' ORDER BY id), '') || coalesce((SELECT "
                    "string_agg(legal_basis || item_code || field, ';' ORDER BY legal_basis, "
                    "item_code, field) FROM router.legal_basis_field), '')), 12) "
                    "FROM router.legal_basis");
    /* minimisation: the fields each row allows, per item */
    fres = PQexec(c, "SELECT legal_basis, item_code, field FROM router.legal_basis_field "
                     "ORDER BY legal_basis, item_code, field");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQresultStatus(ver) != PGRES_TUPLES_OK ||
        PQresultStatus(fres) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "cannot read router.legal_basis: %s", PQerrorMessage(c));
        goto out;
    }
    int nrows = PQntuples(res);
    rows = calloc((size_t)nrows + 1, sizeof *rows);
    rptr = calloc((size_t)nrows + 1, sizeof *rptr);
    if (!entries || !eptr || !rows || !rptr)
        goto out;
    for (int i = 0; i < nrows; i++) {
        Kh__LegalBasisRow *r = &rows[i];
        kh__legal_basis_row__init(r);
        r->id = PQgetvalue(res, i, 0);
        r->asker_class = PQgetvalue(res, i, 1);
        r->procedure = PQgetvalue(res, i, 2);
        r->provider_class = PQgetvalue(res, i, 3);
        /* items come as a text[] literal {TK001,TK002}: split in place */
        char *lit = PQgetvalue(res, i, 4);
        size_t n = 0;
        char **items = calloc(KH_MAX_ITEMS, sizeof *items);
        if (items == NULL)
            goto out;
        for (char *save = NULL, *tok = strtok_r(lit, "{},", &save); tok && n < KH_MAX_ITEMS;
             tok = strtok_r(NULL, "{},", &save))
            items[n++] = tok;
        r->items = items;
        r->n_items = n;
        rptr[i] = r;
    }
    /* ItemFields: one per (row, item) run of fres; names point into fres */
    int nf = PQntuples(fres);
    ifs = calloc((size_t)nf + 1, sizeof *ifs);
    ifptr = calloc((size_t)nf + 1, sizeof *ifptr);
    names = calloc((size_t)nf + 1, sizeof *names);
    if (!ifs || !ifptr || !names)
        goto out;
    for (int k = 0, nifs = 0; k < nf; k++) {
        const char *row = PQgetvalue(fres, k, 0), *item = PQgetvalue(fres, k, 1);
        names[k] = PQgetvalue(fres, k, 2);
        if (k > 0 && strcmp(row, PQgetvalue(fres, k - 1, 0)) == 0 &&
            strcmp(item, PQgetvalue(fres, k - 1, 1)) == 0) {
            ifs[nifs - 1].n_names++;
            continue;
        }
        Kh__ItemFields *f = &ifs[nifs];
        kh__item_fields__init(f);
        f->item_code = (char *)item;
        f->names = &names[k];
        f->n_names = 1;
        ifptr[nifs++] = f;
        for (int i = 0; i < nrows; i++) {
            Kh__LegalBasisRow *r = &rows[i];
            if (strcmp(r->id, row) != 0)
                continue;
            if (r->n_fields == 0)
                r->fields = &ifptr[nifs - 1];
            r->n_fields++; /* (row, item) runs of one row are adjacent */
        }
    }
    for (size_t i = 0; i < w->norgs; i++) {
        const r_org *o = &w->orgs[i];
        Kh__OrgEntry *e = &entries[i];
        kh__org_entry__init(e);
        e->code = (char *)o->code;
        e->name = (char *)o->name;
        e->org_class = (char *)o->org_class;
        e->endpoint = o->endpoints[0];
        e->endpoints = (char **)o->endpoints;
        e->n_endpoints = o->nep;
        snprintf(path, sizeof path, "%s/org/%s/sign.crt", R.pki, o->code);
        if (read_pem(path, &e->sign_cert, err, errlen) != 0)
            goto out;
        snprintf(path, sizeof path, "%s/org/%s/enc.crt", R.pki, o->code);
        if (read_pem(path, &e->enc_cert, err, errlen) != 0)
            goto out;
        eptr[i] = e;
    }
    d.spec_version = KH_SPEC_VERSION;
    d.legal_basis_version = PQgetvalue(ver, 0, 0);
    d.orgs = eptr;
    d.n_orgs = w->norgs;
    d.legal_basis = rptr;
    d.n_legal_basis = (size_t)nrows;
    snprintf(path, sizeof path, "%s/router/sign.crt", R.pki);
    if (read_pem(path, &d.router_sign_cert, err, errlen) != 0)
        goto out;
    snprintf(path, sizeof path, "%s/router/enc.crt", R.pki);
    if (read_pem(path, &d.router_enc_cert, err, errlen) != 0)
        goto out;
    /* what it says but when: a rebuild that changes nothing is no new version */
    d.issued_at = 0;
    if (kh_pb_pack(&d.base, &dbytes, &dlen) != 0 ||
        khc_sha256(dbytes, dlen, NULL, 0, w->content) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    free(dbytes);
    dbytes = NULL;
    d.issued_at = (int64_t)time(NULL);
    if (d.issued_at < not_before)
        d.issued_at = not_before;
    if (kh_pb_pack(&d.base, &dbytes, &dlen) != 0 ||
        khc_sign(R.id.sign_key, dbytes, dlen, &sig, &slen) != 0)
        goto out;
    Kh__SignedDirectory sd = KH__SIGNED_DIRECTORY__INIT;
    sd.directory.data = dbytes;
    sd.directory.len = dlen;
    sd.sig.data = sig;
    sd.sig.len = slen;
    if (kh_pb_pack(&sd.base, &signed_bytes, &sblen) != 0)
        goto out;
    /* parse it back exactly as a gateway would: proves it verifies */
    w->dir = kh_dir_load(signed_bytes, sblen, R.national, err, errlen);
    if (w->dir != NULL)
        rc = 0;
out:
    for (size_t i = 0; entries && i < w->norgs; i++) {
        free(entries[i].sign_cert.data);
        free(entries[i].enc_cert.data);
    }
    for (int i = 0; rows && res && i < PQntuples(res); i++)
        free(rows[i].items);
    free(d.router_sign_cert.data);
    free(d.router_enc_cert.data);
    free(entries);
    free(eptr);
    free(rows);
    free(rptr);
    free(dbytes);
    free(sig);
    free(signed_bytes);
    PQclear(res);
    PQclear(ver);
    PQclear(fres);
    free(ifs);
    free(ifptr);
    free(names);
    return rc;
}

static void on_directory(struct evhttp_request *req, void *arg)
{
    const kh_dir *d = dir_now();
    kh_http_reply_raw(req, 200, d->raw, d->rawlen);
}

/* --- SIGHUP: the organisations and the directory rebuilt while running --- */

typedef struct {
    r_world *w;
    int rc;
    char err[512];
} r_rebuild;

static void rebuild_work(PGconn *c, void *arg)
{
    r_rebuild *b = arg;
    b->rc = build_directory(c, b->w, (int64_t)dir_now()->pb->issued_at + 1, b->err, sizeof b->err);
}

static void rebuild_done(void *arg)
{
    r_rebuild *b = arg;
    R.rebuilding = false;
    if (b->rc == 0 && memcmp(b->w->content, world()->content, sizeof b->w->content) == 0) {
        kh_info("main", "directory unchanged: the organisations and the legal-basis table are "
                        "those of the version in use");
        world_free(b->w);
    } else if (b->rc != 0 || attach_endpoints(b->w, b->err, sizeof b->err) != 0) {
        kh_error("main", "directory not rebuilt, organisations unchanged: %s", b->err);
        world_free(b->w);
    } else {
        b->w->older = world();
        atomic_store(&R.world, b->w);
        kh_info("main", "directory rebuilt: %zu organisations, %zu legal-basis rows, issued %lld",
                b->w->norgs, b->w->dir->pb->n_legal_basis, (long long)b->w->dir->pb->issued_at);
    }
    free(b);
}

/* A new version of the organisations (list: the org options just read) and
 * of the directory (the legal-basis table read again), built on a worker
 * and put in place on the event loop; on any error the version in use stays. */
static void rebuild(const kh_opt_list *list)
{
    char err[512];
    r_world *w = calloc(1, sizeof *w);
    r_rebuild *b = calloc(1, sizeof *b);
    if (R.rebuilding) {
        kh_error("main", "directory not rebuilt: the previous SIGHUP's is still being built "
                         "(send SIGHUP again once it is logged)");
    } else if (w == NULL || b == NULL) {
        kh_error("main", "directory not rebuilt: out of memory");
    } else if (parse_orgs(list, w, err, sizeof err) != 0) {
        kh_error("main", "directory not rebuilt, organisations unchanged: %s", err);
    } else {
        b->w = w;
        if (kh_pool_submit(R.pool, rebuild_work, rebuild_done, b) == 0) {
            R.rebuilding = true;
            return;
        }
        kh_error("main", "directory not rebuilt: the database queue is full");
    }
    world_free(w);
    free(b);
}

/* -------------------------------------------------------------- messages */

typedef struct {
    struct evhttp_request *req;
    Kh__Envelope *env;
    Kh__Header *h;
    char hex[2 * KH_MSG_ID_LEN + 1];
    kh_err err;
    char msg[200];
    const char *outcome;
    /* link codes */
    char person_key[65];
    char link_code[KH_ID_LINK_CODE_LEN + 1];
    char target_link[KH_ID_LINK_CODE_LEN + 1];
    uint8_t *reply;
    size_t replylen;
    int relay_status;
    uint8_t *raw; /* the envelope as received */
    size_t rawlen;
    uint8_t digest[32]; /* of the payload: equal on a retransmission */
    bool resent;
    /* forwarding (forward, send_next): the envelope as re-signed, the
     * recipient's organisation, the endpoints tried (bit j: to->ep[j]) */
    uint8_t *fwd;
    size_t fwdlen;
    r_org *to;
    const kh_org *prov; /* its directory entry, of the version the query was checked under */
    int pos;
    uint32_t tried;
    int64_t sent_ms;
    kh_http_done_cb cb;
} r_call;

static void r_on_close(struct evhttp_connection *conn, void *arg)
{
    ((r_call *)arg)->req = NULL;
}

static struct evhttp_request *r_take(r_call *rc)
{
    struct evhttp_request *req = rc->req;
    if (req)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    rc->req = NULL;
    return req;
}

static void r_free(r_call *rc)
{
    kh_env_free(rc->env, rc->h);
    khc_wipe(rc->person_key, sizeof rc->person_key);
    free(rc->reply);
    free(rc->raw);
    free(rc->fwd);
    free(rc);
}

static void hmac_hex(const char *label, const char *a, const char *b, char *out, size_t hexlen)
{
    char in[256];
    uint8_t mac[32];
    char hex[65] = "";
    snprintf(in, sizeof in, "%s:%s:%s", label, a, b ? b : "");
    if (khc_hmac_sha256(R.secret, sizeof R.secret, (const uint8_t *)in, strlen(in), mac) != 0) {
        /* fail closed: an empty code matches nothing and passes no check */
        kh_error("main", "HMAC failed: no %s code derived", label);
        out[0] = '\0';
    } else {
        khc_hex(mac, sizeof mac, hex);
        snprintf(out, hexlen + 1, "%.*s", (int)hexlen, hex);
    }
    khc_wipe(in, sizeof in);
    khc_wipe(mac, sizeof mac);
    khc_wipe(hex, sizeof hex);
}

/* The router's key for a person (link codes and the portal module), and
 * where an organisation is reached (the portal module). */
static void person_key_of(const char *resident_code, char out[65])
{
    hmac_hex("person", resident_code, NULL, out, 64);
}

static bool portal_route(const char *org, const char **gateway, const char **endpoint)
{
    r_org *o = org_find(org);
    if (o == NULL)
        return false;
    int j = khr_ep_pick(o->ep, o->nep, &o->rr, 0, false);
    *gateway = o->gateway;
    *endpoint = khr_ep_hostport(o->ep[j < 0 ? 0 : j]);
    return true;
}

/* in_tx: in the open transaction, deferred (kh_db_defer); else on its own
 * (autocommit), at once. */
static kh_err r_record(PGconn *c, r_call *rc, const char *outcome, bool in_tx)
{
    const Kh__Header *h = rc->h;
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    size_t pos = (size_t)snprintf(lit, sizeof lit, "{");
    for (size_t i = 0; i < h->n_items; i++)
        pos += (size_t)snprintf(lit + pos, sizeof lit - pos, "%s%s", i ? "," : "", h->items[i]);
    snprintf(lit + pos, sizeof lit - pos, "}");
    const char *type =
        protobuf_c_enum_descriptor_get_value(&kh__msg_type__descriptor, h->type)
            ? protobuf_c_enum_descriptor_get_value(&kh__msg_type__descriptor, h->type)->name
            : "?";
    char irt[2 * KH_MSG_ID_LEN + 1] = "";
    if (h->in_reply_to.len == KH_MSG_ID_LEN)
        kh_msgid_hex(&h->in_reply_to, irt);
    const char *p[9] = {rc->hex,
                        type,
                        h->sender,
                        h->recipient,
                        h->procedure,
                        lit,
                        outcome,
                        kh_err_code(rc->err),
                        irt[0] ? irt : NULL};
    static const char sql[] = "INSERT INTO router.query_record (msg_id, type, sender, recipient, "
                              "procedure, items, outcome, code, in_reply_to) VALUES ($1,$2,$3,$4,"
                              "$5,$6::text[],$7,$8,$9)";
    if (in_tx) /* its outcome comes with the commit, in the same round trip */
        return kh_db_defer(c, sql, 9, p);
    PGresult *r = kh_db_exec(c, sql, 9, p);
    if (r == NULL)
        return KH_E_DB;
    PQclear(r);
    return KH_OK;
}

/* Records a refusal or outcome and replies (rc->reply if OK, else the refusal). */
static void finish_work(PGconn *c, void *arg)
{
    r_call *rc = arg;
    /* one INSERT: its own transaction (autocommit), committed and durable
     * like any other before the reply leaves, in one round trip, not three */
    if (c != NULL && r_record(c, rc, rc->outcome, false) == KH_OK)
        return;
    kh_warn("record", "cannot record message %s", rc->hex);
}

static void finish_done(void *arg)
{
    r_call *rc = arg;
    struct evhttp_request *req = r_take(rc);
    if (req != NULL) {
        if (rc->err == KH_OK)
            kh_http_reply_raw(req, 200, rc->reply, rc->replylen);
        else if (rc->relay_status)
            kh_http_reply_raw(req, rc->relay_status, rc->reply, rc->replylen);
        else
            kh_http_reply_err(req, rc->err, "%s", rc->msg);
    }
    kh_info("route", "message %s %s %s -> %s: %s %s", rc->hex, rc->h ? rc->h->procedure : "",
            rc->h ? rc->h->sender : "", rc->h ? rc->h->recipient : "", rc->outcome,
            kh_err_code(rc->err));
    r_free(rc);
}

static void finish(r_call *rc, kh_err e, const char *outcome, const char *msg)
{
    rc->err = e;
    rc->outcome = outcome;
    if (msg)
        snprintf(rc->msg, sizeof rc->msg, "%s", msg);
    if (rc->h == NULL || kh_pool_submit(R.pool, finish_work, finish_done, rc) != 0)
        finish_done(rc);
}

/* --- link codes --- */

/* Registers a message id that must come once (no retransmission allowed):
 * KH_OK the first time, KH_E_REPLAY after. */
static kh_err seen_once(PGconn *c, r_call *rc)
{
    kh_seen_verdict v;
    kh_err e = kh_seen_register(c, KH_SEEN_ROUTER, rc->h->sender, rc->hex, rc->h->expires_at, NULL,
                                &v, NULL, NULL);
    return e == KH_OK && v != KH_SEEN_NEW ? KH_E_REPLAY : e;
}

static void lc_work(PGconn *c, void *arg)
{
    r_call *rc = arg;
    rc->err = kh_db_begin(c);
    if (rc->err == KH_OK)
        rc->err = seen_once(c, rc);
    if (rc->err == KH_OK) {
        const char *p[3] = {rc->h->sender, rc->link_code, rc->person_key};
        PGresult *r = kh_db_exec(c,
                                 "INSERT INTO router.linkcode (org, link_code, person_key) VALUES "
                                 "($1,$2,$3) ON CONFLICT DO NOTHING",
                                 3, p);
        rc->err = r ? KH_OK : KH_E_DB;
        PQclear(r);
    }
    rc->outcome = rc->err == KH_OK ? "issued" : "refused";
    if (r_record(c, rc, rc->outcome, true) != KH_OK && rc->err == KH_OK)
        rc->err = KH_E_DB;
    if (rc->err == KH_OK || rc->err == KH_E_REPLAY) {
        if (kh_db_commit(c) != KH_OK)
            rc->err = KH_E_DB;
    } else {
        kh_db_rollback(c);
    }
}

static void lc_done(void *arg)
{
    r_call *rc = arg;
    const r_org *o = org_find(rc->h->sender);
    const kh_org *dorg = kh_dir_org(dir_now(), rc->h->sender);
    if (rc->err == KH_OK) {
        uint8_t id[KH_MSG_ID_LEN];
        Kh__Header h;
        Kh__LinkCodeAnswerBody b = KH__LINK_CODE_ANSWER_BODY__INIT;
        uint8_t *body = NULL;
        size_t blen = 0;
        if (o && dorg &&
            kh_header_init(&h, id, KH__MSG_TYPE__LINKCODE_ANSWER, "ROUTER", rc->h->sender, "ROUTER",
                           R.ttl) == 0) {
            h.in_reply_to = rc->h->msg_id;
            b.msg_id = h.msg_id;
            b.in_reply_to = rc->h->msg_id;
            b.recipient = rc->h->sender;
            b.link_code = rc->link_code;
            if (kh_pb_pack(&b.base, &body, &blen) != 0 ||
                kh_env_seal(&h, &R.id, body, blen, dorg->enc_cert, &rc->reply, &rc->replylen) != 0)
                rc->err = KH_E_INTERNAL;
            khc_free_secret(body, blen);
        } else {
            rc->err = KH_E_INTERNAL;
        }
    }
    khc_wipe(rc->link_code, sizeof rc->link_code);
    struct evhttp_request *req = r_take(rc);
    if (req) {
        if (rc->err == KH_OK)
            kh_http_reply_raw(req, 200, rc->reply, rc->replylen);
        else
            kh_http_reply_err(req, rc->err, "%s", kh_err_get(rc->err)->meaning);
    }
    kh_info("route", "link-code request %s from %s: %s", rc->hex, rc->h->sender,
            kh_err_code(rc->err));
    r_free(rc);
}

static void handle_linkcode(r_call *rc, const kh_org *sender)
{
    uint8_t *body = NULL;
    size_t blen = 0;
    if (strcmp(rc->h->recipient, "ROUTER") != 0) {
        finish(rc, KH_E_WRONG_RECIPIENT, "refused", "link-code requests go to the router");
        return;
    }
    kh_err e = kh_env_open(rc->env, &R.id, R.national, sender->sign_cert, &body, &blen);
    if (e != KH_OK) {
        finish(rc, e, "refused", kh_err_get(e)->meaning);
        return;
    }
    Kh__LinkCodeRequestBody *b = (Kh__LinkCodeRequestBody *)kh_pb_unpack(
        &kh__link_code_request_body__descriptor, body, blen, NULL, NULL, 0);
    khc_free_secret(body, blen);
    if (b == NULL || b->msg_id.len != KH_MSG_ID_LEN ||
        memcmp(b->msg_id.data, rc->h->msg_id.data, KH_MSG_ID_LEN) != 0 ||
        strcmp(b->sender, rc->h->sender) != 0) {
        if (b)
            kh__link_code_request_body__free_unpacked(b, NULL);
        finish(rc, KH_E_SPLICE, "refused", "payload does not repeat this header");
        return;
    }
    if (!kh_id_resident_code(b->resident_code)) {
        khc_wipe(b->resident_code, strlen(b->resident_code));
        kh__link_code_request_body__free_unpacked(b, NULL);
        finish(rc, KH_E_BAD_RESIDENT_CODE, "refused", "resident code is not 11 digits");
        return;
    }
    /* person key: stable per person, never leaves the router; link code:
     * derived per organisation from it, so codes at two organisations are
     * unrelated to anyone without the router's secret */
    person_key_of(b->resident_code, rc->person_key);
    hmac_hex("link", rc->h->sender, rc->person_key, rc->link_code, KH_ID_LINK_CODE_LEN);
    khc_wipe(b->resident_code, strlen(b->resident_code));
    kh__link_code_request_body__free_unpacked(b, NULL);
    if (kh_pool_submit(R.pool, lc_work, lc_done, rc) != 0) {
        rc->err = KH_E_OVERLOADED;
        lc_done(rc);
    }
}

/* --- queries --- */

static void q_forwarded(int status, const uint8_t *buf, size_t len, void *arg);

/* Registers a query's message id with its payload digest: KH_OK if new or
 * a retransmission (rc->resent), KH_E_REPLAY if seen with another payload. */
static kh_err q_seen(PGconn *c, r_call *rc)
{
    kh_seen_verdict v;
    kh_err e = kh_seen_register(c, KH_SEEN_ROUTER, rc->h->sender, rc->hex, rc->h->expires_at,
                                rc->digest, &v, NULL, NULL);
    if (e != KH_OK)
        return e;
    rc->resent = v == KH_SEEN_AGAIN;
    return v == KH_SEEN_REPLAY ? KH_E_REPLAY : KH_OK;
}

/* The next gateway refused (HTTP status and a kh.Status): the refusal is
 * recorded under outcome and relayed unchanged to the sender. */
static void relay_refusal(r_call *rc, int status, const uint8_t *buf, size_t len,
                          const char *outcome)
{
    char code[32], why[160];
    kh_http_parse_status(buf, len, code, sizeof code, why, sizeof why);
    kh_err e = kh_err_from_code(code);
    rc->reply = malloc(len ? len : 1);
    if (rc->reply != NULL) {
        memcpy(rc->reply, buf, len);
        rc->replylen = len;
        rc->relay_status = status;
    }
    finish(rc, e == KH_E__COUNT || e == KH_OK ? KH_E_UPSTREAM : e, outcome, why);
}

/* In the open transaction (rc->err says how the checks went): translates the
 * subject's link code from the sender's to the recipient's, records the
 * message as forwarded (or refused) and commits. */
static void translate_and_record(PGconn *c, r_call *rc)
{
    if (rc->err == KH_OK) {
        const char *p[2] = {rc->h->sender, rc->h->subject};
        PGresult *r = kh_db_exec(c,
                                 "SELECT person_key FROM router.linkcode WHERE org = $1 AND "
                                 "link_code = $2",
                                 2, p);
        if (r == NULL)
            rc->err = KH_E_DB;
        else if (PQntuples(r) != 1)
            rc->err = KH_E_UNKNOWN_LINK_CODE;
        else
            snprintf(rc->person_key, sizeof rc->person_key, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    if (rc->err == KH_OK)
        hmac_hex("link", rc->h->recipient, rc->person_key, rc->target_link, KH_ID_LINK_CODE_LEN);
    rc->outcome = rc->err != KH_OK ? "refused" : rc->resent ? "forwarded_again" : "forwarded";
    if (rc->err == KH_E_DB) {
        kh_db_rollback(c);
        return;
    }
    if (r_record(c, rc, rc->outcome, true) != KH_OK || kh_db_commit(c) != KH_OK) {
        kh_db_rollback(c);
        rc->err = KH_E_DB;
    }
}

static bool send_next(r_call *rc, bool up_only);

/* After translate_and_record: replies a refusal, or forwards the envelope to
 * the recipient's gateway with the header re-signed by the router and the
 * recipient's link code; cb gets the gateway's reply. */
static void forward(r_call *rc, const char *what, kh_http_done_cb cb)
{
    if (rc->err != KH_OK) {
        struct evhttp_request *req = r_take(rc);
        if (req)
            kh_http_reply_err(req, rc->err, "%s", kh_err_get(rc->err)->meaning);
        kh_info("route", "%s %s %s -> %s refused %s", what, rc->hex, rc->h->sender,
                rc->h->recipient, kh_err_code(rc->err));
        r_free(rc);
        return;
    }
    if (R.stopping) {
        finish(rc, KH_E_UPSTREAM, "failed", "router stopping");
        return;
    }
    rc->to = org_find(rc->h->recipient);
    char *orig_subject = rc->h->subject, *orig_signer = rc->h->signer;
    rc->h->subject = rc->target_link;
    rc->h->signer = "ROUTER";
    int ok = kh_env_pack(rc->h, R.id.sign_key, rc->env->payload.data, rc->env->payload.len,
                         &rc->fwd, &rc->fwdlen);
    rc->h->subject = orig_subject;
    rc->h->signer = orig_signer;
    rc->cb = cb;
    rc->sent_ms = kh_mono_ms();
    if (ok != 0 || rc->to == NULL || !send_next(rc, false))
        finish(rc, KH_E_INTERNAL, "failed", "cannot forward");
}

/* Sends rc->fwd to the next endpoint of rc->to not tried yet (up_only: one
 * the probes find ready), within what is left of the time allowed
 * (rc->sent_ms + timeout_ms). false if there is none or the request cannot
 * be made. */
static bool send_next(r_call *rc, bool up_only)
{
    int64_t left = R.timeout_ms - (kh_mono_ms() - rc->sent_ms);
    int j = khr_ep_pick(rc->to->ep, rc->to->nep, &rc->to->rr, rc->tried, up_only);
    if (j < 0 || left < 100)
        return false;
    rc->pos = j;
    rc->tried |= 1u << j;
    return kh_http_request(R.base, R.client_ctx, EVHTTP_REQ_POST, khr_ep_hostport(rc->to->ep[j]),
                           "/v1/envelope", rc->fwd, rc->fwdlen, (int)left, "KH-GW", rc->to->gateway,
                           rc->cb, rc) == 0;
}

/* The same envelope to the next node of the same gateway, if at most half
 * of the time allowed has gone (a send that timed out is not sent again: the
 * asker would wait twice): after no answer (status 0: the endpoint is taken
 * out until a probe finds it ready; any node left is tried), or after a 503
 * (that node is busy or not ready: a node the probes find ready is tried;
 * with none, the 503 is relayed). Safe: a gateway answers a retransmitted
 * envelope with the reply it kept, and refuses it while the first is in
 * progress. */
static bool failed_over(r_call *rc, int status)
{
    if (status != 0 && status != 503)
        return false;
    if (status == 0)
        khr_ep_failed(rc->to->ep[rc->pos], "no answer to an envelope");
    if (R.stopping || kh_mono_ms() - rc->sent_ms > R.timeout_ms / 2 || !send_next(rc, status != 0))
        return false;
    kh_info("nodes", "%s sent again to %s", rc->hex, khr_ep_hostport(rc->to->ep[rc->pos]));
    return true;
}

static void q_work(PGconn *c, void *arg)
{
    r_call *rc = arg;
    rc->err = kh_db_begin(c);
    if (rc->err == KH_OK)
        rc->err = q_seen(c, rc);
    translate_and_record(c, rc);
}

static void q_checked(void *arg)
{
    forward(arg, "query", q_forwarded);
}

static void q_forwarded(int status, const uint8_t *buf, size_t len, void *arg)
{
    r_call *rc = arg;
    char why[160];
    if (failed_over(rc, status))
        return;
    if (status == 0) {
        finish(rc, KH_E_UPSTREAM, "failed", "answering gateway unreachable");
        return;
    }
    if (status != 200) {
        relay_refusal(rc, status, buf, len, "refused_by_provider");
        return;
    }
    Kh__Envelope *aenv = NULL;
    Kh__Header *ah = NULL;
    const kh_org *prov = rc->prov; /* kept: SIGHUP may have removed it since */
    kh_err e = kh_env_parse(buf, len, &aenv, &ah, why, sizeof why);
    if (e != KH_OK) {
        finish(rc, KH_E_UPSTREAM, "failed", "answer unreadable");
        return;
    }
    if (strcmp(ah->signer, rc->h->recipient) != 0 || strcmp(ah->sender, rc->h->recipient) != 0 ||
        kh_env_verify(aenv, prov->sign_cert) != KH_OK) {
        kh_env_free(aenv, ah);
        finish(rc, KH_E_HEADER_SIG, "failed", "answer header not signed by the provider");
        return;
    }
    if (ah->type != KH__MSG_TYPE__ANSWER || strcmp(ah->recipient, rc->h->sender) != 0 ||
        ah->in_reply_to.len != KH_MSG_ID_LEN ||
        memcmp(ah->in_reply_to.data, rc->h->msg_id.data, KH_MSG_ID_LEN) != 0 ||
        strcmp(ah->subject, rc->target_link) != 0) {
        kh_env_free(aenv, ah);
        finish(rc, KH_E_SPLICE, "failed", "answer does not answer this query");
        return;
    }
    /* a held query: the router records it as pending; the decision comes later */
    bool pending = strcmp(ah->answer_state, "PENDING") == 0;
    /* back to the asker's link code, signed by the router */
    char *s = ah->subject, *g = ah->signer;
    ah->subject = rc->h->subject;
    ah->signer = "ROUTER";
    int ok = kh_env_pack(ah, R.id.sign_key, aenv->payload.data, aenv->payload.len, &rc->reply,
                         &rc->replylen);
    ah->subject = s;
    ah->signer = g;
    kh_env_free(aenv, ah);
    finish(rc, ok == 0 ? KH_OK : KH_E_INTERNAL,
           ok != 0   ? "failed"
           : pending ? "pending"
                     : "answered",
           NULL);
}

static void handle_query(r_call *rc)
{
    /* one callback on the event loop: the organisations and the directory
     * read here are of one version */
    const r_org *to = org_find(rc->h->recipient);
    rc->prov = kh_dir_org(dir_now(), rc->h->recipient);
    if (to == NULL || rc->prov == NULL) {
        finish(rc, KH_E_UNKNOWN_ORG, "refused", "recipient is not in the directory");
        return;
    }
    kh_err e = kh_dir_legal(dir_now(), rc->h->sender, rc->h->procedure, rc->h->recipient,
                            rc->h->items, rc->h->n_items, NULL);
    if (e != KH_OK) {
        finish(rc, e, "refused", "no legal-basis row allows this query");
        return;
    }
    if (!kh_id_link_code(rc->h->subject)) {
        finish(rc, KH_E_BAD_REQUEST, "refused", "header.subject is not a link code");
        return;
    }
    if (kh_pool_submit(R.pool, q_work, q_checked, rc) != 0)
        finish(rc, KH_E_OVERLOADED, "refused", "database queue full");
}

/* --- deferred answers --- */

static void d_forwarded(int status, const uint8_t *buf, size_t len, void *arg);

/* A deferred answer is forwarded only for a query recorded as pending from
 * its recipient to its sender, and only one per query. */
static void d_work(PGconn *c, void *arg)
{
    r_call *rc = arg;
    char irt[2 * KH_MSG_ID_LEN + 1];
    kh_msgid_hex(&rc->h->in_reply_to, irt);
    rc->err = kh_db_begin(c);
    if (rc->err == KH_OK)
        rc->err = q_seen(c, rc);
    if (rc->err == KH_OK) {
        /* the pending record is locked: two deferred answers for one query
         * are decided one after the other, and the second sees the first */
        char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
        size_t pos = (size_t)snprintf(lit, sizeof lit, "{");
        for (size_t i = 0; i < rc->h->n_items && pos < sizeof lit; i++)
            pos += (size_t)snprintf(lit + pos, sizeof lit - pos, "%s%s", i ? "," : "",
                                    rc->h->items[i]);
        if (pos < sizeof lit)
            snprintf(lit + pos, sizeof lit - pos, "}");
        const char *p[5] = {irt, rc->h->recipient, rc->h->sender, rc->h->procedure, lit};
        PGresult *r = kh_db_exec(c,
                                 "SELECT 1 FROM router.query_record WHERE msg_id = $1 AND type = "
                                 "'QUERY' AND sender = $2 AND recipient = $3 AND procedure = $4 "
                                 "AND items = $5::text[] AND outcome = 'pending' FOR UPDATE",
                                 5, p);
        if (r == NULL)
            rc->err = KH_E_DB;
        else if (PQntuples(r) == 0)
            rc->err = KH_E_UNEXPECTED_ANSWER;
        PQclear(r);
    }
    if (rc->err == KH_E_UNEXPECTED_ANSWER) {
        /* forwarded, but its outcome (pending) not recorded yet: the answer
         * overtook the record; KH-5003 makes the provider's outbox retry */
        const char *p[3] = {irt, rc->h->recipient, rc->h->sender};
        PGresult *r = kh_db_exec(c,
                                 "SELECT count(*) FILTER (WHERE outcome LIKE 'forwarded%'), "
                                 "count(*) FILTER (WHERE outcome NOT LIKE 'forwarded%') FROM "
                                 "router.query_record WHERE msg_id = $1 AND type = 'QUERY' AND "
                                 "sender = $2 AND recipient = $3",
                                 3, p);
        if (r != NULL && strcmp(PQgetvalue(r, 0, 0), "0") != 0 &&
            strcmp(PQgetvalue(r, 0, 1), "0") == 0)
            rc->err = KH_E_OVERLOADED;
        PQclear(r);
    }
    if (rc->err == KH_OK) {
        const char *p[2] = {irt, rc->hex};
        PGresult *r = kh_db_exec(c,
                                 "SELECT count(*) FROM router.query_record WHERE in_reply_to = $1 "
                                 "AND type = 'ANSWER' AND outcome IN ('forwarded', "
                                 "'forwarded_again', 'delivered') AND msg_id <> $2",
                                 2, p);
        if (r == NULL)
            rc->err = KH_E_DB;
        else if (strcmp(PQgetvalue(r, 0, 0), "0") != 0)
            rc->err = KH_E_UNEXPECTED_ANSWER;
        PQclear(r);
    }
    translate_and_record(c, rc);
}

static void d_checked(void *arg)
{
    forward(arg, "deferred answer", d_forwarded);
}

static void d_forwarded(int status, const uint8_t *buf, size_t len, void *arg)
{
    r_call *rc = arg;
    if (failed_over(rc, status))
        return;
    if (status == 0) {
        finish(rc, KH_E_UPSTREAM, "failed", "asking gateway unreachable");
        return;
    }
    if (status != 200) {
        relay_refusal(rc, status, buf, len, "refused_by_asker");
        return;
    }
    /* the asker's acknowledgement goes back to the provider as it is */
    rc->reply = malloc(len ? len : 1);
    if (rc->reply == NULL) {
        finish(rc, KH_E_INTERNAL, "failed", "out of memory");
        return;
    }
    memcpy(rc->reply, buf, len);
    rc->replylen = len;
    finish(rc, KH_OK, "delivered", NULL);
}

static void handle_deferred(r_call *rc)
{
    const Kh__Header *h = rc->h;
    if (strcmp(h->answer_state, "DEFERRED") != 0 || h->in_reply_to.len != KH_MSG_ID_LEN) {
        finish(rc, KH_E_BAD_REQUEST, "refused",
               "an answer sent on its own must be a deferred answer to a query");
        return;
    }
    if (org_find(h->recipient) == NULL) {
        finish(rc, KH_E_UNKNOWN_ORG, "refused", "recipient is not in the directory");
        return;
    }
    /* the query it answers had to be lawful: so must the answer be */
    if (kh_dir_legal(dir_now(), h->recipient, h->procedure, h->sender, h->items, h->n_items,
                     NULL) != KH_OK) {
        finish(rc, KH_E_NO_LEGAL_BASIS, "refused", "no legal-basis row allows this answer");
        return;
    }
    if (!kh_id_link_code(h->subject)) {
        finish(rc, KH_E_BAD_REQUEST, "refused", "header.subject is not a link code");
        return;
    }
    if (kh_pool_submit(R.pool, d_work, d_checked, rc) != 0)
        finish(rc, KH_E_OVERLOADED, "refused", "database queue full");
}

/* Operators' capture: the envelope exactly as received, once it is known to
 * come from its sender (header signature verified, sent by the sender's own
 * gateway). Named by sender and message id; an existing file is never
 * replaced, so a later message cannot overwrite an earlier capture. */
static void capture(const r_call *rc, const uint8_t *buf, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%s.envelope", R.capture, rc->h->sender, rc->hex);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        kh_warn("capture", "message %s not captured: %s", rc->hex, strerror(errno));
        return;
    }
    if (write(fd, buf, len) != (ssize_t)len)
        kh_warn("capture", "message %s: short write", rc->hex);
    close(fd);
}

static void on_envelope(struct evhttp_request *req, void *arg)
{
    uint8_t *buf;
    size_t len;
    char why[200], org[16], cn[64];
    r_call *rc = calloc(1, sizeof *rc);
    if (rc == NULL) {
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    rc->req = req;
    snprintf(rc->hex, sizeof rc->hex, "-");
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), r_on_close, rc);

    X509 *peer = kh_tls_peer_cert(kh_http_req_ssl(req));
    bool gw = peer && khc_cert_org(peer, org, sizeof org) == 0 && strcmp(org, "KH-GW") == 0 &&
              khc_cert_cn(peer, cn, sizeof cn) == 0;
    khc_cert_free(peer);
    if (!gw) {
        finish(rc, KH_E_PEER_NOT_ALLOWED, "refused", "only gateways may send envelopes");
        return;
    }
    kh_err e =
        kh_http_body(req, (size_t)R.max_body, KH_PB_CONTENT_TYPE, &buf, &len, why, sizeof why);
    if (e != KH_OK) {
        finish(rc, e, "refused", why);
        return;
    }
    rc->raw = buf;
    rc->rawlen = len;
    Kh__Envelope *env;
    Kh__Header *h;
    if ((e = kh_env_parse(buf, len, &env, &h, why, sizeof why)) != KH_OK) {
        finish(rc, e, "refused", why);
        return;
    }
    rc->env = env;
    rc->h = h;
    kh_msgid_hex(&h->msg_id, rc->hex);
    if (khc_sha256(env->payload.data, env->payload.len, NULL, 0, rc->digest) != 0) {
        finish(rc, KH_E_INTERNAL, "refused", "cannot digest the payload");
        return;
    }
    const r_org *from = org_find(h->sender);
    const kh_org *dfrom = kh_dir_org(dir_now(), h->sender);
    if (from == NULL || dfrom == NULL) {
        finish(rc, KH_E_UNKNOWN_ORG, "refused", "sender is not in the directory");
        return;
    }
    if (strcmp(h->signer, h->sender) != 0 || kh_env_verify(env, dfrom->sign_cert) != KH_OK) {
        finish(rc, KH_E_HEADER_SIG, "refused", "header signature does not verify for the sender");
        return;
    }
    if (strcmp(from->gateway, cn) != 0) {
        finish(rc, KH_E_PEER_NOT_ALLOWED, "refused", "sender is not hosted by this gateway");
        return;
    }
    if (R.capture)
        capture(rc, rc->raw, rc->rawlen);
    if ((e = kh_env_check_time(h, (int64_t)time(NULL), R.skew, R.ttl)) != KH_OK) {
        finish(rc, e, "refused", kh_err_get(e)->meaning);
        return;
    }
    switch (h->type) {
    case KH__MSG_TYPE__LINKCODE_REQUEST:
        handle_linkcode(rc, dfrom);
        break;
    case KH__MSG_TYPE__QUERY:
        handle_query(rc);
        break;
    case KH__MSG_TYPE__ANSWER:
        handle_deferred(rc);
        break;
    default:
        finish(rc, KH_E_BAD_REQUEST, "refused", "unexpected message type");
    }
}

/* ------------------------------------------------------------------ main */

static int load_secret(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        snprintf(err, errlen, "secret %s must be a regular file of mode 0600", path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (khc_read_file(path, &buf, &len) != 0 || len < 32) {
        khc_free_secret(buf, len);
        snprintf(err, errlen, "secret %s must hold at least 32 bytes", path);
        return -1;
    }
    /* condense whatever length into the 32-byte key */
    int rc = khc_hmac_sha256((const uint8_t *)"kh-router-secret", 16, buf, len, R.secret);
    khc_free_secret(buf, len);
    if (rc != 0)
        snprintf(err, errlen, "cannot derive the link-code key from %s", path);
    return rc;
}

static int setup(const char *config, char *err, size_t errlen)
{
    char ca[1024], dir[1024];
    R.conf = kh_conf_load(config, options, &R.set, err, errlen);
    if (R.conf == NULL)
        return -1;
    R.pki = R.set.pki;
    R.capture = R.set.capture;
    R.max_body = R.set.max_body;
    const char *secret = R.set.secret;
    apply_reloadable(&R.set);
    snprintf(ca, sizeof ca, "%s/national-ca.crt", R.pki);
    snprintf(dir, sizeof dir, "%s/router", R.pki);
    if (khr_tls_load(R.pki, &R.server_ctx, &R.client_ctx, err, errlen) != 0 ||
        (R.national = khc_store_from_file(ca, err, errlen)) == NULL ||
        kh_identity_load(&R.id, "ROUTER", dir, err, errlen) != 0 ||
        load_secret(secret, err, errlen) != 0)
        return -1;
    r_world *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -1;
    atomic_store(&R.world, w);
    if (parse_orgs(&R.set.orgs, w, err, errlen) != 0 || attach_endpoints(w, err, errlen) != 0)
        return -1;
    /* the table checked the names and that there are at most 16 */
    R.nportals = R.set.portals.n;
    memcpy(R.portals, R.set.portals.v, R.nportals * sizeof *R.portals);
    PGconn *c = PQconnectdb(R.set.db);
    int rc = -1;
    if (PQstatus(c) != CONNECTION_OK)
        snprintf(err, errlen, "database: %s", PQerrorMessage(c));
    else
        rc = build_directory(c, w, 0, err, errlen);
    PQfinish(c);
    return rc;
}

/* Replay registrations an hour past their message's expiry can stop nothing:
 * removed every minute, on a worker, in a transaction of their own. */
static void sweep_work(PGconn *c, void *arg)
{
    long n = 0;
    if (kh_seen_purge(c, KH_SEEN_ROUTER, &n) != KH_OK)
        kh_warn("main", "replay registrations not purged: database unavailable");
    else if (n > 0)
        kh_debug("main", "%ld expired replay registrations purged", n);
}

static void sweep_done(void *arg)
{
    R.sweeping = false;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    if (!R.sweeping && !R.stopping && kh_pool_submit(R.pool, sweep_work, sweep_done, NULL) == 0)
        R.sweeping = true;
    struct timeval tv = {60, 0};
    evtimer_add(R.sweep_ev, &tv);
}

static const char *config_path;

/* SIGHUP (kh_conf_reload): the file checked whole; only options marked
 * reloadable change, and only if nothing else did. */
static kh_conf *load_settings(const char *path, void *s, char *err, size_t errlen)
{
    return kh_conf_load(path, options, s, err, errlen);
}

static void apply_fresh(const void *fresh)
{
    apply_reloadable(fresh);
    rebuild(&((const r_settings *)fresh)->orgs);
    khr_tls_reload(((const r_settings *)fresh)->crl_refresh_s);
}

/* A new client context (khrouter_tls.c): the next envelopes, disclosures and
 * probes open their connections with it. */
static void took_client(SSL_CTX *client)
{
    R.client_ctx = client;
    R.portal.client_ctx = client;
    khr_ep_set_ctx(client);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    r_settings fresh;
    kh_conf_reload(config_path, options, load_settings, &R.set, &fresh, apply_fresh);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    kh_info("main", "signal %d: stopping", (int)sig);
    R.stopping = true;
    event_base_loopexit(R.base, NULL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    bool check = false;
    int c, rc = 1;
    while ((c = getopt_long(argc, argv, "c:th", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = config_path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    kh_log_set_component("router");
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    /* up to KH_HTTP_IDLE_MAX_PER_DEST idle connections to each gateway */
    kh_http_raise_open_files();
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    char err[512] = "";
    if (setup(config, err, sizeof err) != 0) {
        kh_error("main", "configuration %s: %s", config, err);
        goto out;
    }
    if (check) {
        printf("configuration ok: %zu organisations, %d gateway endpoints, %zu legal-basis rows\n",
               world()->norgs, khr_ep_count(), dir_now()->pb->n_legal_basis);
        rc = 0;
        goto out;
    }
    R.base = event_base_new();
    R.pool = kh_pool_new(R.base, R.set.db, R.set.db_workers, 1024, 0);
    R.http =
        kh_http_listen(R.base, R.server_ctx, R.set.listen, (size_t)R.max_body, err, sizeof err);
    if (R.pool == NULL || R.http == NULL) {
        kh_error("main", "cannot start: %s", R.http ? "database pool" : err);
        goto out;
    }
    if (R.capture && mkdir(R.capture, 0700) != 0 && errno != EEXIST) {
        kh_error("main", "cannot create capture_dir");
        goto out;
    }
    kh_http_route(R.http, "/v1/directory", on_directory, NULL);
    kh_http_route(R.http, "/v1/envelope", on_envelope, NULL);
    R.portal = (khr_portal){.base = R.base,
                            .client_ctx = R.client_ctx,
                            .national = R.national,
                            .pool = R.pool,
                            .dir = dir_now,
                            .id = &R.id,
                            .skew = &R.skew,
                            .ttl = &R.ttl,
                            .timeout_ms = &R.timeout_ms,
                            .max_body = R.max_body,
                            .portals = R.portals,
                            .nportals = R.nportals,
                            .route = portal_route,
                            .person_key = person_key_of,
                            .stopping = &R.stopping};
    khr_portal_register(R.http, &R.portal);
    R.sig_ev[0] = evsignal_new(R.base, SIGTERM, on_signal, NULL);
    R.sig_ev[1] = evsignal_new(R.base, SIGINT, on_signal, NULL);
    R.sig_ev[2] = evsignal_new(R.base, SIGHUP, on_reload, NULL);
    for (int i = 0; i < 3; i++)
        event_add(R.sig_ev[i], NULL);
    R.sweep_ev = evtimer_new(R.base, on_sweep, NULL);
    on_sweep(-1, 0, NULL);
    if (khr_ep_start(R.base, R.client_ctx, R.set.probe_ms) != 0) {
        kh_error("main", "cannot start the readiness probes");
        goto out;
    }
    khr_tls_start(R.base, R.pool, R.http, R.set.crl_refresh_s, took_client);
    kh_info("main", "ready on %s: %zu organisations, %zu legal-basis rows", R.set.listen,
            world()->norgs, dir_now()->pb->n_legal_basis);
    event_base_dispatch(R.base);
    kh_info("main", "stopped");
    rc = 0;
out:
    R.stopping = true;
    if (R.http)
        evhttp_free(R.http);
    kh_pool_free(R.pool);
    if (R.sweep_ev)
        event_free(R.sweep_ev);
    khr_ep_stop();
    for (int i = 0; i < 3; i++)
        if (R.sig_ev[i])
            event_free(R.sig_ev[i]);
    if (R.base) {
        kh_http_client_close(R.base);
        event_base_free(R.base);
    }
    world_free(world());
    kh_identity_clear(&R.id);
    khc_wipe(R.secret, sizeof R.secret);
    khr_tls_free(); /* R.server_ctx and R.client_ctx among them */
    khc_store_free(R.national);
    kh_conf_free(R.conf);
    return rc;
}
