/* Unit tests for the layout rules of refdb/FORMAT.md, no database:
 * - refdb_validate_values, table-driven: one row per rule and edge, each
 *   with the exact list of problems (column and fine code) it must report,
 *   and no reason may carry the value;
 * - refdb_validate (online registration): name mapping, duplicates, and the
 *   "field <name>: <fine code> <reason>" message of the first problem;
 * - refdb_layout_from_tsv on sql/catalogue (KH_CATALOGUE_DIR) and
 *   refdb_layout_flatten refusals. */
#include "refdb.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KH_CATALOGUE_DIR
#error "KH_CATALOGUE_DIR must name sql/catalogue"
#endif

/* ------------------------------------------------------------- layouts */

static const char *const spouse_codes[] = {"0", "1", "2", "3"};
static const char *const svc_codes[] = {"01", "02", "03"};
static const char *const rel_codes[] = {"01", "02", "09"};
static const char *const pa_codes[] = {"1", "2", "3"};

#define PLAIN .min_occurs = 1, .max_occurs = 1, .group = -1

/* The main layout: every type, both paddings, the three charsets, a
 * repeating field (service, 0..3) and a group (dependents, 0..2). */
static refdb_field_spec spec_main[] = {
    {.name = "fiscal_year", .type = "9", .length = 4, .mandatory = true, .pad = "zero", PLAIN},
    {.name = "total_income", .type = "S9", .length = 13, .mandatory = true, PLAIN},
    {.name = "annual_tax", .type = "S9", .length = 13, PLAIN},
    {.name = "spouse_category",
     .type = "CODE",
     .length = 1,
     .code_table = "SPOUSE",
     .codes = spouse_codes,
     .ncodes = 4,
     PLAIN},
    {.name = "remarks", .type = "X", .length = 5, .charset = "any", PLAIN},
    {.name = "move_in_date", .type = "DATE", .length = 8, PLAIN},
    {.name = "empty_code", .type = "CODE", .length = 2, .code_table = "NONE", PLAIN},
    {.name = "household_size", .type = "9", .length = 3, .pad = "suppress", PLAIN},
    {.name = "name_kana", .type = "X", .length = 8, .charset = "kana", PLAIN},
    {.name = "ascii_id", .type = "X", .length = 4, .charset = "ascii", PLAIN},
    {.name = "service",
     .type = "CODE",
     .length = 2,
     .code_table = "SVC",
     .codes = svc_codes,
     .ncodes = 3,
     .min_occurs = 0,
     .max_occurs = 3,
     .group = -1},
    {.name = "dependents",
     .type = "GROUP",
     .length = 0,
     .min_occurs = 0,
     .max_occurs = 2,
     .group = -1},
    {.name = "relation",
     .type = "CODE",
     .length = 2,
     .mandatory = true,
     .code_table = "REL",
     .codes = rel_codes,
     .ncodes = 3,
     .min_occurs = 1,
     .max_occurs = 1,
     .group = 11},
    {.name = "birth_date",
     .type = "DATE",
     .length = 8,
     .mandatory = true,
     .min_occurs = 1,
     .max_occurs = 1,
     .group = 11},
    {.name = "note",
     .type = "X",
     .length = 3,
     .charset = "any",
     .min_occurs = 1,
     .max_occurs = 1,
     .group = 11},
};

/* Minimum occurrences: a repeating field with min 2, a group with min 1. */
static refdb_field_spec spec_min[] = {
    {.name = "case_no", .type = "X", .length = 4, .mandatory = true, .charset = "ascii", PLAIN},
    {.name = "assist",
     .type = "CODE",
     .length = 1,
     .code_table = "PA",
     .codes = pa_codes,
     .ncodes = 3,
     .min_occurs = 2,
     .max_occurs = 3,
     .group = -1},
    {.name = "kids", .type = "GROUP", .min_occurs = 1, .max_occurs = 2, .group = -1},
    {.name = "kid_birth",
     .type = "DATE",
     .length = 8,
     .mandatory = true,
     .min_occurs = 1,
     .max_occurs = 1,
     .group = 2},
    {.name = "kid_order",
     .type = "9",
     .length = 2,
     .pad = "suppress",
     .min_occurs = 1,
     .max_occurs = 1,
     .group = 2},
};

static refdb_layout layouts[2] = {
    {.item_code = "TK001",
     .layout_version = 1,
     .nfields = sizeof spec_main / sizeof spec_main[0],
     .fields = spec_main},
    {.item_code = "TK007",
     .layout_version = 3,
     .nfields = sizeof spec_min / sizeof spec_min[0],
     .fields = spec_min},
};

/* Flattens the hand-built layouts (each test runs in its own process). */
static void setup(void)
{
    char msg[256] = "";
    for (int i = 0; i < 2; i++)
        ck_assert_msg(refdb_layout_flatten(&layouts[i], msg, sizeof msg) == KH_OK, "%s", msg);
}

static void teardown(void)
{
    for (int i = 0; i < 2; i++) {
        free(layouts[i].cols);
        layouts[i].cols = NULL;
        layouts[i].ncols = 0;
    }
}

START_TEST(hand_layout_columns)
{
    const refdb_layout *l = &layouts[0];
    static const char *const want[] = {"fiscal_year",
                                       "total_income",
                                       "annual_tax",
                                       "spouse_category",
                                       "remarks",
                                       "move_in_date",
                                       "empty_code",
                                       "household_size",
                                       "name_kana",
                                       "ascii_id",
                                       "service[1]",
                                       "service[2]",
                                       "service[3]",
                                       "dependents[1].relation",
                                       "dependents[1].birth_date",
                                       "dependents[1].note",
                                       "dependents[2].relation",
                                       "dependents[2].birth_date",
                                       "dependents[2].note"};
    ck_assert_uint_eq(l->ncols, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < l->ncols; i++)
        ck_assert_str_eq(l->cols[i].name, want[i]);
    ck_assert_int_eq(l->cols[11].field, 10);
    ck_assert_int_eq(l->cols[11].occurrence, 2);
    ck_assert_int_eq(l->cols[17].field, 13);
    ck_assert_int_eq(l->cols[17].occurrence, 2);
}
END_TEST

