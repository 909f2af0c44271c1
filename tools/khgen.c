/* khgen: synthetic bulk files (refdb/FORMAT.md) for tests, demos and
 * benchmarks. Everything it writes is synthetic: names are katakana built
 * from syllables behind a テスト prefix, numbers come from a seeded generator.
 *
 *   khgen residents --count N --seed S --out DIR [--items A,B] [--as-of D] [--history]
 *   khgen changes --seed S --out DIR [--as-of D]
 *   khgen broken --seed S --out DIR [--as-of D]
 *
 * Layouts come from the catalogue files (refdb_layout_from_tsv), so column
 * order always follows the catalogue. Fields khgen knows by name (per item)
 * get realistic, consistent values; any other field gets a valid value from
 * its type, length, padding, charset or code table, so a new item or field
 * in the catalogue still yields valid files.
 *
 * residents streams: one household (1..6 persons) at a time, in increasing
 * local_id order, one output file per item; memory does not grow with N.
 * Every value of a person depends only on the seed and the person's
 * household, never on which items are asked for. */
#include "khfmt.h"
#include "refdb.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef KH_SOURCE_DIR
#define KH_SOURCE_DIR "."
#endif
#define DEFAULT_CATALOGUE KH_SOURCE_DIR "/sql/catalogue"
#define DEFAULT_AS_OF "20260401"
#define DEFAULT_MUNI "131016"
#define LOCAL_ID_BASE 100000001ULL
#define HOUSEHOLD_BASE 20000000ULL
#define VALMAX 512
#define MAXOCC 16
#define MAXITEMS 32
#define HHMAX 6

/* ------------------------------------------------------------ basics */

static const char *prog_cmd = "khgen";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n > 0 ? n : 1, size);
    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t seed_of(uint64_t a, uint64_t b)
{
    return mix64(a ^ mix64(b + 0x632be59bd9b4e019ULL));
}

typedef struct {
    uint64_t s;
} rng;

