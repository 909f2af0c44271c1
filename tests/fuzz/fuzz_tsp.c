/* RFC 3161 time-stamping (khtsp.c), the two parsers of untrusted input:
 * what a TSA answers to a gateway (khtsp_reply_check: a TimeStampResp,
 * then its signature, imprint and nonce) and what khctl verify reads from a
 * database or an export (khtsp_token_check: a TimeStampToken), and on the
 * TSA's side the request any client may send (khtsp_tsa_reply, tools/khtsa).
 * The first byte picks: 0 a reply, 1 a token, 2 a request; the rest is it.
 * Seeds: a request, and the real reply and token to it, made from the
 * fuzzing PKI's TSA at start (fuzz_util.h). */
#include "fuzz_util.h"
#include "khcrypto.h"
#include "khtsp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t stamped[] = "a chain head's signature";
static const uint8_t nonce[KHTSP_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
static khtsp_tsa *tsa;
static X509_STORE *trust;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char cert[1024], key[1024], ca[1024], err[256];
    uint8_t *req = NULL, *reply = NULL, *tok = NULL;
    size_t reqlen = 0, rlen = 0, toklen = 0;
    int granted = 0;
    int64_t gen = 0;
    (void)argc;
    (void)argv;
    fuzz_pki("tsa/tsa.crt", cert, sizeof cert);
    fuzz_pki("tsa/tsa.key", key, sizeof key);
    fuzz_pki("tsa-ca.crt", ca, sizeof ca);
    if ((tsa = khtsp_tsa_new(cert, key, "2.999.3161.1", err, sizeof err)) == NULL ||
        (trust = khc_store_from_file(ca, err, sizeof err)) == NULL)
        fuzz_die(err);
    if (khtsp_request(stamped, sizeof stamped, nonce, &req, &reqlen, err, sizeof err) != 0 ||
        khtsp_tsa_reply(tsa, req, reqlen, 1, &reply, &rlen, &granted) != 0 || !granted ||
        khtsp_reply_check(reply, rlen, stamped, sizeof stamped, nonce, trust, &tok, &toklen, &gen,
                          err, sizeof err) != 0)
        fuzz_die("cannot make the seeds");
    fuzz_seed("reply", (const uint8_t *)"\0", 1, reply, rlen);
    fuzz_seed("token", (const uint8_t *)"\1", 1, tok, toklen);
    fuzz_seed("request", (const uint8_t *)"\2", 1, req, reqlen);
    free(req);
    free(reply);
    free(tok);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int64_t gen = 0;
    int granted = 0;
    char why[200];
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        if (khtsp_reply_check(data + 1, size - 1, stamped, sizeof stamped, nonce, trust, &out,
                              &outlen, &gen, why, sizeof why) != 0 &&
            out != NULL)
            abort(); /* a refusal hands out nothing */
        break;
    case 1:
        (void)khtsp_token_check(data + 1, size - 1, stamped, sizeof stamped, trust, &gen, why,
                                sizeof why);
        break;
    default:
        if (khtsp_tsa_reply(tsa, data + 1, size - 1, 2, &out, &outlen, &granted) != 0 &&
            out != NULL)
            abort();
    }
    free(out);
    return 0;
}
