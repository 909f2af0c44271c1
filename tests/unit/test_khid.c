/* Unit tests for khid.c: the one validator of each identifier kind. */
#include "khid.h"

#include <check.h>
#include <stdlib.h>

START_TEST(municipality_check_digit)
{
    ck_assert(kh_id_municipality("131016")); /* Chiyoda */
    ck_assert(kh_id_municipality("271004")); /* Osaka City */
    ck_assert(kh_id_municipality("011002")); /* Sapporo */
    /* prefectures use the same rule: 2-digit prefecture code, 000, check digit */
    ck_assert(kh_id_municipality("130001")); /* Tokyo Metropolis */
    ck_assert(kh_id_municipality("010006")); /* Hokkaido */
    ck_assert(kh_id_municipality("270008")); /* Osaka Prefecture */
    ck_assert(!kh_id_municipality("130000"));
    /* the two edge cases of (11 - sum mod 11) mod 10: remainder 0 gives 1, remainder 1
     * gives 0 */
    ck_assert(kh_id_municipality("131041")); /* Shinjuku: sum 33 */
    ck_assert(kh_id_municipality("131130")); /* Shibuya: sum 34 */
    ck_assert(!kh_id_municipality("131040"));
    ck_assert(!kh_id_municipality("131131"));
    ck_assert(!kh_id_municipality("131017"));
    ck_assert(!kh_id_municipality("27100"));
    ck_assert(!kh_id_municipality("2710045"));
    ck_assert(!kh_id_municipality("27100a"));
    ck_assert(!kh_id_municipality(NULL));
}
END_TEST

START_TEST(org_codes)
{
    ck_assert(kh_id_org("N00001"));
    ck_assert(kh_id_org("131016"));
    ck_assert(kh_id_org("130001")); /* a prefecture */
    ck_assert(kh_id_org("S00001")); /* a fictional national body */
    ck_assert(!kh_id_org("130002"));
    ck_assert(!kh_id_org("131019"));
    ck_assert(!kh_id_org("n00001"));
    ck_assert(!kh_id_org("N0001"));
    ck_assert(!kh_id_org(""));
}
END_TEST

START_TEST(local_and_resident_and_link)
{
    ck_assert(kh_id_local_id("1"));
    ck_assert(kh_id_local_id("123456789012345"));
    ck_assert(!kh_id_local_id("1234567890123456"));
    ck_assert(!kh_id_local_id(""));
    ck_assert(!kh_id_local_id("12a"));
    ck_assert(kh_id_resident_code("12345678901"));
    ck_assert(!kh_id_resident_code("1234567890"));
    ck_assert(!kh_id_resident_code("123456789012"));
    ck_assert(kh_id_link_code("0123456789abcdef0123456789abcdef"));
    ck_assert(!kh_id_link_code("0123456789ABCDEF0123456789abcdef"));
    ck_assert(!kh_id_link_code("0123456789abcdef0123456789abcde"));
}
END_TEST

START_TEST(catalogue_codes_and_tokens)
{
    ck_assert(kh_id_code("JT001", 16));
    ck_assert(kh_id_code("TK001", 5));
    ck_assert(!kh_id_code("TK001", 4)); /* longer than max */
    ck_assert(!kh_id_code("tk001", 16));
    ck_assert(!kh_id_code("", 16));
    ck_assert(!kh_id_code("TK-01", 16));
    ck_assert(!kh_id_code(NULL, 16));
    ck_assert(kh_id_token("staff_01-A", 32));
    ck_assert(!kh_id_token("staff 01", 32));
    ck_assert(!kh_id_token("", 32));
    ck_assert(!kh_id_token("abc", 2));
    ck_assert(!kh_id_token("\xe5\xb1\xb1", 32)); /* UTF-8 is not a token */
}
END_TEST

