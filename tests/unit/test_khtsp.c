/* Unit tests for gateway/core/khtsp.c (RFC 3161): a request answered by the
 * TSA side and checked, and each way a reply or a token must be refused. The
 * PKI (a TSA, its CA, and the national CA as a CA that does not issue time-
 * stamps) is made by tools/khpki in the folder named by KH_TSP_PKI. */
#include "khcrypto.h"
#include "khtsp.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const uint8_t data[] = "the DER bytes of a chain head's signature";
static const uint8_t nonce[KHTSP_NONCE_LEN] = {9, 8, 7, 6, 5, 4, 3, 2};
static khtsp_tsa *tsa;
static X509_STORE *tsa_ca, *other_ca;
static uint8_t *reply;
static size_t rlen;

static void path(char *out, size_t n, const char *rel)
{
    const char *pki = getenv("KH_TSP_PKI");
    snprintf(out, n, "%s/%s", pki ? pki : ".", rel);
}

/* made before Check forks */
static int setup(void)
{
    char cert[512], key[512], ca[512], nat[512], err[256];
    uint8_t *req = NULL;
    size_t reqlen = 0;
    int granted = 0;
    path(cert, sizeof cert, "tsa/tsa.crt");
    path(key, sizeof key, "tsa/tsa.key");
    path(ca, sizeof ca, "tsa-ca.crt");
    path(nat, sizeof nat, "national-ca.crt");
    if ((tsa = khtsp_tsa_new(cert, key, "2.999.3161.1", err, sizeof err)) == NULL ||
        (tsa_ca = khc_store_from_file(ca, err, sizeof err)) == NULL ||
        (other_ca = khc_store_from_file(nat, err, sizeof err)) == NULL) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    if (khtsp_request(data, sizeof data, nonce, &req, &reqlen, err, sizeof err) != 0 ||
        khtsp_tsa_reply(tsa, req, reqlen, 77, &reply, &rlen, &granted) != 0 || !granted) {
        fprintf(stderr, "setup: no granted reply\n");
        return -1;
    }
    free(req);
    return 0;
}

START_TEST(granted_reply_checks_and_its_token_too)
{
    uint8_t *tok = NULL;
    size_t toklen = 0;
    int64_t gen = 0, gen2 = 0;
    char why[200] = "";
    ck_assert_int_eq(khtsp_reply_check(reply, rlen, data, sizeof data, nonce, tsa_ca, &tok, &toklen,
                                       &gen, why, sizeof why),
                     0);
    ck_assert_ptr_nonnull(tok);
    ck_assert_int_gt((int)toklen, 100);
    ck_assert_int_lt(llabs((long long)(gen - (int64_t)time(NULL))), 120);
    ck_assert_int_eq(
        khtsp_token_check(tok, toklen, data, sizeof data, tsa_ca, &gen2, why, sizeof why), 0);
    ck_assert_int_eq((int)(gen2 - gen), 0);
    free(tok);
}
END_TEST

START_TEST(reply_refused_for_other_data_nonce_or_ca)
{
    uint8_t *tok = NULL;
    size_t toklen = 0;
    int64_t gen = 0;
    char why[200];
    static const uint8_t other[] = "other bytes";
    const uint8_t bad_nonce[KHTSP_NONCE_LEN] = {9, 8, 7, 6, 5, 4, 3, 1};
    ck_assert_int_eq(khtsp_reply_check(reply, rlen, other, sizeof other, nonce, tsa_ca, &tok,
                                       &toklen, &gen, why, sizeof why),
                     -1);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(why, "does not verify") != NULL, "why: %s", why);
    ck_assert_int_eq(khtsp_reply_check(reply, rlen, data, sizeof data, bad_nonce, tsa_ca, &tok,
                                       &toklen, &gen, why, sizeof why),
                     -1);
    ck_assert_msg(strstr(why, "nonce") != NULL, "why: %s", why);
    ck_assert_int_eq(khtsp_reply_check(reply, rlen, data, sizeof data, nonce, other_ca, &tok,
                                       &toklen, &gen, why, sizeof why),
                     -1);
    ck_assert_ptr_null(tok);
}
END_TEST

