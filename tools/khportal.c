/* khportal: the national portal's side of the router's portal API (records
 * disclosure, flow 5), for the demo, the tests and operators. It asks the
 * router, on a person's behalf, for the person's provision records and own
 * information at every organisation holding a link code for them (or one),
 * and prints what each organisation answered.
 * The person's resident-record code is read from standard input, so it never
 * stands in a command line (visible to every user in the process list); it
 * is wiped once sent.
 * Exit status: 0 the router answered (each organisation's line says how it
 * went), 3 refused (a KH- code is printed), 4 transport or TLS failure,
 * 2 usage. */
#include "kakehashi.pb-c.h"
#include "khcrypto.h"
#include "khpb.h"
#include "khsync.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: khportal -r HOST:PORT --cert C --key K --ca CA disclose [--org ORG]\n"
            "                [--records] [--self-info] [--from YYYYMMDD] [--to YYYYMMDD]\n"
            "  -r, --router H:P    the router's listener\n"
            "  --cert, --key       the portal's client certificate (tools/khpki portal) and key\n"
            "  --ca                the national CA certificate (to verify the router)\n"
            "  --timeout-ms N      wait at most N ms (default 60000)\n"
            "disclose: the person's resident-record code (11 digits) is read from standard\n"
            "input, one line. Asks every organisation holding a link code for the person, or\n"
            "only ORG, for their provision records about the person (--records, optionally\n"
            "from/to a day) and/or their own information in force today (--self-info; at\n"
            "least one of the two).\n"
            "output, per organisation asked (organisations in code order):\n"
            "  ORG CODE STATUS RESULT msg=ID records=N items=N \"NAME\"[: why]\n"
            "  RECORD CODE AT DIRECTION COUNTERPART PROCEDURE ITEMS OUTCOME RCODE msg=ID "
            "[provided=ITEM:V,...]\n"
            "  ITEM CODE ITEM version=V effective_from=YYYYMMDD\n"
            "    CODE ITEM.FIELD=VALUE\n"
            "  MORE CODE records|items   (limits reached: 1000 records, 16 items)\n"
            "STATUS is OK or the organisation's refusal code, RESULT FOUND (the person is\n"
            "known there), NOT_FOUND or '-'; empty columns print as '-'.\n"
            "'REFUSED KH-nnnn: message' (exit 3), 'FAILED: reason' (exit 4).\n");
}

static const char *dash(const char *s)
{
    return s && s[0] ? s : "-";
}

static void print_org(const Kh__OrgDisclosure *o)
{
    const char *code = o->status && o->status->code[0] ? o->status->code : "?";
    const char *why = o->status ? o->status->message : "";
    printf("ORG %s %s %s msg=%s records=%zu items=%zu \"%s\"%s%s\n", o->org, code, dash(o->result),
           dash(o->msg_id), o->n_records, o->n_self_info, o->name, why[0] ? ": " : "", why);
    for (size_t i = 0; i < o->n_records; i++) {
        const Kh__DisclosedRecord *r = o->records[i];
        printf("RECORD %s %s %s %s %s ", o->org, r->at, r->direction, dash(r->counterpart),
               dash(r->procedure));
        for (size_t k = 0; k < r->n_items; k++)
            printf("%s%s", k ? "," : "", r->items[k]);
        printf("%s %s %s msg=%s", r->n_items ? "" : "-", dash(r->outcome), dash(r->code),
               r->msg_id);
        for (size_t k = 0; k < r->n_provided; k++)
            printf("%s%s:%llu", k ? "," : " provided=", r->provided[k]->item_code,
                   (unsigned long long)r->provided[k]->version);
        printf("\n");
    }
    for (size_t i = 0; i < o->n_self_info; i++) {
        const Kh__ItemData *d = o->self_info[i];
        printf("ITEM %s %s version=%llu effective_from=%s\n", o->org, d->item_code,
               (unsigned long long)d->version, d->effective_from);
        for (size_t k = 0; k < d->n_fields; k++)
            printf("  %s %s.%s=%s\n", o->org, d->item_code, d->fields[k]->name,
                   d->fields[k]->value);
    }
    if (o->more_records)
        printf("MORE %s records\n", o->org);
    if (o->more_items)
        printf("MORE %s items\n", o->org);
}

