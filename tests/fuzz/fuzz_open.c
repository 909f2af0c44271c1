/* A sealed message as a gateway receives it on its peer API, past the
 * parsing fuzz_envelope covers: the header's signature (kh_env_verify) and
 * the payload opened with the recipient's keys (kh_env_open: decryption,
 * then the inner SignedData and its signer). The first byte picks what the
 * rest is:
 *   even: an Envelope as received, from 271004 to 131016 (a mutated
 *         signature or ciphertext fails its check: what comes before the
 *         check is what is fuzzed);
 *   odd:  the inner layer, a SignedData, which this target encrypts to
 *         131016 (khc_seal_inner) before opening it: encryption
 *         certificates are public, so anyone can make a gateway decrypt
 *         any inner content and parse it.
 * Seeds: a sealed query and its inner layer, made from the fuzzing PKI at
 * start (fuzz_util.h). */
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

static kh_identity from, to;
static X509_STORE *trust;

static void load(kh_identity *id, const char *code)
{
    char rel[64], dir[1024], err[256];
    snprintf(rel, sizeof rel, "org/%s", code);
    fuzz_pki(rel, dir, sizeof dir);
    if (kh_identity_load(id, code, dir, err, sizeof err) != 0)
        fuzz_die(err);
}

static void make_seeds(void)
{
    static const uint8_t body[] = "a query body: item TK001 of link code 0123456789abcdef";
    Kh__Header h;
    uint8_t msg_id[KH_MSG_ID_LEN], *env = NULL, *inner = NULL;
    size_t envlen = 0, innerlen = 0;
    if (kh_header_init(&h, msg_id, KH__MSG_TYPE__QUERY, "271004", "131016", "271004", 300) != 0 ||
        kh_env_seal(&h, &from, body, sizeof body - 1, to.enc_cert, &env, &envlen) != 0 ||
        khc_seal_signed(body, sizeof body - 1, from.sign_cert, from.sign_key, &inner, &innerlen) !=
            0)
        fuzz_die("cannot make the seed envelope");
    fuzz_seed("query.envelope", (const uint8_t *)"\0", 1, env, envlen);
    fuzz_seed("query.inner", (const uint8_t *)"\1", 1, inner, innerlen);
    free(env);
    khc_free_secret(inner, innerlen);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[1024], err[256];
    (void)argc;
    (void)argv;
    load(&from, "271004");
    load(&to, "131016");
    fuzz_pki("national-ca.crt", path, sizeof path);
    if ((trust = khc_store_from_file(path, err, sizeof err)) == NULL)
        fuzz_die(err);
    make_seeds();
    return 0;
}

static void open_payload(const uint8_t *p, size_t len)
{
    uint8_t *body = NULL;
    size_t blen = 0;
    if (khc_open(p, len, to.enc_cert, to.enc_key, trust, from.sign_cert, &body, &blen) == KH_OK)
        khc_free_secret(body, blen);
    else if (body != NULL)
        abort(); /* a refusal hands out nothing */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        uint8_t *sealed = NULL;
        size_t len = 0;
        if (khc_seal_inner(data + 1, size - 1, to.enc_cert, &sealed, &len) == 0) {
            open_payload(sealed, len);
            free(sealed);
        }
        return 0;
    }
    Kh__Envelope *env = NULL;
    Kh__Header *h = NULL;
    char why[160];
    if (kh_env_parse(data + 1, size - 1, &env, &h, why, sizeof why) != KH_OK)
        return 0;
    (void)kh_env_verify(env, from.sign_cert);
    uint8_t *body = NULL;
    size_t blen = 0;
    if (kh_env_open(env, &to, trust, from.sign_cert, &body, &blen) == KH_OK)
        khc_free_secret(body, blen);
    kh_env_free(env, h);
    return 0;
}
