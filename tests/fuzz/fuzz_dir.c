/* The signed directory as a gateway loads it from the router (kh_dir_load),
 * then reads it: its organisations, the legal-basis check and the fields a
 * row allows. The first byte picks what the rest is:
 *   even: a SignedDirectory as received (its signature must verify, so
 *         mutations stop there: the checks before it are what is fuzzed);
 *   odd:  a Directory, which this target signs with the router's key of the
 *         fuzzing PKI, so that everything after the signature is fuzzed too
 *         (as if the router itself were hostile or its key stolen).
 * Seeds: a directory of two organisations and three legal-basis rows made
 * from the PKI at start (fuzz_util.h). */
#include "fuzz_util.h"
#include "khcrypto.h"
#include "khenv.h"
#include "khpb.h"
#include "kakehashi.pb-c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *router_key;
static X509_STORE *trust;

static void pem(const char *rel, ProtobufCBinaryData *out)
{
    char path[1024];
    fuzz_pki(rel, path, sizeof path);
    if (khc_read_file(path, &out->data, &out->len) != 0)
        fuzz_die("cannot read a certificate of the PKI");
}

/* Wraps a Directory in a SignedDirectory signed by the router. */
static int sign_dir(const uint8_t *dir, size_t len, uint8_t **out, size_t *outlen)
{
    Kh__SignedDirectory sd = KH__SIGNED_DIRECTORY__INIT;
    uint8_t *sig = NULL;
    size_t slen = 0;
    if (khc_sign(router_key, dir, len, &sig, &slen) != 0)
        return -1;
    sd.directory.data = (uint8_t *)dir;
    sd.directory.len = len;
    sd.sig.data = sig;
    sd.sig.len = slen;
    int rc = kh_pb_pack(&sd.base, out, outlen);
    free(sig);
    return rc;
}

static void make_seeds(void)
{
    static char *items1[] = {"TK001", "TK002"}, *items2[] = {"TK002"};
    static char *names[] = {"name", "address", "members"};
    Kh__OrgEntry orgs[2];
    Kh__OrgEntry *optr[2] = {&orgs[0], &orgs[1]};
    const char *codes[2] = {"131016", "271004"};
    for (int i = 0; i < 2; i++) {
        char rel[64];
        kh__org_entry__init(&orgs[i]);
        orgs[i].code = (char *)codes[i];
        orgs[i].name = (char *)(i ? "Synthetic City B" : "Synthetic Ward A");
        orgs[i].org_class = "municipality";
        orgs[i].endpoint = (char *)(i ? "127.0.0.1:29402" : "127.0.0.1:29401");
        snprintf(rel, sizeof rel, "org/%s/sign.crt", codes[i]);
        pem(rel, &orgs[i].sign_cert);
        snprintf(rel, sizeof rel, "org/%s/enc.crt", codes[i]);
        pem(rel, &orgs[i].enc_cert);
    }
    Kh__ItemFields f = KH__ITEM_FIELDS__INIT;
    Kh__ItemFields *fptr[1] = {&f};
    f.item_code = "TK001";
    f.names = names;
    f.n_names = 3;
    Kh__LegalBasisRow rows[3];
    Kh__LegalBasisRow *rptr[3] = {&rows[0], &rows[1], &rows[2]};
    for (int i = 0; i < 3; i++) {
        kh__legal_basis_row__init(&rows[i]);
        rows[i].asker_class = "municipality";
        rows[i].provider_class = "municipality";
    }
    rows[0].id = "R0001";
    rows[0].procedure = "P001";
    rows[0].items = items1;
    rows[0].n_items = 2;
    rows[0].fields = fptr;
    rows[0].n_fields = 1;
    rows[1].id = "R0002";
    rows[1].procedure = "P002";
    rows[1].items = items2;
    rows[1].n_items = 1;
    rows[2].id = "R0003";
    rows[2].procedure = "P003";
    rows[2].asker_class = "pension";
    rows[2].items = items1;
    rows[2].n_items = 1;
    Kh__Directory d = KH__DIRECTORY__INIT;
    d.spec_version = KH_SPEC_VERSION;
    d.issued_at = 1800000000;
    d.legal_basis_version = "2026-04";
    d.orgs = optr;
    d.n_orgs = 2;
    d.legal_basis = rptr;
    d.n_legal_basis = 3;
    pem("router/sign.crt", &d.router_sign_cert);
    pem("router/enc.crt", &d.router_enc_cert);
    uint8_t *dir = NULL, *sd = NULL;
    size_t dlen = 0, sdlen = 0;
    if (kh_pb_pack(&d.base, &dir, &dlen) != 0 || sign_dir(dir, dlen, &sd, &sdlen) != 0)
        fuzz_die("cannot make the seed directory");
    fuzz_seed("directory.inner", (const uint8_t *)"\1", 1, dir, dlen);
    fuzz_seed("directory.signed", (const uint8_t *)"\0", 1, sd, sdlen);
    for (int i = 0; i < 2; i++) {
        free(orgs[i].sign_cert.data);
        free(orgs[i].enc_cert.data);
    }
    free(d.router_sign_cert.data);
    free(d.router_enc_cert.data);
    free(dir);
    free(sd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[1024], err[256];
    (void)argc;
    (void)argv;
    fuzz_pki("router/sign.key", path, sizeof path);
    if ((router_key = khc_load_key(path, err, sizeof err)) == NULL)
        fuzz_die(err);
    fuzz_pki("national-ca.crt", path, sizeof path);
    if ((trust = khc_store_from_file(path, err, sizeof err)) == NULL)
        fuzz_die(err);
    make_seeds();
    return 0;
}

/* Reads a loaded directory the ways a gateway does. */
static void read_dir(const kh_dir *d)
{
    (void)kh_dir_org(d, "000000");
    for (size_t i = 0; i < d->norgs; i++)
        if (kh_dir_org(d, d->orgs[i].code) == NULL)
            abort(); /* every organisation loaded can be found */
    const Kh__Directory *pb = d->pb;
    for (size_t i = 0; i < pb->n_legal_basis; i++) {
        const Kh__LegalBasisRow *r = pb->legal_basis[i];
        const char *row = NULL;
        (void)kh_dir_legal(d, r->asker_class, r->procedure, r->provider_class, r->items, r->n_items,
                           &row);
        for (size_t k = 0; k < r->n_fields; k++)
            for (size_t n = 0; n < r->fields[k]->n_names; n++)
                (void)kh_dir_field_allowed(d, r->id, r->fields[k]->item_code,
                                           r->fields[k]->names[n]);
        (void)kh_dir_field_allowed(d, r->id, "TK001", "members[2].name");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *signed_dir = NULL;
    size_t len = 0;
    char err[256];
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        if (sign_dir(data + 1, size - 1, &signed_dir, &len) != 0)
            return 0;
    }
    kh_dir *d = signed_dir ? kh_dir_load(signed_dir, len, trust, err, sizeof err)
                           : kh_dir_load(data + 1, size - 1, trust, err, sizeof err);
    if (d != NULL) {
        read_dir(d);
        kh_dir_free(d);
    }
    free(signed_dir);
    return 0;
}