static uint64_t rnext(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform integer in lo..hi. */
static long long rint_(rng *r, long long lo, long long hi)
{
    if (hi <= lo)
        return lo;
    return lo + (long long)(rnext(r) % (uint64_t)(hi - lo + 1));
}

static bool rpct(rng *r, int percent)
{
    return (int)(rnext(r) % 100) < percent;
}

/* Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms). */
static int days_of(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_of(int z, int *y, int *m, int *d)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp + (mp < 10 ? 3 : -9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int ymd_of(int day)
{
    int y, m, d;
    civil_of(day, &y, &m, &d);
    return y * 10000 + m * 100 + d;
}

static int day_of_ymd(int ymd)
{
    return days_of(ymd / 10000, ymd / 100 % 100, ymd % 100);
}

/* The same day n years later (29 February becomes 1 March). */
static int add_years(int day, int n)
{
    int y, m, d;
    civil_of(day, &y, &m, &d);
    if (m == 2 && d == 29)
        return days_of(y + n, 3, 1);
    return days_of(y + n, m, d);
}

static int age_at(int birth, int day)
{
    int by, bm, bd, y, m, d;
    civil_of(birth, &by, &bm, &bd);
    civil_of(day, &y, &m, &d);
    int a = y - by;
    if (m < bm || (m == bm && d < bd))
        a--;
    return a;
}

static bool parse_ymd(const char *s, int *day)
{
    if (!kh_id_date(s))
        return false;
    *day = day_of_ymd(atoi(s));
    return true;
}

/* ----------------------------------------------------- synthetic names */

static const char *const syllables[] = {
    "ア", "イ", "ウ", "エ", "オ", "カ", "キ", "ク", "ケ", "コ", "サ", "シ", "ス", "セ", "ソ",
    "タ", "チ", "ツ", "テ", "ト", "ナ", "ニ", "ヌ", "ネ", "ノ", "ハ", "ヒ", "フ", "ヘ", "ホ",
    "マ", "ミ", "ム", "メ", "モ", "ヤ", "ユ", "ヨ", "ラ", "リ", "ル", "レ", "ロ", "ワ"};
#define NSYL (sizeof syllables / sizeof syllables[0])

/* n katakana syllables appended to out (UTF-8, 3 bytes each). */
static void add_syllables(char *out, size_t cap, rng *r, int n)
{
    size_t len = strlen(out);
    for (int i = 0; i < n && len + 4 < cap; i++) {
        memcpy(out + len, syllables[rnext(r) % NSYL], 3);
        len += 3;
    }
    out[len] = '\0';
}

/* テスト + 2 syllables: a surname no one has. */
static void make_surname(char *out, size_t cap, rng *r)
{
    snprintf(out, cap, "テスト");
    add_syllables(out, cap, r, 2);
}

static void make_given(char *out, size_t cap, rng *r)
{
    out[0] = '\0';
    add_syllables(out, cap, r, (int)rint_(r, 2, 3));
}

/* ------------------------------------------------------ item generators */

/* One item: its layout, the columns of the fields khgen knows, and the
 * values of the row being built. */
typedef struct {
    refdb_layout l;
    int kind;    /* 1..8 for TK001..TK008, 0 for an item khgen does not know */
    int *known;  /* per field: khgen sets it by name (1) or generically (0) */
    int *colmap; /* [field * MAXOCC + occ - 1] -> column, or -1 */
    int k[32];   /* known field indexes by the item's enum, or -1 */
    char (*vals)[VALMAX];
    FILE *out;
    char path[4096];
    char *line;
    size_t linecap;
    unsigned long long rows;
} item_gen;

static int field_index(const refdb_layout *l, const char *name)
{
    for (size_t i = 0; i < l->nfields; i++)
        if (strcmp(l->fields[i].name, name) == 0)
            return (int)i;
    return -1;
}

static const char *const tk001_names[] = {"fiscal_year",
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
                                          "deduction_special_spouse",
                                          "dependents",
                                          "relation",
                                          "birth_date",
                                          "dependent_category",
                                          NULL};
enum {
    T1_FY,
    T1_TAX,
    T1_MFLAT,
    T1_MINC,
    T1_PREF,
    T1_INCOME,
    T1_SEP,
    T1_DMED,
    T1_SPOUSE,
    T1_SHORT,
    T1_LONG,
    T1_FOREST,
    T1_RETIRE,
    T1_FUTURES,
    T1_TREATY,
    T1_DCAS,
    T1_DSMALL,
    T1_DLIFE,
    T1_DSPSP,
    T1_DEPS,
    T1_DREL,
    T1_DBIRTH,
    T1_DCAT
};
static const char *const tk002_names[] = {"household_no",
                                          "relation",
                                          "municipality_code",
                                          "move_in_date",
                                          "change_reason",
                                          "change_date",
                                          "resident_status",
                                          "remarks",
                                          "name_kana",
                                          "previous_municipality_code",
                                          "destination_unknown",
                                          "notification_date",
                                          NULL};
enum {
    T2_HH,
    T2_REL,
    T2_MUNI,
    T2_MOVEIN,
    T2_REASON,
    T2_CDATE,
    T2_STATUS,
    T2_REMARKS,
    T2_NAME,
    T2_PREV,
    T2_DEST_UNKNOWN,
    T2_NOTIFIED
};
static const char *const tk003_names[] = {"recognition_status",    "recognition_date",
                                          "monthly_amount",        "payment_start_month",
                                          "income_limit_exceeded", "children",
                                          "child_birth_date",      "child_order",
                                          "child_custody",         NULL};
enum {
    T3_STATUS,
    T3_DATE,
    T3_AMOUNT,
    T3_START,
    T3_LIMIT,
    T3_CHILDREN,
    T3_CBIRTH,
    T3_CORDER,
    T3_CUST
};
static const char *const tk004_names[] = {
    "insurer_no",  "card_symbol",    "card_number",     "qualification_date", "loss_date",
    "loss_reason", "household_head", "income_category", "premium_annual",     "premium_reduction",
    NULL};
enum {
    T4_INSURER,
    T4_SYMBOL,
    T4_CARD,
    T4_QDATE,
    T4_LDATE,
    T4_LREASON,
    T4_HEAD,
    T4_INCCAT,
    T4_PREMIUM,
    T4_REDUCTION
};
static const char *const tk005_names[] = {
    "insured_no",          "insured_category",  "care_level",
    "certification_start", "certification_end", "premium_stage",
    "burden_ratio",        "benefit_limit",     NULL};
enum { T5_NO, T5_CAT, T5_LEVEL, T5_START, T5_END, T5_STAGE, T5_BURDEN, T5_LIMIT };
static const char *const tk006_names[] = {
    "certificate_type",     "certificate_no",   "grade",
    "issue_date",           "renewal_date",     "service_type",
    "burden_limit_monthly", "support_category", NULL};
enum { T6_TYPE, T6_NO, T6_GRADE, T6_ISSUE, T6_RENEW, T6_SERVICE, T6_BURDEN, T6_SUPPORT };
static const char *const tk007_names[] = {"case_no",           "status",
                                          "start_date",        "end_date",
                                          "end_reason",        "assistance_type",
                                          "household_members", "monthly_amount",
                                          "welfare_office",    NULL};
enum {
    T7_CASE,
    T7_STATUS,
    T7_START,
    T7_END,
    T7_EREASON,
    T7_TYPE,
    T7_MEMBERS,
    T7_AMOUNT,
    T7_OFFICE
};
static const char *const tk008_names[] = {"pension_no",
                                          "pension_type",
                                          "entitlement_date",
                                          "annual_amount",
                                          "payment_status",
                                          "suspension_note",
                                          "payee_name_kana",
                                          "payments",
                                          "payment_month",
                                          "payment_amount",
                                          NULL};
enum {
    T8_NO,
    T8_TYPE,
    T8_ENTITLED,
    T8_ANNUAL,
    T8_STATUS,
    T8_NOTE,
    T8_PAYEE,
    T8_PAYMENTS,
    T8_PMONTH,
    T8_PAMOUNT
};

static const char *const *const known_names[9] = {NULL,        tk001_names, tk002_names,
                                                  tk003_names, tk004_names, tk005_names,
                                                  tk006_names, tk007_names, tk008_names};

static int item_kind(const char *code)
{
    static const char *const codes[] = {"TK001", "TK002", "TK003", "TK004",
                                        "TK005", "TK006", "TK007", "TK008"};
    for (int i = 0; i < 8; i++)
        if (strcmp(code, codes[i]) == 0)
            return i + 1;
    return 0;
}

/* Loads an item's layout and prepares its columns. */
static void gen_open(item_gen *g, const char *catalogue, const char *item)
{
    char msg[256] = "";
    memset(g, 0, sizeof *g);
    kh_err e = refdb_layout_from_tsv(catalogue, item, &g->l, msg, sizeof msg);
    if (e != KH_OK) {
        fprintf(stderr, "%s: %s: %s (%s)\n", prog_cmd, catalogue, msg[0] ? msg : "no layout",
                kh_err_code(e));
        exit(2);
    }
    const refdb_layout *l = &g->l;
    g->kind = item_kind(l->item_code);
    g->known = xcalloc(l->nfields, sizeof *g->known);
    g->colmap = xcalloc(l->nfields * MAXOCC, sizeof *g->colmap);
    for (size_t i = 0; i < l->nfields * MAXOCC; i++)
        g->colmap[i] = -1;
    for (size_t c = 0; c < l->ncols; c++)
        if (l->cols[c].occurrence >= 1 && l->cols[c].occurrence <= MAXOCC)
            g->colmap[(size_t)l->cols[c].field * MAXOCC + (size_t)l->cols[c].occurrence - 1] =
                (int)c;
    for (size_t i = 0; i < 32; i++)
        g->k[i] = -1;
    const char *const *names = known_names[g->kind];
    for (int i = 0; names != NULL && names[i] != NULL; i++) {
        int fi = field_index(l, names[i]);
        /* A name of a group member only counts inside the item's own group. */
        g->k[i] = fi;
        if (fi >= 0)
            g->known[fi] = 1;
    }
    /* A member of a group khgen does not know is filled generically. */
    for (size_t i = 0; i < l->nfields; i++) {
        int gi = l->fields[i].group;
        if (gi >= 0 && !g->known[gi])
            g->known[i] = 0;
    }
    g->vals = xcalloc(l->ncols + 1, sizeof *g->vals);
    g->linecap = 4096 + l->ncols * (VALMAX + 3);
    g->line = xcalloc(g->linecap, 1);
}

static void gen_close(item_gen *g)
{
    refdb_layout_free(&g->l);
    free(g->known);
    free(g->colmap);
    free(g->vals);
    free(g->line);
    memset(g, 0, sizeof *g);
}

static void clear_row(item_gen *g)
{
    for (size_t c = 0; c < g->l.ncols; c++)
        g->vals[c][0] = '\0';
}

/* The value slot of known field k at occurrence occ, or NULL if the
 * catalogue has no such field or occurrence. */
static char *slot(item_gen *g, int k, int occ)
{
    int fi = g->k[k];
    if (fi < 0 || occ < 1 || occ > MAXOCC)
        return NULL;
    const refdb_field_spec *f = &g->l.fields[fi];
    if (occ > (f->group >= 0 ? g->l.fields[f->group].max_occurs : f->max_occurs))
        return NULL;
    int c = g->colmap[(size_t)fi * MAXOCC + (size_t)occ - 1];
    return c >= 0 ? g->vals[c] : NULL;
}

static void put_s(item_gen *g, int k, int occ, const char *s)
{
    char *v = slot(g, k, occ);
    if (v != NULL)
        snprintf(v, VALMAX, "%s", s);
}

static void put_empty(item_gen *g, int k, int occ)
{
    char *v = slot(g, k, occ);
    if (v != NULL)
        v[0] = '\0';
}

static void put_i(item_gen *g, int k, int occ, long long n)
{
    char *v = slot(g, k, occ);
    if (v != NULL)
        kh_fmt_ll(v, n);
}

static void put_z(item_gen *g, int k, int occ, unsigned long long n, int width)
{
    char *v = slot(g, k, occ);
    if (v != NULL && width < VALMAX)
        kh_fmt_zero(v, n, width);
}

static void put_d(item_gen *g, int k, int occ, int day)
{
    char *v = slot(g, k, occ);
    if (v != NULL)
        kh_fmt_zero(v, (unsigned long long)ymd_of(day), 8);
}

/* A valid value of field f from its type alone. */
static void generic_value(const refdb_field_spec *f, rng *r, int base_day, char *out)
{
    int n = f->length > 0 ? f->length : 1;
    out[0] = '\0';
    if (strcmp(f->type, "X") == 0) {
        if (strcmp(f->charset, "ascii") == 0) {
            int len = n < 10 ? n : 10;
            out[0] = 'T';
            for (int i = 1; i < len; i++)
                out[i] = (char)('0' + rnext(r) % 10);
            out[len] = '\0';
        } else {
            /* kana and any: テスト and syllables, within n characters */
            if (n >= 3) {
                snprintf(out, VALMAX, "テスト");
                add_syllables(out, VALMAX, r, (int)rint_(r, 0, n - 3 < 4 ? n - 3 : 4));
            } else {
                add_syllables(out, VALMAX, r, n);
            }
        }
    } else if (strcmp(f->type, "9") == 0) {
        int w = n < 18 ? n : 18;
        unsigned long long mod = 1;
        for (int i = 0; i < w; i++)
            mod *= 10;
        if (strcmp(f->pad, "zero") == 0 || f->pad[0] == '\0') {
            kh_fmt_zero(out, rnext(r) % mod, w);
            if (n > w) { /* pad beyond 18 digits */
                char tmp[VALMAX];
                memset(tmp, '0', (size_t)(n - w));
                memcpy(tmp + n - w, out, (size_t)w + 1);
                memcpy(out, tmp, (size_t)n + 1);
            }
        } else {
            unsigned long long lim = mod < 1000000 ? mod : 1000000;
            kh_fmt_ll(out, (long long)(rnext(r) % lim));
        }
    } else if (strcmp(f->type, "S9") == 0) {
        int w = n < 9 ? n : 9;
        long long mod = 1;
        for (int i = 0; i < w; i++)
            mod *= 10;
        kh_fmt_ll(out, (long long)(rnext(r) % (uint64_t)mod));
    } else if (strcmp(f->type, "DATE") == 0) {
        kh_fmt_zero(out, (unsigned long long)ymd_of(base_day - (int)rint_(r, 0, 3650)), 8);
    } else if (strcmp(f->type, "CODE") == 0) {
        if (f->ncodes > 0)
            snprintf(out, VALMAX, "%s", f->codes[rnext(r) % f->ncodes]);
    }
}

/* Fills every field khgen does not know by name with valid values: plain
 * fields (optional ones most of the time), and repeating fields and groups
 * with at least min_occurs occurrences, contiguous from 1. */
static void fill_generic(item_gen *g, rng *r, int base_day)
{
    const refdb_layout *l = &g->l;
    for (size_t fi = 0; fi < l->nfields; fi++) {
        const refdb_field_spec *f = &l->fields[fi];
        if (g->known[fi] || f->group >= 0)
            continue;
        bool is_group = strcmp(f->type, "GROUP") == 0;
        int maxo = f->max_occurs < MAXOCC ? f->max_occurs : MAXOCC;
        int occs;
        if (maxo <= 1 && !is_group)
            occs = f->mandatory || rpct(r, 80) ? 1 : 0;
        else {
            int hi = maxo < 3 ? maxo : 3;
            int lo = f->min_occurs < hi ? f->min_occurs : hi;
            occs = (int)rint_(r, lo, hi);
        }
        for (int o = 1; o <= occs; o++) {
            if (!is_group) {
                int c = g->colmap[fi * MAXOCC + (size_t)o - 1];
                if (c >= 0)
                    generic_value(f, r, base_day, g->vals[c]);
                continue;
            }
            bool any = false;
            int first = -1;
            for (size_t mi = 0; mi < l->nfields; mi++) {
                const refdb_field_spec *m = &l->fields[mi];
                if (m->group != (int)fi)
                    continue;
                int c = g->colmap[mi * MAXOCC + (size_t)o - 1];
                if (c < 0)
                    continue;
                if (first < 0)
                    first = (int)mi;
                if (m->mandatory || rpct(r, 70)) {
                    generic_value(m, r, base_day, g->vals[c]);
                    any = any || g->vals[c][0] != '\0';
                }
            }
            if (!any && first >= 0) {
                int c = g->colmap[(size_t)first * MAXOCC + (size_t)o - 1];
                generic_value(&l->fields[first], r, base_day, g->vals[c]);
            }
        }
    }
}

static void write_header(item_gen *g)
{
    fputs("local_id,effective_from,latest_flag,delete_flag", g->out);
    for (size_t c = 0; c < g->l.ncols; c++) {
        fputc(',', g->out);
        fputs(g->l.cols[c].name, g->out);
    }
    fputc('\n', g->out);
}

/* Appends one CSV cell, quoted if it needs to be. */
static char *put_cell(char *p, const char *v)
{
    if (strpbrk(v, ",\"\r\n") == NULL) {
        size_t n = strlen(v);
        memcpy(p, v, n);
        return p + n;
    }
    *p++ = '"';
    for (; *v != '\0'; v++) {
        if (*v == '"')
            *p++ = '"';
        *p++ = *v;
    }
    *p++ = '"';
    return p;
}

/* Writes the row being built; a deletion row leaves every field empty. */
static void write_row(item_gen *g, unsigned long long local_id, int eff_day, bool latest,
                      bool deleted)
{
    char *p = g->line;
    p += kh_fmt_ll(p, (long long)local_id);
    *p++ = ',';
    kh_fmt_zero(p, (unsigned long long)ymd_of(eff_day), 8);
    p += 8;
    *p++ = ',';
    *p++ = latest ? '1' : '0';
    *p++ = ',';
    *p++ = deleted ? '1' : '0';
    for (size_t c = 0; c < g->l.ncols; c++) {
        *p++ = ',';
        if (!deleted)
            p = put_cell(p, g->vals[c]);
    }
    *p++ = '\n';
    if (fwrite(g->line, 1, (size_t)(p - g->line), g->out) != (size_t)(p - g->line))
        die("%s: write failed: %s", g->path, strerror(errno));
    g->rows++;
}

/* ---------------------------------------------------------- population */

enum { REL_HEAD = 1, REL_SPOUSE = 2, REL_CHILD = 3, REL_PARENT = 4 };
enum { OCC_NONE, OCC_EMPLOYEE, OCC_SELF, OCC_PENSION, OCC_PARTTIME };

typedef struct {
    unsigned long long local_id;
    unsigned long long index; /* 0-based person number, for the resident code */
    int rel;
    int birth; /* day */
    int age;   /* at the as-of date */
    char surname[64], given[64];
    int occ;
    long long work_income; /* net, after the employment income deduction */
    long long pension_gross;
    long long income; /* total_income: net work + net pension */
    int arrival;      /* day the person became a resident */
    bool born_here;
    int prev_muni;
    int disab;  /* 0 none, else DISAB_CERT 1..3 */
    bool moved; /* moved within the municipality later (転居) */
    int move_day;
    bool renamed; /* name change (氏名変更) */
    int rename_day;
    bool history; /* several versions with --history */
    uint64_t seed;
} person;

typedef struct {
    unsigned long long index, hh_no;
    int n;
    person p[HHMAX];
    bool pa; /* public assistance */
    bool nhi;
    int arrival;
    long long income; /* household total */
} household;

typedef struct {
    uint64_t seed;
    int as_of;    /* day */
    int fy;       /* fiscal year of local tax at as_of */
    char muni[8]; /* the municipality's code */
    bool history;
    unsigned long long next_local_id, next_person;
    uint64_t rc_mul, rc_add; /* resident-code permutation */
} world;

static const int prev_munis[] = {271004, 11002, 141003, 401307, 231002};

static void person_name(char *out, size_t cap, const person *p)
{
    snprintf(out, cap, "%s\u3000%s", p->surname, p->given);
}

/* A synthetic 11-digit resident-record code starting with 19: a bijection of
 * the person number, so codes are unique within a run. */
static void resident_code(const world *w, unsigned long long index, char out[12])
{
    unsigned long long v = (index * w->rc_mul + w->rc_add) % 1000000000ULL;
    out[0] = '1';
    out[1] = '9';
    kh_fmt_zero(out + 2, v, 9);
}

static int pick_size(rng *r)
{
    int u = (int)(rnext(r) % 100);
    if (u < 35)
        return 1;
    if (u < 63)
        return 2;
    if (u < 80)
        return 3;
    if (u < 94)
        return 4;
    if (u < 98)
        return 5;
    return 6;
}

static int birth_for_age(const world *w, rng *r, int age)
{
    int b = add_years(w->as_of, -age) - (int)rint_(r, 1, 364);
    return b;
}

static long long employee_income(rng *r, int age)
{
    long long base = 1200000 + rint_(r, 0, 2500000);
    if (age > 25)
        base += rint_(r, 0, 60000) * (age < 55 ? age - 25 : 30);
    if (rpct(r, 5))
        base += rint_(r, 3000000, 12000000);
    return base / 1000 * 1000;
}

static void set_income(const world *w, person *p, rng *r, bool pa)
{
    p->occ = OCC_NONE;
    p->work_income = 0;
    p->pension_gross = 0;
    if (p->age >= 65) {
        p->occ = OCC_PENSION;
        p->pension_gross = rpct(r, 60) ? rint_(r, 1200000, 3000000) : rint_(r, 600000, 816000);
        p->pension_gross = p->pension_gross / 100 * 100;
        if (p->age < 75 && rpct(r, 20))
            p->work_income = employee_income(r, p->age) / 2 / 1000 * 1000;
    } else if (p->age >= 23) {
        int u = (int)(rnext(r) % 100);
        if (p->rel == REL_SPOUSE) {
            if (u < 45) {
                p->occ = OCC_EMPLOYEE;
                p->work_income = employee_income(r, p->age) * 2 / 3 / 1000 * 1000;
            } else if (u < 70) {
                p->occ = OCC_PARTTIME;
                p->work_income = rint_(r, 0, 480) * 1000;
            }
        } else if (u < 85) {
            p->occ = OCC_EMPLOYEE;
            p->work_income = employee_income(r, p->age);
        } else if (u < 95) {
            p->occ = OCC_SELF;
            p->work_income = rint_(r, 500, 8000) * 1000;
        }
    } else if (p->age >= 16 && (p->rel == REL_HEAD || rpct(r, 30))) {
        p->occ = p->rel == REL_HEAD ? OCC_EMPLOYEE : OCC_PARTTIME;
        p->work_income = p->rel == REL_HEAD ? rint_(r, 1000, 2500) * 1000 : rint_(r, 0, 480) * 1000;
    }
    if (pa) {
        p->work_income = p->work_income > 300000 ? rint_(r, 0, 300) * 1000 : p->work_income;
        p->pension_gross = p->pension_gross > 816000 ? 780000 : p->pension_gross;
        if (p->occ == OCC_EMPLOYEE || p->occ == OCC_SELF)
            p->occ = p->work_income > 0 ? OCC_PARTTIME : OCC_NONE;
    }
    long long pension_net = p->pension_gross > 1100000 ? p->pension_gross - 1100000 : 0;
    p->income = p->work_income + pension_net;
    (void)w;
}

/* Builds household number h: deterministic from the seed and h alone. */
static void make_household(world *w, unsigned long long h, household *hh)
{
    rng r = {seed_of(w->seed, h)};
    memset(hh, 0, sizeof *hh);
    hh->index = h;
    hh->hh_no = HOUSEHOLD_BASE + h;
    hh->n = pick_size(&r);
    hh->pa = rpct(&r, 2);
    int ages[HHMAX], rels[HHMAX];
    int head_age;
    if (hh->n == 1) {
        head_age = (int)rint_(&r, 18, 95);
        rels[0] = REL_HEAD;
    } else if (hh->n == 2 && rpct(&r, 25)) {
        head_age = (int)rint_(&r, 24, 55); /* a single parent and a child */
        rels[0] = REL_HEAD;
        rels[1] = REL_CHILD;
    } else {
        head_age = hh->n == 2 ? (int)rint_(&r, 24, 92) : (int)rint_(&r, 28, 56);
        rels[0] = REL_HEAD;
        rels[1] = REL_SPOUSE;
        for (int i = 2; i < hh->n; i++)
            rels[i] = REL_CHILD;
        if (hh->n == 6)
            rels[5] = REL_PARENT;
    }
    if (hh->n == 2 && rels[1] == REL_CHILD)
        ages[1] = (int)rint_(&r, 0, head_age - 20 < 22 ? head_age - 20 : 22);
    ages[0] = head_age;
    for (int i = 1; i < hh->n; i++) {
        if (rels[i] == REL_SPOUSE) {
            ages[i] = head_age + (int)rint_(&r, -5, 4);
            if (ages[i] < 18)
                ages[i] = 18;
        } else if (rels[i] == REL_PARENT) {
            ages[i] = head_age + (int)rint_(&r, 25, 32);
        } else if (!(hh->n == 2)) {
            int max = head_age - 20 < 24 ? head_age - 20 : 24;
            ages[i] = (int)rint_(&r, 0, max < 0 ? 0 : max);
        }
    }
    /* children eldest first */
    for (int i = 1; i < hh->n; i++)
        for (int j = i + 1; j < hh->n; j++)
            if (rels[i] == REL_CHILD && rels[j] == REL_CHILD && ages[j] > ages[i]) {
                int t = ages[i];
                ages[i] = ages[j];
                ages[j] = t;
            }

    /* When the household arrived: born here, or moved in as adults. */
    bool native = rpct(&r, 35);
    int earliest = add_years(w->as_of, -(head_age - 18));
    hh->arrival = native ? 0 : earliest + (int)rint_(&r, 0, w->as_of - 30 - earliest);
    if (hh->arrival > w->as_of - 30)
        hh->arrival = w->as_of - 30;
    int prev = prev_munis[rnext(&r) % (sizeof prev_munis / sizeof prev_munis[0])];
    char surname[64];
    make_surname(surname, sizeof surname, &r);

    for (int i = 0; i < hh->n; i++) {
        person *p = &hh->p[i];
        p->rel = rels[i];
        p->local_id = w->next_local_id;
        w->next_local_id += 1 + (rnext(&r) % 4 == 0 ? rnext(&r) % 3 : 0);
        p->index = w->next_person++;
        p->seed = seed_of(w->seed ^ 0x5eedULL, p->local_id);
        rng pr = {p->seed};
        p->birth = birth_for_age(w, &pr, ages[i]);
        p->age = age_at(p->birth, w->as_of);
        if (p->rel == REL_SPOUSE && rpct(&pr, 3))
            make_surname(p->surname, sizeof p->surname, &pr); /* kept her or his name */
        else
            snprintf(p->surname, sizeof p->surname, "%s", surname);
        make_given(p->given, sizeof p->given, &pr);
        p->born_here = hh->arrival == 0 || p->birth > hh->arrival;
        p->arrival = p->born_here ? p->birth : hh->arrival;
        if (hh->arrival == 0 && p->rel != REL_CHILD && p->age > 0) {
            /* a native household: adults were born here too */
            p->born_here = true;
            p->arrival = p->birth;
        }
        p->prev_muni = prev;
        set_income(w, p, &pr, hh->pa);
        p->disab =
            rpct(&pr, 4) && p->age >= 1 ? (int)(rnext(&pr) % 10 < 6 ? 1 : rnext(&pr) % 2 + 2) : 0;
        p->history = w->history && rpct(&pr, 15);
        int since = p->arrival > p->birth ? p->arrival : p->birth;
        p->moved = false;
        (void)since;
        p->renamed = p->rel == REL_SPOUSE && rpct(&pr, 8) && w->as_of - since > 800;
        if (p->renamed)
            p->rename_day = w->as_of - (int)rint_(&pr, 30, 180);
        hh->income += p->income;
    }
    /* A move within the municipality (転居) takes the household along:
     * everyone who lived here by then. */
    int hsince = hh->p[0].arrival > hh->p[0].birth ? hh->p[0].arrival : hh->p[0].birth;
    if (rpct(&r, 15) && w->as_of - hsince > 400) {
        int day = hsince + 200 + (int)rint_(&r, 0, w->as_of - hsince - 400);
        for (int i = 0; i < hh->n; i++) {
            person *p = &hh->p[i];
            if ((p->arrival > p->birth ? p->arrival : p->birth) < day - 30) {
                p->moved = true;
                p->move_day = day;
            }
        }
    }
    int oldest = hh->p[0].age;
    hh->nhi = (hh->p[0].occ == OCC_SELF || hh->p[0].occ == OCC_NONE ||
               hh->p[0].occ == OCC_PENSION || hh->p[0].occ == OCC_PARTTIME || hh->pa) &&
              oldest < 75;
}

/* ------------------------------------------------------------ TK001 */

typedef struct {
    long long income, sep, short_gain, long_gain, retire, medical, life, small, casualty,
        special_spouse;
    int spouse_cat;
    int ndeps;
    int dep_rel[8], dep_cat[8], dep_birth[8];
    long long flat, minc, pref, tax;
} tax_calc;

/* Residence tax of one person for a fiscal year: basic deduction 430,000;
 * spouse and dependant deductions; the non-taxable limit (350,000 per person
 * in the family + 310,000); then the flat part (3,500 municipal + 1,500
 * prefectural) and 10% of the taxable income (6% municipal, 4% prefectural),
 * separately taxed gains at 5% (3% + 2%). annual_tax is the sum of the three
 * parts. */
static void compute_tax(tax_calc *t)
{
    long long ded = t->income <= 24000000 ? 430000 : 0;
    int family = 0;
    if (t->spouse_cat == 1)
        ded += 330000, family++;
    else if (t->spouse_cat == 2)
        ded += 380000, family++;
    else if (t->spouse_cat == 3)
        ded += t->special_spouse;
    for (int i = 0; i < t->ndeps; i++) {
        static const long long by_cat[5] = {0, 330000, 450000, 380000, 0};
        ded += by_cat[t->dep_cat[i]];
        family++;
    }
    ded += t->medical + t->life + t->small + t->casualty;
    long long limit = family == 0 ? 450000 : 350000LL * (family + 1) + 310000;
    t->flat = t->minc = t->pref = t->tax = 0;
    if (t->income <= limit && t->sep == 0)
        return;
    long long taxable = t->income - ded;
    taxable = taxable > 0 ? taxable / 1000 * 1000 : 0;
    long long sep = t->sep / 1000 * 1000;
    t->flat = 3500;
    t->minc = (taxable * 6 / 100 + sep * 3 / 100) / 100 * 100;
    t->pref = 1500 + (taxable * 4 / 100 + sep * 2 / 100) / 100 * 100;
    t->tax = t->flat + t->minc + t->pref;
}

static void put_opt(item_gen *g, int k, long long v)
{
    if (v != 0)
        put_i(g, k, 1, v);
}

static void tk001_row(item_gen *g, const world *w, const household *hh, const person *p, int fy,
                      double scale)
{
    rng r = {seed_of(p->seed, 1000 + (uint64_t)fy)};
    tax_calc t;
    memset(&t, 0, sizeof t);
    t.income = (long long)((double)p->income * scale) / 1000 * 1000;
    bool earner = t.income > 0;
    if (earner && p->age >= 20) {
        if (rpct(&r, 3))
            t.long_gain = rint_(&r, 100, 5000) * 1000;
        if (rpct(&r, 1))
            t.short_gain = rint_(&r, 50, 1000) * 1000;
        if (p->age >= 60 && p->age <= 66 && rpct(&r, 3))
            t.retire = rint_(&r, 100, 3000) * 1000;
        if (rpct(&r, 10))
            t.medical = rint_(&r, 20, 300) * 1000;
        if (rpct(&r, 60))
            t.life = rint_(&r, 10, 70) * 1000;
        if (p->occ == OCC_SELF && rpct(&r, 30))
            t.small = rint_(&r, 240, 840) * 1000;
        if (rpct(&r, 1))
            t.casualty = rint_(&r, 50, 500) * 1000;
    }
    t.sep = t.short_gain + t.long_gain + t.retire;
    /* The head claims the spouse and the dependants. */
    if (p->rel == REL_HEAD) {
        int fy_day = days_of(fy, 12, 31);
        for (int i = 0; i < hh->n; i++) {
            const person *q = &hh->p[i];
            if (q == p || q->birth > fy_day)
                continue;
            int qa = age_at(q->birth, fy_day);
            if (q->rel == REL_SPOUSE) {
                if (q->income <= 480000)
                    t.spouse_cat = qa >= 70 ? 2 : 1;
                else if (q->income <= 1330000 && t.income <= 10000000) {
                    t.spouse_cat = 3;
                    t.special_spouse =
                        (330000 - (q->income - 480000) * 330000 / 850000) / 10000 * 10000;
                    if (t.special_spouse < 30000)
                        t.special_spouse = 30000;
                }
            } else if (q->income <= 480000 && t.ndeps < 8) {
                int cat = qa < 16 ? 4 : qa >= 70 ? 3 : (qa >= 19 && qa <= 22) ? 2 : 1;
                t.dep_rel[t.ndeps] = q->rel == REL_PARENT ? 2 : 1;
                t.dep_cat[t.ndeps] = cat;
                t.dep_birth[t.ndeps] = q->birth;
                t.ndeps++;
            }
        }
    }
    compute_tax(&t);
    put_i(g, T1_FY, 1, fy);
    put_i(g, T1_TAX, 1, t.tax);
    put_i(g, T1_MFLAT, 1, t.flat);
    put_i(g, T1_MINC, 1, t.minc);
    put_i(g, T1_PREF, 1, t.pref);
    put_i(g, T1_INCOME, 1, t.income);
    put_i(g, T1_SEP, 1, t.sep);
    put_i(g, T1_DMED, 1, t.medical);
    put_i(g, T1_SPOUSE, 1, t.spouse_cat);
    put_opt(g, T1_SHORT, t.short_gain);
    put_opt(g, T1_LONG, t.long_gain);
    put_opt(g, T1_RETIRE, t.retire);
    put_opt(g, T1_DCAS, t.casualty);
    put_opt(g, T1_DSMALL, t.small);
    put_i(g, T1_DLIFE, 1, t.life);
    put_opt(g, T1_DSPSP, t.special_spouse);
    for (int i = 0; i < t.ndeps; i++) {
        put_z(g, T1_DREL, i + 1, (unsigned long long)t.dep_rel[i], 2);
        put_d(g, T1_DBIRTH, i + 1, t.dep_birth[i]);
        put_i(g, T1_DCAT, i + 1, t.dep_cat[i]);
    }
    (void)w;
}

static void emit_tk001(item_gen *g, const world *w, const household *hh, const person *p)
{
    /* Tax information exists for residents on 1 January of the fiscal year. */
    if (p->birth > days_of(w->fy, 1, 1) || p->arrival > days_of(w->fy, 1, 1))
        return;
    int versions = 1;
    if (p->history && p->age >= 22) {
        int since = p->arrival > p->birth ? p->arrival : p->birth;
        versions = since <= days_of(w->fy - 2, 1, 1)   ? 3
                   : since <= days_of(w->fy - 1, 1, 1) ? 2
                                                       : 1;
    }
    for (int v = versions - 1; v >= 0; v--) {
        rng r = {seed_of(p->seed, 77 + (uint64_t)v)};
        double scale = v == 0 ? 1.0 : 0.85 + (double)rint_(&r, 0, 30) / 100.0;
        int fy = w->fy - v;
        clear_row(g);
        tk001_row(g, w, hh, p, fy, scale);
        fill_generic(g, &r, w->as_of);
        write_row(g, p->local_id, days_of(fy, 6, 1), v == 0, false);
    }
}

/* ------------------------------------------------------------ TK002 */

/* One resident-record version. reason is a CHANGE_REASON code. */
static void tk002_row(item_gen *g, const world *w, const household *hh, const person *p,
                      unsigned long long hh_no, const char *reason, int change_day,
                      const char *name)
{
    rng r = {seed_of(p->seed, 2000 + (uint64_t)change_day)};
    static const char *const rel_codes[] = {"", "01", "02", "03", "04"};
    put_z(g, T2_HH, 1, hh_no, 10);
    put_s(g, T2_REL, 1, rel_codes[p->rel]);
    put_s(g, T2_MUNI, 1, w->muni);
    if (!p->born_here) {
        put_d(g, T2_MOVEIN, 1, p->arrival);
        put_z(g, T2_PREV, 1, (unsigned long long)p->prev_muni, 6);
    }
    put_s(g, T2_REASON, 1, reason);
    put_d(g, T2_CDATE, 1, change_day);
    put_s(g, T2_STATUS, 1, "1");
    put_s(g, T2_NAME, 1, name);
    int notified = change_day + (int)rint_(&r, 0, 14);
    put_d(g, T2_NOTIFIED, 1, notified > w->as_of ? w->as_of : notified);
    (void)hh;
}

static void emit_tk002(item_gen *g, const world *w, const household *hh, const person *p)
{
    char name[160], old_name[160];
    person_name(name, sizeof name, p);
    snprintf(old_name, sizeof old_name, "%s", name);
    if (p->renamed) {
        /* before the name change: a surname of their own */
        rng r = {seed_of(p->seed, 31)};
        char s[64];
        make_surname(s, sizeof s, &r);
        snprintf(old_name, sizeof old_name, "%s\u3000%s", s, p->given);
    }
    /* versions in time order: arrival (A1/A2), then 転居 C1, then 氏名変更 C2 */
    int days[3];
    const char *reasons[3];
    const char *names[3];
    int nv = 0;
    days[nv] = p->arrival;
    reasons[nv] = p->born_here ? "A2" : "A1";
    names[nv++] = p->renamed ? old_name : name;
    if (p->moved && (!p->renamed || p->move_day < p->rename_day)) {
        days[nv] = p->move_day;
        reasons[nv] = "C1";
        names[nv++] = p->renamed ? old_name : name;
    }
    if (p->renamed && p->rename_day > days[nv - 1]) {
        days[nv] = p->rename_day;
        reasons[nv] = "C2";
        names[nv++] = name;
    }
    int first = p->history ? 0 : nv - 1;
    for (int v = first; v < nv; v++) {
        rng r = {seed_of(p->seed, 3000 + (uint64_t)v)};
        clear_row(g);
        tk002_row(g, w, hh, p, hh->hh_no, reasons[v], days[v], names[v]);
        fill_generic(g, &r, w->as_of);
        write_row(g, p->local_id, days[v], v == nv - 1, false);
    }
}

/* ------------------------------------------------------------ TK003 */

static void emit_tk003(item_gen *g, const world *w, const household *hh, const person *p)
{
    if (p->rel != REL_HEAD || p->age < 18)
        return;
    const person *kids[10];
    int nk = 0;
    for (int i = 0; i < hh->n && nk < 10; i++)
        if (hh->p[i].rel == REL_CHILD && hh->p[i].age < 18)
            kids[nk++] = &hh->p[i];
    if (nk == 0)
        return;
    /* A version at recognition, then one at each later birth (額改定). */
    int start = nk - 1;
    if (w->history) {
        start = 0;
        while (start < nk - 1 && kids[start + 1]->birth <= hh->arrival)
            start++;
    }
    /* Recognition days; a version whose day is not before the next one's is
     * merged into it (twins, children born before the move-in). */
    int days[10];
    for (int v = start; v < nk; v++) {
        rng r = {seed_of(p->seed, 4000 + (uint64_t)v)};
        int base = kids[v]->birth > p->arrival ? kids[v]->birth : p->arrival;
        days[v] = base + (int)rint_(&r, 1, 14);
        if (days[v] > w->as_of)
            days[v] = w->as_of;
    }
    bool keep[10];
    for (int v = nk - 1, next = INT32_MAX; v >= start; v--) {
        keep[v] = days[v] < next;
        if (keep[v])
            next = days[v];
    }
    for (int v = start; v < nk; v++) {
        if (!keep[v])
            continue;
        rng r = {seed_of(p->seed, 4100 + (uint64_t)v)};
        int rec_day = days[v];
        long long amount = 0;
        for (int i = 0; i <= v; i++) {
            int a = age_at(kids[i]->birth, rec_day);
            amount += i >= 2 ? 30000 : a < 3 ? 15000 : 10000;
        }
        int y, m, d;
        civil_of(rec_day, &y, &m, &d);
        m++;
        if (m > 12)
            m = 1, y++;
        clear_row(g);
        put_s(g, T3_STATUS, 1, "1");
        put_d(g, T3_DATE, 1, rec_day);
        put_i(g, T3_AMOUNT, 1, amount);
        put_z(g, T3_START, 1, (unsigned long long)(y * 100 + m), 6);
        put_s(g, T3_LIMIT, 1, "0");
        for (int i = 0; i <= v; i++) {
            put_d(g, T3_CBIRTH, i + 1, kids[i]->birth);
            put_i(g, T3_CORDER, i + 1, i + 1);
            put_s(g, T3_CUST, i + 1, "1");
        }
        fill_generic(g, &r, w->as_of);
        write_row(g, p->local_id, rec_day, v == nk - 1, false);
    }
}

/* ------------------------------------------------------------ TK004 */

static void emit_tk004(item_gen *g, const world *w, const household *hh, const person *p)
{
    if (!hh->nhi || p->age >= 75)
        return;
    rng r = {seed_of(p->seed, 5000)};
    int q = p->arrival > p->birth ? p->arrival : p->birth;
    long long inc = hh->income;
    int members = 0;
    for (int i = 0; i < hh->n; i++)
        members += hh->p[i].age < 75;
    clear_row(g);
    put_z(g, T4_INSURER, 1, 100000000ULL + (unsigned long long)atoi(w->muni) % 1000000, 8);
    char sym[64];
    snprintf(sym, sizeof sym, "テスト%02d", (int)(hh->hh_no % 50));
    put_s(g, T4_SYMBOL, 1, sym);
    char card[16];
    kh_fmt_zero(card, hh->hh_no % 10000000, 7);
    put_s(g, T4_CARD, 1, card);
    put_d(g, T4_QDATE, 1, q);
    put_s(g, T4_HEAD, 1, p->rel == REL_HEAD ? "1" : "0");
    put_i(g, T4_INCCAT, 1,
          inc > 9010000   ? 1
          : inc > 6000000 ? 2
          : inc > 2100000 ? 3
          : inc > 0       ? 4
                          : 5);
    if (p->rel == REL_HEAD) {
        long long premium = inc * 10 / 100 + 45000LL * members;
        premium = premium > 1060000 ? 1060000 : premium / 100 * 100;
        const char *red = inc <= 430000                        ? "7"
                          : inc <= 430000 + 295000LL * members ? "5"
                          : inc <= 430000 + 545000LL * members ? "2"
                                                               : "0";
        if (strcmp(red, "7") == 0)
            premium = premium * 3 / 10 / 100 * 100;
        else if (strcmp(red, "5") == 0)
            premium = premium / 2 / 100 * 100;
        else if (strcmp(red, "2") == 0)
            premium = premium * 8 / 10 / 100 * 100;
        put_i(g, T4_PREMIUM, 1, premium);
        put_s(g, T4_REDUCTION, 1, red);
    }
    fill_generic(g, &r, w->as_of);
    write_row(g, p->local_id, q, true, false);
}

/* ------------------------------------------------------------ TK005 */

static void emit_tk005(item_gen *g, const world *w, const household *hh, const person *p)
{
    rng r = {seed_of(p->seed, 6000)};
    bool cat1 = p->age >= 65;
    bool certified = cat1 ? rpct(&r, p->age >= 75 ? 25 : 5) : (p->age >= 40 && rpct(&r, 1));
    if (!cat1 && !certified)
        return;
    static const char *const levels[] = {"01", "11", "12", "21", "22", "23", "24", "25"};
    static const long long limits[] = {0, 50320, 105310, 167650, 197050, 270480, 309380, 362170};
    int lvl = certified ? (int)rint_(&r, 0, 7) : -1;
    int became = cat1 ? add_years(p->birth, 65) : add_years(p->birth, 40);
    int since = p->arrival > became ? p->arrival : became;
    int cstart = certified ? w->as_of - (int)rint_(&r, 10, 330) : 0;
    if (certified && cstart < since)
        cstart = since;
    int nv = certified && cstart > since && w->history && p->history ? 2 : 1;
    for (int v = 0; v < nv; v++) {
        bool with_cert = certified && v == nv - 1;
        clear_row(g);
        char no[16];
        no[0] = '0';
        kh_fmt_zero(no + 1, p->local_id % 1000000000ULL, 9);
        put_s(g, T5_NO, 1, no);
        put_s(g, T5_CAT, 1, cat1 ? "1" : "2");
        if (with_cert) {
            put_s(g, T5_LEVEL, 1, levels[lvl]);
            put_d(g, T5_START, 1, cstart);
            put_d(g, T5_END, 1, add_years(cstart, 1) - 1);
            if (limits[lvl] > 0)
                put_i(g, T5_LIMIT, 1, limits[lvl]);
        }
        long long inc = p->income;
        int stage = inc == 0        ? (hh->income < 800000 ? 1 : 4)
                    : inc < 1200000 ? 6
                    : inc < 2100000 ? 7
                    : inc < 3200000 ? 8
                    : inc < 4200000 ? 9
                                    : 10;
        if (cat1) /* category 2 pays with health insurance: no stage */
            put_i(g, T5_STAGE, 1, stage);
        put_s(g, T5_BURDEN, 1, inc >= 2200000 ? "3" : inc >= 1600000 ? "2" : "1");
        fill_generic(g, &r, w->as_of);
        write_row(g, p->local_id, with_cert ? (cstart > since ? cstart : since) : since,
                  v == nv - 1, false);
    }
}

/* ------------------------------------------------------------ TK006 */

static void emit_tk006(item_gen *g, const world *w, const household *hh, const person *p)
{
    if (p->disab == 0)
        return;
    rng r = {seed_of(p->seed, 7000)};
    int since = p->arrival > p->birth + 365 ? p->arrival : p->birth + 365;
    int issue = since + (int)rint_(&r, 0, w->as_of - since > 0 ? w->as_of - since : 0);
    clear_row(g);
    char t[2] = {(char)('0' + p->disab), '\0'};
    put_s(g, T6_TYPE, 1, t);
    char no[16];
    no[0] = "SRM"[p->disab - 1];
    kh_fmt_zero(no + 1, p->local_id % 100000000ULL, 8);
    put_s(g, T6_NO, 1, no);
    if (p->disab == 1)
        put_z(g, T6_GRADE, 1, (unsigned long long)rint_(&r, 1, 6), 2);
    else if (p->disab == 3)
        put_z(g, T6_GRADE, 1, (unsigned long long)rint_(&r, 1, 3), 2);
    put_d(g, T6_ISSUE, 1, issue);
    if (p->disab == 3)
        put_d(g, T6_RENEW, 1, add_years(issue, 2));
    int ns = (int)rint_(&r, 0, 2);
    int svc = (int)rint_(&r, 1, 7);
    for (int i = 0; i < ns; i++)
        put_z(g, T6_SERVICE, i + 1, (unsigned long long)(svc + i), 2);
    if (ns > 0) {
        put_i(g, T6_BURDEN, 1, hh->pa ? 0 : hh->income < 3000000 ? 9300 : 37200);
        put_i(g, T6_SUPPORT, 1, rint_(&r, 1, 6));
    }
    fill_generic(g, &r, w->as_of);
    write_row(g, p->local_id, issue, true, false);
}

/* ------------------------------------------------------------ TK007 */

static void emit_tk007(item_gen *g, const world *w, const household *hh, const person *p)
{
    if (!hh->pa)
        return;
    rng hr = {seed_of(w->seed, hh->index * 7 + 7007)};
    int since = hh->arrival > 0 ? hh->arrival : hh->p[0].birth + 18 * 365;
    int start = since + (int)rint_(&hr, 0, w->as_of - since > 60 ? w->as_of - since - 60 : 0);
    clear_row(g);
    char no[16];
    snprintf(no, sizeof no, "PA%08llu", hh->hh_no % 100000000ULL);
    put_s(g, T7_CASE, 1, no);
    put_s(g, T7_STATUS, 1, "1");
    put_d(g, T7_START, 1, start);
    int nt = 1;
    put_s(g, T7_TYPE, nt++, "1");
    if (rpct(&hr, 80))
        put_s(g, T7_TYPE, nt++, "2");
    bool kids = false, old = false;
    for (int i = 0; i < hh->n; i++) {
        kids = kids || (hh->p[i].age >= 6 && hh->p[i].age < 15);
        old = old || hh->p[i].age >= 65;
    }
    if (kids)
        put_s(g, T7_TYPE, nt++, "3");
    if (old && rpct(&hr, 30))
        put_s(g, T7_TYPE, nt++, "4");
    if (rpct(&hr, 70))
        put_s(g, T7_TYPE, nt++, "5");
    put_i(g, T7_MEMBERS, 1, hh->n);
    put_i(g, T7_AMOUNT, 1, 75000 + 40000LL * (hh->n - 1) + (nt > 2 ? 40000 : 0));
    put_s(g, T7_OFFICE, 1, "テスト市福祉事務所");
    rng r = {seed_of(p->seed, 8000)};
    fill_generic(g, &r, w->as_of);
    write_row(g, p->local_id, start, true, false);
}

/* ------------------------------------------------------------ TK008 */

static void emit_tk008(item_gen *g, const world *w, const household *hh, const person *p)
{
    rng r = {seed_of(p->seed, 9000)};
    bool old = p->age >= 65 && p->pension_gross > 0;
    bool disabled = !old && p->disab == 1 && p->age >= 20 && rpct(&r, 50);
    if (!old && !disabled)
        return;
    int entitled = old ? add_years(p->birth, 65) : add_years(p->birth, 20);
    long long annual = old ? p->pension_gross : 1020000;
    clear_row(g);
    char no[16];
    no[0] = '1';
    kh_fmt_zero(no + 1, p->local_id % 1000000000ULL, 9);
    put_s(g, T8_NO, 1, no);
    put_s(g, T8_TYPE, 1, old ? (annual > 816000 ? "21" : "11") : "12");
    put_d(g, T8_ENTITLED, 1, entitled);
    put_i(g, T8_ANNUAL, 1, annual);
    put_s(g, T8_STATUS, 1, "1");
    char name[128];
    person_name(name, sizeof name, p);
    put_s(g, T8_PAYEE, 1, name);
    /* Paid on the 15th of even months for the two months before: the last
     * payments before the as-of date, most recent first. */
    int y, m, d;
    civil_of(w->as_of, &y, &m, &d);
    if (m % 2 == 1 || d < 15)
        m -= m % 2 == 1 ? 1 : 2;
    int n = 0;
    while (n < 6) {
        if (m <= 0)
            m += 12, y--;
        if (days_of(y, m, 15) <= entitled + 31)
            break;
        n++;
        put_z(g, T8_PMONTH, n, (unsigned long long)(y * 100 + m), 6);
        put_i(g, T8_PAMOUNT, n, annual / 6);
        m -= 2;
    }
    fill_generic(g, &r, w->as_of);
    write_row(g, p->local_id, entitled, true, false);
    (void)hh;
}

/* ----------------------------------------------------- unknown items */

static void emit_other(item_gen *g, const world *w, const household *hh, const person *p)
{
    rng r = {seed_of(
        p->seed, seed_of(0x07e4, (uint64_t)g->l.item_code[0] * 131 + (uint64_t)g->l.item_code[4]))};
    if (!rpct(&r, 10))
        return;
    int since = p->arrival > p->birth ? p->arrival : p->birth;
    clear_row(g);
    fill_generic(g, &r, w->as_of);
    write_row(g, p->local_id, since, true, false);
    (void)hh;
}

typedef void (*emit_fn)(item_gen *, const world *, const household *, const person *);
static const emit_fn emitters[9] = {emit_other, emit_tk001, emit_tk002, emit_tk003, emit_tk004,
                                    emit_tk005, emit_tk006, emit_tk007, emit_tk008};

static void emit_person(item_gen *g, const world *w, const household *hh, const person *p)
{
    emitters[g->kind](g, w, hh, p);
}

/* ------------------------------------------------------------- setup */

static void world_init(world *w, uint64_t seed, int as_of, const char *muni, bool history)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
    w->as_of = as_of;
    int y, m, d;
    civil_of(as_of, &y, &m, &d);
    w->fy = m >= 6 ? y : y - 1;
    snprintf(w->muni, sizeof w->muni, "%s", muni);
    w->history = history;
    w->next_local_id = LOCAL_ID_BASE;
    w->rc_mul = (mix64(seed ^ 0x1234ULL) % 1000000000ULL) | 1;
    while (w->rc_mul % 5 == 0)
        w->rc_mul += 2;
    w->rc_add = mix64(seed ^ 0x4321ULL) % 1000000000ULL;
}

/* The next household, at most maxn persons. */
static void next_household(world *w, unsigned long long h, int maxn, household *hh)
{
    make_household(w, h, hh);
    if (hh->n > maxn) {
        /* truncate (the last household of a run): drop the youngest */
        hh->income = 0;
        hh->n = maxn;
        for (int i = 0; i < hh->n; i++)
            hh->income += hh->p[i].income;
    }
}

/* mkdir -p */
static void make_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *s = path + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            die("%s: %s", path, strerror(errno));
        *s = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        die("%s: %s", dir, strerror(errno));
}

static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    return f;
}

