/* khhttp.c: evhttp + bufferevent_openssl glue. */
#include "khhttp.h"
#include "khpb.h"

#include "kakehashi.pb-c.h"
#include "khcrypto.h"
#include "khlog.h"
#include "khid.h"
#include "khjson.h"
#include "khtls.h"

#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http_struct.h> /* req->major, req->minor: see evhttp_send_error */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool kh_host_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return evutil_inet_pton(AF_INET, host, buf) == 1 || evutil_inet_pton(AF_INET6, host, buf) == 1;
}

int kh_hostport(const char *hp, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = hp ? strrchr(hp, ':') : NULL;
    if (colon == NULL || colon == hp || (size_t)(colon - hp) >= hostlen)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535)
        return -1;
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int kh_http_url(const char *url, char *hostport, size_t hplen, char *path, size_t pathlen,
                char *why, size_t whylen)
{
    static const char scheme[] = "http://";
    char host[128];
    uint16_t port;
    if (url == NULL || strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(why, whylen, "expected http://HOST:PORT/PATH");
        return -1;
    }
    const char *hp = url + sizeof scheme - 1, *slash = strchr(hp, '/');
    size_t n = slash ? (size_t)(slash - hp) : strlen(hp);
    if (n == 0 || n >= hplen) {
        snprintf(why, whylen, "no HOST:PORT, or too long");
        return -1;
    }
    memcpy(hostport, hp, n);
    hostport[n] = '\0';
    const char *p = slash ? slash : "/";
    if (kh_hostport(hostport, host, sizeof host, &port) != 0 || !kh_host_numeric(host)) {
        snprintf(why, whylen, "'%s' is not a numeric HOST:PORT (no name look-up is made)",
                 hostport);
        return -1;
    }
    if (strlen(p) >= pathlen || strlen(p) >= 128 || p[strcspn(p, " \t\r\n?#")] != '\0') {
        snprintf(why, whylen, "the path is too long or holds a space, '?' or '#'");
        return -1;
    }
    snprintf(path, pathlen, "%s", p);
    return 0;
}

static void answering(struct evhttp_request *req);
static bool admit(struct evhttp_request *req);

/* Draining (kh_http_set_closing): every reply says Connection: close. */
static bool closing;

void kh_http_set_closing(bool on)
{
    closing = on;
}

/* The connection is closed once this request's reply is sent (once, whoever
 * asks first). */
static void close_after(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_find_header(h, "Connection") == NULL)
        evhttp_add_header(h, "Connection", "close");
}

static void not_found(struct evhttp_request *req, void *arg);

/* The routes: static, set once at start by the main thread. */
typedef struct {
    char path[64];
    void (*cb)(struct evhttp_request *, void *);
    void *arg;
} route;
static route routes[64];
static size_t nroutes;

static void timed(struct evhttp_request *req, const char *endpoint);
struct listener;
static void record_time(struct listener *l, const char *endpoint, const struct timespec *t0);

static void route_gate(struct evhttp_request *req, void *arg)
{
    const route *r = arg;
    if (!admit(req))
        return;
    timed(req, r->path);
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u != NULL ? evhttp_uri_get_path(u) : NULL;
    if (path == NULL || strcmp(path, r->path) != 0)
        not_found(req, NULL);
    else
        r->cb(req, r->arg);
}

void kh_http_route(struct evhttp *http, const char *path,
                   void (*cb)(struct evhttp_request *, void *), void *arg)
{
    route *r = &routes[nroutes];
    if (nroutes == sizeof routes / sizeof routes[0] || strlen(path) >= sizeof r->path) {
        kh_error("http", "route table full or path too long: a bug");
        abort();
    }
    snprintf(r->path, sizeof r->path, "%s", path);
    r->cb = cb;
    r->arg = arg;
    if (evhttp_set_cb(http, path, route_gate, r) != 0) {
        kh_error("http", "a route is set twice: a bug");
        abort();
    }
    nroutes++;
}

static void other_gate(struct evhttp_request *req, void *arg)
{
    const route *r = arg;
    if (!admit(req))
        return;
    timed(req, "*");
    r->cb(req, r->arg);
}

void kh_http_route_other(struct evhttp *http, void (*cb)(struct evhttp_request *, void *),
                         void *arg)
{
    route *r = &routes[nroutes];
    if (nroutes == sizeof routes / sizeof routes[0]) {
        kh_error("http", "route table full: a bug");
        abort();
    }
    r->path[0] = '\0';
    r->cb = cb;
    r->arg = arg;
    evhttp_set_gencb(http, other_gate, r);
    nroutes++;
}

int kh_http_query(const char *q, struct evkeyvalq *out, char *why, size_t whylen)
{
    struct evkeyval *kv;
    for (const char *p = q; (p = strchr(p, '%')) != NULL; p++)
        if (p[1] == '0' && p[2] == '0') {
            snprintf(why, whylen, "the query string holds a percent-encoded NUL (%%00)");
            return -1;
        }
    if (evhttp_parse_query_str(q, out) != 0) {
        snprintf(why, whylen, "the query string is not well-formed");
        return -1;
    }
    TAILQ_FOREACH(kv, out, next)
    {
        if (!kh_id_text(kv->key, strlen(kv->key)) || !kh_id_text(kv->value, strlen(kv->value))) {
            snprintf(why, whylen, "a query parameter is not UTF-8 text");
            evhttp_clear_headers(out); /* a refusal leaves out empty (fuzz_query) */
            return -1;
        }
    }
    return 0;
}

/* A listener made by kh_http_listen: how it refuses what libevent could not
 * accept, its limits, and the places its requests hold (admit). */
typedef struct {
    char who[KH_HTTP_WHO_MAX]; /* "o:ORG" or "c:ORG/CN" */
    int n;                     /* requests of it in flight */
    int conns;                 /* "c:" places: connections of that client counted */
} place;
/* A client address's budget of TLS handshakes (kh_http_limits.handshake_rate):
 * a token bucket of rate tokens, refilled at rate per second. */
#define IP_SLOTS 256
typedef struct {
    unsigned char addr[17]; /* family byte, then the IPv4 or IPv6 address */
    double tokens;
    struct timespec last;
} ip_budget;

typedef struct listener {
    struct evhttp *http;
    SSL_CTX *ctx;
    kh_http_refuse_fn refuse;
    size_t max_body;
    bool posts;         /* a plain listener that takes POST too (kh_http_listen_plain) */
    kh_http_limits lim; /* 0: no limit */
    int nconns, nopen, ninflight;
    place *places; /* of the organisations and clients with requests in flight */
    size_t nplaces, capplaces;
    unsigned long refused, slow_closed;
    struct evconnlistener *lev;
    struct event *resume_ev; /* accepting again after it ran out of descriptors */
    ip_budget *ips;          /* IP_SLOTS, made at the first handshake with a rate */
    size_t nips;
    ip_budget overflow; /* of addresses without a slot (all taken, or no memory) */
    unsigned long hello_refused, hello_logged; /* handshakes refused; of them, logged */
    time_t hello_log_at;
    kh_http_answers answers; /* what it answered, since start */
} listener;
static listener listeners[16];
static size_t nlisteners;

/* ------------------------------------------------------- slow clients */

/* Every accepted connection is watched: its TLS handshake must complete
 * within KH_HTTP_GRACE_S, and a callback on its input buffer counts the
 * bytes of the request being read: from its first byte, a request must
 * arrive at KH_HTTP_MIN_RATE bytes/s at least once KH_HTTP_GRACE_S have
 * passed. A connection too slow is shut down (checked once a second). While
 * a request is being answered nothing is expected; a connection that sends
 * nothing is ended by the listener's read timeout. The watch holds a
 * reference on the connection's bufferevent, so it stays valid; libevent
 * clears its event callback when it lets the connection go, which is how the
 * watch knows to let go too. A refusal libevent would have made itself
 * (see evhttp_send_error below) stops the clock too, and closes the
 * connection. */
