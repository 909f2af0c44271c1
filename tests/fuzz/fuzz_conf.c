/* A configuration file as the daemons read it (kh_conf_load), through a
 * table with every kind of option the gateway's and the router's tables use
 * (text with a check, numbers in bounds, a word of a list, HOST:PORT, a
 * repeated key, required, reloadable and secret ones). The file is written
 * to a memory file and read through /proc/self/fd. */
#define _GNU_SOURCE
#include "khconf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const char *name, *listen, *db, *dir;
    int workers, level;
    kh_opt_list tenants;
} settings;

static bool no_slash(const char *v, char *why, size_t whylen)
{
    if (strchr(v, '/') == NULL)
        return true;
    snprintf(why, whylen, "no '/' allowed");
    return false;
}

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
#define OFF(f) offsetof(settings, f)
static const kh_opt table[] = {
    {"name", KH_OPT_STR, KH_OPT_REQUIRED, NULL, 0, 63, NULL, OFF(name), no_slash, "name"},
    {"listen", KH_OPT_ADDR, 0, "127.0.0.1:1", 0, 0, NULL, OFF(listen), NULL, "address"},
    {"db", KH_OPT_STR, KH_OPT_SECRET, NULL, 0, 1024, NULL, OFF(db), NULL, "secret"},
    {"dir", KH_OPT_STR, 0, NULL, 0, 900, NULL, OFF(dir), NULL, "folder"},
    {"workers", KH_OPT_INT, KH_OPT_RELOAD, "4", 1, 64, NULL, OFF(workers), NULL, "number"},
    {"log_level", KH_OPT_ENUM, KH_OPT_RELOAD, "info", 0, 0, levels, OFF(level), NULL, "word"},
    {"tenant", KH_OPT_LIST, 0, NULL, 0, 8, NULL, OFF(tenants), no_slash, "list"},
    {NULL, KH_OPT_STR, 0, NULL, 0, 0, NULL, 0, NULL, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_conf", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], err[512];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        settings s;
        kh_conf *c = kh_conf_load(path, table, &s, err, sizeof err);
        kh_conf_free(c);
    }
    close(fd);
    return 0;
}
