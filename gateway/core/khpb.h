/* khpb.h: protobuf messages at the boundary. Every message that arrives
 * from outside the process (a business system, a peer, the router, a
 * signed directory, a reply) is unpacked by kh_pb_unpack and by nothing
 * else (tests/unit/check_layers.sh checks that no other file unpacks).
 *
 * protobuf-c hands a string field to C as a NUL-terminated copy and checks
 * nothing about it: "555\0..." would arrive as "555", and bytes that are not
 * UTF-8 would reach the database. kh_pb_unpack first walks the wire form
 * with the message's descriptor and refuses a string field, at any depth,
 * that holds a NUL byte or is not valid UTF-8, naming the field. */
#ifndef KH_PB_H
#define KH_PB_H

#include "kherr.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* The message of type d in buf, or NULL with the reason in why and, if err
 * is not NULL, the refusal in *err: KH_E_FIELD (a string field is not text)
 * or KH_E_BAD_REQUEST (not such a message). No field value is ever quoted:
 * it may be personal data. why may be NULL. Free the message with
 * protobuf_c_message_free_unpacked (or the type's own free_unpacked). */
ProtobufCMessage *kh_pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                               kh_err *err, char *why, size_t whylen);

/* m packed into a new buffer (free it). 0, or -1 if out of memory. */
KH_MUST_CHECK int kh_pb_pack(const ProtobufCMessage *m, uint8_t **out, size_t *outlen);

#endif