typedef struct watch {
    struct bufferevent *bev;
    struct evbuffer_cb_entry *cb; /* count_added on its input */
    uint64_t bytes;               /* of the request being read */
    time_t first;                 /* when its first byte came; 0: none yet */
    time_t accepted;
    bool handshaken; /* the TLS handshake was seen complete */
    SSL_CTX *ctx;    /* the listener's context its peer was last verified with */
    time_t verified; /* when (the accept, then each recheck) */
    bool busy;       /* a request is being answered */
    struct listener *l;
    const char *endpoint;         /* of the request being answered (kh_http_answers) */
    struct timespec t0;           /* when it was read whole */
    bool counted;                 /* in the listener's nconns (from its first request) */
    bool ccounted;                /* in its client's place's conns */
    bool over;                    /* counted over the listener's max_conns: every request refused */
    bool inflight;                /* its request holds a place (admit) */
    bool tenanted;                /* ... and one of who[2] (kh_http_admit_for) */
    bool known;                   /* who is known: */
    char who[3][KH_HTTP_WHO_MAX]; /* "o:" O= and "c:" O=/CN= of the client certificate;
                                   * "t:" the tenant its request is for */
    struct watch *next;
} watch;
static watch *watches;
static struct event *watch_ev;
static void release(watch *w);
static place *place_of(listener *l, const char *who, bool make);
static void place_drop_if_idle(listener *l, place *p);
static unsigned long slow_closed;

static void count_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    watch *w = arg;
    (void)buf;
    if (info->n_added == 0 || w->busy)
        return;
    if (w->first == 0)
        w->first = time(NULL);
    w->bytes += info->n_added;
}

/* The watch runs every WATCH_TICK_MS: a connection libevent has let go is
 * let go of within that (the watch's reference keeps its socket, TLS state
 * and buffers: when clients are refused and closed by the thousand per
 * second, a second's worth of them held 100 MB); the deadlines are checked
 * once a second. */
#define WATCH_TICK_MS 100

static void watch_tick(evutil_socket_t fd, short what, void *arg)
{
    static time_t checked;
    time_t now = time(NULL);
    bool deadlines = now != checked;
    checked = now;
    (void)fd;
    (void)what;
    (void)arg;
    for (watch **pp = &watches; *pp;) {
        watch *w = *pp;
        bufferevent_event_cb ev = NULL;
        /* evhttp clears the read callback while it writes a reply; only
         * bufferevent_free clears the event callback */
        bufferevent_getcb(w->bev, NULL, NULL, &ev, NULL);
        if (ev == NULL) { /* libevent let the connection go */
            *pp = w->next;
            /* a request whose client left before its answer counts too (at
             * the time it was found gone): the slowest must not be missed */
            if (w->endpoint != NULL)
                record_time(w->l, w->endpoint, &w->t0);
            release(w); /* a request whose client has gone gives its place back */
            if (w->counted)
                w->l->nconns--;
            if (w->ccounted) {
                place *p = place_of(w->l, w->who[1], false);
                if (p != NULL) {
                    p->conns--;
                    place_drop_if_idle(w->l, p);
                }
            }
            w->l->nopen--;
            /* nothing may call back into w once it is freed */
            evbuffer_remove_cb_entry(bufferevent_get_input(w->bev), w->cb);
            kh_tls_clear_owner(bufferevent_openssl_get_ssl(w->bev));
            bufferevent_decref(w->bev);
            free(w);
            continue;
        }
        pp = &w->next;
        if (!deadlines)
            continue;
        if (w->first == 0 && !w->handshaken && now - w->accepted >= KH_HTTP_GRACE_S &&
            !(w->handshaken = kh_tls_handshake_done(bufferevent_openssl_get_ssl(w->bev)))) {
            kh_info("http", "a client's TLS handshake took over %d s: closed", KH_HTTP_GRACE_S);
            w->handshaken = true; /* once */
            slow_closed++;
            w->l->slow_closed++;
            evutil_socket_t s = bufferevent_getfd(w->bev);
            if (s >= 0)
                shutdown(s, SHUT_RDWR);
            continue;
        }
        if (w->busy || w->first == 0 || now - w->first < KH_HTTP_GRACE_S ||
            w->bytes >= (uint64_t)KH_HTTP_MIN_RATE * (uint64_t)(now - w->first))
            continue;
        kh_info("http", "a client sent %llu bytes in %lld s, slower than %d bytes/s: closed",
                (unsigned long long)w->bytes, (long long)(now - w->first), KH_HTTP_MIN_RATE);
        w->first = 0; /* once */
        slow_closed++;
        w->l->slow_closed++;
        evutil_socket_t s = bufferevent_getfd(w->bev);
        if (s >= 0)
            shutdown(s, SHUT_RDWR); /* libevent sees the end and lets the connection go */
    }
}

/* A request's watch: kept with its connection's TLS state (server_bev). */
static watch *watch_of(struct evhttp_request *req)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    watch *w = bev ? kh_tls_owner(bufferevent_openssl_get_ssl(bev)) : NULL;
    return w != NULL && w->bev == bev ? w : NULL;
}

/* ---- what a listener answered (kh_http_answers) ---- */

static listener *listener_of(struct evhttp *http);

const unsigned kh_http_bucket_ms[KH_HTTP_BUCKETS - 1] = {1,   5,    10,   25,   50,   100,
                                                         250, 1000, 2500, 5000, 10000};

/* The request was read whole and admitted: its time starts. */
static void timed(struct evhttp_request *req, const char *endpoint)
{
    watch *w = watch_of(req);
    if (w != NULL) {
        w->endpoint = endpoint;
        clock_gettime(CLOCK_MONOTONIC, &w->t0);
    }
}

void kh_http_set_endpoint(struct evhttp_request *req, const char *endpoint)
{
    watch *w = watch_of(req);
    if (w != NULL && w->endpoint != NULL)
        w->endpoint = endpoint;
}

static void record_time(struct listener *l, const char *endpoint, const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us = (int64_t)(now.tv_sec - t0->tv_sec) * 1000000 + (now.tv_nsec - t0->tv_nsec) / 1000;
    kh_http_answers *st = &l->answers;
    kh_http_endpoint_stat *e = NULL;
    for (size_t i = 0; i < st->nep && e == NULL; i++)
        if (st->ep[i].endpoint == endpoint || strcmp(st->ep[i].endpoint, endpoint) == 0)
            e = &st->ep[i];
    if (e == NULL && st->nep < KH_HTTP_MAX_ENDPOINTS) {
        e = &st->ep[st->nep++];
        e->endpoint = endpoint;
    }
    if (e == NULL) { /* the slot past the named ones */
        e = &st->ep[KH_HTTP_MAX_ENDPOINTS];
        e->endpoint = "other";
    }
    size_t b = 0;
    while (b < KH_HTTP_BUCKETS - 1 && us > (int64_t)kh_http_bucket_ms[b] * 1000)
        b++;
    e->count++;
    e->sum_us += us > 0 ? (uint64_t)us : 0;
    e->bucket[b]++;
}

void kh_http_answers_of(struct evhttp *http, kh_http_answers *out)
{
    const listener *l = listener_of(http);
    if (l == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = l->answers;
    /* the "other" slot is listed last when it was used */
    if (out->ep[KH_HTTP_MAX_ENDPOINTS].count > 0 && out->nep == KH_HTTP_MAX_ENDPOINTS)
        out->nep = KH_HTTP_MAX_ENDPOINTS + 1;
}

/* A refusal sent: counted by code on its listener. */
static void count_refusal(struct evhttp_request *req, kh_err e)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    listener *l = c ? listener_of(evhttp_connection_get_server(c)) : NULL;
    if (l != NULL && e > KH_OK && e < KH_E__COUNT)
        l->answers.refusals[e]++;
}

