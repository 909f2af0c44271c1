/* khhttp.h: HTTP/1.1 over mutual TLS on libevent's evhttp, for servers
 * (business, peer, router listeners) and for the one client shape we need
 * (a POST or GET with a deadline whose answer arrives on the event loop).
 * Convention on every wire: 200 carries the operation's response message;
 * any other status carries a kh.Status message (code + message). */
#ifndef KH_HTTP_H
#define KH_HTTP_H

#include "kherr.h"

#include <event2/event.h>
#include <event2/http.h>
#include "khtls.h"
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if host is an IPv4 or IPv6 literal. Outgoing requests accept only
 * those: a name would need a blocking lookup on the event loop. */
bool kh_host_numeric(const char *host);
/* Splits "host:port"; 0 on success. */
KH_MUST_CHECK int kh_hostport(const char *hp, char *host, size_t hostlen, uint16_t *port);

/* Splits a plain-HTTP URL "http://HOST:PORT/PATH" (a numeric host, a path
 * without query or fragment, "/" if none) for kh_http_request; 0, or -1
 * with why. */
KH_MUST_CHECK int kh_http_url(const char *url, char *hostport, size_t hplen, char *path,
                              size_t pathlen, char *why, size_t whylen);

/* Binds a TLS listener; every connection must complete mutual TLS with ctx.
 * max_body: larger bodies are refused with 413 before being read.
 * ctx NULL: a plain-HTTP listener for health probes only (gw_health.c):
 * no TLS, no client identity, no admission limits, GET only and no body;
 * its routes must answer from memory, at once, with nothing secret. */
struct evhttp *kh_http_listen(struct event_base *base, SSL_CTX *ctx, const char *hostport,
                              size_t max_body, char *err, size_t errlen);
/* A plain-HTTP listener that takes GET and POST with bodies up to max_body,
 * for a simulator of a service that is plain HTTP by nature (tools/khtsa, a
 * time-stamping authority: its replies are signed on their own). No TLS, no
 * client identity, no admission limits. */
struct evhttp *kh_http_listen_plain(struct event_base *base, const char *hostport, size_t max_body,
                                    char *err, size_t errlen);
/* How a listener refuses a request that libevent itself could not accept
 * (see evhttp_send_error in khhttp.c): by default a kh.Status message; the
 * admin API sets its JSON. Called on the event loop, with no personal data
 * in msg. Set at start, by the main thread. */
typedef void (*kh_http_refuse_fn)(struct evhttp_request *req, kh_err e, const char *msg);
void kh_http_set_refuser(struct evhttp *http, kh_http_refuse_fn refuse);
/* The TLS session of a request's connection. */
SSL *kh_http_req_ssl(struct evhttp_request *req);
/* Serves path on http with cb(req, arg): the path as the request sent it,
 * byte for byte (libevent's own matching decodes it first, so that
 * "/v1/query%00/../x" was served as /v1/query); anything else is KH-1006.
 * Every route of every listener is set here (check_layers.sh), at start,
 * by the main thread: at most 64 in all (more is a bug: it aborts). */
void kh_http_route(struct evhttp *http, const char *path,
                   void (*cb)(struct evhttp_request *, void *), void *arg);
/* Parses a request's query string (as sent) into out, decoded. Refuses
 * (-1, why set, out left empty) a percent-encoded NUL (decoding would cut the
 * value there), a name or value that is not UTF-8 once decoded, or a
 * malformed string. */
KH_MUST_CHECK int kh_http_query(const char *q, struct evkeyvalq *out, char *why, size_t whylen);

/* The media type of every protobuf body, both ways. */
#define KH_PB_CONTENT_TYPE "application/x-protobuf"

/* The request body as a malloc'd copy the caller frees with khc_free_secret;
 * libevent's own buffers are wiped. Refuses, with the reason in why: a method
 * other than POST and a body whose Content-Type is not ctype (KH_E_BAD_REQUEST;
 * ctype NULL: not checked here; an empty body may come without a type), and a
 * body over max (KH_E_TOO_LARGE). */
