/* Unit tests for refdb_validate: one row per rule (and its edges). Every
 * refused row checks the code, that the message names the field, and that
 * the message does not carry the offending value. */
#include "refdb.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const spouse_codes[] = {"0", "1", "2", "3"};

static refdb_field_spec spec[] = {
    {.name = "fiscal_year", .type = "9", .length = 4, .mandatory = true},
    {.name = "total_income", .type = "S9", .length = 13, .mandatory = true},
    {.name = "annual_tax", .type = "S9", .length = 13},
    {.name = "spouse_category",
     .type = "CODE",
     .length = 1,
     .code_table = "SPOUSE",
     .codes = spouse_codes,
     .ncodes = 4},
    {.name = "remarks", .type = "X", .length = 5},
    {.name = "move_in_date", .type = "DATE", .length = 8},
    {.name = "empty_code", .type = "CODE", .length = 2, .code_table = "NONE"},
};

static const refdb_layout layout = {.item_code = "TK001",
                                    .layout_version = 1,
                                    .nfields = sizeof spec / sizeof spec[0],
                                    .fields = spec};

#define MAXF 4
typedef struct {
    const char *what;
    /* name/value pairs after the two mandatory fields (added unless skip_base) */
    const char *f[MAXF][2];
    bool skip_base;
    kh_err want;
    const char *field; /* the field the message must name ("field NAME:") */
    const char *rule;  /* a fragment of the rule the message must state */
} vcase;

