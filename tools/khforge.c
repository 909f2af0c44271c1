/* khforge: forges envelopes exactly as a gateway or the router builds them,
 * optionally breaks them on purpose, and sends them over real mutual TLS. A
 * tool for tests and for operators who want to see a gateway or the router
 * refuse an attack with the documented code (proto/ERRORS.md).
 *
 * First a line 'MSG <message id>', then one line per send:
 *   SEND <n> HTTP <status> <KH-code>        refused (the kh.Status code)
 *   SEND <n> HTTP 200 ANSWER <FOUND|NOT_FOUND|WITHHELD|PENDING|?> items=<I,..|-> withheld=<I,..|->
 *        fields=<I.field,..|-> (on the same line: each field carried, by its base name)
 *   (for a disclosure: its result, the items of own information, withheld=-)
 *   SEND <n> FAILED: <reason>               transport or TLS failure
 * Exit status: 0 all sends completed (whatever the HTTP status), 4 a
 * transport failure, 2 usage, 1 cannot build the envelope.
 *
 * khforge --extract ENVELOPE DIR writes DIR/header.bin, DIR/header_sig.bin
 * and DIR/payload.der from a saved or captured envelope, so the stock openssl
 * CLI can check them, and prints the header's routing fields. */
#include "kakehashi.pb-c.h"
#include "khcrypto.h"
#include "khenv.h"
#include "khhttp.h"
#include "khid.h"
#include "khpb.h"
#include "khsync.h"
#include "khtls.h"

#include <event2/event.h>
#include <event2/http.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENVELOPE (16u << 20)

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: khforge --pki DIR --to HOST:PORT --as NAME --sender ORG --recipient ORG\n"
        "               --procedure P --items I[,I...] --subject LINKCODE [options]\n"
        "       khforge --extract ENVELOPE DIR\n"
        "       khforge --disclosure --pki DIR --to HOST:PORT --as NAME --recipient ORG\n"
        "               --subject LINKCODE [options]\n"
        "       khforge --serve --pki DIR --to HOST:PORT --as NAME [--field ITEM.NAME=VALUE...]\n"
        "               [--times N] [--timeout-ms T]\n"
        "Builds a QUERY envelope as a gateway (or, with --sign-as ROUTER, as the router)\n"
        "would, optionally breaks it, and POSTs it to /v1/envelope over mutual TLS.\n"
        "  --deferred-answer ID  build a deferred ANSWER to query ID (32 hex digits) instead,\n"
        "                        as a provider sends it after a responder's decision: header\n"
        "                        answer_state DEFERRED, body FOUND with the --field values\n"
        "                        (NOT_FOUND without); send it --as router --sign-as ROUTER\n"
        "                        to the asker's peer API, as the router relays it\n"
        "  --field ITEM.NAME=VALUE  a field of the deferred or served answer (repeatable);\n"
        "                        nothing limits it to the legal basis: a misbehaving provider\n"
        "  --serve               be a provider's gateway instead: listen on --to with the TLS\n"
        "                        identity of gateway --as, and answer each QUERY the router\n"
        "                        forwards (POST /v1/envelope) at once, FOUND with the --field\n"
        "                        values, signed and sealed with DIR/org/RECIPIENT's keys to\n"
        "                        the asker; prints 'READY', then 'SERVED n QUERY <id> ...'\n"
        "                        per answer; exits 0 after --times answers (default 1), 4\n"
        "                        if --timeout-ms passes first\n"
        "  --disclosure          build a DISCLOSURE_REQUEST (records and own information)\n"
        "                        as the router originates it instead: sender, header signer\n"
        "                        and payload signer default to ROUTER; no procedure or items;\n"
        "                        a 200 answer is opened with DIR/router/enc.key\n"
        "  --pki DIR             the PKI folder made by tools/khpki\n"
        "  --to HOST:PORT        the router, or a gateway's peer API\n"
        "  --as NAME             TLS identity: a gateway name (DIR/gw/NAME/tls.*),\n"
        "                        'router' (DIR/router/tls.*) or 'rogue' (DIR/rogue/tls.*)\n"
        "  --sender ORG          header and body sender\n"
        "  --recipient ORG       header and body recipient (payload encrypted to its enc.crt)\n"
        "  --procedure P         procedure code, e.g. JT001\n"
        "  --items I[,I...]      item codes, e.g. TK001\n"
        "  --subject LINKCODE    the subject's link code as the reader of the header knows it\n"
        "  --staff ID            body staff_id (default O-CA-001)\n"
        "  --as-of YYYYMMDD      body as_of (default empty: today)\n"
        "  --sign-as ORG|ROUTER  whose key signs the header (default the sender); ROUTER uses\n"
        "                        DIR/router/sign.key and sets header.signer = ROUTER\n"
        "  --payload-signer ORG|ROUTER|rogue  who signs the inner SignedData (default the\n"
        "                        sender); ROUTER uses DIR/router/sign.{crt,key}, rogue\n"
        "                        DIR/rogue/sign.{crt,key} (another CA)\n"
        "  --tamper header|payload  after signing, flip a byte of the header's procedure\n"
        "                        string / a byte in the middle of the payload\n"
        "  --splice FILE         use the payload of the envelope saved in FILE with this\n"
        "                        fresh, correctly signed header\n"
        "  --reuse-id FILE       use the message id of the envelope saved in FILE, with a\n"
        "                        fresh payload (another message under a seen id)\n"
        "  --expired             issued_at = now-600, expires_at = now-300 (correctly signed)\n"
        "  --ttl N               validity in seconds (default 300)\n"
        "  --times N             send the same bytes N times (default 1; 0 = only build)\n"
        "  --save FILE           write the envelope (before sending)\n"
        "  --batch N             build N envelopes, each with its own message id, into\n"
        "                        FILE.000001 ... (--save FILE), print 'BUILT N' and send\n"
        "                        nothing (tools/khbench-overload posts them)\n"
        "  --save-answer FILE    write the last 200 answer envelope received\n"
        "  --timeout-ms N        per send (default 30000)\n"
        "  --extract ENV DIR     split a saved/captured envelope into DIR/header.bin,\n"
        "                        DIR/header_sig.bin, DIR/payload.der and print its header\n"
        "  -h, --help            this text\n"
        "output: 'MSG id', then per send 'SEND n HTTP status KH-code', 'SEND n HTTP 200\n"
        "ANSWER RESULT items=I,...|- withheld=I,...|- fields=I.f,...|-' (the items the\n"
        "answer carries, those it withholds, and the fields it carries by base name),\n"
        "or 'SEND n FAILED: reason'. Exit 0 all sends completed, 4 "
        "transport failure,\n"
        "2 usage, 1 cannot build.\n");
}

