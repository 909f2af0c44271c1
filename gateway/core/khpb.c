/* khpb.c: protobuf messages at the boundary (khpb.h). */
#include "khpb.h"

#include "khid.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

enum { MAX_DEPTH = 16 };

static bool varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*i >= len)
            return false;
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

/* Walks one message's wire form: false (why set) if a string field holds a
 * NUL or is not UTF-8. A malformed wire is left to protobuf-c to refuse. */
static bool strings_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                       char *why, size_t whylen)
{
    size_t i = 0;
    if (depth > MAX_DEPTH) {
        snprintf(why, whylen, "%s: messages nested deeper than %d", d->name, MAX_DEPTH);
        return false;
    }
    while (i < len) {
        uint64_t key, v;
        if (!varint(p, len, &i, &key))
            return true;
        switch (key & 7) {
        case 0:
            if (!varint(p, len, &i, &v))
                return true;
            break;
        case 1:
            if (len - i < 8)
                return true;
            i += 8;
            break;
        case 5:
            if (len - i < 4)
                return true;
            i += 4;
            break;
        case 2: {
            if (!varint(p, len, &i, &v) || v > len - i)
                return true;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                    : NULL;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING) {
                long bad = kh_text_bad((const char *)p + i, (size_t)v);
                if (bad >= 0) {
                    snprintf(why, whylen, "field %s of %s: %s at byte %ld of the string", f->name,
                             d->name, p[i + (size_t)bad] == 0 ? "a NUL byte" : "not valid UTF-8",
                             bad);
                    return false;
                }
            } else if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                       !strings_ok(f->descriptor, p + i, (size_t)v, depth + 1, why, whylen)) {
                return false;
            }
            i += (size_t)v;
            break;
        }
        default:
            return true; /* groups, or not protobuf */
        }
    }
    return true;
}

ProtobufCMessage *kh_pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                               kh_err *err, char *why, size_t whylen)
{
    kh_err e_tmp;
    if (err == NULL)
        err = &e_tmp;
    *err = KH_OK;
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    char tmp[1];
    if (why == NULL || whylen == 0) {
        why = tmp;
        whylen = sizeof tmp;
    }
    ProtobufCMessage *m = NULL;
    if (buf == NULL && len > 0) {
        *err = KH_E_BAD_REQUEST;
        snprintf(why, whylen, "not a %s", d->name);
    } else if (!strings_ok(d, buf, len, 0, why, whylen)) {
        *err = KH_E_FIELD;
    } else if ((m = protobuf_c_message_unpack(d, NULL, len, buf)) == NULL) {
        *err = KH_E_BAD_REQUEST;
        snprintf(why, whylen, "not a %s", d->name);
    }
    return m;
}

int kh_pb_pack(const ProtobufCMessage *m, uint8_t **out, size_t *outlen)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return -1;
    protobuf_c_message_pack(m, buf);
    *out = buf;
    *outlen = n;
    return 0;
}
