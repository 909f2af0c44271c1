/* gw_console.c: the console's files and the admin listener's headers
 * (gw_console.h).
 *
 * The files are served from memory to anyone the listener lets in (an
 * operator's certificate: the listener trusts the operator CA only); they
 * hold no data. Everything the console shows comes from the admin API, with
 * the same authentication and authorisation as khctl: the session is a
 * cookie (HttpOnly, Secure, SameSite=Strict) bound to the operator's
 * certificate, and every change carries the session's CSRF token
 * (gw_admin.c). The policy: scripts, styles and requests from this origin
 * only, no inline script or style, never in a frame. */
#include "gw_console.h"

#include "gw_state.h"

#include "kherr.h"
#include "khhttp.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#define CSP_PAGE                                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                    \
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
#define CSP_API "default-src 'none'; frame-ancestors 'none'"

const char *gw_console_cookie(void)
{
    static char name[96];
    if (name[0] == '\0')
        snprintf(name, sizeof name, GW_CONSOLE_COOKIE "%s", G.set.name);
    return name;
}

void gw_console_headers(struct evhttp_request *req, bool page)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy", page ? CSP_PAGE : CSP_API);
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000");
    evhttp_add_header(h, "Cross-Origin-Opener-Policy", "same-origin");
    evhttp_add_header(h, "Cross-Origin-Resource-Policy", "same-origin");
}

bool gw_console_serve(struct evhttp_request *req, const char *path)
{
    if (strcmp(path, "/console") != 0 && strncmp(path, "/console/", 9) != 0)
        return false;
    kh_http_set_endpoint(req, "console");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        gw_console_headers(req, false);
        kh_http_reply_json_err(req, KH_E_ADM_ENDPOINT, "the console's files are read with GET");
        return true;
    }
    if (strcmp(path, "/console") == 0) {
        gw_console_headers(req, false);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/console/");
        evhttp_send_reply(req, 301, "Moved", NULL);
        return true;
    }
    const char *name = path[9] == '\0' ? "index.html" : path + 9;
    for (const gw_console_file *f = gw_console_files; f->name != NULL; f++) {
        if (strcmp(f->name, name) != 0)
            continue;
        struct evbuffer *out = evbuffer_new();
        gw_console_headers(req, true);
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Content-Type", f->type);
        evhttp_add_header(h, "Cache-Control", "no-cache");
        if (out == NULL) {
            evhttp_send_reply(req, 500, "Internal error", NULL);
            return true;
        }
        evbuffer_add(out, f->bytes, f->len);
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
        return true;
    }
    gw_console_headers(req, false);
    kh_http_reply_json_err(req, KH_E_ADM_ENDPOINT, "no such console file");
    return true;
}