static void answered(struct evhttp_request *req, void *arg)
{
    watch *w = watch_of(req);
    (void)arg;
    if (w != NULL && w->endpoint != NULL && w->l != NULL) {
        record_time(w->l, w->endpoint, &w->t0);
        w->endpoint = NULL;
    }
    if (w != NULL) {
        release(w);
        /* the next request's clock starts at its first byte */
        w->busy = false;
        w->first = 0;
        w->bytes = 0;
    }
}

/* A request has been read whole: its answer may take its time. */
static void answering(struct evhttp_request *req)
{
    if (closing)
        close_after(req); /* draining: its client reconnects, to another node */
    watch *w = watch_of(req);
    if (w != NULL) {
        w->busy = true;
        evhttp_request_set_on_complete_cb(req, answered, NULL);
    }
}

/* ---- refusals libevent would make itself ----
 *
 * libevent 2.1 answers some requests before any callback of ours: a request
 * line or header it cannot read, headers or a body over the listener's
 * limits, a method the listener does not allow, an Expect it does not know.
 * It has no hook for that (2.2's evhttp_set_errorcb is not in 2.1); every
 * such answer goes through its exported evhttp_send_error, which it calls
 * through its PLT. The definition below takes the library's place (an
 * executable's definition interposes a shared library's), so that these
 * refusals are ours too: the listener's status message with a code from the
 * table, never libevent's HTML page. it_refusals checks it on each listener:
 * if a build ever stopped the interposition, that test fails. */

static listener *listener_of(struct evhttp *http)
{
    for (size_t i = 0; i < nlisteners; i++)
        if (listeners[i].http == http)
            return &listeners[i];
    return NULL;
}

void kh_http_set_refuser(struct evhttp *http, kh_http_refuse_fn refuse)
{
    listener *l = listener_of(http);
    if (l == NULL) {
        kh_error("http", "a refuser is set on a listener kh_http_listen did not make: a bug");
        abort();
    }
    l->refuse = refuse;
}

static void refuse_pb(struct evhttp_request *req, kh_err e, const char *msg)
{
    kh_http_reply_err(req, e, "%s", msg);
}

void kh_http_reply_json(struct evhttp_request *req, int status, const char *body, size_t len,
                        const char *content_type)
{
    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type",
                      content_type ? content_type : "application/json; charset=utf-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (out == NULL) {
        evhttp_send_reply(req, 500, "Internal error", NULL);
        return;
    }
    evbuffer_add(out, body, len);
    evhttp_send_reply(req, status, status < 300 ? "OK" : "Refused", out);
    evbuffer_free(out);
}

void kh_http_reply_json_refusal(struct evhttp_request *req, kh_err e, const char *body, size_t len)
{
    count_refusal(req, e);
    kh_http_reply_json(req, kh_err_get(e)->http_status, body, len, NULL);
}

void kh_http_reply_json_err(struct evhttp_request *req, kh_err e, const char *msg)
{
    const kh_err_info *info = kh_err_get(e);
    count_refusal(req, e);
    khj_writer w;
    size_t len;
    khjw_init(&w, 4096);
    khjw_obj(&w);
    khjw_kstr(&w, "code", info->code);
    khjw_kstr(&w, "message", msg);
    khjw_obj_end(&w);
    char *body = khjw_finish(&w, &len);
    if (body == NULL)
        evhttp_send_reply(req, 500, "Internal error", NULL);
    else
        kh_http_reply_json(req, info->http_status, body, len, NULL);
    free(body);
}

/* A refusal in the listener's own format (l NULL: protobuf). */
static void refuse_as(const listener *l, struct evhttp_request *req, kh_err e, const char *msg)
{
    (l != NULL && l->refuse != NULL ? l->refuse : refuse_pb)(req, e, msg);
}

/* A path no route serves, in the listener's own format. */
static void not_found(struct evhttp_request *req, void *arg)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    (void)arg;
    answering(req);
    refuse_as(c ? listener_of(evhttp_connection_get_server(c)) : NULL, req, KH_E_NOT_FOUND_PATH,
              "no such endpoint on this listener");
}

void evhttp_send_error(struct evhttp_request *req, int error, const char *reason)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    listener *l = c ? listener_of(evhttp_connection_get_server(c)) : NULL;
    char msg[160];
    kh_err e = KH_E_BAD_REQUEST;
    (void)reason; /* libevent's phrase; the message below says more */
    /* libevent 2.1 reports headers over the limit as unreadable (400): the
     * bytes it parsed, or those the watch counted, tell them apart */
    const watch *w = watch_of(req);
    if (error == HTTP_BADREQUEST &&
        (req->headers_size > KH_HTTP_MAX_HEADERS ||
         (w != NULL && req->body_size == 0 &&
          evbuffer_get_length(bufferevent_get_input(w->bev)) > KH_HTTP_MAX_HEADERS)))
        error = HTTP_ENTITYTOOLARGE;
    switch (error) {
    case HTTP_ENTITYTOOLARGE:
        e = KH_E_TOO_LARGE;
        if (l != NULL)
            snprintf(msg, sizeof msg,
                     "the request's headers or body exceed this listener's limits "
                     "(%d bytes of headers, %zu of body)",
                     KH_HTTP_MAX_HEADERS, l->max_body);
        else
            snprintf(msg, sizeof msg, "the request's headers or body exceed the limits");
        break;
    case HTTP_NOTIMPLEMENTED:
    case 405:
        snprintf(msg, sizeof msg, "HTTP method not allowed: only GET%s served",
                 l != NULL && l->ctx == NULL && !l->posts ? " is" : " and POST are");
        break;
    case 417:
        snprintf(msg, sizeof msg, "the Expect header is not understood (only 100-continue is)");
        break;
    default:
        snprintf(msg, sizeof msg,
                 "malformed HTTP request: its request line or a header could not be read");
    }
    /* the reply is HTTP/1.1 whatever the request said (a request line
     * libevent could not read left no version; an HTTP/1.0 keep-alive would
     * add a contrary Connection header), so that it has a Content-Length and
     * its Connection: close is obeyed; and libevent obeys it for no CONNECT,
     * whose method it may have read before the error */
    req->major = 1;
    req->minor = 1;
    if (req->type == EVHTTP_REQ_CONNECT)
        req->type = EVHTTP_REQ_GET;
    answering(req);
    /* libevent's state of this connection is no longer to be trusted */
    close_after(req);
    kh_info("http", "refused a request libevent could not accept: %s", msg);
    refuse_as(l, req, e, msg);
}

/* ---- admission (khhttp.h, kh_http_limits) ---- */

/* Room for n more places, so that the pointers place_of returns in the
 * meantime stay valid (it never moves the array itself). */
static bool places_room(listener *l, size_t n)
{
    if (l->nplaces + n <= l->capplaces)
        return true;
    size_t cap = l->capplaces ? 2 * l->capplaces : 4; /* small: the tests make it grow */
    while (cap < l->nplaces + n)
        cap *= 2;
    place *p = realloc(l->places, cap * sizeof *p);
    if (p == NULL)
        return false;
    l->places = p;
    l->capplaces = cap;
    return true;
}

static place *place_of(listener *l, const char *who, bool make)
{
    for (size_t i = 0; i < l->nplaces; i++)
        if (strcmp(l->places[i].who, who) == 0)
            return &l->places[i];
    if (!make || l->nplaces == l->capplaces)
        return NULL;
    place *p = &l->places[l->nplaces++];
    snprintf(p->who, sizeof p->who, "%s", who);
    p->n = 0;
    p->conns = 0;
    return p;
}

/* A place neither in flight nor holding connections is gone: the last entry
 * takes its index. */
static void place_drop_if_idle(listener *l, place *p)
{
    if (p != NULL && p->n <= 0 && p->conns <= 0)
        *p = l->places[--l->nplaces];
}

static int in_flight(listener *l, const char *who)
{
    const place *p = place_of(l, who, false);
    return p ? p->n : 0;
}