KH_MUST_CHECK kh_err kh_http_body(struct evhttp_request *req, size_t max, const char *ctype,
                                  uint8_t **body, size_t *len, char *why, size_t whylen);
/* Whether the request's Content-Type is ctype (its media type, compared
 * without case; parameters after ';' allowed). */
bool kh_http_ctype_is(struct evhttp_request *req, const char *ctype);
/* Sends 200 with a serialized protobuf message. */
void kh_http_reply_pb(struct evhttp_request *req, const ProtobufCMessage *msg);
/* Sends a refusal: HTTP status from the code table, body kh.Status. The
 * message must not contain personal data. */
void kh_http_reply_err(struct evhttp_request *req, kh_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sends status with a JSON body (content_type NULL: application/json),
 * never cached. */
void kh_http_reply_json(struct evhttp_request *req, int status, const char *body, size_t len,
                        const char *content_type);
/* A refusal as JSON: {"code": "KH-…", "message": msg}, HTTP status from the
 * code table (the admin API's and the health listener's refuser). */
/* A refusal with a body of the caller's (JSON with "code" and "message"
 * and more, such as an import's report), sent with the code's status and
 * counted like the others. */
void kh_http_reply_json_refusal(struct evhttp_request *req, kh_err e, const char *body, size_t len);
void kh_http_reply_json_err(struct evhttp_request *req, kh_err e, const char *msg);
/* Relays a Status received from another hop unchanged. */
void kh_http_reply_raw(struct evhttp_request *req, int http_status, const uint8_t *body,
                       size_t len);

/* A TLS handshake must complete within KH_HTTP_GRACE_S, and a request being
 * read (headers and body) must come at KH_HTTP_MIN_RATE bytes/s at least,
 * from its first byte, once KH_HTTP_GRACE_S have passed: a slower client is
 * disconnected (one that sends nothing is ended by the listener's read
 * timeout instead). */
#define KH_HTTP_MIN_RATE 1024
#define KH_HTTP_GRACE_S 10
/* A kept-alive connection's client certificate is verified again at its
 * first request this long after the last verification (and at once when its
 * listener took a new context): a certificate revoked, expired, or whose
 * CA's CRL expired meanwhile gets no more answers over it. */
#define KH_HTTP_RECHECK_S 60
/* A kept-alive connection's client certificate is verified again at its
 * first request this long after the last verification (and at once when its
 * listener took a new context): a certificate revoked, expired, or whose
 * CA's CRL expired meanwhile gets no more answers over it. */
#define KH_HTTP_RECHECK_S 60
/* How many connections were closed for being too slow, since start. */
unsigned long kh_http_slow_closed(void);
/* While on (a node draining before it stops), every request's reply carries
 * Connection: close, so that kept-alive clients reconnect (through their load
 * balancer, to another node) instead of sending more on this connection. */
void kh_http_set_closing(bool on);
/* Routes a request that no path matched (the admin API's own router): cb
 * is called as a route's would be. */
void kh_http_route_other(struct evhttp *http, void (*cb)(struct evhttp_request *, void *),
                         void *arg);

/* Admission (every route of a listener): a request holds a place from the
 * moment it has been read until its reply is sent, or its client has gone.
 * When the listener has max_inflight requests in flight, when the client's
 * organisation (certificate O=: a tenant, the router) has org_max, or the
 * client (O= and CN=: a business system) has client_max, a new request is
 * refused at once: 503 KH-5003 with Retry-After: 1, never queued. An
 * organisation with nothing in flight is admitted even when the listener is
 * full (so that one tenant's load cannot shut the others out: the overflow
 * is at most one request per organisation, or per client with by_client).
 * Connections count from their
 * first request (their TLS handshake done: those that never complete one
 * cannot fill the listener); one whose first request comes when the
 * listener already has max_conns, or when its client already has
 * client_max_conns there (so that one business system cannot take every
 * connection), has each request refused so, and is closed (a closed
 * connection is let go within a tenth of a second: until then it counts).
 * 0 means no limit. Set at start and on SIGHUP, on the event loop's thread. */
typedef struct {
    int max_conns, max_inflight, org_max, client_max;
    int client_max_conns; /* connections of one client (O= and CN=) */
    int tenant_max;       /* requests for one tenant: see kh_http_admit_for */
    /* the client (O= and CN=), not its organisation, is the unit admitted
     * past a full listener when it has nothing in flight (the admin
     * listener: every operator's certificate has the same O=) */
    bool by_client;
    /* TLS handshakes one client address may start per second (and at once):
     * more are refused at the client's first message, before any costly
     * step, with a handshake_failure alert (no HTTP status is possible
     * before TLS) */
    int handshake_rate;
} kh_http_limits;
void kh_http_set_limits(struct evhttp *http, const kh_http_limits *lim);
/* The TLS context of the listener's next connections (those open keep
 * theirs): on the listener's event loop; the caller keeps ctx alive while
 * the listener may use it, and the old one while connections made with it
 * may still read it. 0, or -1 (not a TLS listener, or the context cannot
 * take the listener's hello gate). */
KH_MUST_CHECK int kh_http_set_ctx(struct evhttp *http, SSL_CTX *ctx);
/* Admission by the tenant a request is for, where the client's certificate
 * does not say it (the peer listener: the router carries every tenant's
 * queries). On a listener with tenant_max, the handler calls this once it
 * knows the tenant (on the peer listener: the recipient in the header, read
 * before its signature is checked, the client being the router): a request is refused
 * at once (503 KH-5003, replied here: false) when that tenant has
 * tenant_max in flight, or when the listener has max_inflight in flight and
 * the tenant has some; so one tenant's flood cannot shut the others out. The
 * listener's max_inflight is checked here, not at admission, there. true
 * (nothing replied) if admitted, or if the listener has no tenant_max. */
KH_MUST_CHECK bool kh_http_admit_for(struct evhttp_request *req, const char *tenant);
/* Of a listener: connections counted against max_conns (from their first
 * request), connections open (counted or not, handshaking included),
 * requests in flight, requests refused for overload since start,
 * connections closed for being too slow since start, and TLS handshakes
 * refused for handshake_rate since start. */
typedef struct {
    int conns, open, inflight;
    unsigned long refused, slow_closed;
    unsigned long hello_refused; /* TLS handshakes refused for handshake_rate */
} kh_http_load;
kh_http_load kh_http_load_of(struct evhttp *http);
#define KH_HTTP_WHO_MAX 136

/* What a listener answered since start: per endpoint (a route's path; on a
 * listener of kh_http_route_other, what the handler named with
 * kh_http_set_endpoint, else "*"), how many requests and how long each took
 * from being read whole to its reply sent, as a histogram of KH_HTTP_BUCKETS
 * upper bounds (kh_http_bucket_ms; the last is +Inf), and the refusals by
 * code (every reply through kh_http_reply_err or kh_http_reply_json_err,
 * libevent's own refusals included). Endpoints past KH_HTTP_MAX_ENDPOINTS
 * count as "other". Event loop only: kh_http_answers_of copies them there. */
#define KH_HTTP_BUCKETS 12
#define KH_HTTP_MAX_ENDPOINTS 40
extern const unsigned kh_http_bucket_ms[KH_HTTP_BUCKETS - 1];
typedef struct {
    const char *endpoint; /* a static string (a route's path, a handler's constant) */
    uint64_t count, sum_us;
    uint64_t bucket[KH_HTTP_BUCKETS]; /* not cumulative: bucket i holds (bound i-1, bound i] */
} kh_http_endpoint_stat;
typedef struct {
    kh_http_endpoint_stat ep[KH_HTTP_MAX_ENDPOINTS + 1]; /* + "other" */
    size_t nep;
    uint64_t refusals[KH_E__COUNT];
} kh_http_answers;
/* Copies the listener's figures into *out (zeros for an unknown listener). */
void kh_http_answers_of(struct evhttp *http, kh_http_answers *out);
/* Names the endpoint a request counts under (a constant string), for a
 * listener whose one handler serves many (the admin API). */
void kh_http_set_endpoint(struct evhttp_request *req, const char *endpoint);

/* Headers of a request or a reply, in all: at most this many bytes. */
#define KH_HTTP_MAX_HEADERS 16384
/* The body of a reply to an outgoing request: at most the largest envelope
 * (a payload of 16 MiB, khc_open's limit, and its header) or directory. A
 * longer one fails the request (status 0) before it is read whole. */
#define KH_HTTP_MAX_RESPONSE ((size_t)17 << 20)

/* Outgoing request, over TLS with ctx, or plain HTTP with ctx NULL (for a
 * service whose answers are signed on their own, such as a time-stamping
 * authority; no expected O= or CN= then). status is the HTTP status, or 0 if the connection, TLS
 * handshake (including the expected-peer check) or deadline failed, or the
 * reply broke the limits above. timeout_ms bounds the whole exchange (from
 * the request to the last byte of the reply), not only each read. body is
 * valid only during the callback. Connections are kept alive and reused for
 * the same destination (address, client context, expected O= and CN=);
 * at most 64 idle per destination, none idle longer than 20 s, none used
 * after 10 minutes (the handshake and its certificate checks are redone; an
 * empty expected O= or CN= is refused, NULL means no check). Only on the
 * event base's own thread; every request must be safe to send twice (a GET,
 * or an envelope whose repeat gets the kept reply): one that fails quickly on
 * a reused connection is sent once more on a new one. */
typedef void (*kh_http_done_cb)(int status, const uint8_t *body, size_t len, void *arg);
KH_MUST_CHECK int kh_http_request(struct event_base *base, SSL_CTX *ctx,
                                  enum evhttp_cmd_type method, const char *hostport,
                                  const char *path, const uint8_t *body, size_t len, int timeout_ms,
                                  const char *expect_org, const char *expect_cn, kh_http_done_cb cb,
                                  void *arg);

/* During a kh_http_done_cb: the reply's Date header as seconds since 1970
 * (0: none or not an HTTP-date), for a clock compared with a peer's. */
int64_t kh_http_reply_date(void);

/* The same with headers of the caller's: headers is NULL or a NULL-ended
 * list of name, value pairs (at most KH_HTTP_MAX_EXTRA pairs, 512 bytes in
 * all); a Content-Type among them replaces the protobuf one (for a client
 * of the admin API: JSON, and Authorization). */
#define KH_HTTP_MAX_EXTRA 4
KH_MUST_CHECK int kh_http_request_hdrs(struct event_base *base, SSL_CTX *ctx,
                                       enum evhttp_cmd_type method, const char *hostport,
                                       const char *path, const uint8_t *body, size_t len,
                                       int timeout_ms, const char *expect_org,
                                       const char *expect_cn, const char *const *headers,
                                       kh_http_done_cb cb, void *arg);

/* The local address outgoing connections are made from (a numeric host;
 * NULL: the system's choice), for a load generator that must be seen as a
 * client address of its own. 0, or -1 if not numeric. */
KH_MUST_CHECK int kh_http_client_source(const char *host);

/* Counters of outgoing connections since start: opened (each one a TCP
 * connect and a full TLS handshake), reused (requests sent on a kept-alive
 * connection), resent (requests sent again after a reused connection failed). */
typedef struct {
    uint64_t opened, reused, resent;
} kh_http_stats;
kh_http_stats kh_http_client_stats(void);
/* Closes the idle connections of base (at shutdown, before the base and the
 * client contexts are freed). */
void kh_http_client_close(struct event_base *base);
/* Idle outgoing connections kept per destination (khhttp.c explains why so
 * many): each is an open file, counted by a daemon's check of its limit. */
#define KH_HTTP_IDLE_MAX_PER_DEST 512
/* Raises the soft limit of open files to the hard limit: every connection,
 * in or out, is a file descriptor. For a daemon's start. */
void kh_http_raise_open_files(void);

/* Decodes a kh.Status body into code/message (bounded copies). */
void kh_http_parse_status(const uint8_t *body, size_t len, char *code, size_t codelen, char *msg,
                          size_t msglen);

#endif
