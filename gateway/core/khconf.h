/* khconf.h: configuration files: "key = value" lines, '#' comments, repeated
 * keys allowed where an option is a list. Every daemon declares the keys it
 * knows; an unknown key is an error (a typo must not silently fall back to a
 * default). */
#ifndef KH_CONF_H
#define KH_CONF_H

#include <stddef.h>

typedef struct {
    char *key, *val;
    int line;
} kh_conf_kv;

typedef struct {
    kh_conf_kv *kv;
    size_t n;
} kh_conf;

kh_conf *kh_conf_load(const char *path, const char *const *known, char *err, size_t errlen);
void kh_conf_free(kh_conf *c);
/* The last value of key, or def. */
const char *kh_conf_str(const kh_conf *c, const char *key, const char *def);
/* Integer option within [min,max]; 0 on success, -1 with err set. */
int kh_conf_int(const kh_conf *c, const char *key, int def, int min, int max, int *out, char *err,
                size_t errlen);
/* All values of a repeated key, in file order; returns how many (<= max). */
size_t kh_conf_all(const kh_conf *c, const char *key, const char **vals, size_t max);

#endif