static void release(watch *w)
{
    if (!w->inflight)
        return;
    w->inflight = false;
    w->l->ninflight--;
    for (int k = 0; k < (w->tenanted ? 3 : 2); k++) {
        place *p = place_of(w->l, w->who[k], false);
        if (p != NULL) {
            p->n--;
            place_drop_if_idle(w->l, p);
        }
    }
    w->tenanted = false;
}

/* Who the client is, from its verified certificate (once per connection). */
static void know(watch *w)
{
    char org[64] = "?", cn[64] = "?";
    X509 *peer = kh_tls_peer_cert(bufferevent_openssl_get_ssl(w->bev));
    if (peer == NULL || khc_cert_org(peer, org, sizeof org) != 0)
        snprintf(org, sizeof org, "?");
    if (peer == NULL || khc_cert_cn(peer, cn, sizeof cn) != 0)
        snprintf(cn, sizeof cn, "?");
    khc_cert_free(peer);
    snprintf(w->who[0], sizeof w->who[0], "o:%s", org);
    snprintf(w->who[1], sizeof w->who[1], "c:%s/%s", org, cn);
    w->known = true;
}

/* The one refusal for overload: 503 KH-5003, Retry-After: 1. */
static void overloaded(struct evhttp_request *req, listener *l, bool close, const char *why)
{
    l->refused++;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Retry-After", "1");
    if (close)
        close_after(req);
    char msg[256];
    snprintf(msg, sizeof msg, "overloaded: %s; retry after 1 s", why);
    /* in the listener's own format (JSON on the admin API) */
    refuse_as(l, req, KH_E_OVERLOADED, msg);
}

/* A request has been read whole: it is answered if the listener has room
 * (then it holds a place until answered), or refused at once. */
static bool still_trusted(watch *w, struct evhttp_request *req)
{
    bool revoked = false;
    char why[128];
    SSL *ssl = bufferevent_openssl_get_ssl(w->bev);
    if (kh_tls_recheck(ssl, w->l->ctx, &revoked, why, sizeof why) == 0) {
        w->ctx = w->l->ctx;
        w->verified = time(NULL);
        return true;
    }
    close_after(req);
    kh_warn("http",
            "a kept-alive connection verified again: its client certificate: %s; refused and "
            "closed",
            why);
    refuse_as(w->l, req, revoked ? KH_E_CERT_REVOKED : KH_E_PEER_NOT_ALLOWED,
              revoked ? "certificate revoked" : "certificate no longer trusted");
    return false;
}

static bool admit(struct evhttp_request *req)
{
    answering(req);
    watch *w = watch_of(req);
    if (w == NULL) {
        struct evhttp_connection *c = evhttp_request_get_connection(req);
        listener *l = c ? listener_of(evhttp_connection_get_server(c)) : NULL;
        if (l != NULL && l->ctx == NULL)
            return true; /* a plain listener's routes answer from memory */
        /* server_bev gives every connection TLS and its watch; when it
         * fails (out of memory) libevent falls back to a plain socket: no
         * TLS, no client certificate. Such a connection is served nothing. */
        close_after(req);
        kh_warn("http", "a connection without TLS (its set-up ran out of memory): refused");
        refuse_as(l, req, KH_E_OVERLOADED, "overloaded: out of memory; retry after 1 s");
        return false;
    }
    listener *l = w->l;
    const kh_http_limits *m = &l->lim;
    /* a connection from before the listener's last new context (a reload:
     * its CAs or CRLs changed), or verified more than KH_HTTP_RECHECK_S ago,
     * is verified again: a certificate revoked or expired since, or whose
     * CA's CRL has expired, gets no answer over it */
    if ((w->ctx != l->ctx || time(NULL) - w->verified >= KH_HTTP_RECHECK_S) &&
        !still_trusted(w, req))
        return false;
    if (!w->known)
        know(w);
    /* a connection counts from its first request (its TLS handshake done):
     * connections that never complete one cannot fill the listener */
    bool client_full = false;
    if (!w->counted && !w->over) {
        /* one over a limit is refused and closed without being counted
         * (counted, it would hold the room it is refused for until the next
         * tick of the watch) */
        place *cp = places_room(l, 1) ? place_of(l, w->who[1], true) : NULL;
        client_full = m->client_max_conns > 0 && cp != NULL && cp->conns >= m->client_max_conns;
        w->over = (m->max_conns > 0 && l->nconns >= m->max_conns) || client_full || cp == NULL;
        w->counted = !w->over;
        l->nconns += w->counted;
        if (cp != NULL && w->counted) {
            cp->conns++;
            w->ccounted = true;
        } else {
            place_drop_if_idle(l, cp);
        }
    }
    int org = in_flight(l, w->who[0]), client = in_flight(l, w->who[1]);
    char why[160] = "";
    if (w->over && client_full)
        snprintf(why, sizeof why,
                 "this client has its %d connections on this listener: use one of them",
                 m->client_max_conns);
    else if (w->over)
        snprintf(why, sizeof why, "this listener has its %d connections: connect again later",
                 m->max_conns);
    else if (m->client_max > 0 && client >= m->client_max)
        snprintf(why, sizeof why, "this client has %d requests in flight (at most %d)", client,
                 m->client_max);
    else if (m->org_max > 0 && org >= m->org_max)
        snprintf(why, sizeof why, "this organisation has %d requests in flight (at most %d)", org,
                 m->org_max);
    else if (m->max_inflight > 0 && l->ninflight >= m->max_inflight &&
             (m->by_client ? client : org) > 0 &&
             m->tenant_max <= 0) /* else checked where the tenant is known */
        snprintf(why, sizeof why, "this listener has %d requests in flight (at most %d)",
                 l->ninflight, m->max_inflight);
    place *po = why[0] || !places_room(l, 2) ? NULL : place_of(l, w->who[0], true);
    place *pc = po ? place_of(l, w->who[1], true) : NULL;
    if (why[0] == '\0' && (po == NULL || pc == NULL))
        snprintf(why, sizeof why, "out of memory");
    if (why[0] != '\0') {
        place_drop_if_idle(l, po); /* made for nothing: undone */
        overloaded(req, l, w->over, why);
        return false;
    }
    po->n++;
    pc->n++;
    l->ninflight++;
    w->inflight = true;
    return true;
}

bool kh_http_admit_for(struct evhttp_request *req, const char *tenant)
{
    watch *w = watch_of(req);
    if (w == NULL || !w->inflight || w->tenanted || w->l->lim.tenant_max <= 0)
        return true;
    listener *l = w->l;
    const kh_http_limits *m = &l->lim;
    snprintf(w->who[2], sizeof w->who[2], "t:%s", tenant);
    int n = in_flight(l, w->who[2]), others = l->ninflight - 1; /* this one is counted */
    char why[160] = "";
    if (n >= m->tenant_max)
        snprintf(why, sizeof why, "this tenant has %d requests in flight (at most %d)", n,
                 m->tenant_max);
    else if (m->max_inflight > 0 && others >= m->max_inflight && n > 0)
        snprintf(why, sizeof why, "this listener has %d requests in flight (at most %d)", others,
                 m->max_inflight);
    place *p = why[0] || !places_room(l, 1) ? NULL : place_of(l, w->who[2], true);
    if (why[0] == '\0' && p == NULL)
        snprintf(why, sizeof why, "out of memory");
    if (why[0] != '\0') {
        overloaded(req, l, false, why);
        return false;
    }
    p->n++;
    w->tenanted = true;
    return true;
}

void kh_http_set_limits(struct evhttp *http, const kh_http_limits *lim)
{
    listener *l = listener_of(http);
    if (l != NULL)
        l->lim = *lim;
}

kh_http_load kh_http_load_of(struct evhttp *http)
{
    const listener *l = listener_of(http);
    return l ? (kh_http_load){l->nconns,  l->nopen,       l->ninflight,
                              l->refused, l->slow_closed, l->hello_refused}
             : (kh_http_load){0, 0, 0, 0, 0, 0};
}

