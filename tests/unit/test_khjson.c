/* Unit tests for gateway/khjson.c: table-driven valid and malformed inputs,
 * escapes and UTF-8, limits, the lookup API, the writer's escaping, and a
 * mutation sweep (every input either parses or fails with a reason; the
 * sanitizers catch the rest). */
#include "khjson.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static khj_val *parse(const char *s, khj_error *e)
{
    return khj_parse(s, strlen(s), 0, 0, e);
}

/* ---------------------------------------------------------- valid input */

typedef struct {
    const char *in;
    khj_type type;
} valid_case;

static const valid_case valid[] = {
    {"{}", KHJ_OBJ},
    {"[]", KHJ_ARR},
    {" \t\r\n{ } \n", KHJ_OBJ},
    {"null", KHJ_NULL},
    {"true", KHJ_BOOL},
    {"false", KHJ_BOOL},
    {"0", KHJ_INT},
    {"-0", KHJ_INT},
    {"9223372036854775807", KHJ_INT},
    {"-9223372036854775808", KHJ_INT},
    {"\"\"", KHJ_STR},
    {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", KHJ_STR},
    {"{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}", KHJ_OBJ},
    {"[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]", KHJ_ARR}, /* depth 16: the default limit */
    {"{\"a\":1,\"A\":2,\"a \":3}", KHJ_OBJ},       /* keys differ */
    {"\"\xe6\x97\xa5\xe6\x9c\xac\"", KHJ_STR},     /* 日本 raw */
    {"\"\xf0\x9f\x98\x80\"", KHJ_STR},             /* U+1F600 raw */
};

START_TEST(parses_valid)
{
    khj_error e;
    khj_val *v = parse(valid[_i].in, &e);
    ck_assert_msg(v != NULL, "'%s' refused: %s at %zu", valid[_i].in, e.msg, e.offset);
    ck_assert_int_eq(khj_type_of(v), valid[_i].type);
    khj_free(v);
}
END_TEST

/* ------------------------------------------------------ malformed input */

typedef struct {
    const char *in;
    size_t len; /* 0: strlen */
    const char *reason;
} bad_case;

static const bad_case bad[] = {
    {"", 0, "value expected"},
    {"   ", 0, "value expected"},
    {"{", 0, "object key"},
    {"[", 0, "value expected"},
    {"{\"a\"}", 0, "':' expected"},
    {"{\"a\":}", 0, "not a JSON value"},
    {"{\"a\":1,}", 0, "trailing comma"},
    {"[1,]", 0, "trailing comma"},
    {"[1 2]", 0, "',' or ']'"},
    {"{\"a\":1 \"b\":2}", 0, "',' or '}'"},
    {"{a:1}", 0, "object key"},
    {"{'a':1}", 0, "object key"},
    {"{} {}", 0, "after the JSON value"},
    {"{}x", 0, "after the JSON value"},
    {"nul", 0, "not a JSON value"},
    {"True", 0, "not a JSON value"},
    {"01", 0, "leading zero"},
    {"-", 0, "bad number"},
    {"-a", 0, "bad number"},
    {"1.5", 0, "only integers"},
    {"1e3", 0, "only integers"},
    {"1E3", 0, "only integers"},
    {"9223372036854775808", 0, "out of range"},
    {"-9223372036854775809", 0, "out of range"},
    {"99999999999999999999999", 0, "out of range"},
    {"+1", 0, "not a JSON value"},
    {"\"abc", 0, "unterminated string"},
    {"\"abc\\", 0, "unterminated string"},
    {"\"abc\\\"", 0, "unterminated string"},
    {"\"a\tb\"", 0, "control character"},
    {"\"a\nb\"", 0, "control character"},
    {"\"\\x41\"", 0, "unknown escape"},
    {"\"\\u12\"", 0, "bad \\u escape"},
    {"\"\\u12G4\"", 0, "bad \\u escape"},
    {"\"\\u0000\"", 0, "\\u0000"},
    {"\"\\ud800\"", 0, "lone high surrogate"},
    {"\"\\ud800x\"", 0, "lone high surrogate"},
    {"\"\\ud800\\u0041\"", 0, "lone high surrogate"},
    {"\"\\ud800\\ud800\"", 0, "lone high surrogate"},
    {"\"\\udc00\"", 0, "lone low surrogate"},
    {"\"\\udfff\\ud800\"", 0, "lone low surrogate"},
    {"\"\xff\"", 0, "invalid UTF-8"},
    {"\"\xc0\xaf\"", 0, "invalid UTF-8"},         /* overlong '/' */
    {"\"\xe0\x80\xaf\"", 0, "invalid UTF-8"},     /* overlong */
    {"\"\xf0\x80\x80\xaf\"", 0, "invalid UTF-8"}, /* overlong */
    {"\"\xed\xa0\x80\"", 0, "invalid UTF-8"},     /* encoded surrogate U+D800 */
    {"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8"}, /* above U+10FFFF */
    {"\"\xe6\x97\"", 0, "invalid UTF-8"},         /* truncated */
    {"\"\x80\"", 0, "invalid UTF-8"},             /* lone continuation byte */
    {"\"\xf8\x88\x80\x80\x80\"", 0, "invalid UTF-8"},
    {"{\"a\":1,\"a\":2}", 0, "duplicate key 'a'"},
    {"{\"k\":{\"x\":1,\"y\":2,\"x\":3}}", 0, "duplicate key 'x'"},
    {"{\"\\u0061\":1,\"a\":2}", 0, "duplicate key 'a'"}, /* the same key, escaped */
    {"[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]", 0, "deeper than 16"},
    {"\xef\xbb\xbf{}", 0, "not a JSON value"}, /* a byte-order mark */
    {"{\"a\":1}\0", 8, "after the JSON value"},
    {"\"a\0b\"", 5, "control character"},
};

START_TEST(refuses_malformed)
{
    khj_error e;
    const bad_case *c = &bad[_i];
    size_t len = c->len ? c->len : strlen(c->in);
    khj_val *v = khj_parse(c->in, len, 0, 0, &e);
    ck_assert_msg(v == NULL, "case %d accepted", _i);
    ck_assert_msg(strstr(e.msg, c->reason) != NULL, "case %d: reason '%s', wanted '%s'", _i, e.msg,
                  c->reason);
    ck_assert_msg(e.offset <= len, "case %d: offset %zu beyond the input", _i, e.offset);
}
END_TEST

START_TEST(error_offsets)
{
    khj_error e;
    ck_assert_ptr_null(parse("{\"a\":1,\"b\":x}", &e));
    ck_assert_uint_eq(e.offset, 11);
    ck_assert_ptr_null(parse("[1,2,\"\\ud800\"]", &e));
    ck_assert_uint_eq(e.offset, 6);
}
END_TEST

/* {"k0":0,...,"k4999":4999}; with dup, the last key is k0 again. */
static void wide_object(char *buf, size_t cap, bool dup)
{
    size_t pos = (size_t)snprintf(buf, cap, "{");
    for (int i = 0; i < 5000; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s\"k%d\":%d", i ? "," : "",
                                dup && i == 4999 ? 0 : i, i);
    snprintf(buf + pos, cap - pos, "}");
}

START_TEST(limits)
{
    khj_error e;
    /* size is checked before anything is read or allocated */
    char *big = malloc(100001);
    memset(big, ' ', 100000);
    big[0] = '"';
    big[99999] = '"';
    big[100000] = '\0';
    ck_assert_ptr_null(khj_parse(big, 100000, 1000, 0, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "larger than 1000"));
    khj_val *v = khj_parse(big, 100000, 200000, 0, &e);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(khj_strlen(v), 99998);
    khj_free(v);
    ck_assert_ptr_null(khj_parse(big, 100000, 0, 0, &e)); /* default 64 KiB */
    free(big);
    /* depth: an explicit limit */
    ck_assert_ptr_null(khj_parse("[[[]]]", 6, 0, 2, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "deeper than 2"));
    v = khj_parse("[[]]", 4, 0, 2, &e);
    ck_assert_ptr_nonnull(v);
    khj_free(v);
    /* very deep input fails cleanly, without exhausting the stack */
    size_t n = 60000;
    char *deep = malloc(n);
    memset(deep, '[', n);
    ck_assert_ptr_null(khj_parse(deep, n, n, 0, &e));
    free(deep);
    /* many members: the duplicate check stays fast and exact */
    size_t cap = 70000;
    char *wide = malloc(cap);
    wide_object(wide, cap, false);
    v = khj_parse(wide, strlen(wide), cap, 0, &e);
    ck_assert_msg(v != NULL, "%s", e.msg);
    ck_assert_uint_eq(khj_len(v), 5000);
    int64_t x;
    ck_assert(khj_get_int(v, "k4321", &x));
    ck_assert_int_eq(x, 4321);
    khj_free(v);
    wide_object(wide, cap, true);
    ck_assert_ptr_null(khj_parse(wide, strlen(wide), cap, 0, &e));
    ck_assert_ptr_nonnull(strstr(e.msg, "duplicate key 'k0'"));
    free(wide);
}
END_TEST

/* ------------------------------------------------ escapes, UTF-8, lookup */

START_TEST(escapes_decode_to_utf8)
{
    khj_error e;
    khj_val *v = parse("{\"s\":\"a\\u0041\\u00e9\\u65e5\\ud83d\\ude00\\n\\/\"}", &e);
    ck_assert_msg(v != NULL, "%s", e.msg);
    const char *s = khj_get_str(v, "s");
    ck_assert_str_eq(s, "aA\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\n/");
    ck_assert_uint_eq(khj_strlen(khj_get(v, "s")), strlen(s));
    khj_free(v);
    v = parse("\"\\uDBFF\\uDFFF\"", &e); /* U+10FFFF, upper-case hex */
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(khj_str(v), "\xf4\x8f\xbf\xbf");
    khj_free(v);
}
END_TEST

START_TEST(lookup_api)
{
    khj_error e;
    khj_val *v = parse("{\"name\":\"ta-1\",\"n\":-42,\"ok\":true,\"no\":null,"
                       "\"list\":[\"131016\",\"271004\"],\"obj\":{\"x\":1}}",
                       &e);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(khj_get_str(v, "name"), "ta-1");
    ck_assert_ptr_null(khj_get_str(v, "n")); /* not a string */
    ck_assert_ptr_null(khj_get_str(v, "missing"));
    int64_t n = 0;
    ck_assert(khj_get_int(v, "n", &n));
    ck_assert_int_eq(n, -42);
    ck_assert(!khj_get_int(v, "name", &n));
    ck_assert(khj_bool(khj_get(v, "ok")));
    ck_assert_int_eq(khj_type_of(khj_get(v, "no")), KHJ_NULL);
    const khj_val *list = khj_get(v, "list");
    ck_assert_uint_eq(khj_len(list), 2);
    ck_assert_str_eq(khj_str(khj_at(list, 1)), "271004");
    ck_assert_ptr_null(khj_at(list, 2));
    ck_assert_ptr_null(khj_key_at(list, 0));
    ck_assert_uint_eq(khj_len(v), 6);
    ck_assert_str_eq(khj_key_at(v, 0), "name");
    ck_assert_str_eq(khj_key_at(v, 5), "obj");
    ck_assert_ptr_null(khj_get(list, "name")); /* not an object */
    ck_assert_ptr_null(khj_get(NULL, "name"));
    ck_assert_str_eq(khj_type_name(khj_type_of(khj_get(v, "obj"))), "object");
    khj_free(v);
    khj_free(NULL);
}
END_TEST

/* ----------------------------------------------------------------- writer */

START_TEST(writer_escapes)
{
    khj_writer w;
    khjw_init(&w, 0);
    khjw_obj(&w);
    khjw_kstr(&w, "q", "a\"b\\c/d");
    khjw_kstr(&w, "ctl", "\x01\x1f\n\r\t");
    khjw_kstr(&w, "jp", "\xe6\x97\xa5");
    khjw_key(&w, "bad");
    khjw_strn(&w, "x\xff\xc0y", 4);
    khjw_kstr(&w, "ls", "\xe2\x80\xa8");
    khjw_kint(&w, "min", INT64_MIN);
    khjw_kbool(&w, "t", true);
    khjw_key(&w, "nil");
    khjw_str(&w, NULL);
    khjw_key(&w, "arr");
    khjw_arr(&w);
    khjw_int(&w, 1);
    khjw_arr(&w);
    khjw_arr_end(&w);
    khjw_obj(&w);
    khjw_obj_end(&w);
    khjw_raw(&w, "{\"r\":[1,\"x\"]}", 13);
    khjw_arr_end(&w);
    khjw_obj_end(&w);
    size_t len;
    char *out = khjw_finish(&w, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, "{\"q\":\"a\\\"b\\\\c/d\",\"ctl\":\"\\u0001\\u001f\\n\\r\\t\","
                          "\"jp\":\"\xe6\x97\xa5\",\"bad\":\"x\\ufffd\\ufffdy\",\"ls\":\"\\u2028\","
                          "\"min\":-9223372036854775808,\"t\":true,\"nil\":null,"
                          "\"arr\":[1,[],{},{\"r\":[1,\"x\"]}]}");
    ck_assert_uint_eq(len, strlen(out));
    /* what the writer writes, the parser reads back */
    khj_error e;
    khj_val *v = khj_parse(out, len, 0, 0, &e);
    ck_assert_msg(v != NULL, "%s", e.msg);
    ck_assert_str_eq(khj_get_str(v, "ctl"), "\x01\x1f\n\r\t");
    ck_assert_str_eq(khj_get_str(v, "bad"), "x\xef\xbf\xbd\xef\xbf\xbdy");
    khj_free(v);
    free(out);
}
END_TEST

START_TEST(writer_refuses_misuse)
{
    khj_writer w;
    /* unclosed */
    khjw_init(&w, 0);
    khjw_obj(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* value without key in an object */
    khjw_obj(&w);
    khjw_int(&w, 1);
    khjw_obj_end(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* key in an array */
    khjw_arr(&w);
    khjw_key(&w, "a");
    khjw_arr_end(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* mismatched close */
    khjw_arr(&w);
    khjw_obj_end(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* two documents */
    khjw_obj(&w);
    khjw_obj_end(&w);
    khjw_obj(&w);
    khjw_obj_end(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* raw text that is not JSON */
    khjw_arr(&w);
    khjw_raw(&w, "{\"a\":", 5);
    khjw_arr_end(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* over the size limit */
    khjw_init(&w, 16);
    khjw_arr(&w);
    for (int i = 0; i < 10; i++)
        khjw_int(&w, 12345);
    khjw_arr_end(&w);
    ck_assert_ptr_null(khjw_finish(&w, NULL));
    /* nothing written */
    ck_assert_ptr_null(khjw_finish(&w, NULL));
}
END_TEST

/* ------------------------------------------------------ mutation sweep */

START_TEST(mutations_never_crash)
{
    const char *seed = "{\"kind\":\"hold\",\"local_id\":\"123456\",\"n\":[1,-2,{\"x\":null}],"
                       "\"s\":\"\\u65e5\\ud83d\\ude00\\\"\",\"t\":true}";
    size_t n = strlen(seed);
    char *buf = malloc(n + 1);
    static const char bytes[] = {'"', '\\', '{',  '}',        '[',        ']',
                                 ',', ':',  '0',  '-',        'u',        'e',
                                 '.', ' ',  '\0', (char)0xc3, (char)0xed, (char)0xff};
    unsigned long accepted = 0, refused = 0;
    srand(12345);
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, seed, n + 1);
        int edits = 1 + rand() % 3;
        for (int k = 0; k < edits; k++)
            buf[(size_t)rand() % n] = bytes[(size_t)rand() % sizeof bytes];
        size_t len = (size_t)(rand() % (int)(n + 1));
        khj_error e;
        khj_val *v = khj_parse(buf, len, 0, 0, &e);
        if (v != NULL) {
            accepted++;
            khj_free(v);
        } else {
            ck_assert_msg(e.msg[0] != '\0', "refused without a reason");
            refused++;
        }
    }
    ck_assert(refused > 0);
    khj_val *v = khj_parse(seed, n, 0, 0, NULL);
    ck_assert_ptr_nonnull(v);
    khj_free(v);
    free(buf);
    (void)accepted;
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("khjson");
    TCase *tc = tcase_create("all");
    tcase_add_loop_test(tc, parses_valid, 0, (int)(sizeof valid / sizeof valid[0]));
    tcase_add_loop_test(tc, refuses_malformed, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, error_offsets);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, escapes_decode_to_utf8);
    tcase_add_test(tc, lookup_api);
    tcase_add_test(tc, writer_escapes);
    tcase_add_test(tc, writer_refuses_misuse);
    tcase_add_test(tc, mutations_never_crash);
    tcase_set_timeout(tc, 60);
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
