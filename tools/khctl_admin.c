/* khctl_admin.c: khctl's operator commands.
 *
 *   khctl admin [--admin H:P] [--pki DIR] [--operator NAME] [--password-file F]
 *               [--token-file F] [--json] COMMAND ...
 *   khctl operator-add --db CONNINFO NAME ROLE [--tenant ORG]... --password-file F
 *
 * admin talks to a gateway's admin API over mutual TLS with the operator's
 * certificate (PKI/operator/NAME/tls.{crt,key}), verifying the gateway
 * against PKI/national-ca.crt. Without a token file each command logs in
 * with the password, acts and logs out; "login --token-file F" keeps a
 * session in F (mode 0600) for the commands after it, "logout" ends it.
 * operator-add writes the first operator straight into the database (there
 * is no admin yet to ask), as a role that may (the superuser).
 * Exit status: 0 done, 3 refused (the KH- code is printed), 4 transport or
 * TLS failure, 2 usage or local problem (files, database); operator-add 1
 * if the operator exists already (without --if-absent), diagnose 1 if a
 * check failed. */
#include "khctl_admin.h"

#include "khid.h"
#include "khadmin.h"
#include "khcrypto.h"
#include "khjson.h"
#include "khsync.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void khctl_admin_usage(FILE *f)
{
    fprintf(
        f,
        "usage: khctl admin [OPTIONS] COMMAND [ARGS]      the admin API of a gateway\n"
        "  --admin HOST:PORT       the gateway's admin listener (env KH_ADMIN_ADDR)\n"
        "  --pki DIR               dev PKI: DIR/national-ca.crt verifies the gateway,\n"
        "                          DIR/operator/NAME/tls.{crt,key} is you (env KH_ADMIN_PKI)\n"
        "  --operator NAME         your operator name (env KH_ADMIN_OPERATOR)\n"
        "  --password-file FILE    your password, first line, file mode 0600\n"
        "                          (env KH_ADMIN_PASSWORD_FILE)\n"
        "  --token-file FILE       a session kept by 'login' (env KH_ADMIN_TOKEN_FILE);\n"
        "                          without one every command logs in and out\n"
        "  --cert FILE --key FILE  another client certificate than PKI/operator/NAME\n"
        "  --gateway-name NAME     the gateway's certificate must have CN=NAME\n"
        "  --json                  print the gateway's JSON instead of a table\n"
        "  --timeout-ms N          wait at most N ms (default 30000)\n"
        "commands:\n"
        "  login                   log in (keeps the session in --token-file if given)\n"
        "  logout                  end the session of --token-file and remove the file\n"
        "  whoami                  operator, role, tenants, session\n"
        "  flags list ORG [--kind hold|nondisclosure] [--active] [--limit N]\n"
        "  flags add ORG hold|nondisclosure --reason TEXT [--local-id ID] [--item CODE]\n"
        "            [--procedure CODE] [--from YYYY-MM-DD] [--to YYYY-MM-DD]\n"
        "  flags revoke ORG ID\n"
        "  pending ORG [--state pending|approved|refused|expired|all] [--limit N]\n"
        "          [--expiring SECONDS]   held queries whose deadline is at most that far\n"
        "                          away (about to expire with KH-2011), soonest first\n"
        "  policy ORG              the tenant's answering policy (hold deadline)\n"
        "  policy set ORG --hold-deadline SECONDS   how long a query held from now on waits\n"
        "                          for a responder (1 to 7776000; the default is 14 days)\n"
        "  decide ORG MSG_ID approve|refuse [--items CODE,CODE] [--reason TEXT]\n"
        "                          a responder's decision on a held query (approve with\n"
        "                          --items: only those; the others are withheld)\n"
        "  queries ORG [--handle H] [--state S] [--procedure P] [--provider ORG]\n"
        "          [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--limit N]   (at most 1000\n"
        "                          rows; --handle: the one query of that handle)\n"
        "  audit ORG [--since D] [--until D] [--outcome ok|refused] [--limit N]\n"
        "  usage ORG [--since D] [--until D]   usage counts by day (default: the last 31\n"
        "                          days up to today; at most 366 days) and their total\n"
        "  usage --all [--since D] [--until D] every tenant's total (platform_admin)\n"
        "  metrics                 the Prometheus metrics of your tenants, as text\n"
        "  maintenance [ORG]       maintenance mode: the gateway's rows (platform_admin), or\n"
        "                          the tenant's and the gateway's\n"
        "  maintenance on|off [ORG] [--reason TEXT]   the tenant's (its admins) or, without\n"
        "                          ORG, the gateway's (platform_admin): new work is refused\n"
        "                          (KH-5008), work in flight finishes; on needs --reason\n"
        "  directory               the router's signed directory in use: issued, legal-basis\n"
        "                          version, organisations, last refresh\n"
        "  directory refresh       ask the router now and take a newer directory (verified;\n"
        "                          platform_admin); exit 3 if it cannot be taken\n"
        "  diagnose                the connectivity check (platform_admin): databases and their\n"
        "                          migrations, the router over mutual TLS, its directory and\n"
        "                          clock, every certificate's validity, each tenant's keys;\n"
        "                          exit 1 if a check failed\n"
        "  tenants                 the tenants this gateway hosts, those retired while it\n"
        "                          runs, and the last change of the list (SIGHUP after an\n"
        "                          edit of its tenant lines; platform_admin)\n"
        "  staff ORG [--active|--inactive] [--role CODE] [--staff ID] [--limit N]\n"
        "  staff set ORG STAFF_ID --name TEXT [--active|--inactive]   (new: active)\n"
        "  roles ORG               job roles with the procedures each covers\n"
        "  roles set ORG ROLE --name TEXT --procedures CODE,CODE   (\"\" for none; replaces)\n"
        "  assignments ORG [--staff ID] [--role CODE] [--current true|false] [--limit N]\n"
        "  assign ORG STAFF_ID ROLE [--from YYYY-MM-DD] [--to YYYY-MM-DD]\n"
        "                          the role from --from (default today) until --to (the\n"
        "                          first day it no longer holds); again with the same --from\n"
        "                          and a --to ends it\n"
        "  systems ORG             business systems (ID = their certificate's CN), permissions\n"
        "  systems set ORG SYSTEM_ID --name TEXT --permit OPERATION[:SCOPE]...\n"
        "                          OPERATION query (SCOPE a procedure), register (an item) or\n"
        "                          linkcode; SCOPE default *; replaces the permissions\n"
        "                          (--permit none: the system may do nothing)\n"
        "  export staff|assignments ORG          the CSV (header staff_id,display_name,active\n"
        "                          or staff_id,role_code,valid_from,valid_to) on stdout\n"
        "  import staff|assignments ORG FILE [--check] [--reopen]   all or nothing: a refusal\n"
        "                          (KH-6012) lists every bad line; --check changes nothing;\n"
        "                          --reopen lets lines reactivate staff or reopen ended\n"
        "                          assignments (refused otherwise)\n"
        "  bulk ORG [--state S] [--limit N]   bulk uploads in progress or ended within the\n"
        "                          hour: state, figures, the refusal, report_size\n"
        "  bulk files ORG [--since D] [--until D] [--limit N]   the files applied\n"
        "  bulk report ORG UPLOAD_ID [--offset N]   a rejected upload's report (CSV: line,\n"
        "                          field,code,reason; no values), at most 524288 bytes from\n"
        "                          N (default 0)\n"
        "  operator list\n"
        "  operator add NAME ROLE [--tenant ORG]... --new-password-file FILE\n"
        "  operator disable|enable|unlock NAME\n"
        "  operator password NAME --new-password-file FILE   a reset (forgotten password): ends\n"
        "                          NAME's sessions and lifts a lock\n"
        "  password --new-password-file FILE   your own (the current one: --password-file);\n"
        "                          ends your other sessions\n"
        "  sessions [--of NAME]    open sessions: yours (a platform admin: everyone's)\n"
        "  sessions end SESSION | sessions end --of NAME   end one (its 16-hex ID as listed)\n"
        "                          or all of an operator's (others: only your own)\n"
        "  raw GET|POST PATH [JSON]   one request as is (JSON '-' reads standard input)\n"
        "ROLE: platform_admin, tenant_admin (flags, staff, roles, systems; reads its tenants),\n"
        "responder (held answers), auditor (reads queries, the audit log, the registry, usage\n"
        "and metrics), metrics (Prometheus scrapes: /metrics of its tenants and the gateway's\n"
        "own figures, nothing else).\n"
        "\n"
        "usage: khctl operator-add --db CONNINFO NAME ROLE [--tenant ORG]... --password-file FILE\n"
        "       [--if-absent]\n"
        "  bootstrap: writes an operator straight into the gateway's database (as a role that\n"
        "  may, e.g. the superuser), for the first platform admin. --if-absent: an existing\n"
        "  operator of that name is left as it is (exit 0; without it exit 1).\n"
        "Exit status: 0 done, 3 refused (KH- code printed), 4 transport or TLS failure,\n"
        "2 usage or local problem, 1 a diagnosis with a failed check.\n");
}