static struct bufferevent *server_bev(struct event_base *base, void *arg)
{
    listener *l = arg;
    SSL *ssl = kh_tls_new(l->ctx);
    watch *w = calloc(1, sizeof *w);
    /* how a request finds its watch (watch_of): without it, no admission */
    if (ssl == NULL || w == NULL || kh_tls_set_owner(ssl, w) != 0) {
        kh_tls_free(ssl);
        free(w);
        return NULL;
    }
    w->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (w->bev == NULL) { /* with BEV_OPT_CLOSE_ON_FREE libevent freed ssl already */
        free(w);
        return NULL;
    }
    if ((w->cb = evbuffer_add_cb(bufferevent_get_input(w->bev), count_added, w)) == NULL) {
        bufferevent_free(w->bev);
        free(w);
        return NULL;
    }
    bufferevent_incref(w->bev);
    w->accepted = time(NULL); /* the handshake is timed; the requests from their first byte */
    w->l = l;
    w->ctx = l->ctx;
    w->verified = w->accepted;
    l->nopen++;
    w->next = watches;
    watches = w;
    return w->bev;
}

unsigned long kh_http_slow_closed(void)
{
    return slow_closed;
}

/* ---- accept() failures ----
 *
 * libevent's listener retries a failed accept() at once, and again: out of
 * file descriptors (a listener's max_connections over the process's limit
 * of open files), that is a loop that takes a whole CPU. A listener that
 * runs out stops accepting for a second instead (new clients wait in the
 * kernel's backlog), and says so. */
static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    listener *l = arg;
    (void)fd;
    (void)what;
    evconnlistener_enable(l->lev);
}

static void accept_failed(struct evconnlistener *lev, void *arg)
{
    listener *l = listener_of(arg); /* libevent's argument: the evhttp */
    int e = EVUTIL_SOCKET_ERROR();
    if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
        kh_warn("http", "accept() failed: %s", evutil_socket_error_to_string(e));
        return;
    }
    struct timeval sec = {1, 0};
    kh_warn("http",
            "accept() failed (%s) with %d connections open on this listener: not accepting for "
            "1 s (raise the limit of open files, or lower max_connections)",
            evutil_socket_error_to_string(e), l ? l->nopen : -1);
    if (l != NULL && l->resume_ev != NULL && evconnlistener_disable(lev) == 0)
        event_add(l->resume_ev, &sec);
}

/* The budget of the address fd is connected from: its slot, made if new
 * (full); when every slot is taken, one unused for 2 s, or else the
 * shared overflow budget. */
static ip_budget *budget_of(listener *l, int fd, const struct timespec *now, double rate)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    unsigned char key[17] = {0};
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return NULL;
    if (ss.ss_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        /* by /64: a host usually has a whole one to pick addresses from */
        key[0] = 6;
        memcpy(key + 1, &((struct sockaddr_in6 *)&ss)->sin6_addr, 8);
    } else {
        return NULL;
    }
    if (l->ips == NULL && (l->ips = calloc(IP_SLOTS, sizeof *l->ips)) == NULL)
        return &l->overflow;
    ip_budget *b = NULL;
    for (size_t i = 0; i < l->nips && b == NULL; i++)
        if (memcmp(l->ips[i].addr, key, sizeof key) == 0)
            b = &l->ips[i];
    if (b != NULL)
        return b;
    if (l->nips < IP_SLOTS) {
        b = &l->ips[l->nips++];
    } else {
        /* a slot unused for 2 s or more has a full bucket: nothing is lost by
         * giving it away. With none (more addresses at once than slots),
         * the newcomers share one bucket, so that cycling through many
         * addresses does not get a full bucket each time. */
        for (size_t i = 0; i < IP_SLOTS && b == NULL; i++)
            if (now->tv_sec - l->ips[i].last.tv_sec >= 2)
                b = &l->ips[i];
        if (b == NULL)
            return &l->overflow;
    }
    memcpy(b->addr, key, sizeof key);
    b->tokens = rate;
    b->last = *now;
    return b;
}

/* khtls's hello gate: a client address may start handshake_rate TLS
 * handshakes per second (as many at once). A handshake is the costliest
 * thing a client can make the event loop do (about 1 ms of CPU); refused
 * here, at its first message, one costs a few microseconds. So a client
 * that reconnects at once whenever it is refused and closed (over its
 * connection limit) cannot take the loop from the connections already
 * open. */
static bool hello_gate(int fd, void *arg)
{
    listener *l = arg;
    double rate = l->lim.handshake_rate;
    if (rate <= 0 || fd < 0)
        return true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ip_budget *b = budget_of(l, fd, &now, rate);
    if (b == NULL)
        return true; /* a socket without a peer address: its handshake fails anyway */
    double dt =
        (double)(now.tv_sec - b->last.tv_sec) + (double)(now.tv_nsec - b->last.tv_nsec) / 1e9;
    b->tokens = b->tokens + dt * rate > rate ? rate : b->tokens + dt * rate;
    b->last = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    l->hello_refused++;
    if (now.tv_sec != l->hello_log_at) { /* at most one line a second */
        char ip[INET6_ADDRSTRLEN + 8] = "new addresses (every slot of the table in use)";
        if (b != &l->overflow)
            inet_ntop(b->addr[0] == 4 ? AF_INET : AF_INET6, b->addr + 1, ip, sizeof ip);
        if (b->addr[0] == 6)
            strcat(ip, "/64");
        kh_info("http",
                "refused TLS handshakes from %s: over handshake_rate (%d per second per "
                "address); %lu refused so since the last such line",
                ip, l->lim.handshake_rate, l->hello_refused - l->hello_logged);
        l->hello_logged = l->hello_refused;
        l->hello_log_at = now.tv_sec;
    }
    return false;
}

int kh_http_set_ctx(struct evhttp *http, SSL_CTX *ctx)
{
    listener *l = listener_of(http);
    if (l == NULL || l->ctx == NULL || ctx == NULL ||
        kh_tls_set_hello_gate(ctx, hello_gate, l) != 0)
        return -1;
    l->ctx = ctx;
    return 0;
}

struct evhttp *kh_http_listen(struct event_base *base, SSL_CTX *ctx, const char *hostport,
                              size_t max_body, char *err, size_t errlen)
{
    char host[128];
    uint16_t port;
    if (kh_hostport(hostport, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "bad listen address '%s' (expected host:port)", hostport);
        return NULL;
    }
    struct evhttp *http = evhttp_new(base);
    if (http == NULL) {
        snprintf(err, errlen, "evhttp_new failed");
        return NULL;
    }
    if (nlisteners == sizeof listeners / sizeof listeners[0]) {
        snprintf(err, errlen, "too many listeners");
        evhttp_free(http);
        return NULL;
    }
    listener *l = &listeners[nlisteners];
    *l = (listener){.http = http, .ctx = ctx, .refuse = refuse_pb, .max_body = max_body};
    if (ctx == NULL) { /* plain: health probes (khhttp.h) */
        l->max_body = 0;
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
    } else if (kh_tls_set_hello_gate(ctx, hello_gate, l) != 0) {
        snprintf(err, errlen,
                 "cannot set the TLS hello gate (out of memory, or a TLS context "
                 "used by two listeners)");
        evhttp_free(http);
        return NULL;
    }
    if (ctx != NULL)
        evhttp_set_bevcb(http, server_bev, l);
    if (watch_ev == NULL) {
        struct timeval tick = {0, WATCH_TICK_MS * 1000};
        watch_ev = event_new(base, -1, EV_PERSIST, watch_tick, NULL);
        if (watch_ev == NULL || event_add(watch_ev, &tick) != 0) {
            snprintf(err, errlen, "cannot start the slow-client watch");
            evhttp_free(http);
            return NULL;
        }
    }
    evhttp_set_gencb(http, not_found, NULL);
    evhttp_set_max_body_size(http, (ev_ssize_t)l->max_body);
    evhttp_set_max_headers_size(http, KH_HTTP_MAX_HEADERS);
    evhttp_set_timeout(http, ctx != NULL ? 30 : 10);
    if (ctx != NULL)
        evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(http, host, port);
    if (bs == NULL) {
        snprintf(err, errlen, "cannot listen on %s", hostport);
        evhttp_free(http);
        return NULL;
    }
    /* accepted sockets inherit it: a response written in two pieces must not
     * wait for the client's delayed ACK (40 ms per request on keep-alive) */
    int one = 1;
    setsockopt(evhttp_bound_socket_get_fd(bs), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    l->lev = evhttp_bound_socket_get_listener(bs);
    l->resume_ev = evtimer_new(base, accept_resume, l);
    if (l->resume_ev == NULL) {
        snprintf(err, errlen, "out of memory");
        evhttp_free(http);
        return NULL;
    }
    evconnlistener_set_error_cb(l->lev, accept_failed);
    nlisteners++;
    return http;
}

struct evhttp *kh_http_listen_plain(struct event_base *base, const char *hostport, size_t max_body,
                                    char *err, size_t errlen)
{
    struct evhttp *http = kh_http_listen(base, NULL, hostport, 0, err, errlen);
    listener *l = http ? listener_of(http) : NULL;
    if (l == NULL)
        return NULL;
    l->max_body = max_body;
    l->posts = true;
    evhttp_set_max_body_size(http, (ev_ssize_t)max_body);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    return http;
}

SSL *kh_http_req_ssl(struct evhttp_request *req)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    return bev ? bufferevent_openssl_get_ssl(bev) : NULL;
}