START_TEST(reply_refused_when_not_one)
{
    uint8_t *tok = NULL, *cut = malloc(rlen + 1);
    size_t toklen = 0;
    int64_t gen = 0;
    char why[200];
    ck_assert_ptr_nonnull(cut);
    memcpy(cut, reply, rlen);
    cut[rlen] = 0;
    /* truncated, one byte too many, empty, over the limit */
    ck_assert_int_eq(khtsp_reply_check(cut, rlen - 1, data, sizeof data, nonce, tsa_ca, &tok,
                                       &toklen, &gen, why, sizeof why),
                     -1);
    ck_assert_msg(strstr(why, "not a time-stamp response") != NULL, "why: %s", why);
    ck_assert_int_eq(khtsp_reply_check(cut, rlen + 1, data, sizeof data, nonce, tsa_ca, &tok,
                                       &toklen, &gen, why, sizeof why),
                     -1);
    ck_assert_int_eq(khtsp_reply_check(cut, 0, data, sizeof data, nonce, tsa_ca, &tok, &toklen,
                                       &gen, why, sizeof why),
                     -1);
    ck_assert_int_eq(khtsp_reply_check(cut, KHTSP_MAX_REPLY + 1, data, sizeof data, nonce, tsa_ca,
                                       &tok, &toklen, &gen, why, sizeof why),
                     -1);
    ck_assert_ptr_null(tok);
    free(cut);
}
END_TEST

START_TEST(a_rejection_gives_no_token)
{
    static const uint8_t junk[] = "not a TimeStampReq";
    uint8_t *rej = NULL, *tok = NULL;
    size_t rejlen = 0, toklen = 0;
    int granted = 1;
    int64_t gen = 0;
    char why[200];
    ck_assert_int_eq(khtsp_tsa_reply(tsa, junk, sizeof junk, 78, &rej, &rejlen, &granted), 0);
    ck_assert_int_eq(granted, 0);
    ck_assert_int_eq(khtsp_reply_check(rej, rejlen, data, sizeof data, nonce, tsa_ca, &tok, &toklen,
                                       &gen, why, sizeof why),
                     -1);
    ck_assert_ptr_null(tok);
    free(rej);
}
END_TEST

START_TEST(token_refused_for_other_data_or_ca)
{
    uint8_t *tok = NULL;
    size_t toklen = 0;
    int64_t gen = 0;
    char why[200];
    static const uint8_t other[] = "other bytes";
    ck_assert_int_eq(khtsp_reply_check(reply, rlen, data, sizeof data, nonce, tsa_ca, &tok, &toklen,
                                       &gen, why, sizeof why),
                     0);
    ck_assert_int_eq(
        khtsp_token_check(tok, toklen, other, sizeof other, tsa_ca, &gen, why, sizeof why), -1);
    ck_assert_int_eq(
        khtsp_token_check(tok, toklen, data, sizeof data, other_ca, &gen, why, sizeof why), -1);
    ck_assert_int_eq(
        khtsp_token_check(tok, toklen - 1, data, sizeof data, tsa_ca, &gen, why, sizeof why), -1);
    ck_assert_msg(strstr(why, "not a time-stamp token") != NULL, "why: %s", why);
    /* the whole reply is not a token */
    ck_assert_int_eq(
        khtsp_token_check(reply, rlen, data, sizeof data, tsa_ca, &gen, why, sizeof why), -1);
    free(tok);
}
END_TEST

START_TEST(tsa_needs_a_time_stamping_certificate)
{
    char cert[512], key[512], why[200] = "";
    path(cert, sizeof cert, "national-ca.crt"); /* a CA: no timeStamping usage */
    path(key, sizeof key, "national-ca.key");
    khtsp_tsa *t = khtsp_tsa_new(cert, key, "2.999.3161.1", why, sizeof why);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(why, "cannot sign time-stamps") != NULL, "why: %s", why);
    path(cert, sizeof cert, "tsa/tsa.crt");
    path(key, sizeof key, "tsa/tsa.key");
    ck_assert_ptr_null(khtsp_tsa_new(cert, key, "not an OID", why, sizeof why));
    ck_assert_msg(strstr(why, "OID") != NULL, "why: %s", why);
}
END_TEST

int main(void)
{
    if (setup() != 0)
        return 1;
    Suite *s = suite_create("khtsp");
    TCase *tc = tcase_create("all");
    tcase_add_test(tc, granted_reply_checks_and_its_token_too);
    tcase_add_test(tc, reply_refused_for_other_data_nonce_or_ca);
    tcase_add_test(tc, reply_refused_when_not_one);
    tcase_add_test(tc, a_rejection_gives_no_token);
    tcase_add_test(tc, token_refused_for_other_data_or_ca);
    tcase_add_test(tc, tsa_needs_a_time_stamping_certificate);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(reply);
    khtsp_tsa_free(tsa);
    khc_store_free(tsa_ca);
    khc_store_free(other_ca);
    return failed == 0 ? 0 : 1;
}