static void close_out(FILE *f, const char *path)
{
    if (fflush(f) != 0 || ferror(f) || fclose(f) != 0)
        die("%s: write failed", path);
}

/* The item codes of items.tsv, in file order. */
static size_t catalogue_items(const char *catalogue, char items[][16], size_t max)
{
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/items.tsv", catalogue);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: %s: %s\n", prog_cmd, path, strerror(errno));
        exit(2);
    }
    size_t n = 0;
    bool header = true;
    while (fgets(line, sizeof line, f) != NULL && n < max) {
        if (header) {
            header = false;
            continue;
        }
        size_t len = strcspn(line, "\t\r\n");
        if (len == 0 || len >= 16)
            continue;
        memcpy(items[n], line, len);
        items[n][len] = '\0';
        n++;
    }
    fclose(f);
    return n;
}

/* ---------------------------------------------------------- residents */

typedef struct {
    const char *catalogue, *out, *items, *as_of, *muni;
    unsigned long long count;
    uint64_t seed;
    bool have_count, have_seed, history;
} options;

static int cmd_residents(const options *o)
{
    int as_of;
    if (!parse_ymd(o->as_of, &as_of)) {
        fprintf(stderr, "%s: --as-of expects a real date as YYYYMMDD\n", prog_cmd);
        return 2;
    }
    char codes[MAXITEMS][16];
    size_t nitems = 0;
    if (o->items != NULL) {
        const char *s = o->items;
        while (*s != '\0' && nitems < MAXITEMS) {
            size_t len = strcspn(s, ",");
            if (len == 0 || len >= 16) {
                fprintf(stderr, "%s: --items expects item codes separated by commas\n", prog_cmd);
                return 2;
            }
            memcpy(codes[nitems], s, len);
            codes[nitems++][len] = '\0';
            s += len + (s[len] == ',');
        }
    } else {
        nitems = catalogue_items(o->catalogue, codes, MAXITEMS);
    }
    if (nitems == 0) {
        fprintf(stderr, "%s: no items\n", prog_cmd);
        return 2;
    }
    make_dir(o->out);
    item_gen *gens = xcalloc(nitems, sizeof *gens);
    for (size_t i = 0; i < nitems; i++) {
        gen_open(&gens[i], o->catalogue, codes[i]);
        snprintf(gens[i].path, sizeof gens[i].path, "%s/%s_full_%s.csv", o->out, codes[i],
                 o->as_of);
        gens[i].out = open_out(gens[i].path);
        setvbuf(gens[i].out, NULL, _IOFBF, 1 << 20);
        write_header(&gens[i]);
    }
    char ppath[4096];
    snprintf(ppath, sizeof ppath, "%s/persons.tsv", o->out);
    FILE *pf = open_out(ppath);
    setvbuf(pf, NULL, _IOFBF, 1 << 20);
    fputs("local_id\thousehold_no\tresident_code\n", pf);

    world w;
    world_init(&w, o->seed, as_of, o->muni, o->history);
    household hh;
    unsigned long long done = 0, h = 0;
    while (done < o->count) {
        unsigned long long left = o->count - done;
        next_household(&w, h++, left < HHMAX ? (int)left : HHMAX, &hh);
        for (int i = 0; i < hh.n; i++) {
            const person *p = &hh.p[i];
            char rc[12], hn[12];
            resident_code(&w, p->index, rc);
            kh_fmt_zero(hn, hh.hh_no, 10);
            fprintf(pf, "%llu\t%s\t%s\n", p->local_id, hn, rc);
            for (size_t k = 0; k < nitems; k++)
                emit_person(&gens[k], &w, &hh, p);
        }
        done += (unsigned long long)hh.n;
    }
    close_out(pf, ppath);
    for (size_t i = 0; i < nitems; i++) {
        close_out(gens[i].out, gens[i].path);
        fprintf(stderr, "%s: %s: %llu rows\n", prog_cmd, gens[i].path, gens[i].rows);
        gen_close(&gens[i]);
    }
    fprintf(stderr, "%s: %llu residents in %llu households\n", prog_cmd, done, h);
    free(gens);
    return 0;
}

