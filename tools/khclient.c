/* khclient: a business system's side of the business API, for operators,
 * vendors' integration tests, the demo and the test suite.
 * Exit status: 0 success, 3 refused (a KH- code is printed), 4 transport or
 * TLS failure, 2 usage. */
#include "kakehashi.pb-c.h"
#include "khsync.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: khclient -g HOST:PORT --cert C --key K --ca CA COMMAND ...\n"
            "  -g, --gateway H:P   the gateway's business API\n"
            "  --cert, --key       the business system's client certificate and key\n"
            "  --ca                the national CA certificate (to verify the gateway)\n"
            "  --timeout-ms N      wait at most N ms (default 30000)\n"
            "  --gateway-name NAME the gateway's certificate must name this host (CN); it must\n"
            "                      always be a gateway certificate (O=KH-GW) of the national CA\n"
            "commands:\n"
            "  register LOCAL_ID ITEM YYYYMMDD name=value...   register a reference copy version\n"
            "  delete LOCAL_ID ITEM YYYYMMDD                   register a deletion\n"
            "  linkcode LOCAL_ID RESIDENT_CODE                 obtain the link code\n"
            "  query STAFF PROCEDURE PROVIDER ITEM[,ITEM] LOCAL_ID [AS_OF]\n"
            "output: 'OK ...' lines, or 'REFUSED KH-nnnn: message' (exit 3), or\n"
            "'FAILED: reason' (exit 4).\n");
}

static int refused(const kh_sync_resp *r)
{
    Kh__Status *st = kh__status__unpack(NULL, r->len, r->body);
    printf("REFUSED %s: %s (HTTP %d)\n", st ? st->code : "?", st ? st->message : "unreadable",
           r->status);
    if (st)
        kh__status__free_unpacked(st, NULL);
    return 3;
}

static char *split_items(char *s, char **items, size_t *n)
{
    *n = 0;
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t && *n < 16;
         t = strtok_r(NULL, ",", &save))
        items[(*n)++] = t;
    return s;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"gateway", required_argument, NULL, 'g'},
                                         {"cert", required_argument, NULL, 'C'},
                                         {"key", required_argument, NULL, 'K'},
                                         {"ca", required_argument, NULL, 'A'},
                                         {"timeout-ms", required_argument, NULL, 'T'},
                                         {"gateway-name", required_argument, NULL, 'N'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *gw = NULL, *cert = NULL, *key = NULL, *ca = NULL, *gw_name = NULL;
    int timeout = 30000, c;
    while ((c = getopt_long(argc, argv, "g:h", opts, NULL)) != -1) {
        switch (c) {
        case 'g':
            gw = optarg;
            break;
        case 'C':
            cert = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'A':
            ca = optarg;
            break;
        case 'T':
            timeout = atoi(optarg);
            break;
        case 'N':
            gw_name = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!gw || !cert || !key || !ca || optind >= argc || timeout <= 0) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    char **a = argv + optind + 1;
    int na = argc - optind - 1;
    uint8_t *body = NULL;
    size_t len = 0;
    const char *path = NULL;
    const ProtobufCMessageDescriptor *resp_desc = NULL;
    Kh__RegisterRequest reg = KH__REGISTER_REQUEST__INIT;
    Kh__LinkCodeRequest lc = KH__LINK_CODE_REQUEST__INIT;
    Kh__QueryRequest q = KH__QUERY_REQUEST__INIT;
    Kh__Field fields[64], *fptr[64];
    char *items[16];
    ProtobufCMessage *msg = NULL;

    if ((strcmp(cmd, "register") == 0 && na >= 3) || (strcmp(cmd, "delete") == 0 && na == 3)) {
        reg.local_id = a[0];
        reg.item_code = a[1];
        reg.effective_from = a[2];
        reg.delete_ = strcmp(cmd, "delete") == 0;
        for (int i = 3; i < na && i - 3 < 64; i++) {
            char *eq = strchr(a[i], '=');
            if (eq == NULL) {
                fprintf(stderr, "khclient: field '%s' is not name=value\n", a[i]);
                return 2;
            }
            *eq = '\0';
            kh__field__init(&fields[i - 3]);
            fields[i - 3].name = a[i];
            fields[i - 3].value = eq + 1;
            fptr[i - 3] = &fields[i - 3];
            reg.n_fields++;
        }
        reg.fields = fptr;
        msg = &reg.base;
        path = "/v1/replica";
        resp_desc = &kh__register_response__descriptor;
    } else if (strcmp(cmd, "linkcode") == 0 && na == 2) {
        lc.local_id = a[0];
        lc.resident_code = a[1];
        msg = &lc.base;
        path = "/v1/linkcode";
        resp_desc = &kh__link_code_response__descriptor;
    } else if (strcmp(cmd, "query") == 0 && (na == 5 || na == 6)) {
        q.staff_id = a[0];
        q.procedure = a[1];
        q.provider = a[2];
        split_items(a[3], items, &q.n_items);
        q.items = items;
        q.local_id = a[4];
        q.as_of = na == 6 ? a[5] : "";
        q.timeout_ms = (uint32_t)timeout;
        msg = &q.base;
        path = "/v1/query";
        resp_desc = &kh__query_response__descriptor;
    } else {
        usage(stderr);
        return 2;
    }
    len = protobuf_c_message_get_packed_size(msg);
    body = malloc(len ? len : 1);
    if (body == NULL)
        return 4;
    protobuf_c_message_pack(msg, body);
    kh_sync_resp r;
    /* only a gateway may receive a business system's data (resident codes...) */
    kh_sync_request(gw, cert, key, ca, "KH-GW", gw_name, path, body, len, timeout + 5000, &r);
    free(body);
    int rc = 0;
    if (r.status == 0) {
        printf("FAILED: %s\n", r.error);
        rc = 4;
    } else if (r.status != 200) {
        rc = refused(&r);
    } else {
        ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, r.len, r.body);
        if (m == NULL) {
            printf("FAILED: unreadable response\n");
            rc = 4;
        } else if (resp_desc == &kh__register_response__descriptor) {
            printf("OK registered version %llu\n",
                   (unsigned long long)((Kh__RegisterResponse *)m)->version);
        } else if (resp_desc == &kh__link_code_response__descriptor) {
            printf("OK link code acquired\n");
        } else {
            Kh__QueryResponse *qr = (Kh__QueryResponse *)m;
            printf("OK %s handle=%s\n", qr->result, qr->handle);
            for (size_t i = 0; i < qr->n_data; i++) {
                Kh__ItemData *d = qr->data[i];
                printf("ITEM %s version=%llu effective_from=%s\n", d->item_code,
                       (unsigned long long)d->version, d->effective_from);
                for (size_t k = 0; k < d->n_fields; k++)
                    printf("  %s.%s=%s\n", d->item_code, d->fields[k]->name, d->fields[k]->value);
            }
        }
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
    }
    kh_sync_resp_free(&r);
    return rc;
}
