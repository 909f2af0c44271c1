/* A bulk file as the gateway and khcheck check it (refdb_check_stream),
 * against the current layout of TK001 (every type, repeating groups) from
 * the catalogue; the first byte picks TK001 or TK002. */
#define _GNU_SOURCE
#include "refdb.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static refdb_layout layouts[2];
static int ready;

static void no_issue(const refdb_issue *is, void *arg)
{
    (void)is;
    (void)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[256];
    if (!ready) {
        if (refdb_layout_from_tsv(KH_SOURCE_DIR "/sql/catalogue", "TK001", &layouts[0], msg,
                                  sizeof msg) != KH_OK ||
            refdb_layout_from_tsv(KH_SOURCE_DIR "/sql/catalogue", "TK002", &layouts[1], msg,
                                  sizeof msg) != KH_OK) {
            fprintf(stderr, "fuzz_csv: %s\n", msg);
            abort();
        }
        ready = 1;
    }
    if (size < 1)
        return 0;
    int fd = memfd_create("fuzz_csv", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data + 1, size - 1) == (ssize_t)(size - 1) && lseek(fd, 0, SEEK_SET) == 0) {
        refdb_file_stats st;
        (void)refdb_check_stream(fd, &layouts[data[0] & 1], no_issue, NULL, NULL, NULL, &st);
    }
    close(fd);
    return 0;
}
