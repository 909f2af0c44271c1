/* khhttp.c: evhttp + bufferevent_openssl glue. */
#include "khhttp.h"

#include "kakehashi.pb-c.h"
#include "khcrypto.h"
#include "khlog.h"
#include "khtls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void not_found(struct evhttp_request *req, void *arg)
{
    kh_http_reply_err(req, KH_E_NOT_FOUND_PATH, "no such endpoint on this listener");
}

static struct bufferevent *server_bev(struct event_base *base, void *arg)
{
    SSL *ssl = kh_tls_new((SSL_CTX *)arg);
    if (ssl == NULL)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
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
    evhttp_set_bevcb(http, server_bev, ctx);
    evhttp_set_gencb(http, not_found, NULL);
    evhttp_set_max_body_size(http, (ev_ssize_t)max_body);
    evhttp_set_max_headers_size(http, 16384);
    evhttp_set_timeout(http, 30);
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
    return http;
}

SSL *kh_http_req_ssl(struct evhttp_request *req)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    return bev ? bufferevent_openssl_get_ssl(bev) : NULL;
}

kh_err kh_http_body(struct evhttp_request *req, size_t max, uint8_t **body, size_t *len)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return KH_E_BAD_REQUEST;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > max)
        return KH_E_TOO_LARGE;
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
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/x-protobuf");
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
    Kh__Status st = KH__STATUS__INIT;
    st.code = (char *)info->code;
    st.message = text;
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
    Kh__Status *st = kh__status__unpack(NULL, len, body);
    snprintf(code, codelen, "%s", st && st->code ? st->code : kh_err_code(KH_E_UPSTREAM));
    snprintf(msg, msglen, "%s", st && st->message ? st->message : "unreadable refusal");
    kh__status__free_unpacked(st, NULL);
}

typedef struct {
    kh_http_done_cb cb;
    void *arg;
    struct evhttp_connection *conn;
} client_call;

static void free_conn_later(evutil_socket_t fd, short what, void *arg)
{
    evhttp_connection_free(arg);
}

/* libevent calls this once per request: with a response, or with a status of
 * 0 when connecting, the TLS handshake or the deadline failed. The connection
 * is freed on the next loop turn, never inside its own callback, on every one
 * of those paths (libevent's auto-free misses the failed-connect path). */
static void client_done(struct evhttp_request *req, void *arg)
{
    client_call *call = arg;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    const uint8_t *body = (const uint8_t *)"";
    size_t len = 0;
    struct evbuffer *in = NULL;
    if (req != NULL && status != 0) {
        in = evhttp_request_get_input_buffer(req);
        len = evbuffer_get_length(in);
        if (len)
            body = evbuffer_pullup(in, -1);
    }
    call->cb(status, body, len, call->arg);
    if (len)
        khc_wipe((void *)body, len); /* answers carry personal data */
    struct timeval now = {0, 0};
    struct event_base *base = evhttp_connection_get_base(call->conn);
    if (event_base_once(base, -1, EV_TIMEOUT, free_conn_later, call->conn, &now) != 0)
        kh_warn("http", "cannot schedule freeing an outgoing connection");
    free(call);
}

int kh_http_request(struct event_base *base, SSL_CTX *ctx, enum evhttp_cmd_type method,
                    const char *hostport, const char *path, const uint8_t *body, size_t len,
                    int timeout_ms, const char *expect_org, const char *expect_cn,
                    kh_http_done_cb cb, void *arg)
{
    char host[128];
    uint16_t port;
    if (kh_hostport(hostport, host, sizeof host, &port) != 0 || !kh_host_numeric(host))
        return -1;
    SSL *ssl = kh_tls_new(ctx);
    if (ssl == NULL)
        return -1;
    if (expect_org != NULL && kh_tls_expect_peer(ssl, expect_org, expect_cn) != 0) {
        kh_tls_free(ssl);
        return -1;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        kh_tls_free(ssl);
        return -1;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    struct evhttp_connection *conn =
        evhttp_connection_base_bufferevent_new(base, NULL, bev, host, port);
    if (conn == NULL) {
        bufferevent_free(bev);
        return -1;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(conn, &tv);
    evhttp_connection_set_retries(conn, 0);
    client_call *call = malloc(sizeof *call);
    struct evhttp_request *req = call ? evhttp_request_new(client_done, call) : NULL;
    if (req == NULL) {
        free(call);
        evhttp_connection_free(conn);
        return -1;
    }
    call->cb = cb;
    call->arg = arg;
    call->conn = conn;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/x-protobuf");
    evhttp_add_header(h, "Connection", "close");
    if (len)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    if (evhttp_make_request(conn, req, method, path) != 0) {
        /* the request was not queued: it is ours to free unless libevent already did */
        if (evhttp_request_get_connection(req) != NULL)
            evhttp_request_free(req);
        free(call);
        evhttp_connection_free(conn);
        return -1;
    }
    return 0;
}