/* ---------------------------------------------------------- arguments */

typedef struct {
    const char *name;
    bool has_arg;
    bool repeat; /* collected into a list */
} opt_def;

typedef struct {
    const opt_def *def;
    const char *val;
} opt_val;

typedef struct {
    opt_val opts[96];
    size_t nopts;
    const char *pos[16];
    size_t npos;
} args;

static const opt_def known_opts[] = {{"--admin", true, false},
                                     {"--pki", true, false},
                                     {"--operator", true, false},
                                     {"--password-file", true, false},
                                     {"--token-file", true, false},
                                     {"--cert", true, false},
                                     {"--key", true, false},
                                     {"--gateway-name", true, false},
                                     {"--json", false, false},
                                     {"--timeout-ms", true, false},
                                     {"--kind", true, false},
                                     {"--active", false, false},
                                     {"--limit", true, false},
                                     {"--reason", true, false},
                                     {"--local-id", true, false},
                                     {"--item", true, false},
                                     {"--procedure", true, false},
                                     {"--from", true, false},
                                     {"--to", true, false},
                                     {"--state", true, false},
                                     {"--provider", true, false},
                                     {"--handle", true, false},
                                     {"--since", true, false},
                                     {"--until", true, false},
                                     {"--outcome", true, false},
                                     {"--tenant", true, true},
                                     {"--new-password-file", true, false},
                                     {"--db", true, false},
                                     {"--if-absent", false, false},
                                     {"--items", true, false},
                                     {"--help", false, false},
                                     {"--all", false, false},
                                     {"--name", true, false},
                                     {"--role", true, false},
                                     {"--staff", true, false},
                                     {"--current", true, false},
                                     {"--procedures", true, false},
                                     {"--permit", true, true},
                                     {"--check", false, false},
                                     {"--inactive", false, false},
                                     {"--reopen", false, false},
                                     {"--of", true, false},
                                     {"--expiring", true, false},
                                     {"--hold-deadline", true, false},
                                     {"--offset", true, false},
                                     {NULL, false, false}};

/* Options anywhere among the positional arguments; "--" ends options. */
static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!opts_done && strcmp(s, "--") == 0) {
            opts_done = true;
            continue;
        }
        if (opts_done || strncmp(s, "--", 2) != 0 || s[2] == '\0') {
            if (a->npos >= sizeof a->pos / sizeof a->pos[0]) {
                fprintf(stderr, "khctl: too many arguments\n");
                return -1;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        const opt_def *d = known_opts;
        while (d->name && strcmp(d->name, s) != 0)
            d++;
        if (d->name == NULL) {
            fprintf(stderr, "khctl: unknown option %s\n", s);
            return -1;
        }
        if (d->has_arg && i + 1 >= argc) {
            fprintf(stderr, "khctl: %s needs a value\n", s);
            return -1;
        }
        for (size_t k = 0; !d->repeat && k < a->nopts; k++)
            if (a->opts[k].def == d) {
                fprintf(stderr, "khctl: %s given twice\n", s);
                return -1;
            }
        if (a->nopts >= sizeof a->opts / sizeof a->opts[0]) {
            fprintf(stderr, "khctl: too many options\n");
            return -1;
        }
        a->opts[a->nopts].def = d;
        a->opts[a->nopts++].val = d->has_arg ? argv[++i] : "";
    }
    return 0;
}

static const char *opt(const args *a, const char *name)
{
    for (size_t i = 0; i < a->nopts; i++)
        if (strcmp(a->opts[i].def->name, name) == 0)
            return a->opts[i].val;
    return NULL;
}

/* An option, else an environment variable, else NULL. */
static const char *opt_env(const args *a, const char *name, const char *env)
{
    const char *v = opt(a, name);
    if (v == NULL && env != NULL && (v = getenv(env)) != NULL && *v == '\0')
        v = NULL;
    return v;
}

/* Only the options a command understands (NULL-terminated). */
static bool only_opts(const args *a, const char *cmd, const char *const *allowed)
{
    for (size_t i = 0; i < a->nopts; i++) {
        bool ok = false;
        for (size_t j = 0; allowed[j] && !ok; j++)
            ok = strcmp(allowed[j], a->opts[i].def->name) == 0;
        if (!ok) {
            fprintf(stderr, "khctl: %s does not take %s\n", cmd, a->opts[i].def->name);
            return false;
        }
    }
    return true;
}

/* ----------------------------------------------------------- secrets */

/* The first line of a private file (mode 0600 or stricter) into a malloc'd
 * NUL-terminated buffer; freed with khc_free_secret(p, *len + 1). */
static char *read_secret(const char *path, const char *what, size_t *len)
{
    char buf[KHC_PASSWORD_MAX + 3];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "khctl: cannot open %s %s: %s\n", what, path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        fprintf(stderr, "khctl: %s %s must be a regular file of mode 0600 (chmod 600 it)\n", what,
                path);
        close(fd);
        return NULL;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0 || (size_t)n >= sizeof buf - 1) {
        fprintf(stderr, "khctl: %s %s: unreadable or longer than %d bytes\n", what, path,
                KHC_PASSWORD_MAX);
        khc_wipe(buf, sizeof buf);
        return NULL;
    }
    buf[n] = '\0';
    size_t l = strcspn(buf, "\r\n");
    buf[l] = '\0';
    char *out = l > 0 && l <= KHC_PASSWORD_MAX ? malloc(l + 1) : NULL;
    if (out != NULL)
        memcpy(out, buf, l + 1);
    else
        fprintf(stderr, "khctl: %s %s is empty\n", what, path);
    khc_wipe(buf, sizeof buf);
    *len = l;
    return out;
}

static bool role_ok(const char *r)
{
    return khadm_role(r) != 0;
}

/* The --tenant options, checked: none for a platform admin, 1..64 otherwise. */
static int tenant_list(const args *a, const char *role, const char **out)
{
    int n = 0;
    for (size_t i = 0; i < a->nopts; i++) {
        if (strcmp(a->opts[i].def->name, "--tenant") != 0)
            continue;
        if (!kh_id_org(a->opts[i].val) || n >= KHADM_MAX_TENANTS) {
            fprintf(stderr, "khctl: --tenant %s: not an organisation code\n", a->opts[i].val);
            return -1;
        }
        out[n++] = a->opts[i].val;
    }
    if (strcmp(role, "platform_admin") == 0 ? n != 0 : n == 0) {
        fprintf(stderr, "khctl: a platform_admin has every tenant (no --tenant); other roles "
                        "need at least one --tenant\n");
        return -1;
    }
    return n;
}

/* "role": ROLE, "tenants": [...] inside an object being written. */
static void write_role(khj_writer *w, const char *role, const char *const *tenants, int nt)
{
    khjw_kstr(w, "role", role);
    khjw_key(w, "tenants");
    khjw_arr(w);
    for (int i = 0; i < nt; i++)
        khjw_str(w, tenants[i]);
    khjw_arr_end(w);
}

/* ------------------------------------------------------------ client */

typedef struct {
    const char *addr, *pki, *operator, * pwfile, *tokenfile, *gw_name;
    char cert[1024], key[1024], ca[1024];
    bool json;
    int timeout;
    kh_sync_conn *conn;
    char token[65];    /* hex, while a session is open */
    bool own_session;  /* logged in by this command: log out at the end */
    bool quiet;        /* print no refusal or failure (the closing logout) */
    const char *ctype; /* of the command's body: JSON unless an import */
} client;

static void free_resp(kh_sync_resp *r)
{
    khc_wipe(r->body, r->len); /* listings carry personal data, logins a token */
    kh_sync_resp_free(r);
}

