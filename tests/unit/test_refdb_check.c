/* Unit tests for refdb_check_stream: one row per rule of refdb/FORMAT.md
 * section 3 (a small CSV text and the (line, field, code) problems it must
 * give, in report order), then records handed to record_fn, the statistics
 * and SHA-256, records at the length limit, report quoting, and a 200,000
 * record file streamed through a pipe (run it under ASan for leaks). Every
 * input goes through a pipe fed by a writer thread, as a real upload would. */
#include "refdb.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ the layout */

static const char *const cat_codes[] = {"0", "1", "2"};

static refdb_field_spec spec[] = {
    {.name = "name", .type = "X", .length = 10, .mandatory = true, .charset = "any"},
    {.name = "income", .type = "S9", .length = 13},
    {.name = "birth", .type = "DATE", .length = 8},
    {.name = "cat",
     .type = "CODE",
     .length = 1,
     .code_table = "CAT",
     .codes = cat_codes,
     .ncodes = 3},
    {.name = "fy", .type = "9", .length = 4, .pad = "zero"},
};
#define NSPEC (sizeof spec / sizeof spec[0])

static refdb_column cols[NSPEC];
static refdb_layout layout = {.item_code = "TK001", .layout_version = 1};

/* Plain fields, one column each, as the loaders would flatten them. */
static void layout_setup(void)
{
    for (size_t i = 0; i < NSPEC; i++) {
        spec[i].min_occurs = 1;
        spec[i].max_occurs = 1;
        spec[i].group = -1;
        snprintf(cols[i].name, sizeof cols[i].name, "%s", spec[i].name);
        cols[i].field = (int)i;
        cols[i].occurrence = 1;
    }
    layout.nfields = NSPEC;
    layout.fields = spec;
    layout.ncols = NSPEC;
    layout.cols = cols;
}

#define HDR "local_id,effective_from,latest_flag,delete_flag,name,income,birth,cat,fy\n"
#define V ",Taro,1200,20000101,1,2024" /* good values */
#define NUL_CSV HDR "1,20240101,1,0,Ta\0ro,1,20000101,1,2024\n"

/* ------------------------------------------------------- feeding a pipe */

typedef struct {
    int fd;
    const char *data;
    size_t len;
    size_t nrecords; /* generator mode when data is NULL */
} writer_job;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the reader stopped: EPIPE */
        p += w;
        n -= (size_t)w;
    }
}

/* Writes the job's text, or generates a sorted file of nrecords records (two
 * per person), then closes the pipe. */
static void *writer(void *arg)
{
    writer_job *j = arg;
    if (j->data != NULL) {
        write_all(j->fd, j->data, j->len);
    } else {
        char line[128];
        write_all(j->fd, HDR, strlen(HDR));
        for (size_t i = 0; i < j->nrecords; i++) {
            int n = snprintf(line, sizeof line, "%015zu,2024010%zu,%zu,0" V "\n", i / 2, 1 + i % 2,
                             i % 2);
            write_all(j->fd, line, (size_t)n);
        }
    }
    close(j->fd);
    return NULL;
}

typedef struct {
    pthread_t t;
    writer_job job;
} feeder;

/* Returns the read end of a pipe the feeder's thread writes into. */
static int feed_start(feeder *f, const char *data, size_t len, size_t nrecords)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    f->job.fd = p[1];
    f->job.data = data;
    f->job.len = len;
    f->job.nrecords = nrecords;
    ck_assert_int_eq(pthread_create(&f->t, NULL, writer, &f->job), 0);
    return p[0];
}

static void feed_end(feeder *f, int rfd)
{
    close(rfd); /* before the join: a writer blocked on a full pipe gets EPIPE */
    pthread_join(f->t, NULL);
}

/* ------------------------------------------------------ collecting output */

#define MAXISSUES 16
#define MAXRECS 16

typedef struct {
    refdb_issue issues[MAXISSUES];
    size_t nissues;
    char recs[MAXRECS][256]; /* "line|id|from|latest|deleted|v1|v2..." */
    size_t nrecs;
    size_t progress_calls;
    size_t record_calls;
    int stop_after; /* record_fn returns 1 after this many calls (0 = never) */
} sink;

