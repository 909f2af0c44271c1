/* khconf.c: the configuration file reader. */
#include "khconf.h"

#include <ctype.h>
#include <errno.h>
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

kh_conf *kh_conf_load(const char *path, const char *const *known, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    kh_conf *c = calloc(1, sizeof *c);
    char line[4096];
    int lineno = 0;
    if (c == NULL)
        goto fail;
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
        size_t i = 0;
        while (known[i] && strcmp(known[i], k) != 0)
            i++;
        if (known[i] == NULL) {
            snprintf(err, errlen, "%s:%d: unknown option '%s'", path, lineno, k);
            goto fail;
        }
        kh_conf_kv *kv = realloc(c->kv, (c->n + 1) * sizeof *kv);
        if (kv == NULL)
            goto fail;
        c->kv = kv;
        c->kv[c->n].key = strdup(k);
        c->kv[c->n].val = strdup(v);
        c->kv[c->n].line = lineno;
        c->n++;
        if (c->kv[c->n - 1].key == NULL || c->kv[c->n - 1].val == NULL)
            goto fail;
    }
    fclose(f);
    return c;
fail:
    fclose(f);
    kh_conf_free(c);
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
    free(c);
}

const char *kh_conf_str(const kh_conf *c, const char *key, const char *def)
{
    const char *v = def;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].key, key) == 0)
            v = c->kv[i].val;
    return v;
}

int kh_conf_int(const kh_conf *c, const char *key, int def, int min, int max, int *out, char *err,
                size_t errlen)
{
    const char *v = kh_conf_str(c, key, NULL);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end != '\0' || end == v || n < min || n > max) {
        snprintf(err, errlen, "option %s: '%s' is not an integer in [%d, %d]", key, v, min, max);
        return -1;
    }
    *out = (int)n;
    return 0;
}

size_t kh_conf_all(const kh_conf *c, const char *key, const char **vals, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n && n < max; i++)
        if (strcmp(c->kv[i].key, key) == 0)
            vals[n++] = c->kv[i].val;
    return n;
}
