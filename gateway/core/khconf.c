/* khconf.c: configuration files through a typed table (khconf.h). */
#include "khconf.h"

#include "khhttp.h"
#include "khlog.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static const kh_opt *find(const kh_opt *table, const char *name)
{
    for (const kh_opt *o = table; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

void kh_conf_free(kh_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->kv[i].key);
        free(c->kv[i].val);
    }
    free(c->kv);
    free(c->path);
    free(c);
}

/* The lines of the file that set options; unknown keys and a second line for
 * an option that is not a list are refused. */
static kh_conf *read_file(const char *path, const kh_opt *table, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    kh_conf *c = calloc(1, sizeof *c);
    char line[4096];
    int lineno = 0;
    if (c == NULL || (c->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            goto fail;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            goto fail;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        const kh_opt *o = find(table, k);
        if (o == NULL) {
            snprintf(err, errlen, "%s:%d: unknown option '%s'", path, lineno, k);
            goto fail;
        }
        for (size_t i = 0; o->type != KH_OPT_LIST && i < c->n; i++)
            if (strcmp(c->kv[i].key, k) == 0) {
                snprintf(err, errlen, "%s:%d: option '%s' given twice (first on line %d)", path,
                         lineno, k, c->kv[i].line);
                goto fail;
            }
        kh_conf_kv *kv = realloc(c->kv, (c->n + 1) * sizeof *kv);
        if (kv == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        c->kv = kv;
        c->kv[c->n].key = strdup(k);
        c->kv[c->n].val = strdup(v);
        c->kv[c->n].line = lineno;
        c->n++;
        if (c->kv[c->n - 1].key == NULL || c->kv[c->n - 1].val == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    fclose(f);
    return c;
fail:
    fclose(f);
    kh_conf_free(c);
    return NULL;
}

/* Checks one value v of option o and stores it (lists: appends). 0, or -1
 * with why set. */
static int set_value(const kh_opt *o, const char *v, void *settings, char *why, size_t whylen)
{
    char *at = (char *)settings + o->offset;
    switch (o->type) {
    case KH_OPT_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || n < o->min || n > o->max) {
            snprintf(why, whylen, "'%s' is not an integer in [%ld, %ld]", v, o->min, o->max);
            return -1;
        }
        *(int *)at = (int)n;
        return 0;
    }
    case KH_OPT_ENUM:
        for (int i = 0; o->values[i] != NULL; i++)
            if (strcmp(o->values[i], v) == 0) {
                *(int *)at = i;
                return 0;
            }
        snprintf(why, whylen, "'%s' is not one of", v);
        for (int i = 0; o->values[i] != NULL; i++) {
            size_t len = strlen(why);
            snprintf(why + len, whylen - len, "%s %s", i ? "," : "", o->values[i]);
        }
        return -1;
    case KH_OPT_ADDR: {
        char host[128];
        uint16_t port;
        if (kh_hostport(v, host, sizeof host, &port) != 0 || port == 0) {
            snprintf(why, whylen, "'%s' is not HOST:PORT", v);
            return -1;
        }
        *(const char **)at = v;
        return 0;
    }
    case KH_OPT_STR:
    case KH_OPT_LIST: {
        size_t max = o->type == KH_OPT_STR && o->max > 0 ? (size_t)o->max : 1024;
        size_t n = strlen(v);
        if (n == 0 || n > max) {
            snprintf(why, whylen, "expected 1 to %zu characters", max);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if (iscntrl((unsigned char)v[i])) {
                snprintf(why, whylen, "control character at position %zu", i + 1);
                return -1;
            }
        if (o->check != NULL && !o->check(v, why, whylen))
            return -1;
        if (o->type == KH_OPT_STR) {
            *(const char **)at = v;
            return 0;
        }
        kh_opt_list *l = (kh_opt_list *)(void *)at;
        size_t bound = o->max > 0 && o->max < KH_OPT_LIST_MAX ? (size_t)o->max : KH_OPT_LIST_MAX;
        if (l->n >= bound) {
            snprintf(why, whylen, "more than %zu values", bound);
            return -1;
        }
        l->v[l->n++] = v;
        return 0;
    }
    }
    snprintf(why, whylen, "unknown option type");
    return -1;
}

kh_conf *kh_conf_load(const char *path, const kh_opt *table, void *settings, char *err,
                      size_t errlen)
{
    char why[256];
    kh_conf *c = read_file(path, table, err, errlen);
    if (c == NULL)
        return NULL;
    /* the defaults (checked too: a wrong default is a bug worth a clear word) */
    for (const kh_opt *o = table; o->name != NULL; o++) {
        char *at = (char *)settings + o->offset;
        if (o->type == KH_OPT_LIST)
            ((kh_opt_list *)(void *)at)->n = 0;
        else if (o->type == KH_OPT_INT || o->type == KH_OPT_ENUM)
            *(int *)at = 0;
        else
            *(const char **)at = NULL;
        if (o->def != NULL && set_value(o, o->def, settings, why, sizeof why) != 0) {
            snprintf(err, errlen, "option %s: default %s", o->name, why);
            goto fail;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        const kh_opt *o = find(table, c->kv[i].key);
        if (set_value(o, c->kv[i].val, settings, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%d: %s: %s", path, c->kv[i].line, o->name, why);
            goto fail;
        }
    }
    for (const kh_opt *o = table; o->name != NULL; o++) {
        /* required: a line of the file names it (a default does not count) */
        bool set = false;
        for (size_t i = 0; i < c->n && !set; i++)
            set = strcmp(c->kv[i].key, o->name) == 0;
        if ((o->flags & KH_OPT_REQUIRED) && !set) {
            snprintf(err, errlen, "%s: option '%s' is required (%s)", path, o->name, o->help);
            goto fail;
        }
    }
    return c;
fail:
    kh_conf_free(c);
    return NULL;
}

static bool str_equal(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

const char *kh_conf_fixed_changed(const kh_opt *table, const void *a, const void *b)
{
    for (const kh_opt *o = table; o->name != NULL; o++) {
        if (o->flags & KH_OPT_RELOAD)
            continue;
        const char *pa = (const char *)a + o->offset, *pb = (const char *)b + o->offset;
        bool same = true;
        if (o->type == KH_OPT_INT || o->type == KH_OPT_ENUM) {
            same = *(const int *)(const void *)pa == *(const int *)(const void *)pb;
        } else if (o->type == KH_OPT_LIST) {
            const kh_opt_list *la = (const void *)pa, *lb = (const void *)pb;
            same = la->n == lb->n;
            for (size_t i = 0; same && i < la->n; i++)
                same = strcmp(la->v[i], lb->v[i]) == 0;
        } else {
            same = str_equal(*(const char *const *)(const void *)pa,
                             *(const char *const *)(const void *)pb);
        }
        if (!same)
            return o->name;
    }
    return NULL;
}

bool kh_conf_reload(const char *path, const kh_opt *table, kh_conf_loader load, const void *current,
                    void *fresh, void (*apply)(const void *fresh))
{
    char err[512];
    kh_conf *c = load(path, fresh, err, sizeof err);
    if (c == NULL) {
        kh_error("main", "reload refused, configuration unchanged: %s", err);
        return false;
    }
    const char *fixed = kh_conf_fixed_changed(table, current, fresh);
    if (fixed != NULL)
        kh_error("main",
                 "reload refused, configuration unchanged: option %s cannot change while "
                 "running (restart to change it)",
                 fixed);
    else {
        apply(fresh);
        kh_info("main", "configuration reloaded from %s", path);
    }
    kh_conf_free(c);
    return fixed == NULL;
}

void kh_conf_usage(FILE *f, const kh_opt *table)
{
    for (const kh_opt *o = table; o->name != NULL; o++) {
        char left[96], range[96] = "";
        if (o->type == KH_OPT_INT)
            snprintf(range, sizeof range, " (%ld-%ld)", o->min, o->max);
        else if (o->type == KH_OPT_ENUM) {
            size_t len = 0;
            range[len++] = ' ';
            range[len++] = '(';
            for (int i = 0; o->values[i] != NULL && len < sizeof range; i++)
                len += (size_t)snprintf(range + len, sizeof range - len, "%s%s", i ? ", " : "",
                                        o->values[i]);
            if (len + 2 < sizeof range)
                snprintf(range + len, sizeof range - len, ")");
        } else if (o->type == KH_OPT_LIST)
            snprintf(range, sizeof range, " (repeat, at most %ld)",
                     o->max > 0 && o->max < KH_OPT_LIST_MAX ? o->max : (long)KH_OPT_LIST_MAX);
        snprintf(left, sizeof left, "%s = %s", o->name,
                 o->flags & KH_OPT_SECRET ? "..."
                 : o->def                 ? o->def
                 : o->type == KH_OPT_ADDR ? "HOST:PORT"
                 : o->type == KH_OPT_INT  ? "N"
                                          : "VALUE");
        fprintf(f, "  %-27s %s%s%s%s\n", left, o->help, range,
                o->flags & KH_OPT_REQUIRED ? " [required]" : "",
                o->flags & KH_OPT_RELOAD ? " [reloadable]" : "");
    }
}
