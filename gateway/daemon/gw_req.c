/* gw_req.c: a request waiting for asynchronous work (gw_req.h). */
#include "gw_req.h"
#include "gw_state.h"

#include "khcrypto.h"
#include "khhttp.h"

/* The client went away: its request is freed by libevent, forget it. */
static void gone(struct evhttp_connection *conn, void *arg)
{
    *(struct evhttp_request **)arg = NULL;
}

void gw_req_hold(struct evhttp_request **slot, struct evhttp_request *req)
{
    *slot = req;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), gone, slot);
}

struct evhttp_request *gw_req_take(struct evhttp_request **slot)
{
    struct evhttp_request *req = *slot;
    if (req != NULL)
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
    *slot = NULL;
    return req;
}

void *gw_read_pb(struct evhttp_request *req, const ProtobufCMessageDescriptor *d)
{
    uint8_t *body;
    size_t len;
    char why[160];
    kh_err e =
        kh_http_body(req, (size_t)G.set.max_body, KH_PB_CONTENT_TYPE, &body, &len, why, sizeof why);
    if (e != KH_OK) {
        kh_http_reply_err(req, e, "expected POST with an %s body of at most %d bytes: %s",
                          KH_PB_CONTENT_TYPE, G.set.max_body, why);
        return NULL;
    }
    void *m = kh_pb_unpack(d, body, len, &e, why, sizeof why);
    /* the raw body may hold a national reference or personal data */
    khc_free_secret(body, len);
    if (m == NULL)
        kh_http_reply_err(req, e, "body is not a %s: %s", d->name, why);
    return m;
}
