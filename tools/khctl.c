/* khctl: the operators' and auditors' command line. For now: verify a
 * tenant's hash-chained records (sql/tenant/004_chain.sql).
 *
 *   khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME]
 *
 * Walks the chain in order in constant memory, recomputing every hash, and
 * checks every signed head against the tenant's signing certificate. It
 * names the first broken link: a missing row (deleted), a row that does not
 * follow the one before it (inserted or reordered), a row whose content no
 * longer matches its hash (altered), or a signed head the rows no longer
 * reach or match (truncated, rewritten). Exit 0 intact, 1 broken, 2 usage or
 * access problem. */
#include "idconv.h"
#include "khcrypto.h"

#include <getopt.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long long seq;
    uint8_t hash[32];
    char signed_at[40];
    bool ok_sig; /* signature verifies over (tenant, chain, seq, hash) */
} sig_row;

static void usage(FILE *f)
{
    fprintf(f, "usage: khctl verify --db CONNINFO --tenant ORG --cert SIGN.crt [--chain NAME]\n"
               "  --db CONNINFO  libpq connection string (a role that may read the tenant)\n"
               "  --tenant ORG   the tenant's organisation code\n"
               "  --cert FILE    the tenant's signing certificate (public part only)\n"
               "  --chain NAME   the chained table (default provision_record)\n"
               "Exit status: 0 the chain is intact, 1 it is broken (the first broken link is\n"
               "named), 2 usage or access problem.\n");
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
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

static bool chain_name_ok(const char *s)
{
    return strcmp(s, "provision_record") == 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},   {"tenant", required_argument, NULL, 't'},
        {"cert", required_argument, NULL, 'c'}, {"chain", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    const char *db = NULL, *tenant = NULL, *certf = NULL, *chain = "provision_record";
    int c;
    if (argc < 2 || strcmp(argv[1], "verify") != 0) {
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
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
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!db || !tenant || !certf || optind != argc || !idconv_org_code_valid(tenant) ||
        !chain_name_ok(chain)) {
        usage(stderr);
        return 2;
    }
    char err[256], lower[16], sql[512];
    X509 *cert = khc_load_cert(certf, err, sizeof err);
    if (cert == NULL) {
        fprintf(stderr, "khctl: %s\n", err);
        return 2;
    }
    for (size_t i = 0; i <= strlen(tenant); i++)
        lower[i] = (char)(tenant[i] >= 'A' && tenant[i] <= 'Z' ? tenant[i] + 32 : tenant[i]);
    PGconn *conn = PQconnectdb(db);
    int rc = 2;
    sig_row *sigs = NULL;
    size_t nsigs = 0, si = 0;
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "khctl: cannot connect: %s", PQerrorMessage(conn));
        goto out;
    }
    snprintf(sql, sizeof sql, "SET search_path = t_%s; BEGIN ISOLATION LEVEL REPEATABLE READ",
             lower);
    PGresult *r = PQexec(conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "khctl: tenant %s: %s", tenant, PQerrorMessage(conn));
        PQclear(r);
        goto out;
    }
    PQclear(r);

    /* every signed head, checked against the certificate now */
    const char *chainp[1] = {chain};
    r = PQexecParams(conn,
                     "SELECT seq, encode(hash, 'hex'), encode(signature, 'hex'), "
                     "to_char(signed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                     "FROM chain_signature WHERE chain = $1 ORDER BY seq",
                     1, NULL, chainp, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "khctl: tenant %s: cannot read signed heads: %s", tenant,
                PQerrorMessage(conn));
        PQclear(r);
        goto out;
    }
    nsigs = (size_t)PQntuples(r);
    sigs = calloc(nsigs + 1, sizeof *sigs);
    for (size_t i = 0; sigs && i < nsigs; i++) {
        sig_row *s = &sigs[i];
        const char *sighex = PQgetvalue(r, (int)i, 2);
        size_t slen = strlen(sighex) / 2;
        uint8_t *sig = malloc(slen + 1);
        char msg[512];
        s->seq = atoll(PQgetvalue(r, (int)i, 0));
        snprintf(s->signed_at, sizeof s->signed_at, "%s", PQgetvalue(r, (int)i, 3));
        int mlen;
        s->ok_sig = sig && unhex(PQgetvalue(r, (int)i, 1), s->hash, 32) == 0 &&
                    unhex(sighex, sig, slen) == 0 &&
                    (mlen = head_message(tenant, chain, s->seq, s->hash, msg, sizeof msg)) > 0 &&
                    khc_verify(cert, (const uint8_t *)msg, (size_t)mlen, sig, slen) == 0;
        free(sig);
    }
    PQclear(r);
    for (size_t i = 0; i < nsigs; i++)
        if (!sigs[i].ok_sig) {
            printf("khctl: tenant %s chain %s: BROKEN: the signed head at seq %lld does not "
                   "verify with %s (forged or altered signature)\n",
                   tenant, chain, sigs[i].seq, certf);
            rc = 1;
            goto out;
        }

    /* the rows, in order, one at a time */
    snprintf(sql, sizeof sql,
             "SELECT seq, encode(prev_hash, 'hex'), encode(hash, 'hex'), "
             "chain_canonical_%s(t), id FROM %s t ORDER BY seq",
             chain, chain);
    if (PQsendQuery(conn, sql) != 1 || PQsetSingleRowMode(conn) != 1) {
        fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
        goto out;
    }
    uint8_t prev[32] = {0}, computed[32];
    long long expect = 1, rows = 0;
    bool broken = false;
    char why[300] = "";
    while ((r = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !broken) {
            long long seq = atoll(PQgetvalue(r, 0, 0));
            uint8_t rprev[32], rhash[32];
            const char *canon = PQgetvalue(r, 0, 3);
            const char *id = PQgetvalue(r, 0, 4);
            if (PQgetisnull(r, 0, 0) || unhex(PQgetvalue(r, 0, 1), rprev, 32) != 0 ||
                unhex(PQgetvalue(r, 0, 2), rhash, 32) != 0) {
                snprintf(why, sizeof why,
                         "row id %s has no chain columns (inserted around the chain)", id);
                broken = true;
            } else if (seq != expect) {
                snprintf(why, sizeof why,
                         "seq %lld (row id %s) follows seq %lld: %lld row(s) missing (deleted)",
                         seq, id, expect - 1, seq - expect);
                broken = true;
            } else if (!khc_ct_equal(rprev, prev, 32)) {
                snprintf(why, sizeof why,
                         "seq %lld (row id %s) does not follow the row before it (inserted or "
                         "reordered)",
                         seq, id);
                broken = true;
            } else if (khc_sha256(prev, 32, (const uint8_t *)canon, strlen(canon), computed) != 0 ||
                       !khc_ct_equal(computed, rhash, 32)) {
                snprintf(why, sizeof why,
                         "seq %lld (row id %s): its content no longer matches its hash (altered)",
                         seq, id);
                broken = true;
            } else {
                while (si < nsigs && sigs[si].seq < seq)
                    si++; /* a signature for a seq we passed: reported below */
                if (si < nsigs && sigs[si].seq == seq) {
                    if (!khc_ct_equal(sigs[si].hash, computed, 32)) {
                        snprintf(why, sizeof why,
                                 "seq %lld (row id %s): the chain no longer matches the head "
                                 "signed there (rewritten)",
                                 seq, id);
                        broken = true;
                    }
                    si++;
                }
                memcpy(prev, computed, 32);
                expect = seq + 1;
                rows++;
            }
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK) {
            fprintf(stderr, "khctl: cannot read the chain: %s", PQerrorMessage(conn));
            PQclear(r);
            goto out;
        }
        PQclear(r);
    }
    if (!broken && si < nsigs) {
        snprintf(why, sizeof why,
                 "a head was signed at seq %lld but the chain ends at seq %lld: rows deleted at "
                 "the end",
                 sigs[nsigs - 1].seq, expect - 1);
        broken = true;
    }
    if (broken) {
        printf("khctl: tenant %s chain %s: BROKEN at %s\n", tenant, chain, why);
        rc = 1;
        goto out;
    }
    if (nsigs == 0)
        printf("khctl: tenant %s chain %s: %lld rows intact; no signed head yet (the chain "
               "could have been rebuilt by whoever can write the database)\n",
               tenant, chain, rows);
    else
        printf("khctl: tenant %s chain %s: %lld rows intact; signed head at seq %lld (%s) "
               "verifies; %lld row(s) after it not yet signed\n",
               tenant, chain, rows, sigs[nsigs - 1].seq, sigs[nsigs - 1].signed_at,
               rows - sigs[nsigs - 1].seq);
    rc = 0;
out:
    free(sigs);
    PQfinish(conn);
    X509_free(cert);
    return rc;
}