static void on_issue(const refdb_issue *is, void *arg)
{
    sink *s = arg;
    if (s->nissues < MAXISSUES)
        s->issues[s->nissues] = *is;
    s->nissues++;
}

static int on_record(const refdb_record *rec, void *arg)
{
    sink *s = arg;
    s->record_calls++;
    if (s->nrecs < MAXRECS) {
        char *p = s->recs[s->nrecs++];
        size_t left = sizeof s->recs[0];
        int n = snprintf(p, left, "%zu|%s|%s|%d|%d", rec->line, rec->local_id, rec->effective_from,
                         rec->latest, rec->deleted);
        for (size_t i = 0; i < rec->nvals && n > 0 && (size_t)n < left; i++) {
            p += n;
            left -= (size_t)n;
            n = snprintf(p, left, "|%s", rec->vals[i]);
        }
    }
    return s->stop_after > 0 && s->record_calls >= (size_t)s->stop_after;
}

static void on_progress(const refdb_file_stats *st, void *arg)
{
    sink *s = arg;
    s->progress_calls++;
}

static kh_err run(const char *data, size_t len, sink *s, refdb_file_stats *st)
{
    feeder f;
    memset(s, 0, sizeof *s);
    int fd = feed_start(&f, data, len, 0);
    kh_err e = refdb_check_stream(fd, &layout, on_issue, on_record, on_progress, s, st);
    feed_end(&f, fd);
    return e;
}

/* ------------------------------------------------------------ the table */

typedef struct {
    size_t line;
    const char *field;
    const char *code;
} want_issue;

typedef struct {
    const char *what;
    const char *csv;
    size_t len; /* 0: strlen(csv) */
    want_issue want[6];
    int persons; /* -1: not checked */
} ccase;

