/* khc_seal_tool: a thin command-line front to khcrypto for the interop test
 * (test_cms_interop.sh). It prints nothing on success.
 *   khc_seal_tool seal SIGN_CERT SIGN_KEY RECIP_CERT IN OUT   (DER payload)
 *   khc_seal_tool sign KEY IN OUT                             (DER ECDSA signature)
 *   khc_seal_tool open RECIP_CERT RECIP_KEY CA_FILE SIGNER_CERT IN OUT
 *                                                   (refusal code on stderr)
 * Exit status: 0 ok, 1 failure, 2 usage. */
#include "khcrypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IN (16u * 1024 * 1024)

static int read_all(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        if (n == cap) {
            if (cap > MAX_IN) {
                free(buf);
                buf = NULL;
                break;
            }
            uint8_t *b = realloc(buf, cap * 2);
            if (b == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (buf == NULL || bad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int write_all(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    int ok = fwrite(data, 1, len, f) == len;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "khc_seal_tool: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

int main(int argc, char **argv)
{
    char err[512] = "";
    int rc = 1;
    uint8_t *in = NULL, *out = NULL;
    size_t inlen = 0, outlen = 0;
    X509 *c1 = NULL, *c2 = NULL, *signer = NULL;
    EVP_PKEY *k = NULL;
    X509_STORE *store = NULL;

    if (argc == 7 && strcmp(argv[1], "seal") == 0) {
        if ((c1 = khc_load_cert(argv[2], err, sizeof err)) == NULL ||
            (k = khc_load_key(argv[3], err, sizeof err)) == NULL ||
            (c2 = khc_load_cert(argv[4], err, sizeof err)) == NULL) {
            rc = fail("load", err);
        } else if (read_all(argv[5], &in, &inlen) != 0) {
            rc = fail("cannot read", argv[5]);
        } else if (khc_seal(in, inlen, c1, k, c2, &out, &outlen) != 0) {
            rc = fail("seal failed", NULL);
        } else {
            rc = write_all(argv[6], out, outlen) == 0 ? 0 : fail("cannot write", argv[6]);
        }
    } else if (argc == 5 && strcmp(argv[1], "sign") == 0) {
        if ((k = khc_load_key(argv[2], err, sizeof err)) == NULL) {
            rc = fail("load", err);
        } else if (read_all(argv[3], &in, &inlen) != 0) {
            rc = fail("cannot read", argv[3]);
        } else if (khc_sign(k, in, inlen, &out, &outlen) != 0) {
            rc = fail("sign failed", NULL);
        } else {
            rc = write_all(argv[4], out, outlen) == 0 ? 0 : fail("cannot write", argv[4]);
        }
    } else if (argc == 8 && strcmp(argv[1], "open") == 0) {
        if ((c1 = khc_load_cert(argv[2], err, sizeof err)) == NULL ||
            (k = khc_load_key(argv[3], err, sizeof err)) == NULL ||
            (store = khc_store_from_file(argv[4], err, sizeof err)) == NULL ||
            (signer = khc_load_cert(argv[5], err, sizeof err)) == NULL) {
            rc = fail("load", err);
        } else if (read_all(argv[6], &in, &inlen) != 0) {
            rc = fail("cannot read", argv[6]);
        } else {
            kh_err e = khc_open(in, inlen, c1, k, store, signer, &out, &outlen);
            if (e != KH_OK)
                rc = fail("open refused", kh_err_code(e));
            else
                rc = write_all(argv[7], out, outlen) == 0 ? 0 : fail("cannot write", argv[7]);
        }
    } else {
        fprintf(stderr,
                "usage: khc_seal_tool seal SIGN_CERT SIGN_KEY RECIP_CERT IN OUT\n"
                "       khc_seal_tool sign KEY IN OUT\n"
                "       khc_seal_tool open RECIP_CERT RECIP_KEY CA_FILE SIGNER_CERT IN OUT\n");
        return 2;
    }
    khc_free_secret(in, inlen);
    khc_free_secret(out, outlen);
    khc_cert_free(c1);
    khc_cert_free(c2);
    khc_cert_free(signer);
    khc_key_free(k);
    khc_store_free(store);
    return rc;
}