/* ------------------------------------------------------------ changes */

#define NEW_LOCAL_ID_BASE 900000001ULL
#define NEW_HOUSEHOLD_BASE 29000000ULL

typedef struct {
    const options *o;
    item_gen *g;
    world *w;
    FILE *index;
    FILE *out;
    char path[4096];
    char name[64];
    int date; /* the file's date */
} change_ctx;

static void change_begin(change_ctx *c, const char *reason)
{
    char ymd[9];
    kh_fmt_zero(ymd, (unsigned long long)ymd_of(c->date), 8);
    snprintf(c->name, sizeof c->name, "TK002_diff_%s_%s.csv", ymd, reason);
    snprintf(c->path, sizeof c->path, "%s/%s", c->o->out, c->name);
    c->out = open_out(c->path);
    c->g->out = c->out;
    write_header(c->g);
}

static void change_end(change_ctx *c, const char *reason, const char *meaning, const char *shows)
{
    close_out(c->out, c->path);
    c->g->out = NULL;
    fprintf(c->index, "%s\t%s\t%s\t%s\n", c->name, reason, meaning, shows);
}

/* Row of a person as tk002_row writes it, then the change's own values. */
static void change_row(change_ctx *c, const household *hh, const person *p,
                       unsigned long long hh_no, const char *reason, int day)
{
    char name[128];
    person_name(name, sizeof name, p);
    clear_row(c->g);
    tk002_row(c->g, c->w, hh, p, hh_no, reason, day, name);
}

