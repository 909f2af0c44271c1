/* khclient: a business system's side of the business API, for operators,
 * vendors' integration tests, the demo and the test suite.
 * Exit status: 0 success, 3 refused (a KH- code is printed), 4 transport or
 * TLS failure, 2 usage. */
#include "kakehashi.pb-c.h"
#include "khcrypto.h"
#include "khpb.h"
#include "khsync.h"

#include <getopt.h>
#include <stdbool.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: khclient -g HOST:PORT --cert C --key K --ca CA COMMAND ...\n"
        "  -g, --gateway H:P   the gateway's business API\n"
        "  --cert, --key       the business system's client certificate and key\n"
        "  --ca                the national CA certificate (to verify the gateway)\n"
        "  --timeout-ms N      wait at most N ms (default 30000)\n"
        "  --async             query: do not wait for the answer\n"
        "  --gateway-name NAME the gateway's certificate must name this host (CN); it must\n"
        "                      always be a gateway certificate (O=KH-GW) of the national CA\n"
        "commands:\n"
        "  register LOCAL_ID ITEM YYYYMMDD name=value...   register a reference copy version\n"
        "  delete LOCAL_ID ITEM YYYYMMDD                   register a deletion\n"
        "  linkcode LOCAL_ID RESIDENT_CODE                 obtain the link code\n"
        "  query STAFF PROCEDURE PROVIDER ITEM[,ITEM] LOCAL_ID [AS_OF]\n"
        "                      ask; waits up to --timeout-ms (then TIMED_OUT with the handle:\n"
        "                      the query goes on), or with --async returns SENT at once\n"
        "  status HANDLE       the state of a query of this system, with its answer\n"
        "  list [state=S] [procedure=P] [provider=O] [since=YYYYMMDD] [until=YYYYMMDD]\n"
        "       [limit=N]      this system's queries, newest first\n"
        "  bulk ITEM full|diff AS_OF FILE                  upload a bulk file, wait for the\n"
        "                                                  result (report on stdout if rejected)\n"
        "  post PATH FILE [CONTENT_TYPE [OUT]]             POST the file's bytes as they are (a\n"
        "                      body made elsewhere; default type application/x-protobuf);\n"
        "                      prints 'OK HTTP 200 (N bytes)' (the answer's bytes into OUT)\n"
        "                      or the refusal\n"
        "  batch               read commands (the ones above, words separated by blanks, no\n"
        "                      quoting) from standard input, one a line, '#' lines and blank\n"
        "                      lines skipped; run them in order over one connection (keep-alive)\n"
        "                      and print 'END n' (the command's exit status) after each one's\n"
        "                      output; exits with the highest status\n"
        "output: 'OK ...' lines, or 'REFUSED KH-nnnn: message' (exit 3), or\n"
        "'FAILED: reason' (exit 4). A query prints 'OK RESULT handle=H' when answered,\n"
        "else its state: 'PENDING handle=H decide_by=TIME' (held for a decision at the\n"
        "provider until TIME, UTC), 'SENT handle=H', 'TIMED_OUT handle=H' (exit 0),\n"
        "'REFUSED|EXPIRED|FAILED KH-nnnn: message handle=H' (exit 3). Withheld items print\n"
        "as 'WITHHELD ITEM'.\n");
}

typedef struct {
    const char *gw, *cert, *key, *ca, *gw_name;
    int timeout;
    bool async;
    bool batch;
    kh_sync_conn *conn; /* kept open across the calls of one command or batch */
} client_opts;

