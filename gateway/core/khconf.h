/* khconf.h: configuration files, read through one typed table per daemon
 * (pgbouncer's and Redis's habit). The file is "key = value" lines and '#'
 * comments. Each daemon declares its options once, in a kh_opt table: name,
 * type, default, bounds or allowed values, whether it may change at run time
 * (SIGHUP) and whether it is secret, and one line of help. From that table
 * come the known keys, the --help text, the defaults, the checks of -t and
 * the reload. Every problem is refused with the file and line: an unknown key
 * (a typo must not fall back to a default), a value of the wrong type or out
 * of bounds, an option given twice, a list longer than its bound. */
#ifndef KH_CONF_H
#define KH_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    KH_OPT_STR,  /* text, at most max bytes (0: 1024), no control characters */
    KH_OPT_INT,  /* a decimal integer in [min, max] */
    KH_OPT_ENUM, /* one of values[]; its index is stored */
    KH_OPT_ADDR, /* HOST:PORT */
    KH_OPT_LIST, /* repeated key; at most max values, each checked like a STR */
} kh_opt_type;

enum {
    KH_OPT_REQUIRED = 1u << 0, /* no default: the file must give it */
    KH_OPT_RELOAD = 1u << 1,   /* may change at run time (SIGHUP) */
    KH_OPT_SECRET = 1u << 2,   /* never printed (a password, a key) */
};

#define KH_OPT_LIST_MAX 256

/* The values of a KH_OPT_LIST option, in file order. */
typedef struct {
    const char *v[KH_OPT_LIST_MAX];
    size_t n;
} kh_opt_list;

/* One option. The value is stored at offset in the daemon's settings struct:
 * const char * (STR, ADDR; NULL if unset without default), int (INT, ENUM),
 * kh_opt_list (LIST). check, if set, is called on every STR and LIST value
 * and explains a refusal in why. */
typedef struct {
    const char *name;
    kh_opt_type type;
    unsigned flags;
    const char *def; /* the default as it would be written in the file; NULL: none */
    long min, max;
    const char *const *values; /* ENUM: the allowed words, NULL-terminated */
    size_t offset;
    bool (*check)(const char *v, char *why, size_t whylen);
    const char *help;
} kh_opt;

/* A file as read: its lines that set options (the values the settings point
 * into live here: keep it as long as the settings). */
typedef struct {
    char *key, *val;
    int line;
} kh_conf_kv;

typedef struct {
    char *path;
    kh_conf_kv *kv;
    size_t n;
} kh_conf;

/* Reads path, knowing the options of table (NULL-named entry ends it), and
 * fills settings (defaults first, then the file), checking every value. NULL
 * and err ("path:line: what is wrong") on any problem: nothing is half
 * applied, settings may have been written and must not be used. */
kh_conf *kh_conf_load(const char *path, const kh_opt *table, void *settings, char *err,
                      size_t errlen);
void kh_conf_free(kh_conf *c);

/* The first option not marked KH_OPT_RELOAD whose value differs between two
 * settings filled from the same table, or NULL: a reload that changes one is
 * refused (restart instead). */
const char *kh_conf_fixed_changed(const kh_opt *table, const void *a, const void *b);

/* What SIGHUP does, for any daemon: load reads path into fresh (a settings
 * struct of table's daemon, checked whole, cross-option rules included); if
 * that fails, or an option not marked KH_OPT_RELOAD differs from current,
 * nothing changes and the log says why; otherwise apply(fresh) takes the
 * reloadable values (numbers only: the file is freed after apply returns)
 * and the log says so. True if applied. */
typedef kh_conf *(*kh_conf_loader)(const char *path, void *settings, char *err, size_t errlen);
bool kh_conf_reload(const char *path, const kh_opt *table, kh_conf_loader load, const void *current,
                    void *fresh, void (*apply)(const void *fresh));

/* The "Options in FILE" part of --help: each option, its default or bounds
 * and whether it is required, reloadable or secret, and its help. */
void kh_conf_usage(FILE *f, const kh_opt *table);

#endif
