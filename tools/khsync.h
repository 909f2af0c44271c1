/* khsync.h: a small blocking HTTPS client for the command-line tools (never
 * used inside a daemon's event loop). Mutual TLS with a client certificate. */
#ifndef KH_SYNC_H
#define KH_SYNC_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int status;      /* HTTP status; 0 if the connection or TLS failed */
    char error[256]; /* why, when status == 0 */
    uint8_t *body;
    size_t len;
} kh_sync_resp;

/* POSTs (or GETs if body == NULL) to https://hostport/path. Sets SIGPIPE to be
 * ignored (a peer closing under a write becomes an error, status 0). */
/* POSTs (or GETs if body == NULL) to https://hostport/path. If expect_org
 * is not NULL, the server's certificate must carry that O= (and CN= if
 * expect_cn is not NULL), checked during the handshake. */
int kh_sync_request(const char *hostport, const char *cert, const char *key, const char *ca,
                    const char *expect_org, const char *expect_cn, const char *path,
                    const uint8_t *body, size_t len, int timeout_ms, kh_sync_resp *resp);
void kh_sync_resp_free(kh_sync_resp *resp);

#endif
