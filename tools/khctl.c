/* khctl: the operators' and auditors' command line for a tenant's
 * hash-chained records (sql/tenant/004_chain.sql), and (khctl_admin.c) the
 * admin API client and the bootstrap of the first operator.
 *
 *   khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME]
 *   khctl export --db CONNINFO --tenant ORG [--chain NAME] [--from SEQ] [--to SEQ]
 *   khctl verify --export FILE --cert SIGN.crt
 *
 * verify walks a chain in order in constant memory, recomputing every hash,
 * and checks every signed head against the tenant's signing certificate. It
 * names the first broken link: a missing row (deleted), a row that does not
 * follow the one before it (inserted or reordered), a row whose content no
 * longer matches its hash (altered), or a signed head the rows no longer
 * reach or match (truncated, rewritten). export writes a range as JSON lines
 * (a header, the signed heads in the range, then the rows with their
 * canonical text), which verify --export checks with only the public
 * certificate. Exit 0 intact, 1 broken, 2 usage or access problem. */
#include "idconv.h"
#include "khcrypto.h"
#include "khctl_admin.h"

#include <getopt.h>
#include <stdarg.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    uint8_t prev[32];
    long long expect, first, rows;
    bool started, broken;
    char why[320];
} walker;

static void usage(FILE *f)
{
    fprintf(
        f, "usage: khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME]\n"
           "       khctl export --db CONNINFO --tenant ORG [--chain NAME] [--from SEQ] [--to SEQ]\n"
           "       khctl verify --export FILE --cert SIGN.crt\n"
           "  --db CONNINFO  libpq connection string (a role that may read the tenant)\n"
           "  --tenant ORG   the tenant's organisation code\n"
           "  --cert FILE    the tenant's signing certificate (public part only)\n"
           "  --chain NAME   the chained table (default provision_record)\n"
           "  --from, --to   the range of seq to export (default: all)\n"
           "  --export FILE  verify an exported range instead of the database\n"
           "Exit status: 0 the chain is intact, 1 it is broken (the first broken link is\n"
           "named), 2 usage or access problem.\n");
    fprintf(f, "\n");
    khctl_admin_usage(f);
}