static const ccase cases[] = {
    /* well-formed files */
    {"one record", HDR "1,20240101,1,0" V "\n", 0, {{0}}, 1},
    {"header only is an empty valid file", HDR, 0, {{0}}, 0},
    {"no final line end", HDR "1,20240101,1,0" V, 0, {{0}}, 1},
    {"CRLF line ends",
     "local_id,effective_from,latest_flag,delete_flag,name,income,birth,cat,fy\r\n"
     "1,20240101,0,0" V "\r\n1,20240201,1,0" V "\r\n",
     0,
     {{0}},
     1},
    {"leading BOM skipped", "\xEF\xBB\xBF" HDR "1,20240101,1,0" V "\n", 0, {{0}}, 1},
    {"quoted fields, \"\" escapes, commas",
     HDR "\"1\",\"20240101\",1,0,\"Ta,\"\"ro\",\"\",\"20000101\",\"1\",2024\n",
     0,
     {{0}},
     1},
    {"optional fields empty", HDR "1,20240101,1,0,Taro,,,,\n", 0, {{0}}, 1},
    {"UTF-8 text", HDR "1,20240101,1,0,千代田太郎,-5,20240229,0,0001\n", 0, {{0}}, 1},
    {"local_id in byte order (10 before 9)",
     HDR "10,20240101,1,0" V "\n9,20240101,1,0" V "\n",
     0,
     {{0}},
     2},
    {"deletion row, every field empty",
     HDR "1,20240101,0,0" V "\n1,20240301,1,1,,,,,\n",
     0,
     {{0}},
     1},
    {"15-digit local_id", HDR "123456789012345,20240101,1,0" V "\n", 0, {{0}}, 1},

    /* header */
    {"empty file", "", 0, {{1, "-", "KH-1103"}}, 0},
    {"BOM only", "\xEF\xBB\xBF", 0, {{1, "-", "KH-1103"}}, 0},
    {"header names a wrong column, nothing after it checked",
     "local_id,effective_from,latest_flag,delete_flag,name,income,birthday,cat,fy\n"
     "x,y,z\n1,20240101,1,0" V "\n",
     0,
     {{1, "birth", "KH-1103"}},
     0},
    {"header lacks a column",
     "local_id,effective_from,latest_flag,delete_flag,name,income,birth,cat\n",
     0,
     {{1, "-", "KH-1103"}},
     0},
    {"header has an extra column",
     "local_id,effective_from,latest_flag,delete_flag,name,income,"
     "birth,cat,fy,extra\n",
     0,
     {{1, "-", "KH-1103"}},
     0},
    {"header with a syntax error",
     "local_id,effective_from,\"latest_flag\"x,delete_flag,name,"
     "income,birth,cat,fy\n1,20240101,1,0" V "\n",
     0,
     {{1, "-", "KH-1101"}, {1, "-", "KH-1103"}},
     0},
    {"blank first line", "\n" HDR, 0, {{1, "local_id", "KH-1103"}}, 0},

    /* CSV syntax */
    {"quote inside an unquoted field",
     HDR "1,20240101,1,0,Ta\"ro,1,20000101,1,2024\n",
     0,
     {{2, "-", "KH-1101"}},
     1},
    {"text after a closing quote",
     HDR "1,20240101,1,0,\"Ta\"ro,1,20000101,1,2024\n",
     0,
     {{2, "-", "KH-1101"}},
     1},
    {"bare CR in a field",
     HDR "1,20240101,1,0,Ta\rro,1,20000101,1,2024\n",
     0,
     {{2, "-", "KH-1101"}},
     1},
    {"bare CR as a line end",
     HDR "1,20240101,1,0" V "\r1,20240201,1,0" V "\n",
     0,
     {{2, "-", "KH-1101"}, {2, "-", "KH-1104"}},
     1},
    {"bare CR inside quotes",
     HDR "1,20240101,1,0,\"Ta\rro\",1,20000101,1,2024\n",
     0,
     {{2, "-", "KH-1101"}},
     1},
    {"quote never closed",
     HDR "1,20240101,1,0,\"Taro,1,20000101,1,2024\n",
     0,
     {{2, "-", "KH-1101"}, {2, "-", "KH-1104"}},
     1},
    {"embedded line breaks move later lines",
     HDR "1,20240101,1,0,\"Ta\nr\r\no\",1,20000101,1,2024\n"
         "2,20240101,1,0,Hana,1,20000230,1,2024\n",
     0,
     {{2, "name", "KH-1109"}, {5, "birth", "KH-1106"}},
     2},

    /* encoding */
    {"Shift_JIS bytes",
     HDR "1,20240101,1,0,\x91\xe5\x8d\xe3,1,20000101,1,2024\n",
     0,
     {{2, "name", "KH-1102"}},
     1},
    {"invalid byte in a key column",
     HDR "1\xff,20240101,1,0" V "\n",
     0,
     {{2, "local_id", "KH-1102"}, {2, "local_id", "KH-1116"}},
     0},
    {"overlong form",
     HDR "1,20240101,1,0,\xc0\xaf,1,20000101,1,2024\n",
     0,
     {{2, "name", "KH-1102"}},
     1},
    {"surrogate",
     HDR "1,20240101,1,0,\xed\xa0\x80,1,20000101,1,2024\n",
     0,
     {{2, "name", "KH-1102"}},
     1},
    {"character cut by the line end",
     HDR "1,20240101,1,0,1,1,20000101,1,\xe3\x81\n",
     0,
     {{2, "fy", "KH-1102"}},
     1},
    {"character cut by the end of the file",
     HDR "1,20240101,1,0,1,1,20000101,1,\xe3\x81",
     0,
     {{2, "fy", "KH-1102"}},
     1},
    {"NUL byte", NUL_CSV, sizeof NUL_CSV - 1, {{2, "name", "KH-1102"}}, 1},
    {"invalid UTF-8 in the header",
     "local_id,effective_from,latest_flag,delete_flag,n\xffme,"
     "income,birth,cat,fy\n",
     0,
     {{1, "-", "KH-1102"}, {1, "-", "KH-1103"}},
     0},

    /* columns */
    {"too few columns", HDR "1,20240101,1,0,Taro,1\n", 0, {{2, "-", "KH-1104"}}, 1},
    {"too many columns", HDR "1,20240101,1,0" V ",x\n", 0, {{2, "-", "KH-1104"}}, 1},
    {"blank line", HDR "1,20240101,1,0" V "\n\n2,20240101,1,0" V "\n", 0, {{3, "-", "KH-1104"}}, 2},

    /* keys */
    {"local_id not digits", HDR "1a,20240101,1,0" V "\n", 0, {{2, "local_id", "KH-1116"}}, 0},
    {"local_id of 16 digits",
     HDR "1234567890123456,20240101,1,0" V "\n",
     0,
     {{2, "local_id", "KH-1116"}},
     0},
    {"local_id empty", HDR ",20240101,1,0" V "\n", 0, {{2, "local_id", "KH-1116"}}, 0},
    {"effective_from not a date",
     HDR "1,20230229,1,0" V "\n",
     0,
     {{2, "effective_from", "KH-1116"}},
     0},

    /* flags */
    {"latest_flag not 0/1", HDR "1,20240101,2,0" V "\n", 0, {{2, "latest_flag", "KH-1110"}}, 1},
    {"delete_flag not 0/1", HDR "1,20240101,1,x" V "\n", 0, {{2, "delete_flag", "KH-1110"}}, 1},
    {"deletion row with data",
     HDR "1,20240101,1,1,Taro,,,1,\n",
     0,
     {{2, "name", "KH-1110"}, {2, "cat", "KH-1110"}},
     1},

    /* order and duplicates */
    {"local_id decreases",
     HDR "2,20240101,1,0" V "\n1,20240101,1,0" V "\n",
     0,
     {{3, "local_id", "KH-1112"}},
     2},
    {"9 after 10 is out of byte order",
     HDR "9,20240101,1,0" V "\n10,20240101,1,0" V "\n",
     0,
     {{3, "local_id", "KH-1112"}},
     2},
    {"effective_from decreases",
     HDR "1,20240201,0,0" V "\n1,20240101,1,0" V "\n",
     0,
     {{3, "effective_from", "KH-1112"}},
     1},
    {"duplicate key",
     HDR "1,20240101,0,0" V "\n1,20240101,1,0" V "\n",
     0,
     {{3, "-", "KH-1111"}},
     1},

    /* latest flags */
    {"no latest row: at the person's last row",
     HDR "1,20240101,0,0" V "\n1,20240201,0,0" V "\n2,20240101,1,0" V "\n",
     0,
     {{3, "latest_flag", "KH-1113"}},
     2},
    {"no latest row for the last person",
     HDR "1,20240101,1,0" V "\n2,20240101,0,0" V "\n",
     0,
     {{3, "latest_flag", "KH-1113"}},
     2},
    {"two latest rows: the earlier one",
     HDR "1,20240101,1,0" V "\n1,20240201,1,0" V "\n",
     0,
     {{2, "latest_flag", "KH-1113"}},
     1},
    {"latest not on the last row",
     HDR "1,20240101,0,0" V "\n1,20240201,1,0" V "\n1,20240301,0,0" V "\n2,20240101,1,0" V "\n",
     0,
     {{3, "latest_flag", "KH-1113"}},
     2},
    {"deletion row must carry the latest flag",
     HDR "1,20240101,1,0" V "\n1,20240301,0,1,,,,,\n",
     0,
     {{2, "latest_flag", "KH-1113"}},
     1},

    /* values (refdb_validate_values) */
    {"mandatory field empty",
     HDR "1,20240101,1,0,,1,20000101,1,2024\n",
     0,
     {{2, "name", "KH-1105"}},
     1},
    {"several bad values",
     HDR "1,20240101,1,0,Taro,1,20000230,9,24\n",
     0,
     {{2, "birth", "KH-1106"}, {2, "cat", "KH-1108"}, {2, "fy", "KH-1107"}},
     1},
    {"values not checked on a deletion row", HDR "1,20240101,1,1,,,,,\n", 0, {{0}}, 1},

    /* several problems, in file order */
    {"problems of several records in file order",
     HDR "1,20240101,1,0" V "\n1,20240101,1,0,,1,20000101,1,2024\n0,20240101,1,0" V "\n",
     0,
     {{2, "latest_flag", "KH-1113"},
      {3, "name", "KH-1105"},
      {3, "-", "KH-1111"},
      {4, "local_id", "KH-1112"}},
     2},
};
#define NCASES (sizeof cases / sizeof cases[0])