/* One request. True with *r the 2xx response (the caller frees it with
 * free_resp); false with *rc set after printing the refusal or failure. */
static void put_clean(const char *s, size_t width);

static bool exchange(client *cl, const char *method, const char *path, const char *body,
                     size_t blen, int *rc, kh_sync_resp *r)
{
    char auth[128] = "", err[256];
    memset(r, 0, sizeof *r);
    if (cl->conn == NULL) {
        cl->conn = kh_sync_connect(cl->addr, cl->cert, cl->key, cl->ca, "KH-GW", cl->gw_name,
                                   cl->timeout, err, sizeof err);
        if (cl->conn == NULL) {
            if (!cl->quiet)
                printf("FAILED: %s\n", err);
            *rc = 4;
            return false;
        }
    }
    if (cl->token[0])
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", cl->token);
    int sent = kh_sync_do_ex(cl->conn, method, path, cl->ctype ? cl->ctype : "application/json",
                             auth, (const uint8_t *)body, blen, r);
    khc_wipe(auth, sizeof auth);
    if (sent != 0) {
        if (!cl->quiet)
            printf("FAILED: %s\n", r->error);
        kh_sync_close(cl->conn);
        cl->conn = NULL;
        *rc = 4;
        kh_sync_resp_free(r);
        return false;
    }
    if (r->status >= 200 && r->status <= 299)
        return true;
    khj_val *v = khj_parse((const char *)r->body, r->len, r->len + 1, 64, NULL);
    const char *code = khj_get_str(v, "code"), *msg = khj_get_str(v, "message");
    if (!cl->quiet)
        printf("REFUSED %s: %s (HTTP %d)\n", code ? code : "?", msg ? msg : "unreadable refusal",
               r->status);
    /* an import's report: each line and what is wrong there */
    const khj_val *errs = khj_get(v, "errors");
    for (size_t i = 0; !cl->quiet && i < khj_len(errs); i++) {
        const khj_val *e = khj_at(errs, i);
        int64_t line = 0;
        const char *col = khj_get_str(e, "column"), *m = khj_get_str(e, "message");
        (void)khj_get_int(e, "line", &line);
        printf("  line %lld, %s: ", (long long)line, col ? col : "-");
        put_clean(m ? m : "", 0);
        putchar('\n');
    }
    *rc = 3;
    khj_free(v);
    free_resp(r);
    return false;
}

/* One request. Returns the parsed 2xx body (caller frees), or NULL with *rc
 * set after printing the refusal or failure. raw_out: the body text too. */
static khj_val *request(client *cl, const char *method, const char *path, const char *body,
                        size_t blen, int *rc, char **raw_out)
{
    kh_sync_resp r;
    if (!exchange(cl, method, path, body, blen, rc, &r))
        return NULL;
    khj_error je;
    khj_val *v = khj_parse((const char *)r.body, r.len, r.len + 1, 64, &je);
    if (v == NULL) {
        printf("FAILED: the gateway's answer is not JSON (%s)\n", je.msg);
        *rc = 4;
    } else if (raw_out != NULL) {
        *raw_out = malloc(r.len + 1);
        if (*raw_out) {
            memcpy(*raw_out, r.body, r.len);
            (*raw_out)[r.len] = '\0';
        }
    }
    free_resp(&r);
    return v;
}

static int login(client *cl, bool keep)
{
    size_t pwlen;
    int rc = 0;
    if (cl->pwfile == NULL) {
        fprintf(stderr, "khctl: --password-file (or KH_ADMIN_PASSWORD_FILE) is needed to log in\n");
        return 2;
    }
    char *pw = read_secret(cl->pwfile, "password file", &pwlen);
    if (pw == NULL)
        return 2;
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "operator", cl->operator);
    khjw_key(&w, "password");
    khjw_strn(&w, pw, pwlen);
    khjw_obj_end(&w);
    khc_free_secret(pw, pwlen + 1);
    size_t blen;
    char *body = khjw_finish(&w, &blen);
    if (body == NULL)
        return 2;
    khj_val *v = request(cl, "POST", "/admin/v1/login", body, blen, &rc, NULL);
    khc_free_secret(body, blen);
    if (v == NULL)
        return rc;
    const char *token = khj_get_str(v, "token");
    if (token == NULL || strlen(token) != 64) {
        printf("FAILED: no token in the login answer\n");
        khj_free(v);
        return 4;
    }
    snprintf(cl->token, sizeof cl->token, "%s", token);
    cl->own_session = !keep;
    if (keep) {
        int fd = open(cl->tokenfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        bool ok = fd >= 0 && fchmod(fd, 0600) == 0 && write(fd, cl->token, 64) == 64 &&
                  write(fd, "\n", 1) == 1;
        if (fd >= 0)
            close(fd);
        if (!ok) {
            fprintf(stderr, "khctl: cannot write the token file %s\n", cl->tokenfile);
            cl->own_session = true; /* log it out again */
            rc = 2;
        }
    }
    khj_free(v);
    return rc;
}

static void logout(client *cl)
{
    int rc = 0;
    if (cl->token[0] == '\0')
        return;
    /* the command's own answer is what counts: this one is not printed
     * (the session may have ended already, e.g. by a raw logout) */
    cl->quiet = true;
    khj_free(request(cl, "POST", "/admin/v1/logout", NULL, 0, &rc, NULL));
    khc_wipe(cl->token, sizeof cl->token);
}

/* -------------------------------------------------------------- output */

/* Prints text with control characters replaced: a value from the gateway
 * (a reason, a name) must not drive the terminal. */
static void put_clean(const char *s, size_t width)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && (width == 0 || n < width); p++) {
        putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
        if ((*p & 0xc0) != 0x80)
            n++;
    }
}

/* Writes a parsed value again as JSON. */
static void rewrite(khj_writer *w, const khj_val *v)
{
    switch (khj_type_of(v)) {
    case KHJ_NULL:
        khjw_null(w);
        break;
    case KHJ_BOOL:
        khjw_bool(w, khj_bool(v));
        break;
    case KHJ_INT:
        khjw_int(w, khj_int(v));
        break;
    case KHJ_STR:
        khjw_strn(w, khj_str(v), khj_strlen(v));
        break;
    case KHJ_ARR:
        khjw_arr(w);
        for (size_t i = 0; i < khj_len(v); i++)
            rewrite(w, khj_at(v, i));
        khjw_arr_end(w);
        break;
    case KHJ_OBJ:
        khjw_obj(w);
        for (size_t i = 0; i < khj_len(v); i++) {
            khjw_key(w, khj_key_at(v, i));
            rewrite(w, khj_at(v, i));
        }
        khjw_obj_end(w);
        break;
    }
}

/* A value as text for a table cell: strings as they are, null "-", arrays
 * of scalars joined with ",", anything else as JSON. malloc'd. */
static char *cell(const khj_val *v)
{
    char num[24];
    switch (khj_type_of(v)) {
    case KHJ_NULL:
        return strdup("-");
    case KHJ_BOOL:
        return strdup(khj_bool(v) ? "true" : "false");
    case KHJ_INT:
        snprintf(num, sizeof num, "%lld", (long long)khj_int(v));
        return strdup(num);
    case KHJ_STR:
        return strdup(khj_str(v));
    case KHJ_ARR:
    case KHJ_OBJ:
        break;
    }
    bool flat = khj_type_of(v) == KHJ_ARR;
    size_t cap = 1;
    for (size_t i = 0; flat && i < khj_len(v); i++) {
        khj_type t = khj_type_of(khj_at(v, i));
        flat = t == KHJ_STR || t == KHJ_INT;
        cap += khj_strlen(khj_at(v, i)) + 22;
    }
    if (!flat) {
        khj_writer w;
        khjw_init(&w, 0);
        rewrite(&w, v);
        return khjw_finish(&w, NULL);
    }
    char *out = calloc(1, cap);
    for (size_t i = 0; out && i < khj_len(v); i++) {
        char *c = cell(khj_at(v, i));
        if (c && i)
            strcat(out, ",");
        if (c)
            strcat(out, c);
        free(c);
    }
    return out;
}

