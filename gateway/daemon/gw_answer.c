/* gw_answer.c: see gw_answer.h. */
#include "gw_answer.h"
#include "gw_record.h"

#include "khcrypto.h"
#include "refdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_answer_withhold(gw_answer *a, const char *item)
{
    for (size_t w = 0; w < a->nwithheld; w++)
        if (strcmp(a->withheld[w], item) == 0)
            return;
    for (size_t k = 0; k < a->nitems; k++)
        if (strcmp(a->items[k], item) == 0 && a->nwithheld < KH_MAX_ITEMS)
            a->withheld[a->nwithheld++] = a->items[k];
}

kh_err gw_answer_flags(PGconn *c, gw_answer *a, const char *local_id, char *hold_ids, size_t hlen)
{
    char lit[KH_MAX_ITEMS * (KH_CODE_MAX + 1) + 4];
    gw_codes_literal(a->items, a->nitems, lit, sizeof lit);
    const char *p[3] = {local_id[0] ? local_id : NULL, a->procedure, lit};
    PGresult *r = kh_db_exec(c,
                             "SELECT id, kind, item_code FROM answer_flag WHERE revoked_at IS NULL "
                             "AND valid_from <= current_date "
                             "AND (valid_to IS NULL OR valid_to > current_date) "
                             "AND (local_id IS NULL OR local_id = $1) "
                             "AND (procedure IS NULL OR procedure = $2) "
                             "AND (item_code IS NULL OR item_code = ANY ($3::text[])) ORDER BY id",
                             3, p);
    if (r == NULL)
        return KH_E_DB;
    size_t pos = (size_t)snprintf(hold_ids, hlen, "{");
    bool any_hold = false;
    for (int i = 0; i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 1), "hold") == 0) {
            /* ids as far as they fit (a bigint is at most 20 digits): the
             * hold applies whatever the count */
            if (pos + 24 < hlen)
                pos += (size_t)snprintf(hold_ids + pos, hlen - pos, "%s%s", any_hold ? "," : "",
                                        PQgetvalue(r, i, 0));
            any_hold = true;
        } else if (PQgetisnull(r, i, 2)) { /* non-disclosure of every item */
            for (size_t k = 0; k < a->nitems; k++)
                gw_answer_withhold(a, a->items[k]);
        } else {
            gw_answer_withhold(a, PQgetvalue(r, i, 2));
        }
    }
    PQclear(r);
    snprintf(hold_ids + pos, hlen - pos, "}");
    if (!any_hold)
        hold_ids[0] = '\0';
    return KH_OK;
}

static bool is_withheld(const gw_answer *a, const char *item)
{
    for (size_t w = 0; w < a->nwithheld; w++)
        if (strcmp(a->withheld[w], item) == 0)
            return true;
    return false;
}

/* Minimisation: drops every field the legal-basis row does not allow, so
 * the answer never carries it, whatever the reference copy holds. */
static void minimise(gw_answer *a)
{
    for (size_t i = 0; i < a->ndata; i++) {
        Kh__ItemData *d = a->data[i];
        size_t keep = 0;
        for (size_t j = 0; j < d->n_fields; j++) {
            Kh__Field *f = d->fields[j];
            if (kh_dir_field_allowed(a->dir, a->row, d->item_code, f->name)) {
                d->fields[keep++] = f;
                continue;
            }
            khc_wipe(f->value, strlen(f->value));
            free(f->name);
            free(f->value);
            free(f);
        }
        d->n_fields = keep;
    }
}

kh_err gw_answer_read(PGconn *c, gw_answer *a, const char *local_id, const char *as_of, char *msg,
                      size_t msglen)
{
    if (local_id[0] != '\0') {
        const char *want[KH_MAX_ITEMS];
        size_t nwant = 0;
        for (size_t i = 0; i < a->nitems && nwant < KH_MAX_ITEMS; i++)
            if (!is_withheld(a, a->items[i]))
                want[nwant++] = a->items[i];
        if (nwant > 0) {
            kh_err e =
                refdb_read_items(c, local_id, want, nwant, as_of, &a->data, &a->ndata, msg, msglen);
            if (e != KH_OK)
                return e;
        }
        minimise(a);
    }
    a->result = a->ndata ? "FOUND" : a->nwithheld == a->nitems ? "WITHHELD" : "NOT_FOUND";
    a->outcome = a->ndata ? "provided" : a->nwithheld ? "withheld" : "not_found";
    return KH_OK;
}

kh_err gw_answer_seal(gw_answer *a, const char *answer_state, const char *code)
{
    const kh_org *asker = kh_dir_org(a->dir, a->asker);
    Kh__Header h;
    Kh__AnswerBody b = KH__ANSWER_BODY__INIT;
    uint8_t *body = NULL;
    size_t blen = 0;
    if (asker == NULL || kh_header_init(&h, a->msg_id, KH__MSG_TYPE__ANSWER, a->t->id.code,
                                        a->asker, a->t->id.code, G.ttl) != 0)
        return KH_E_INTERNAL;
    ProtobufCBinaryData irt = {KH_MSG_ID_LEN, a->in_reply_to};
    h.procedure = (char *)a->procedure;
    h.items = (char **)a->items;
    h.n_items = a->nitems;
    h.subject = (char *)a->subject;
    h.in_reply_to = irt;
    h.answer_state = (char *)answer_state;
    b.msg_id = h.msg_id;
    b.in_reply_to = irt;
    b.sender = a->t->id.code;
    b.recipient = (char *)a->asker;
    b.procedure = (char *)a->procedure;
    b.items = (char **)a->items;
    b.n_items = a->nitems;
    b.result = (char *)a->result;
    b.data = a->data;
    b.n_data = a->ndata;
    b.withheld = a->withheld;
    b.n_withheld = a->nwithheld;
    b.deferred = strcmp(answer_state, "DEFERRED") == 0;
    b.code = (char *)(code ? code : "");
    b.decide_by = a->decide_by;
    int rc = kh_pb_pack(&b.base, &body, &blen);
    if (rc == 0)
        rc = kh_env_seal(&h, &a->t->id, body, blen, asker->enc_cert, &a->sealed, &a->sealedlen);
    khc_free_secret(body, blen);
    return rc == 0 ? KH_OK : KH_E_INTERNAL;
}

void gw_answer_clear(gw_answer *a)
{
    kh_items_wipe(a->data, a->ndata);
    refdb_items_free(a->data, a->ndata);
    a->data = NULL;
    a->ndata = 0;
    free(a->sealed);
    a->sealed = NULL;
    a->sealedlen = 0;
}