/* An envelope file: khc_read_file with an envelope's limit. */
static int read_all(const char *path, uint8_t **out, size_t *outlen)
{
    return khc_read_file_max(path, MAX_ENVELOPE, out, outlen);
}

static int write_all(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

/* --extract: the parts of an envelope, for the openssl CLI. */
static int extract(const char *file, const char *dir)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    char path[1024];
    if (read_all(file, &buf, &len) != 0) {
        fprintf(stderr, "khforge: cannot read %s\n", file);
        return 1;
    }
    Kh__Envelope *env =
        (Kh__Envelope *)kh_pb_unpack(&kh__envelope__descriptor, buf, len, NULL, NULL, 0);
    free(buf);
    if (env == NULL) {
        fprintf(stderr, "khforge: %s is not a kh.Envelope\n", file);
        return 1;
    }
    int rc = 0;
    const struct {
        const char *name;
        ProtobufCBinaryData *b;
    } parts[] = {{"header.bin", &env->header},
                 {"header_sig.bin", &env->header_sig},
                 {"payload.der", &env->payload}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, parts[i].name);
        if (write_all(path, parts[i].b->data, parts[i].b->len) != 0) {
            fprintf(stderr, "khforge: cannot write %s\n", path);
            rc = 1;
        }
    }
    Kh__Header *h = (Kh__Header *)kh_pb_unpack(&kh__header__descriptor, env->header.data,
                                               env->header.len, NULL, NULL, 0);
    if (h != NULL) {
        char hex[2 * KH_MSG_ID_LEN + 1];
        kh_msgid_hex(&h->msg_id, hex);
        const ProtobufCEnumValue *t =
            protobuf_c_enum_descriptor_get_value(&kh__msg_type__descriptor, h->type);
        printf("msg_id=%s type=%s sender=%s recipient=%s signer=%s procedure=%s items=", hex,
               t ? t->name : "?", h->sender, h->recipient, h->signer, h->procedure);
        for (size_t i = 0; i < h->n_items; i++)
            printf("%s%s", i ? "," : "", h->items[i]);
        printf(" issued_at=%lld expires_at=%lld\n", (long long)h->issued_at,
               (long long)h->expires_at);
        kh__header__free_unpacked(h, NULL);
    } else {
        fprintf(stderr, "khforge: the envelope's header is not a kh.Header\n");
        rc = 1;
    }
    kh__envelope__free_unpacked(env, NULL);
    return rc;
}

/* Flips one byte inside the procedure string of a serialized header: the
 * field is tag 6, wire type 2 (0x32), a one-byte length, then the string.
 * The last character is changed to another character of [0-9A-Z] so that the
 * header still parses and only its signature can tell. */
static int tamper_header(uint8_t *hdr, size_t hlen, const char *procedure)
{
    size_t pl = strlen(procedure);
    if (pl == 0 || pl > 127)
        return -1;
    for (size_t i = 0; i + 2 + pl <= hlen; i++) {
        if (hdr[i] == 0x32 && hdr[i + 1] == pl && memcmp(hdr + i + 2, procedure, pl) == 0) {
            uint8_t *c = &hdr[i + 2 + pl - 1];
            *c = *c == '0' ? '1' : *c == 'A' ? 'B' : (uint8_t)(*c ^ 1);
            if (!((*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'Z')))
                *c = '0';
            return 0;
        }
    }
    return -1;
}

static size_t split_items(char *s, char **items)
{
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t && n < KH_MAX_ITEMS;
         t = strtok_r(NULL, ",", &save))
        items[n++] = t;
    return n;
}

/* Appends " NAME=" and the codes, comma-separated ("-" if none), to out. */
static void append_codes(char *out, size_t outlen, const char *name, char *const *codes, size_t n)
{
    size_t pos = strlen(out);
    pos +=
        (size_t)snprintf(out + pos, pos < outlen ? outlen - pos : 0, " %s=%s", name, n ? "" : "-");
    for (size_t i = 0; i < n && pos < outlen; i++)
        pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? "," : "", codes[i]);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends " fields=" and the fields the answer carries, as ITEM.base (a
 * field's flattened name without its occurrence and member: "dependents" for
 * "dependents[2].name"), sorted, each once ("-" if none): what the answering
 * side actually sent, for checks of minimisation. */
