/* khenv.c: envelope packing/parsing and the signed directory. */
#include "khenv.h"

#include "khid.h"
#include "khcrypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void kh_items_wipe(Kh__ItemData *const *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++)
        for (size_t k = 0; k < items[i]->n_fields; k++)
            if (items[i]->fields[k]->value)
                khc_wipe(items[i]->fields[k]->value, strlen(items[i]->fields[k]->value));
}

void kh_msgid_hex(const ProtobufCBinaryData *id, char out[2 * KH_MSG_ID_LEN + 1])
{
    if (id->len != KH_MSG_ID_LEN) {
        snprintf(out, 2 * KH_MSG_ID_LEN + 1, "invalid");
        return;
    }
    khc_hex(id->data, id->len, out);
}

int kh_env_pack(const Kh__Header *h, EVP_PKEY *key, const uint8_t *payload, size_t plen,
                uint8_t **out, size_t *outlen)
{
    uint8_t *hdr = NULL, *sig = NULL;
    size_t hlen, slen;
    int rc = -1;
    if (kh_pb_pack(&h->base, &hdr, &hlen) != 0 || khc_sign(key, hdr, hlen, &sig, &slen) != 0)
        goto out;
    Kh__Envelope env = KH__ENVELOPE__INIT;
    env.header.data = hdr;
    env.header.len = hlen;
    env.header_sig.data = sig;
    env.header_sig.len = slen;
    env.payload.data = (uint8_t *)payload;
    env.payload.len = plen;
    rc = kh_pb_pack(&env.base, out, outlen);
out:
    free(hdr);
    free(sig);
    return rc;
}

static bool party_ok(const char *s)
{
    return s && (strcmp(s, "ROUTER") == 0 || kh_id_org(s));
}

kh_err kh_env_parse(const uint8_t *buf, size_t len, Kh__Envelope **envp, Kh__Header **hp, char *why,
                    size_t whylen)
{
    Kh__Envelope *env =
        (Kh__Envelope *)kh_pb_unpack(&kh__envelope__descriptor, buf, len, NULL, NULL, 0);
    Kh__Header *h = NULL;
    if (env == NULL) {
        snprintf(why, whylen, "body is not a kh.Envelope");
        return KH_E_BAD_REQUEST;
    }
    h = (Kh__Header *)kh_pb_unpack(&kh__header__descriptor, env->header.data, env->header.len, NULL,
                                   NULL, 0);
    if (h == NULL) {
        snprintf(why, whylen, "envelope header is not a kh.Header");
        goto bad;
    }
    if (h->spec_version != KH_SPEC_VERSION) {
        snprintf(why, whylen, "spec_version %u, this side speaks %d", h->spec_version,
                 KH_SPEC_VERSION);
        goto bad;
    }
    if (h->msg_id.len != KH_MSG_ID_LEN) {
        snprintf(why, whylen, "header.msg_id must be %d bytes", KH_MSG_ID_LEN);
        goto bad;
    }
    if (!party_ok(h->sender) || !party_ok(h->recipient) || !party_ok(h->signer)) {
        snprintf(why, whylen, "header sender/recipient/signer is not an organisation code");
        goto bad;
    }
    if (h->n_items > KH_MAX_ITEMS) {
        snprintf(why, whylen, "header carries more than %d items", KH_MAX_ITEMS);
        goto bad;
    }
    for (size_t i = 0; i < h->n_items; i++)
        if (!kh_id_code(h->items[i], KH_CODE_MAX)) {
            snprintf(why, whylen, "header.items[%zu] is not an item code", i);
            goto bad;
        }
    if (h->procedure[0] != '\0' && !kh_id_code(h->procedure, KH_CODE_MAX)) {
        snprintf(why, whylen, "header.procedure is not a procedure code");
        goto bad;
    }
    if (strlen(h->subject) > 64 || h->in_reply_to.len > KH_MSG_ID_LEN) {
        snprintf(why, whylen, "header.subject or in_reply_to too long");
        goto bad;
    }
    *envp = env;
    *hp = h;
    return KH_OK;
bad:
    kh_env_free(env, h);
    return KH_E_BAD_REQUEST;
}