static int unhex(const char *s, size_t slen, uint8_t *out, size_t n)
{
    if (slen != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        char two[3] = {s[2 * i], s[2 * i + 1], 0};
        if (sscanf(two, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* The message of gateway/gw_chain.c, rebuilt here. */
static int head_message(const char *tenant, const char *chain, long long seq,
                        const uint8_t hash[32], char *out, size_t outlen)
{
    char hex[65];
    khc_hex(hash, 32, hex);
    int n =
        snprintf(out, outlen, "kakehashi-chain-head\n%s\n%s\n%lld\n%s\n", tenant, chain, seq, hex);
    return n > 0 && (size_t)n < outlen ? n : -1;
}

static bool sig_check(walker *w, sig_row *s, const char *sighex)
{
    size_t slen = strlen(sighex) / 2;
    uint8_t *sig = malloc(slen + 1);
    char msg[512];
    int mlen = head_message(w->tenant, w->chain, s->seq, s->hash, msg, sizeof msg);
    bool ok = sig != NULL && mlen > 0 && unhex(sighex, strlen(sighex), sig, slen) == 0 &&
              khc_verify(w->cert, (const uint8_t *)msg, (size_t)mlen, sig, slen) == 0;
    free(sig);
    return ok;
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

/* One row, in seq order. id names it for people (a row id or "-"). */
static void walk_row(walker *w, long long seq, const uint8_t rprev[32], const uint8_t rhash[32],
                     const char *canon, size_t clen, const char *id)
{
    uint8_t computed[32];
    if (w->broken)
        return;
    if (!w->started) {
        /* an export may start anywhere: the first row's link is taken as given */
        w->started = true;
        w->first = seq;
        if (seq != 1) {
            w->expect = seq;
            memcpy(w->prev, rprev, 32);
        }
        while (w->si < w->nsigs && w->sigs[w->si].seq < seq)
            w->si++;
    }
    if (seq != w->expect) {
        broken(w, "seq %lld (row id %s) follows seq %lld: %lld row(s) missing (deleted)", seq, id,
               w->expect - 1, seq - w->expect);
    } else if (!khc_ct_equal(rprev, w->prev, 32)) {
        broken(w, "seq %lld (row id %s) does not follow the row before it (inserted or reordered)",
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
            w->si++;
        }
        memcpy(w->prev, computed, 32);
        w->expect = seq + 1;
        w->rows++;
    }
}

/* Ends a walk: prints the verdict and returns the exit status. */
static int walk_end(walker *w, long long to)
{
    if (!w->broken && w->si < w->nsigs && (to <= 0 || w->sigs[w->nsigs - 1].seq <= to))
        broken(w,
               "a head was signed at seq %lld but the chain ends at seq %lld: rows deleted at the "
               "end",
               w->sigs[w->nsigs - 1].seq, w->expect - 1);
    if (w->broken) {
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", w->tenant, w->chain, w->why);
        return 1;
    }
    size_t last = w->si; /* signatures passed */
    if (last == 0)
        printf("khctl: tenant %s chain %s: %lld rows intact from seq %lld; no signed head in "
               "range (the rows could have been rebuilt by whoever can write the database)\n",
               w->tenant, w->chain, w->rows, w->first);
    else
        printf("khctl: tenant %s chain %s: %lld rows intact from seq %lld; signed head at seq "
               "%lld (%s) verifies; %lld row(s) after it not yet signed\n",
               w->tenant, w->chain, w->rows, w->first, w->sigs[last - 1].seq,
               w->sigs[last - 1].signed_at, w->expect - 1 - w->sigs[last - 1].seq);
    return 0;
}

static bool bad_signature(walker *w)
{
    for (size_t i = 0; i < w->nsigs; i++)
        if (!w->sigs[i].ok_sig) {
            printf("khctl: tenant %s chain %s: BROKEN: the signed head at seq %lld does not "
                   "verify with the certificate (forged or altered signature)\n",
                   w->tenant, w->chain, w->sigs[i].seq);
            return true;
        }
    return false;
}

/* ------------------------------------------------------------ database */

static PGconn *open_tenant(const char *db, const char *tenant)
{
    char lower[16], sql[160];
    for (size_t i = 0; i <= strlen(tenant); i++)
        lower[i] = (char)(tenant[i] >= 'A' && tenant[i] <= 'Z' ? tenant[i] + 32 : tenant[i]);
    PGconn *conn = PQconnectdb(db);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "khctl: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    snprintf(sql, sizeof sql, "SET search_path = t_%s; BEGIN ISOLATION LEVEL REPEATABLE READ",
             lower);
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

static PGresult *signatures(PGconn *conn, const char *chain, long long from, long long to)
{
    char f[24], t[24];
    snprintf(f, sizeof f, "%lld", from);
    snprintf(t, sizeof t, "%lld", to > 0 ? to : (long long)9e18);
    const char *p[3] = {chain, f, t};
    PGresult *r = PQexecParams(
        conn,
        "SELECT seq, encode(hash, 'hex'), encode(signature, 'hex'), "
        "to_char(signed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
        "FROM chain_signature WHERE chain = $1 AND seq BETWEEN $2::bigint AND $3::bigint "
        "ORDER BY seq",
        3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "khctl: cannot read signed heads: %s", PQerrorMessage(conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* The rows of a range in seq order; for the whole chain (from 1, no end)
 * also rows without a seq at all, last, so that they are reported. */
static bool rows_query(PGconn *conn, const char *chain, long long from, long long to)
{
    char sql[480];
    snprintf(sql, sizeof sql,
             "SELECT seq, encode(prev_hash, 'hex'), encode(hash, 'hex'), chain_canonical_%s(t), "
             "id FROM %s t WHERE seq BETWEEN %lld AND %lld %s ORDER BY seq NULLS LAST",
             chain, chain, from, to > 0 ? to : (long long)9e18,
             from == 1 && to == 0 ? "OR seq IS NULL" : "");
    if (PQsendQuery(conn, sql) != 1 || PQsetSingleRowMode(conn) != 1) {
        fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
        return false;
    }
    return true;
}

static int verify_db(walker *w, const char *db)
{
    PGconn *conn = open_tenant(db, w->tenant);
    if (conn == NULL)
        return 2;
    int rc = 2;
    PGresult *r = signatures(conn, w->chain, 1, 0);
    if (r == NULL)
        goto out;
    w->nsigs = (size_t)PQntuples(r);
    w->sigs = calloc(w->nsigs + 1, sizeof *w->sigs);
    for (size_t i = 0; w->sigs && i < w->nsigs; i++) {
        sig_row *s = &w->sigs[i];
        const char *hh = PQgetvalue(r, (int)i, 1);
        s->seq = atoll(PQgetvalue(r, (int)i, 0));
        snprintf(s->signed_at, sizeof s->signed_at, "%s", PQgetvalue(r, (int)i, 3));
        s->ok_sig =
            unhex(hh, strlen(hh), s->hash, 32) == 0 && sig_check(w, s, PQgetvalue(r, (int)i, 2));
    }
    PQclear(r);
    if (bad_signature(w)) {
        rc = 1;
        goto out;
    }
    if (!rows_query(conn, w->chain, 1, 0))
        goto out;
    while ((r = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            uint8_t rprev[32], rhash[32];
            const char *ph = PQgetvalue(r, 0, 1), *hh = PQgetvalue(r, 0, 2);
            if (PQgetisnull(r, 0, 0) || unhex(ph, strlen(ph), rprev, 32) != 0 ||
                unhex(hh, strlen(hh), rhash, 32) != 0) {
                if (!w->broken)
                    broken(w, "row id %s has no chain columns (inserted around the chain)",
                           PQgetvalue(r, 0, 4));
            } else {
                walk_row(w, atoll(PQgetvalue(r, 0, 0)), rprev, rhash, PQgetvalue(r, 0, 3),
                         strlen(PQgetvalue(r, 0, 3)), PQgetvalue(r, 0, 4));
            }
        } else if (st != PGRES_TUPLES_OK) {
            fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
            PQclear(r);
            goto out;
        }
        PQclear(r);
    }
    rc = walk_end(w, 0);
out:
    PQfinish(conn);
    return rc;
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

static int export_db(const char *db, const char *tenant, const char *chain, long long from,
                     long long to)
{
    PGconn *conn = open_tenant(db, tenant);
    if (conn == NULL)
        return 2;
    int rc = 2;
    printf("{\"export\":\"kakehashi-chain\",\"version\":1,\"tenant\":\"%s\",\"chain\":\"%s\","
           "\"from\":%lld,\"to\":%lld}\n",
           tenant, chain, from, to);
    PGresult *r = signatures(conn, chain, from, to);
    if (r == NULL)
        goto out;
    for (int i = 0; i < PQntuples(r); i++)
        printf("{\"signed_head\":{\"seq\":%s,\"hash\":\"%s\",\"signature\":\"%s\","
               "\"signed_at\":\"%s\"}}\n",
               PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
    PQclear(r);
    if (!rows_query(conn, chain, from, to))
        goto out;
    while ((r = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            printf("{\"seq\":%s,\"prev_hash\":\"%s\",\"hash\":\"%s\",\"canonical\":",
                   PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
            json_str(stdout, PQgetvalue(r, 0, 3));
            printf("}\n");
        } else if (st != PGRES_TUPLES_OK) {
            fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
            PQclear(r);
            goto out;
        }
        PQclear(r);
    }
    rc = fflush(stdout) == 0 ? 0 : 2;
out:
    PQfinish(conn);
    return rc;
}

/* ------------------------------------------------ verifying an export */

/* The raw text after "key": in line (a number, or a string without its
 * quotes, unescaped into out). Only what export_db writes is understood. */
static bool field(const char *line, const char *key, char *out, size_t outlen)
{
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (p == NULL)
        return false;
    p += strlen(pat);
    size_t n = 0;
    if (*p != '"') {
        while (*p && *p != ',' && *p != '}' && n + 1 < outlen)
            out[n++] = *p++;
        out[n] = '\0';
        return n > 0;
    }
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                unsigned v;
                if (sscanf(p + 1, "%4x", &v) != 1)
                    return false;
                c = (char)v;
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

static int verify_export(walker *w, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "khctl: cannot open %s\n", path);
        return 2;
    }
    size_t cap = 1 << 16;
    char *line = malloc(cap), *canon = malloc(cap), tenant[16] = "", chain[40] = "", to[24] = "0";
    char num[32], h1[80], h2[80], sig[300];
    long long lineno = 0;
    int rc = 2;
    ssize_t len;
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
        if (lineno == 1) {
            if (!field(line, "tenant", tenant, sizeof tenant) ||
                !field(line, "chain", chain, sizeof chain) || !idconv_org_code_valid(tenant) ||
                strstr(line, "\"export\":\"kakehashi-chain\"") == NULL) {
                fprintf(stderr, "khctl: %s is not a khctl export\n", path);
                goto out;
            }
            field(line, "to", to, sizeof to);
            w->tenant = strdup(tenant);
            w->chain = strdup(chain);
        } else if (strncmp(line, "{\"signed_head\":", 15) == 0) {
            sig_row *ns = realloc(w->sigs, (w->nsigs + 1) * sizeof *ns);
            if (ns == NULL)
                goto out;
            w->sigs = ns;
            sig_row *s = &w->sigs[w->nsigs++];
            memset(s, 0, sizeof *s);
            if (!field(line, "seq", num, sizeof num) || !field(line, "hash", h1, sizeof h1) ||
                !field(line, "signature", sig, sizeof sig) ||
                unhex(h1, strlen(h1), s->hash, 32) != 0) {
                fprintf(stderr, "khctl: %s:%lld: unreadable signed head\n", path, lineno);
                goto out;
            }
            s->seq = atoll(num);
            field(line, "signed_at", s->signed_at, sizeof s->signed_at);
            s->ok_sig = sig_check(w, s, sig);
        } else {
            uint8_t rprev[32], rhash[32];
            if (lineno > 1 && w->nsigs > 0 && w->si == 0 && w->rows == 0 && !w->started &&
                bad_signature(w)) {
                rc = 1;
                goto out;
            }
            if (!field(line, "seq", num, sizeof num) || !field(line, "prev_hash", h1, sizeof h1) ||
                !field(line, "hash", h2, sizeof h2) || !field(line, "canonical", canon, cap) ||
                unhex(h1, strlen(h1), rprev, 32) != 0 || unhex(h2, strlen(h2), rhash, 32) != 0) {
                fprintf(stderr, "khctl: %s:%lld: unreadable row\n", path, lineno);
                goto out;
            }
            walk_row(w, atoll(num), rprev, rhash, canon, strlen(canon), "-");
        }
    }
    if (w->tenant == NULL) {
        fprintf(stderr, "khctl: %s is empty\n", path);
        goto out;
    }
    if (bad_signature(w)) {
        rc = 1;
        goto out;
    }
    rc = walk_end(w, atoll(to));
out:
    free(line);
    free(canon);
    fclose(f);
    return rc;
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
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *db = NULL, *tenant = NULL, *certf = NULL, *chain = "provision_record",
               *exportf = NULL;
    long long from = 1, to = 0;
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
    if (argc < 2 || (strcmp(argv[1], "verify") != 0 && strcmp(argv[1], "export") != 0)) {
        usage(stderr);
        return 2;
    }
    bool do_export = strcmp(argv[1], "export") == 0;
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
            break;
        case 'f':
            from = atoll(optarg);
            break;
        case 'T':
            to = atoll(optarg);
            break;
        case 'e':
            exportf = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    bool chain_ok = strcmp(chain, "provision_record") == 0;
    if (optind != argc || !chain_ok || from < 1 || to < 0) {
        usage(stderr);
        return 2;
    }
    if (do_export) {
        if (!db || !tenant || !idconv_org_code_valid(tenant)) {
            usage(stderr);
            return 2;
        }
        return export_db(db, tenant, chain, from, to);
    }
    if (!certf || (exportf == NULL && (!db || !tenant || !idconv_org_code_valid(tenant)))) {
        usage(stderr);
        return 2;
    }
    char err[256];
    walker w;
    memset(&w, 0, sizeof w);
    w.expect = 1;
    w.tenant = tenant;
    w.chain = chain;
    w.cert = khc_load_cert(certf, err, sizeof err);
    if (w.cert == NULL) {
        fprintf(stderr, "khctl: %s\n", err);
        return 2;
    }
    int rc;
    if (exportf != NULL) {
        w.tenant = w.chain = NULL;
        rc = verify_export(&w, exportf);
        free((void *)w.tenant);
        free((void *)w.chain);
    } else {
        rc = verify_db(&w, db);
    }
    free(w.sigs);
    X509_free(w.cert);
    return rc;
}