static const household *find_household(const household *hhs, size_t n, int min_n, int max_n,
                                       int min_head_age, int max_head_age, size_t skip)
{
    for (size_t i = 0; i < n; i++) {
        const household *h = &hhs[i];
        if (h->n >= min_n && h->n <= max_n && h->p[0].age >= min_head_age &&
            h->p[0].age <= max_head_age && skip-- == 0)
            return h;
    }
    die("no suitable household among the first %zu of this seed", n);
}

/* A new person (not in the full files): a fresh local ID, fresh name. */
static person new_person(const world *w, unsigned long long k, int rel, int age,
                         const char *surname, rng *r)
{
    person p;
    memset(&p, 0, sizeof p);
    p.local_id = NEW_LOCAL_ID_BASE + k;
    p.index = 900000 + k;
    p.seed = seed_of(w->seed ^ 0x9e3779b9ULL, p.local_id);
    p.rel = rel;
    p.birth = age == 0 ? w->as_of + (int)rint_(r, 1, 10) : birth_for_age(w, r, age);
    p.age = age;
    if (surname != NULL)
        snprintf(p.surname, sizeof p.surname, "%s", surname);
    else
        make_surname(p.surname, sizeof p.surname, r);
    make_given(p.given, sizeof p.given, r);
    p.born_here = age == 0;
    p.arrival = p.born_here ? p.birth : w->as_of;
    p.prev_muni = prev_munis[rnext(r) % (sizeof prev_munis / sizeof prev_munis[0])];
    return p;
}