START_TEST(hex_ids)
{
    ck_assert(kh_id_hex("0123456789abcdef0123456789abcdef", 32));
    ck_assert(!kh_id_hex("0123456789ABCDEF0123456789abcdef", 32));
    ck_assert(!kh_id_hex("0123456789abcdef0123456789abcde", 32));
    ck_assert(!kh_id_hex("0123456789abcdef0123456789abcdef0", 32));
    ck_assert(!kh_id_hex("0123456789abcdeg0123456789abcdef", 32));
    ck_assert(!kh_id_hex(NULL, 32));
}
END_TEST

/* One date rule everywhere: the calendar decides, not a range of digits. */
START_TEST(dates)
{
    ck_assert(kh_id_date("20240401"));
    ck_assert(kh_id_date("20240229")); /* leap year */
    ck_assert(kh_id_date("20000229")); /* divisible by 400 */
    ck_assert(kh_id_date("00010101"));
    ck_assert(kh_id_date("99991231"));
    ck_assert(!kh_id_date("20230231")); /* the date gw_date_ok once let through */
    ck_assert(!kh_id_date("20230229"));
    ck_assert(!kh_id_date("19000229")); /* divisible by 100, not by 400 */
    ck_assert(!kh_id_date("20240431"));
    ck_assert(!kh_id_date("20241301"));
    ck_assert(!kh_id_date("20240001"));
    ck_assert(!kh_id_date("20240100"));
    ck_assert(!kh_id_date("00000101"));
    ck_assert(!kh_id_date("2024041"));
    ck_assert(!kh_id_date("202404011"));
    ck_assert(!kh_id_date("2024-04-01"));
    ck_assert(!kh_id_date(""));
    ck_assert(!kh_id_date(NULL));
    ck_assert(kh_id_iso_date("2024-04-01"));
    ck_assert(kh_id_iso_date("2024-02-29"));
    ck_assert(!kh_id_iso_date("2023-02-29"));
    ck_assert(!kh_id_iso_date("2023-02-31"));
    ck_assert(!kh_id_iso_date("20240401"));
    ck_assert(!kh_id_iso_date("2024/04/01"));
    ck_assert(!kh_id_iso_date("2024-4-01"));
    ck_assert(!kh_id_iso_date(NULL));
}
END_TEST

START_TEST(text_without_nul)
{
    static const char cut[] = {'5', '5', '5', '\0', '1'};
    ck_assert(kh_id_text("555", 3));
    ck_assert(!kh_id_text(cut, sizeof cut));
    ck_assert(kh_id_text(cut, 3));
    ck_assert(!kh_id_text(NULL, 0));
    /* text is UTF-8 too: where it stops being text is named */
    ck_assert_int_eq(kh_text_bad("\xe6\xbc\xa2\xe5\xad\x97", 6), -1); /* 漢字 */
    ck_assert_int_eq(kh_text_bad("\xf0\x9f\x98\x80", 4), -1);         /* U+1F600 */
    ck_assert_int_eq(kh_text_bad(cut, sizeof cut), 3);
    ck_assert_int_eq(kh_text_bad("ab\xff", 3), 2);
    ck_assert_int_eq(kh_text_bad("a\xc0\xaf", 3), 1);        /* overlong '/' */
    ck_assert_int_eq(kh_text_bad("\xed\xa0\x80", 3), 0);     /* a surrogate */
    ck_assert_int_eq(kh_text_bad("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    ck_assert_int_eq(kh_text_bad("\xe6\xbc", 2), 0);         /* cut short */
    ck_assert(!kh_id_text("TK\xc3\x28", 4));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("khid");
    TCase *tc = tcase_create("formats");
    tcase_add_test(tc, municipality_check_digit);
    tcase_add_test(tc, org_codes);
    tcase_add_test(tc, local_and_resident_and_link);
    tcase_add_test(tc, catalogue_codes_and_tokens);
    tcase_add_test(tc, hex_ids);
    tcase_add_test(tc, dates);
    tcase_add_test(tc, text_without_nul);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
