/* gw_adm.h: what the files of the admin API share (gw_admin.c: routing,
 * authentication and the event loop; gw_adm.c: parameters, listings and
 * audit rows; gw_admin_session.c: logins, sessions and operators;
 * gw_admin_account.c: accounts and sessions after creation;
 * gw_admin_tenant.c: a tenant's flags, listings, usage and decisions;
 * gw_admin_staff.c and gw_admin_import.c: its staff, roles and systems). Not
 * for the rest of the daemon: gw_admin.h is its interface. */
#ifndef KH_GW_ADM_H
#define KH_GW_ADM_H

#include "kherr.h"

#include "gw_state.h"

#include "khadmin.h"
#include "khhttp.h"
#include "khjson.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define ADM_MAX_BODY 65536        /* request bodies, before authentication */
#define ADM_MAX_CSV KHADM_MAX_CSV /* CSV imports (operators' certificates only) */
#define ADM_FAIL_LIMIT 5          /* failed logins in a row before a lock */
#define ADM_MAX_HASHING 2         /* password checks and hashes in flight */
#define ADM_LIST_DEFAULT 100      /* rows of a listing */
#define ADM_LIST_MAX 1000

typedef struct adm_call adm_call;
typedef struct adm_diag adm_diag; /* gw_admin_diag.c */
typedef void (*adm_work_fn)(PGconn *c, adm_call *call);

/* One endpoint. path: the whole path, or for tenant routes the part after
 * /admin/v1/tenants/{org}/, where "#" stands for a flag id. */
typedef struct {
    enum evhttp_cmd_type method;
    bool tenant;
    const char *path;
    unsigned roles;
    const char *action; /* names it in audit rows and the operational log */
    adm_work_fn work;
    bool hashes; /* runs scrypt: counted against ADM_MAX_HASHING */
    bool csv;    /* the body is text/csv (up to ADM_MAX_CSV), not JSON */
} adm_route;

struct adm_call {
    struct evhttp_request *req; /* NULL once the client has gone */
    const adm_route *route;
    char cn[KHADM_NAME_MAX + 1]; /* of the connection's client certificate */
    uint8_t token[32];
    bool by_cookie;       /* the session came in the console's cookie */
    bool bad_cookie;      /* that cookie malformed, or sent twice */
    bool post;            /* a change: with the cookie, it needs the CSRF token */
    char csrf[65];        /* X-KH-CSRF as sent (64 hex), or "" */
    char set_cookie[200]; /* a Set-Cookie for the reply (login, logout), or "" */
    bool has_token, bad_token;
    char org[8];   /* tenant routes: the code in the path */
    gw_tenant *t;  /* the hosted tenant, or NULL */
    int64_t id;    /* flag id in the path */
    khj_val *body; /* the request's JSON object, or NULL */
    uint8_t *csv;  /* a csv route's body (wiped when freed) */
    size_t csvlen;
    bool bad_json;
    char json_err[160];
    struct evkeyvalq query; /* decoded query parameters */
    bool bad_query;
    char query_err[96]; /* why, when bad_query */
    /* the session, set by authenticate() on the worker */
    char op[KHADM_NAME_MAX + 1];
    char role_name[16];
    unsigned role;
    char tenants[KHADM_MAX_TENANTS][8];
    size_t ntenants;
    char session_created[32], session_expires[32];
    /* the outcome */
    kh_err err;
    char msg[256];
    int status;  /* HTTP status of a success */
    char *out;   /* JSON of a success (or of a refusal with a report) */
    bool report; /* out is the refusal's body with its report (KH-6012) */
    size_t outlen;
    const char *content_type; /* of out if not JSON (a constant) */
    /* GET /metrics: the listeners' load and what they answered, read on the
     * event loop's thread when the request came (business, peer, admin) */
    kh_http_load load[3];
    kh_http_answers *answers; /* [3], or NULL */
    adm_diag *diag;           /* GET /admin/v1/diagnose: the checks so far */
    /* set by a route's work to go on on the event loop after it (the router
     * asked): called by admin_done with the function that replies; true if
     * it took the call over (it calls finish once, later or at once) */
    bool (*then)(adm_call *call, void (*finish)(adm_call *call));
    void (*finish)(adm_call *call);
};

/* The admin listener's settings and its one counter, kept by gw_admin.c. */
typedef struct {
    /* admin_session_idle, _max, admin_lockout: read by workers, changed by SIGHUP */
    atomic_int idle_secs, max_secs, lockout_secs;
    int hashing; /* password checks and hashes in flight (event loop only) */
} adm_state;
extern adm_state ADM;

/* A adm_listing query: fixed text with numbered parameters. */
typedef struct {
    char sql[1536];
    const char *p[10];
    int n;
} adm_listing;

/* The session's CSRF token (hex of HMAC-SHA-256 keyed with the session
 * token), and whether the request carries it. */