static int cmd_changes(const options *o)
{
    int as_of;
    if (!parse_ymd(o->as_of, &as_of)) {
        fprintf(stderr, "%s: --as-of expects a real date as YYYYMMDD\n", prog_cmd);
        return 2;
    }
    make_dir(o->out);
    world w;
    world_init(&w, o->seed, as_of, o->muni, false);
    enum { NHH = 300 };
    household *hhs = xcalloc(NHH, sizeof *hhs);
    for (unsigned long long h = 0; h < NHH; h++)
        next_household(&w, h, HHMAX, &hhs[h]);
    /* Changes happen after the full files' date; the diff files are dated
     * 30 days later, notifications come before that. */
    world wd = w;
    wd.as_of = as_of + 30;
    item_gen g;
    gen_open(&g, o->catalogue, "TK002");
    if (g.k[T2_HH] < 0 || g.k[T2_REASON] < 0 || g.k[T2_STATUS] < 0)
        die("TK002 in %s lacks household_no, change_reason or resident_status", o->catalogue);
    char ipath[4096];
    snprintf(ipath, sizeof ipath, "%s/changes.tsv", o->out);
    FILE *index = open_out(ipath);
    fputs("file\treason\tmeaning\tshows\n", index);
    change_ctx c = {o, &g, &wd, index, NULL, "", "", wd.as_of};
    rng r = {seed_of(o->seed, 0xc4a9)};
    unsigned long long fresh = 0;
    const household *h;
    char name[128];

    /* A1 転入: a family of three moves in from another municipality. */
    change_begin(&c, "A1");
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        char surname[64];
        make_surname(surname, sizeof surname, &r);
        person fam[3] = {new_person(&w, fresh, REL_HEAD, 38, surname, &r),
                         new_person(&w, fresh + 1, REL_SPOUSE, 36, surname, &r),
                         new_person(&w, fresh + 2, REL_CHILD, 7, surname, &r)};
        fresh += 3;
        household nh = {0};
        for (int i = 0; i < 3; i++) {
            fam[i].arrival = day;
            fam[i].born_here = false;
            fam[i].prev_muni = fam[0].prev_muni;
            change_row(&c, &nh, &fam[i], NEW_HOUSEHOLD_BASE + 1, "A1", day);
            write_row(&g, fam[i].local_id, day, true, false);
        }
    }
    change_end(&c, "A1", "転入 move-in",
               "a new household of three from another municipality: move_in_date, "
               "previous_municipality_code, new household_no, local IDs beyond the full files");

    /* A2 出生: a baby born into an existing household. */
    change_begin(&c, "A2");
    h = find_household(hhs, NHH, 2, 4, 26, 40, 0);
    {
        person baby = new_person(&w, fresh++, REL_CHILD, 0, h->p[0].surname, &r);
        change_row(&c, h, &baby, h->hh_no, "A2", baby.birth);
        write_row(&g, baby.local_id, baby.birth, true, false);
    }
    change_end(&c, "A2", "出生 birth",
               "a newborn (relation 03) in an existing household; change_date is the birth date, "
               "no move_in_date and no previous municipality");

    /* A3 国籍取得: a foreign resident of the full files becomes a national. */
    change_begin(&c, "A3");
    h = find_household(hhs, NHH, 1, 1, 25, 60, 0);
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        person p = h->p[0];
        make_given(p.given, sizeof p.given, &r); /* the name chosen at naturalisation */
        change_row(&c, h, &p, h->hh_no, "A3", day);
        put_s(&g, T2_REMARKS, 1, "帰化により国籍取得");
        write_row(&g, p.local_id, day, true, false);
    }
    change_end(&c, "A3", "国籍取得 nationality acquired",
               "a resident of the full files naturalised: same local ID and household, new name, "
               "a remark");

    /* A4 住所設定: a person without an address in Japan gets one set. */
    change_begin(&c, "A4");
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        person p = new_person(&w, fresh++, REL_HEAD, 52, NULL, &r);
        p.arrival = day;
        p.born_here = false;
        household nh = {0};
        clear_row(&g);
        person_name(name, sizeof name, &p);
        tk002_row(&g, &wd, &nh, &p, NEW_HOUSEHOLD_BASE + 2, "A4", day, name);
        put_empty(&g, T2_PREV, 1);
        put_s(&g, T2_REMARKS, 1, "住所設定（従前の住所なし）");
        write_row(&g, p.local_id, day, true, false);
    }
    change_end(&c, "A4", "住所設定 address set",
               "a person with no previous address: move_in_date set, previous_municipality_code "
               "empty (optional and unknown), a new one-person household");

    /* B1 転出: a two-person household moves away; a single person leaves, destination unknown. */
    change_begin(&c, "B1");
    {
        const household *a = find_household(hhs, NHH, 2, 2, 30, 70, 0);
        const household *b = find_household(hhs, NHH, 1, 1, 20, 40, 1);
        int day_a = as_of + (int)rint_(&r, 1, 20), day_b = as_of + (int)rint_(&r, 1, 20);
        const household *first = a->p[0].local_id < b->p[0].local_id ? a : b;
        for (int k = 0; k < 2; k++) {
            const household *x = k == 0 ? first : (first == a ? b : a);
            for (int i = 0; i < x->n; i++) {
                bool unknown = x == b;
                int day = unknown ? day_b : day_a;
                change_row(&c, x, &x->p[i], x->hh_no, "B1", day);
                put_s(&g, T2_STATUS, 1, "2");
                put_s(&g, T2_DEST_UNKNOWN, 1, unknown ? "1" : "0");
                if (unknown)
                    put_s(&g, T2_REMARKS, 1, "転出先不明（実態調査による）");
                write_row(&g, x->p[i].local_id, day, true, false);
            }
        }
    }
    change_end(
        &c, "B1", "転出 move-out",
        "a two-person household moving out (destination_unknown 0) and a single person whose "
        "destination is not yet known (destination_unknown 1, a remark); resident_status 2");

    /* B2 死亡 */
    change_begin(&c, "B2");
    h = find_household(hhs, NHH, 1, 1, 75, 120, 0);
    {
        int day = as_of + (int)rint_(&r, 1, 15);
        change_row(&c, h, &h->p[0], h->hh_no, "B2", day);
        put_s(&g, T2_STATUS, 1, "3");
        write_row(&g, h->p[0].local_id, day, true, false);
    }
    change_end(&c, "B2", "死亡 death",
               "an elderly person living alone: one row with resident_status 3, change_date the "
               "date of death, and no later row");

    /* C1 転居: a household moves within the municipality. */
    change_begin(&c, "C1");
    h = find_household(hhs, NHH, 3, 6, 28, 60, 0);
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        for (int i = 0; i < h->n; i++) {
            change_row(&c, h, &h->p[i], h->hh_no, "C1", day);
            write_row(&g, h->p[i].local_id, day, true, false);
        }
    }
    change_end(&c, "C1", "転居 move within the municipality",
               "every member of a household, same household_no, a new change_date; move_in_date "
               "and previous municipality as before");

    /* C2 氏名変更 */
    change_begin(&c, "C2");
    h = find_household(hhs, NHH, 1, 1, 24, 40, 2);
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        person p = h->p[0];
        make_surname(p.surname, sizeof p.surname, &r);
        change_row(&c, h, &p, h->hh_no, "C2", day);
        put_s(&g, T2_REMARKS, 1, "婚姻により氏変更");
        write_row(&g, p.local_id, day, true, false);
    }
    change_end(&c, "C2", "氏名変更 name change",
               "a new surname in name_kana after marriage, with a remark; nothing else changes");

    /* C3 世帯変更: a grown child sets up a household of their own (世帯分離). */
    change_begin(&c, "C3");
    {
        const household *x = NULL;
        int who = -1;
        for (size_t i = 0; i < NHH && x == NULL; i++)
            for (int j = 1; j < hhs[i].n; j++)
                if (hhs[i].p[j].rel == REL_CHILD && hhs[i].p[j].age >= 20) {
                    x = &hhs[i];
                    who = j;
                    break;
                }
        if (x == NULL)
            die("no grown child among the first %d households of this seed", NHH);
        int day = as_of + (int)rint_(&r, 1, 20);
        person p = x->p[who];
        p.rel = REL_HEAD;
        change_row(&c, x, &p, NEW_HOUSEHOLD_BASE + 3, "C3", day);
        put_s(&g, T2_REMARKS, 1, "世帯分離");
        write_row(&g, p.local_id, day, true, false);
    }
    change_end(&c, "C3", "世帯変更 household change",
               "a grown child leaves the parents' household (世帯分離): new household_no, "
               "relation 01");

    /* D1 職権記載 */
    change_begin(&c, "D1");
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        person p = new_person(&w, fresh++, REL_HEAD, 67, NULL, &r);
        p.arrival = day;
        p.born_here = false;
        household nh = {0};
        change_row(&c, &nh, &p, NEW_HOUSEHOLD_BASE + 4, "D1", day);
        put_s(&g, T2_REMARKS, 1, "職権記載（実態調査）");
        write_row(&g, p.local_id, day, true, false);
    }
    change_end(&c, "D1", "職権記載 entry by authority",
               "a person found living here by a survey, entered by the municipality: a new "
               "household, a remark");

    /* D2 職権消除: the item ends for a person no longer living at the address. */
    change_begin(&c, "D2");
    h = find_household(hhs, NHH, 1, 1, 30, 80, 3);
    {
        int day = as_of + (int)rint_(&r, 1, 20);
        clear_row(&g);
        write_row(&g, h->p[0].local_id, day, true, true);
    }
    change_end(&c, "D2", "職権消除 removal by authority",
               "a deletion row (delete_flag 1, every field empty): the record ends as of "
               "effective_from");

    close_out(index, ipath);
    gen_close(&g);
    free(hhs);
    fprintf(stderr, "%s: 11 change files and %s\n", prog_cmd, ipath);
    return 0;
}

