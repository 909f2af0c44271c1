/* gw_admin_account.c: operators' accounts and sessions after their
 * creation. Every operator changes their own password (the current one
 * verified first, a wrong one counted like a failed login) and lists and ends
 * their own sessions; a platform admin resets a password, unlocks, disables
 * and enables operators, and lists and ends anyone's sessions. A new
 * password ends the operator's other sessions (all of them on a reset); a
 * disable ends them all. Each change writes its kh.operator_audit row in the
 * same transaction; passwords and token hashes are never in a row, an
 * answer or the log. A session is named by the first 8 bytes of its token's
 * SHA-256 in hex: enough to pick it, nothing to log in with. */
#include "gw_adm.h"

#include "khadmin.h"
#include "khcrypto.h"
#include "khid.h"
#include "khjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static bool name_field(adm_call *call, const char *key, const char **name)
{
    if (!adm_body_str(call, key, true, name))
        return false;
    if (khadm_name_ok(*name))
        return true;
    adm_set_err(call, KH_E_ADM_FIELD, "%s: [a-z0-9][a-z0-9._-]{0,31}", key);
    return false;
}

/* A new password field hashed into hash (KHC_PWHASH_LEN). */
static bool new_password(adm_call *call, char *hash)
{
    const char *pw;
    if (!adm_body_str(call, "new_password", true, &pw))
        return false;
    size_t len = khj_strlen(khj_get(call->body, "new_password"));
    if (len < KHADM_PW_MIN || len > KHC_PASSWORD_MAX) {
        adm_set_err(call, KH_E_ADM_FIELD, "new_password: %d to %d bytes", KHADM_PW_MIN,
                    KHC_PASSWORD_MAX);
        return false;
    }
    if (khc_password_hash(pw, len, hash) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "cannot hash the password");
        return false;
    }
    return true;
}

/* The hex SHA-256 of the call's token: its session's key. */
static bool own_session(adm_call *call, char hex[65])
{
    uint8_t hash[32];
    if (khc_sha256(call->token, sizeof call->token, NULL, 0, hash) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "cannot digest the token");
        return false;
    }
    khc_hex(hash, sizeof hash, hex);
    return true;
}

/* Runs a statement of the change, false (call->err set) if it failed. */
static bool run(PGconn *c, adm_call *call, const char *sql, int n, const char *const *p, int *rows)
{
    PGresult *r = kh_db_exec(c, sql, n, p);
    if (adm_db_failed(call, r))
        return false;
    if (rows != NULL)
        *rows = PQntuples(r) > 0 ? PQntuples(r) : atoi(PQcmdTuples(r));
    PQclear(r);
    return true;
}

/* The end of a change of the operator tables: the audit row, the commit,
 * the answer {"name", key: value}. */