START_TEST(check_case)
{
    const ccase *c = &cases[_i];
    size_t len = c->len != 0 ? c->len : strlen(c->csv);
    size_t nwant = 0, bad = 0, last_bad_line = 0;
    refdb_file_stats st;
    sink s;
    layout_setup();
    kh_err e = run(c->csv, len, &s, &st);

    for (; nwant < 6 && c->want[nwant].line != 0; nwant++) {
        if (c->want[nwant].line > 1 && c->want[nwant].line != last_bad_line) {
            bad++; /* expected issues come grouped by line */
            last_bad_line = c->want[nwant].line;
        }
    }
    bool same = s.nissues == nwant;
    for (size_t i = 0; same && i < nwant; i++)
        same = s.issues[i].line == c->want[i].line &&
               strcmp(s.issues[i].field, c->want[i].field) == 0 &&
               strcmp(kh_err_code(s.issues[i].code), c->want[i].code) == 0;
    for (size_t i = 0; !same && i < s.nissues && i < MAXISSUES; i++)
        fprintf(stderr, "%s: got %zu,%s,%s,%s\n", c->what, s.issues[i].line, s.issues[i].field,
                kh_err_code(s.issues[i].code), s.issues[i].reason);
    ck_assert_msg(s.nissues == nwant, "%s: %zu issues, want %zu", c->what, s.nissues, nwant);
    for (size_t i = 0; i < nwant; i++) {
        const refdb_issue *is = &s.issues[i];
        ck_assert_msg(is->line == c->want[i].line && strcmp(is->field, c->want[i].field) == 0 &&
                          strcmp(kh_err_code(is->code), c->want[i].code) == 0,
                      "%s: issue %zu is %zu,%s,%s; want %zu,%s,%s", c->what, i, is->line, is->field,
                      kh_err_code(is->code), c->want[i].line, c->want[i].field, c->want[i].code);
        ck_assert_msg(is->reason[0] != '\0', "%s: issue %zu has no reason", c->what, i);
    }
    ck_assert_int_eq(e, nwant == 0 ? KH_OK : KH_E_FILE_REJECTED);
    ck_assert_uint_eq(st.issues, nwant);
    ck_assert_msg(st.bad_records == bad, "%s: %zu bad records, want %zu", c->what, st.bad_records,
                  bad);
    if (c->persons >= 0)
        ck_assert_msg(st.persons == (size_t)c->persons, "%s: %zu persons, want %d", c->what,
                      st.persons, c->persons);
    ck_assert_uint_eq(st.bytes, len);
    ck_assert_uint_eq(s.progress_calls, 1);
    /* every good record, and only those, went to record_fn */
    if (c->want[0].line <= 1 && nwant > 0)
        ck_assert_uint_eq(s.record_calls, 0);
    else
        ck_assert_uint_eq(s.record_calls, st.records - st.bad_records);
}
END_TEST

