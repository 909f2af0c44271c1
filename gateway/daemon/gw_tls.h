/* gw_tls.h: the gateway's own TLS contexts and trust stores (gw_tls.c):
 * the peer listener's, the admin listener's, the client's, the national
 * CA's store and the CAs' certificates shown for their expiry. Read at the
 * start; read again on SIGHUP when their files changed, and swapped in
 * without a restart: the listeners' next connections and the client's next
 * connections use the new ones, those open finish with the old ones. */
#ifndef KH_GW_TLS_H
#define KH_GW_TLS_H

#include "kherr.h"

#include "khcrypto.h"
#include "khtls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a reload read, built on a worker (gw_tls_prepare) and installed on
 * the event loop (gw_tls_install). */
typedef struct {
    uint8_t seen[32]; /* the files' digest when the change began */
    uint8_t digest[32];
    bool changed; /* the files differ from those in use: the rest was built */
    SSL_CTX *peer, *client, *admin;
    X509_STORE *national;
    X509 *national_ca, *operator_ca;
    char err[256]; /* changed and not built: why */
} gw_tls_next;

/* The files the gateway's TLS is read from (the certificate, its key, the
 * national CA, the operator CA with admin_listen). */
void gw_tls_paths(char cert[1024], char key[1024]);

/* At the start, before the event loop: every context into G. 0, or -1 with err. */
KH_MUST_CHECK int gw_tls_load(char *err, size_t errlen);

/* Once the tenants are loaded (their CRLs are in the digest too): the files
 * in use are those read now, so that the first refresh does not read them
 * all again. */
void gw_tls_settle(void);
/* On the event loop, as a reload begins: n->seen is the digest in use. */
void gw_tls_begin(gw_tls_next *n);
/* On a worker: the files' digest; if it is not n->seen, every context is
 * built (n->changed; n->err if one cannot be). */
void gw_tls_prepare(gw_tls_next *n);
/* On the event loop: the listeners and the client take what n holds (the
 * old ones are kept until exit). false with n->err if a listener refused. */
bool gw_tls_install(gw_tls_next *n);
/* What n still holds (after a failed or no install). */
void gw_tls_next_clear(gw_tls_next *n);

/* The CRL of a tenant's business CA (pki/org/ORG/business-ca.crl). */
void gw_tls_business_crl(const char *org, char path[1024]);

/* Files over this are refused (a national CA's CRL may be long). */
#define GW_TLS_MAX_FILE (16u << 20)

/* At exit: every context, the current and the replaced ones. */
void gw_tls_free(void);

#endif