static void account_done(PGconn *c, adm_call *call, const char *action, const char *name,
                         const char *key, bool value)
{
    if (adm_operator_audit(c, call->op, action, name, NULL, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "name", name);
    khjw_kbool(&w, key, value);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}

/* ----------------------------------------------------- own password */

/* A wrong current password: counted like a failed login (this is no way
 * around the lock), and a lock it brings ends every session of the
 * operator, this one too. */
static void password_refused(PGconn *c, adm_call *call)
{
    const char *p[1] = {call->op};
    if (adm_platform_begin(c) == KH_OK &&
        (adm_count_failure(c, call->op) != KH_OK ||
         !run(c, call,
              "DELETE FROM kh.operator_session s USING kh.operator o WHERE o.name = $1 AND "
              "s.operator = o.name AND o.locked_until > now()",
              1, p, NULL) ||
         adm_operator_audit(c, call->op, "operator.password", call->op, NULL,
                            KH_E_ADM_CREDENTIALS) != KH_OK ||
         kh_db_commit(c) != KH_OK))
        kh_db_rollback(c);
    adm_set_err(call, KH_E_ADM_CREDENTIALS, "the current password is wrong");
}

/* POST /admin/v1/password {"password", "new_password"}: any operator,
 * their own. Ends their other sessions. */
void adm_password_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"password", "new_password", NULL};
    const char *pw, *np;
    char stored[KHC_PWHASH_LEN] = "", hash[KHC_PWHASH_LEN] = "", self[65];
    if (!adm_body_fields(call, known) || !adm_body_str(call, "password", true, &pw) ||
        !adm_body_str(call, "new_password", true, &np) || !own_session(call, self))
        return;
    size_t pwlen = khj_strlen(khj_get(call->body, "password"));
    size_t nplen = khj_strlen(khj_get(call->body, "new_password"));
    /* everything about the new password before the current one is checked:
     * a refusal after a right guess would confirm it without a trace */
    if (nplen < KHADM_PW_MIN || nplen > KHC_PASSWORD_MAX) {
        adm_set_err(call, KH_E_ADM_FIELD, "new_password: %d to %d bytes", KHADM_PW_MIN,
                    KHC_PASSWORD_MAX);
        return;
    }
    if (nplen == pwlen && memcmp(np, pw, pwlen) == 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "new_password: the same as the current one");
        return;
    }
    if (!adm_platform_open(c, call))
        return;
    const char *op = call->op;
    PGresult *r = kh_db_exec(c,
                             "SELECT password_hash, coalesce(locked_until > now(), false) "
                             "FROM kh.operator WHERE name = $1",
                             1, &op);
    if (adm_db_failed(call, r) || PQntuples(r) != 1) {
        if (r != NULL)
            adm_set_err(call, KH_E_ADM_UNAUTHENTICATED, "no such operator");
        PQclear(r);
        kh_db_rollback(c);
        return;
    }
    snprintf(stored, sizeof stored, "%s", PQgetvalue(r, 0, 0));
    khc_wipe(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    bool locked = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    kh_db_rollback(c); /* nothing held while scrypt runs */
    if (locked) {
        /* no password is checked while locked, whatever the session */
        adm_set_err(call, KH_E_ADM_LOCKED, "operator locked after %d failed password checks",
                    ADM_FAIL_LIMIT);
        adm_record_refusal(c, call);
        goto out;
    }
    if (!khc_password_verify(pw, pwlen, stored)) {
        password_refused(c, call);
        goto out;
    }
    if (khc_password_hash(np, nplen, hash) != 0) {
        adm_set_err(call, KH_E_INTERNAL, "cannot hash the password");
        goto out;
    }
    if (!adm_platform_open(c, call))
        goto out;
    /* only if nothing changed while scrypt ran: the hash just verified, the
     * operator active and unlocked, this session alive (a reset, a disable,
     * a lock or an end of this session meanwhile wins) */
    const char *p[4] = {op, hash, stored, self};
    int changed = 0, ended = 0;
    if (!run(c, call,
             "UPDATE kh.operator o SET password_hash = $2, password_changed_at = now(), "
             "failed_logins = 0 WHERE o.name = $1 AND o.password_hash = $3 AND o.active AND "
             "(o.locked_until IS NULL OR o.locked_until <= now()) AND EXISTS (SELECT 1 FROM "
             "kh.operator_session s WHERE s.token_hash = decode($4, 'hex') AND s.operator = $1)",
             4, p, &changed)) {
        kh_db_rollback(c);
        goto out;
    }
    if (changed != 1) {
        kh_db_rollback(c);
        adm_set_err(call, KH_E_ADM_CONFLICT,
                    "the account changed while the password was checked (reset, disabled, "
                    "locked, or this session ended); nothing was changed");
        adm_record_refusal(c, call);
        goto out;
    }
    if (!run(c, call,
             "DELETE FROM kh.operator_session WHERE operator = $1 AND token_hash <> "
             "decode($2, 'hex')",
             2, (const char *const[]){op, self}, &ended)) {
        kh_db_rollback(c);
        goto out;
    }
    if (adm_operator_audit(c, op, "operator.password", op, NULL, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        goto out;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "name", op);
    khjw_kbool(&w, "password_changed", true);
    khjw_kint(&w, "other_sessions_ended", ended);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
out:
    khc_wipe(stored, sizeof stored);
    khc_wipe(hash, sizeof hash);
}

/* ------------------------------------------- platform admins' actions */

/* Locks the named operator's row; 0 not found (call->err set), 1 found
 * with *active and *locked, -1 failed. Not oneself. */
static int target_row(PGconn *c, adm_call *call, const char *name, bool *active, bool *locked)
{
    if (strcmp(name, call->op) == 0) {
        adm_set_err(call, KH_E_ADM_FIELD, "name: not yourself (POST /admin/v1/password)");
        return 0;
    }
    PGresult *r = kh_db_exec(c,
                             "SELECT active, coalesce(locked_until > now(), false) OR "
                             "failed_logins > 0 FROM kh.operator WHERE name = $1 FOR UPDATE",
                             1, &name);
    if (adm_db_failed(call, r))
        return -1;
    int n = PQntuples(r);
    if (n == 1) {
        *active = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        *locked = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    } else {
        adm_set_err(call, KH_E_ADM_NOT_FOUND, "no operator %s", name);
    }
    PQclear(r);
    return n == 1 ? 1 : 0;
}

/* operators/disable, operators/enable, operators/unlock {"name"}. */
static void operator_state(PGconn *c, adm_call *call, const char *what)
{
    static const char *const known[] = {"name", NULL};
    const char *name;
    bool active = false, locked = false;
    if (!adm_body_fields(call, known) || !name_field(call, "name", &name) ||
        !adm_platform_open(c, call))
        return;
    if (target_row(c, call, name, &active, &locked) != 1)
        goto fail;
    const char *p[1] = {name};
    char action[32];
    snprintf(action, sizeof action, "operator.%s", what);
    if (strcmp(what, "unlock") == 0) {
        if (!locked) {
            adm_set_err(call, KH_E_ADM_CONFLICT, "operator %s is not locked", name);
            goto fail;
        }
        if (!run(c, call,
                 "UPDATE kh.operator SET failed_logins = 0, locked_until = NULL WHERE name = $1", 1,
                 p, NULL))
            goto fail;
        account_done(c, call, action, name, "locked", false);
        return;
    }
    bool enable = strcmp(what, "enable") == 0;
    if (active == enable) {
        adm_set_err(call, KH_E_ADM_CONFLICT, "operator %s is already %s", name,
                    enable ? "enabled" : "disabled");
        goto fail;
    }
    if (!run(c, call,
             enable ? "UPDATE kh.operator SET active = true WHERE name = $1"
                    : "UPDATE kh.operator SET active = false WHERE name = $1",
             1, p, NULL) ||
        (!enable &&
         !run(c, call, "DELETE FROM kh.operator_session WHERE operator = $1", 1, p, NULL)))
        goto fail;
    account_done(c, call, action, name, "active", enable);
    return;
fail:
    kh_db_rollback(c);
}

void adm_operators_disable_work(PGconn *c, adm_call *call)
{
    operator_state(c, call, "disable");
}

void adm_operators_enable_work(PGconn *c, adm_call *call)
{
    operator_state(c, call, "enable");
}

void adm_operators_unlock_work(PGconn *c, adm_call *call)
{
    operator_state(c, call, "unlock");
}

/* POST /admin/v1/operators/password {"name", "new_password"}: a platform
 * admin sets another operator's password (forgotten); their sessions end
 * and any lock is lifted. */
void adm_operators_password_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"name", "new_password", NULL};
    const char *name;
    char hash[KHC_PWHASH_LEN] = "";
    bool active, locked;
    if (!adm_body_fields(call, known) || !name_field(call, "name", &name))
        goto out;
    if (strcmp(name, call->op) == 0) { /* before scrypt, which costs */
        adm_set_err(call, KH_E_ADM_FIELD, "name: not yourself (POST /admin/v1/password)");
        goto out;
    }
    if (!new_password(call, hash))
        goto out;
    if (!adm_platform_open(c, call))
        goto out;
    const char *p[2] = {name, hash};
    if (target_row(c, call, name, &active, &locked) != 1 ||
        !run(c, call,
             "UPDATE kh.operator SET password_hash = $2, password_changed_at = now(), "
             "failed_logins = 0, locked_until = NULL "
             "WHERE name = $1",
             2, p, NULL) ||
        !run(c, call, "DELETE FROM kh.operator_session WHERE operator = $1", 1, p, NULL)) {
        kh_db_rollback(c);
        goto out;
    }
    account_done(c, call, "operator.reset_password", name, "password_changed", true);