static void append_fields(char *out, size_t outlen, Kh__ItemData **data, size_t ndata)
{
    char *names[512];
    size_t n = 0;
    for (size_t i = 0; i < ndata; i++)
        for (size_t k = 0; k < data[i]->n_fields && n < sizeof names / sizeof names[0]; k++) {
            const char *f = data[i]->fields[k]->name;
            int base = (int)strcspn(f, "[.");
            size_t len = strlen(data[i]->item_code) + 1 + (size_t)base + 1;
            if ((names[n] = malloc(len)) == NULL)
                break;
            snprintf(names[n++], len, "%s.%.*s", data[i]->item_code, base, f);
        }
    qsort(names, n, sizeof names[0], cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && strcmp(names[u - 1], names[i]) == 0)
            free(names[i]);
        else
            names[u++] = names[i];
    }
    append_codes(out, outlen, "fields", names, u);
    for (size_t i = 0; i < u; i++)
        free(names[i]);
}

/* Opens a 200 answer with the asker's encryption key: its result (FOUND,
 * NOT_FOUND, WITHHELD, PENDING, or ? if unreadable), the items it carries,
 * the items it withholds and the fields it carries. */
static const char *answer_result(const char *pki, const char *asker, const uint8_t *buf, size_t len,
                                 char *out, size_t outlen)
{
    char path[1024], err[256];
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    X509_STORE *trust = NULL;
    X509 *signer = NULL;
    uint8_t *body = NULL;
    size_t blen = 0;
    snprintf(out, outlen, "?");
    Kh__Envelope *env =
        (Kh__Envelope *)kh_pb_unpack(&kh__envelope__descriptor, buf, len, NULL, NULL, 0);
    if (env == NULL)
        return out;
    bool router = strcmp(asker, "ROUTER") == 0; /* a disclosure's answer */
    if (router)
        snprintf(path, sizeof path, "%s/router/enc.crt", pki);
    else
        snprintf(path, sizeof path, "%s/org/%s/enc.crt", pki, asker);
    cert = khc_load_cert(path, err, sizeof err);
    size_t base = strlen(path) - strlen("crt");
    snprintf(path + base, sizeof path - base, "key");
    key = khc_load_key(path, err, sizeof err);
    snprintf(path, sizeof path, "%s/national-ca.crt", pki);
    trust = khc_store_from_file(path, err, sizeof err);
    /* payloads carry no certificate: the signer's is the answering
     * organisation's (the header's sender), from the PKI folder */
    Kh__Header *h = (Kh__Header *)kh_pb_unpack(&kh__header__descriptor, env->header.data,
                                               env->header.len, NULL, NULL, 0);
    if (h != NULL && kh_id_org(h->sender)) {
        snprintf(path, sizeof path, "%s/org/%s/sign.crt", pki, h->sender);
        signer = khc_load_cert(path, err, sizeof err);
    }
    if (h != NULL)
        kh__header__free_unpacked(h, NULL);
    if (cert && key && trust && signer &&
        khc_open(env->payload.data, env->payload.len, cert, key, trust, signer, &body, &blen) ==
            KH_OK) {
        Kh__DisclosureAnswerBody *db =
            router ? (Kh__DisclosureAnswerBody *)kh_pb_unpack(
                         &kh__disclosure_answer_body__descriptor, body, blen, NULL, NULL, 0)
                   : NULL;
        Kh__AnswerBody *ab = router ? NULL
                                    : (Kh__AnswerBody *)kh_pb_unpack(&kh__answer_body__descriptor,
                                                                     body, blen, NULL, NULL, 0);
        const char *result = db ? db->result : ab ? ab->result : NULL;
        Kh__ItemData **data = db ? db->self_info : ab ? ab->data : NULL;
        size_t ndata = db ? db->n_self_info : ab ? ab->n_data : 0;
        char *carried[KH_MAX_ITEMS];
        size_t n = 0;
        for (size_t i = 0; i < ndata && n < KH_MAX_ITEMS; i++)
            carried[n++] = data[i]->item_code;
        if (result != NULL) {
            snprintf(out, outlen, "%s", result[0] ? result : "?");
            append_codes(out, outlen, "items", carried, n);
            append_codes(out, outlen, "withheld", ab ? ab->withheld : NULL,
                         !ab                             ? 0
                         : ab->n_withheld < KH_MAX_ITEMS ? ab->n_withheld
                                                         : KH_MAX_ITEMS);
            append_fields(out, outlen, data, ndata);
        }
        kh_items_wipe(data, ndata);
        if (db)
            kh__disclosure_answer_body__free_unpacked(db, NULL);
        if (ab)
            kh__answer_body__free_unpacked(ab, NULL);
        khc_free_secret(body, blen);
    }
    khc_cert_free(signer);
    khc_cert_free(cert);
    khc_key_free(key);
    khc_store_free(trust);
    kh__envelope__free_unpacked(env, NULL);
    return out;
}

