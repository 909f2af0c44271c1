/* gw_router.c: messages that come back from the router (gw_router.h). */
#include "gw_router.h"

#include "khhttp.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

kh_err gw_relayed_refusal(const uint8_t *buf, size_t len, char *msg, size_t msglen)
{
    char code[32];
    kh_http_parse_status(buf, len, code, sizeof code, msg, msglen);
    kh_err e = kh_err_from_code(code);
    return (e == KH_E__COUNT || e == KH_OK) ? KH_E_UPSTREAM : e;
}

uint8_t *gw_open_from_router(gw_tenant *t, const kh_dir *dir, const uint8_t *buf, size_t len,
                             Kh__MsgType want, const uint8_t *in_reply_to, X509 *expect_signer,
                             const char *expect_sender, Kh__Header **hp, size_t *blen, kh_err *err,
                             char *msg, size_t msglen)
{
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    uint8_t *body = NULL;
    char why[160];
    *err = kh_env_parse(buf, len, &env, &h, why, sizeof why);
    if (*err != KH_OK) {
        *err = KH_E_UPSTREAM;
        snprintf(msg, msglen, "router message unreadable: %s", why);
        return NULL;
    }
    if ((*err = kh_env_verify(env, dir->router_sign)) != KH_OK ||
        strcmp(h->signer, "ROUTER") != 0) {
        *err = KH_E_HEADER_SIG;
        snprintf(msg, msglen, "header not signed by the router");
        goto out;
    }
    if (h->type != want || strcmp(h->recipient, t->id.code) != 0 ||
        (expect_sender != NULL && strcmp(h->sender, expect_sender) != 0) ||
        h->in_reply_to.len != KH_MSG_ID_LEN ||
        (in_reply_to != NULL && memcmp(h->in_reply_to.data, in_reply_to, KH_MSG_ID_LEN) != 0)) {
        *err = KH_E_SPLICE;
        snprintf(msg, msglen, "header does not answer this request");
        goto out;
    }
    if ((*err = kh_env_check_time(h, (int64_t)time(NULL), G.skew, G.ttl)) != KH_OK) {
        snprintf(msg, msglen, "%s", kh_err_get(*err)->meaning);
        goto out;
    }
    if (expect_signer == NULL) {
        const kh_org *o = kh_dir_org(dir, h->sender);
        expect_signer = o ? o->sign_cert : NULL;
    }
    *err = kh_env_open(env, &t->id, G.national, expect_signer, &body, blen);
    if (*err != KH_OK)
        snprintf(msg, msglen, "payload refused: %s", kh_err_get(*err)->meaning);
out:
    if (*err != KH_OK || body == NULL) {
        kh_env_free(env, h);
        return NULL;
    }
    kh__envelope__free_unpacked(env, NULL);
    *hp = h;
    return body;
}