out:
    khc_wipe(hash, sizeof hash);
}

/* ----------------------------------------------------------- sessions */

#define SESSION_ID "encode(substr(s.token_hash, 1, 8), 'hex')"

/* GET /admin/v1/sessions[?operator=NAME]: a platform admin's view of
 * every session (or one operator's), anyone else's of their own. */
void adm_sessions_list_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"operator", NULL};
    char self[65], idle[16];
    if (!adm_query_known(call, known) || !own_session(call, self))
        return;
    const char *who = adm_query_get(call, "operator");
    if (who != NULL && !khadm_name_ok(who)) {
        adm_set_err(call, KH_E_ADM_FIELD, "operator: [a-z0-9][a-z0-9._-]{0,31}");
        return;
    }
    if (call->role != KHADM_PLATFORM_ADMIN) {
        if (who != NULL && strcmp(who, call->op) != 0) {
            adm_set_err(call, KH_E_ADM_ROLE, "role %s may list only its own sessions",
                        call->role_name);
            adm_record_refusal(c, call);
            return;
        }
        who = call->op;
    }
    snprintf(idle, sizeof idle, "%d", ADM.idle_secs);
    const char *p[3] = {self, idle, who};
    adm_platform_list(
        c, call,
        "SELECT coalesce(json_agg(x ORDER BY x.operator, x.created_at), '[]')::text FROM ("
        "SELECT " SESSION_ID " AS session, s.operator, s.created_at, s.last_seen, "
        "least(s.expires_at, s.last_seen + make_interval(secs => $2::int)) AS ends_at, "
        "s.token_hash = decode($1, 'hex') AS current FROM kh.operator_session s "
        "WHERE s.expires_at > now() AND s.last_seen > now() - make_interval(secs => $2::int) "
        "AND ($3::text IS NULL OR s.operator = $3)) x",
        3, p, "sessions");
}