static const char *refusal_code(const kh_sync_resp *r, char *out, size_t outlen)
{
    Kh__Status *st =
        (Kh__Status *)kh_pb_unpack(&kh__status__descriptor, r->body, r->len, NULL, NULL, 0);
    snprintf(out, outlen, "%s", st && st->code[0] ? st->code : "?");
    if (st)
        kh__status__free_unpacked(st, NULL);
    return out;
}

typedef struct {
    const char *pki, *to, *as, *sender, *recipient, *procedure, *subject, *staff, *as_of;
    const char *sign_as, *payload_signer, *tamper, *splice, *save, *save_answer, *reuse_id;
    char *items;
    const char *deferred; /* a deferred answer to this query id (hex), or NULL */
    const char *fields[64];
    size_t nfields;
    bool expired, disclosure;
    int times, ttl, timeout_ms, batch;
} forge_opts;

/* An answer's body, as gw_answer.c builds it (deferred: as gw_decide.c does
 * after a responder's decision), with the data given by --field
 * ITEM.NAME=VALUE (in the order of items): FOUND if any, else NOT_FOUND.
 * Nothing checks the fields against a legal basis here: a misbehaving
 * provider is what this is for. */
static int answer_body(const forge_opts *o, const Kh__Header *h, char **items, size_t nitems,
                       bool deferred, uint8_t **body, size_t *blen)
{
    Kh__ItemData d[KH_MAX_ITEMS], *dp[KH_MAX_ITEMS];
    Kh__Field f[64], *fp[64];
    char name[64][96];
    size_t nd = 0, nf = 0;
    for (size_t i = 0; i < nitems; i++) {
        size_t first = nf;
        for (size_t k = 0; k < o->nfields && nf < sizeof f / sizeof f[0]; k++) {
            const char *dot = strchr(o->fields[k], '.'), *eq = strchr(o->fields[k], '=');
            size_t il = dot ? (size_t)(dot - o->fields[k]) : 0;
            if (dot == NULL || eq == NULL || eq < dot || il != strlen(items[i]) ||
                strncmp(o->fields[k], items[i], il) != 0)
                continue;
            kh__field__init(&f[nf]);
            snprintf(name[nf], sizeof name[nf], "%.*s", (int)(eq - dot - 1), dot + 1);
            f[nf].name = name[nf];
            f[nf].value = (char *)eq + 1;
            fp[nf] = &f[nf];
            nf++;
        }
        if (nf == first)
            continue;
        kh__item_data__init(&d[nd]);
        d[nd].item_code = items[i];
        d[nd].version = 1;
        d[nd].effective_from = "20250101";
        d[nd].fields = &fp[first];
        d[nd].n_fields = nf - first;
        dp[nd] = &d[nd];
        nd++;
    }
    Kh__AnswerBody a = KH__ANSWER_BODY__INIT;
    a.msg_id = h->msg_id;
    a.in_reply_to = h->in_reply_to;
    a.sender = h->sender;
    a.recipient = h->recipient;
    a.procedure = h->procedure;
    a.items = items;
    a.n_items = nitems;
    a.result = nd ? "FOUND" : "NOT_FOUND";
    a.data = dp;
    a.n_data = nd;
    a.deferred = deferred;
    return kh_pb_pack(&a.base, body, blen);
}

