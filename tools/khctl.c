/* khctl: the operators' and auditors' command line for a tenant's
 * hash-chained records (sql/tenant/004_chain.sql, 006_chains.sql): the
 * provision records, the access records and the audit log; and
 * (khctl_admin.c) the admin API client and the bootstrap of the first operator.
 *
 *   khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME] [--from SEQ --to SEQ]
 *   khctl export --db CONNINFO --tenant ORG [--chain NAME] [--from SEQ] [--to SEQ]
 *   khctl verify --export FILE --cert SIGN.crt
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
 * heads in the range and the rows with their canonical text, as JSON lines;
 * verify --export checks such a file with only the public certificate.
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

#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The chained tables, in the order they are verified and retained. */
static const char *const chains[] = {"provision_record", "access_record", "audit_log"};
#define NCHAINS (sizeof chains / sizeof chains[0])

typedef struct {
    long long seq;
    uint8_t hash[32];
    char signed_at[40];
    bool ok_sig; /* the signature verifies over (tenant, chain, seq, hash) */
} sig_row;

/* The state of one walk along a chain. */
typedef struct {
    const char *tenant, *chain;
    X509 *cert;
    sig_row *sigs;
    size_t nsigs, si;
    long matched; /* index of the latest signed head the walk matched, or -1 */
    uint8_t prev[32];
    long long expect, first, rows;
    /* Anchored: the chain must start at seq `start` after `anchor` (seq 1 after
     * zeros, or what the retention recorded at audit_log seq `retention`).
     * Unanchored (a range): the first row's link is taken as given. */
    bool anchored;
    long long start, retention;
    uint8_t anchor[32];
    bool started, broken;
    char why[400];
} walker;

/* The chain's head row as the database holds it (whole-chain checks only). */
typedef struct {
    bool known;
    long long seq;
    uint8_t hash[32];
} head_row;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME]\n"
        "                    [--from SEQ --to SEQ]\n"
        "       khctl export --db CONNINFO --tenant ORG [--chain NAME] [--from SEQ] [--to SEQ]\n"
        "       khctl verify --export FILE --cert SIGN.crt\n"
        "       khctl retain --db CONNINFO --tenant ORG --cert SIGN.crt [--years N] [--dry-run]\n"
        "  --db CONNINFO  libpq connection string: a role that may read the tenant's records\n"
        "                 (kh_auditor_<org>); for retain, one that holds kh_retention\n"
        "  --tenant ORG   the tenant's organisation code\n"
        "  --cert FILE    the tenant's signing certificate (public part only)\n"
        "  --chain NAME   provision_record, access_record or audit_log (default: all three)\n"
        "  --from, --to   a range of seq (with --chain; default: the whole chain)\n"
        "  --export FILE  verify an export (every chain in it) instead of the database\n"
        "  --years N      retain: remove the months that ended N years ago or earlier\n"
        "                 (1-100, default 7); every chain is verified first\n"
        "  --dry-run      retain: say what would be removed, remove nothing\n"
        "Exit status: 0 intact (or retained), 1 a chain is broken (its first broken link is\n"
        "named; retain then removes nothing), 2 usage or access problem.\n");
    fprintf(f, "\n");
    khctl_admin_usage(f);
}

/* Strict decimal number in [lo, hi]. */
static bool parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool chain_known(const char *chain)
{
    for (size_t i = 0; i < NCHAINS; i++)
        if (strcmp(chain, chains[i]) == 0)
            return true;
    return false;
}

static bool sig_check(walker *w, sig_row *s, const char *sighex)
{
    size_t slen = strlen(sighex) / 2;
    uint8_t *sig = malloc(slen + 1);
    char msg[512];
    char seq[24], hex[65];
    snprintf(seq, sizeof seq, "%lld", s->seq);
    khc_hex(s->hash, 32, hex);
    int mlen = kh_chain_head_message(w->tenant, w->chain, seq, hex, msg, sizeof msg);
    bool ok = sig != NULL && mlen > 0 && khc_unhex(sighex, strlen(sighex), sig, slen) == 0 &&
              khc_verify(w->cert, (const uint8_t *)msg, (size_t)mlen, sig, slen) == 0;
    free(sig);
    return ok;
}

