/* gw_req.h: requests of the daemon's listeners while their work runs
 * elsewhere (a database worker, an outgoing request). Every handler keeps
 * its request in a slot of its call (struct evhttp_request *req):
 * gw_req_hold puts it there and clears the slot if the client goes away
 * (libevent frees the request then: no reply may be sent); gw_req_take hands
 * it back for the reply (NULL if the client has gone) and detaches. */
#ifndef KH_GW_REQ_H
#define KH_GW_REQ_H

#include <event2/http.h>
#include <protobuf-c/protobuf-c.h>

void gw_req_hold(struct evhttp_request **slot, struct evhttp_request *req);
struct evhttp_request *gw_req_take(struct evhttp_request **slot);

/* Reads and unpacks the protobuf body of a request of type d, or replies with
 * the refusal (size, method, type) and returns NULL. The raw body is wiped. */
void *gw_read_pb(struct evhttp_request *req, const ProtobufCMessageDescriptor *d);

#endif
