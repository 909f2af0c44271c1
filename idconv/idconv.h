/* idconv.h: link codes (符号) and local IDs (団体内統合宛名番号) of one tenant.
 * A library of the middle layer: it uses the core library (gateway/core/) and
 * never the daemon (gateway/daemon/); see .may_include. */
#ifndef KH_IDCONV_H
#define KH_IDCONV_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "kherr.h"
#include "khid.h"

/* The formats of local IDs, link codes and organisation codes are checked
 * by khid.h (gateway/core), the one home of identifier rules. */

/* The tenant's link-code table. Transaction convention as in refdb.h: the
 * caller's transaction has already run SET LOCAL ROLE kh_t_<org> and
 * SET LOCAL search_path = t_<org>, kh; these functions use the unqualified
 * table linkcode, never set roles and never commit. Malformed arguments give
 * KH_E_FIELD, database failures KH_E_DB. */

/* Stores (upserts) the link code of a local ID. A link code already held by
 * another local ID is refused by the unique constraint: KH_E_LINK_TAKEN (the
 * transaction is then aborted). Other failures as kh_db_err says. */
KH_MUST_CHECK kh_err idconv_store(PGconn *c, const char *local_id, const char *link_code);
/* The link code of a local ID, into out (NUL-terminated); KH_E_UNKNOWN_LOCAL_ID if none. */
KH_MUST_CHECK kh_err idconv_link_of(PGconn *c, const char *local_id,
                                    char out[KH_ID_LINK_CODE_LEN + 1]);
/* The local ID of a link code; KH_E_UNKNOWN_LINK_CODE if none, KH_E_INTERNAL if
 * outlen is too small (KH_ID_LOCAL_ID_MAX + 1 always fits). */
KH_MUST_CHECK kh_err idconv_local_of(PGconn *c, const char *link_code, char *out, size_t outlen);

#endif
