/* khjson.h: a small strict JSON module for the admin API (there is no JSON
 * library in the stack).
 *
 * The parser reads request bodies: objects, arrays, strings (escapes
 * including \uXXXX and surrogate pairs, decoded to UTF-8), integers (int64
 * only: no fractions, no exponents), true, false and null. It refuses
 * anything else with the byte offset and a reason: invalid UTF-8 (overlong
 * forms, encoded surrogates, code points above U+10FFFF, truncated
 * sequences), lone surrogates, \u0000 (values become C strings), raw control
 * characters in strings, leading zeros, trailing commas, duplicate keys in
 * an object, nesting deeper than the limit, more input than the size limit,
 * and anything after the value but white space.
 *
 * The writer produces JSON with correct escaping into a bounded buffer;
 * bytes that are not valid UTF-8 are written as U+FFFD, so its output is
 * always valid JSON.
 *
 * String values are wiped when a tree is freed: request bodies carry
 * passwords and personal data. */
#ifndef KH_JSON_H
#define KH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { KHJ_NULL, KHJ_BOOL, KHJ_INT, KHJ_STR, KHJ_ARR, KHJ_OBJ } khj_type;

typedef struct khj_val khj_val;

#define KHJ_DEFAULT_DEPTH 16
#define KHJ_DEFAULT_MAX (64u * 1024)

typedef struct {
    size_t offset; /* byte offset of the problem in the input */
    char msg[120]; /* what is wrong, for the client; never quotes the input */
} khj_error;

/* Parses exactly one JSON value from buf[0..len). max_len: refuse longer
 * input (0: KHJ_DEFAULT_MAX); max_depth: nesting of arrays and objects
 * (0: KHJ_DEFAULT_DEPTH). NULL with *err filled on any error. */
khj_val *khj_parse(const char *buf, size_t len, size_t max_len, unsigned max_depth, khj_error *err);
/* Frees a tree, wiping every string in it (NULL ok). */
void khj_free(khj_val *v);

khj_type khj_type_of(const khj_val *v);
const char *khj_type_name(khj_type t);
/* Scalars: the value, or false/0/NULL if v is of another type. A string is
 * NUL-terminated and holds no NUL; khj_strlen gives its length in bytes. */
bool khj_bool(const khj_val *v);
int64_t khj_int(const khj_val *v);
const char *khj_str(const khj_val *v);
size_t khj_strlen(const khj_val *v);
/* Arrays and objects: number of elements / members (0 for other types). */
size_t khj_len(const khj_val *v);
/* Element i of an array, or value of member i of an object (NULL if out of range). */
const khj_val *khj_at(const khj_val *v, size_t i);
/* Key of member i of an object (NULL if out of range or not an object). */
const char *khj_key_at(const khj_val *v, size_t i);
/* The member named key of an object, or NULL. */
const khj_val *khj_get(const khj_val *obj, const char *key);
/* The member's string value, or NULL if absent or not a string. */
const char *khj_get_str(const khj_val *obj, const char *key);
/* True and *out set if the member is present and an integer. */
bool khj_get_int(const khj_val *obj, const char *key, int64_t *out);

/* --- writer --- */

typedef struct {
    char *buf;
    size_t len, cap, max;
    bool failed;         /* out of memory or over max: finish returns NULL */
    unsigned depth;      /* open arrays/objects */
    uint64_t need_comma; /* bit d: the container at depth d has an element */
    uint64_t is_obj;     /* bit d: the container at depth d is an object */
    bool after_key;      /* a key was written; its value comes next */
} khj_writer;

/* max: the largest output accepted (0: 16 MiB). */
void khjw_init(khj_writer *w, size_t max);
void khjw_obj(khj_writer *w);     /* { */
void khjw_obj_end(khj_writer *w); /* } */
void khjw_arr(khj_writer *w);     /* [ */
void khjw_arr_end(khj_writer *w); /* ] */
void khjw_key(khj_writer *w, const char *key);
void khjw_str(khj_writer *w, const char *s); /* NULL writes null */
void khjw_strn(khj_writer *w, const char *s, size_t n);
void khjw_int(khj_writer *w, int64_t v);
void khjw_bool(khj_writer *w, bool b);
void khjw_null(khj_writer *w);
/* A value that is already JSON (e.g. built by PostgreSQL's json functions):
 * it is checked with the parser (depth 64) and written as is, or the
 * writer fails. */
void khjw_raw(khj_writer *w, const char *json, size_t n);
/* Convenience: key + value. */
void khjw_kstr(khj_writer *w, const char *key, const char *s);
void khjw_kint(khj_writer *w, const char *key, int64_t v);
void khjw_kbool(khj_writer *w, const char *key, bool b);
/* The NUL-terminated output (ownership passes to the caller, free()), or
 * NULL if anything failed or containers are still open. The writer is
 * reset either way. */
char *khjw_finish(khj_writer *w, size_t *len);
/* Frees the buffer of an unfinished writer, wiping it. */
void khjw_discard(khj_writer *w);

#endif