static void walker_init(walker *w, const char *tenant, const char *chain, X509 *cert)
{
    memset(w, 0, sizeof *w);
    w->tenant = tenant;
    w->chain = chain;
    w->cert = cert;
    w->matched = -1;
    w->anchored = true;
    w->start = w->expect = 1;
}

/* The chain starts at seq start after anchor, as the retention recorded at
 * audit_log seq retention says (0: no retention, seq 1 after zeros). */
static void walker_anchor(walker *w, long long start, const uint8_t anchor[32], long long retention)
{
    w->anchored = true;
    w->start = w->expect = start;
    w->retention = retention;
    memcpy(w->anchor, anchor, 32);
    memcpy(w->prev, anchor, 32);
}

static void broken(walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void broken(walker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof w->why, fmt, ap);
    va_end(ap);
    w->broken = true;
}

/* What the verdict adds about the chain's start: ", where it starts after
 * the retention recorded at audit_log seq N" (phrase 0) or " (after the
 * retention recorded at audit_log seq N)" (phrase 1), or "" without one. */
static const char *after_retention(const walker *w, int phrase, char *buf, size_t n)
{
    if (w->retention <= 0)
        buf[0] = '\0';
    else if (phrase == 0)
        snprintf(buf, n, ", where it starts after the retention recorded at audit_log seq %lld",
                 w->retention);
    else
        snprintf(buf, n, " (after the retention recorded at audit_log seq %lld)", w->retention);
    return buf;
}

/* The signatures are all checked before the rows; a signed head at the seq
 * just before the chain's start must hold its anchor. */
static bool bad_signature(walker *w)
{
    for (size_t i = 0; i < w->nsigs; i++) {
        if (!w->sigs[i].ok_sig) {
            broken(w,
                   "the signed head at seq %lld does not verify with the certificate (forged or "
                   "altered signature)",
                   w->sigs[i].seq);
            return true;
        }
        if (w->anchored && w->start > 1 && w->sigs[i].seq == w->start - 1) {
            if (!khc_ct_equal(w->sigs[i].hash, w->anchor, 32)) {
                broken(w,
                       "the head signed at seq %lld does not match the anchor of the retention "
                       "recorded at audit_log seq %lld (forged retention record)",
                       w->sigs[i].seq, w->retention);
                return true;
            }
            w->matched = (long)i;
        }
    }
    return false;
}

/* The first row of an anchored chain is not the one it must start with. */
static void first_row_broken(walker *w, long long seq, const char *id)
{
    char ar[96];
    after_retention(w, 1, ar, sizeof ar);
    if (seq > w->start)
        broken(w,
               "seq %lld (row id %s) is the first row, but the chain starts at seq %lld%s: "
               "%lld row(s) missing (deleted)",
               seq, id, w->start, ar, seq - w->start);
    else
        broken(w,
               "seq %lld (row id %s) lies before the chain's start at seq %lld%s (inserted, or "
               "a retention record forged)",
               seq, id, w->start, ar);
}

