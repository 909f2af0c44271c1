/* Unit tests for gateway/khprom.c: names, the escaping of HELP text and
 * label values (including bytes that are not UTF-8), and the lines of a
 * family, table-driven where it fits. */
#include "khprom.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* The buffer's text (malloc'd) and empties it. */
static char *text(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

START_TEST(names)
{
    static const struct {
        const char *name;
        bool metric, label;
    } cases[] = {
        {"kakehashi_queries_total", true, true},
        {"a:b", true, false},
        {"_x", true, true},
        {"__reserved", true, false},
        {"9lives", false, false},
        {"", false, false},
        {"has space", false, false},
        {"dash-ed", false, false},
        {"t\xc3\xa9", false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(khprom_name_ok(cases[i].name) == cases[i].metric, "%s", cases[i].name);
        ck_assert_msg(khprom_label_name_ok(cases[i].name) == cases[i].label, "%s", cases[i].name);
    }
    ck_assert(!khprom_name_ok(NULL));
}
END_TEST

START_TEST(label_values)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"131016", "131016"},
        {"a\\b", "a\\\\b"},
        {"say \"hi\"", "say \\\"hi\\\""},
        {"two\nlines", "two\\nlines"},
        {"tab\tkept", "tab\tkept"},
        {"\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac"}, /* 日本 */
        {"bad\xff", "bad\xef\xbf\xbd"},                           /* not UTF-8 */
        {"cut\xe6\x97", "cut\xef\xbf\xbd\xef\xbf\xbd"},           /* truncated */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"", ""},
    };
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(khprom_label_value(b, cases[i].in), 0);
        char *s = text(b);
        ck_assert_msg(strcmp(s, cases[i].out) == 0, "case %zu: got [%s]", i, s);
        free(s);
    }
    evbuffer_free(b);
}
END_TEST

START_TEST(family_and_samples)
{
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(khprom_family(b, "kh_x_total", "counter", "Counts \\ things\non two lines"),
                     0);
    const char *l[] = {"tenant", "131016", "state", "a\"b", NULL};
    ck_assert_int_eq(khprom_sample(b, "kh_x_total", l, 42), 0);
    ck_assert_int_eq(khprom_sample(b, "kh_x_total", NULL, -7), 0);
    const char *none[] = {NULL};
    ck_assert_int_eq(khprom_sample(b, "kh_x_total", none, 9223372036854775807LL), 0);
    char *s = text(b);
    ck_assert_str_eq(s, "# HELP kh_x_total Counts \\\\ things\\non two lines\n"
                        "# TYPE kh_x_total counter\n"
                        "kh_x_total{tenant=\"131016\",state=\"a\\\"b\"} 42\n"
                        "kh_x_total -7\n"
                        "kh_x_total 9223372036854775807\n");
    free(s);
    /* refusals: nothing a caller passes makes a line that does not parse */
    ck_assert_int_eq(khprom_family(b, "kh_x", "summary", "h"), -1);
    ck_assert_int_eq(khprom_family(b, "kh x", "gauge", "h"), -1);
    ck_assert_int_eq(khprom_sample_text(b, "kh_y", NULL, "1 2"), -1);
    ck_assert_int_eq(khprom_sample_text(b, "kh_y", NULL, "NaN"), -1);
    ck_assert_int_eq(khprom_sample_text(b, "kh_y", NULL, ""), -1);
    ck_assert_int_eq(khprom_sample_text(b, "kh_y", NULL, "1}\nkh_z 2"), -1);
    ck_assert_int_eq(khprom_sample(b, "1kh", NULL, 1), -1);
    const char *bad[] = {"__name__", "x", NULL};
    ck_assert_int_eq(khprom_sample(b, "kh_y", bad, 1), -1);
    evbuffer_free(b);
}
END_TEST

START_TEST(histogram)
{
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(khprom_family(b, "kh_d_seconds", "histogram", "Durations."), 0);
    const char *l[] = {"le", "0.005", NULL}, *inf[] = {"le", "+Inf", NULL};
    ck_assert_int_eq(khprom_sample(b, "kh_d_seconds_bucket", l, 3), 0);
    ck_assert_int_eq(khprom_sample(b, "kh_d_seconds_bucket", inf, 4), 0);
    ck_assert_int_eq(khprom_sample_text(b, "kh_d_seconds_sum", NULL, "0.012500"), 0);
    ck_assert_int_eq(khprom_sample(b, "kh_d_seconds_count", NULL, 4), 0);
    char *s = text(b);
    ck_assert_str_eq(s, "# HELP kh_d_seconds Durations.\n"
                        "# TYPE kh_d_seconds histogram\n"
                        "kh_d_seconds_bucket{le=\"0.005\"} 3\n"
                        "kh_d_seconds_bucket{le=\"+Inf\"} 4\n"
                        "kh_d_seconds_sum 0.012500\n"
                        "kh_d_seconds_count 4\n");
    free(s);
    evbuffer_free(b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("khprom");
    TCase *tc = tcase_create("all");
    tcase_add_test(tc, names);
    tcase_add_test(tc, label_values);
    tcase_add_test(tc, family_and_samples);
    tcase_add_test(tc, histogram);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
