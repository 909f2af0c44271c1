/* khsync.c: the tools' blocking HTTPS client. */
#include "khsync.h"

#include "khhttp.h"
#include "khtls.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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

#define MAX_RESPONSE (64u << 20)

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
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

static void tls_error(kh_sync_resp *resp, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[200] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(resp->error, sizeof resp->error, "%s%s%s", what, buf[0] ? ": " : "", buf);
    ERR_clear_error();
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

int kh_sync_request(const char *hostport, const char *cert, const char *key, const char *ca,
                    const char *expect_org, const char *expect_cn, const char *path,
                    const uint8_t *body, size_t len, int timeout_ms, kh_sync_resp *resp)
{
    char host[128], head[512], err[256];
    uint16_t port;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    bool clean_eof = false;
    memset(resp, 0, sizeof *resp);
    /* a peer that refuses us (e.g. our client certificate, after the TLS 1.3
     * handshake) closes the socket under our write: make that an error with a
     * reason, not a SIGPIPE that kills the tool without a word */
    signal(SIGPIPE, SIG_IGN);
    if (kh_hostport(hostport, host, sizeof host, &port) != 0) {
        snprintf(resp->error, sizeof resp->error, "bad address '%s'", hostport);
        return -1;
    }
    ctx = kh_tls_client_ctx(cert, key, ca, err, sizeof err);
    if (ctx == NULL) {
        snprintf(resp->error, sizeof resp->error, "%s", err);
        return -1;
    }
    fd = connect_tcp(host, port, timeout_ms);
    if (fd < 0) {
        snprintf(resp->error, sizeof resp->error, "cannot connect to %s", hostport);
        goto out;
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 ||
        (expect_org != NULL && kh_tls_expect_peer(ssl, expect_org, expect_cn) != 0)) {
        snprintf(resp->error, sizeof resp->error, "cannot set up TLS");
        goto out;
    }
    if (SSL_connect(ssl) != 1) {
        tls_error(resp, "TLS handshake failed (or the server is not who we expected)");
        goto out;
    }
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-protobuf\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      body ? "POST" : "GET", path, host, body ? len : 0);
    if (hl < 0 || (size_t)hl >= sizeof head) {
        snprintf(resp->error, sizeof resp->error, "request path too long");
        goto out;
    }
    if (SSL_write(ssl, head, hl) != hl ||
        (body && len && SSL_write(ssl, body, (int)len) != (int)len)) {
        tls_error(resp, "cannot send the request (peer refused the connection)");
        goto out;
    }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            if (cap > MAX_RESPONSE) {
                snprintf(resp->error, sizeof resp->error, "response too large");
                goto out;
            }
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL)
                goto out;
            buf = nb;
        }
        int r = SSL_read(ssl, buf + n, 4096);
        if (r <= 0) {
            clean_eof = SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN;
            break;
        }
        n += (size_t)r;
    }
    if (buf == NULL || n == 0) {
        tls_error(resp, "no response (connection closed by peer)");
        goto out;
    }
    buf[n] = '\0';
    int status = 0;
    if (sscanf((char *)buf, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(resp->error, sizeof resp->error, "not an HTTP response");
        goto out;
    }
    uint8_t *sep = (uint8_t *)strstr((char *)buf, "\r\n\r\n");
    if (sep == NULL) {
        snprintf(resp->error, sizeof resp->error, "truncated HTTP response");
        goto out;
    }
    sep += 4;
    resp->len = n - (size_t)(sep - buf);
    /* a body shorter than announced is an error, never a partial answer */
    const char *cl = find_header((const char *)buf, (const char *)sep, "content-length:");
    if (cl != NULL) {
        unsigned long long want = strtoull(cl, NULL, 10);
        if (want != resp->len) {
            snprintf(resp->error, sizeof resp->error, "truncated response (%zu of %llu bytes)",
                     resp->len, want);
            resp->len = 0;
            goto out;
        }
    } else if (!clean_eof) {
        snprintf(resp->error, sizeof resp->error, "response without length, cut short");
        resp->len = 0;
        goto out;
    }
    resp->body = malloc(resp->len + 1);
    if (resp->body == NULL)
        goto out;
    memcpy(resp->body, sep, resp->len);
    resp->status = status;
out:
    free(buf);
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    return resp->status ? 0 : -1;
}

void kh_sync_resp_free(kh_sync_resp *resp)
{
    free(resp->body);
    resp->body = NULL;
}