/* Builds the envelope described by o into *out. */
static int build(const forge_opts *o, uint8_t **out, size_t *outlen)
{
    char path[1024], err[256] = "out of memory";
    char *items[KH_MAX_ITEMS];
    char *itemlist = o->items ? strdup(o->items) : NULL; /* split in place: built again */
    size_t nitems = itemlist ? split_items(itemlist, items) : 0;
    X509 *psign_cert = NULL, *recip = NULL;
    EVP_PKEY *psign_key = NULL, *hkey = NULL;
    uint8_t *body = NULL, *payload = NULL, *hdr = NULL, *sig = NULL, *spliced = NULL;
    size_t blen = 0, plen = 0, hlen = 0, slen = 0, splen = 0;
    Kh__Envelope *saved = NULL;
    int rc = -1;
    if (o->items && itemlist == NULL)
        goto fail;
    bool router = strcmp(o->sign_as, "ROUTER") == 0;
    bool rogue = strcmp(o->payload_signer, "rogue") == 0;
    bool prouter = strcmp(o->payload_signer, "ROUTER") == 0;

    /* header signing key */
    if (router)
        snprintf(path, sizeof path, "%s/router/sign.key", o->pki);
    else
        snprintf(path, sizeof path, "%s/org/%s/sign.key", o->pki, o->sign_as);
    if ((hkey = khc_load_key(path, err, sizeof err)) == NULL)
        goto fail;
    /* payload signer and recipient */
    if (rogue)
        snprintf(path, sizeof path, "%s/rogue/sign", o->pki);
    else if (prouter)
        snprintf(path, sizeof path, "%s/router/sign", o->pki);
    else
        snprintf(path, sizeof path, "%s/org/%s/sign", o->pki, o->payload_signer);
    size_t base = strlen(path);
    snprintf(path + base, sizeof path - base, ".crt");
    if ((psign_cert = khc_load_cert(path, err, sizeof err)) == NULL)
        goto fail;
    snprintf(path + base, sizeof path - base, ".key");
    if ((psign_key = khc_load_key(path, err, sizeof err)) == NULL)
        goto fail;
    snprintf(path, sizeof path, "%s/org/%s/enc.crt", o->pki, o->recipient);
    if ((recip = khc_load_cert(path, err, sizeof err)) == NULL)
        goto fail;

    /* the header, as kh_header_init and gw_biz.c build it */
    Kh__Header h;
    uint8_t id[KH_MSG_ID_LEN], irt[KH_MSG_ID_LEN];
    if (kh_header_init(&h, id,
                       o->disclosure ? KH__MSG_TYPE__DISCLOSURE_REQUEST
                       : o->deferred ? KH__MSG_TYPE__ANSWER
                                     : KH__MSG_TYPE__QUERY,
                       o->sender, o->recipient, o->sign_as, o->ttl) != 0) {
        snprintf(err, sizeof err, "no randomness");
        goto fail;
    }
    if (o->deferred) {
        if (strlen(o->deferred) != 2 * KH_MSG_ID_LEN ||
            khc_unhex(o->deferred, strlen(o->deferred), irt, KH_MSG_ID_LEN) != 0) {
            snprintf(err, sizeof err, "--deferred-answer expects a message id (32 hex digits)");
            goto fail;
        }
        h.in_reply_to.data = irt;
        h.in_reply_to.len = KH_MSG_ID_LEN;
        h.answer_state = "DEFERRED";
    }
    if (o->reuse_id) {
        uint8_t *raw = NULL;
        size_t rawlen = 0;
        Kh__Envelope *e0 = NULL;
        Kh__Header *h0 = NULL;
        char why[160];
        if (read_all(o->reuse_id, &raw, &rawlen) != 0 ||
            kh_env_parse(raw, rawlen, &e0, &h0, why, sizeof why) != KH_OK ||
            h0->msg_id.len != KH_MSG_ID_LEN) {
            free(raw);
            snprintf(err, sizeof err, "%s is not a saved envelope", o->reuse_id);
            goto fail;
        }
        memcpy(id, h0->msg_id.data, KH_MSG_ID_LEN);
        kh_env_free(e0, h0);
        free(raw);
    }
    h.procedure = (char *)(o->procedure ? o->procedure : "");
    h.items = items;
    h.n_items = nitems;
    h.subject = (char *)o->subject;
    if (o->expired) {
        int64_t now = (int64_t)time(NULL);
        h.issued_at = now - 600;
        h.expires_at = now - 300;
    }

    /* the payload: fresh (body repeats the header), or spliced from a file */
    if (o->splice) {
        if (read_all(o->splice, &spliced, &splen) != 0 ||
            (saved = (Kh__Envelope *)kh_pb_unpack(&kh__envelope__descriptor, spliced, splen, NULL,
                                                  NULL, 0)) == NULL) {
            snprintf(err, sizeof err, "%s is not a saved envelope", o->splice);
            goto fail;
        }
        plen = saved->payload.len;
        payload = malloc(plen ? plen : 1);
        if (payload == NULL)
            goto fail;
        memcpy(payload, saved->payload.data, plen);
    } else {
        int packed;
        if (o->deferred) {
            packed = answer_body(o, &h, items, nitems, true, &body, &blen);
        } else if (o->disclosure) {
            Kh__DisclosureRequestBody b = KH__DISCLOSURE_REQUEST_BODY__INIT;
            b.msg_id = h.msg_id;
            b.sender = (char *)o->sender;
            b.recipient = (char *)o->recipient;
            b.subject = (char *)o->subject;
            b.records = true;
            b.self_info = true;
            b.requester = "khforge";
            packed = kh_pb_pack(&b.base, &body, &blen);
        } else {
            Kh__QueryBody b = KH__QUERY_BODY__INIT;
            b.msg_id = h.msg_id;
            b.sender = (char *)o->sender;
            b.recipient = (char *)o->recipient;
            b.procedure = (char *)o->procedure;
            b.items = items;
            b.n_items = nitems;
            b.staff_id = (char *)o->staff;
            b.as_of = (char *)o->as_of;
            packed = kh_pb_pack(&b.base, &body, &blen);
        }
        if (packed != 0 ||
            khc_seal(body, blen, psign_cert, psign_key, recip, &payload, &plen) != 0) {
            snprintf(err, sizeof err, "cannot seal the payload");
            goto fail;
        }
    }

    /* sign the header (kh_env_pack's steps, done here so a byte can be
     * flipped between signing and packing) */
    if (kh_pb_pack(&h.base, &hdr, &hlen) != 0 || khc_sign(hkey, hdr, hlen, &sig, &slen) != 0) {
        snprintf(err, sizeof err, "cannot sign the header");
        goto fail;
    }
    if (o->tamper && strcmp(o->tamper, "header") == 0 &&
        (o->procedure == NULL || tamper_header(hdr, hlen, o->procedure) != 0)) {
        snprintf(err, sizeof err, "procedure not found in the serialized header");
        goto fail;
    }
    if (o->tamper && strcmp(o->tamper, "payload") == 0)
        payload[plen / 2] ^= 0x01;
    Kh__Envelope env = KH__ENVELOPE__INIT;
    env.header.data = hdr;
    env.header.len = hlen;
    env.header_sig.data = sig;
    env.header_sig.len = slen;
    env.payload.data = payload;
    env.payload.len = plen;
    if (kh_pb_pack(&env.base, out, outlen) != 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "khforge: %s\n", err);
out:
    khc_free_secret(body, blen);
    free(payload);
    free(hdr);
    free(sig);
    free(spliced);
    if (saved)
        kh__envelope__free_unpacked(saved, NULL);
    khc_cert_free(psign_cert);
    khc_cert_free(recip);
    khc_key_free(psign_key);
    khc_key_free(hkey);
    free(itemlist);
    return rc;
}

