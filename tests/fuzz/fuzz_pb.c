/* Every protobuf body of the business, peer and admin wires as kh_pb_unpack
 * reads it (any string field with a NUL or bad UTF-8 refused): the first
 * byte picks the message type, the rest is the body. */
#include "kakehashi.pb-c.h"
#include "khpb.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const types[] = {
    &kh__status__descriptor,
    &kh__field__descriptor,
    &kh__item_data__descriptor,
    &kh__header__descriptor,
    &kh__envelope__descriptor,
    &kh__query_body__descriptor,
    &kh__answer_body__descriptor,
    &kh__link_code_request_body__descriptor,
    &kh__link_code_answer_body__descriptor,
    &kh__disclosure_request_body__descriptor,
    &kh__disclosure_answer_body__descriptor,
    &kh__directory__descriptor,
    &kh__signed_directory__descriptor,
    &kh__disclosure_request__descriptor,
    &kh__disclosure_response__descriptor,
    &kh__register_request__descriptor,
    &kh__register_response__descriptor,
    &kh__link_code_request__descriptor,
    &kh__link_code_response__descriptor,
    &kh__query_request__descriptor,
    &kh__query_response__descriptor,
    &kh__query_status_request__descriptor,
    &kh__query_list_request__descriptor,
    &kh__query_list__descriptor,
    &kh__bulk_open_request__descriptor,
    &kh__bulk_open_response__descriptor,
    &kh__bulk_part_request__descriptor,
    &kh__bulk_part_response__descriptor,
    &kh__bulk_commit_request__descriptor,
    &kh__bulk_status_request__descriptor,
    &kh__bulk_status__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] % (sizeof types / sizeof types[0])];
    kh_err e;
    char why[160];
    ProtobufCMessage *m = kh_pb_unpack(d, data + 1, size - 1, &e, why, sizeof why);
    if (m != NULL) {
        uint8_t *again = NULL;
        size_t len = 0;
        if (kh_pb_pack(m, &again, &len) == 0)
            free(again);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}