static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* An array of flat objects as a table, columns from the first row. */
static void print_table(const khj_val *rows)
{
    const khj_val *first = khj_at(rows, 0);
    size_t ncol = khj_len(first), nrow = khj_len(rows);
    if (first == NULL) {
        printf("(none)\n");
        return;
    }
    size_t *wid = calloc(ncol, sizeof *wid);
    if (wid == NULL)
        return;
    for (size_t c = 0; c < ncol; c++)
        wid[c] = text_width(khj_key_at(first, c));
    for (size_t r = 0; r < nrow; r++)
        for (size_t c = 0; c < ncol; c++) {
            char *t = cell(khj_get(khj_at(rows, r), khj_key_at(first, c)));
            size_t tw = t ? text_width(t) : 0;
            if (tw > wid[c])
                wid[c] = tw > 40 ? 40 : tw;
            free(t);
        }
    for (size_t c = 0; c < ncol; c++) {
        put_clean(khj_key_at(first, c), 0);
        printf("%*s", (int)(wid[c] - text_width(khj_key_at(first, c)) + (c + 1 < ncol ? 2 : 0)),
               "");
    }
    putchar('\n');
    for (size_t r = 0; r < nrow; r++) {
        for (size_t c = 0; c < ncol; c++) {
            char *t = cell(khj_get(khj_at(rows, r), khj_key_at(first, c)));
            size_t tw = t ? text_width(t) : 0;
            put_clean(t ? t : "", wid[c]);
            printf("%*s", (int)((tw < wid[c] ? wid[c] - tw : 0) + (c + 1 < ncol ? 2 : 0)), "");
            free(t);
        }
        putchar('\n');
    }
    printf("(%zu row%s)\n", nrow, nrow == 1 ? "" : "s");
    free(wid);
}

/* An answer: "key: value" lines; the one array of objects (a listing) as a table. */
static void print_answer(const khj_val *v, int indent)
{
    for (size_t i = 0; i < khj_len(v); i++) {
        const khj_val *x = khj_at(v, i);
        if (khj_type_of(x) == KHJ_ARR &&
            (khj_len(x) == 0 || khj_type_of(khj_at(x, 0)) == KHJ_OBJ)) {
            printf("%*s", indent, "");
            put_clean(khj_key_at(v, i), 0);
            printf(":\n");
            print_table(x);
        } else if (khj_type_of(x) == KHJ_OBJ) {
            printf("%*s", indent, "");
            put_clean(khj_key_at(v, i), 0);
            printf(":\n");
            print_answer(x, indent + 2);
        } else {
            char *t = cell(x);
            printf("%*s", indent, "");
            put_clean(khj_key_at(v, i), 0);
            printf(": ");
            put_clean(t ? t : "", 0);
            putchar('\n');
            free(t);
        }
    }
}

/* Text as it came (the metrics), but no control character other than a
 * newline reaches the terminal. */
static void put_text(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        putchar((unsigned char)s[i] < 0x20 && s[i] != '\n' ? '?' : s[i]);
}

/* The heading of a usage count: its group and its column. */
static void usage_heading(const char *key, const char **group, const char **col)
{
    static const char *const named[][3] = {{"asked", "asked", "queries"},
                                           {"answered", "answered", "answers"},
                                           {"held", "answered", "held"},
                                           {"rows_registered", "registered", "rows"},
                                           {"bulk_files", "registered", "files"}};
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(key, named[i][0]) == 0) {
            *group = named[i][1];
            *col = named[i][2];
            return;
        }
    *group = strncmp(key, "asked_", 6) == 0 ? "asked" : "answered";
    *col = strchr(key, '_') ? strchr(key, '_') + 1 : key;
}

/* Rows of usage counts (objects of the same keys as cols) as a table, its
 * groups of columns named above it; labels[i] heads row i. */
static void usage_table(const char *first, const char *const *labels, const khj_val *const *rows,
                        size_t nrows, const khj_val *cols)
{
    size_t ncol = khj_len(cols), lw = strlen(first), pos;
    char groups[512];
    const char *last = "";
    for (size_t r = 0; r < nrows; r++)
        if (strlen(labels[r]) > lw)
            lw = strlen(labels[r]);
    int *wid = calloc(ncol ? ncol : 1, sizeof *wid);
    if (wid == NULL || lw > 64)
        goto out;
    memset(groups, ' ', sizeof groups);
    pos = lw;
    for (size_t c = 0; c < ncol; c++) {
        const char *g, *col;
        usage_heading(khj_key_at(cols, c), &g, &col);
        wid[c] = strlen(col) > 7 ? (int)strlen(col) : 7;
        if (strcmp(g, last) != 0 && pos + 1 + strlen(g) < sizeof groups)
            memcpy(groups + pos + 1, g, strlen(g));
        last = g;
        pos += 1 + (size_t)wid[c];
    }
    groups[pos < sizeof groups ? pos : sizeof groups - 1] = '\0';
    for (size_t e = strlen(groups); e > 0 && groups[e - 1] == ' '; e--)
        groups[e - 1] = '\0';
    printf("%s\n%-*s", groups, (int)lw, first);
    for (size_t c = 0; c < ncol; c++) {
        const char *g, *col;
        usage_heading(khj_key_at(cols, c), &g, &col);
        printf(" %*s", wid[c], col);
    }
    putchar('\n');
    for (size_t r = 0; r < nrows; r++) {
        put_clean(labels[r], 0);
        printf("%*s", (int)(lw - strlen(labels[r])), "");
        for (size_t c = 0; c < ncol; c++)
            printf(" %*lld", wid[c], (long long)khj_int(khj_get(rows[r], khj_key_at(cols, c))));
        putchar('\n');
    }
out:
    free(wid);
}

/* A usage report: one tenant's days and total, or (usage --all) every
 * tenant's total. */
static void print_usage(const khj_val *v)
{
    const khj_val *tenants = khj_get(v, "tenants"), *total = khj_get(v, "total");
    const char *since = khj_get_str(v, "since"), *until = khj_get_str(v, "until");
    size_t n = tenants ? khj_len(tenants) : khj_len(khj_get(v, "days")) + 1;
    const char **labels = calloc(n + 1, sizeof *labels);
    const khj_val **rows = calloc(n + 1, sizeof *rows);
    if (labels == NULL || rows == NULL)
        goto out;
    if (tenants != NULL) {
        printf("usage of %zu tenants, %s to %s (days of the database's time zone)\n", n,
               since ? since : "?", until ? until : "?");
        for (size_t i = 0; i < n; i++) {
            labels[i] = khj_get_str(khj_at(tenants, i), "tenant");
            rows[i] = khj_get(khj_at(tenants, i), "total");
            if (labels[i] == NULL || khj_type_of(rows[i]) != KHJ_OBJ)
                goto out;
        }
        if (n > 0)
            usage_table("tenant", labels, rows, n, rows[0]);
    } else if (khj_type_of(total) == KHJ_OBJ) {
        const khj_val *days = khj_get(v, "days");
        const char *org = khj_get_str(v, "tenant");
        printf("usage of tenant %s, %s to %s (days of the database's time zone)\n", org ? org : "?",
               since ? since : "?", until ? until : "?");
        for (size_t i = 0; i + 1 < n; i++) {
            labels[i] = khj_get_str(khj_at(days, i), "day");
            rows[i] = khj_at(days, i);
            if (labels[i] == NULL)
                goto out;
        }
        labels[n - 1] = "total";
        rows[n - 1] = total;
        usage_table("day", labels, rows, n, total);
    }
out:
    free(labels);
    free(rows);
}

/* ------------------------------------------------------------ commands */

/* Appends "&key=value" (percent-encoded) to a query string being built. */
static void add_param(char *q, size_t qlen, const char *key, const char *val)
{
    static const char hex[] = "0123456789ABCDEF";
    if (val == NULL)
        return;
    size_t n = strlen(q);
    n += (size_t)snprintf(q + n, qlen > n ? qlen - n : 0, "%c%s=", strchr(q, '?') ? '&' : '?', key);
    for (const unsigned char *p = (const unsigned char *)val; *p && n + 4 < qlen; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            q[n++] = (char)*p;
        } else {
            q[n++] = '%';
            q[n++] = hex[*p >> 4];
            q[n++] = hex[*p & 15];
        }
    }
    q[n < qlen ? n : qlen - 1] = '\0';
}