void adm_csrf_of(const uint8_t token[32], char out[65]);
bool adm_csrf_ok(const adm_call *call);
/* The console's cookie for a session (login) or its end (logout). */
void adm_set_cookie(adm_call *call, const char *token_hex);

/* Sets the call's outcome (kh_err_set). */
#define adm_set_err(call, e, ...)                                                                  \
    kh_err_set(&(call)->err, (call)->msg, sizeof(call)->msg, e, __VA_ARGS__)
/* A date of the admin API: YYYY-MM-DD, a real day (kh_id_iso_date), from
 * 1900 on (validity periods and report periods of this era). */
bool adm_date_ok(const char *s);
/* The tenant transaction of the route's tenant (kh_db_tenant_begin: *c
 * becomes the connection to the tenant's database), or false with the
 * call's outcome set. */
bool adm_tenant_begin(PGconn **c, adm_call *call);
/* The same for the operator tables (adm_platform_begin). */
bool adm_platform_open(PGconn *c, adm_call *call);
bool adm_db_failed(adm_call *call, PGresult *r);
/* A one-parameter query of one boolean: 1 true, 0 false, -1 failed (call->err set). */
KH_MUST_CHECK int adm_db_true(PGconn *c, adm_call *call, const char *sql, const char *param);
/* Finishes the writer into the call's response, or an internal error. */
void adm_set_out(adm_call *call, khj_writer *w, int status);
/* YYYY-MM-DD, a real day of the Gregorian calendar. */
bool adm_digits_ok(const char *s, size_t max);
/* Characters (not bytes) of valid UTF-8 text; -1 if it is not UTF-8 or
 * holds a control, invisible or bidirectional-control character (gw_adm.c). */
long adm_text_chars(const char *s);
bool adm_procedure_known(const char *code);
bool adm_has_tenant(const adm_call *call, const char *org);
/* The body must be an object whose keys are all in known (NULL-terminated). */
bool adm_body_fields(adm_call *call, const char *const *known);
/* A string field: absent is NULL (an error if required); present it must
 * be a non-empty string. */
bool adm_body_str(adm_call *call, const char *key, bool required, const char **out);
/* Query parameters must all be in known, each given once. */
bool adm_query_known(adm_call *call, const char *const *known);
const char *adm_query_get(adm_call *call, const char *key);
/* One of the allowed values (NULL-terminated), or absent. */
bool adm_query_enum(adm_call *call, const char *key, const char *const *allowed, const char **out);
bool adm_query_date(adm_call *call, const char *key, const char **out);
bool adm_query_limit(adm_call *call, char out[8]);
/* since/until: the created day in [since, until], in the database's time zone. */
bool adm_query_period(adm_call *call, const char **since, const char **until);
/* Appends " AND <before>$n<after>" with value as parameter n (nothing if
 * value is NULL). before/after are constants of the caller. */
void adm_list_where(adm_listing *l, const char *before, const char *after, const char *value);
/* Runs SELECT cols FROM from WHERE conds ORDER BY order LIMIT limit as one
 * JSON array built by PostgreSQL, and answers {"tenant":..., key: [...]}. */
void adm_list_json(PGconn *c, adm_call *call, adm_listing *l, const char *order, const char *limit,
                   const char *key);
/* One audit row: sql inserts (who, action, target, detail, outcome, code). */
KH_MUST_CHECK kh_err adm_audit_insert(PGconn *c, const char *sql, const char *who,
                                      const char *action, const char *target, const char *detail,
                                      kh_err code);
/* A row of the tenant's audit_log in the current tenant transaction.
 * detail: a JSON object (text) or NULL; code: KH_OK or the refusal. */
KH_MUST_CHECK kh_err adm_tenant_audit(PGconn *c, adm_call *call, const char *target,
                                      const char *detail, kh_err code);
/* A row of kh.operator_audit in the current kh_operator_store transaction. */
KH_MUST_CHECK kh_err adm_operator_audit(PGconn *c, const char *actor, const char *action,
                                        const char *target, const char *detail, kh_err code);
KH_MUST_CHECK kh_err adm_platform_begin(PGconn *c);
/* A listing of the operator tables: sql (parameters p) answers one JSON
 * text, read in a kh_operator_store transaction and answered as {key: it}. */
void adm_platform_list(PGconn *c, adm_call *call, const char *sql, int n, const char *const *p,
                       const char *key);
/* Records call->err as a refusal: in the tenant's audit log for a hosted
 * tenant's route, in kh.operator_audit for the others. Best effort: the
 * refusal stands even if the record cannot be written. */
void adm_record_refusal(PGconn *c, adm_call *call);