/* POST /admin/v1/sessions/end {"session"} or {"operator"}: ends one session
 * (16 hex digits, as listed) or every session of an operator. Anyone may end
 * their own; a platform admin anyone's. */
void adm_sessions_end_work(PGconn *c, adm_call *call)
{
    static const char *const known[] = {"session", "operator", NULL};
    const char *sid, *who;
    if (!adm_body_fields(call, known) || !adm_body_str(call, "session", false, &sid) ||
        !adm_body_str(call, "operator", false, &who))
        return;
    if ((sid == NULL) == (who == NULL)) {
        adm_set_err(call, KH_E_ADM_FIELD, "session or operator: exactly one of them");
        return;
    }
    if (sid != NULL && !kh_id_hex(sid, 16)) {
        adm_set_err(call, KH_E_ADM_FIELD, "session: 16 lower-case hex digits (as listed)");
        return;
    }
    if (who != NULL && !khadm_name_ok(who)) {
        adm_set_err(call, KH_E_ADM_FIELD, "operator: [a-z0-9][a-z0-9._-]{0,31}");
        return;
    }
    bool admin = call->role == KHADM_PLATFORM_ADMIN;
    if (!admin && who != NULL && strcmp(who, call->op) != 0) {
        adm_set_err(call, KH_E_ADM_ROLE, "role %s may end only its own sessions", call->role_name);
        adm_record_refusal(c, call);
        return;
    }
    if (!adm_platform_open(c, call))
        return;
    /* a session id is matched only among the sessions this operator may end,
     * and must name exactly one */
    const char *p[3] = {sid, who, admin ? NULL : call->op};
    PGresult *r = kh_db_exec(c,
                             "WITH gone AS (DELETE FROM kh.operator_session s WHERE "
                             "($1::text IS NULL OR " SESSION_ID " = $1) AND "
                             "($2::text IS NULL OR s.operator = $2) AND "
                             "($3::text IS NULL OR s.operator = $3) RETURNING s.operator) "
                             "SELECT count(*), count(DISTINCT operator), min(operator) FROM gone",
                             3, p);
    if (adm_db_failed(call, r)) {
        kh_db_rollback(c);
        return;
    }
    long ended = atol(PQgetvalue(r, 0, 0));
    bool one = strcmp(PQgetvalue(r, 0, 1), "1") == 0;
    char target[KHADM_NAME_MAX + 1], detail[80];
    snprintf(target, sizeof target, "%s", one ? PQgetvalue(r, 0, 2) : who ? who : "");
    PQclear(r);
    if (ended == 0 || (sid != NULL && ended != 1) || !one) {
        kh_db_rollback(c);
        if (ended == 0)
            adm_set_err(call, KH_E_ADM_NOT_FOUND, "no such session of yours%s",
                        admin ? " or of anyone" : "");
        else
            adm_set_err(call, KH_E_ADM_CONFLICT, "session %s names more than one session", sid);
        adm_record_refusal(c, call);
        return;
    }
    snprintf(detail, sizeof detail, "{\"ended\": %ld, \"session\": \"%s\"}", ended,
             sid ? sid : "all");
    if (adm_operator_audit(c, call->op, "session.end", target, detail, KH_OK) != KH_OK ||
        kh_db_commit(c) != KH_OK) {
        adm_set_err(call, KH_E_DB, "database unavailable");
        kh_db_rollback(c);
        return;
    }
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "operator", target);
    khjw_kint(&w, "sessions_ended", ended);
    khjw_obj_end(&w);
    adm_set_out(call, &w, 200);
}