/* ------------------------------------------------ refdb_validate_values */

#define MAXSET 7
#define MAXWANT 4
typedef struct {
    const char *what;
    int layout; /* 0: main (fiscal_year and total_income preset), 1: min */
    const char *set[MAXSET][2];
    struct {
        const char *field;
        kh_err code;
    } want[MAXWANT];
} rcase;

#define OK_                                                                                        \
    {                                                                                              \
        {                                                                                          \
            NULL, KH_OK                                                                            \
        }                                                                                          \
    }

static const rcase rcases[] = {
    {"minimal valid", 0, {{0}}, OK_},
    {"all kinds valid",
     0,
     {{"annual_tax", "-1200000"},
      {"spouse_category", "2"},
      {"remarks", "千代田ab"},
      {"move_in_date", "20240229"},
      {"household_size", "12"},
      {"name_kana", "ヤマダ　タロウ"},
      {"ascii_id", "A-1 "}},
     OK_},
    {"repeats and groups valid",
     0,
     {{"service[1]", "01"},
      {"service[2]", "03"},
      {"dependents[1].relation", "01"},
      {"dependents[1].birth_date", "20100401"},
      {"dependents[2].relation", "09"},
      {"dependents[2].birth_date", "20120229"},
      {"dependents[2].note", "次男"}},
     OK_},
    /* mandatory (KH-1105) */
    {"mandatory empty", 0, {{"fiscal_year", ""}}, {{"fiscal_year", KH_E_MANDATORY}}},
    {"two mandatory empty",
     0,
     {{"fiscal_year", ""}, {"total_income", ""}},
     {{"fiscal_year", KH_E_MANDATORY}, {"total_income", KH_E_MANDATORY}}},
    {"every problem is reported, in column order",
     0,
     {{"fiscal_year", ""}, {"annual_tax", "1.5"}, {"spouse_category", "9"}, {"remarks", "a\tb"}},
     {{"fiscal_year", KH_E_MANDATORY},
      {"annual_tax", KH_E_TYPE},
      {"spouse_category", KH_E_CODE_VALUE},
      {"remarks", KH_E_CHARSET}}},
    /* 9(n) zero */
    {"9 zero exact", 0, {{"fiscal_year", "0024"}}, OK_},
    {"9 zero all zeros", 0, {{"fiscal_year", "0000"}}, OK_},
    {"9 zero short", 0, {{"fiscal_year", "024"}}, {{"fiscal_year", KH_E_PADDING}}},
    {"9 zero one digit", 0, {{"fiscal_year", "7"}}, {{"fiscal_year", KH_E_PADDING}}},
    {"9 zero too long", 0, {{"fiscal_year", "20245"}}, {{"fiscal_year", KH_E_TYPE}}},
    {"9 letter", 0, {{"fiscal_year", "20a4"}}, {{"fiscal_year", KH_E_TYPE}}},
    {"9 sign", 0, {{"fiscal_year", "-202"}}, {{"fiscal_year", KH_E_TYPE}}},
    {"9 space", 0, {{"fiscal_year", " 202"}}, {{"fiscal_year", KH_E_TYPE}}},
    {"9 full-width digits", 0, {{"fiscal_year", "２０２４"}}, {{"fiscal_year", KH_E_TYPE}}},
    /* 9(n) suppress */
    {"9 suppress zero", 0, {{"household_size", "0"}}, OK_},
    {"9 suppress full length", 0, {{"household_size", "120"}}, OK_},
    {"9 suppress leading zero", 0, {{"household_size", "012"}}, {{"household_size", KH_E_PADDING}}},
    {"9 suppress double zero", 0, {{"household_size", "00"}}, {{"household_size", KH_E_PADDING}}},
    {"9 suppress too long", 0, {{"household_size", "1234"}}, {{"household_size", KH_E_TYPE}}},
    /* S9(n) */
    {"S9 zero", 0, {{"annual_tax", "0"}}, OK_},
    {"S9 negative 13 digits", 0, {{"annual_tax", "-1234567890123"}}, OK_},
    {"S9 negative zero", 0, {{"annual_tax", "-0"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 leading zero", 0, {{"annual_tax", "007"}}, {{"annual_tax", KH_E_PADDING}}},
    {"S9 negative leading zero", 0, {{"annual_tax", "-0070"}}, {{"annual_tax", KH_E_PADDING}}},
    {"S9 14 digits", 0, {{"annual_tax", "12345678901234"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 plus sign", 0, {{"annual_tax", "+500"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 lone minus", 0, {{"annual_tax", "-"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 double minus", 0, {{"annual_tax", "--500"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 trailing minus", 0, {{"annual_tax", "500-"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 decimal", 0, {{"annual_tax", "15.75"}}, {{"annual_tax", KH_E_TYPE}}},
    {"S9 mandatory bad", 0, {{"total_income", "35,000"}}, {{"total_income", KH_E_TYPE}}},
    /* X(n), charset any */
    {"X five kanji", 0, {{"remarks", "東京都千代"}}, OK_},
    {"X four-byte characters", 0, {{"remarks", "\xF0\x9F\x98\x80\xF0\xA0\xAE\xB7"}}, OK_},
    {"X any takes half-width katakana", 0, {{"remarks", "ｱｲｳｴｵ"}}, OK_},
    {"X six kanji", 0, {{"remarks", "東京都千代田"}}, {{"remarks", KH_E_TYPE}}},
    {"X six ascii", 0, {{"remarks", "abcdef"}}, {{"remarks", KH_E_TYPE}}},
    {"X tab", 0, {{"remarks", "ab\tcd"}}, {{"remarks", KH_E_CHARSET}}},
    {"X newline", 0, {{"remarks", "ab\ncd"}}, {{"remarks", KH_E_CHARSET}}},
    {"X DEL", 0, {{"remarks", "ab\x7f"}}, {{"remarks", KH_E_CHARSET}}},
    {"X C1 control", 0, {{"remarks", "ab\xC2\x85"}}, {{"remarks", KH_E_CHARSET}}},
    {"X invalid byte", 0, {{"remarks", "ab\xFFz"}}, {{"remarks", KH_E_ENCODING}}},
    {"X Shift_JIS bytes", 0, {{"remarks", "\x93\x8c\x8b\x9e"}}, {{"remarks", KH_E_ENCODING}}},
    {"X overlong", 0, {{"remarks", "ab\xC0\xAFz"}}, {{"remarks", KH_E_ENCODING}}},
    {"X overlong 3-byte", 0, {{"remarks", "a\xE0\x80\xAFz"}}, {{"remarks", KH_E_ENCODING}}},
    {"X surrogate", 0, {{"remarks", "ab\xED\xA0\x80z"}}, {{"remarks", KH_E_ENCODING}}},
    {"X above U+10FFFF", 0, {{"remarks", "ab\xF4\x90\x80\x80"}}, {{"remarks", KH_E_ENCODING}}},
    {"X truncated", 0, {{"remarks", "ab\xE6\x9D"}}, {{"remarks", KH_E_ENCODING}}},
    {"X lone continuation", 0, {{"remarks", "ab\x80z"}}, {{"remarks", KH_E_ENCODING}}},
    {"X bad UTF-8 before length", 0, {{"remarks", "abcdefg\xFF"}}, {{"remarks", KH_E_ENCODING}}},
    /* formula cells (issue 11, class 6): refused at the start of any X value */
    {"X formula =", 0, {{"remarks", "=1+2"}}, {{"remarks", KH_E_CHARSET}}},
    {"X formula +", 0, {{"remarks", "+A1"}}, {{"remarks", KH_E_CHARSET}}},
    {"X formula -", 0, {{"remarks", "-2+3"}}, {{"remarks", KH_E_CHARSET}}},
    {"X formula @", 0, {{"remarks", "@SUM"}}, {{"remarks", KH_E_CHARSET}}},
    {"X formula = in ascii", 0, {{"ascii_id", "=A1"}}, {{"ascii_id", KH_E_CHARSET}}},
    {"X formula + in ascii", 0, {{"ascii_id", "+81"}}, {{"ascii_id", KH_E_CHARSET}}},
    {"X formula characters inside", 0, {{"remarks", "a=b-c"}}, OK_},
    {"X a lone minus is a placeholder", 0, {{"remarks", "-"}}, OK_},
    {"X a lone plus", 0, {{"ascii_id", "+"}}, OK_},
    {"X a lone equals sign", 0, {{"remarks", "="}}, {{"remarks", KH_E_CHARSET}}},
    {"X full-width equals sign", 0, {{"remarks", "＝１"}}, OK_},
    {"X full-width minus", 0, {{"remarks", "－"}}, OK_},
    {"X space before =", 0, {{"ascii_id", " =1"}}, OK_},
    {"S9 negative is a number, not a formula", 0, {{"annual_tax", "-5"}}, OK_},
    /* charset kana */
    {"kana with ideographic space", 0, {{"name_kana", "ヤマダ　タロウ"}}, OK_},
    {"kana small letters, long mark, middle dot", 0, {{"name_kana", "ァヴー・ヵヶ"}}, OK_},
    {"kana eight characters", 0, {{"name_kana", "アイウエオカキク"}}, OK_},
    {"kana nine characters", 0, {{"name_kana", "アイウエオカキクケ"}}, {{"name_kana", KH_E_TYPE}}},
    {"kana hiragana", 0, {{"name_kana", "やまだ"}}, {{"name_kana", KH_E_CHARSET}}},
    {"kana half-width katakana", 0, {{"name_kana", "ﾔﾏﾀﾞ"}}, {{"name_kana", KH_E_CHARSET}}},
    {"kana ascii space", 0, {{"name_kana", "ヤマダ タロウ"}}, {{"name_kana", KH_E_CHARSET}}},
    {"kana kanji", 0, {{"name_kana", "山田"}}, {{"name_kana", KH_E_CHARSET}}},
    {"kana latin", 0, {{"name_kana", "YAMADA"}}, {{"name_kana", KH_E_CHARSET}}},
    {"kana iteration mark U+30FD", 0, {{"name_kana", "ヤヽ"}}, {{"name_kana", KH_E_CHARSET}}},
    {"kana bad UTF-8", 0, {{"name_kana", "ヤ\xE3\x83"}}, {{"name_kana", KH_E_ENCODING}}},
    {"kana control", 0, {{"name_kana", "ヤ\r"}}, {{"name_kana", KH_E_CHARSET}}},
    /* charset ascii */
    {"ascii tilde and space", 0, {{"ascii_id", "~ A1"}}, OK_},
    {"ascii full-width letters", 0, {{"ascii_id", "ＡＢ"}}, {{"ascii_id", KH_E_CHARSET}}},
    {"ascii accented letter", 0, {{"ascii_id", "caf\xC3\xA9"}}, {{"ascii_id", KH_E_CHARSET}}},
    {"ascii half-width katakana", 0, {{"ascii_id", "ｱ1"}}, {{"ascii_id", KH_E_CHARSET}}},
    {"ascii too long", 0, {{"ascii_id", "ABCDE"}}, {{"ascii_id", KH_E_TYPE}}},
    {"ascii tab", 0, {{"ascii_id", "A\tB"}}, {{"ascii_id", KH_E_CHARSET}}},
    /* DATE */
    {"DATE leap day", 0, {{"move_in_date", "20000229"}}, OK_},
    {"DATE not a leap year", 0, {{"move_in_date", "20230229"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE 1900 not leap", 0, {{"move_in_date", "19000229"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE month 13", 0, {{"move_in_date", "20241301"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE April 31", 0, {{"move_in_date", "20240431"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE day 0", 0, {{"move_in_date", "20240400"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE year 0", 0, {{"move_in_date", "00000101"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE seven digits", 0, {{"move_in_date", "2024041"}}, {{"move_in_date", KH_E_TYPE}}},
    {"DATE with dashes", 0, {{"move_in_date", "2024-04-01"}}, {{"move_in_date", KH_E_TYPE}}},
    /* CODE */
    {"CODE in table", 0, {{"spouse_category", "0"}}, OK_},
    {"CODE not in table", 0, {{"spouse_category", "7"}}, {{"spouse_category", KH_E_CODE_VALUE}}},
    {"CODE padded", 0, {{"spouse_category", "03"}}, {{"spouse_category", KH_E_CODE_VALUE}}},
    {"CODE empty table", 0, {{"empty_code", "A1"}}, {{"empty_code", KH_E_CODE_VALUE}}},
    /* repeating field */
    {"repeat first only", 0, {{"service[1]", "02"}}, OK_},
    {"repeat all three",
     0,
     {{"service[1]", "02"}, {"service[2]", "02"}, {"service[3]", "01"}},
     OK_},
    {"repeat gap at 1", 0, {{"service[2]", "02"}}, {{"service[2]", KH_E_OCCURS}}},
    {"repeat gap at 2",
     0,
     {{"service[1]", "01"}, {"service[3]", "03"}},
     {{"service[3]", KH_E_OCCURS}}},
    {"repeat bad code", 0, {{"service[1]", "99"}}, {{"service[1]", KH_E_CODE_VALUE}}},
    {"repeat gap and bad code",
     0,
     {{"service[2]", "99"}},
     {{"service[2]", KH_E_OCCURS}, {"service[2]", KH_E_CODE_VALUE}}},
    /* group */
    {"group one occurrence",
     0,
     {{"dependents[1].relation", "02"}, {"dependents[1].birth_date", "19500101"}},
     OK_},
    {"group mandatory missing in a present occurrence",
     0,
     {{"dependents[1].relation", "02"}},
     {{"dependents[1].birth_date", KH_E_MANDATORY}}},
    {"group optional value alone makes the occurrence present",
     0,
     {{"dependents[1].note", "祖母"}},
     {{"dependents[1].relation", KH_E_MANDATORY}, {"dependents[1].birth_date", KH_E_MANDATORY}}},
    {"group gap",
     0,
     {{"dependents[2].relation", "01"}, {"dependents[2].birth_date", "20100401"}},
     {{"dependents[2].relation", KH_E_OCCURS}}},
    {"group gap named at the first value given",
     0,
     {{"dependents[2].note", "abc"}},
     {{"dependents[2].note", KH_E_OCCURS},
      {"dependents[2].relation", KH_E_MANDATORY},
      {"dependents[2].birth_date", KH_E_MANDATORY}}},
    {"group bad value",
     0,
     {{"dependents[1].relation", "01"}, {"dependents[1].birth_date", "20230229"}},
     {{"dependents[1].birth_date", KH_E_TYPE}}},
    {"group bad code and too long note",
     0,
     {{"dependents[1].relation", "03"},
      {"dependents[1].birth_date", "20200101"},
      {"dependents[1].note", "abcd"}},
     {{"dependents[1].relation", KH_E_CODE_VALUE}, {"dependents[1].note", KH_E_TYPE}}},
    /* minimum occurrences */
    {"min satisfied",
     1,
     {{"case_no", "A1"}, {"assist[1]", "1"}, {"assist[2]", "2"}, {"kids[1].kid_birth", "20200101"}},
     OK_},
    {"min: nothing at all",
     1,
     {{0}},
     {{"case_no", KH_E_MANDATORY}, {"assist[1]", KH_E_OCCURS}, {"kids[1].kid_birth", KH_E_OCCURS}}},
    {"min: repeat one short",
     1,
     {{"case_no", "A1"}, {"assist[1]", "1"}, {"kids[1].kid_birth", "20200101"}},
     {{"assist[2]", KH_E_OCCURS}}},
    {"min: group absent",
     1,
     {{"case_no", "A1"}, {"assist[1]", "1"}, {"assist[2]", "3"}},
     {{"kids[1].kid_birth", KH_E_OCCURS}}},
    {"min: group gap counts what is present",
     1,
     {{"case_no", "A1"},
      {"assist[1]", "1"},
      {"assist[2]", "3"},
      {"kids[2].kid_birth", "20200101"},
      {"kids[2].kid_order", "02"}},
     {{"kids[2].kid_birth", KH_E_OCCURS}, {"kids[2].kid_order", KH_E_PADDING}}},
};

#define NRCASES ((int)(sizeof rcases / sizeof rcases[0]))

typedef struct {
    refdb_issue got[16];
    size_t n;
} issue_list;

static void collect(const refdb_issue *is, void *arg)
{
    issue_list *li = arg;
    if (li->n < 16)
        li->got[li->n] = *is;
    li->n++;
}

static size_t col_of(const refdb_layout *l, const char *name)
{
    for (size_t c = 0; c < l->ncols; c++)
        if (strcmp(l->cols[c].name, name) == 0)
            return c;
    ck_abort_msg("no column %s", name);
    return 0;
}

START_TEST(values_case)
{
    const rcase *tc = &rcases[_i];
    const refdb_layout *l = &layouts[tc->layout];
    const char *vals[64];
    ck_assert_uint_le(l->ncols, 64);
    for (size_t c = 0; c < l->ncols; c++)
        vals[c] = "";
    if (tc->layout == 0) {
        vals[col_of(l, "fiscal_year")] = "2024";
        vals[col_of(l, "total_income")] = "3500000";
    }
    for (int i = 0; i < MAXSET && tc->set[i][0] != NULL; i++)
        vals[col_of(l, tc->set[i][0])] = tc->set[i][1];
    issue_list li = {.n = 0};
    size_t n = refdb_validate_values(l, vals, 42, collect, &li);
    ck_assert_uint_eq(n, li.n);
    size_t want = 0;
    while (want < MAXWANT && tc->want[want].field != NULL)
        want++;
    for (size_t i = 0; i < li.n && i < 16; i++) {
        const refdb_issue *is = &li.got[i];
        if (i < want) {
            ck_assert_msg(strcmp(is->field, tc->want[i].field) == 0 && is->code == tc->want[i].code,
                          "%s: problem %zu is %s %s (%s), want %s %s", tc->what, i + 1, is->field,
                          kh_err_code(is->code), is->reason, tc->want[i].field,
                          kh_err_code(tc->want[i].code));
        } else {
            ck_abort_msg("%s: unexpected problem %s %s (%s)", tc->what, is->field,
                         kh_err_code(is->code), is->reason);
        }
        ck_assert_uint_eq(is->line, 42);
        ck_assert_msg(is->reason[0] != '\0', "%s: empty reason", tc->what);
        /* the reason names the rule, never the value */
        for (int k = 0; k < MAXSET && tc->set[k][0] != NULL; k++) {
            const char *v = tc->set[k][1];
            if (strlen(v) >= 2)
                ck_assert_msg(strstr(is->reason, v) == NULL, "%s: reason carries a value: %s",
                              tc->what, is->reason);
        }
    }
    ck_assert_msg(li.n == want, "%s: %zu problems, want %zu", tc->what, li.n, want);
}
END_TEST

START_TEST(values_without_callback)
{
    const refdb_layout *l = &layouts[1];
    const char *vals[16];
    for (size_t c = 0; c < l->ncols; c++)
        vals[c] = "";
    ck_assert_uint_eq(refdb_validate_values(l, vals, 0, NULL, NULL), 3);
}
END_TEST

/* ------------------------------------------------------- refdb_validate */

#define MAXF 4
typedef struct {
    const char *what;
    /* name/value pairs after the two mandatory fields (added unless skip_base) */
    const char *f[MAXF][2];
    bool skip_base;
    kh_err want;
    const char *msg; /* the message must start with this */
} vcase;

static const vcase vcases[] = {
    {"minimal valid", {{0}}, false, KH_OK, NULL},
    {"flattened names",
     {{"service[1]", "01"},
      {"dependents[1].relation", "01"},
      {"dependents[1].birth_date", "20100401"}},
     false,
     KH_OK,
     NULL},
    {"empty optional field is no value",
     {{"annual_tax", ""}, {"spouse_category", ""}},
     false,
     KH_OK,
     NULL},
    {"unknown field",
     {{"nickname", "Taro"}},
     false,
     KH_E_ITEM_INVALID,
     "field nickname: not in the layout of TK001 version 1"},
    {"group name is not a column",
     {{"dependents", "02"}},
     false,
     KH_E_ITEM_INVALID,
     "field dependents: not in the layout"},
    {"repeating field without occurrence",
     {{"service", "02"}},
     false,
     KH_E_ITEM_INVALID,
     "field service: not in the layout"},
    {"occurrence beyond max",
     {{"service[4]", "02"}},
     false,
     KH_E_ITEM_INVALID,
     "field service[4]: not in the layout"},
    {"malformed field name",
     {{"Bad Name!", "Taro"}},
     false,
     KH_E_ITEM_INVALID,
     "field (malformed name): not in the layout"},
    {"empty field name",
     {{"", "Taro"}},
     false,
     KH_E_ITEM_INVALID,
     "field (empty name): not in the layout"},
    {"duplicate field",
     {{"annual_tax", "5"}, {"annual_tax", "777777"}},
     false,
     KH_E_ITEM_INVALID,
     "field annual_tax: given more than once"},
    {"duplicate with empty values",
     {{"remarks", ""}, {"remarks", ""}},
     false,
     KH_E_ITEM_INVALID,
     "field remarks: given more than once"},
    {"duplicate mandatory field",
     {{"fiscal_year", "2031"}},
     false,
     KH_E_ITEM_INVALID,
     "field fiscal_year: given more than once"},
    {"mandatory missing",
     {{"fiscal_year", "2024"}},
     true,
     KH_E_ITEM_INVALID,
     "field total_income: KH-1105 mandatory"},
    {"nothing at all", {{0}}, true, KH_E_ITEM_INVALID, "field fiscal_year: KH-1105 mandatory"},
    {"type",
     {{"annual_tax", "12a"}},
     false,
     KH_E_ITEM_INVALID,
     "field annual_tax: KH-1106 S9(13) expects an optional '-' and 1..13 digits"},
    {"padding",
     {{"fiscal_year", "24"}, {"total_income", "1"}},
     true,
     KH_E_ITEM_INVALID,
     "field fiscal_year: KH-1107 9(4) zero-padded expects exactly 4 digits"},
    {"code",
     {{"spouse_category", "7"}},
     false,
     KH_E_ITEM_INVALID,
     "field spouse_category: KH-1108 CODE(1) expects a value of code table SPOUSE"},
    {"charset",
     {{"name_kana", "やまだ"}},
     false,
     KH_E_ITEM_INVALID,
     "field name_kana: KH-1109 charset kana allows only"},
    {"encoding",
     {{"remarks", "\x93\x8c\x8b\x9e"}},
     false,
     KH_E_ITEM_INVALID,
     "field remarks: KH-1102 X(5) expects valid UTF-8"},
    {"occurrences",
     {{"dependents[2].relation", "01"}, {"dependents[2].birth_date", "20100401"}},
     false,
     KH_E_ITEM_INVALID,
     "field dependents[2].relation: KH-1114 occurrence 2 of group dependents"},
    {"first problem in column order",
     {{"remarks", "abcdefgh"}, {"fiscal_year", ""}, {"total_income", "1"}},
     true,
     KH_E_ITEM_INVALID,
     "field fiscal_year: KH-1105"},
};

#define NVCASES ((int)(sizeof vcases / sizeof vcases[0]))

START_TEST(validate_case)
{
    const vcase *tc = &vcases[_i];
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
    kh_err e = refdb_validate(&layouts[0], fields, n, msg, sizeof msg);
    ck_assert_msg(e == tc->want, "%s: got %s, want %s (%s)", tc->what, kh_err_code(e),
                  kh_err_code(tc->want), msg);
    if (tc->want == KH_OK)
        return;
    ck_assert_msg(strncmp(msg, tc->msg, strlen(tc->msg)) == 0, "%s: message '%s', want '%s...'",
                  tc->what, msg, tc->msg);
    for (int i = 0; i < MAXF && tc->f[i][0] != NULL; i++) {
        const char *v = tc->f[i][1];
        if (strlen(v) >= 2)
            ck_assert_msg(strstr(msg, v) == NULL, "%s: message carries the value: %s", tc->what,
                          msg);
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
    ck_assert_int_eq(refdb_validate(&layouts[0], fields, 1, NULL, 0), KH_E_ITEM_INVALID);
    char tiny[8];
    ck_assert_int_eq(refdb_validate(&layouts[0], fields, 1, tiny, sizeof tiny), KH_E_ITEM_INVALID);
    ck_assert_uint_eq(strlen(tiny), sizeof tiny - 1);
}
END_TEST

START_TEST(unflattened_layout)
{
    refdb_layout l = layouts[0];
    l.cols = NULL;
    l.ncols = 0;
    char msg[128] = "";
    ck_assert_int_eq(refdb_validate(&l, NULL, 0, msg, sizeof msg), KH_E_INTERNAL);
}
END_TEST

START_TEST(dates)
{
    ck_assert(kh_id_date("20240401"));
    ck_assert(kh_id_date("99991231"));
    ck_assert(kh_id_date("00010101"));
    ck_assert(!kh_id_date("20240230"));
    ck_assert(!kh_id_date("202404011"));
    ck_assert(!kh_id_date(""));
    ck_assert(!kh_id_date(NULL));
}
END_TEST

/* ------------------------------------------------------ layout loading */

START_TEST(tsv_tk001_flattened)
{
    refdb_layout l;
    char msg[256] = "";
    ck_assert_msg(refdb_layout_from_tsv(KH_CATALOGUE_DIR, "TK001", &l, msg, sizeof msg) == KH_OK,
                  "%s", msg);
    static const char *const plain[] = {"fiscal_year",
                                        "annual_tax",
                                        "municipal_tax_flat",
                                        "municipal_tax_income",
                                        "prefectural_tax",
                                        "total_income",
                                        "separate_income",
                                        "deduction_medical",
                                        "spouse_category",
                                        "short_term_capital_gain",
                                        "long_term_capital_gain",
                                        "forestry_income",
                                        "retirement_income",
                                        "futures_income",
                                        "treaty_interest_dividend",
                                        "deduction_casualty_loss",
                                        "deduction_small_business",
                                        "deduction_life_insurance",
                                        "deduction_special_spouse"};
    static const char *const members[] = {"relation", "birth_date", "dependent_category"};
    const size_t np = sizeof plain / sizeof plain[0];
    ck_assert_str_eq(l.item_code, "TK001");
    ck_assert_int_eq(l.layout_version, 1);
    ck_assert_uint_eq(l.nfields, np + 4);
    ck_assert_uint_eq(l.ncols, np + 8 * 3);
    for (size_t i = 0; i < np; i++) {
        ck_assert_str_eq(l.cols[i].name, plain[i]);
        ck_assert_int_eq(l.cols[i].field, (int)i);
        ck_assert_int_eq(l.cols[i].occurrence, 1);
    }
    for (int occ = 1; occ <= 8; occ++) {
        for (int m = 0; m < 3; m++) {
            const refdb_column *c = &l.cols[np + (size_t)(occ - 1) * 3 + (size_t)m];
            char want[96];
            snprintf(want, sizeof want, "dependents[%d].%s", occ, members[m]);
            ck_assert_str_eq(c->name, want);
            ck_assert_int_eq(c->field, (int)np + 1 + m);
            ck_assert_int_eq(c->occurrence, occ);
        }
    }
    /* the v1 fields as they were */
    const refdb_field_spec *fy = &l.fields[0], *ti = &l.fields[5], *sp = &l.fields[8];
    ck_assert_str_eq(fy->type, "9");
    ck_assert_int_eq(fy->length, 4);
    ck_assert(fy->mandatory);
    ck_assert_str_eq(fy->pad, "zero");
    ck_assert_int_eq(fy->group, -1);
    ck_assert_str_eq(ti->type, "S9");
    ck_assert_int_eq(ti->length, 13);
    ck_assert(ti->mandatory);
    ck_assert_str_eq(sp->type, "CODE");
    ck_assert_str_eq(sp->code_table, "SPOUSE");
    ck_assert_uint_eq(sp->ncodes, 4);
    ck_assert_str_eq(sp->codes[0], "0");
    ck_assert_str_eq(sp->codes[3], "3");
    /* the group */
    const refdb_field_spec *g = &l.fields[np];
    ck_assert_str_eq(g->name, "dependents");
    ck_assert_str_eq(g->type, "GROUP");
    ck_assert_int_eq(g->length, 0);
    ck_assert_int_eq(g->min_occurs, 0);
    ck_assert_int_eq(g->max_occurs, 8);
    for (int m = 0; m < 3; m++)
        ck_assert_int_eq(l.fields[np + 1 + (size_t)m].group, (int)np);
    ck_assert(l.fields[np + 1].mandatory);
    ck_assert_str_eq(l.fields[np + 1].code_table, "DEPENDENT_REL");
    refdb_layout_free(&l);
    ck_assert_ptr_null(l.cols);
}
END_TEST

START_TEST(tsv_all_items_load)
{
    static const struct {
        const char *item;
        size_t nfields, ncols;
        const char *col; /* a column to look for */
    } items[] = {
        {"TK001", 23, 43, "dependents[8].dependent_category"},
        {"TK002", 12, 12, "name_kana"},
        {"TK003", 9, 6 + 10 * 3 - 1, "children[10].child_custody"},
        {"TK004", 10, 10, "card_number"},
        {"TK005", 8, 8, "care_level"},
        {"TK006", 8, 12, "service_type[5]"},
        {"TK007", 9, 16, "assistance_type[8]"},
        {"TK008", 10, 7 + 6 * 2, "payments[6].payment_amount"},
    };
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        refdb_layout l;
        char msg[256] = "";
        ck_assert_msg(refdb_layout_from_tsv(KH_CATALOGUE_DIR, items[i].item, &l, msg, sizeof msg) ==
                          KH_OK,
                      "%s: %s", items[i].item, msg);
        ck_assert_uint_eq(l.nfields, items[i].nfields);
        ck_assert_msg(l.ncols == items[i].ncols, "%s: %zu columns", items[i].item, l.ncols);
        bool found = false;
        for (size_t c = 0; c < l.ncols && !found; c++)
            found = strcmp(l.cols[c].name, items[i].col) == 0;
        ck_assert_msg(found, "%s: no column %s", items[i].item, items[i].col);
        for (size_t f = 0; f < l.nfields; f++) {
            if (strcmp(l.fields[f].type, "CODE") == 0)
                ck_assert_msg(l.fields[f].ncodes > 0, "%s.%s: empty code table", items[i].item,
                              l.fields[f].name);
        }
        /* an empty record: only mandatory and min_occurs problems */
        const char **vals = calloc(l.ncols, sizeof *vals);
        for (size_t c = 0; c < l.ncols; c++)
            vals[c] = "";
        issue_list li = {.n = 0};
        refdb_validate_values(&l, vals, 1, collect, &li);
        for (size_t k = 0; k < li.n && k < 16; k++)
            ck_assert(li.got[k].code == KH_E_MANDATORY || li.got[k].code == KH_E_OCCURS);
        free(vals);
        refdb_layout_free(&l);
    }
}
END_TEST

/* Sample resident records for every change reason validate (DOMAIN.md: test
 * with realistic data for every change reason). */
START_TEST(tsv_every_change_reason)
{
    refdb_layout l;
    char msg[256] = "";
    ck_assert_int_eq(refdb_layout_from_tsv(KH_CATALOGUE_DIR, "TK002", &l, msg, sizeof msg), KH_OK);
    const refdb_field_spec *cr = &l.fields[4];
    ck_assert_str_eq(cr->code_table, "CHANGE_REASON");
    static const char *const want[] = {"A1", "A2", "A3", "A4", "B1", "B2",
                                       "C1", "C2", "C3", "D1", "D2"};
    ck_assert_uint_eq(cr->ncodes, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < cr->ncodes; i++) {
        ck_assert_str_eq(cr->codes[i], want[i]);
        const char *vals[12] = {"0000012345",     "01",       "131016", "20230115",
                                cr->codes[i],     "20240401", "1",      "",
                                "ヤマダ　ハナコ", "271004",   "",       "20240405"};
        if (cr->codes[i][0] == 'B') /* moved out / died: destination not yet known */
            vals[10] = "1";
        ck_assert_uint_eq(l.ncols, 12);
        issue_list li = {.n = 0};
        ck_assert_msg(refdb_validate_values(&l, vals, 2, collect, &li) == 0, "%s: %s %s",
                      cr->codes[i], li.got[0].field, li.got[0].reason);
    }
    refdb_layout_free(&l);
}
END_TEST

START_TEST(tsv_refusals)
{
    refdb_layout l;
    char msg[256] = "";
    ck_assert_int_eq(refdb_layout_from_tsv(KH_CATALOGUE_DIR, "TK999", &l, msg, sizeof msg),
                     KH_E_UNKNOWN_ITEM);
    ck_assert_ptr_null(l.fields);
    refdb_layout_free(&l);
    ck_assert_int_eq(refdb_layout_from_tsv(KH_CATALOGUE_DIR, "tk001'", &l, msg, sizeof msg),
                     KH_E_FIELD);
    ck_assert_int_eq(refdb_layout_from_tsv("/nonexistent/catalogue", "TK001", &l, msg, sizeof msg),
                     KH_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(msg, "items.tsv"));
}
END_TEST

/* A catalogue folder of one item, with fields.tsv rows given. */
static void write_catalogue(const char *dir, const char *fields_rows)
{
    char path[512];
    FILE *fp;
    snprintf(path, sizeof path, "%s/items.tsv", dir);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("item_code\tlayout_version\tname\nTK900\t2\ttest item\n", fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/fields.tsv", dir);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("item_code\tlayout_version\tseq\tname\ttype\tlength\tmandatory\tcode_table\tpad\t"
          "charset\tmin_occurs\tmax_occurs\tgroup_name\n",
          fp);
    fputs(fields_rows, fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/codes.tsv", dir);
    fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs("code_table\tcode\tmeaning\r\nT\tb\tsecond\r\nT\ta\tfirst\r\nU\tz\tother\r\n", fp);
    fclose(fp);
}

START_TEST(tsv_small_catalogues)
{
    char dir[] = "/tmp/kh_cat_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    refdb_layout l;
    char msg[256] = "";
    /* rows out of seq order, an older version, CRLF codes: sorted, filtered */
    write_catalogue(dir, "TK900\t1\t1\told\tX\t5\tf\t-\t-\tany\t1\t1\t\n"
                         "TK900\t2\t3\tg\tGROUP\t0\tf\t-\t-\t-\t1\t2\t\n"
                         "TK900\t2\t1\tc\tCODE\t1\tt\tT\t-\t-\t1\t1\t\n"
                         "TK900\t2\t4\tn\t9\t3\tf\t-\tsuppress\t-\t1\t1\tg\n");
    ck_assert_msg(refdb_layout_from_tsv(dir, "TK900", &l, msg, sizeof msg) == KH_OK, "%s", msg);
    ck_assert_int_eq(l.layout_version, 2);
    ck_assert_uint_eq(l.ncols, 3);
    ck_assert_str_eq(l.cols[0].name, "c");
    ck_assert_str_eq(l.cols[1].name, "g[1].n");
    ck_assert_str_eq(l.cols[2].name, "g[2].n");
    ck_assert_uint_eq(l.fields[0].ncodes, 2);
    ck_assert_str_eq(l.fields[0].codes[0], "a");
    ck_assert_str_eq(l.fields[0].codes[1], "b");
    refdb_layout_free(&l);

    static const char *const bad[] = {
        /* group_name names no field */
        "TK900\t2\t1\tn\t9\t3\tf\t-\tzero\t-\t1\t1\tnope\n",
        /* group_name names a field that is not a GROUP */
        "TK900\t2\t1\ta\tX\t3\tf\t-\t-\tany\t1\t1\t\nTK900\t2\t2\tn\t9\t3\tf\t-\tzero\t-"
        "\t1\t1\ta\n",
        /* a field of a group repeats on its own */
        "TK900\t2\t1\tg\tGROUP\t0\tf\t-\t-\t-\t0\t2\t\nTK900\t2\t2\tn\t9\t3\tf\t-\tzero\t-"
        "\t1\t3\tg\n",
        /* a GROUP without fields */
        "TK900\t2\t1\tg\tGROUP\t0\tf\t-\t-\t-\t0\t2\t\n",
        /* 9 without pad, X without charset, unknown pad */
        "TK900\t2\t1\tn\t9\t3\tf\t-\t-\t-\t1\t1\t\n",
        "TK900\t2\t1\tx\tX\t3\tf\t-\t-\t-\t1\t1\t\n",
        "TK900\t2\t1\tn\t9\t3\tf\t-\tspace\t-\t1\t1\t\n",
        /* min above max, wrong column count, same seq twice, bad length */
        "TK900\t2\t1\tn\t9\t3\tf\t-\tzero\t-\t3\t2\t\n",
        "TK900\t2\t1\tn\t9\t3\tf\t-\tzero\t-\t1\t1\n",
        "TK900\t2\t1\tn\t9\t3\tf\t-\tzero\t-\t1\t1\t\nTK900\t2\t1\tm\t9\t3\tf\t-\tzero\t-"
        "\t1\t1\t\n",
        "TK900\t2\t1\td\tDATE\t6\tf\t-\t-\t-\t1\t1\t\n",
        /* the same name twice */
        "TK900\t2\t1\tn\t9\t3\tf\t-\tzero\t-\t1\t1\t\nTK900\t2\t2\tn\t9\t3\tf\t-\tzero\t-"
        "\t1\t1\t\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_catalogue(dir, bad[i]);
        kh_err e = refdb_layout_from_tsv(dir, "TK900", &l, msg, sizeof msg);
        ck_assert_msg(e == KH_E_INTERNAL, "bad catalogue %zu: got %s (%s)", i, kh_err_code(e), msg);
        ck_assert_ptr_null(l.fields);
        ck_assert_ptr_null(l.cols);
    }
    /* an item listed in items.tsv without fields */
    write_catalogue(dir, "");
    ck_assert_int_eq(refdb_layout_from_tsv(dir, "TK900", &l, msg, sizeof msg), KH_E_UNKNOWN_ITEM);
    char path[512];
    static const char *const names[] = {"items.tsv", "fields.tsv", "codes.tsv"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}
END_TEST

START_TEST(flatten_refusals)
{
    char msg[256] = "";
    refdb_field_spec long_names[2] = {
        {.name = "a_group_with_a_rather_long_name_that_is_still_a_valid_name_xyz",
         .type = "GROUP",
         .min_occurs = 0,
         .max_occurs = 2,
         .group = -1},
        {.name = "a_member_with_a_rather_long_name_that_is_still_a_valid_name_xy",
         .type = "DATE",
         .length = 8,
         .min_occurs = 1,
         .max_occurs = 1,
         .group = 0},
    };
    refdb_layout l = {
        .item_code = "TK900", .layout_version = 1, .nfields = 2, .fields = long_names};
    ck_assert_int_eq(refdb_layout_flatten(&l, msg, sizeof msg), KH_E_INTERNAL);
    ck_assert_ptr_null(l.cols);
    long_names[1].group = 1; /* its own group */
    ck_assert_int_eq(refdb_layout_flatten(&l, msg, sizeof msg), KH_E_INTERNAL);
    long_names[1].group = -1;
    long_names[0].max_occurs = 1000;
    ck_assert_int_eq(refdb_layout_flatten(&l, msg, sizeof msg), KH_E_INTERNAL);
    ck_assert_ptr_nonnull(strstr(msg, "occurrence"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("refdb_validate");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, hand_layout_columns);
    tcase_add_loop_test(tc, values_case, 0, NRCASES);
    tcase_add_test(tc, values_without_callback);
    tcase_add_loop_test(tc, validate_case, 0, NVCASES);
    tcase_add_test(tc, no_message_buffer);
    tcase_add_test(tc, unflattened_layout);
    tcase_add_test(tc, dates);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("layouts");
    tcase_add_test(tl, tsv_tk001_flattened);
    tcase_add_test(tl, tsv_all_items_load);
    tcase_add_test(tl, tsv_every_change_reason);
    tcase_add_test(tl, tsv_refusals);
    tcase_add_test(tl, tsv_small_catalogues);
    tcase_add_test(tl, flatten_refusals);
    suite_add_tcase(s, tl);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