static const vcase cases[] = {
    {"minimal valid", {{0}}, false, KH_OK, NULL, NULL},
    {"all fields valid",
     {{"annual_tax", "-1200000"},
      {"spouse_category", "2"},
      {"remarks", "千代田ab"},
      {"move_in_date", "20240229"}},
     false,
     KH_OK,
     NULL,
     NULL},
    {"empty optional field is no value",
     {{"annual_tax", ""}, {"spouse_category", ""}},
     false,
     KH_OK,
     NULL,
     NULL},
    /* names */
    {"unknown field",
     {{"nickname", "Taro"}},
     false,
     KH_E_ITEM_INVALID,
     "nickname",
     "not in the layout"},
    {"malformed field name",
     {{"Bad Name!", "Taro"}},
     false,
     KH_E_ITEM_INVALID,
     "(malformed name)",
     "not in the layout"},
    {"empty field name",
     {{"", "Taro"}},
     false,
     KH_E_ITEM_INVALID,
     "(empty name)",
     "not in the layout"},
    {"duplicate field",
     {{"annual_tax", "5"}, {"annual_tax", "777777"}},
     false,
     KH_E_ITEM_INVALID,
     "annual_tax",
     "more than once"},
    {"duplicate mandatory field",
     {{"fiscal_year", "2031"}},
     false,
     KH_E_ITEM_INVALID,
     "fiscal_year",
     "more than once"},
    /* mandatory */
    {"mandatory missing",
     {{"fiscal_year", "2024"}},
     true,
     KH_E_ITEM_INVALID,
     "total_income",
     "mandatory"},
    {"mandatory empty",
     {{"fiscal_year", ""}, {"total_income", "3500000"}},
     true,
     KH_E_ITEM_INVALID,
     "fiscal_year",
     "mandatory"},
    {"nothing at all", {{0}}, true, KH_E_ITEM_INVALID, "fiscal_year", "mandatory"},
    /* 9(n) */
    {"9(4) too long",
     {{"fiscal_year", "20245"}, {"total_income", "1"}},
     true,
     KH_E_ITEM_INVALID,
     "fiscal_year",
     "9(4) expects 1..4 digits"},
    {"9(4) letter",
     {{"fiscal_year", "20a4"}, {"total_income", "1"}},
     true,
     KH_E_ITEM_INVALID,
     "fiscal_year",
     "9(4) expects 1..4 digits"},
    {"9(4) sign",
     {{"fiscal_year", "-202"}, {"total_income", "1"}},
     true,
     KH_E_ITEM_INVALID,
     "fiscal_year",
     "9(4) expects 1..4 digits"},
    {"9(4) space",
     {{"fiscal_year", " 202"}, {"total_income", "1"}},
     true,
     KH_E_ITEM_INVALID,
     "fiscal_year",
     "9(4) expects 1..4 digits"},
    {"9(4) zero padded ok",
     {{"fiscal_year", "0024"}, {"total_income", "1"}},
     true,
     KH_OK,
     NULL,
     NULL},
    /* S9(n) */
    {"S9(13) 14 digits",
     {{"annual_tax", "12345678901234"}},
     false,
     KH_E_ITEM_INVALID,
     "annual_tax",
     "S9(13) expects an optional '-' and 1..13 digits"},
    {"S9(13) negative 13 digits ok", {{"annual_tax", "-1234567890123"}}, false, KH_OK, NULL, NULL},
    {"S9(13) negative 14 digits",
     {{"annual_tax", "-12345678901234"}},
     false,
     KH_E_ITEM_INVALID,
     "annual_tax",
     "S9(13)"},
    {"S9(13) plus sign",
     {{"annual_tax", "+500"}},
     false,
     KH_E_ITEM_INVALID,
     "annual_tax",
     "S9(13)"},
    {"S9(13) double minus",
     {{"annual_tax", "--500"}},
     false,
     KH_E_ITEM_INVALID,
     "annual_tax",
     "S9(13)"},
    {"S9(13) lone minus", {{"annual_tax", "-"}}, false, KH_E_ITEM_INVALID, "annual_tax", "S9(13)"},
    {"S9(13) decimal", {{"annual_tax", "15.75"}}, false, KH_E_ITEM_INVALID, "annual_tax", "S9(13)"},
    {"S9(13) trailing minus",
     {{"annual_tax", "500-"}},
     false,
     KH_E_ITEM_INVALID,
     "annual_tax",
     "S9(13)"},
    {"S9 mandatory bad",
     {{"fiscal_year", "2024"}, {"total_income", "35,000"}},
     true,
     KH_E_ITEM_INVALID,
     "total_income",
     "S9(13)"},
    /* X(n) */
    {"X(5) five kanji ok", {{"remarks", "東京都千代"}}, false, KH_OK, NULL, NULL},
    {"X(5) four-byte characters ok",
     {{"remarks", "\xF0\x9F\x98\x80\xF0\xA0\xAE\xB7"}},
     false,
     KH_OK,
     NULL,
     NULL},
    {"X(5) six kanji",
     {{"remarks", "東京都千代田"}},
     false,
     KH_E_ITEM_INVALID,
     "remarks",
     "X(5) expects at most 5 characters"},
    {"X(5) six ascii", {{"remarks", "abcdef"}}, false, KH_E_ITEM_INVALID, "remarks", "X(5)"},
    {"X tab", {{"remarks", "ab\tcd"}}, false, KH_E_ITEM_INVALID, "remarks", "control characters"},
    {"X newline", {{"remarks", "ab\ncd"}}, false, KH_E_ITEM_INVALID, "remarks", "control"},
    {"X DEL", {{"remarks", "ab\x7f"}}, false, KH_E_ITEM_INVALID, "remarks", "control"},
    {"X C1 control", {{"remarks", "ab\xC2\x85"}}, false, KH_E_ITEM_INVALID, "remarks", "control"},
    {"X invalid byte", {{"remarks", "ab\xFFz"}}, false, KH_E_ITEM_INVALID, "remarks", "UTF-8"},
    {"X overlong", {{"remarks", "ab\xC0\xAFz"}}, false, KH_E_ITEM_INVALID, "remarks", "UTF-8"},
    {"X overlong 3-byte",
     {{"remarks", "a\xE0\x80\xAFz"}},
     false,
     KH_E_ITEM_INVALID,
     "remarks",
     "UTF-8"},
    {"X surrogate", {{"remarks", "ab\xED\xA0\x80z"}}, false, KH_E_ITEM_INVALID, "remarks", "UTF-8"},
    {"X above U+10FFFF",
     {{"remarks", "ab\xF4\x90\x80\x80"}},
     false,
     KH_E_ITEM_INVALID,
     "remarks",
     "UTF-8"},
    {"X truncated", {{"remarks", "ab\xE6\x9D"}}, false, KH_E_ITEM_INVALID, "remarks", "UTF-8"},
    {"X lone continuation", {{"remarks", "ab\x80z"}}, false, KH_E_ITEM_INVALID, "remarks", "UTF-8"},
    /* DATE */
    {"DATE leap day ok", {{"move_in_date", "20240229"}}, false, KH_OK, NULL, NULL},
    {"DATE 2000 leap day ok", {{"move_in_date", "20000229"}}, false, KH_OK, NULL, NULL},
    {"DATE not a leap year",
     {{"move_in_date", "20230229"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE expects a real calendar date as YYYYMMDD"},
    {"DATE 1900 not leap",
     {{"move_in_date", "19000229"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    {"DATE month 13",
     {{"move_in_date", "20241301"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    {"DATE April 31",
     {{"move_in_date", "20240431"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    {"DATE day 0",
     {{"move_in_date", "20240400"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    {"DATE year 0",
     {{"move_in_date", "00000101"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    {"DATE seven digits",
     {{"move_in_date", "2024041"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    {"DATE with dashes",
     {{"move_in_date", "2024-04-01"}},
     false,
     KH_E_ITEM_INVALID,
     "move_in_date",
     "DATE"},
    /* CODE */
    {"CODE in table ok", {{"spouse_category", "3"}}, false, KH_OK, NULL, NULL},
    {"CODE not in table",
     {{"spouse_category", "7"}},
     false,
     KH_E_ITEM_INVALID,
     "spouse_category",
     "CODE(1) expects a value of code table SPOUSE"},
    {"CODE padded",
     {{"spouse_category", "03"}},
     false,
     KH_E_ITEM_INVALID,
     "spouse_category",
     "code table SPOUSE"},
    {"CODE empty table",
     {{"empty_code", "A1"}},
     false,
     KH_E_ITEM_INVALID,
     "empty_code",
     "code table NONE"},
};

#define NCASES ((int)(sizeof cases / sizeof cases[0]))

START_TEST(validate_case)
{
    const vcase *tc = &cases[_i];
    Kh__Field store[MAXF + 2];
    const Kh__Field *fields[MAXF + 2];
    size_t n = 0;
    if (!tc->skip_base) {
        static const char *const base[2][2] = {{"fiscal_year", "2024"},
                                               {"total_income", "3500000"}};
        for (int i = 0; i < 2; i++) {
            kh__field__init(&store[n]);
            store[n].name = (char *)base[i][0];
            store[n].value = (char *)base[i][1];
            fields[n] = &store[n];
            n++;
        }
    }
    for (int i = 0; i < MAXF && tc->f[i][0] != NULL; i++) {
        kh__field__init(&store[n]);
        store[n].name = (char *)tc->f[i][0];
        store[n].value = (char *)tc->f[i][1];
        fields[n] = &store[n];
        n++;
    }
    char msg[256] = "";
    kh_err e = refdb_validate(&layout, fields, n, msg, sizeof msg);
    ck_assert_msg(e == tc->want, "%s: got %s, want %s (%s)", tc->what, kh_err_code(e),
                  kh_err_code(tc->want), msg);
    if (tc->want == KH_OK)
        return;
    char named[96];
    snprintf(named, sizeof named, "field %s:", tc->field);
    ck_assert_msg(strstr(msg, named) != NULL, "%s: message does not name %s: %s", tc->what,
                  tc->field, msg);
    ck_assert_msg(strstr(msg, tc->rule) != NULL, "%s: message lacks the rule '%s': %s", tc->what,
                  tc->rule, msg);
    /* No value of the case (other than ones a rule text contains by nature,
     * such as "-") may appear in the message. */
    for (int i = 0; i < MAXF && tc->f[i][0] != NULL; i++) {
        const char *v = tc->f[i][1];
        if (strlen(v) < 2)
            continue;
        ck_assert_msg(strstr(msg, v) == NULL, "%s: message carries the value: %s", tc->what, msg);
    }
}
END_TEST

START_TEST(no_message_buffer)
{
    Kh__Field f;
    kh__field__init(&f);
    f.name = "fiscal_year";
    f.value = "x";
    const Kh__Field *fields[1] = {&f};
    ck_assert_int_eq(refdb_validate(&layout, fields, 1, NULL, 0), KH_E_ITEM_INVALID);
    char tiny[8];
    ck_assert_int_eq(refdb_validate(&layout, fields, 1, tiny, sizeof tiny), KH_E_ITEM_INVALID);
    ck_assert_uint_eq(strlen(tiny), sizeof tiny - 1);
}
END_TEST

START_TEST(dates)
{
    ck_assert(refdb_date_valid("20240401"));
    ck_assert(refdb_date_valid("99991231"));
    ck_assert(refdb_date_valid("00010101"));
    ck_assert(!refdb_date_valid("20240230"));
    ck_assert(!refdb_date_valid("202404011"));
    ck_assert(!refdb_date_valid(""));
    ck_assert(!refdb_date_valid(NULL));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("refdb_validate");
    TCase *tc = tcase_create("rules");
    tcase_add_loop_test(tc, validate_case, 0, NCASES);
    tcase_add_test(tc, no_message_buffer);
    tcase_add_test(tc, dates);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