/* ------------------------------------------------------ other behaviour */

START_TEST(records_to_record_fn)
{
    static const char csv[] = HDR "1,20240101,0,0,Taro,100,20000101,1,2024\n"
                                  "1,20240201,1,0,\"Ta\"\"ro\",-5,,2,2025\n"
                                  "2,20240101,1,0,,1,20000101,1,2024\n"
                                  "3,20240101,0,0,\"Ha\nna\",1,20000101,1,2024\n"
                                  "3,20240301,1,1,,,,,\r\n"
                                  "4,20240101,0,0,Jiro,1,20000101,1,2024\n"
                                  "5,20240101,1,0,Saburo,,,,\n";
    static const char *const want[] = {
        "2|1|20240101|0|0|Taro|100|20000101|1|2024",
        "3|1|20240201|1|0|Ta\"ro|-5||2|2025",
        "7|3|20240301|1|1|||||",
        "9|5|20240101|1|0|Saburo||||",
    };
    refdb_file_stats st;
    sink s;
    layout_setup();
    kh_err e = run(csv, strlen(csv), &s, &st);
    ck_assert_int_eq(e, KH_E_FILE_REJECTED);
    ck_assert_uint_eq(s.nissues, 3); /* 4 mandatory, 5 control character, 8 no latest */
    ck_assert_uint_eq(s.issues[0].line, 4);
    ck_assert_uint_eq(s.issues[1].line, 5);
    ck_assert_uint_eq(s.issues[2].line, 8);
    ck_assert_uint_eq(s.nrecs, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_str_eq(s.recs[i], want[i]);
    ck_assert_uint_eq(st.records, 7);
    ck_assert_uint_eq(st.persons, 5);
    ck_assert_uint_eq(st.bad_records, 3);
    ck_assert_uint_eq(st.lines, 9);
}
END_TEST

START_TEST(record_fn_stops)
{
    static const char csv[] = HDR "1,20240101,1,0" V "\n2,20240101,1,0" V "\n3,20240101,1,0" V "\n";
    refdb_file_stats st;
    sink s;
    feeder f;
    layout_setup();
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    int fd = feed_start(&f, csv, strlen(csv), 0);
    kh_err e = refdb_check_stream(fd, &layout, on_issue, on_record, NULL, &s, &st);
    feed_end(&f, fd);
    ck_assert_int_eq(e, KH_E_INTERNAL);
    ck_assert_uint_eq(s.record_calls, 1);
    ck_assert_uint_lt(st.records, 3);
}
END_TEST

START_TEST(unreadable_fd)
{
    refdb_file_stats st;
    layout_setup();
    ck_assert_int_eq(refdb_check_stream(-1, &layout, NULL, NULL, NULL, NULL, &st), KH_E_INTERNAL);
    ck_assert_int_eq(refdb_check_stream(0, NULL, NULL, NULL, NULL, NULL, &st), KH_E_INTERNAL);
}
END_TEST

START_TEST(sha256_and_stats)
{
    static const char csv[] = "\xEF\xBB\xBF" HDR "1,20240101,1,0" V "\r\n2,20240101,1,0" V;
    uint8_t want[32];
    unsigned int n = 0;
    refdb_file_stats st;
    sink s;
    layout_setup();
    ck_assert_int_eq(EVP_Digest(csv, strlen(csv), want, &n, EVP_sha256(), NULL), 1);
    ck_assert_int_eq(run(csv, strlen(csv), &s, &st), KH_OK);
    ck_assert_mem_eq(st.sha256, want, 32);
    ck_assert_uint_eq(st.bytes, strlen(csv));
    ck_assert_uint_eq(st.lines, 3);
    ck_assert_uint_eq(st.records, 2);
    ck_assert_uint_eq(st.persons, 2);

    /* an empty file has the SHA-256 of nothing */
    ck_assert_int_eq(EVP_Digest("", 0, want, &n, EVP_sha256(), NULL), 1);
    ck_assert_int_eq(run("", 0, &s, &st), KH_E_FILE_REJECTED);
    ck_assert_mem_eq(st.sha256, want, 32);
    ck_assert_uint_eq(st.lines, 0);
}
END_TEST

/* A file: header, a record of 15 + name_len + 1 + tail bytes at line 2, then
 * a good record. */
static char *long_file(size_t name_len, bool quoted, const char *eol, size_t *len)
{
    const char *head = "1,20240101,1,0,";
    const char *tail = ",1,20000101,1,2024";
    const char *next = "2,20240101,1,0" V "\n";
    size_t cap = strlen(HDR) + strlen(head) + name_len + 2 + strlen(tail) + 2 + strlen(next) + 1;
    char *buf = malloc(cap);
    char *p = buf;
    ck_assert_ptr_nonnull(buf);
    p += sprintf(p, "%s%s", HDR, head);
    if (quoted)
        *p++ = '"'; /* never closed */
    memset(p, 'a', name_len);
    p += name_len;
    p += sprintf(p, "%s%s%s", tail, eol, next);
    *len = (size_t)(p - buf);
    return buf;
}

START_TEST(record_length_limit)
{
    const size_t fixed = strlen("1,20240101,1,0,") + strlen(",1,20000101,1,2024");
    const size_t at_limit = 65536 - fixed;
    refdb_file_stats st;
    sink s;
    size_t len;
    layout_setup();

    /* exactly 65,536 bytes before the line end: read; the name is too long */
    const char *eols[] = {"\n", "\r\n"};
    for (size_t k = 0; k < 2; k++) {
        char *csv = long_file(at_limit, false, eols[k], &len);
        ck_assert_int_eq(run(csv, len, &s, &st), KH_E_FILE_REJECTED);
        ck_assert_uint_eq(s.nissues, 1);
        ck_assert_str_eq(s.issues[0].field, "name");
        ck_assert_int_eq(s.issues[0].code, KH_E_TYPE);
        free(csv);
    }

    /* one byte more: KH-1115, and the next line is read as a record */
    char *csv = long_file(at_limit + 1, false, "\n", &len);
    ck_assert_int_eq(run(csv, len, &s, &st), KH_E_FILE_REJECTED);
    ck_assert_uint_eq(s.nissues, 1);
    ck_assert_uint_eq(s.issues[0].line, 2);
    ck_assert_int_eq(s.issues[0].code, KH_E_RECORD_TOO_LONG);
    ck_assert_uint_eq(st.records, 2);
    ck_assert_uint_eq(s.nrecs, 1);
    ck_assert_str_eq(s.recs[0], "3|2|20240101|1|0|Taro|1200|20000101|1|2024");
    free(csv);

    /* an unclosed quote: the record runs over the limit, reading resumes at
     * the next line end whatever the quoting */
    csv = long_file(70000, true, "\n", &len);
    ck_assert_int_eq(run(csv, len, &s, &st), KH_E_FILE_REJECTED);
    ck_assert_uint_eq(s.nissues, 1);
    ck_assert_uint_eq(s.issues[0].line, 2);
    ck_assert_int_eq(s.issues[0].code, KH_E_RECORD_TOO_LONG);
    ck_assert_uint_eq(s.nrecs, 1);
    ck_assert_uint_eq(st.lines, 3);
    free(csv);
}
END_TEST

START_TEST(report_rows)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    refdb_issue is = {.line = 12, .field = "group[1].name", .code = KH_E_LATEST};
    snprintf(is.reason, sizeof is.reason, "a \"quoted\", reason");
    ck_assert_ptr_nonnull(out);
    refdb_report_header(out);
    refdb_report_row(out, &is);
    is.line = 0;
    is.field[0] = '\0';
    is.code = KH_E_HEADER;
    snprintf(is.reason, sizeof is.reason, "plain");
    refdb_report_row(out, &is);
    /* a cell a spreadsheet would read as a formula is neutralised */
    snprintf(is.field, sizeof is.field, "=cmd");
    snprintf(is.reason, sizeof is.reason, "@SUM(A1),\"x\"");
    refdb_report_row(out, &is);
    fclose(out);
    ck_assert_str_eq(text, "line,field,code,reason\n"
                           "12,group[1].name,KH-1113,\"a \"\"quoted\"\", reason\"\n"
                           "0,-,KH-1103,plain\n"
                           "0,'=cmd,KH-1103,\"'@SUM(A1),\"\"x\"\"\"\n");
    free(text);
}
END_TEST

