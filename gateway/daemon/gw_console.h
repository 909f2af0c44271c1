/* gw_console.h: the web console's files, served by the admin listener
 * (gateway/console/, compiled into the daemon), and the headers every
 * reply of that listener carries. The console itself is plain HTML, CSS
 * and JavaScript calling the admin API with a session cookie. */
#ifndef KH_GW_CONSOLE_H
#define KH_GW_CONSOLE_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *name; /* under /console/ */
    const char *type; /* Content-Type */
    const unsigned char *bytes;
    size_t len;
} gw_console_file;
/* Generated from gateway/console/ (embed.cmake); ends with a NULL name. */
extern const gw_console_file gw_console_files[];

/* GET /console, /console/ and /console/FILE: true if path is the console's
 * (answered: the file, a redirect, or 404 KH-6009). */
bool gw_console_serve(struct evhttp_request *req, const char *path);
/* The headers of every reply on the admin listener: never framed, never
 * sniffed, no referrer; a JSON reply may run nothing. */
void gw_console_headers(struct evhttp_request *req, bool page);
/* The cookie's name for this gateway. */
const char *gw_console_cookie(void);

/* The session cookie of the console: __Host- (Secure, Path=/, no Domain:
 * no other host can set it) and the gateway's name (two gateways' consoles
 * on one host name keep their own), "__Host-kh_session_NAME". */
#define GW_CONSOLE_COOKIE "__Host-kh_session_"

#endif
