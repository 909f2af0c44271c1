/* gw_conf.h: kakehashi-gw's configuration: the one table of its options
 * (gw_conf.c), the settings it fills, and their checks across options. */
#ifndef KH_GW_CONF_H
#define KH_GW_CONF_H

#include "khconf.h"

#include <stdio.h>

enum { GW_LOG_DEBUG, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR };

/* Every option's value once the file is read (strings point into the
 * kh_conf that was loaded with them). */
typedef struct {
    const char *name, *pki, *router, *db;
    const char *business_listen, *peer_listen, *admin_listen, *health_listen;
    kh_opt_list tenants, tenant_dbs;
    int db_workers, db_queue, worker_nice;
    int max_skew, msg_ttl, max_body, timeout_ms, log_level;
    int max_connections, max_inflight, tenant_max_inflight, system_max_inflight;
    int system_max_connections, handshake_rate, peer_handshake_rate;
    const char *spool_dir, *drop_dir, *drop_system;
    int chain_sign_interval, max_upload_mb, directory_refresh_s, crl_refresh_s;
    const char *tsa_url, *tsa_ca;
    int tsa_timeout_ms;
    int admin_session_idle, admin_session_max, admin_lockout;
    int admin_max_connections, admin_max_inflight, operator_max_inflight;
    int operator_max_connections;
    int drain_s;
} gw_settings;

/* Reads path into s: every value checked by the table, then the rules that
 * tie options together (tenants listed once, session limits in order, room
 * for bulk parts). NULL with err ("file:line: ...") on any problem. */
kh_conf *gw_conf_load(const char *path, gw_settings *s, char *err, size_t errlen);
/* The conninfo of org's database: its tenant_db, else db. */
const char *gw_conf_tenant_db(const gw_settings *s, const char *org);
/* The same with the shape kh_conf_reload wants. */
kh_conf *gw_conf_loader(const char *path, void *s, char *err, size_t errlen);
/* The table (for kh_conf_reload). */
const kh_opt *gw_conf_table(void);
/* The options part of --help. */
void gw_conf_usage(FILE *f);

#endif