/* Reports never carry a value: every reason of a file full of problems is
 * checked for the values it holds. */
START_TEST(reasons_never_quote_values)
{
    static const char csv[] = HDR "777,20240101,9,0,Zeta,1,20000230,8,24\n"
                                  "666,20240101,1,1,Omega,,,,\n";
    refdb_file_stats st;
    sink s;
    layout_setup();
    run(csv, strlen(csv), &s, &st);
    ck_assert_uint_ge(s.nissues, 5);
    for (size_t i = 0; i < s.nissues && i < MAXISSUES; i++) {
        const char *r = s.issues[i].reason;
        ck_assert_ptr_null(strstr(r, "777"));
        ck_assert_ptr_null(strstr(r, "666"));
        ck_assert_ptr_null(strstr(r, "Zeta"));
        ck_assert_ptr_null(strstr(r, "Omega"));
        ck_assert_ptr_null(strstr(r, "20000230"));
    }
}
END_TEST

/* Pseudo-random bytes from CSV's own alphabet (quotes, separators, CR, LF,
 * broken UTF-8, long runs) never break the reader: every byte is counted,
 * issues come in file order, the counts agree. Under ASan this is a small
 * fuzz run of the parser. */
START_TEST(random_input_holds)
{
    static const char *const atoms[] = {
        ",",        "\"",   "\"\"",     "\r",           "\n", "\r\n",         "a",  "1",
        "20240101", "\xff", "\xe3\x81", "\xe3\x81\x82", "\0", "\xEF\xBB\xBF", "0,", "1,"};
    const size_t natoms = sizeof atoms / sizeof atoms[0];
    unsigned seed = 12345;
    layout_setup();
    for (int round = 0; round < 400; round++) {
        size_t cap = round % 50 == 0 ? 200000 : 3000, len = 0;
        char *buf = malloc(cap + 16);
        ck_assert_ptr_nonnull(buf);
        if (round % 2 == 0) {
            memcpy(buf, HDR, strlen(HDR));
            len = strlen(HDR);
        }
        while (len < cap) {
            seed = seed * 1103515245u + 12345u;
            const char *a = atoms[(seed >> 16) % natoms];
            size_t n = a[0] == '\0' ? 1 : strlen(a);
            if (round % 50 == 0 && (seed >> 8) % 4 != 0)
                a = "a", n = 1; /* long records */
            memcpy(buf + len, a, n);
            len += n;
        }
        refdb_file_stats st;
        sink s;
        kh_err e = run(buf, len, &s, &st);
        ck_assert(e == KH_OK || e == KH_E_FILE_REJECTED);
        ck_assert_uint_eq(st.bytes, len);
        ck_assert_uint_eq(st.issues, s.nissues);
        ck_assert_uint_le(st.bad_records, st.records);
        for (size_t i = 1; i < s.nissues && i < MAXISSUES; i++)
            ck_assert_uint_le(s.issues[i - 1].line, s.issues[i].line);
        free(buf);
    }
}
END_TEST