/* Logins, sessions, operators (gw_admin_session.c). */
void adm_login_work(PGconn *c, adm_call *call);
void adm_whoami_work(PGconn *c, adm_call *call);
void adm_logout_work(PGconn *c, adm_call *call);
void adm_operators_list_work(PGconn *c, adm_call *call);
void adm_operators_add_work(PGconn *c, adm_call *call);
/* A failed password check counted towards the lock (gw_admin_session.c). */
KH_MUST_CHECK kh_err adm_count_failure(PGconn *c, const char *name);
/* Accounts and sessions after their creation (gw_admin_account.c). */
void adm_operators_disable_work(PGconn *c, adm_call *call);
void adm_operators_enable_work(PGconn *c, adm_call *call);
void adm_operators_unlock_work(PGconn *c, adm_call *call);
void adm_operators_password_work(PGconn *c, adm_call *call);
void adm_password_work(PGconn *c, adm_call *call);
void adm_sessions_list_work(PGconn *c, adm_call *call);
void adm_sessions_end_work(PGconn *c, adm_call *call);

/* A tenant's data (gw_admin_tenant.c). */
void adm_flags_list_work(PGconn *c, adm_call *call);
void adm_flags_add_work(PGconn *c, adm_call *call);
void adm_flags_revoke_work(PGconn *c, adm_call *call);
void adm_pending_work(PGconn *c, adm_call *call);
void adm_queries_work(PGconn *c, adm_call *call);
void adm_audit_work(PGconn *c, adm_call *call);
void adm_status_work(PGconn *c, adm_call *call);
/* bulk registration (gw_admin_bulk.c) */
void adm_bulk_uploads_work(PGconn *c, adm_call *call);
void adm_bulk_files_work(PGconn *c, adm_call *call);
void adm_bulk_report_work(PGconn *c, adm_call *call);
void adm_usage_work(PGconn *c, adm_call *call);
void adm_usage_all_work(PGconn *c, adm_call *call);
void adm_metrics_work(PGconn *c, adm_call *call);
void adm_decide_work(PGconn *c, adm_call *call);
/* A tenant's answering policy: the deadline of held queries
 * (GW_HOLD_DEADLINE_MAX_S, gw_qstate.h). */
void adm_policy_read_work(PGconn *c, adm_call *call);
void adm_policy_set_work(PGconn *c, adm_call *call);

/* A tenant's registry: staff, job roles, assignments, business systems
 * (gw_admin_staff.c). */
/* Why v is not a registry ID (staff, role, system: kh_id_token of 32), or
 * NULL if it is one. */
const char *adm_reg_id_why(const char *v);
/* Why v is not a display name (1 to 100 characters, no control character,
 * no spreadsheet formula lead), or NULL if it is one. */
const char *adm_reg_name_why(const char *v);
/* The same, with call->err set (KH-6008 naming key) when it is not. */
bool adm_reg_id_ok(adm_call *call, const char *key, const char *v);
bool adm_reg_name_ok(adm_call *call, const char *key, const char *v);
void adm_staff_list_work(PGconn *c, adm_call *call);
void adm_staff_set_work(PGconn *c, adm_call *call);
void adm_roles_list_work(PGconn *c, adm_call *call);
void adm_roles_set_work(PGconn *c, adm_call *call);
void adm_assign_list_work(PGconn *c, adm_call *call);
void adm_assign_set_work(PGconn *c, adm_call *call);
void adm_systems_list_work(PGconn *c, adm_call *call);
void adm_systems_set_work(PGconn *c, adm_call *call);
/* The connectivity check (gw_admin_diag.c): adm_diagnose_work checks on a
 * worker and leaves call->diag; adm_diagnose_router, on the event loop,
 * asks the router and calls finish(call) with the answer (true), or has
 * nothing to ask (false: the caller replies). */
void adm_diagnose_work(PGconn *c, adm_call *call);
bool adm_diagnose_router(adm_call *call, void (*finish)(adm_call *call));
void adm_diag_free(adm_diag *d);
/* The directory in use (gw_admin_dir.c): GET /admin/v1/directory, POST
 * /admin/v1/directory/refresh (asks the router now). */
void adm_directory_work(PGconn *c, adm_call *call);
void adm_directory_refresh_work(PGconn *c, adm_call *call);
/* GET /admin/v1/tenants: hosted and retired tenants, the last change. */
void adm_tenants_work(PGconn *c, adm_call *call);
/* Maintenance mode (gw_admin_maint.c). */
void adm_maint_list_work(PGconn *c, adm_call *call);
void adm_maint_set_work(PGconn *c, adm_call *call);
void adm_maint_tenant_list_work(PGconn *c, adm_call *call);
void adm_maint_tenant_set_work(PGconn *c, adm_call *call);
/* CSV of staff and of assignments (gw_admin_import.c). */
void adm_staff_import_work(PGconn *c, adm_call *call);
void adm_assign_import_work(PGconn *c, adm_call *call);
void adm_staff_export_work(PGconn *c, adm_call *call);
void adm_assign_export_work(PGconn *c, adm_call *call);

#endif