/* One row, in seq order. id names it for people (a row id or "-"). */
static void walk_row(walker *w, long long seq, const uint8_t rprev[32], const uint8_t rhash[32],
                     const char *canon, size_t clen, const char *id)
{
    uint8_t computed[32];
    if (w->broken)
        return;
    if (!w->started) {
        w->started = true;
        w->first = seq;
        if (w->anchored && seq != w->start) {
            first_row_broken(w, seq, id);
            return;
        }
        if (!w->anchored) {
            /* a range may start anywhere: its first row's link is taken as
             * given, except that seq 1 follows 32 zero bytes */
            w->expect = seq;
            if (seq != 1)
                memcpy(w->prev, rprev, 32);
        }
        while (w->si < w->nsigs && w->sigs[w->si].seq < seq)
            w->si++;
    }
    if (seq > w->expect) {
        broken(w, "seq %lld (row id %s) follows seq %lld: %lld row(s) missing (deleted)", seq, id,
               w->expect - 1, seq - w->expect);
    } else if (seq < w->expect) {
        broken(w,
               "seq %lld (row id %s) comes after seq %lld: a second row with that seq, or one "
               "out of place (inserted or reordered)",
               seq, id, w->expect - 1);
    } else if (!khc_ct_equal(rprev, w->prev, 32)) {
        char ar[96];
        if (seq == w->start && w->anchored && w->retention > 0)
            broken(w, "seq %lld (row id %s) does not follow the anchor of the chain's start%s", seq,
                   id, after_retention(w, 1, ar, sizeof ar));
        else
            broken(w,
                   "seq %lld (row id %s) does not follow the row before it (inserted or "
                   "reordered)",
                   seq, id);
    } else if (khc_sha256(w->prev, 32, (const uint8_t *)canon, clen, computed) != 0 ||
               !khc_ct_equal(computed, rhash, 32)) {
        broken(w, "seq %lld (row id %s): its content no longer matches its hash (altered)", seq,
               id);
    } else {
        while (w->si < w->nsigs && w->sigs[w->si].seq < seq)
            w->si++;
        if (w->si < w->nsigs && w->sigs[w->si].seq == seq) {
            if (!khc_ct_equal(w->sigs[w->si].hash, computed, 32))
                broken(w,
                       "seq %lld (row id %s): the chain no longer matches the head signed there "
                       "(rewritten)",
                       seq, id);
            w->matched = (long)w->si;
            w->si++;
        }
        memcpy(w->prev, computed, 32);
        w->expect = seq + 1;
        w->rows++;
    }
}

/* Ends a walk: prints the verdict and returns the exit status. to: the end of
 * the range (0: none); head: the chain's head row, for a whole chain. */
static int walk_end(walker *w, long long to, const head_row *head)
{
    long long last = w->expect - 1;
    char ar[96];
    if (!w->broken && w->nsigs > 0 && w->sigs[w->nsigs - 1].seq > last &&
        (to <= 0 || w->sigs[w->nsigs - 1].seq <= to))
        broken(w,
               "a head was signed at seq %lld but the chain ends at seq %lld: rows deleted at the "
               "end",
               w->sigs[w->nsigs - 1].seq, last);
    if (!w->broken && head != NULL && head->known) {
        if (head->seq > last)
            broken(w,
                   "the chain's head is at seq %lld but the rows end at seq %lld: rows deleted "
                   "at the end",
                   head->seq, last);
        else if (head->seq < last)
            broken(w,
                   "the rows go on to seq %lld, past the chain's head at seq %lld (appended "
                   "around the chain)",
                   last, head->seq);
        else if (!khc_ct_equal(head->hash, w->prev, 32))
            broken(w, "seq %lld, the last row: the chain's head holds another hash (rewritten)",
                   last);
    }
    if (w->broken) {
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", w->tenant, w->chain, w->why);
        return 1;
    }
    after_retention(w, 0, ar, sizeof ar);
    if (w->rows == 0)
        printf("khctl: tenant %s chain %s: no rows%s%s\n", w->tenant, w->chain,
               w->anchored ? "" : " in range", ar);
    else if (w->matched < 0)
        printf("khctl: tenant %s chain %s: %lld rows intact from seq %lld%s; no signed head in "
               "range (the rows could have been rebuilt by whoever can write the database)\n",
               w->tenant, w->chain, w->rows, w->first, ar);
    else
        printf("khctl: tenant %s chain %s: %lld rows intact from seq %lld%s; signed head at seq "
               "%lld (%s) verifies; %lld row(s) after it not yet signed\n",
               w->tenant, w->chain, w->rows, w->first, ar, w->sigs[w->matched].seq,
               w->sigs[w->matched].signed_at, last - w->sigs[w->matched].seq);
    return 0;
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
    return read_rows(
        conn, "the signed heads",
        "SELECT seq, encode(hash, 'hex'), encode(signature, 'hex'), "
        "to_char(signed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
        "FROM chain_signature WHERE chain = $1 AND seq BETWEEN $2::bigint AND $3::bigint "
        "ORDER BY seq",
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
        if (!parse_ll(PQgetvalue(r, 0, 0), 1, (long long)9e18, retention) ||
            !parse_ll(PQgetvalue(r, 0, 1), 1, (long long)9e18, start) ||
            khc_unhex(a, strlen(a), anchor, 32) != 0)
            rc = 1;
    }
    PQclear(r);
    return rc;
}

