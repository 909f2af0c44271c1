-- "What did we provide on date D?": every item an answer carried, with the
-- exact version and values, one row per (record, item). provision_record
-- names the versions (provided: {"TK001": 123}); replica keeps every version.
CREATE OR REPLACE VIEW provision_detail AS
SELECT p.id AS record_id, p.at, p.msg_id, p.direction, p.counterpart, p.procedure,
       p.local_id, p.staff_id, i.key AS item_code, (i.value #>> '{}')::bigint AS version,
       r.effective_from, r.data
FROM provision_record p
CROSS JOIN LATERAL jsonb_each(coalesce(p.provided, '{}'::jsonb)) AS i
LEFT JOIN replica r
       ON p.direction = 'answered' AND r.local_id = p.local_id AND r.item_code = i.key
      AND r.version = (i.value #>> '{}')::bigint;