void kh_env_free(Kh__Envelope *env, Kh__Header *h)
{
    if (h)
        kh__header__free_unpacked(h, NULL);
    if (env)
        kh__envelope__free_unpacked(env, NULL);
}

kh_err kh_env_verify(const Kh__Envelope *env, X509 *cert)
{
    if (cert == NULL)
        return KH_E_HEADER_SIG;
    return khc_verify(cert, env->header.data, env->header.len, env->header_sig.data,
                      env->header_sig.len) == 0
               ? KH_OK
               : KH_E_HEADER_SIG;
}

kh_err kh_env_check_time(const Kh__Header *h, int64_t now, int skew, int max_ttl)
{
    /* bound both times first, so the arithmetic below cannot overflow */
    const int64_t decade = 10LL * 366 * 24 * 3600;
    if (h->issued_at < now - decade || h->issued_at > now + decade ||
        h->expires_at < now - decade || h->expires_at > now + decade)
        return h->expires_at <= now ? KH_E_EXPIRED : KH_E_CLOCK_SKEW;
    if (h->expires_at <= now)
        return KH_E_EXPIRED;
    if (h->issued_at > now + skew || h->issued_at < now - max_ttl - skew ||
        h->expires_at - h->issued_at > max_ttl)
        return KH_E_CLOCK_SKEW;
    return KH_OK;
}

bool kh_items_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* --- directory --- */

static X509 *pem_cert(ProtobufCBinaryData *b)
{
    return b->len ? khc_cert_from_pem(b->data, b->len) : NULL;
}

kh_dir *kh_dir_load(const uint8_t *buf, size_t len, X509_STORE *trust, char *err, size_t errlen)
{
    kh_dir *d = calloc(1, sizeof *d);
    Kh__SignedDirectory *sd = (Kh__SignedDirectory *)kh_pb_unpack(&kh__signed_directory__descriptor,
                                                                  buf, len, NULL, NULL, 0);
    char org[32];
    if (d == NULL || sd == NULL) {
        snprintf(err, errlen, "directory is not a kh.SignedDirectory");
        goto fail;
    }
    d->pb = (Kh__Directory *)kh_pb_unpack(&kh__directory__descriptor, sd->directory.data,
                                          sd->directory.len, NULL, NULL, 0);
    if (d->pb == NULL) {
        snprintf(err, errlen, "signed directory does not hold a kh.Directory");
        goto fail;
    }
    d->router_sign = pem_cert(&d->pb->router_sign_cert);
    d->router_enc = pem_cert(&d->pb->router_enc_cert);
    if (d->router_sign == NULL || d->router_enc == NULL) {
        snprintf(err, errlen, "directory lacks the router's certificates");
        goto fail;
    }
    if (khc_cert_verify(trust, d->router_sign) != 0 ||
        khc_cert_org(d->router_sign, org, sizeof org) != 0 || strcmp(org, "ROUTER") != 0) {
        snprintf(err, errlen, "directory signer is not the router certified by the national CA");
        goto fail;
    }
    if (khc_verify(d->router_sign, sd->directory.data, sd->directory.len, sd->sig.data,
                   sd->sig.len) != 0) {
        snprintf(err, errlen, "directory signature does not verify");
        goto fail;
    }
    if (d->pb->spec_version != KH_SPEC_VERSION) {
        snprintf(err, errlen, "directory spec_version %u, expected %d", d->pb->spec_version,
                 KH_SPEC_VERSION);
        goto fail;
    }
    d->norgs = d->pb->n_orgs;
    d->orgs = calloc(d->norgs ? d->norgs : 1, sizeof *d->orgs);
    if (d->orgs == NULL)
        goto fail;
    for (size_t i = 0; i < d->norgs; i++) {
        Kh__OrgEntry *e = d->pb->orgs[i];
        kh_org *o = &d->orgs[i];
        o->code = e->code;
        o->name = e->name;
        o->org_class = e->org_class;
        o->endpoint = e->endpoint;
        o->sign_cert = pem_cert(&e->sign_cert);
        o->enc_cert = pem_cert(&e->enc_cert);
        if (!kh_id_org(e->code) || o->sign_cert == NULL || o->enc_cert == NULL ||
            khc_cert_verify(trust, o->sign_cert) != 0 || khc_cert_verify(trust, o->enc_cert) != 0 ||
            khc_cert_org(o->sign_cert, org, sizeof org) != 0 || strcmp(org, e->code) != 0) {
            snprintf(err, errlen, "directory entry %zu has a bad code or certificates", i);
            goto fail;
        }
    }
    d->raw = malloc(len);
    if (d->raw == NULL)
        goto fail;
    memcpy(d->raw, buf, len);
    d->rawlen = len;
    kh__signed_directory__free_unpacked(sd, NULL);
    return d;
fail:
    if (sd)
        kh__signed_directory__free_unpacked(sd, NULL);
    kh_dir_free(d);
    return NULL;
}