/* The chain's head row (seq 0 if it has none yet). 0, or 2 if the database failed. */
static int chain_head_row(PGconn *conn, const char *chain, head_row *h)
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
        if (!parse_ll(PQgetvalue(r, 0, 0), 0, (long long)9e18, &h->seq) ||
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
static int load_signatures(PGconn *conn, walker *w, long long from, long long to)
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
        sig_row *s = &w->sigs[i];
        const char *hh = PQgetvalue(r, (int)i, 1);
        s->seq = atoll(PQgetvalue(r, (int)i, 0));
        snprintf(s->signed_at, sizeof s->signed_at, "%s", PQgetvalue(r, (int)i, 3));
        s->ok_sig = khc_unhex(hh, strlen(hh), s->hash, 32) == 0 &&
                    sig_check(w, s, PQgetvalue(r, (int)i, 2));
    }
    PQclear(r);
    return 0;
}

static void verify_row(PGresult *r, void *arg)
{
    walker *w = arg;
    uint8_t rprev[32], rhash[32];
    const char *ph = PQgetvalue(r, 0, 1), *hh = PQgetvalue(r, 0, 2);
    if (PQgetisnull(r, 0, 0) || khc_unhex(ph, strlen(ph), rprev, 32) != 0 ||
        khc_unhex(hh, strlen(hh), rhash, 32) != 0) {
        if (!w->broken)
            broken(w, "row id %s has no chain columns (inserted around the chain)",
                   PQgetvalue(r, 0, 4));
        return;
    }
    walk_row(w, atoll(PQgetvalue(r, 0, 0)), rprev, rhash, PQgetvalue(r, 0, 3),
             strlen(PQgetvalue(r, 0, 3)), PQgetvalue(r, 0, 4));
}

/* Verifies one chain in the open transaction: the whole chain (anchored at
 * its start, checked against its head row) or the range [from, to]. */
static int verify_chain(PGconn *conn, const char *tenant, const char *chain, X509 *cert,
                        long long from, long long to)
{
    walker w;
    head_row head = {0};
    int rc = 2;
    walker_init(&w, tenant, chain, cert);
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
        walker_anchor(&w, start, anchor, retention);
        if (to == 0 && chain_head_row(conn, chain, &head) != 0)
            return 2;
    }
    if (load_signatures(conn, &w, from, to) != 0)
        goto out;
    if (bad_signature(&w)) {
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", tenant, chain, w.why);
        rc = 1;
        goto out;
    }
    if (each_row(conn, chain, from, to, verify_row, &w) != 0)
        goto out;
    rc = walk_end(&w, to, head.known ? &head : NULL);
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
        int rc = verify_chain(conn, tenant, chains[i], cert, from, to);
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
    printf("{\"seq\":%s,\"prev_hash\":\"%s\",\"hash\":\"%s\",\"canonical\":", PQgetvalue(r, 0, 0),
           PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
    json_str(stdout, PQgetvalue(r, 0, 3));
    printf("}\n");
}

/* One chain's section: header (with the chain's start when the range
 * begins at the start), signed heads, rows. */