/* ------------------------------------------------------------- broken */

/* A small valid file as a table of raw CSV cells (generated values never
 * need quoting), then one defect, then written back as it is. */
typedef struct {
    char **cells;
    size_t n;
} brow;

typedef struct {
    char **hdr;
    size_t ncols;
    brow *rows;
    size_t nrows;
} table;

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("out of memory");
    return p;
}

static void split_line(char *line, char ***cells, size_t *n)
{
    size_t cap = 1;
    for (char *q = line; *q; q++)
        cap += *q == ',';
    *cells = xcalloc(cap, sizeof **cells);
    *n = 0;
    char *s = line;
    for (;;) {
        char *e = strchr(s, ',');
        if (e != NULL)
            *e = '\0';
        (*cells)[(*n)++] = xstrdup(s);
        if (e == NULL)
            break;
        s = e + 1;
    }
}

/* Generates the item's rows for the first households of the seed until
 * there are at least min_rows. */
static void base_table(const options *o, int as_of, const char *item, size_t min_rows, table *t)
{
    item_gen g;
    gen_open(&g, o->catalogue, item);
    char *buf = NULL;
    size_t len = 0;
    g.out = open_memstream(&buf, &len);
    if (g.out == NULL)
        die("out of memory");
    write_header(&g);
    world w;
    world_init(&w, o->seed, as_of, o->muni, false);
    household hh;
    for (unsigned long long h = 0; g.rows < min_rows; h++) {
        if (h > 100000)
            die("%s: fewer than %zu rows from 100,000 households", item, min_rows);
        next_household(&w, h, HHMAX, &hh);
        for (int i = 0; i < hh.n; i++)
            emit_person(&g, &w, &hh, &hh.p[i]);
    }
    fclose(g.out);
    gen_close(&g);
    memset(t, 0, sizeof *t);
    size_t nlines = 0;
    for (size_t i = 0; i < len; i++)
        nlines += buf[i] == '\n';
    t->rows = xcalloc(nlines + 8, sizeof *t->rows);
    char *save = NULL;
    bool first = true;
    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (first) {
            split_line(line, &t->hdr, &t->ncols);
            first = false;
        } else {
            brow *r = &t->rows[t->nrows++];
            split_line(line, &r->cells, &r->n);
        }
    }
    free(buf);
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->ncols; i++)
        free(t->hdr[i]);
    free(t->hdr);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->rows[r].n; i++)
            free(t->rows[r].cells[i]);
        free(t->rows[r].cells);
    }
    free(t->rows);
}

static size_t tcol(const table *t, const char *name)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->hdr[i], name) == 0)
            return i;
    die("the layout has no column %s", name);
}

static void tset(table *t, size_t row, const char *col, const char *v)
{
    size_t c = tcol(t, col);
    free(t->rows[row].cells[c]);
    t->rows[row].cells[c] = xstrdup(v);
}

static const char *tget(const table *t, size_t row, const char *col)
{
    return t->rows[row].cells[tcol(t, col)];
}

/* Inserts a copy of row src at position at. */
static void tcopy(table *t, size_t src, size_t at)
{
    brow copy;
    copy.n = t->rows[src].n;
    copy.cells = xcalloc(copy.n, sizeof *copy.cells);
    for (size_t i = 0; i < copy.n; i++)
        copy.cells[i] = xstrdup(t->rows[src].cells[i]);
    memmove(&t->rows[at + 1], &t->rows[at], (t->nrows - at) * sizeof *t->rows);
    t->rows[at] = copy;
    t->nrows++;
}

/* effective_from of row moved by delta days. */
static void tshift(table *t, size_t row, int delta)
{
    char ymd[9];
    kh_fmt_zero(
        ymd, (unsigned long long)ymd_of(day_of_ymd(atoi(tget(t, row, "effective_from"))) + delta),
        8);
    tset(t, row, "effective_from", ymd);
}

static void twrite(const table *t, const char *path)
{
    FILE *f = open_out(path);
    for (size_t i = 0; i < t->ncols; i++)
        fprintf(f, "%s%s", i ? "," : "", t->hdr[i]);
    fputc('\n', f);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t i = 0; i < t->rows[r].n; i++)
            fprintf(f, "%s%s", i ? "," : "", t->rows[r].cells[i]);
        fputc('\n', f);
    }
    close_out(f, path);
}

/* The physical line of data row r (the header is line 1). */
#define LINE(r) ((r) + 2)

typedef struct {
    const char *name, *item, *what;
} broken_case;

static const broken_case broken_cases[] = {
    {"header", "TK001", "KH-1103: two header columns swapped (annual_tax, municipal_tax_flat)"},
    {"columns", "TK002", "KH-1104: a record with one column too few"},
    {"mandatory", "TK002", "KH-1105: household_no (mandatory) empty"},
    {"type_digits", "TK002", "KH-1106: a letter in household_no, a 9(10) field"},
    {"type_length", "TK002", "KH-1106: remarks, X(40), with 41 characters"},
    {"type_date", "TK002", "KH-1106: change_date 20260230, not a real date"},
    {"padding_zero", "TK002", "KH-1107: household_no, zero-padded 9(10), without its zeros"},
    {"padding_suppress", "TK003", "KH-1107: monthly_amount, zero-suppressed, with a leading zero"},
    {"code", "TK002", "KH-1108: relation 05, not in code table RELATION"},
    {"charset_halfwidth", "TK002", "KH-1109: half-width katakana in name_kana (charset kana)"},
    {"charset_control", "TK002", "KH-1109: a TAB (control character) in remarks"},
    {"formula", "TK002", "KH-1109: remarks beginning with = (a spreadsheet formula)"},
    {"flag_latest", "TK001", "KH-1110: latest_flag 2"},
    {"flag_deleted", "TK002", "KH-1110: a deletion row that still carries household_no"},
    {"duplicate", "TK002", "KH-1111: the same local_id and effective_from twice"},
    {"order_local_id", "TK002", "KH-1112: two persons in decreasing local_id order"},
    {"order_effective_from", "TK002", "KH-1112: a person's second row dated before the first"},
    {"latest_none", "TK002", "KH-1113: a person with no row with latest_flag 1"},
    {"latest_two", "TK002", "KH-1113: a person with two rows with latest_flag 1"},
    {"latest_not_last", "TK002", "KH-1113: latest_flag 1 on a person's first row, not the last"},
    {"occurs_gap", "TK001", "KH-1114: dependents[1] and [3] present, [2] empty"},
    {"occurs_min", "TK007", "KH-1114: no assistance_type at all (min_occurs 1)"},
    {"too_long", "TK002", "KH-1115: a record of more than 65,536 bytes (a 70,000-byte remarks)"},
    {"key_local_id", "TK002", "KH-1116: a letter in local_id"},
    {"key_effective_from", "TK002", "KH-1116: effective_from 20261301"},
    {"csv_unterminated", "TK002", "KH-1101: a quote opened in the last record and never closed"},
    {"csv_stray_quote", "TK002", "KH-1101: a quote inside an unquoted field"},
    {"encoding", "TK002", "KH-1102: name_kana in Shift_JIS bytes"},
};

