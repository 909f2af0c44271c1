/* idconv.h: link codes (符号) and local IDs (団体内統合宛名番号) of one tenant.
 * A library of the middle layer: it never includes anything from gateway/. */
#ifndef KH_IDCONV_H
#define KH_IDCONV_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "kherr.h"

#define IDCONV_LOCAL_ID_MAX 15
#define IDCONV_LINK_CODE_LEN 32 /* hex characters */
#define IDCONV_RESIDENT_CODE_LEN 11

/* A local government code (全国地方公共団体コード: a municipality's JIS X 0402 code, or a
 * prefecture's JIS X 0401 code followed by 000, such as 130001 Tokyo): 6 digits, the last a check
 * digit over the first five (weights 6,5,4,3,2; check = (11 - sum mod 11) mod 10, i.e. remainder 0
 * gives 1 and remainder 1 gives 0). */
bool idconv_municipality_code_valid(const char *code);
/* Any organisation code: 6 characters [0-9A-Z]; all-digit codes (municipalities and
 * prefectures) must pass the check digit. */
bool idconv_org_code_valid(const char *code);
/* Local ID: 1..15 digits. */
bool idconv_local_id_valid(const char *s);
/* Resident-record code: exactly 11 digits. */
bool idconv_resident_code_valid(const char *s);
/* Link code: exactly 32 lowercase hex characters. */
bool idconv_link_code_valid(const char *s);

/* The tenant's link-code table. Transaction convention as in refdb.h: the
 * caller's transaction has already run SET LOCAL ROLE kh_t_<org> and
 * SET LOCAL search_path = t_<org>, kh; these functions use the unqualified
 * table linkcode, never set roles and never commit. Malformed arguments give
 * KH_E_FIELD, database failures KH_E_DB. */

/* Stores (upserts) the link code of a local ID. A link code already held by
 * another local ID is refused by the unique constraint (KH_E_DB). */
kh_err idconv_store(PGconn *c, const char *local_id, const char *link_code);
/* The link code of a local ID, into out (NUL-terminated); KH_E_UNKNOWN_LOCAL_ID if none. */
kh_err idconv_link_of(PGconn *c, const char *local_id, char out[IDCONV_LINK_CODE_LEN + 1]);
/* The local ID of a link code; KH_E_UNKNOWN_LINK_CODE if none, KH_E_INTERNAL if
 * outlen is too small (IDCONV_LOCAL_ID_MAX + 1 always fits). */
kh_err idconv_local_of(PGconn *c, const char *link_code, char *out, size_t outlen);

#endif