static int export_chain(PGconn *conn, const char *tenant, const char *chain, long long from,
                        long long to)
{
    PGresult *r;
    printf("{\"export\":\"kakehashi-chain\",\"version\":2,\"tenant\":\"%s\",\"chain\":\"%s\","
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
    for (int i = 0; i < PQntuples(r); i++)
        printf("{\"signed_head\":{\"seq\":%s,\"hash\":\"%s\",\"signature\":\"%s\","
               "\"signed_at\":\"%s\"}}\n",
               PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
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

/* The raw text after "key": in line (a number, or a string without its
 * quotes, unescaped into out). Only what export_db writes is understood. */
static bool field(const char *line, const char *key, char *out, size_t outlen)
{
    char pat[48];
    size_t klen = strlen(key);
    if (klen + 4 > sizeof pat)
        return false;
    pat[0] = '"';
    memcpy(pat + 1, key, klen);
    memcpy(pat + 1 + klen, "\":", 3); /* with its NUL */
    const char *p = strstr(line, pat);
    if (p == NULL)
        return false;
    p += klen + 3;
    size_t n = 0;
    if (*p != '"') {
        while (*p && *p != ',' && *p != '}' && n + 1 < outlen)
            out[n++] = *p++;
        out[n] = '\0';
        return n > 0;
    }
    for (p++; *p && *p != '"'; p++) {
        /* the plain run up to the next quote or escape, copied at once */
        size_t run = strcspn(p, "\"\\");
        if (run > 0) {
            if (n + run >= outlen)
                return false;
            memcpy(out + n, p, run);
            n += run;
            p += run;
            if (*p != '\\')
                break;
        }
        char c = *p;
        if (c == '\\') {
            p++;
            if (*p == '\0')
                return false; /* a line that ends inside an escape */
            if (*p == 'u') {
                /* export_db writes \u00XX for control characters only */
                uint8_t v[2];
                if (strnlen(p + 1, 4) < 4 || khc_unhex(p + 1, 4, v, 2) != 0 || v[0] != 0)
                    return false;
                c = (char)v[1];
                p += 4;
            } else {
                c = *p;
            }
        }
        if (n + 1 >= outlen)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return *p == '"';
}

/* One section of an export being verified. */
typedef struct {
    walker w;
    char tenant[16], chain[40];
    long long to;
    bool open, sigs_checked, failed;
} section;

/* Ends the open section: its verdict into *broken_any. */
static void section_end(section *s, bool *broken_any)
{
    if (!s->open)
        return;
    if (!s->failed && !s->sigs_checked && bad_signature(&s->w))
        s->failed = true;
    if (s->failed)
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", s->tenant, s->chain, s->w.why);
    else if (walk_end(&s->w, s->to, NULL) != 0)
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
        !field(line, "tenant", s->tenant, sizeof s->tenant) ||
        !field(line, "chain", s->chain, sizeof s->chain) || !kh_id_org(s->tenant) ||
        !chain_known(s->chain))
        return false;
    walker_init(&s->w, s->tenant, s->chain, cert);
    s->to = 0;
    if (field(line, "to", num, sizeof num) && !parse_ll(num, 0, (long long)9e18, &s->to))
        return false;
    if (field(line, "start_seq", num, sizeof num)) {
        long long start, retention = 0;
        uint8_t anchor[32];
        if (!parse_ll(num, 1, (long long)9e18, &start) ||
            !field(line, "start_anchor", hex, sizeof hex) ||
            khc_unhex(hex, strlen(hex), anchor, 32) != 0 ||
            (field(line, "start_retention", ret, sizeof ret) &&
             !parse_ll(ret, 0, (long long)9e18, &retention)))
            return false;
        walker_anchor(&s->w, start, anchor, retention);
    } else {
        s->w.anchored = false; /* a range, or an export of version 1 */
    }
    s->open = true;
    s->sigs_checked = s->failed = false;
    return true;
}

static int verify_export(X509 *cert, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "khctl: cannot open %s\n", path);
        return 2;
    }
    size_t cap = 1 << 16;
    char *line = malloc(cap), *canon = malloc(cap);
    char num[32], h1[80], h2[80], sig[300];
    section s;
    long long lineno = 0;
    int rc = 2;
    bool broken_any = false, any = false;
    ssize_t len;
    memset(&s, 0, sizeof s);
    if (line == NULL || canon == NULL)
        goto out;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (cap > 1 << 16) {
            char *nc = realloc(canon, cap);
            if (nc == NULL)
                goto out;
            canon = nc;
        }
        if (strncmp(line, "{\"export\":", 10) == 0) {
            section_end(&s, &broken_any);
            if (!section_begin(&s, line, cert)) {
                fprintf(stderr, "khctl: %s:%lld: not a khctl export header\n", path, lineno);
                goto out;
            }
            any = true;
        } else if (!s.open) {
            fprintf(stderr, "khctl: %s is not a khctl export\n", path);
            goto out;
        } else if (strncmp(line, "{\"signed_head\":", 15) == 0) {
            walker *w = &s.w;
            sig_row *ns = realloc(w->sigs, (w->nsigs + 1) * sizeof *ns);
            if (ns == NULL)
                goto out;
            w->sigs = ns;
            sig_row *sr = &w->sigs[w->nsigs++];
            memset(sr, 0, sizeof *sr);
            if (!field(line, "seq", num, sizeof num) || !field(line, "hash", h1, sizeof h1) ||
                !field(line, "signature", sig, sizeof sig) ||
                !parse_ll(num, 0, (long long)9e18, &sr->seq) ||
                khc_unhex(h1, strlen(h1), sr->hash, 32) != 0) {
                fprintf(stderr, "khctl: %s:%lld: unreadable signed head\n", path, lineno);
                goto out;
            }
            field(line, "signed_at", sr->signed_at, sizeof sr->signed_at);
            sr->ok_sig = sig_check(w, sr, sig);
        } else {
            uint8_t rprev[32], rhash[32];
            long long seq;
            if (!s.sigs_checked) {
                s.sigs_checked = true;
                s.failed = bad_signature(&s.w);
            }
            if (field(line, "seq", num, sizeof num) && strcmp(num, "null") == 0) {
                char id[32] = "?";
                field(line, "id", id, sizeof id);
                if (!s.failed && !s.w.broken)
                    broken(&s.w, "row id %s has no chain columns (inserted around the chain)", id);
                continue;
            }
            if (!field(line, "seq", num, sizeof num) || !field(line, "prev_hash", h1, sizeof h1) ||
                !field(line, "hash", h2, sizeof h2) || !field(line, "canonical", canon, cap) ||
                !parse_ll(num, (long long)-9e18, (long long)9e18, &seq) ||
                khc_unhex(h1, strlen(h1), rprev, 32) != 0 ||
                khc_unhex(h2, strlen(h2), rhash, 32) != 0) {
                fprintf(stderr, "khctl: %s:%lld: unreadable row\n", path, lineno);
                goto out;
            }
            if (!s.failed)
                walk_row(&s.w, seq, rprev, rhash, canon, strlen(canon), "-");
        }
    }
    section_end(&s, &broken_any);
    if (!any) {
        fprintf(stderr, "khctl: %s is empty\n", path);
        goto out;
    }
    rc = broken_any ? 1 : 0;
out:
    free(s.w.sigs);
    free(line);
    free(canon);
    fclose(f);
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
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"cert", required_argument, NULL, 'c'},
                                         {"chain", required_argument, NULL, 'n'},
                                         {"from", required_argument, NULL, 'f'},
                                         {"to", required_argument, NULL, 'T'},
                                         {"export", required_argument, NULL, 'e'},
                                         {"years", required_argument, NULL, 'y'},
                                         {"dry-run", no_argument, NULL, 'D'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *db = NULL, *tenant = NULL, *certf = NULL, *chain = NULL, *exportf = NULL;
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
            bad |= !parse_ll(optarg, 1, (long long)9e18, &from);
            ranged = true;
            break;
        case 'T':
            bad |= !parse_ll(optarg, 1, (long long)9e18, &to);
            ranged = true;
            break;
        case 'e':
            exportf = optarg;
            break;
        case 'y':
            bad |= !parse_ll(optarg, 1, 100, &years);
            break;
        case 'D':
            dry = true;
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
        (is_export && (certf || exportf)) || (is_retain && (exportf || chain || ranged)) ||
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
    int rc;
    if (is_retain)
        rc = retain_db(db, tenant, cert, years, dry);
    else if (exportf != NULL)
        rc = verify_export(cert, exportf);
    else
        rc = verify_db(db, tenant, chain, cert, from, to);
    khc_cert_free(cert);
    return rc;
}