static int cmd_broken(const options *o)
{
    int as_of;
    if (!parse_ymd(o->as_of, &as_of)) {
        fprintf(stderr, "%s: --as-of expects a real date as YYYYMMDD\n", prog_cmd);
        return 2;
    }
    make_dir(o->out);
    char ipath[4096];
    snprintf(ipath, sizeof ipath, "%s/broken.tsv", o->out);
    FILE *index = open_out(ipath);
    fputs("file\titem\tmode\tdescription\n", index);
    size_t ncases = sizeof broken_cases / sizeof broken_cases[0];
    for (size_t k = 0; k < ncases; k++) {
        const broken_case *bc = &broken_cases[k];
        table t;
        base_table(o, as_of, bc->item, strcmp(bc->item, "TK001") == 0 ? 40 : 8, &t);
        const size_t T = 2; /* the row that gets the defect: line 4 */
        char expect[4096] = "";
        size_t el = 0;
#define EXPECT(line, field, code)                                                                  \
    el += (size_t)snprintf(expect + el, sizeof expect - el, "%zu,%s,%s\n", (size_t)(line), field,  \
                           code)
        const char *n = bc->name;
        if (strcmp(n, "header") == 0) {
            size_t a = tcol(&t, "annual_tax"), b = tcol(&t, "municipal_tax_flat");
            char *x = t.hdr[a];
            t.hdr[a] = t.hdr[b];
            t.hdr[b] = x;
            EXPECT(1, "annual_tax", "KH-1103");
        } else if (strcmp(n, "columns") == 0) {
            brow *r = &t.rows[T];
            free(r->cells[--r->n]);
            EXPECT(LINE(T), "-", "KH-1104");
        } else if (strcmp(n, "mandatory") == 0) {
            tset(&t, T, "household_no", "");
            EXPECT(LINE(T), "household_no", "KH-1105");
        } else if (strcmp(n, "type_digits") == 0) {
            char v[32];
            snprintf(v, sizeof v, "%s", tget(&t, T, "household_no"));
            v[5] = 'A';
            tset(&t, T, "household_no", v);
            EXPECT(LINE(T), "household_no", "KH-1106");
        } else if (strcmp(n, "type_length") == 0) {
            char v[256] = "テスト";
            rng r = {o->seed};
            add_syllables(v, sizeof v, &r, 38);
            tset(&t, T, "remarks", v);
            EXPECT(LINE(T), "remarks", "KH-1106");
        } else if (strcmp(n, "type_date") == 0) {
            tset(&t, T, "change_date", "20260230");
            EXPECT(LINE(T), "change_date", "KH-1106");
        } else if (strcmp(n, "padding_zero") == 0) {
            const char *v = tget(&t, T, "household_no");
            while (*v == '0' && v[1] != '\0')
                v++;
            char s[32];
            snprintf(s, sizeof s, "%s", v);
            tset(&t, T, "household_no", s);
            EXPECT(LINE(T), "household_no", "KH-1107");
        } else if (strcmp(n, "padding_suppress") == 0) {
            char v[32];
            snprintf(v, sizeof v, "0%s", tget(&t, T, "monthly_amount"));
            tset(&t, T, "monthly_amount", v);
            EXPECT(LINE(T), "monthly_amount", "KH-1107");
        } else if (strcmp(n, "code") == 0) {
            tset(&t, T, "relation", "05");
            EXPECT(LINE(T), "relation", "KH-1108");
        } else if (strcmp(n, "charset_halfwidth") == 0) {
            tset(&t, T, "name_kana", "ﾃｽﾄﾀﾛｳ");
            EXPECT(LINE(T), "name_kana", "KH-1109");
        } else if (strcmp(n, "charset_control") == 0) {
            tset(&t, T, "remarks", "テスト\tメモ");
            EXPECT(LINE(T), "remarks", "KH-1109");
        } else if (strcmp(n, "formula") == 0) {
            tset(&t, T, "remarks", "=1+2");
            EXPECT(LINE(T), "remarks", "KH-1109");
        } else if (strcmp(n, "flag_latest") == 0) {
            tset(&t, T, "latest_flag", "2");
            EXPECT(LINE(T), "latest_flag", "KH-1110");
        } else if (strcmp(n, "flag_deleted") == 0) {
            char hn[32];
            snprintf(hn, sizeof hn, "%s", tget(&t, T, "household_no"));
            for (size_t i = 4; i < t.ncols; i++)
                tset(&t, T, t.hdr[i], "");
            tset(&t, T, "delete_flag", "1");
            tset(&t, T, "household_no", hn);
            EXPECT(LINE(T), "household_no", "KH-1110");
        } else if (strcmp(n, "duplicate") == 0) {
            tcopy(&t, T, T + 1);
            tset(&t, T, "latest_flag", "0");
            EXPECT(LINE(T + 1), "-", "KH-1111");
        } else if (strcmp(n, "order_local_id") == 0) {
            brow x = t.rows[T];
            t.rows[T] = t.rows[T + 1];
            t.rows[T + 1] = x;
            EXPECT(LINE(T + 1), "local_id", "KH-1112");
        } else if (strcmp(n, "order_effective_from") == 0) {
            tcopy(&t, T, T + 1);
            tset(&t, T, "latest_flag", "0");
            tshift(&t, T + 1, -1);
            EXPECT(LINE(T + 1), "effective_from", "KH-1112");
        } else if (strcmp(n, "latest_none") == 0) {
            tset(&t, T, "latest_flag", "0");
            EXPECT(LINE(T), "latest_flag", "KH-1113");
        } else if (strcmp(n, "latest_two") == 0) {
            tcopy(&t, T, T + 1);
            tshift(&t, T + 1, 1);
            EXPECT(LINE(T), "latest_flag", "KH-1113");
        } else if (strcmp(n, "latest_not_last") == 0) {
            tcopy(&t, T, T + 1);
            tshift(&t, T + 1, 1);
            tset(&t, T + 1, "latest_flag", "0");
            EXPECT(LINE(T), "latest_flag", "KH-1113");
        } else if (strcmp(n, "occurs_gap") == 0) {
            size_t row = t.nrows;
            for (size_t r = 0; r < t.nrows && row == t.nrows; r++)
                if (tget(&t, r, "dependents[1].relation")[0] != '\0')
                    row = r;
            if (row == t.nrows)
                die("occurs_gap: no row with a dependent for this seed");
            static const char *const members[] = {"relation", "birth_date", "dependent_category"};
            char a[64], b[64];
            for (int occ = 2; occ <= 8; occ++)
                for (int m = 0; m < 3; m++) {
                    snprintf(a, sizeof a, "dependents[%d].%s", occ, members[m]);
                    tset(&t, row, a, "");
                }
            for (int m = 0; m < 3; m++) {
                snprintf(a, sizeof a, "dependents[1].%s", members[m]);
                snprintf(b, sizeof b, "dependents[3].%s", members[m]);
                char v[64];
                snprintf(v, sizeof v, "%s", tget(&t, row, a));
                tset(&t, row, b, v);
            }
            EXPECT(LINE(row), "dependents[3].relation", "KH-1114");
        } else if (strcmp(n, "occurs_min") == 0) {
            char a[64];
            for (int occ = 1; occ <= 8; occ++) {
                snprintf(a, sizeof a, "assistance_type[%d]", occ);
                tset(&t, T, a, "");
            }
            EXPECT(LINE(T), "assistance_type[1]", "KH-1114");
        } else if (strcmp(n, "too_long") == 0) {
            char *v = xcalloc(70001, 1);
            memset(v, 'A', 70000);
            tset(&t, T, "remarks", v);
            free(v);
            EXPECT(LINE(T), "-", "KH-1115");
        } else if (strcmp(n, "key_local_id") == 0) {
            char v[32];
            snprintf(v, sizeof v, "%s", tget(&t, T, "local_id"));
            v[4] = 'A';
            tset(&t, T, "local_id", v);
            EXPECT(LINE(T), "local_id", "KH-1116");
        } else if (strcmp(n, "key_effective_from") == 0) {
            tset(&t, T, "effective_from", "20261301");
            EXPECT(LINE(T), "effective_from", "KH-1116");
        } else if (strcmp(n, "csv_unterminated") == 0) {
            size_t last = t.nrows - 1;
            char v[64];
            snprintf(v, sizeof v, "\"%s", tget(&t, last, "notification_date"));
            tset(&t, last, "notification_date", v);
            EXPECT(LINE(last), "-", "KH-1101");
        } else if (strcmp(n, "csv_stray_quote") == 0) {
            tset(&t, T, "remarks", "テスト\"メモ");
            EXPECT(LINE(T), "-", "KH-1101");
        } else if (strcmp(n, "encoding") == 0) {
            /* テスト in Shift_JIS */
            tset(&t, T, "name_kana", "\x83\x65\x83\x58\x83\x67");
            EXPECT(LINE(T), "name_kana", "KH-1102");
        } else {
            die("no defect for case %s", n);
        }
#undef EXPECT
        char path[4096];
        snprintf(path, sizeof path, "%s/broken_%s.csv", o->out, n);
        twrite(&t, path);
        snprintf(path, sizeof path, "%s/broken_%s.expect", o->out, n);
        FILE *f = open_out(path);
        fputs(expect, f);
        close_out(f, path);
        fprintf(index, "broken_%s.csv\t%s\tfull\t%s\n", n, bc->item, bc->what);
        table_free(&t);
    }
    close_out(index, ipath);
    fprintf(stderr, "%s: %zu broken files and %s\n", prog_cmd, ncases, ipath);
    return 0;
}

/* --------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: khgen residents --count N --seed S --out DIR [--items A,B,...]\n"
            "                       [--as-of YYYYMMDD] [--history]\n"
            "       khgen changes --seed S --out DIR [--as-of YYYYMMDD]\n"
            "       khgen broken --seed S --out DIR [--as-of YYYYMMDD]\n"
            "Writes synthetic bulk files (refdb/FORMAT.md); the same seed gives the same bytes.\n"
            "  residents  N residents in households, one file per item:\n"
            "             DIR/<ITEM>_full_<AS_OF>.csv, and DIR/persons.tsv (local_id,\n"
            "             household_no, a synthetic 11-digit resident code); --history gives\n"
            "             some persons 2-3 versions. Streams: memory does not grow with N.\n"
            "  changes    one TK002 diff file per change reason (CHANGE_REASON):\n"
            "             DIR/TK002_diff_<DATE>_<REASON>.csv, listed in DIR/changes.tsv.\n"
            "  broken     one file per check of khcheck with exactly one defect:\n"
            "             DIR/broken_<what>.csv, its expected report rows (line,field,code) in\n"
            "             DIR/broken_<what>.expect, listed with their items in DIR/broken.tsv.\n"
            "Options:\n"
            "  --count N         residents (residents)\n"
            "  --seed S          any unsigned number\n"
            "  --out DIR         output folder (created if absent)\n"
            "  --items A,B       item codes (default: every item of items.tsv)\n"
            "  --as-of YYYYMMDD  date of the full files (default %s)\n"
            "  --history         several versions for some persons (residents)\n"
            "  --municipality C  the municipality's 6-digit code (default %s)\n"
            "  --catalogue DIR   catalogue files (default %s)\n"
            "  --help            this text\n"
            "Exit status: 0 done, 1 failure (e.g. cannot write), 2 usage or catalogue error.\n",
            DEFAULT_AS_OF, DEFAULT_MUNI, DEFAULT_CATALOGUE);
}

static bool parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0';
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(khgen --help for usage)\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"items", required_argument, NULL, 'i'},
                                         {"as-of", required_argument, NULL, 'a'},
                                         {"history", no_argument, NULL, 'H'},
                                         {"municipality", required_argument, NULL, 'm'},
                                         {"catalogue", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    options o = {
        DEFAULT_CATALOGUE, NULL, NULL, DEFAULT_AS_OF, DEFAULT_MUNI, 0, 0, false, false, false};
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-')
        return usage_error("%s", "expects a command: residents, changes or broken");
    const char *cmd = argv[1];
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        unsigned long long v;
        switch (opt) {
        case 'n':
            if (!parse_u64(optarg, &v) || v == 0 || v > 100000000ULL)
                return usage_error("--count expects 1..100000000, not %s", optarg);
            o.count = v;
            o.have_count = true;
            break;
        case 's':
            if (!parse_u64(optarg, &v))
                return usage_error("--seed expects an unsigned number, not %s", optarg);
            o.seed = v;
            o.have_seed = true;
            break;
        case 'o':
            o.out = optarg;
            break;
        case 'i':
            o.items = optarg;
            break;
        case 'a':
            if (!kh_id_date(optarg))
                return usage_error("--as-of expects a real date as YYYYMMDD, not %s", optarg);
            o.as_of = optarg;
            break;
        case 'H':
            o.history = true;
            break;
        case 'm':
            if (strlen(optarg) != 6 || strspn(optarg, "0123456789") != 6)
                return usage_error("--municipality expects 6 digits, not %s", optarg);
            o.muni = optarg;
            break;
        case 'c':
            o.catalogue = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return usage_error("%s", "unknown option");
        }
    }
    if (optind != argc)
        return usage_error("unexpected argument %s", argv[optind]);
    if (o.out == NULL)
        return usage_error("%s", "--out DIR is required");
    if (!o.have_seed)
        return usage_error("%s", "--seed S is required");
    if (strcmp(cmd, "residents") == 0) {
        if (!o.have_count)
            return usage_error("%s", "residents needs --count N");
        return cmd_residents(&o);
    }
    if (o.have_count || o.items != NULL || o.history)
        return usage_error("%s", "--count, --items and --history are for residents only");
    if (strcmp(cmd, "changes") == 0)
        return cmd_changes(&o);
    if (strcmp(cmd, "broken") == 0)
        return cmd_broken(&o);
    return usage_error("unknown command %s (residents, changes or broken)", cmd);
}