static int refused(const kh_sync_resp *r)
{
    Kh__Status *st =
        (Kh__Status *)kh_pb_unpack(&kh__status__descriptor, r->body, r->len, NULL, NULL, 0);
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

/* One business-API call: packs msg, posts it, unpacks the 200 answer as
 * resp_desc, or prints the refusal / failure and returns NULL with *rc set. */
static ProtobufCMessage *call(client_opts *o, const char *path, const ProtobufCMessage *msg,
                              const ProtobufCMessageDescriptor *resp_desc, int *rc)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *body = malloc(len ? len : 1);
    kh_sync_resp r;
    if (body == NULL) {
        *rc = 4;
        return NULL;
    }
    protobuf_c_message_pack(msg, body);
    memset(&r, 0, sizeof r);
    if (o->conn == NULL)
        o->conn = kh_sync_connect(o->gw, o->cert, o->key, o->ca, "KH-GW", o->gw_name,
                                  o->timeout + 5000, r.error, sizeof r.error);
    if (o->conn != NULL && kh_sync_do(o->conn, path, body, len, &r) != 0) {
        kh_sync_close(o->conn); /* unusable now; a later call reconnects */
        o->conn = NULL;
    }
    free(body);
    ProtobufCMessage *m = NULL;
    if (r.status == 0) {
        printf("FAILED: %s\n", r.error);
        *rc = 4;
    } else if (r.status != 200) {
        *rc = refused(&r);
    } else if ((m = kh_pb_unpack(resp_desc, r.body, r.len, NULL, NULL, 0)) == NULL) {
        printf("FAILED: unreadable response\n");
        *rc = 4;
    }
    kh_sync_resp_free(&r);
    return m;
}

/* bulk ITEM MODE AS_OF FILE: upload in parts, commit, follow progress, print
 * the result (and the report of a rejected file). */
static int bulk(client_opts *o, const char *item, const char *mode, const char *as_of,
                const char *file)
{
    int rc = 0;
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        fprintf(stderr, "khclient: cannot open %s\n", file);
        return 2;
    }
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    Kh__BulkOpenRequest open_req = KH__BULK_OPEN_REQUEST__INIT;
    open_req.item_code = (char *)item;
    open_req.mode = (char *)mode;
    open_req.as_of = (char *)as_of;
    open_req.file_name = (char *)base;
    Kh__BulkOpenResponse *op = (Kh__BulkOpenResponse *)call(
        o, "/v1/bulk/open", &open_req.base, &kh__bulk_open_response__descriptor, &rc);
    if (op == NULL) {
        fclose(f);
        return rc;
    }
    char id[64];
    snprintf(id, sizeof id, "%s", op->upload_id);
    fprintf(stderr, "khclient: upload %s opened\n", id);
    size_t part = op->max_part ? op->max_part : 512 * 1024;
    kh__bulk_open_response__free_unpacked(op, NULL);
    uint8_t *buf = malloc(part);
    khc_sha256_ctx *md = khc_sha256_new();
    if (buf == NULL || md == NULL) {
        fclose(f);
        free(buf);
        khc_sha256_free(md);
        return 4;
    }
    uint32_t seq = 1;
    uint64_t sent = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, part, f)) > 0) {
        Kh__BulkPartRequest pr = KH__BULK_PART_REQUEST__INIT;
        pr.upload_id = id;
        pr.seq = seq++;
        pr.data.data = buf;
        pr.data.len = n;
        if (khc_sha256_update(md, buf, n) != 0)
            rc = 4;
        ProtobufCMessage *m =
            call(o, "/v1/bulk/part", &pr.base, &kh__bulk_part_response__descriptor, &rc);
        if (m)
            protobuf_c_message_free_unpacked(m, NULL);
        sent += n;
    }
    /* a short read is never sent as the whole file: in full mode the rest
     * of the people would be deleted */
    bool read_error = ferror(f) != 0;
    fclose(f);
    free(buf);
    if (read_error && rc == 0) {
        fprintf(stderr, "khclient: reading %s failed; nothing committed\n", file);
        khc_sha256_free(md);
        return 4;
    }
    unsigned char dg[32];
    char hex[65];
    if (khc_sha256_final(md, dg) != 0 && rc == 0)
        rc = 4;
    khc_hex(dg, sizeof dg, hex);
    if (rc != 0)
        return rc;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "khclient: %llu bytes sent in %u parts in %.1f s; loading\n",
            (unsigned long long)sent, seq - 1,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    Kh__BulkCommitRequest cr = KH__BULK_COMMIT_REQUEST__INIT;
    cr.upload_id = id;
    cr.sha256 = hex;
    Kh__BulkStatus *st =
        (Kh__BulkStatus *)call(o, "/v1/bulk/commit", &cr.base, &kh__bulk_status__descriptor, &rc);
    uint64_t offset = 0, last = 0;
    while (st != NULL) {
        bool final = strcmp(st->state, "QUEUED") != 0 && strcmp(st->state, "LOADING") != 0;
        if (!final) {
            if (st->records >= last + 10000 || (last == 0 && st->records > 0)) {
                fprintf(stderr, "khclient: %s %llu records read, %llu bad\n", st->state,
                        (unsigned long long)st->records, (unsigned long long)st->bad_records);
                last = st->records;
            }
            kh__bulk_status__free_unpacked(st, NULL);
            struct timespec ts = {0, 200 * 1000 * 1000};
            nanosleep(&ts, NULL);
        } else if (strcmp(st->state, "REJECTED") == 0 && offset == 0) {
            printf("REFUSED %s: %s (%llu of %llu records bad, %llu problems)\n", st->code,
                   st->message, (unsigned long long)st->bad_records,
                   (unsigned long long)st->records, (unsigned long long)st->issues);
        }
        if (final && strcmp(st->state, "REJECTED") == 0) {
            if (st->report.len > 0)
                fwrite(st->report.data, 1, st->report.len, stdout);
            offset += st->report.len;
            rc = 3;
            if (st->report.len == 0 || offset >= st->report_size) {
                kh__bulk_status__free_unpacked(st, NULL);
                break;
            }
        } else if (final) {
            if (strcmp(st->state, "FAILED") == 0) {
                printf("REFUSED %s: %s\n", st->code, st->message);
                rc = 3;
            } else {
                printf("OK %s records=%llu persons=%llu deleted_absent=%llu file=%lld "
                       "sha256=%s\n",
                       st->state, (unsigned long long)st->records, (unsigned long long)st->persons,
                       (unsigned long long)st->deleted_absent, (long long)st->file_id, st->sha256);
            }
            kh__bulk_status__free_unpacked(st, NULL);
            break;
        }
        if (!final || strcmp(st->state, "REJECTED") == 0) {
            if (final)
                kh__bulk_status__free_unpacked(st, NULL);
            Kh__BulkStatusRequest sr = KH__BULK_STATUS_REQUEST__INIT;
            sr.upload_id = id;
            sr.report_offset = offset;
            st = (Kh__BulkStatus *)call(o, "/v1/bulk/status", &sr.base,
                                        &kh__bulk_status__descriptor, &rc);
        }
    }
    return rc;
}