static bool org_arg(const char *org)
{
    if (org != NULL && kh_id_org(org))
        return true;
    fprintf(stderr, "khctl: '%s' is not an organisation code\n", org ? org : "");
    return false;
}

/* A file to send as it is (an import), at most KHADM_MAX_CSV bytes. */
static bool read_file(const char *path, char **body, size_t *len)
{
    FILE *f = fopen(path, "rb");
    *body = f ? malloc(KHADM_MAX_CSV + 1) : NULL;
    *len = *body ? fread(*body, 1, KHADM_MAX_CSV + 1, f) : 0;
    bool ok = *body != NULL && !ferror(f) && *len <= KHADM_MAX_CSV;
    if (!ok)
        fprintf(stderr, "khctl: cannot read %s%s\n", path,
                *body && *len > KHADM_MAX_CSV ? " (over 4 MiB)" : "");
    if (f)
        fclose(f);
    return ok;
}

/* Builds the request of a command: method, path, JSON body (malloc'd or
 * NULL). 0, or 2 for a usage problem. */
static int build(const args *a, const char *cur_pwfile, char *method, char *path, size_t pathlen,
                 char **body, size_t *blen)
{
    const char *const *cmd = a->pos;
    size_t n = a->npos;
    khj_writer w;
    *body = NULL;
    *blen = 0;
    strcpy(method, "GET");
    static const char *const none[] = {NULL};
    if (n == 1 && strcmp(cmd[0], "whoami") == 0) {
        snprintf(path, pathlen, "/admin/v1/whoami");
        return only_opts(a, "whoami", none) ? 0 : 2;
    }
    if (n >= 2 && strcmp(cmd[0], "flags") == 0 && strcmp(cmd[1], "list") == 0 && n == 3) {
        static const char *const ok[] = {"--kind", "--active", "--limit", NULL};
        if (!org_arg(cmd[2]) || !only_opts(a, "flags list", ok))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/flags", cmd[2]);
        add_param(path, pathlen, "kind", opt(a, "--kind"));
        add_param(path, pathlen, "active", opt(a, "--active") ? "true" : NULL);
        add_param(path, pathlen, "limit", opt(a, "--limit"));
        return 0;
    }
    if (n == 4 && strcmp(cmd[0], "flags") == 0 && strcmp(cmd[1], "add") == 0) {
        static const char *const ok[] = {"--reason", "--local-id", "--item", "--procedure",
                                         "--from",   "--to",       NULL};
        if (!org_arg(cmd[2]) || !only_opts(a, "flags add", ok))
            return 2;
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/tenants/%s/flags", cmd[2]);
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kstr(&w, "kind", cmd[3]);
        static const char *const map[][2] = {{"--local-id", "local_id"},   {"--item", "item_code"},
                                             {"--procedure", "procedure"}, {"--reason", "reason"},
                                             {"--from", "valid_from"},     {"--to", "valid_to"}};
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (opt(a, map[i][0]))
                khjw_kstr(&w, map[i][1], opt(a, map[i][0]));
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if (n == 4 && strcmp(cmd[0], "flags") == 0 && strcmp(cmd[1], "revoke") == 0) {
        if (!org_arg(cmd[2]) || !only_opts(a, "flags revoke", none))
            return 2;
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/tenants/%s/flags/%s/revoke", cmd[2], cmd[3]);
        return strspn(cmd[3], "0123456789") == strlen(cmd[3]) && strlen(cmd[3]) < 19 ? 0 : 2;
    }
    if (n == 4 && strcmp(cmd[0], "decide") == 0) {
        static const char *const ok[] = {"--items", "--reason", NULL};
        if (!org_arg(cmd[1]) || !only_opts(a, "decide", ok))
            return 2;
        if (strcmp(cmd[3], "approve") != 0 && strcmp(cmd[3], "refuse") != 0) {
            fprintf(stderr, "khctl: decide: expected approve or refuse, not '%s'\n", cmd[3]);
            return 2;
        }
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/tenants/%s/decide", cmd[1]);
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kstr(&w, "msg_id", cmd[2]);
        khjw_kstr(&w, "decision", cmd[3]);
        if (opt(a, "--reason"))
            khjw_kstr(&w, "reason", opt(a, "--reason"));
        if (opt(a, "--items")) {
            /* comma-separated codes; the gateway validates each */
            const char *it = opt(a, "--items");
            khjw_key(&w, "items");
            khjw_arr(&w);
            for (const char *p = it; *p;) {
                size_t len = strcspn(p, ",");
                khjw_strn(&w, p, len);
                p += len;
                if (*p == ',')
                    p++;
            }
            khjw_arr_end(&w);
        }
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if (n == 2 && (strcmp(cmd[0], "pending") == 0 || strcmp(cmd[0], "queries") == 0 ||
                   strcmp(cmd[0], "audit") == 0)) {
        static const char *const pend[] = {"--state", "--limit", "--expiring", NULL};
        static const char *const qry[] = {"--handle", "--state", "--procedure", "--provider",
                                          "--since",  "--until", "--limit",     NULL};
        static const char *const aud[] = {"--since", "--until", "--outcome", "--limit", NULL};
        const char *const *ok = cmd[0][0] == 'p' ? pend : cmd[0][0] == 'q' ? qry : aud;
        if (!org_arg(cmd[1]) || !only_opts(a, cmd[0], ok))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/%s", cmd[1], cmd[0]);
        for (size_t i = 0; ok[i]; i++)
            add_param(path, pathlen, strcmp(ok[i], "--handle") == 0 ? "msg_id" : ok[i] + 2,
                      opt(a, ok[i]));
        return 0;
    }
    if ((n == 2 || (n == 3 && strcmp(cmd[1], "set") == 0)) && strcmp(cmd[0], "policy") == 0) {
        static const char *const ok[] = {"--hold-deadline", NULL};
        const char *org = cmd[n - 1], *v = opt(a, "--hold-deadline");
        if (!org_arg(org) || !only_opts(a, "policy", n == 3 ? ok : none))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/policy", org);
        if (n == 2)
            return 0;
        char *end = NULL;
        long long secs = v ? strtoll(v, &end, 10) : 0;
        if (v == NULL || end == v || *end != '\0' || secs < 1 || secs > 7776000) {
            fprintf(stderr, "khctl: policy set needs --hold-deadline SECONDS (1 to 7776000)\n");
            return 2;
        }
        strcpy(method, "POST");
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kint(&w, "hold_deadline_s", secs);
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if ((n == 1 || n == 2) && strcmp(cmd[0], "usage") == 0) {
        static const char *const ok[] = {"--since", "--until", "--all", NULL};
        bool all = opt(a, "--all") != NULL;
        if (all != (n == 1)) {
            fprintf(stderr, "khctl: usage takes ORG or --all\n");
            return 2;
        }
        if ((!all && !org_arg(cmd[1])) || !only_opts(a, "usage", ok))
            return 2;
        if (all)
            snprintf(path, pathlen, "/admin/v1/usage");
        else
            snprintf(path, pathlen, "/admin/v1/tenants/%s/usage", cmd[1]);
        add_param(path, pathlen, "since", opt(a, "--since"));
        add_param(path, pathlen, "until", opt(a, "--until"));
        return 0;
    }
    if (n >= 1 && n <= 3 && strcmp(cmd[0], "maintenance") == 0) {
        /* maintenance [ORG] | maintenance on|off [ORG] [--reason TEXT] */
        static const char *const ok[] = {"--reason", NULL};
        bool change = n >= 2 && (strcmp(cmd[1], "on") == 0 || strcmp(cmd[1], "off") == 0);
        const char *org = change ? (n == 3 ? cmd[2] : NULL) : (n == 2 ? cmd[1] : NULL);
        if ((!change && n == 3) || (org != NULL && !org_arg(org)) ||
            !only_opts(a, "maintenance", change ? ok : none))
            return 2;
        if (org != NULL)
            snprintf(path, pathlen, "/admin/v1/tenants/%s/maintenance", org);
        else
            snprintf(path, pathlen, "/admin/v1/maintenance");
        if (!change)
            return 0;
        strcpy(method, "POST");
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kbool(&w, "on", cmd[1][1] == 'n');
        if (opt(a, "--reason"))
            khjw_kstr(&w, "reason", opt(a, "--reason"));
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if ((n == 1 || (n == 2 && strcmp(cmd[1], "refresh") == 0)) &&
        strcmp(cmd[0], "directory") == 0) {
        if (!only_opts(a, "directory", none))
            return 2;
        if (n == 1) {
            snprintf(path, pathlen, "/admin/v1/directory");
            return 0;
        }
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/directory/refresh");
        *body = strdup("{}");
        *blen = 2;
        return *body ? 0 : 2;
    }
    if (n == 1 && strcmp(cmd[0], "diagnose") == 0) {
        snprintf(path, pathlen, "/admin/v1/diagnose");
        return only_opts(a, "diagnose", none) ? 0 : 2;
    }
    if (n == 1 && strcmp(cmd[0], "tenants") == 0) {
        snprintf(path, pathlen, "/admin/v1/tenants");
        return only_opts(a, "tenants", none) ? 0 : 2;
    }
    if (n == 1 && strcmp(cmd[0], "metrics") == 0) {
        snprintf(path, pathlen, "/metrics");
        return only_opts(a, "metrics", none) ? 0 : 2;
    }
    if (n == 2 && strcmp(cmd[0], "operator") == 0 && strcmp(cmd[1], "list") == 0) {
        snprintf(path, pathlen, "/admin/v1/operators");
        return only_opts(a, "operator list", none) ? 0 : 2;
    }
    if (n == 3 && strcmp(cmd[0], "operator") == 0 &&
        (strcmp(cmd[1], "disable") == 0 || strcmp(cmd[1], "enable") == 0 ||
         strcmp(cmd[1], "unlock") == 0)) {
        if (!only_opts(a, "operator", none))
            return 2;
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/operators/%s", cmd[1]);
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kstr(&w, "name", cmd[2]);
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if ((n == 1 && strcmp(cmd[0], "password") == 0) ||
        (n == 3 && strcmp(cmd[0], "operator") == 0 && strcmp(cmd[1], "password") == 0)) {
        /* one's own (the current one from --password-file), or a reset */
        static const char *const ok[] = {"--new-password-file", NULL};
        const char *pwf = opt(a, "--new-password-file");
        size_t pwlen, curlen;
        if (!only_opts(a, cmd[0], ok) || pwf == NULL) {
            fprintf(stderr, "khctl: password|operator password NAME --new-password-file FILE\n");
            return 2;
        }
        char *pw = read_secret(pwf, "new password file", &pwlen), *cur = NULL;
        if (pw != NULL && n == 1 && cur_pwfile == NULL)
            fprintf(stderr, "khctl: password: the current password comes from --password-file "
                            "(or KH_ADMIN_PASSWORD_FILE)\n");
        if (pw != NULL && n == 1 &&
            (cur_pwfile == NULL ||
             (cur = read_secret(cur_pwfile, "password file", &curlen)) == NULL)) {
            khc_free_secret(pw, pwlen + 1);
            return 2;
        }
        if (pw == NULL)
            return 2;
        strcpy(method, "POST");
        snprintf(path, pathlen, n == 1 ? "/admin/v1/password" : "/admin/v1/operators/password");
        khjw_init(&w, 0);
        khjw_obj(&w);
        if (n == 3)
            khjw_kstr(&w, "name", cmd[2]);
        if (cur != NULL) {
            khjw_key(&w, "password");
            khjw_strn(&w, cur, curlen);
            khc_free_secret(cur, curlen + 1);
        }
        khjw_key(&w, "new_password");
        khjw_strn(&w, pw, pwlen);
        khc_free_secret(pw, pwlen + 1);
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if ((n == 1 || n == 2 || n == 3) && strcmp(cmd[0], "sessions") == 0) {
        static const char *const ok[] = {"--of", NULL};
        const char *who = opt(a, "--of");
        if (!only_opts(a, "sessions", ok) || (n >= 2 && strcmp(cmd[1], "end") != 0) ||
            (n == 2 && who == NULL) || (n == 3 && who != NULL))
            return 2;
        if (n == 1) {
            snprintf(path, pathlen, "/admin/v1/sessions");
            add_param(path, pathlen, "operator", who);
            return 0;
        }
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/sessions/end");
        khjw_init(&w, 0);
        khjw_obj(&w);
        if (n == 3)
            khjw_kstr(&w, "session", cmd[2]);
        else
            khjw_kstr(&w, "operator", who);
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if (n == 4 && strcmp(cmd[0], "operator") == 0 && strcmp(cmd[1], "add") == 0) {
        static const char *const ok[] = {"--tenant", "--new-password-file", NULL};
        const char *tenants[KHADM_MAX_TENANTS];
        const char *pwf = opt(a, "--new-password-file");
        int nt;
        size_t pwlen;
        if (!only_opts(a, "operator add", ok) || pwf == NULL || !role_ok(cmd[3]) ||
            (nt = tenant_list(a, cmd[3], tenants)) < 0) {
            fprintf(stderr, "khctl: operator add NAME ROLE [--tenant ORG]... "
                            "--new-password-file FILE\n");
            return 2;
        }
        char *pw = read_secret(pwf, "new password file", &pwlen);
        if (pw == NULL)
            return 2;
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/operators");
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kstr(&w, "name", cmd[2]);
        khjw_key(&w, "password");
        khjw_strn(&w, pw, pwlen);
        khc_free_secret(pw, pwlen + 1);
        write_role(&w, cmd[3], tenants, nt);
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    /* a tenant's registry: staff, roles, assignments, systems */
    if (n == 2 && strcmp(cmd[0], "staff") == 0) {
        static const char *const ok[] = {"--active", "--inactive", "--role",
                                         "--staff",  "--limit",    NULL};
        if (!org_arg(cmd[1]) || !only_opts(a, "staff", ok) ||
            (opt(a, "--active") && opt(a, "--inactive")))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/staff", cmd[1]);
        add_param(path, pathlen, "active",
                  opt(a, "--active")     ? "true"
                  : opt(a, "--inactive") ? "false"
                                         : NULL);
        add_param(path, pathlen, "role_code", opt(a, "--role"));
        add_param(path, pathlen, "staff_id", opt(a, "--staff"));
        add_param(path, pathlen, "limit", opt(a, "--limit"));
        return 0;
    }
    if (n == 3 && strcmp(cmd[0], "assignments") == 0 && strcmp(cmd[1], "list") != 0) {
        return 2;
    }
    if (n == 2 && strcmp(cmd[0], "assignments") == 0) {
        static const char *const ok[] = {"--staff", "--role", "--current", "--limit", NULL};
        if (!org_arg(cmd[1]) || !only_opts(a, "assignments", ok))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/assignments", cmd[1]);
        add_param(path, pathlen, "staff_id", opt(a, "--staff"));
        add_param(path, pathlen, "role_code", opt(a, "--role"));
        add_param(path, pathlen, "current", opt(a, "--current"));
        add_param(path, pathlen, "limit", opt(a, "--limit"));
        return 0;
    }
    if (n == 2 && (strcmp(cmd[0], "roles") == 0 || strcmp(cmd[0], "systems") == 0)) {
        static const char *const ok[] = {"--limit", NULL};
        if (!org_arg(cmd[1]) || !only_opts(a, cmd[0], ok))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/%s", cmd[1], cmd[0]);
        add_param(path, pathlen, "limit", opt(a, "--limit"));
        return 0;
    }
    if (n == 4 && strcmp(cmd[1], "set") == 0 &&
        (strcmp(cmd[0], "staff") == 0 || strcmp(cmd[0], "roles") == 0 ||
         strcmp(cmd[0], "systems") == 0)) {
        static const char *const st[] = {"--name", "--active", "--inactive", NULL};
        static const char *const ro[] = {"--name", "--procedures", NULL};
        static const char *const sy[] = {"--name", "--permit", NULL};
        char c0 = cmd[0][1]; /* sTaff, rOles, sYstems */
        const char *const *ok = c0 == 't' ? st : c0 == 'o' ? ro : sy;
        const char *act = opt(a, "--active") ? "true" : opt(a, "--inactive") ? "false" : NULL;
        if (!org_arg(cmd[2]) || !only_opts(a, cmd[0], ok) || opt(a, "--name") == NULL ||
            (c0 == 'o' && opt(a, "--procedures") == NULL) ||
            (c0 == 'y' && opt(a, "--permit") == NULL) ||
            (opt(a, "--active") && opt(a, "--inactive"))) {
            fprintf(stderr, "khctl: %s set ORG ID --name TEXT%s\n", cmd[0],
                    c0 == 't'   ? " [--active|--inactive]"
                    : c0 == 'o' ? " --procedures CODE,CODE (\"\" for none)"
                                : " --permit OPERATION[:SCOPE]... (--permit none: no permission)");
            return 2;
        }
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/tenants/%s/%s", cmd[2], cmd[0]);
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kstr(&w, c0 == 't' ? "staff_id" : c0 == 'o' ? "role_code" : "system_id", cmd[3]);
        khjw_kstr(&w, c0 == 't' ? "display_name" : "name", opt(a, "--name"));
        if (act)
            khjw_kbool(&w, "active", strcmp(act, "true") == 0);
        if (c0 == 'o') {
            khjw_key(&w, "procedures");
            khjw_arr(&w);
            for (const char *p = opt(a, "--procedures"); *p;) {
                size_t len = strcspn(p, ",");
                khjw_strn(&w, p, len);
                p += len + (p[len] == ',');
            }
            khjw_arr_end(&w);
        }
        if (c0 == 'y') {
            /* OPERATION:SCOPE, or OPERATION alone for scope * */
            khjw_key(&w, "permissions");
            khjw_arr(&w);
            for (size_t i = 0; i < a->nopts; i++) {
                if (strcmp(a->opts[i].def->name, "--permit") != 0)
                    continue;
                const char *v = a->opts[i].val, *colon = strchr(v, ':');
                if (strcmp(v, "none") == 0)
                    continue; /* an empty list, said on purpose */
                khjw_obj(&w);
                khjw_key(&w, "operation");
                khjw_strn(&w, v, colon ? (size_t)(colon - v) : strlen(v));
                if (colon)
                    khjw_kstr(&w, "scope", colon + 1);
                khjw_obj_end(&w);
            }
            khjw_arr_end(&w);
        }
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if (n == 4 && strcmp(cmd[0], "assign") == 0) {
        static const char *const ok[] = {"--from", "--to", NULL};
        if (!org_arg(cmd[1]) || !only_opts(a, "assign", ok))
            return 2;
        strcpy(method, "POST");
        snprintf(path, pathlen, "/admin/v1/tenants/%s/assignments", cmd[1]);
        khjw_init(&w, 0);
        khjw_obj(&w);
        khjw_kstr(&w, "staff_id", cmd[2]);
        khjw_kstr(&w, "role_code", cmd[3]);
        if (opt(a, "--from"))
            khjw_kstr(&w, "valid_from", opt(a, "--from"));
        if (opt(a, "--to"))
            khjw_kstr(&w, "valid_to", opt(a, "--to"));
        khjw_obj_end(&w);
        *body = khjw_finish(&w, blen);
        return *body ? 0 : 2;
    }
    if ((n == 3 || n == 4) && (strcmp(cmd[0], "import") == 0 || strcmp(cmd[0], "export") == 0) &&
        (strcmp(cmd[1], "staff") == 0 || strcmp(cmd[1], "assignments") == 0)) {
        static const char *const imp[] = {"--check", "--reopen", NULL};
        bool in = cmd[0][0] == 'i';
        if (n != (in ? 4u : 3u) || !org_arg(cmd[2]) || !only_opts(a, cmd[0], in ? imp : none))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/%s/%s", cmd[2], cmd[1], cmd[0]);
        if (!in)
            return 0;
        add_param(path, pathlen, "check", opt(a, "--check") ? "true" : NULL);
        add_param(path, pathlen, "reopen", opt(a, "--reopen") ? "true" : NULL);
        strcpy(method, "POST");
        return read_file(cmd[3], body, blen) ? 0 : 2;
    }
    if (n >= 2 && n <= 4 && strcmp(cmd[0], "bulk") == 0) {
        static const char *const up[] = {"--state", "--limit", NULL};
        static const char *const files[] = {"--since", "--until", "--limit", NULL};
        static const char *const rep[] = {"--offset", NULL};
        const char *what = n == 2 ? NULL : cmd[1], *org = cmd[n == 2 ? 1 : 2];
        const char *const *ok = what == NULL ? up : strcmp(what, "files") == 0 ? files : rep;
        if ((what != NULL && strcmp(what, "files") != 0 && strcmp(what, "report") != 0) ||
            n != (what == NULL ? 2u
                  : ok == rep  ? 4u
                               : 3u) ||
            !org_arg(org) || !only_opts(a, "bulk", ok))
            return 2;
        snprintf(path, pathlen, "/admin/v1/tenants/%s/bulk%s%s", org, what ? "/" : "",
                 what ? what : "");
        if (ok == rep)
            add_param(path, pathlen, "upload", cmd[3]);
        for (size_t i = 0; ok[i]; i++)
            add_param(path, pathlen, ok[i] + 2, opt(a, ok[i]));
        return 0;
    }
    if ((n == 3 || n == 4) && strcmp(cmd[0], "raw") == 0) {
        if ((strcmp(cmd[1], "GET") != 0 && strcmp(cmd[1], "POST") != 0) || cmd[2][0] != '/' ||
            strpbrk(cmd[2], " \r\n") != NULL || !only_opts(a, "raw", none))
            return 2;
        strcpy(method, cmd[1]);
        snprintf(path, pathlen, "%s", cmd[2]);
        if (n == 4) {
            if (strcmp(cmd[3], "-") != 0) {
                *body = strdup(cmd[3]);
                *blen = *body ? strlen(*body) : 0;
            } else {
                size_t cap = 1 << 20;
                *body = malloc(cap);
                *blen = *body ? fread(*body, 1, cap, stdin) : 0;
            }
            return *body ? 0 : 2;
        }
        return 0;
    }
    return 2;
}

int khctl_admin_main(int argc, char **argv)
{
    static const char *const globals[] = {
        "--admin",      "--pki",        "--operator", "--password-file",
        "--token-file", "--cert",       "--key",      "--gateway-name",
        "--json",       "--timeout-ms", NULL};
    args a;
    client cl;
    memset(&cl, 0, sizeof cl);
    if (parse_args(argc, argv, &a) != 0) {
        khctl_admin_usage(stderr);
        return 2;
    }
    if (opt(&a, "--help")) {
        khctl_admin_usage(stdout);
        return 0;
    }
    cl.addr = opt_env(&a, "--admin", "KH_ADMIN_ADDR");
    cl.pki = opt_env(&a, "--pki", "KH_ADMIN_PKI");
    cl.operator= opt_env(&a, "--operator", "KH_ADMIN_OPERATOR");
    cl.pwfile = opt_env(&a, "--password-file", "KH_ADMIN_PASSWORD_FILE");
    cl.tokenfile = opt_env(&a, "--token-file", "KH_ADMIN_TOKEN_FILE");
    cl.gw_name = opt(&a, "--gateway-name");
    cl.json = opt(&a, "--json") != NULL;
    cl.timeout = opt(&a, "--timeout-ms") ? atoi(opt(&a, "--timeout-ms")) : 30000;
    if (a.npos == 0 || cl.addr == NULL || cl.pki == NULL || !khadm_name_ok(cl.operator) ||
        cl.timeout < 100) {
        fprintf(stderr, "khctl admin: a command, --admin, --pki and a valid --operator are "
                        "needed\n");
        khctl_admin_usage(stderr);
        return 2;
    }
    snprintf(cl.ca, sizeof cl.ca, "%s/national-ca.crt", cl.pki);
    snprintf(cl.cert, sizeof cl.cert, "%s", opt(&a, "--cert") ? opt(&a, "--cert") : "");
    snprintf(cl.key, sizeof cl.key, "%s", opt(&a, "--key") ? opt(&a, "--key") : "");
    if (!cl.cert[0])
        snprintf(cl.cert, sizeof cl.cert, "%s/operator/%s/tls.crt", cl.pki, cl.operator);
    if (!cl.key[0])
        snprintf(cl.key, sizeof cl.key, "%s/operator/%s/tls.key", cl.pki, cl.operator);

    /* the command's own options are checked by build(); the globals are
     * always allowed: give build() a copy without them */
    args cmdargs = a;
    cmdargs.nopts = 0;
    for (size_t i = 0; i < a.nopts; i++) {
        bool global = false;
        for (size_t j = 0; globals[j] && !global; j++)
            global = strcmp(globals[j], a.opts[i].def->name) == 0;
        if (!global)
            cmdargs.opts[cmdargs.nopts++] = a.opts[i];
    }
    const char *cmd = a.pos[0];
    int rc = 0;
    if (strcmp(cmd, "login") == 0 || strcmp(cmd, "logout") == 0) {
        static const char *const none[] = {NULL};
        if (a.npos != 1 || !only_opts(&cmdargs, cmd, none))
            return 2;
        if (strcmp(cmd, "login") == 0) {
            rc = login(&cl, cl.tokenfile != NULL);
            if (rc == 0) {
                /* what the session is, never the token */
                khj_val *v = request(&cl, "GET", "/admin/v1/whoami", NULL, 0, &rc, NULL);
                if (v)
                    print_answer(v, 0);
                khj_free(v);
            }
        } else {
            size_t tl;
            char *t = cl.tokenfile ? read_secret(cl.tokenfile, "token file", &tl) : NULL;
            if (t == NULL || tl != 64) {
                fprintf(stderr, "khctl: logout needs the --token-file of a login\n");
                khc_free_secret(t, t ? tl + 1 : 0);
                return 2;
            }
            snprintf(cl.token, sizeof cl.token, "%s", t);
            khc_free_secret(t, tl + 1);
            khj_val *v = request(&cl, "POST", "/admin/v1/logout", NULL, 0, &rc, NULL);
            if (v) {
                unlink(cl.tokenfile);
                printf("logged out\n");
            }
            khj_free(v);
            khc_wipe(cl.token, sizeof cl.token);
        }
        if (cl.own_session)
            logout(&cl);
        kh_sync_close(cl.conn);
        return rc;
    }
    char method[8], path[1024], *body = NULL, *raw = NULL;
    size_t blen = 0;
    if (build(&cmdargs, cl.pwfile, method, path, sizeof path, &body, &blen) != 0) {
        fprintf(stderr, "khctl admin: bad command or arguments (khctl admin --help)\n");
        khc_free_secret(body, blen);
        return 2;
    }
    /* the session: a kept one, else a login for this command only */
    size_t tl;
    char *t = NULL;
    if (cl.tokenfile && access(cl.tokenfile, F_OK) == 0) {
        t = read_secret(cl.tokenfile, "token file", &tl);
        if (t == NULL || tl != 64) {
            khc_free_secret(t, t ? tl + 1 : 0);
            khc_free_secret(body, blen);
            return 2;
        }
        snprintf(cl.token, sizeof cl.token, "%s", t);
        khc_free_secret(t, tl + 1);
    } else if ((rc = login(&cl, false)) != 0) {
        khc_free_secret(body, blen);
        kh_sync_close(cl.conn);
        return rc;
    }
    khj_val *v = NULL;
    kh_sync_resp text;
    if (strcmp(cmd, "import") == 0)
        cl.ctype = "text/csv";
    bool file = strcmp(cmd, "export") == 0 || strstr(path, "/bulk/report?") != NULL;
    if (strcmp(cmd, "metrics") == 0 || file) {
        if (exchange(&cl, method, path, body, blen, &rc, &text)) {
            /* an export (CRLF lines) or a report is a file for redirecting; the metrics are
             * for reading */
            if (file)
                fwrite(text.body, 1, text.len, stdout);
            else
                put_text((const char *)text.body, text.len);
            free_resp(&text);
        }
    } else {
        v = request(&cl, method, path, body, blen, &rc, &raw);
    }
    khc_free_secret(body, blen);
    if (v != NULL) {
        if (cl.json)
            printf("%s\n", raw ? raw : "");
        else if (strcmp(cmd, "usage") == 0)
            print_usage(v);
        else
            print_answer(v, 0);
        /* a diagnosis with a failed check is not a success */
        const khj_val *okv = khj_get(v, "ok");
        if (strcmp(cmd, "diagnose") == 0 && (okv == NULL || !khj_bool(okv)))
            rc = 1;
    }
    khj_free(v);
    khc_free_secret(raw, raw ? strlen(raw) : 0);
    if (cl.own_session)
        logout(&cl);
    kh_sync_close(cl.conn);
    return rc;
}

/* ---------------------------------------------------------- bootstrap */

static bool pq_ok(PGconn *c, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return true;
    fprintf(stderr, "khctl: %s: %s", what, PQerrorMessage(c));
    return false;
}

int khctl_operator_add_main(int argc, char **argv)
{
    static const char *const ok[] = {"--db",        "--tenant", "--password-file",
                                     "--if-absent", "--help",   NULL};
    args a;
    if (parse_args(argc, argv, &a) != 0 || !only_opts(&a, "operator-add", ok)) {
        khctl_admin_usage(stderr);
        return 2;
    }
    if (opt(&a, "--help")) {
        khctl_admin_usage(stdout);
        return 0;
    }
    const char *db = opt(&a, "--db"), *pwf = opt(&a, "--password-file");
    const char *tenants[KHADM_MAX_TENANTS];
    if (a.npos != 2 || db == NULL || pwf == NULL || !khadm_name_ok(a.pos[0]) ||
        !role_ok(a.pos[1])) {
        fprintf(stderr, "khctl: operator-add --db CONNINFO NAME ROLE [--tenant ORG]... "
                        "--password-file FILE (NAME: [a-z0-9][a-z0-9._-]{0,31})\n");
        return 2;
    }
    const char *name = a.pos[0], *role = a.pos[1];
    int nt = tenant_list(&a, role, tenants);
    if (nt < 0)
        return 2;
    size_t pwlen;
    char *pw = read_secret(pwf, "password file", &pwlen);
    if (pw == NULL)
        return 2;
    char hash[KHC_PWHASH_LEN];
    int hrc = pwlen >= KHADM_PW_MIN ? khc_password_hash(pw, pwlen, hash) : -1;
    khc_free_secret(pw, pwlen + 1);
    if (hrc != 0) {
        fprintf(stderr, "khctl: the password must be %d to %d bytes\n", KHADM_PW_MIN,
                KHC_PASSWORD_MAX);
        return 2;
    }
    PGconn *c = PQconnectdb(db);
    int rc = 2;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "khctl: cannot connect: %s", PQerrorMessage(c));
        goto out;
    }
    PGresult *r = PQexec(c, "BEGIN");
    bool good = pq_ok(c, r, "begin");
    PQclear(r);
    if (!good)
        goto out;
    const char *p[3] = {name, role, hash};
    r = PQexecParams(c,
                     "INSERT INTO kh.operator (name, role, password_hash, created_by) "
                     "VALUES ($1, $2, $3, 'khctl') ON CONFLICT (name) DO NOTHING",
                     3, NULL, p, NULL, NULL, 0);
    good = pq_ok(c, r, "operator");
    bool created = good && strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (good && !created) {
        bool absent_ok = opt(&a, "--if-absent") != NULL;
        if (!absent_ok)
            fprintf(stderr, "khctl: operator %s already exists\n", name);
        rc = absent_ok ? 0 : 1;
        goto out;
    }
    /* the audit row's detail: role and tenants, built as JSON */
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    write_role(&w, role, tenants, nt);
    khjw_obj_end(&w);
    char *detail = khjw_finish(&w, NULL);
    for (int i = 0; good && i < nt; i++) {
        const char *pt[2] = {name, tenants[i]};
        r = PQexecParams(c, "INSERT INTO kh.operator_tenant (operator, org_code) VALUES ($1, $2)",
                         2, NULL, pt, NULL, NULL, 0);
        good = pq_ok(c, r, "tenant");
        PQclear(r);
    }
    if (good) {
        const char *pa[2] = {name, detail ? detail : "{}"};
        r = PQexecParams(c,
                         "INSERT INTO kh.operator_audit (actor, action, target, detail, outcome) "
                         "VALUES ('khctl', 'operator.add', $1, $2::jsonb, 'ok')",
                         2, NULL, pa, NULL, NULL, 0);
        good = pq_ok(c, r, "audit");
        PQclear(r);
    }
    free(detail);
    if (good) {
        r = PQexec(c, "COMMIT");
        good = pq_ok(c, r, "commit");
        PQclear(r);
    }
    if (good) {
        printf("khctl: operator %s (%s) added\n", name, role);
        rc = 0;
    }
out:
    khc_wipe(hash, sizeof hash);
    PQfinish(c);
    return rc;
}
