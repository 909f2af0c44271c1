/* khctl: the operators' and auditors' command line for a tenant's
 * hash-chained records (sql/tenant/004_chain.sql, 006_chains.sql): the
 * provision records, the access records and the audit log; and
 * (khctl_admin.c) the admin API client and the bootstrap of the first operator.
 *
 *   khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME] [--from SEQ --to SEQ]
 *                [--tsa-ca TSA-CA.crt]
 *   khctl export --db CONNINFO --tenant ORG [--chain NAME] [--from SEQ] [--to SEQ]
 *   khctl verify --export FILE --cert SIGN.crt [--tsa-ca TSA-CA.crt]
 *   khctl retain --db CONNINFO --tenant ORG --cert SIGN.crt [--years N] [--dry-run]
 *
 * verify walks each chain in order in constant memory, recomputing every
 * hash, and checks every signed head against the tenant's signing
 * certificate. It names the first broken link of each chain: a missing row
 * (deleted), a row that does not follow the one before it (inserted or
 * reordered), a row whose content no longer matches its hash (altered), or a
 * signed head or chain head the rows no longer reach or match (truncated,
 * rewritten). A chain starts at seq 1 after 32 zero bytes, or, once retention
 * has removed its oldest months, at the first seq and the anchor (the hash of
 * the last removed row) that the latest record_retention entry of the audit
 * log names: rows removed any other way are missing rows.
 *
 * export writes, per chain, a header (with the chain's start), the signed
 * heads in the range and the rows, as JSON lines. Version 3 (this one) puts
 * each row's canonical text in it as it is: it is a JSON object on one line,
 * so a line is {"seq":N,"prev_hash":"..","hash":"..","canonical":{...}} and
 * the bytes after "canonical": up to the line's last brace are what was
 * hashed (jq reads .canonical.at). Version 2 held the text as a JSON string;
 * both are verified.
 * A signed head's line carries its RFC 3161 time-stamp token, if it has one
 * ("tst": the DER in hex, over the signature's bytes; "tst_time"); with
 * --tsa-ca, verify checks every token against the TSA's CA (a token that does
 * not verify breaks the chain) and says when the latest was stamped.
 * verify --export checks such a file with only the public certificates.
 *
 * retain verifies every chain, then calls the tenant's record_retain(years,
 * dry_run), which removes the months past the retention period and records
 * it in the audit log in the same transaction (sql/README.md).
 *
 * Exit 0 intact (or retained), 1 a chain is broken, 2 usage or access problem. */
#include "khid.h"
#include "khchain.h"
#include "khcrypto.h"
#include "khctl_admin.h"
#include "khcanon.h"
#include "khtsp.h"
#include "khverify.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* The chained tables, in the order they are verified and retained. */
static const char *const chains[] = {"provision_record", "access_record", "audit_log"};
#define NCHAINS (sizeof chains / sizeof chains[0])
/* --tsa-ca: the time-stamping authority's CA; the signed heads' tokens are
 * checked against it (NULL: counted, not checked) */
static X509_STORE *tsa_store;
static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME]\n"
        "                    [--from SEQ --to SEQ] [--tsa-ca TSA-CA.crt]\n"
        "       khctl export --db CONNINFO --tenant ORG [--chain NAME] [--from SEQ] [--to SEQ]\n"
        "       khctl verify --export FILE --cert SIGN.crt [--tsa-ca TSA-CA.crt]\n"
        "       khctl retain --db CONNINFO --tenant ORG --cert SIGN.crt [--years N] [--dry-run]\n"
        "  --db CONNINFO  libpq connection string: a role that may read the tenant's records\n"
        "                 (kh_auditor_<org>); for retain, one that holds kh_retention\n"
        "  --tenant ORG   the tenant's organisation code\n"
        "  --cert FILE    the tenant's signing certificate (public part only)\n"
        "  --chain NAME   provision_record, access_record or audit_log (default: all three)\n"
        "  --from, --to   a range of seq (with --chain; default: the whole chain)\n"
        "  --export FILE  verify an export (every chain in it) instead of the database\n"
        "  --tsa-ca FILE  the time-stamping authority's CA: every signed head's RFC 3161\n"
        "                 token (over the head's signature) must verify with it, else the\n"
        "                 chain is broken; without it tokens are counted, not checked\n"
        "  --years N      retain: remove the months that ended N years ago or earlier\n"
        "                 (1-100, default 7); every chain is verified first\n"
        "  --dry-run      retain: say what would be removed, remove nothing\n"
        "Exit status: 0 intact (or retained), 1 a chain is broken (its first broken link is\n"
        "named; retain then removes nothing), 2 usage or access problem.\n");
    fprintf(f, "\n");
    khctl_admin_usage(f);
}