/* A command line that is not one of the commands: the usage, or in a batch one line. */
static int bad_command(const client_opts *o, const char *cmd)
{
    if (o->batch)
        fprintf(stderr, "khclient: batch: '%s': unknown command or wrong arguments\n", cmd);
    else
        usage(stderr);
    return 2;
}

/* post PATH FILE [CONTENT_TYPE]: the file's bytes as they are, for bodies
 * made elsewhere (a vendor's own encoder, a test's hand-made message). */
static int post_raw(client_opts *o, const char *path, const char *file, const char *ctype,
                    const char *out_file)
{
    FILE *f = fopen(file, "rb");
    uint8_t *body = NULL;
    size_t len = 0, cap = 0, n;
    uint8_t chunk[65536];
    kh_sync_resp r;
    int rc = 4;
    if (f == NULL) {
        fprintf(stderr, "khclient: cannot open %s\n", file);
        return 2;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n > (size_t)64 << 20) {
            fprintf(stderr, "khclient: %s is larger than 64 MiB\n", file);
            goto out;
        }
        if (len + n > cap) {
            uint8_t *b = realloc(body, cap = (len + n) * 2);
            if (b == NULL)
                goto out;
            body = b;
        }
        memcpy(body + len, chunk, n);
        len += n;
    }
    memset(&r, 0, sizeof r);
    if (o->conn == NULL)
        o->conn = kh_sync_connect(o->gw, o->cert, o->key, o->ca, "KH-GW", o->gw_name,
                                  o->timeout + 5000, r.error, sizeof r.error);
    if (o->conn != NULL && kh_sync_do_ex(o->conn, "POST", path, ctype, NULL, body, len, &r) != 0) {
        kh_sync_close(o->conn);
        o->conn = NULL;
    }
    if (r.status == 0)
        printf("FAILED: %s\n", r.error);
    else if (r.status != 200)
        rc = refused(&r);
    else
        printf("OK HTTP 200 (%zu bytes)\n", r.len), rc = 0;
    if (rc == 0 && out_file != NULL) {
        FILE *of = fopen(out_file, "wb");
        if (of == NULL || fwrite(r.body, 1, r.len, of) != r.len || fclose(of) != 0) {
            fprintf(stderr, "khclient: cannot write %s\n", out_file);
            rc = 2;
        }
    }
    kh_sync_resp_free(&r);
