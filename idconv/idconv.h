/* idconv.h: link codes (符号) and local IDs (団体内統合宛名番号) of one tenant.
 * A library of the middle layer: it never includes anything from gateway/. */
#ifndef KH_IDCONV_H
#define KH_IDCONV_H

#include <stdbool.h>
#include <stddef.h>

#define IDCONV_LOCAL_ID_MAX 15
#define IDCONV_LINK_CODE_LEN 32 /* hex characters */
#define IDCONV_RESIDENT_CODE_LEN 11

/* A municipality code: 6 digits, the last a check digit over the first five
 * (weights 6,5,4,3,2; check = (11 - sum mod 11) mod 10). */
bool idconv_municipality_code_valid(const char *code);
/* Any organisation code: 6 characters [0-9A-Z]; municipalities pass the check digit. */
bool idconv_org_code_valid(const char *code);
/* Local ID: 1..15 digits. */
bool idconv_local_id_valid(const char *s);
/* Resident-record code: exactly 11 digits. */
bool idconv_resident_code_valid(const char *s);
/* Link code: exactly 32 lowercase hex characters. */
bool idconv_link_code_valid(const char *s);

#endif
