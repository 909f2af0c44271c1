/* gw_dir.h: the router's signed directory in use, its versions, and its
 * refresh while the gateway runs (periodic and on demand).
 *
 * G.dir is the version in use. The event loop reads it directly (it is
 * replaced on the event loop only). A worker, and any work that lasts over
 * several steps (a query: its legal-basis row and its provider's
 * certificates), takes a hold on the version in use when it starts and uses
 * that version until it drops the hold: work in flight finishes under the
 * version it started with, and a replaced version is freed when its last
 * hold is dropped. */
#ifndef KH_GW_DIR_H
#define KH_GW_DIR_H

#include "gw_state.h"

#include "kherr.h"
#include "khenv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A hold on the version in use (NULL before the first one is installed);
 * any thread. Every hold is dropped once, with gw_dir_drop. */
const kh_dir *gw_dir_hold(void);
/* Drops a hold (NULL: nothing); any thread. */
void gw_dir_drop(const kh_dir *d);

/* Whether d (NULL: none) lists tenant t with the signing and encryption
 * certificates this gateway holds for it: the rule every hosted tenant
 * meets, checked before one is added. Any thread holding d. */
bool gw_dir_lists(const kh_dir *d, const gw_tenant *t);

/* Installs a verified directory (kh_dir_load) as the version in use, on
 * the event loop, if it may replace the one in use: a newer issue time, the
 * same spec version, every hosted tenant listed with the certificates this
 * gateway holds. Takes fresh either way (freed if refused); false with why
 * filled if refused. The first one is installed the same way. */
bool gw_dir_install(kh_dir *fresh, char *why, size_t whylen);

/* What the version in use is, for listings and metrics (event loop). */
typedef struct {
    int64_t issued_at, installed_at, checked_at; /* unix seconds; checked: last fetch */
    unsigned installs;                           /* versions installed since start */
    unsigned retired_held;                       /* replaced versions still held */
    char sha256[65];                             /* of the signed bytes */
    char last_error[200];                        /* of the last refresh that failed, or "" */
} gw_dir_status;
void gw_dir_status_get(gw_dir_status *s);

/* Asks the router for its directory now (on the event loop). done (may be
 * NULL) is called once, on the event loop, with changed (a newer version
 * was installed) and e: KH_OK if the directory in use is the router's (new
 * or not), else KH_E_UPSTREAM (router unreachable), KH_E_DIRECTORY (its
 * directory not taken; error says why) or KH_E_OVERLOADED. A caller asking
 * while a fetch is under way gets a fetch of its own after it. done may run
 * before gw_dir_refresh returns. */
typedef void (*gw_dir_done_fn)(bool changed, kh_err e, const char *error, void *arg);
int gw_dir_refresh(gw_dir_done_fn done, void *arg);
/* directory_refresh_s in force: the periodic refresh runs that often (0:
 * never) from the first directory installed on. At start and at SIGHUP. */
void gw_dir_schedule(int interval_s);
int gw_dir_interval(void);
/* At exit: the version in use and every retired one freed. */
void gw_dir_shutdown(void);

#endif