/* 200,000 records through a pipe: all good, in constant memory (the reader
 * allocates once; ASan reports anything left behind). */
START_TEST(large_file_streams)
{
    refdb_file_stats st;
    sink s;
    feeder f;
    layout_setup();
    memset(&s, 0, sizeof s);
    int fd = feed_start(&f, NULL, 0, 200000);
    kh_err e = refdb_check_stream(fd, &layout, on_issue, on_record, on_progress, &s, &st);
    feed_end(&f, fd);
    ck_assert_int_eq(e, KH_OK);
    ck_assert_uint_eq(s.nissues, 0);
    ck_assert_uint_eq(st.records, 200000);
    ck_assert_uint_eq(st.persons, 100000);
    ck_assert_uint_eq(st.lines, 200001);
    ck_assert_uint_eq(s.record_calls, 200000);
    ck_assert_uint_eq(s.progress_calls, 21); /* every 10,000, and at the end */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("refdb_check");
    TCase *tc = tcase_create("rules");
    tcase_add_loop_test(tc, check_case, 0, NCASES);
    tcase_add_test(tc, records_to_record_fn);
    tcase_add_test(tc, record_fn_stops);
    tcase_add_test(tc, unreadable_fd);
    tcase_add_test(tc, sha256_and_stats);
    tcase_add_test(tc, report_rows);
    tcase_add_test(tc, reasons_never_quote_values);
    suite_add_tcase(s, tc);
    TCase *big = tcase_create("big");
    tcase_set_timeout(big, 120);
    tcase_add_test(big, record_length_limit);
    tcase_add_test(big, large_file_streams);
    tcase_add_test(big, random_input_holds);
    suite_add_tcase(s, big);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