static bool chain_known(const char *chain)
{
    for (size_t i = 0; i < NCHAINS; i++)
        if (strcmp(chain, chains[i]) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ database */

static PGconn *open_tenant(const char *db, const char *tenant, bool snapshot)
{
    char lower[16], sql[200];
    for (size_t i = 0; i <= strlen(tenant); i++)
        lower[i] = (char)(tenant[i] >= 'A' && tenant[i] <= 'Z' ? tenant[i] + 32 : tenant[i]);
    PGconn *conn = PQconnectdb(db);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "khctl: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    /* one snapshot for every chain read; retention runs READ COMMITTED (it
     * appends to the audit log under the chain's head lock) */
    snprintf(sql, sizeof sql, "SET search_path = t_%s; BEGIN ISOLATION LEVEL %s", lower,
             snapshot ? "REPEATABLE READ" : "READ COMMITTED");
    PGresult *r = PQexec(conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "khctl: tenant %s: %s", tenant, PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* A query that returns rows, or NULL (said on stderr: cannot read <what>). */
static PGresult *read_rows(PGconn *conn, const char *what, const char *sql, int n,
                           const char *const *p)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "khctl: cannot read %s: %s", what, PQerrorMessage(conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

static PGresult *signatures(PGconn *conn, const char *chain, long long from, long long to)
{
    char f[24], t[24];
    snprintf(f, sizeof f, "%lld", from);
    snprintf(t, sizeof t, "%lld", to > 0 ? to : (long long)9e18);
    const char *p[3] = {chain, f, t};
    /* a schema from before time-stamps (migration 016): the heads alone */
    PGresult *has = PQexec(conn, "SELECT to_regclass('chain_timestamp') IS NOT NULL");
    bool tst = PQresultStatus(has) == PGRES_TUPLES_OK && PQntuples(has) == 1 &&
               strcmp(PQgetvalue(has, 0, 0), "t") == 0;
    PQclear(has);
    if (!tst)
        return read_rows(
            conn, "the signed heads",
            "SELECT seq, encode(hash, 'hex'), encode(signature, 'hex'), "
            "to_char(signed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '', '' "
            "FROM chain_signature WHERE chain = $1 AND seq BETWEEN $2::bigint AND $3::bigint "
            "ORDER BY seq",
            3, p);
    return read_rows(
        conn, "the signed heads",
        "SELECT s.seq, encode(s.hash, 'hex'), encode(s.signature, 'hex'), "
        "to_char(s.signed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "coalesce(encode(t.token, 'hex'), ''), "
        "coalesce(to_char(t.gen_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') "
        "FROM chain_signature s LEFT JOIN chain_timestamp t USING (chain, seq) "
        "WHERE s.chain = $1 AND s.seq BETWEEN $2::bigint AND $3::bigint ORDER BY s.seq",
        3, p);
}

/* Where a chain starts: its latest retention record, if any. Returns 0, 1
 * if that record is unreadable, or 2 if the database failed. */
static int chain_start(PGconn *conn, const char *chain, long long *start, uint8_t anchor[32],
                       long long *retention)
{
    const char *p[1] = {chain};
    PGresult *r =
        read_rows(conn, "the retention records",
                  "SELECT seq, detail ->> 'first_seq', detail ->> 'anchor' FROM audit_log "
                  "WHERE action = 'record_retention' AND target = $1 ORDER BY seq DESC LIMIT 1",
                  1, p);
    if (r == NULL)
        return 2;
    int rc = 0;
    *start = 1;
    *retention = 0;
    memset(anchor, 0, 32);
    if (PQntuples(r) == 1) {
        const char *a = PQgetvalue(r, 0, 2);
        if (!khv_parse_ll(PQgetvalue(r, 0, 0), 1, (long long)9e18, retention) ||
            !khv_parse_ll(PQgetvalue(r, 0, 1), 1, (long long)9e18, start) ||
            khc_unhex(a, strlen(a), anchor, 32) != 0)
            rc = 1;
    }
    PQclear(r);
    return rc;
}

/* The chain's head row (seq 0 if it has none yet). 0, or 2 if the database failed. */
static int chain_head_row(PGconn *conn, const char *chain, khv_head *h)
{
    const char *p[1] = {chain};
    PGresult *r =
        read_rows(conn, "the chain's head",
                  "SELECT seq, encode(hash, 'hex') FROM chain_head WHERE chain = $1", 1, p);
    if (r == NULL)
        return 2;
    memset(h, 0, sizeof *h);
    h->known = true;
    if (PQntuples(r) == 1) {
        const char *hh = PQgetvalue(r, 0, 1);
        if (!khv_parse_ll(PQgetvalue(r, 0, 0), 0, (long long)9e18, &h->seq) ||
            khc_unhex(hh, strlen(hh), h->hash, 32) != 0)
            h->seq = -1; /* never matches */
    }
    PQclear(r);
    return 0;
}

typedef void (*row_fn)(PGresult *r, void *arg);

/* Streams the rows of a range to fn, one at a time (columns: seq, prev_hash,
 * hash, canonical text, id), in seq order; for the whole chain (from 1, no
 * end) then the rows without a seq, so that they are reported. Two queries
 * rather than one with "OR seq IS NULL" keep the ordered read on the seq
 * indexes of the partitions (a merge, no sort), whatever the statistics say.
 * chain is one of chains[]. Returns 0, or 2 if the database failed. */
static int each_row(PGconn *conn, const char *chain, long long from, long long to, row_fn fn,
                    void *arg)
{
    int passes = from == 1 && to == 0 ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        char sql[400];
        PGresult *r;
        int rc = 0;
        if (pass == 0)
            snprintf(sql, sizeof sql,
                     "SELECT seq, encode(prev_hash, 'hex'), encode(hash, 'hex'), "
                     "chain_canonical_%s(t), id FROM %s t WHERE seq BETWEEN %lld AND %lld "
                     "ORDER BY seq",
                     chain, chain, from, to > 0 ? to : (long long)9e18);
        else
            snprintf(sql, sizeof sql,
                     "SELECT seq, encode(prev_hash, 'hex'), encode(hash, 'hex'), "
                     "chain_canonical_%s(t), id FROM %s t WHERE seq IS NULL ORDER BY id",
                     chain, chain);
        if (PQsendQuery(conn, sql) != 1 || PQsetSingleRowMode(conn) != 1) {
            fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
            return 2;
        }
        while ((r = PQgetResult(conn)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_SINGLE_TUPLE) {
                fn(r, arg);
            } else if (st != PGRES_TUPLES_OK && rc == 0) {
                fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
                rc = 2;
            }
            PQclear(r);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Loads the signed heads of [from, to] into w and checks their signatures. */
static int load_signatures(PGconn *conn, khv_walker *w, long long from, long long to)
{
    PGresult *r = signatures(conn, w->chain, from, to);
    if (r == NULL)
        return 2;
    w->nsigs = (size_t)PQntuples(r);
    w->sigs = calloc(w->nsigs + 1, sizeof *w->sigs);
    if (w->sigs == NULL) {
        PQclear(r);
        return 2;
    }
    for (size_t i = 0; i < w->nsigs; i++) {
        khv_sig *s = &w->sigs[i];
        const char *hh = PQgetvalue(r, (int)i, 1);
        s->seq = atoll(PQgetvalue(r, (int)i, 0));
        snprintf(s->signed_at, sizeof s->signed_at, "%s", PQgetvalue(r, (int)i, 3));
        s->ok_sig = khc_unhex(hh, strlen(hh), s->hash, 32) == 0 &&
                    khv_sig_check(w, s, PQgetvalue(r, (int)i, 2));
        khv_tst_check(w, s, PQgetvalue(r, (int)i, 2), PQgetvalue(r, (int)i, 4));
    }
    PQclear(r);
    return 0;
}

/* The slow walk's row: the canonical text made by the database. */
static void verify_row(PGresult *r, void *arg)
{
    khv_walker *w = arg;
    uint8_t rprev[32], rhash[32], h[32];
    const char *ph = PQgetvalue(r, 0, 1), *hh = PQgetvalue(r, 0, 2), *canon = PQgetvalue(r, 0, 3);
    if (PQgetisnull(r, 0, 0) || khc_unhex(ph, strlen(ph), rprev, 32) != 0 ||
        khc_unhex(hh, strlen(hh), rhash, 32) != 0) {
        khv_walk_unchained(w, PQgetvalue(r, 0, 4));
        return;
    }
    bool ok = khc_sha256(rprev, 32, (const uint8_t *)canon, strlen(canon), h) == 0 &&
              khc_ct_equal(h, rhash, 32);
    khv_walk_row(w, atoll(PQgetvalue(r, 0, 0)), rprev, rhash, ok, PQgetvalue(r, 0, 4));
}

/* The fast walk: a binary COPY of the rows' columns, the canonical texts
 * made here (khcanon.c) and hashed on every core (khverify.c). */
typedef struct {
    khv_walker *w;
    bool unreadable;
} copy_walk;

_Static_assert(sizeof(((khv_row *)0)->id) == sizeof(((khcanon_row *)0)->id), "row ids");

static const char *decode_copy(const void *ctx, const uint8_t *rec, size_t len, khv_row *row,
                               khv_text *text, size_t *clen)
{
    khcanon_row cr;
    khcanon_status st = khcanon_decode(ctx, rec, len, &cr, text);
    memcpy(row->id, cr.id, sizeof row->id);
    if (st == KHCANON_BAD) {
        row->kind = KHV_UNREADABLE;
        return NULL;
    }
    if (!cr.has_seq || cr.prev_len != 32 || cr.hash_len != 32) {
        row->kind = KHV_UNCHAINED;
        return NULL;
    }
    row->kind = KHV_CHAINED;
    row->seq = cr.seq;
    memcpy(row->prev, cr.prev, 32);
    memcpy(row->hash, cr.hash, 32);
    row->unsure = st != KHCANON_OK; /* the database's text decides (recheck) */
    *clen = text->len;
    return text->p;
}

static void copy_walk_row(void *arg, const khv_row *row)
{
    copy_walk *cw = arg;
    if (row->kind == KHV_UNREADABLE)
        cw->unreadable = true;
    else if (row->kind == KHV_UNCHAINED)
        khv_walk_unchained(cw->w, row->id);
    else
        khv_walk_row(cw->w, row->seq, row->prev, row->hash, row->content_ok, row->id);
}

/* Walks the rows of [from, to] (to 0: no end) by a binary COPY. 0, or 2 if
 * the database failed or sent what is not this chain's COPY. */
static int copy_rows(PGconn *conn, const char *chain, long long from, long long to, khv_walker *w)
{
    const khcanon_chain *c = khcanon_find(chain);
    char sql[800];
    copy_walk cw = {w, false};
    int rc = 0, n;
    bool first = true, ended = false;
    char *buf;
    if (c == NULL || khcanon_copy_sql(c, from, to > 0 ? to : (long long)9e18, sql, sizeof sql) < 0)
        return 2;
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COPY_OUT) {
        fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
        PQclear(r);
        return 2;
    }
    PQclear(r);
    khv_pipe *p = khv_pipe_new(decode_copy, c, copy_walk_row, &cw);
    if (p == NULL)
        rc = 2;
    while ((n = PQgetCopyData(conn, &buf, 0)) > 0) {
        const uint8_t *d = (const uint8_t *)buf;
        size_t len = (size_t)n;
        if (first) {
            /* the stream's header comes with the first row */
            long h = khcanon_header_len(d, len);
            first = false;
            if (h <= 0)
                cw.unreadable = true;
            else
                d += h, len -= (size_t)h;
        }
        if (len == 2 && d[0] == 0xff && d[1] == 0xff)
            ended = true; /* the trailer: a field count of -1 */
        else if (len > 0 && rc == 0 && !cw.unreadable && !ended && khv_pipe_put(p, d, len, 0) != 0)
            rc = 2;
        PQfreemem(buf);
    }
    if (n == -2)
        rc = 2;
    while ((r = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = 2;
        PQclear(r);
    }
    if (p != NULL && khv_pipe_drain(p) != 0)
        rc = 2;
    khv_pipe_free(p);
    if (rc == 2 || cw.unreadable || !ended) {
        fprintf(stderr, "khctl: cannot read the chain %s: %s", chain,
                rc == 2 ? PQerrorMessage(conn) : "the database sent rows khctl cannot read\n");
        return 2;
    }
    /* the rows without a seq, after the others, as the slow walk reports them */
    if (from == 1 && to == 0 && !w->broken) {
        char q[200];
        snprintf(q, sizeof q, "SELECT id FROM %s WHERE seq IS NULL ORDER BY id LIMIT 1", chain);
        r = read_rows(conn, "the chain", q, 0, NULL);
        if (r == NULL)
            return 2;
        if (PQntuples(r) == 1)
            khv_walk_unchained(w, PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return 0;
}

/* Whether the database's own canonical text of the row the fast walk
 * called altered matches its hash after all: 1 yes (the fast text was
 * wrong or unsure), 0 no (altered), 2 the database failed. */
static int database_agrees(PGconn *conn, const char *chain, long long seq, const char *id)
{
    char q[400], s[24];
    snprintf(s, sizeof s, "%lld", seq);
    snprintf(q, sizeof q,
             "SELECT coalesce(bool_and(hash = sha256(prev_hash || "
             "convert_to(chain_canonical_%s(t), 'UTF8'))), false) "
             "FROM %s t WHERE seq = $1::bigint AND id::text = $2",
             chain, chain);
    const char *p[2] = {s, id};
    PGresult *r = read_rows(conn, "the chain", q, 2, p);
    if (r == NULL)
        return 2;
    int rc = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return rc;
}

/* Verifies one chain in the open transaction: the whole chain (anchored at
 * its start, checked against its head row) or the range [from, to]. fast:
 * the canonical texts made by khctl (falling back to the slow walk if the
 * database disagrees), else made by the database. */
static int verify_chain(PGconn *conn, const char *tenant, const char *chain, X509 *cert,
                        long long from, long long to, bool fast)
{
    khv_walker w;
    khv_head head = {0};
    int rc = 2;
    khv_walker_init(&w, tenant, chain, cert);
    w.tsa = tsa_store;
    if (from > 1) {
        w.anchored = false;
    } else {
        long long start, retention;
        uint8_t anchor[32];
        int s = chain_start(conn, chain, &start, anchor, &retention);
        if (s == 2)
            return 2;
        if (s == 1) {
            printf("khctl: tenant %s chain %s: BROKEN at the latest retention record: its "
                   "first_seq or anchor is unreadable\n",
                   tenant, chain);
            return 1;
        }
        khv_walker_anchor(&w, start, anchor, retention);
        if (to == 0 && chain_head_row(conn, chain, &head) != 0)
            return 2;
    }
    if (load_signatures(conn, &w, from, to) != 0)
        goto out;
    if (khv_bad_signature(&w)) {
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", tenant, chain, w.why);
        rc = 1;
        goto out;
    }
    if (!fast) {
        if (each_row(conn, chain, from, to, verify_row, &w) != 0)
            goto out;
    } else {
        if (copy_rows(conn, chain, from, to, &w) != 0)
            goto out;
        if (w.altered >= 0) {
            int a = database_agrees(conn, chain, w.altered, w.altered_id);
            if (a == 2)
                goto out;
            if (a == 1) {
                fprintf(stderr,
                        "khctl: note: chain %s: khctl's canonical text of seq %lld differs from "
                        "the database's; this chain is verified with the database's (slower)\n",
                        chain, w.altered);
                free(w.sigs);
                return verify_chain(conn, tenant, chain, cert, from, to, false);
            }
        }
    }
    rc = khv_walk_end(&w, to, head.known ? &head : NULL);
out:
    free(w.sigs);
    return rc;
}

/* Verifies one chain (chain != NULL) or all of them, in one snapshot.
 * Returns 1 if any is broken, else 2 if any could not be read, else 0. */
static int verify_db(const char *db, const char *tenant, const char *chain, X509 *cert,
                     long long from, long long to)
{
    PGconn *conn = open_tenant(db, tenant, true);
    if (conn == NULL)
        return 2;
    bool any_broken = false, any_error = false;
    for (size_t i = 0; i < NCHAINS; i++) {
        if (chain != NULL && strcmp(chain, chains[i]) != 0)
            continue;
        int rc = verify_chain(conn, tenant, chains[i], cert, from, to, true);
        any_broken |= rc == 1;
        any_error |= rc == 2;
    }
    PQfinish(conn);
    return any_broken ? 1 : any_error ? 2 : 0;
}

/* ------------------------------------------------------------- export */

/* Writes s as a JSON string. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* A row as a JSON line; a row without chain columns gets "seq":null. */
static void export_row(PGresult *r, void *arg)
{
    (void)arg;
    if (PQgetisnull(r, 0, 0)) {
        printf("{\"seq\":null,\"id\":%s}\n", PQgetvalue(r, 0, 4));
        return;
    }
    const char *canon = PQgetvalue(r, 0, 3);
    size_t n = strlen(canon);
    printf("{\"seq\":%s,\"prev_hash\":\"%s\",\"hash\":\"%s\",\"canonical\":", PQgetvalue(r, 0, 0),
           PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    /* the text as it is: a jsonb object's text is JSON on one line (jsonb
     * escapes every control character); anything else as a string */
    if (n >= 2 && canon[0] == '{' && canon[n - 1] == '}' && memchr(canon, '\n', n) == NULL)
        fwrite(canon, 1, n, stdout);
    else
        json_str(stdout, canon);
    printf("}\n");
}

/* One chain's section: header (with the chain's start when the range
 * begins at the start), signed heads, rows. */
static int export_chain(PGconn *conn, const char *tenant, const char *chain, long long from,
                        long long to)
{
    PGresult *r;
    printf("{\"export\":\"kakehashi-chain\",\"version\":3,\"tenant\":\"%s\",\"chain\":\"%s\","
           "\"from\":%lld,\"to\":%lld",
           tenant, chain, from, to);
    if (from <= 1) {
        long long start, retention;
        uint8_t anchor[32];
        char hex[65];
        if (chain_start(conn, chain, &start, anchor, &retention) != 0)
            return 2;
        khc_hex(anchor, 32, hex);
        printf(",\"start_seq\":%lld,\"start_anchor\":\"%s\",\"start_retention\":%lld", start, hex,
               retention);
    }
    printf("}\n");
    r = signatures(conn, chain, from, to);
    if (r == NULL)
        return 2;
    for (int i = 0; i < PQntuples(r); i++) {
        printf("{\"signed_head\":{\"seq\":%s,\"hash\":\"%s\",\"signature\":\"%s\","
               "\"signed_at\":\"%s\"",
               PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
        /* its RFC 3161 token (DER, hex) over the signature's bytes, if any */
        if (PQgetvalue(r, i, 4)[0] != '\0')
            printf(",\"tst_time\":\"%s\",\"tst\":\"%s\"", PQgetvalue(r, i, 5), PQgetvalue(r, i, 4));
        printf("}}\n");
    }
    PQclear(r);
    return each_row(conn, chain, from, to, export_row, NULL);
}

static int export_db(const char *db, const char *tenant, const char *chain, long long from,
                     long long to)
{
    PGconn *conn = open_tenant(db, tenant, true);
    if (conn == NULL)
        return 2;
    int rc = 0;
    for (size_t i = 0; i < NCHAINS && rc == 0; i++)
        if (chain == NULL || strcmp(chain, chains[i]) == 0)
            rc = export_chain(conn, tenant, chains[i], from, to);
    PQfinish(conn);
    if (fflush(stdout) != 0)
        rc = 2;
    return rc;
}

/* ------------------------------------------------ verifying an export */

/* One section of an export being verified. */
typedef struct {
    khv_walker w;
    char tenant[16], chain[40];
    long long to;
    bool open, sigs_checked, failed;
    long long unreadable; /* the line of an unreadable row, or 0 */
} section;

/* A row of the open section, in order (the pipeline's walk). */
static void section_row(void *arg, const khv_row *row)
{
    section *s = arg;
    if (s->unreadable != 0)
        return;
    if (row->kind == KHV_UNREADABLE)
        s->unreadable = row->tag;
    else if (s->failed)
        return;
    else if (row->kind == KHV_UNCHAINED)
        khv_walk_unchained(&s->w, row->id);
    else
        khv_walk_row(&s->w, row->seq, row->prev, row->hash, row->content_ok, "-");
}

/* Ends the open section (its rows all walked): its verdict into *broken_any. */
static void section_end(section *s, bool *broken_any)
{
    if (!s->open || s->unreadable != 0)
        return;
    if (!s->failed && !s->sigs_checked && khv_bad_signature(&s->w))
        s->failed = true;
    if (s->failed)
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", s->tenant, s->chain, s->w.why);
    else if (khv_walk_end(&s->w, s->to, NULL) != 0)
        s->failed = true;
    *broken_any |= s->failed;
    free(s->w.sigs);
    s->w.sigs = NULL;
    s->open = false;
}

/* A header line: a new section. Returns false if it is not one of ours. */
static bool section_begin(section *s, const char *line, X509 *cert)
{
    char num[32], hex[80], ret[32];
    if (strstr(line, "\"export\":\"kakehashi-chain\"") == NULL ||
        !khv_json_field(line, "tenant", s->tenant, sizeof s->tenant) ||
        !khv_json_field(line, "chain", s->chain, sizeof s->chain) || !kh_id_org(s->tenant) ||
        !chain_known(s->chain))
        return false;
    khv_walker_init(&s->w, s->tenant, s->chain, cert);
    s->w.tsa = tsa_store;
    s->to = 0;
    if (khv_json_field(line, "to", num, sizeof num) &&
        !khv_parse_ll(num, 0, (long long)9e18, &s->to))
        return false;
    if (khv_json_field(line, "start_seq", num, sizeof num)) {
        long long start, retention = 0;
        uint8_t anchor[32];
        if (!khv_parse_ll(num, 1, (long long)9e18, &start) ||
            !khv_json_field(line, "start_anchor", hex, sizeof hex) ||
            khc_unhex(hex, strlen(hex), anchor, 32) != 0 ||
            (khv_json_field(line, "start_retention", ret, sizeof ret) &&
             !khv_parse_ll(ret, 0, (long long)9e18, &retention)))
            return false;
        khv_walker_anchor(&s->w, start, anchor, retention);
    } else {
        s->w.anchored = false; /* a range, or an export of version 1 */
    }
    s->open = true;
    s->sigs_checked = s->failed = false;
    return true;
}

/* The lines of an export: mapped when it is a regular file (read without a
 * copy), else read with getline (a pipe). */
typedef struct {
    FILE *f;
    const char *map;
    size_t size, pos;
    char *buf; /* getline's line, or a copy made by lines_cstr */
    size_t cap;
} lines;

static bool lines_open(lines *l, const char *path)
{
    struct stat st;
    memset(l, 0, sizeof l[0]);
    if ((l->f = fopen(path, "r")) == NULL)
        return false;
    if (fstat(fileno(l->f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fileno(l->f), 0);
        if (m != MAP_FAILED) {
            l->map = m;
            l->size = (size_t)st.st_size;
            madvise(m, l->size, MADV_SEQUENTIAL);
        }
    }
    return true;
}

/* The next line without its newline (not NUL-terminated): its length, or
 * -1 at the end of the file. */
static ssize_t lines_next(lines *l, const char **line)
{
    if (l->map == NULL) {
        ssize_t n = getline(&l->buf, &l->cap, l->f);
        if (n <= 0)
            return -1;
        if (l->buf[n - 1] == '\n')
            l->buf[--n] = '\0';
        *line = l->buf;
        return n;
    }
    if (l->pos >= l->size)
        return -1;
    const char *start = l->map + l->pos;
    const char *nl = memchr(start, '\n', l->size - l->pos);
    size_t n = nl != NULL ? (size_t)(nl - start) : l->size - l->pos;
    l->pos += n + (nl != NULL);
    *line = start;
    return (ssize_t)n;
}

/* The line as a C string: a copy, cut at a NUL byte inside it. */
static const char *lines_cstr(lines *l, const char *line, size_t n)
{
    if (line == l->buf)
        return line;
    if (n + 1 > l->cap) {
        char *b = realloc(l->buf, n + 1);
        if (b == NULL)
            return NULL;
        l->buf = b;
        l->cap = n + 1;
    }
    memcpy(l->buf, line, n);
    l->buf[n] = '\0';
    return l->buf;
}

static void lines_close(lines *l)
{
    if (l->map != NULL)
        munmap((void *)l->map, l->size);
    if (l->f != NULL)
        fclose(l->f);
    free(l->buf);
}

#define STARTS(line, n, lit) ((n) >= sizeof(lit) - 1 && memcmp((line), (lit), sizeof(lit) - 1) == 0)

/* Rows are hashed in a pipeline; a section's rows are all walked before it
 * ends. A row that cannot be read stops the verification (exit 2). */
static int verify_export(X509 *cert, const char *path)
{
    lines in;
    if (!lines_open(&in, path)) {
        fprintf(stderr, "khctl: cannot open %s\n", path);
        return 2;
    }
    const char *raw, *line;
    char num[32], h1[80], sig[300];
    char *tst = malloc(2 * KHTSP_MAX_REPLY + 1);
    section s;
    long long lineno = 0;
    int rc = 2;
    bool broken_any = false, any = false;
    ssize_t len;
    memset(&s, 0, sizeof s);
    khv_pipe *p = tst ? khv_pipe_new(khv_decode_export_row, NULL, section_row, &s) : NULL;
    if (p == NULL)
        goto out;
    while ((len = lines_next(&in, &raw)) >= 0) {
        lineno++;
        if (s.unreadable != 0)
            break;
        if (STARTS(raw, (size_t)len, "{\"export\":")) {
            if (khv_pipe_drain(p) != 0 || (line = lines_cstr(&in, raw, (size_t)len)) == NULL)
                goto out;
            section_end(&s, &broken_any);
            if (s.unreadable != 0)
                break;
            if (!section_begin(&s, line, cert)) {
                fprintf(stderr, "khctl: %s:%lld: not a khctl export header\n", path, lineno);
                goto out;
            }
            any = true;
        } else if (!s.open) {
            fprintf(stderr, "khctl: %s is not a khctl export\n", path);
            goto out;
        } else if (STARTS(raw, (size_t)len, "{\"signed_head\":")) {
            khv_walker *w = &s.w;
            /* an export lists a section's signed heads before its rows; one
             * after them would escape the check of every signature and token */
            if (s.sigs_checked) {
                fprintf(stderr, "khctl: %s:%lld: a signed head after the section's rows\n", path,
                        lineno);
                goto out;
            }
            khv_sig *ns = realloc(w->sigs, (w->nsigs + 1) * sizeof *ns);
            if (ns == NULL || (line = lines_cstr(&in, raw, (size_t)len)) == NULL)
                goto out;
            w->sigs = ns;
            khv_sig *sr = &w->sigs[w->nsigs++];
            memset(sr, 0, sizeof *sr);
            if (!khv_json_field(line, "seq", num, sizeof num) ||
                !khv_json_field(line, "hash", h1, sizeof h1) ||
                !khv_json_field(line, "signature", sig, sizeof sig) ||
                !khv_parse_ll(num, 0, (long long)9e18, &sr->seq) ||
                khc_unhex(h1, strlen(h1), sr->hash, 32) != 0) {
                fprintf(stderr, "khctl: %s:%lld: unreadable signed head\n", path, lineno);
                goto out;
            }
            khv_json_field(line, "signed_at", sr->signed_at, sizeof sr->signed_at);
            sr->ok_sig = khv_sig_check(w, sr, sig);
            tst[0] = '\0';
            if (strstr(line, "\"tst\":") != NULL &&
                !khv_json_field(line, "tst", tst, 2 * KHTSP_MAX_REPLY + 1)) {
                fprintf(stderr, "khctl: %s:%lld: unreadable time-stamp token\n", path, lineno);
                goto out;
            }
            khv_tst_check(w, sr, sig, tst);
        } else {
            if (!s.sigs_checked) {
                s.sigs_checked = true;
                s.failed = khv_bad_signature(&s.w);
            }
            /* copied into the batch (and NUL-terminated) by the pipeline */
            if (khv_pipe_put(p, raw, (size_t)len, lineno) != 0)
                goto out;
        }
    }
    if (khv_pipe_drain(p) != 0)
        goto out;
    section_end(&s, &broken_any);
    if (s.unreadable != 0) {
        fprintf(stderr, "khctl: %s:%lld: unreadable row\n", path, s.unreadable);
        goto out;
    }
    if (!any) {
        fprintf(stderr, "khctl: %s is empty\n", path);
        goto out;
    }
    rc = broken_any ? 1 : 0;
out:
    khv_pipe_free(p);
    free(tst);
    free(s.w.sigs);
    lines_close(&in);
    return rc;
}

/* ----------------------------------------------------------- retention */

/* Verifies every chain, then runs record_retain(years, dry_run) in one
 * transaction and prints what it removed (or would) and what it kept. */
static int retain_db(const char *db, const char *tenant, X509 *cert, long long years, bool dry)
{
    int rc = verify_db(db, tenant, NULL, cert, 1, 0);
    if (rc != 0) {
        printf("khctl: tenant %s: retention refused: %s; nothing removed\n", tenant,
               rc == 1 ? "a chain does not verify" : "the chains could not be verified");
        return rc;
    }
    PGconn *conn = open_tenant(db, tenant, false);
    if (conn == NULL)
        return 2;
    char y[16];
    snprintf(y, sizeof y, "%lld", years);
    const char *p[2] = {y, dry ? "true" : "false"};
    /* retention waits for the record tables' appends to end; if a long
     * transaction holds them, give up rather than stall every append */
    PGresult *r = PQexec(conn, "SET LOCAL lock_timeout = '10s'");
    PQclear(r);
    r = PQexecParams(conn,
                     "SELECT chain, partition_name, month, row_count, coalesce(first_seq, 0), "
                     "coalesce(last_seq, 0), action FROM record_retain($1::integer, $2::boolean)",
                     2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "khctl: tenant %s: retention failed, nothing removed: %s", tenant,
                PQerrorMessage(conn));
        PQclear(r);
        PQfinish(conn);
        return 2;
    }
    long long parts = 0, rows = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *action = PQgetvalue(r, i, 6);
        bool gone = strcmp(action, "removed") == 0 || strcmp(action, "would be removed") == 0;
        long long n = atoll(PQgetvalue(r, i, 3));
        char seqs[64] = "";
        if (n > 0)
            snprintf(seqs, sizeof seqs, ", seq %s-%s", PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
        printf("khctl: tenant %s chain %s: %s %s (%s, %lld row(s)%s)%s%s\n", tenant,
               PQgetvalue(r, i, 0), gone ? (dry ? "would remove" : "removed") : "kept",
               PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), n, seqs, gone ? "" : ": ",
               gone ? "" : action + (strncmp(action, "kept: ", 6) == 0 ? 6 : 0));
        if (gone) {
            parts++;
            rows += n;
        }
    }
    PQclear(r);
    r = PQexec(conn, "COMMIT");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(conn);
    if (!ok) {
        fprintf(stderr, "khctl: tenant %s: retention not committed, nothing removed\n", tenant);
        return 2;
    }
    if (parts == 0)
        printf("khctl: tenant %s: nothing older than %lld years to remove\n", tenant, years);
    else if (dry)
        printf("khctl: tenant %s: would remove %lld partition(s), %lld row(s) older than %lld "
               "years; nothing changed (dry run)\n",
               tenant, parts, rows, years);
    else
        printf("khctl: tenant %s: removed %lld partition(s), %lld row(s) older than %lld years; "
               "recorded in audit_log (action record_retention)\n",
               tenant, parts, rows, years);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},     {"tenant", required_argument, NULL, 't'},
        {"cert", required_argument, NULL, 'c'},   {"chain", required_argument, NULL, 'n'},
        {"from", required_argument, NULL, 'f'},   {"to", required_argument, NULL, 'T'},
        {"export", required_argument, NULL, 'e'}, {"years", required_argument, NULL, 'y'},
        {"dry-run", no_argument, NULL, 'D'},      {"tsa-ca", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *db = NULL, *tenant = NULL, *certf = NULL, *chain = NULL, *exportf = NULL;
    const char *tsaf = NULL;
    long long from = 1, to = 0, years = 7;
    bool dry = false, ranged = false, bad = false;
    int c;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    /* the operators' commands (khctl_admin.c) */
    if (argc >= 2 && strcmp(argv[1], "admin") == 0)
        return khctl_admin_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "operator-add") == 0)
        return khctl_operator_add_main(argc - 1, argv + 1);
    if (argc < 2 || (strcmp(argv[1], "verify") != 0 && strcmp(argv[1], "export") != 0 &&
                     strcmp(argv[1], "retain") != 0)) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 't':
            tenant = optarg;
            break;
        case 'c':
            certf = optarg;
            break;
        case 'n':
            chain = optarg;
            bad |= !chain_known(chain);
            break;
        case 'f':
            bad |= !khv_parse_ll(optarg, 1, (long long)9e18, &from);
            ranged = true;
            break;
        case 'T':
            bad |= !khv_parse_ll(optarg, 1, (long long)9e18, &to);
            ranged = true;
            break;
        case 'e':
            exportf = optarg;
            break;
        case 'y':
            bad |= !khv_parse_ll(optarg, 1, 100, &years);
            break;
        case 'D':
            dry = true;
            break;
        case 'S':
            tsaf = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    bool is_export = strcmp(cmd, "export") == 0, is_retain = strcmp(cmd, "retain") == 0;
    bool need_db = !(strcmp(cmd, "verify") == 0 && exportf != NULL);
    if (optind != argc || bad || (ranged && chain == NULL) || (to > 0 && to < from) ||
        (need_db && (!db || !tenant || !kh_id_org(tenant))) ||
        (!need_db && (db || tenant || chain || ranged)) || (!is_export && !certf) ||
        (is_export && (certf || exportf || tsaf)) || (is_retain && (exportf || chain || ranged)) ||
        (!is_retain && (dry || years != 7))) {
        usage(stderr);
        return 2;
    }
    if (is_export)
        return export_db(db, tenant, chain, from, to);
    char err[256];
    X509 *cert = khc_load_cert(certf, err, sizeof err);
    if (cert == NULL) {
        fprintf(stderr, "khctl: %s\n", err);
        return 2;
    }
    if (tsaf != NULL && (tsa_store = khc_store_from_file(tsaf, err, sizeof err)) == NULL) {
        fprintf(stderr, "khctl: --tsa-ca %s: %s\n", tsaf, err);
        khc_cert_free(cert);
        return 2;
    }
    int rc;
    if (is_retain)
        rc = retain_db(db, tenant, cert, years, dry);
    else if (exportf != NULL)
        rc = verify_export(cert, exportf);
    else
        rc = verify_db(db, tenant, chain, cert, from, to);
    khc_cert_free(cert);
    khc_store_free(tsa_store);
    return rc;
}