out:
    fclose(f);
    free(body);
    return rc;
}

/* One command (register, delete, linkcode, query, status, list, bulk) with its
 * arguments a[0..na-1], which it may modify; prints its output and returns
 * the exit status. The connection in o is kept for the next command. */
static int run_command(client_opts *o, const char *cmd, int na, char **a)
{
    if (strcmp(cmd, "bulk") == 0) {
        if (na != 4)
            return bad_command(o, cmd);
        return bulk(o, a[0], a[1], a[2], a[3]);
    }
    if (strcmp(cmd, "post") == 0) {
        if (na < 2 || na > 4)
            return bad_command(o, cmd);
        return post_raw(o, a[0], a[1], na >= 3 ? a[2] : "application/x-protobuf",
                        na == 4 ? a[3] : NULL);
    }
    const char *path = NULL;
    const ProtobufCMessageDescriptor *resp_desc = NULL;
    Kh__RegisterRequest reg = KH__REGISTER_REQUEST__INIT;
    Kh__LinkCodeRequest lc = KH__LINK_CODE_REQUEST__INIT;
    Kh__QueryRequest q = KH__QUERY_REQUEST__INIT;
    Kh__QueryStatusRequest sq = KH__QUERY_STATUS_REQUEST__INIT;
    Kh__QueryListRequest lq = KH__QUERY_LIST_REQUEST__INIT;
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
        q.timeout_ms = (uint32_t)o->timeout;
        q.async = o->async;
        msg = &q.base;
        path = "/v1/query";
        resp_desc = &kh__query_response__descriptor;
    } else if (strcmp(cmd, "status") == 0 && na == 1) {
        sq.handle = a[0];
        msg = &sq.base;
        path = "/v1/query/status";
        resp_desc = &kh__query_response__descriptor;
    } else if (strcmp(cmd, "list") == 0) {
        for (int i = 0; i < na; i++) {
            char *eq = strchr(a[i], '=');
            if (eq == NULL) {
                fprintf(stderr, "khclient: filter '%s' is not name=value\n", a[i]);
                return 2;
            }
            *eq++ = '\0';
            if (strcmp(a[i], "state") == 0)
                lq.state = eq;
            else if (strcmp(a[i], "procedure") == 0)
                lq.procedure = eq;
            else if (strcmp(a[i], "provider") == 0)
                lq.provider = eq;
            else if (strcmp(a[i], "since") == 0)
                lq.since = eq;
            else if (strcmp(a[i], "until") == 0)
                lq.until = eq;
            else if (strcmp(a[i], "limit") == 0)
                lq.limit = (uint32_t)strtoul(eq, NULL, 10);
            else {
                fprintf(stderr, "khclient: unknown filter '%s'\n", a[i]);
                return 2;
            }
        }
        msg = &lq.base;
        path = "/v1/query/list";
        resp_desc = &kh__query_list__descriptor;
    } else {
        return bad_command(o, cmd);
    }
    int rc = 0;
    /* only a gateway may receive a business system's data (resident codes...) */
    ProtobufCMessage *m = call(o, path, msg, resp_desc, &rc);
    if (m == NULL)
        return rc;
    if (resp_desc == &kh__register_response__descriptor) {
        printf("OK registered version %llu\n",
               (unsigned long long)((Kh__RegisterResponse *)m)->version);
    } else if (resp_desc == &kh__link_code_response__descriptor) {
        printf("OK link code acquired\n");
    } else if (resp_desc == &kh__query_list__descriptor) {
        Kh__QueryList *l = (Kh__QueryList *)m;
        for (size_t i = 0; i < l->n_queries; i++) {
            Kh__QuerySummary *s = l->queries[i];
            printf("%s %s %s %s ", s->handle, s->state, s->procedure, s->provider);
            for (size_t k = 0; k < s->n_items; k++)
                printf("%s%s", k ? "," : "", s->items[k]);
            printf(" %s %s %s%s%s\n", s->staff_id, s->created_at, s->result[0] ? s->result : "-",
                   s->code[0] ? " " : "", s->code);
        }
        printf("OK %zu queries\n", l->n_queries);
    } else {
        Kh__QueryResponse *qr = (Kh__QueryResponse *)m;
        if (strcmp(qr->state, "ANSWERED") == 0)
            printf("OK %s handle=%s%s\n", qr->result, qr->handle, qr->deferred ? " deferred" : "");
        else if (strcmp(qr->state, "REFUSED") == 0 || strcmp(qr->state, "FAILED") == 0 ||
                 strcmp(qr->state, "EXPIRED") == 0) {
            printf("%s %s: %s handle=%s\n", qr->state, qr->status ? qr->status->code : "?",
                   qr->status ? qr->status->message : "", qr->handle);
            rc = 3;
        } else if (qr->decide_by > 0) {
            char when[32] = "?";
            time_t t = (time_t)qr->decide_by;
            struct tm tm;
            if (gmtime_r(&t, &tm) != NULL)
                strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("%s handle=%s decide_by=%s\n", qr->state, qr->handle, when);
        } else
            printf("%s handle=%s\n", qr->state, qr->handle);
        for (size_t i = 0; i < qr->n_withheld; i++)
            printf("WITHHELD %s\n", qr->withheld[i]);
        for (size_t i = 0; i < qr->n_data; i++) {
            Kh__ItemData *d = qr->data[i];
            printf("ITEM %s version=%llu effective_from=%s\n", d->item_code,
                   (unsigned long long)d->version, d->effective_from);
            for (size_t k = 0; k < d->n_fields; k++)
                printf("  %s.%s=%s\n", d->item_code, d->fields[k]->name, d->fields[k]->value);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* batch: the commands of standard input, one a line, over one connection. */
static int batch(client_opts *o)
{
    char line[65536], *args[80];
    int worst = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "khclient: batch line longer than %zu bytes\n", sizeof line - 2);
            return 2;
        }
        int n = 0;
        for (char *save = NULL, *t = strtok_r(line, " \t\r\n", &save); t != NULL;
             t = strtok_r(NULL, " \t\r\n", &save)) {
            if (n == (int)(sizeof args / sizeof *args)) {
                n = -1;
                break;
            }
            args[n++] = t;
        }
        if (n == 0 || args[0][0] == '#')
            continue;
        int rc =
            n < 0 || strcmp(args[0], "batch") == 0 ? 2 : run_command(o, args[0], n - 1, args + 1);
        if (n < 0)
            fprintf(stderr, "khclient: batch line with more than %zu words\n",
                    sizeof args / sizeof *args);
        printf("END %d\n", rc);
        fflush(stdout);
        worst = rc > worst ? rc : worst;
    }
    return worst;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"gateway", required_argument, NULL, 'g'},
                                         {"cert", required_argument, NULL, 'C'},
                                         {"key", required_argument, NULL, 'K'},
                                         {"ca", required_argument, NULL, 'A'},
                                         {"timeout-ms", required_argument, NULL, 'T'},
                                         {"gateway-name", required_argument, NULL, 'N'},
                                         {"async", no_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *gw = NULL, *cert = NULL, *key = NULL, *ca = NULL, *gw_name = NULL;
    int timeout = 30000, c;
    bool async = false;
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
        case 'a':
            async = true;
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
    bool is_batch = strcmp(argv[optind], "batch") == 0 && optind + 1 == argc;
    client_opts o = {gw, cert, key, ca, gw_name, timeout, async, is_batch, NULL};
    int rc =
        is_batch ? batch(&o) : run_command(&o, argv[optind], argc - optind - 1, argv + optind + 1);
    kh_sync_close(o.conn);
    return rc;
}
