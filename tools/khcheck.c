/* khcheck: checks a bulk file of one item offline, before it is sent, with
 * the very code the gateway runs (refdb_check_stream), against the item's
 * current layout in the catalogue files (refdb/FORMAT.md).
 *
 * Standard output carries the report and nothing else (refdb/FORMAT.md
 * section 4: the header row, then one row per problem, in file order), so it
 * can be saved or compared with the gateway's. Standard error carries one
 * summary line:
 *   khcheck: FILE: N records, N persons, N bad records, N problems, sha256 HEX
 * Exit status: 0 the file is valid, 1 it has problems, 2 usage, unknown item,
 * or a file that cannot be read. */
#include "refdb.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KH_SOURCE_DIR
#define KH_SOURCE_DIR "."
#endif
#ifndef KH_DATA_DIR
#define KH_DATA_DIR "/usr/share/kakehashi"
#endif
/* The catalogue of the source tree this was built from, else the installed one
 * (tools/package: DATADIR/kakehashi/sql/catalogue). */
#define SOURCE_CATALOGUE KH_SOURCE_DIR "/sql/catalogue"
#define INSTALLED_CATALOGUE KH_DATA_DIR "/sql/catalogue"

static const char *default_catalogue(void)
{
    struct stat st;
    return stat(SOURCE_CATALOGUE, &st) == 0 ? SOURCE_CATALOGUE : INSTALLED_CATALOGUE;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: khcheck [--catalogue DIR] ITEM FILE\n"
            "Checks a bulk file (CSV, refdb/FORMAT.md) of item ITEM against the item's current\n"
            "layout, as the gateway would, without sending it. FILE - reads standard input.\n"
            "  --catalogue DIR  the catalogue files (items.tsv, fields.tsv, codes.tsv);\n"
            "                   default %s (the source tree's, else the installed\n"
            "                   %s)\n"
            "  --help           this text\n"
            "Standard output: the report (line,field,code,reason), one row per problem.\n"
            "Standard error: a one-line summary with the file's SHA-256.\n"
            "Exit status: 0 valid, 1 the file has problems, 2 usage, unknown item or a file\n"
            "that cannot be read.\n",
            SOURCE_CATALOGUE, INSTALLED_CATALOGUE);
}

/* The report's header goes out with the first problem, or at the end: a file
 * that cannot be read from the start leaves standard output empty. */
static bool header_done;

static void report_header(void)
{
    if (!header_done)
        refdb_report_header(stdout);
    header_done = true;
}

static void on_issue(const refdb_issue *issue, void *arg)
{
    report_header();
    refdb_report_row(stdout, issue);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"catalogue", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = default_catalogue();
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    const char *item = argv[optind], *path = argv[optind + 1];

    refdb_layout l;
    char msg[256] = "";
    kh_err e = refdb_layout_from_tsv(dir, item, &l, msg, sizeof msg);
    if (e != KH_OK) {
        fprintf(stderr, "khcheck: %s: %s (%s)\n", dir, msg[0] != '\0' ? msg : "no layout",
                kh_err_code(e));
        refdb_layout_free(&l);
        return 2;
    }

    int fd = STDIN_FILENO;
    if (strcmp(path, "-") != 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "khcheck: %s: %s\n", path, strerror(errno));
            refdb_layout_free(&l);
            return 2;
        }
    }

    refdb_file_stats st;
    errno = 0;
    e = refdb_check_stream(fd, &l, on_issue, NULL, NULL, NULL, &st);
    int saved = errno;
    if (fd != STDIN_FILENO)
        close(fd);
    refdb_layout_free(&l);
    if (e == KH_E_INTERNAL) {
        fprintf(stderr, "khcheck: %s: cannot read: %s\n", path,
                saved != 0 ? strerror(saved) : "out of memory");
        return 2;
    }
    report_header();
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "khcheck: cannot write the report\n");
        return 2;
    }

    char hex[65];
    for (size_t i = 0; i < sizeof st.sha256; i++)
        snprintf(hex + 2 * i, 3, "%02x", st.sha256[i]);
    fprintf(stderr,
            "khcheck: %s: %zu records, %zu persons, %zu bad records, %zu problems, sha256 %s\n",
            path, st.records, st.persons, st.bad_records, st.issues, hex);
    return e == KH_OK ? 0 : 1;
}