bool kh_http_ctype_is(struct evhttp_request *req, const char *ctype)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    size_t n = strlen(ctype);
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return strncasecmp(ct, ctype, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

kh_err kh_http_body(struct evhttp_request *req, size_t max, const char *ctype, uint8_t **body,
                    size_t *len, char *why, size_t whylen)
{
    char tmp[1];
    if (why == NULL || whylen == 0) {
        why = tmp;
        whylen = sizeof tmp;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        snprintf(why, whylen, "expected POST");
        return KH_E_BAD_REQUEST;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (ctype != NULL && !kh_http_ctype_is(req, ctype) &&
        (n > 0 || evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type"))) {
        snprintf(why, whylen, "Content-Type must be %s", ctype);
        return KH_E_BAD_REQUEST;
    }
    if (n > max) {
        snprintf(why, whylen, "body over %zu bytes", max);
        return KH_E_TOO_LARGE;
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return KH_E_INTERNAL;
    if (n && evbuffer_copyout(in, copy, n) != (ev_ssize_t)n) {
        free(copy);
        return KH_E_INTERNAL;
    }
    /* wipe libevent's chunks in place before they go back to the allocator:
     * a request body may hold a national reference or personal data */
    int nvec = evbuffer_peek(in, -1, NULL, NULL, 0);
    struct evbuffer_iovec *vec = nvec > 0 ? calloc((size_t)nvec, sizeof *vec) : NULL;
    if (vec != NULL) {
        nvec = evbuffer_peek(in, -1, NULL, vec, nvec);
        for (int i = 0; i < nvec; i++)
            khc_wipe(vec[i].iov_base, vec[i].iov_len);
        free(vec);
    }
    evbuffer_drain(in, n);
    *body = copy;
    *len = n;
    return KH_OK;
}

static void reply_bytes(struct evhttp_request *req, int status, const uint8_t *buf, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        evhttp_send_reply(req, 500, "Internal error", NULL);
        return;
    }
    evbuffer_add(out, buf, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", KH_PB_CONTENT_TYPE);
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Refused", out);
    evbuffer_free(out);
}

void kh_http_reply_pb(struct evhttp_request *req, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        kh_http_reply_err(req, KH_E_INTERNAL, "out of memory");
        return;
    }
    protobuf_c_message_pack(msg, buf);
    reply_bytes(req, 200, buf, n);
    khc_wipe(buf, n); /* responses may carry personal data */
    free(buf);
}

void kh_http_reply_err(struct evhttp_request *req, kh_err e, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    const kh_err_info *info = kh_err_get(e);
    count_refusal(req, e);
    Kh__Status st = KH__STATUS__INIT;
    st.code = (char *)info->code;
    /* a refusal always says something: the code's meaning if nothing else */
    st.message = text[0] != '\0' ? text : (char *)info->meaning;
    uint8_t buf[1024];
    size_t n = kh__status__get_packed_size(&st);
    if (n > sizeof buf)
        n = 0;
    else
        kh__status__pack(&st, buf);
    reply_bytes(req, info->http_status, buf, n);
}

void kh_http_reply_raw(struct evhttp_request *req, int http_status, const uint8_t *body, size_t len)
{
    reply_bytes(req, http_status, body, len);
}

void kh_http_parse_status(const uint8_t *body, size_t len, char *code, size_t codelen, char *msg,
                          size_t msglen)
{
    Kh__Status *st = (Kh__Status *)kh_pb_unpack(&kh__status__descriptor, body, len, NULL, NULL, 0);
    snprintf(code, codelen, "%s", st && st->code ? st->code : kh_err_code(KH_E_UPSTREAM));
    snprintf(msg, msglen, "%s", st && st->message ? st->message : "unreadable refusal");
    kh__status__free_unpacked(st, NULL);
}

/* ---- outgoing requests over kept-alive connections ----
 *
 * A connection is opened (TCP, then the mutual-TLS 1.3 handshake with the
 * expected-peer check) only when no idle one to the same destination exists.
 * A destination is the whole identity the handshake proved: event base,
 * client context, address, and the expected O= and CN=; a connection proven
 * for one peer is never lent to a request expecting another. One request at
 * a time per connection; after an answer that does not say "close", the
 * connection waits in its destination's idle list, where libevent watches
 * for the peer closing it (the read deadline of the last request ends an
 * idle wait too). A request that fails quickly on a reused connection (the
 * peer closed it just as we wrote) is sent once more on a new one: every
 * request here is a GET or an envelope POST, and envelopes are idempotent
 * (a repeated message id gets the kept reply, see khseen.h; only a repeat
 * that arrives while the first copy is still being answered is refused as a
 * replay, which needs the peer to have read the request before the
 * connection failed, not the usual case of a connection it had closed
 * while idle). Everything runs
 * on the thread of the event base (the event-loop thread). */

/* Idle connections kept per destination. A connection is closed on return
 * only above this, so it must exceed the concurrency a client really uses
 * towards one peer (the router towards a busy gateway, khload's hundreds of
 * outstanding requests): at 64, a client with 300 requests in flight closed
 * answered connections that the next requests then opened anew, a TLS
 * handshake each, and those requests waited behind the handshakes (issue 11:
 * refusals p99 300 ms instead of 20). Idle connections left after a burst
 * end with the read deadline of their last request or when the peer closes
 * them (a connection idle for IDLE_MAX_AGE_S is not reused), so this bounds
 * memory and open files, not the pool's usual size. */
#define IDLE_MAX_PER_DEST KH_HTTP_IDLE_MAX_PER_DEST
#define IDLE_MAX_AGE_S 20
/* a connection's handshake (the peer's certificate, checked then) is redone
 * at least this often, however busy the connection */
#define CONN_MAX_AGE_S 600

typedef struct dest dest;
typedef struct pconn {
    struct evhttp_connection *conn;
    dest *d;
    struct pconn *next; /* in d->idle while idle */
    struct timeval idle_since;
    time_t opened;
    bool busy, dead, freeing;
} pconn;

struct dest {
    struct event_base *base;
    SSL_CTX *ctx;
    char hostport[160], org[64], cn[64];
    char host[128]; /* hostport split once, checked numeric, when the destination is made */
    uint16_t port;
    pconn *idle;
    size_t nidle;
    dest *next;
};

static dest *dests; /* few: one per peer this process talks to */
static kh_http_stats stats;
static char source[128]; /* kh_http_client_source; "": the system's choice */

typedef struct {
    kh_http_done_cb cb;
    void *arg;
    pconn *pc;
    bool reused;
    struct timeval started;
    /* kept for one resend on a fresh connection */
    enum evhttp_cmd_type method;
    char path[128];
    uint8_t *body;
    size_t len;
    int timeout_ms;
    /* the whole reply's deadline: libevent's timeout is per read, and a
     * peer sending a byte just within each would hold the request forever */
    struct event *deadline;
    struct evhttp_request *req; /* in flight, until client_done */
    /* the caller's headers: names and values in hbuf, NULL-ended */
    const char *hv[2 * KH_HTTP_MAX_EXTRA + 1];
    char hbuf[512];
} client_call;

static void free_conn_later(evutil_socket_t fd, short what, void *arg)
{
    pconn *pc = arg;
    evhttp_connection_free(pc->conn);
    free(pc);
}

static void idle_unlink(pconn *pc)
{
    for (pconn **pp = &pc->d->idle; *pp; pp = &(*pp)->next)
        if (*pp == pc) {
            *pp = pc->next;
            pc->d->nidle--;
            return;
        }
}

/* The one way a connection ends: never inside libevent's own callback on it,
 * always on the next loop turn. */
static void conn_retire(pconn *pc)
{
    if (pc->freeing)
        return;
    pc->freeing = true;
    if (!pc->busy)
        idle_unlink(pc);
    evhttp_connection_set_closecb(pc->conn, NULL, NULL);
    struct timeval now = {0, 0};
    if (event_base_once(pc->d->base, -1, EV_TIMEOUT, free_conn_later, pc, &now) != 0)
        kh_warn("http", "cannot schedule freeing an outgoing connection");
}

/* libevent: the peer closed the connection, or a deadline ended it. */
static void conn_closed(struct evhttp_connection *conn, void *arg)
{
    pconn *pc = arg;
    pc->dead = true;
    if (!pc->busy)
        conn_retire(pc);
    /* a busy one is retired when its request's callback runs */
}

static dest *dest_find(struct event_base *base, SSL_CTX *ctx, const char *hostport,
                       const char *host, uint16_t port, const char *org, const char *cn)
{
    for (dest *d = dests; d; d = d->next)
        if (d->base == base && d->ctx == ctx && strcmp(d->hostport, hostport) == 0 &&
            strcmp(d->org, org) == 0 && strcmp(d->cn, cn) == 0)
            return d;
    dest *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->base = base;
    d->ctx = ctx;
    snprintf(d->hostport, sizeof d->hostport, "%s", hostport);
    snprintf(d->host, sizeof d->host, "%s", host);
    d->port = port;
    snprintf(d->org, sizeof d->org, "%s", org);
    snprintf(d->cn, sizeof d->cn, "%s", cn);
    d->next = dests;
    dests = d;
    return d;
}

/* An idle connection of d still fit for use, or NULL. */
static pconn *idle_take(dest *d)
{
    struct timeval now;
    evutil_gettimeofday(&now, NULL);
    while (d->idle != NULL) {
        pconn *pc = d->idle;
        d->idle = pc->next;
        d->nidle--;
        pc->next = NULL;
        if (!pc->dead && now.tv_sec - pc->idle_since.tv_sec < IDLE_MAX_AGE_S &&
            now.tv_sec - pc->opened < CONN_MAX_AGE_S)
            return pc;
        pc->busy = true; /* already unlinked */
        conn_retire(pc);
    }
    return NULL;
}

static pconn *conn_open(dest *d)
{
    struct bufferevent *bev;
    if (d->ctx == NULL) { /* plain HTTP (khhttp.h) */
        bev = bufferevent_socket_new(d->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (bev == NULL)
            return NULL;
    } else {
        SSL *ssl = kh_tls_new(d->ctx);
        if (ssl == NULL)
            return NULL;
        if (d->org[0] != '\0' && kh_tls_expect_peer(ssl, d->org, d->cn[0] ? d->cn : NULL) != 0) {
            kh_tls_free(ssl);
            return NULL;
        }
        bev = bufferevent_openssl_socket_new(d->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (bev == NULL) {
            kh_tls_free(ssl);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    pconn *pc = calloc(1, sizeof *pc);
    struct evhttp_connection *conn =
        pc ? evhttp_connection_base_bufferevent_new(d->base, NULL, bev, d->host, d->port) : NULL;
    if (conn == NULL) {
        free(pc);
        bufferevent_free(bev);
        return NULL;
    }
    if (source[0] != '\0')
        evhttp_connection_set_local_address(conn, source);
    evhttp_connection_set_retries(conn, 0);
    /* a reply is read within limits too: what a peer or the router sends back
     * is as untrusted as what it sends */
    evhttp_connection_set_max_body_size(conn, (ev_ssize_t)KH_HTTP_MAX_RESPONSE);
    evhttp_connection_set_max_headers_size(conn, KH_HTTP_MAX_HEADERS);
    evhttp_connection_set_closecb(conn, conn_closed, pc);
    pc->conn = conn;
    pc->d = d;
    pc->opened = time(NULL);
    stats.opened++;
    return pc;
}

static int call_send(client_call *call, dest *d);

/* The request is over (answered, failed or cancelled): its deadline goes. */
static void call_unclock(client_call *call)
{
    if (call->deadline != NULL)
        event_free(call->deadline);
    call->deadline = NULL;
    call->req = NULL;
}

/* The Date header of the reply being handed to its callback (0: none). */
static int64_t reply_date;

int64_t kh_http_reply_date(void)
{
    return reply_date;
}

/* An HTTP-date (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT") as seconds
 * since 1970; 0 if it is not one. */
static int64_t http_date(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4] = "";
    int d, y, h, mi, sec, used = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (s == NULL || strlen(s) != 29 || s[3] != ',' || s[4] != ' ' ||
        strspn(s + 5, "0123456789") != 2 ||
        sscanf(s + 5, "%2d %3s %4d %2d:%2d:%2d GMT%n", &d, mon, &y, &h, &mi, &sec, &used) != 6 ||
        used != 24 || strlen(mon) != 3)
        return 0;
    const char *m = strstr(months, mon);
    if (m == NULL || (m - months) % 3 != 0 || y < 1970 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        sec < 0 || sec > 60 || d < 1 || d > mdays[(m - months) / 3])
        return 0;
    /* days from 1970-01-01 of the civil date (H. Hinnant's algorithm) */
    int mo = (int)(m - months) / 3 + 1;
    int yy = y - (mo <= 2);
    int era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    return days * 86400 + h * 3600 + mi * 60 + sec;
}

/* libevent calls this once per request: with a response, or with a status of
 * 0 when connecting, the TLS handshake or the deadline failed. */
static void client_done(struct evhttp_request *req, void *arg)
{
    client_call *call = arg;
    pconn *pc = call->pc;
    dest *d = pc->d;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    call_unclock(call);
    pc->busy = false;
    if (status == 0 || pc->dead || d->nidle >= IDLE_MAX_PER_DEST) {
        pc->busy = true; /* not in the idle list */
        conn_retire(pc);
    } else {
        evutil_gettimeofday(&pc->idle_since, NULL);
        pc->next = d->idle;
        d->idle = pc;
        d->nidle++;
    }
    if (status == 0 && call->reused) {
        struct timeval now;
        evutil_gettimeofday(&now, NULL);
        long spent = (now.tv_sec - call->started.tv_sec) * 1000 +
                     (now.tv_usec - call->started.tv_usec) / 1000;
        if (spent < call->timeout_ms / 2) {
            call->timeout_ms -= (int)spent;
            call->reused = false;
            stats.resent++;
            if (call_send(call, NULL) == 0)
                return;
        }
    }
    const uint8_t *body = (const uint8_t *)"";
    size_t len = 0;
    struct evbuffer *in = NULL;
    if (req != NULL && status != 0) {
        in = evhttp_request_get_input_buffer(req);
        len = evbuffer_get_length(in);
        if (len)
            body = evbuffer_pullup(in, -1);
    }
    reply_date = req != NULL && status != 0
                     ? http_date(evhttp_find_header(evhttp_request_get_input_headers(req), "Date"))
                     : 0;
    call->cb(status, body, len, call->arg);
    reply_date = 0;
    if (len)
        khc_wipe((void *)body, len); /* answers carry personal data */
    if (call->body != NULL)
        khc_wipe(call->body, call->len);
    free(call->body);
    free(call);
}

/* The reply did not come whole within the request's time: the request is
 * cancelled (libevent frees it and resets its connection, without calling
 * client_done) and fails as a timeout would. */
static void call_expired(evutil_socket_t fd, short what, void *arg)
{
    client_call *call = arg;
    (void)fd;
    (void)what;
    kh_info("http", "no whole reply from %s within %d ms: the request is given up",
            call->pc->d->hostport, call->timeout_ms);
    call->pc->dead = true;
    evhttp_cancel_request(call->req);
    client_done(NULL, call);
}

/* Sends call on an idle connection of d if one is fit (d NULL: always a new
 * connection to the destination of call's last connection). 0 or -1. */
static int call_send(client_call *call, dest *d)
{
    pconn *pc = NULL;
    if (d != NULL) {
        pc = idle_take(d);
        call->reused = pc != NULL;
        if (pc != NULL)
            stats.reused++;
    } else {
        d = call->pc->d;
    }
    if (pc == NULL)
        pc = conn_open(d);
    if (pc == NULL)
        return -1;
    pc->busy = true;
    call->pc = pc;
    evutil_gettimeofday(&call->started, NULL);
    struct timeval tv = {call->timeout_ms / 1000, (call->timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(pc->conn, &tv);
    struct evhttp_request *req = evhttp_request_new(client_done, call);
    call->deadline = req ? evtimer_new(d->base, call_expired, call) : NULL;
    if (call->deadline == NULL || evtimer_add(call->deadline, &tv) != 0) {
        if (req != NULL)
            evhttp_request_free(req);
        call_unclock(call);
        conn_retire(pc);
        return -1;
    }
    call->req = req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", d->host);
    bool ctype = false;
    for (size_t i = 0; call->hv[i] != NULL; i += 2) {
        evhttp_add_header(h, call->hv[i], call->hv[i + 1]);
        ctype = ctype || evutil_ascii_strcasecmp(call->hv[i], "Content-Type") == 0;
    }
    if (!ctype)
        evhttp_add_header(h, "Content-Type", KH_PB_CONTENT_TYPE);
    if (call->len)
        evbuffer_add(evhttp_request_get_output_buffer(req), call->body, call->len);
    /* libevent frees a request whose make_request fails for want of memory
     * (strdup of the path), and one whose connection fails at once after its
     * callback ran inside make_request, unless the user owns it: owned until
     * queued, so that it is never read freed, and freed here when not queued */
    req->flags |= EVHTTP_USER_OWNED;
    if (evhttp_make_request(pc->conn, req, call->method, call->path) != 0) {
        evhttp_request_free(req);
        call_unclock(call);
        conn_retire(pc);
        return -1;
    }
    if (evhttp_request_get_connection(req) == NULL) {
        /* failed at once: client_done has run (call is gone) */
        evhttp_request_free(req);
        return 0;
    }
    req->flags &= ~EVHTTP_USER_OWNED; /* queued: libevent's again */
    return 0;
}

/* Copies the caller's headers into call: -1 if too many or too long, or a
 * name or value with a line break (it would end the header). */
static int call_headers(client_call *call, const char *const *headers)
{
    size_t used = 0, n = 0;
    for (; headers != NULL && headers[n] != NULL; n += 2) {
        if (n >= 2 * KH_HTTP_MAX_EXTRA || headers[n + 1] == NULL)
            return -1;
        for (int k = 0; k < 2; k++) {
            const char *v = headers[n + (size_t)k];
            size_t l = strlen(v);
            if (v[strcspn(v, "\r\n")] != '\0' || l >= sizeof call->hbuf - used)
                return -1;
            memcpy(call->hbuf + used, v, l + 1);
            call->hv[n + (size_t)k] = call->hbuf + used;
            used += l + 1;
        }
    }
    call->hv[n] = NULL;
    return 0;
}

int kh_http_request(struct event_base *base, SSL_CTX *ctx, enum evhttp_cmd_type method,
                    const char *hostport, const char *path, const uint8_t *body, size_t len,
                    int timeout_ms, const char *expect_org, const char *expect_cn,
                    kh_http_done_cb cb, void *arg)
{
    return kh_http_request_hdrs(base, ctx, method, hostport, path, body, len, timeout_ms,
                                expect_org, expect_cn, NULL, cb, arg);
}

int kh_http_request_hdrs(struct event_base *base, SSL_CTX *ctx, enum evhttp_cmd_type method,
                         const char *hostport, const char *path, const uint8_t *body, size_t len,
                         int timeout_ms, const char *expect_org, const char *expect_cn,
                         const char *const *headers, kh_http_done_cb cb, void *arg)
{
    char host[128];
    uint16_t port;
    if (kh_hostport(hostport, host, sizeof host, &port) != 0 || !kh_host_numeric(host) ||
        strlen(hostport) >= sizeof((dest *)0)->hostport || strlen(path) >= 128 ||
        (expect_org && strlen(expect_org) >= 64) || (expect_cn && strlen(expect_cn) >= 64) ||
        timeout_ms <= 0)
        return -1;
    /* a peer's name is checked in its TLS certificate: none without TLS */
    if (ctx == NULL && (expect_org != NULL || expect_cn != NULL))
        return -1;
    /* an empty name would mean "no check" in the destination key: refused */
    if ((expect_org != NULL && expect_org[0] == '\0') ||
        (expect_cn != NULL && expect_cn[0] == '\0'))
        return -1;
    dest *d = dest_find(base, ctx, hostport, host, port, expect_org ? expect_org : "",
                        expect_org && expect_cn ? expect_cn : "");
    client_call *call = d ? calloc(1, sizeof *call) : NULL;
    if (call == NULL)
        return -1;
    if (call_headers(call, headers) != 0) {
        free(call);
        return -1;
    }
    call->cb = cb;
    call->arg = arg;
    call->method = method;
    snprintf(call->path, sizeof call->path, "%s", path);
    call->timeout_ms = timeout_ms;
    if (len) {
        call->body = malloc(len);
        if (call->body == NULL) {
            free(call);
            return -1;
        }
        memcpy(call->body, body, len);
        call->len = len;
    }
    if (call_send(call, d) != 0) {
        if (call->body != NULL)
            khc_wipe(call->body, call->len);
        free(call->body);
        free(call);
        return -1;
    }
    return 0;
}

int kh_http_client_source(const char *host)
{
    if (host != NULL && (strlen(host) >= sizeof source || !kh_host_numeric(host)))
        return -1;
    snprintf(source, sizeof source, "%s", host ? host : "");
    return 0;
}

kh_http_stats kh_http_client_stats(void)
{
    return stats;
}

void kh_http_raise_open_files(void)
{
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
            kh_warn("http", "cannot raise the limit of open files to %llu",
                    (unsigned long long)nofile.rlim_max);
    }
}

void kh_http_client_close(struct event_base *base)
{
    if (watch_ev != NULL && event_get_base(watch_ev) == base) {
        event_free(watch_ev);
        watch_ev = NULL;
    }
    /* the destinations stay (busy connections point at them); their idle
     * connections go */
    for (dest *d = dests; d; d = d->next) {
        if (d->base != base)
            continue;
        while (d->idle != NULL) {
            pconn *pc = d->idle;
            d->idle = pc->next;
            d->nidle--;
            evhttp_connection_set_closecb(pc->conn, NULL, NULL);
            evhttp_connection_free(pc->conn);
            free(pc);
        }
    }
}
