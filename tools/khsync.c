/* khsync.c: the tools' blocking HTTPS client. */
#include "khsync.h"

#include "khcrypto.h"
#include "khhttp.h"
#include "khtls.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_RESPONSE (64ull << 20)

static int connect_tcp(const char *host, uint16_t port, int timeout_ms)
{
    char ports[8];
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(ports, sizeof ports, "%u", port);
    if (getaddrinfo(host, ports, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd >= 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        /* requests go out as head + body: without this, Nagle and delayed
         * ACKs add ~40 ms to every request on a kept-alive connection */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* The value of a header (name given lowercase with its colon) in the head
 * [buf, end), or NULL. */
static const char *find_header(const char *buf, const char *end, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(buf, "\r\n"); p != NULL && p + 2 < end; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        size_t i = 0;
        while (i < nl && line + i < end && tolower((unsigned char)line[i]) == name[i])
            i++;
        if (i == nl)
            return line + nl;
    }
    return NULL;
}

struct kh_sync_conn {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    char host[128];
};

kh_sync_conn *kh_sync_connect(const char *hostport, const char *cert, const char *key,
                              const char *ca, const char *expect_org, const char *expect_cn,
                              int timeout_ms, char *err, size_t errlen)
{
    uint16_t port;
    kh_sync_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->fd = -1;
    /* a peer that refuses us (e.g. our client certificate, after the TLS 1.3
     * handshake) closes the socket under our write: make that an error with a
     * reason, not a SIGPIPE that kills the tool without a word */
    signal(SIGPIPE, SIG_IGN);
    if (kh_hostport(hostport, c->host, sizeof c->host, &port) != 0) {
        snprintf(err, errlen, "bad address '%s'", hostport);
        goto fail;
    }
    c->ctx = kh_tls_client_ctx(cert, key, ca, err, errlen);
    if (c->ctx == NULL)
        goto fail;
    c->fd = connect_tcp(c->host, port, timeout_ms);
    if (c->fd < 0) {
        snprintf(err, errlen, "cannot connect to %s", hostport);
        goto fail;
    }
    c->ssl = kh_tls_connect_fd(c->ctx, c->fd, expect_org, expect_cn, err, errlen);
    if (c->ssl == NULL)
        goto fail;
    return c;
fail:
    kh_sync_close(c);
    return NULL;
}

void kh_sync_close(kh_sync_conn *c)
{
    if (c == NULL)
        return;
    kh_tls_close(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    kh_tls_ctx_free(c->ctx);
    free(c);
}

/* Reads until the head (up to the blank line) is complete; returns the bytes
 * held in buf (head and possibly the start of the body) or -1. */
static ssize_t read_head(kh_sync_conn *c, uint8_t **bufp, size_t *capp, size_t *headlen,
                         kh_sync_resp *resp)
{
    size_t n = 0;
    for (;;) {
        if (n + 4096 + 1 > *capp) {
            size_t cap = *capp ? *capp * 2 : 16384;
            if (cap > 65536) {
                snprintf(resp->error, sizeof resp->error, "response head too large");
                return -1;
            }
            uint8_t *nb = realloc(*bufp, cap);
            if (nb == NULL)
                return -1;
            *bufp = nb;
            *capp = cap;
        }
        int r = kh_tls_read(c->ssl, *bufp + n, 4096,
                            n ? "connection closed in the middle of a response"
                              : "no response (connection closed by peer)",
                            resp->error, sizeof resp->error);
        if (r < 0)
            return -1;
        n += (size_t)r;
        (*bufp)[n] = '\0';
        char *sep = strstr((char *)*bufp, "\r\n\r\n");
        if (sep != NULL) {
            *headlen = (size_t)(sep + 4 - (char *)*bufp);
            return (ssize_t)n;
        }
    }
}

int kh_sync_do(kh_sync_conn *c, const char *path, const uint8_t *body, size_t len,
               kh_sync_resp *resp)
{
    return kh_sync_do_ex(c, body ? "POST" : "GET", path, "application/x-protobuf", NULL, body, len,
                         resp);
}

int kh_sync_do_ex(kh_sync_conn *c, const char *method, const char *path, const char *ctype,
                  const char *headers, const uint8_t *body, size_t len, kh_sync_resp *resp)
{
    char head[2048];
    uint8_t *buf = NULL;
    size_t cap = 0, headlen = 0;
    memset(resp, 0, sizeof *resp);
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n%s"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, c->host, ctype, headers ? headers : "", body ? len : 0);
    if (hl < 0 || (size_t)hl >= sizeof head) {
        snprintf(resp->error, sizeof resp->error, "request path too long");
        return -1;
    }
    static const char *const refused = "cannot send the request (peer refused the connection)";
    bool sent =
        kh_tls_write(c->ssl, head, (size_t)hl, refused, resp->error, sizeof resp->error) == 0 &&
        (!body || !len ||
         kh_tls_write(c->ssl, body, len, refused, resp->error, sizeof resp->error) == 0);
    khc_wipe(head, sizeof head);
    if (!sent)
        return -1;
    ssize_t n = read_head(c, &buf, &cap, &headlen, resp);
    if (n < 0) {
        free(buf);
        return -1;
    }
    int status = 0;
    const char *cl = find_header((const char *)buf, (const char *)buf + headlen, "content-length:");
    if (sscanf((char *)buf, "HTTP/1.%*d %d", &status) != 1 || cl == NULL) {
        snprintf(resp->error, sizeof resp->error, "not an HTTP response with a Content-Length");
        free(buf);
        return -1;
    }
    unsigned long long want = strtoull(cl, NULL, 10);
    if (want > MAX_RESPONSE) {
        snprintf(resp->error, sizeof resp->error, "response too large");
        free(buf);
        return -1;
    }
    resp->body = malloc(want + 1);
    if (resp->body == NULL) {
        free(buf);
        return -1;
    }
    size_t have = (size_t)n - headlen;
    if (have > want)
        have = want; /* nothing may follow a response we did not ask for */
    memcpy(resp->body, buf + headlen, have);
    free(buf);
    while (have < want) {
        char why[200];
        int r = kh_tls_read(c->ssl, resp->body + have, want - have, "read", why, sizeof why);
        if (r < 0) {
            snprintf(resp->error, sizeof resp->error, "truncated response (%zu of %llu bytes)",
                     have, want);
            kh_sync_resp_free(resp);
            return -1;
        }
        have += (size_t)r;
    }
    resp->len = have;
    resp->status = status;
    return 0;
}

int kh_sync_request(const char *hostport, const char *cert, const char *key, const char *ca,
                    const char *expect_org, const char *expect_cn, const char *path,
                    const uint8_t *body, size_t len, int timeout_ms, kh_sync_resp *resp)
{
    char err[256];
    memset(resp, 0, sizeof *resp);
    kh_sync_conn *c = kh_sync_connect(hostport, cert, key, ca, expect_org, expect_cn, timeout_ms,
                                      err, sizeof err);
    if (c == NULL) {
        snprintf(resp->error, sizeof resp->error, "%s", err);
        return -1;
    }
    int rc = kh_sync_do(c, path, body, len, resp);
    kh_sync_close(c);
    return rc;
}

void kh_sync_resp_free(kh_sync_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}
