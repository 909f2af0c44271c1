/* Unit tests for idconv's identifier rules. */
#include "idconv.h"

#include <check.h>
#include <stdlib.h>

START_TEST(municipality_check_digit)
{
    ck_assert(idconv_municipality_code_valid("131016")); /* Chiyoda */
    ck_assert(idconv_municipality_code_valid("271004")); /* Osaka City */
    ck_assert(idconv_municipality_code_valid("011002")); /* Sapporo */
    /* prefectures use the same rule: 2-digit prefecture code, 000, check digit */
    ck_assert(idconv_municipality_code_valid("130001")); /* Tokyo Metropolis */
    ck_assert(idconv_municipality_code_valid("010006")); /* Hokkaido */
    ck_assert(idconv_municipality_code_valid("270008")); /* Osaka Prefecture */
    ck_assert(!idconv_municipality_code_valid("130000"));
    /* the two edge cases of (11 - sum mod 11) mod 10: remainder 0 gives 1, remainder 1
     * gives 0 */
    ck_assert(idconv_municipality_code_valid("131041")); /* Shinjuku: sum 33 */
    ck_assert(idconv_municipality_code_valid("131130")); /* Shibuya: sum 34 */
    ck_assert(!idconv_municipality_code_valid("131040"));
    ck_assert(!idconv_municipality_code_valid("131131"));
    ck_assert(!idconv_municipality_code_valid("131017"));
    ck_assert(!idconv_municipality_code_valid("27100"));
    ck_assert(!idconv_municipality_code_valid("2710045"));
    ck_assert(!idconv_municipality_code_valid("27100a"));
    ck_assert(!idconv_municipality_code_valid(NULL));
}
END_TEST

START_TEST(org_codes)
{
    ck_assert(idconv_org_code_valid("N00001"));
    ck_assert(idconv_org_code_valid("131016"));
    ck_assert(idconv_org_code_valid("130001")); /* a prefecture */
    ck_assert(idconv_org_code_valid("S00001")); /* a fictional national body */
    ck_assert(!idconv_org_code_valid("130002"));
    ck_assert(!idconv_org_code_valid("131019"));
    ck_assert(!idconv_org_code_valid("n00001"));
    ck_assert(!idconv_org_code_valid("N0001"));
    ck_assert(!idconv_org_code_valid(""));
}
END_TEST

START_TEST(local_and_resident_and_link)
{
    ck_assert(idconv_local_id_valid("1"));
    ck_assert(idconv_local_id_valid("123456789012345"));
    ck_assert(!idconv_local_id_valid("1234567890123456"));
    ck_assert(!idconv_local_id_valid(""));
    ck_assert(!idconv_local_id_valid("12a"));
    ck_assert(idconv_resident_code_valid("12345678901"));
    ck_assert(!idconv_resident_code_valid("1234567890"));
    ck_assert(!idconv_resident_code_valid("123456789012"));
    ck_assert(idconv_link_code_valid("0123456789abcdef0123456789abcdef"));
    ck_assert(!idconv_link_code_valid("0123456789ABCDEF0123456789abcdef"));
    ck_assert(!idconv_link_code_valid("0123456789abcdef0123456789abcde"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("idconv");
    TCase *tc = tcase_create("formats");
    tcase_add_test(tc, municipality_check_digit);
    tcase_add_test(tc, org_codes);
    tcase_add_test(tc, local_and_resident_and_link);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