const char *kh_dir_successor_why(const kh_dir *cur, const kh_dir *fresh, int64_t now, int skew,
                                 char *why, size_t whylen)
{
    if (cur != NULL && fresh->pb->spec_version != cur->pb->spec_version) {
        snprintf(why, whylen, "spec version %u, the gateway speaks %u", fresh->pb->spec_version,
                 cur->pb->spec_version);
        return why;
    }
    if (cur != NULL && fresh->pb->issued_at <= cur->pb->issued_at) {
        snprintf(why, whylen,
                 "issued at %lld, not after the version in use (%lld): an older directory is "
                 "not taken",
                 (long long)fresh->pb->issued_at, (long long)cur->pb->issued_at);
        return why;
    }
    if (fresh->pb->issued_at > now + skew) {
        snprintf(why, whylen, "issued %lld s in the future (max_skew %d s)",
                 (long long)(fresh->pb->issued_at - now), skew);
        return why;
    }
    return NULL;
}

void kh_dir_free(kh_dir *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; d->orgs && i < d->norgs; i++) {
        khc_cert_free(d->orgs[i].sign_cert);
        khc_cert_free(d->orgs[i].enc_cert);
    }
    free(d->orgs);
    khc_cert_free(d->router_sign);
    khc_cert_free(d->router_enc);
    if (d->pb)
        kh__directory__free_unpacked(d->pb, NULL);
    free(d->raw);
    free(d);
}

const kh_org *kh_dir_org(const kh_dir *d, const char *code)
{
    for (size_t i = 0; code && i < d->norgs; i++)
        if (strcmp(d->orgs[i].code, code) == 0)
            return &d->orgs[i];
    return NULL;
}

static bool row_has(const Kh__LegalBasisRow *r, const char *item)
{
    for (size_t i = 0; i < r->n_items; i++)
        if (strcmp(r->items[i], item) == 0)
            return true;
    return false;
}

kh_err kh_dir_legal(const kh_dir *d, const char *asker, const char *procedure, const char *provider,
                    char *const *items, size_t n, const char **row)
{
    const kh_org *a = kh_dir_org(d, asker), *p = kh_dir_org(d, provider);
    if (a == NULL || p == NULL)
        return KH_E_UNKNOWN_ORG;
    if (n == 0)
        return KH_E_NO_LEGAL_BASIS;
    for (size_t i = 0; i < d->pb->n_legal_basis; i++) {
        const Kh__LegalBasisRow *r = d->pb->legal_basis[i];
        if (strcmp(r->asker_class, a->org_class) != 0 || strcmp(r->procedure, procedure) != 0 ||
            strcmp(r->provider_class, p->org_class) != 0)
            continue;
        size_t k = 0;
        while (k < n && row_has(r, items[k]))
            k++;
        if (k == n) {
            if (row)
                *row = r->id;
            return KH_OK;
        }
    }
    return KH_E_NO_LEGAL_BASIS;
}

