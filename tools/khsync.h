/* khsync.h: a small blocking HTTPS client for the command-line tools (never
 * used inside a daemon's event loop). Mutual TLS with a client certificate;
 * a connection can carry several requests (HTTP/1.1 keep-alive), each
 * response framed by its Content-Length. */
#ifndef KH_SYNC_H
#define KH_SYNC_H

#include "kherr.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int status;      /* HTTP status; 0 if the connection or TLS failed */
    char error[256]; /* why, when status == 0 */
    uint8_t *body;
    size_t len;
} kh_sync_resp;

typedef struct kh_sync_conn kh_sync_conn;

/* Connects to hostport. If expect_org is not NULL, the server's certificate
 * must carry that O= (and CN= if expect_cn is not NULL), checked during the
 * handshake. NULL with err set on failure. */
kh_sync_conn *kh_sync_connect(const char *hostport, const char *cert, const char *key,
                              const char *ca, const char *expect_org, const char *expect_cn,
                              int timeout_ms, char *err, size_t errlen);
/* POSTs (or GETs if body == NULL) path on an open connection. 0 if a
 * response arrived (resp->status set); -1 otherwise (resp->error says why;
 * the connection is then unusable). */
KH_MUST_CHECK int kh_sync_do(kh_sync_conn *c, const char *path, const uint8_t *body, size_t len,
                             kh_sync_resp *resp);
/* The same with the method ("GET", "POST"), the body's content type and
 * extra header lines (each "Name: value\r\n"; NULL for none). The request
 * head is wiped after it is sent (it may carry a bearer token). */
KH_MUST_CHECK int kh_sync_do_ex(kh_sync_conn *c, const char *method, const char *path,
                                const char *ctype, const char *headers, const uint8_t *body,
                                size_t len, kh_sync_resp *resp);
void kh_sync_close(kh_sync_conn *c);

/* One request on a connection of its own. */
KH_MUST_CHECK int kh_sync_request(const char *hostport, const char *cert, const char *key,
                                  const char *ca, const char *expect_org, const char *expect_cn,
                                  const char *path, const uint8_t *body, size_t len, int timeout_ms,
                                  kh_sync_resp *resp);
void kh_sync_resp_free(kh_sync_resp *resp);

#endif