/* One line from stdin into out (newline dropped); -1 if none or too long. */
static int read_code(char *out, size_t outlen)
{
    if (fgets(out, (int)outlen, stdin) == NULL)
        return -1;
    size_t n = strcspn(out, "\r\n");
    if (out[n] == '\0' && !feof(stdin))
        return -1; /* longer than the buffer */
    out[n] = '\0';
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_CERT = 256, O_KEY, O_CA, O_TIMEOUT, O_ORG, O_RECORDS, O_SELF, O_FROM, O_TO };
    static const struct option opts[] = {{"router", required_argument, NULL, 'r'},
                                         {"cert", required_argument, NULL, O_CERT},
                                         {"key", required_argument, NULL, O_KEY},
                                         {"ca", required_argument, NULL, O_CA},
                                         {"timeout-ms", required_argument, NULL, O_TIMEOUT},
                                         {"org", required_argument, NULL, O_ORG},
                                         {"records", no_argument, NULL, O_RECORDS},
                                         {"self-info", no_argument, NULL, O_SELF},
                                         {"from", required_argument, NULL, O_FROM},
                                         {"to", required_argument, NULL, O_TO},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *router = NULL, *cert = NULL, *key = NULL, *ca = NULL;
    Kh__DisclosureRequest dr = KH__DISCLOSURE_REQUEST__INIT;
    int timeout = 60000, c;
    while ((c = getopt_long(argc, argv, "r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            router = optarg;
            break;
        case O_CERT:
            cert = optarg;
            break;
        case O_KEY:
            key = optarg;
            break;
        case O_CA:
            ca = optarg;
            break;
        case O_TIMEOUT:
            timeout = atoi(optarg);
            break;
        case O_ORG:
            dr.org = optarg;
            break;
        case O_RECORDS:
            dr.records = true;
            break;
        case O_SELF:
            dr.self_info = true;
            break;
        case O_FROM:
            dr.from = optarg;
            break;
        case O_TO:
            dr.to = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!router || !cert || !key || !ca || timeout <= 0 || argc - optind != 1 ||
        strcmp(argv[optind], "disclose") != 0) {
        usage(stderr);
        return 2;
    }
    char code[64];
    if (read_code(code, sizeof code) != 0) {
        fprintf(stderr, "khportal: expected the resident-record code on standard input\n");
        return 2;
    }
    dr.resident_code = code;
    size_t len = kh__disclosure_request__get_packed_size(&dr);
    uint8_t *body = malloc(len ? len : 1);
    if (body == NULL) {
        khc_wipe(code, sizeof code);
        return 4;
    }
    kh__disclosure_request__pack(&dr, body);
    khc_wipe(code, sizeof code);
    kh_sync_resp r;
    memset(&r, 0, sizeof r);
    int sent = kh_sync_request(router, cert, key, ca, "ROUTER", NULL, "/v1/portal/disclose", body,
                               len, timeout, &r);
    khc_wipe(body, len);
    free(body);
    int rc = 0;
    if (sent != 0) {
        printf("FAILED: %s\n", r.error);
        rc = 4;
    } else if (r.status != 200) {
        Kh__Status *st =
            (Kh__Status *)kh_pb_unpack(&kh__status__descriptor, r.body, r.len, NULL, NULL, 0);
        printf("REFUSED %s: %s (HTTP %d)\n", st ? st->code : "?", st ? st->message : "unreadable",
               r.status);
        if (st)
            kh__status__free_unpacked(st, NULL);
        rc = 3;
    } else {
        Kh__DisclosureResponse *resp = (Kh__DisclosureResponse *)kh_pb_unpack(
            &kh__disclosure_response__descriptor, r.body, r.len, NULL, NULL, 0);
        if (resp == NULL) {
            printf("FAILED: unreadable response\n");
            rc = 4;
        } else {
            for (size_t i = 0; i < resp->n_orgs; i++)
                print_org(resp->orgs[i]);
            printf("OK %zu organisations\n", resp->n_orgs);
            kh__disclosure_response__free_unpacked(resp, NULL);
        }
    }
    if (r.body)
        khc_wipe(r.body, r.len);
    kh_sync_resp_free(&r);
    return rc;
}