bool kh_dir_field_allowed(const kh_dir *d, const char *row_id, const char *item,
                          const char *flat_name)
{
    const Kh__LegalBasisRow *r = NULL;
    for (size_t i = 0; row_id && i < d->pb->n_legal_basis && r == NULL; i++)
        if (strcmp(d->pb->legal_basis[i]->id, row_id) == 0)
            r = d->pb->legal_basis[i];
    if (r == NULL || !row_has(r, item))
        return false;
    size_t base = strcspn(flat_name, "[.");
    for (size_t i = 0; i < r->n_fields; i++) {
        const Kh__ItemFields *f = r->fields[i];
        if (strcmp(f->item_code, item) != 0)
            continue;
        for (size_t k = 0; k < f->n_names; k++)
            if (strlen(f->names[k]) == base && strncmp(f->names[k], flat_name, base) == 0)
                return true;
        return false;
    }
    return true; /* no list for this item: all its fields */
}

/* --- sealing and opening with identities --- */

int kh_identity_load(kh_identity *id, const char *code, const char *dir, char *err, size_t errlen)
{
    char path[1024];
    memset(id, 0, sizeof *id);
    snprintf(id->code, sizeof id->code, "%s", code);
    snprintf(path, sizeof path, "%s/sign.crt", dir);
    if ((id->sign_cert = khc_load_cert(path, err, errlen)) == NULL)
        goto fail;
    snprintf(path, sizeof path, "%s/sign.key", dir);
    if ((id->sign_key = khc_load_key(path, err, errlen)) == NULL)
        goto fail;
    snprintf(path, sizeof path, "%s/enc.crt", dir);
    if ((id->enc_cert = khc_load_cert(path, err, errlen)) == NULL)
        goto fail;
    snprintf(path, sizeof path, "%s/enc.key", dir);
    if ((id->enc_key = khc_load_key(path, err, errlen)) == NULL)
        goto fail;
    return 0;
fail:
    kh_identity_clear(id);
    return -1;
}

void kh_identity_clear(kh_identity *id)
{
    khc_cert_free(id->sign_cert);
    khc_cert_free(id->enc_cert);
    khc_key_free(id->sign_key); /* OpenSSL wipes key material on free */
    khc_key_free(id->enc_key);
    memset(id, 0, sizeof *id);
}

int kh_env_seal(const Kh__Header *h, const kh_identity *from, const uint8_t *body, size_t blen,
                X509 *recip, uint8_t **out, size_t *outlen)
{
    uint8_t *payload = NULL;
    size_t plen = 0;
    if (khc_seal(body, blen, from->sign_cert, from->sign_key, recip, &payload, &plen) != 0)
        return -1;
    int rc = kh_env_pack(h, from->sign_key, payload, plen, out, outlen);
    free(payload);
    return rc;
}

kh_err kh_env_open(const Kh__Envelope *env, const kh_identity *to, X509_STORE *trust,
                   X509 *expect_signer, uint8_t **body, size_t *len)
{
    if (expect_signer == NULL)
        return KH_E_UNTRUSTED_SIGNER; /* a sender the directory does not know */
    return khc_open(env->payload.data, env->payload.len, to->enc_cert, to->enc_key, trust,
                    expect_signer, body, len);
}

int kh_header_init(Kh__Header *h, uint8_t msg_id[KH_MSG_ID_LEN], Kh__MsgType type,
                   const char *sender, const char *recipient, const char *signer, int ttl)
{
    kh__header__init(h);
    if (khc_random(msg_id, KH_MSG_ID_LEN) != 0)
        return -1;
    h->spec_version = KH_SPEC_VERSION;
    h->msg_id.data = msg_id;
    h->msg_id.len = KH_MSG_ID_LEN;
    h->type = type;
    h->sender = (char *)sender;
    h->recipient = (char *)recipient;
    h->signer = (char *)signer;
    h->issued_at = (int64_t)time(NULL);
    h->expires_at = h->issued_at + ttl;
    return 0;
}