/* ---- --serve: a provider's gateway that answers with --field values ---- */

typedef struct {
    const forge_opts *o;
    struct event_base *base;
    int served;
} serve_ctx;

/* The synchronous ANSWER to the query whose (forwarded) header is q, as the
 * recipient's gateway would seal it (gw_answer_seal), with the --field data:
 * header and payload signed with DIR/org/RECIPIENT, sealed to the asker's
 * encryption certificate. */
static int forge_answer(const forge_opts *o, const Kh__Header *q, uint8_t **out, size_t *outlen)
{
    char path[1024], err[256];
    kh_identity id;
    X509 *recip = NULL;
    uint8_t *body = NULL, mid[KH_MSG_ID_LEN];
    size_t blen = 0;
    int rc = -1;
    memset(&id, 0, sizeof id);
    snprintf(path, sizeof path, "%s/org/%s", o->pki, q->recipient);
    if (kh_identity_load(&id, q->recipient, path, err, sizeof err) != 0) {
        fprintf(stderr, "khforge: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/org/%s/enc.crt", o->pki, q->sender);
    Kh__Header h;
    if ((recip = khc_load_cert(path, err, sizeof err)) != NULL &&
        kh_header_init(&h, mid, KH__MSG_TYPE__ANSWER, q->recipient, q->sender, q->recipient,
                       o->ttl) == 0) {
        h.procedure = q->procedure;
        h.items = q->items;
        h.n_items = q->n_items;
        h.subject = q->subject;
        h.in_reply_to = q->msg_id;
        h.answer_state = "";
        rc = answer_body(o, &h, q->items, q->n_items, false, &body, &blen) == 0 &&
                     kh_env_seal(&h, &id, body, blen, recip, out, outlen) == 0
                 ? 0
                 : -1;
    }
    khc_free_secret(body, blen);
    khc_cert_free(recip);
    kh_identity_clear(&id);
    return rc;
}

static void on_query(struct evhttp_request *req, void *arg)
{
    serve_ctx *s = arg;
    uint8_t *body = NULL, *ans = NULL;
    size_t len = 0, alen = 0;
    char why[160] = "", hex[2 * KH_MSG_ID_LEN + 1];
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    kh_err e = kh_http_body(req, MAX_ENVELOPE, KH_PB_CONTENT_TYPE, &body, &len, why, sizeof why);
    if (e == KH_OK)
        e = kh_env_parse(body, len, &env, &h, why, sizeof why);
    if (e == KH_OK && h->type != KH__MSG_TYPE__QUERY) {
        e = KH_E_BAD_REQUEST;
        snprintf(why, sizeof why, "khforge --serve answers queries only");
    }
    if (e == KH_OK && forge_answer(s->o, h, &ans, &alen) != 0) {
        e = KH_E_INTERNAL;
        snprintf(why, sizeof why, "cannot build the answer");
    }
    if (e != KH_OK) {
        kh_http_reply_err(req, e, "%s", why);
        printf("REFUSED %s: %s\n", kh_err_code(e), why);
    } else {
        kh_http_reply_raw(req, 200, ans, alen);
        kh_msgid_hex(&h->msg_id, hex);
        printf("SERVED %d QUERY %s %s -> %s items=", ++s->served, hex, h->sender, h->recipient);
        for (size_t i = 0; i < h->n_items; i++)
            printf("%s%s", i ? "," : "", h->items[i]);
        printf(" fields=%zu\n", s->o->nfields);
    }
    fflush(stdout);
    if (env != NULL)
        kh_env_free(env, h);
    khc_free_secret(body, len);
    free(ans);
    if (s->served >= s->o->times) { /* once the reply has gone out */
        struct timeval later = {0, 200000};
        event_base_loopexit(s->base, &later);
    }
}

/* The router's readiness probe (GET /v1/ready): a gateway that serves. */
static void on_ready(struct evhttp_request *req, void *arg)
{
    (void)arg;
    static const char ready[] = "{\"ready\":true}";
    kh_http_reply_json(req, 200, ready, sizeof ready - 1, NULL);
}

static void serve_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Listens on o->to as the gateway o->as until o->times queries are answered
 * (0) or o->timeout_ms has passed (4). */
static int serve(const forge_opts *o)
{
    char cert[1024], key[1024], ca[1024], err[256];
    snprintf(cert, sizeof cert, "%s/gw/%s/tls.crt", o->pki, o->as);
    snprintf(key, sizeof key, "%s/gw/%s/tls.key", o->pki, o->as);
    snprintf(ca, sizeof ca, "%s/national-ca.crt", o->pki);
    serve_ctx s = {.o = o};
    SSL_CTX *ctx = kh_tls_server_ctx(cert, key, ca, err, sizeof err);
    struct evhttp *http = NULL;
    struct event *deadline = NULL;
    int rc = 1;
    if (ctx == NULL || (s.base = event_base_new()) == NULL ||
        (http = kh_http_listen(s.base, ctx, o->to, MAX_ENVELOPE, err, sizeof err)) == NULL ||
        (deadline = evtimer_new(s.base, serve_timeout, s.base)) == NULL) {
        fprintf(stderr, "khforge: cannot serve on %s: %s\n", o->to, err);
        goto out;
    }
    kh_http_route(http, "/v1/envelope", on_query, &s);
    kh_http_route(http, "/v1/ready", on_ready, NULL);
    struct timeval tv = {o->timeout_ms / 1000, (o->timeout_ms % 1000) * 1000};
    evtimer_add(deadline, &tv);
    printf("READY %s as %s\n", o->to, o->as);
    fflush(stdout);
    event_base_dispatch(s.base);
    rc = s.served >= o->times ? 0 : 4;
    if (rc != 0)
        printf("TIMEOUT after %d of %d queries\n", s.served, o->times);
out:
    if (deadline != NULL)
        event_free(deadline);
    if (http != NULL)
        evhttp_free(http);
    if (s.base != NULL)
        event_base_free(s.base);
    kh_tls_ctx_free(ctx);
    return rc;
}

static bool is_org(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

static bool is_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

enum {
    O_PKI = 256,
    O_TO,
    O_AS,
    O_SENDER,
    O_RECIPIENT,
    O_PROCEDURE,
    O_ITEMS,
    O_SUBJECT,
    O_STAFF,
    O_ASOF,
    O_SIGNAS,
    O_PSIGNER,
    O_TAMPER,
    O_SPLICE,
    O_REUSE_ID,
    O_EXPIRED,
    O_TTL,
    O_TIMES,
    O_BATCH,
    O_SAVE,
    O_SAVEANS,
    O_TIMEOUT,
    O_EXTRACT,
    O_DISCLOSURE,
    O_DEFERRED,
    O_FIELD,
    O_SERVE,
};

/* --batch N --save PREFIX: N envelopes, each with its own message id, in
 * PREFIX.000001 ...; nothing is sent (tools/khbench-overload posts them). */
static int batch(const forge_opts *o)
{
    char path[1024];
    for (int n = 1; n <= o->batch; n++) {
        uint8_t *env = NULL;
        size_t elen = 0;
        if (build(o, &env, &elen) != 0)
            return 1;
        snprintf(path, sizeof path, "%s.%06d", o->save, n);
        int w = write_all(path, env, elen);
        free(env);
        if (w != 0) {
            fprintf(stderr, "khforge: cannot write %s\n", path);
            return 1;
        }
    }
    printf("BUILT %d\n", o->batch);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"pki", required_argument, NULL, O_PKI},
                                         {"to", required_argument, NULL, O_TO},
                                         {"as", required_argument, NULL, O_AS},
                                         {"sender", required_argument, NULL, O_SENDER},
                                         {"recipient", required_argument, NULL, O_RECIPIENT},
                                         {"procedure", required_argument, NULL, O_PROCEDURE},
                                         {"items", required_argument, NULL, O_ITEMS},
                                         {"subject", required_argument, NULL, O_SUBJECT},
                                         {"staff", required_argument, NULL, O_STAFF},
                                         {"as-of", required_argument, NULL, O_ASOF},
                                         {"sign-as", required_argument, NULL, O_SIGNAS},
                                         {"payload-signer", required_argument, NULL, O_PSIGNER},
                                         {"tamper", required_argument, NULL, O_TAMPER},
                                         {"splice", required_argument, NULL, O_SPLICE},
                                         {"reuse-id", required_argument, NULL, O_REUSE_ID},
                                         {"expired", no_argument, NULL, O_EXPIRED},
                                         {"ttl", required_argument, NULL, O_TTL},
                                         {"times", required_argument, NULL, O_TIMES},
                                         {"batch", required_argument, NULL, O_BATCH},
                                         {"save", required_argument, NULL, O_SAVE},
                                         {"save-answer", required_argument, NULL, O_SAVEANS},
                                         {"timeout-ms", required_argument, NULL, O_TIMEOUT},
                                         {"extract", no_argument, NULL, O_EXTRACT},
                                         {"disclosure", no_argument, NULL, O_DISCLOSURE},
                                         {"deferred-answer", required_argument, NULL, O_DEFERRED},
                                         {"field", required_argument, NULL, O_FIELD},
                                         {"serve", no_argument, NULL, O_SERVE},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    forge_opts o = {.staff = "O-CA-001", .as_of = "", .times = 1, .ttl = 300, .timeout_ms = 30000};
    bool do_extract = false, do_serve = false;
    int c;
    char *end;
    long v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_PKI:
            o.pki = optarg;
            break;
        case O_TO:
            o.to = optarg;
            break;
        case O_AS:
            o.as = optarg;
            break;
        case O_SENDER:
            o.sender = optarg;
            break;
        case O_RECIPIENT:
            o.recipient = optarg;
            break;
        case O_PROCEDURE:
            o.procedure = optarg;
            break;
        case O_ITEMS:
            o.items = optarg;
            break;
        case O_SUBJECT:
            o.subject = optarg;
            break;
        case O_STAFF:
            o.staff = optarg;
            break;
        case O_DEFERRED:
            o.deferred = optarg;
            break;
        case O_FIELD:
            if (o.nfields == sizeof o.fields / sizeof o.fields[0] || strchr(optarg, '.') == NULL ||
                strchr(optarg, '=') == NULL) {
                fprintf(stderr, "khforge: --field expects ITEM.NAME=VALUE (at most 64)\n");
                return 2;
            }
            o.fields[o.nfields++] = optarg;
            break;
        case O_ASOF:
            o.as_of = optarg;
            break;
        case O_SIGNAS:
            o.sign_as = optarg;
            break;
        case O_PSIGNER:
            o.payload_signer = optarg;
            break;
        case O_TAMPER:
            o.tamper = optarg;
            break;
        case O_SPLICE:
            o.splice = optarg;
            break;
        case O_REUSE_ID:
            o.reuse_id = optarg;
            break;
        case O_EXPIRED:
            o.expired = true;
            break;
        case O_SAVE:
            o.save = optarg;
            break;
        case O_SAVEANS:
            o.save_answer = optarg;
            break;
        case O_EXTRACT:
            do_extract = true;
            break;
        case O_SERVE:
            do_serve = true;
            break;
        case O_DISCLOSURE:
            o.disclosure = true;
            break;
        case O_TTL:
        case O_TIMES:
        case O_BATCH:
        case O_TIMEOUT:
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 0 || v > 86400000) {
                fprintf(stderr, "khforge: bad number '%s'\n", optarg);
                return 2;
            }
            if (c == O_TTL)
                o.ttl = (int)v;
            else if (c == O_TIMES)
                o.times = (int)v;
            else if (c == O_BATCH)
                o.batch = (int)v;
            else
                o.timeout_ms = (int)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (do_extract) {
        if (argc - optind != 2) {
            usage(stderr);
            return 2;
        }
        return extract(argv[optind], argv[optind + 1]);
    }
    if (do_serve) {
        if (optind != argc || !o.pki || !o.to || !is_name(o.as) || o.timeout_ms == 0 ||
            o.times == 0 || o.ttl == 0) {
            usage(stderr);
            return 2;
        }
        return serve(&o);
    }
    if (o.disclosure && !o.sender)
        o.sender = "ROUTER";
    if (!o.sign_as)
        o.sign_as = o.sender;
    if (!o.payload_signer)
        o.payload_signer = o.sender;
    if (optind != argc || !o.pki || !o.to || !is_name(o.as) || !is_org(o.sender) ||
        (o.deferred && o.disclosure) || (o.nfields && !o.deferred) || !is_org(o.recipient) ||
        (!o.disclosure && (!o.procedure || !o.items)) || !o.subject || !is_org(o.sign_as) ||
        (!is_org(o.payload_signer) && strcmp(o.payload_signer, "rogue") != 0) ||
        (o.tamper && strcmp(o.tamper, "header") != 0 && strcmp(o.tamper, "payload") != 0) ||
        (o.batch > 0 && (o.save == NULL || o.batch > 1000000)) || o.timeout_ms == 0 || o.ttl == 0 ||
        (o.procedure && strlen(o.procedure) > KH_CODE_MAX)) {
        usage(stderr);
        return 2;
    }

    uint8_t *env = NULL;
    size_t elen = 0;
    if (o.batch > 0)
        return batch(&o);
    if (build(&o, &env, &elen) != 0)
        return 1;
    if (o.save && write_all(o.save, env, elen) != 0) {
        fprintf(stderr, "khforge: cannot write %s\n", o.save);
        free(env);
        return 1;
    }
    Kh__Envelope *built = NULL;
    Kh__Header *bh = NULL;
    char why[160], hex[2 * KH_MSG_ID_LEN + 1];
    if (kh_env_parse(env, elen, &built, &bh, why, sizeof why) == KH_OK) {
        kh_msgid_hex(&bh->msg_id, hex);
        printf("MSG %s\n", hex);
        kh_env_free(built, bh);
    }

    char cert[1024], key[1024], ca[1024], code[64], result[8192];
    if (strcmp(o.as, "router") == 0 || strcmp(o.as, "rogue") == 0) {
        snprintf(cert, sizeof cert, "%s/%s/tls.crt", o.pki, o.as);
        snprintf(key, sizeof key, "%s/%s/tls.key", o.pki, o.as);
    } else {
        snprintf(cert, sizeof cert, "%s/gw/%s/tls.crt", o.pki, o.as);
        snprintf(key, sizeof key, "%s/gw/%s/tls.key", o.pki, o.as);
    }
    snprintf(ca, sizeof ca, "%s/national-ca.crt", o.pki);
    int rc = 0;
    for (int n = 1; n <= o.times; n++) {
        kh_sync_resp r;
        if (kh_sync_request(o.to, cert, key, ca, NULL, NULL, "/v1/envelope", env, elen,
                            o.timeout_ms, &r) != 0) {
            printf("SEND %d FAILED: %s\n", n, r.error);
            rc = 4;
        } else if (r.status == 200) {
            printf("SEND %d HTTP 200 ANSWER %s\n", n,
                   answer_result(o.pki, o.sender, r.body, r.len, result, sizeof result));
            if (o.save_answer && write_all(o.save_answer, r.body, r.len) != 0) {
                fprintf(stderr, "khforge: cannot write %s\n", o.save_answer);
                rc = rc ? rc : 1;
            }
        } else {
            printf("SEND %d HTTP %d %s\n", n, r.status, refusal_code(&r, code, sizeof code));
        }
        fflush(stdout);
        kh_sync_resp_free(&r);
    }
    free(env);
    return rc;
}
