/* khid.h: the formats of the identifiers that cross any boundary (a wire, a
 * file, a command line, a configuration file), one strict validator per
 * kind. Every boundary calls these and nothing else: a rule written once
 * cannot be enforced differently in two places. Each takes a C string (NULL
 * is never valid) and looks at every byte up to its NUL: a caller that got
 * the string with a length must first refuse an embedded NUL (kh_id_text). */
#ifndef KH_ID_H
#define KH_ID_H

#include <stdbool.h>
#include <stddef.h>

#define KH_ID_ORG_LEN 6            /* organisation code */
#define KH_ID_LOCAL_ID_MAX 15      /* 団体内統合宛名番号, digits */
#define KH_ID_RESIDENT_CODE_LEN 11 /* resident-record code, digits */
#define KH_ID_LINK_CODE_LEN 32     /* 符号 as this project writes it: lowercase hex */

/* A local government code (全国地方公共団体コード: a municipality's JIS X 0402
 * code, or a prefecture's JIS X 0401 code followed by 000, such as 130001
 * Tokyo): 6 digits, the last a check digit over the first five (weights
 * 6,5,4,3,2; check = (11 - sum mod 11) mod 10, i.e. remainder 0 gives 1 and
 * remainder 1 gives 0). */
bool kh_id_municipality(const char *s);
/* Any organisation code: 6 characters [0-9A-Z]; all-digit codes
 * (municipalities and prefectures) must pass the check digit. */
bool kh_id_org(const char *s);
/* Local ID: 1..15 digits. */
bool kh_id_local_id(const char *s);
/* Resident-record code: exactly 11 digits. */
bool kh_id_resident_code(const char *s);
/* Link code: exactly 32 lowercase hex characters. */
bool kh_id_link_code(const char *s);
/* A catalogue code (procedure JT001, item TK001, legal-basis row):
 * [0-9A-Z]{1,max}. */
bool kh_id_code(const char *s, size_t max);
/* A name chosen by people (staff ID, business-system ID, host name):
 * [A-Za-z0-9_-]{1,max}. */
bool kh_id_token(const char *s, size_t max);
/* Exactly len lowercase hex digits (message ids and handles: 32). */
bool kh_id_hex(const char *s, size_t len);
/* A calendar date YYYYMMDD (years 0001-9999, real days only: no 20230231). */
bool kh_id_date(const char *s);
/* The same date written YYYY-MM-DD (the admin API's form). */
bool kh_id_iso_date(const char *s);
/* len bytes that are text: valid UTF-8 without a NUL. A string received
 * with a length (protobuf, JSON, a URL) is usable as a C string only then. */
bool kh_id_text(const char *s, size_t len);
/* Where s (len bytes) stops being text: the offset of its first NUL or
 * invalid UTF-8 byte, or -1 if it is all text. */
long kh_text_bad(const char *s, size_t len);
/* Length of the valid UTF-8 sequence at p (1-4), or 0 if it is not one: no
 * overlong forms, no encoded surrogates, nothing above U+10FFFF. */
size_t kh_utf8_seq(const unsigned char *p, const unsigned char *end);

#endif
