-- Held queries do not wait forever (issue 13). A query held for a
-- responder (自動応答不可) gets a deadline when it arrives: now plus the
-- tenant's hold_deadline_s (hold_policy, 14 days unless the tenant's admin
-- sets another, through the admin API). The PENDING answer tells the asker
-- the deadline (decide_by). A responder decides before it; after it the
-- gateway's outbox scan moves the row to 'expired', records the provision
-- record (answered, outcome 'expired', KH-2011) and sends the asker a
-- deferred answer EXPIRED, which moves the asker's query to 'expired' with
-- its own provision record (asked, 'expired', KH-2011). An asker that hears
-- nothing by decide_by plus the message validity and a minute (the provider's
-- outbox has given up by then) ends the query 'expired' itself.
-- A new deadline applies to queries held from then on: the ones waiting keep
-- the deadline their asker was told.
-- Runs as the tenant role with search_path set to the tenant schema, like 001.
CREATE TABLE IF NOT EXISTS hold_policy (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    hold_deadline_s integer NOT NULL DEFAULT 1209600
                    CHECK (hold_deadline_s BETWEEN 1 AND 7776000),
    set_by          text NULL,
    set_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO hold_policy (one) VALUES (true) ON CONFLICT DO NOTHING;

-- rows held before this migration get the default deadline from now, and so
-- do rows inserted without one (a node not upgraded yet, during a rolling
-- upgrade: its askers are not told the deadline and get the EXPIRED answer
-- when it passes)
ALTER TABLE pending_answer ADD COLUMN IF NOT EXISTS deadline timestamptz NULL;
UPDATE pending_answer SET deadline = now() + interval '1209600 seconds' WHERE deadline IS NULL;
ALTER TABLE pending_answer ALTER COLUMN deadline SET DEFAULT now() + interval '1209600 seconds';
ALTER TABLE pending_answer ALTER COLUMN deadline SET NOT NULL;
CREATE INDEX IF NOT EXISTS pending_answer_deadline ON pending_answer (deadline)
    WHERE state = 'pending';

-- the asking side: the provider's deadline, and the state 'expired'
ALTER TABLE query ADD COLUMN IF NOT EXISTS decide_by timestamptz NULL;
-- (NOT VALID, then VALIDATE: writes go on while the rows are checked)
ALTER TABLE query DROP CONSTRAINT IF EXISTS query_state_check;
ALTER TABLE query ADD CONSTRAINT query_state_check
    CHECK (state IN ('sent', 'answered', 'pending', 'refused', 'expired', 'failed', 'timed_out'))
    NOT VALID;
ALTER TABLE query VALIDATE CONSTRAINT query_state_check;
CREATE INDEX IF NOT EXISTS query_decide_by ON query (decide_by) WHERE state = 'pending';

-- usage: expired counted on both sides (the columns change: drop, create)
DROP FUNCTION IF EXISTS usage_sum(date, date);
DROP FUNCTION IF EXISTS usage_by_day(date, date);
CREATE FUNCTION usage_by_day(p_from date, p_to date)
RETURNS TABLE (day date, asked bigint, asked_provided bigint, asked_not_found bigint,
               asked_withheld bigint, asked_pending bigint, asked_refused bigint,
               asked_expired bigint, asked_failed bigint, answered bigint,
               answered_provided bigint, answered_not_found bigint, answered_withheld bigint,
               held bigint, answered_refused bigint, answered_expired bigint,
               answered_undelivered bigint, rows_registered bigint, bulk_files bigint)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH lo AS (SELECT coalesce(p_from::timestamptz, '-infinity') AS t),
    hi AS (SELECT coalesce(p_to::timestamptz, 'infinity') AS t),
    period AS (SELECT p_from + i AS day FROM generate_series(0, p_to - p_from - 1) AS i),
    pend AS (SELECT DISTINCT msg_id FROM provision_record
              WHERE direction = 'asked' AND outcome = 'pending'),
    rec AS (
        SELECT p.at::date AS day,
               count(*) FILTER (WHERE p.direction = 'asked'
                                  AND (p.outcome = 'pending' OR pend.msg_id IS NULL)) AS asked,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'provided') AS a_pr,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'not_found') AS a_nf,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'withheld') AS a_wh,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'pending') AS a_pe,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'refused') AS a_re,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'expired') AS a_ex,
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'failed') AS a_fa,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'provided') AS r_pr,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'not_found') AS r_nf,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'withheld') AS r_wh,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'held') AS r_he,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'refused') AS r_re,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'expired') AS r_ex,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'undelivered')
                   AS r_un
          FROM provision_record p
          LEFT JOIN pend ON p.direction = 'asked' AND p.outcome <> 'pending'
                        AND pend.msg_id = p.msg_id
         WHERE p.at >= (SELECT t FROM lo) AND p.at < (SELECT t FROM hi)
         GROUP BY 1),
    reg AS (
        SELECT registered_at::date AS day, count(*) AS n FROM replica
         WHERE registered_at >= (SELECT t FROM lo) AND registered_at < (SELECT t FROM hi)
         GROUP BY 1),
    bulk AS (
        SELECT applied_at::date AS day, count(*) AS n FROM bulk_file
         WHERE applied_at >= (SELECT t FROM lo) AND applied_at < (SELECT t FROM hi)
         GROUP BY 1)
    SELECT day, coalesce(rec.asked, 0), coalesce(a_pr, 0), coalesce(a_nf, 0), coalesce(a_wh, 0),
           coalesce(a_pe, 0), coalesce(a_re, 0), coalesce(a_ex, 0), coalesce(a_fa, 0),
           coalesce(r_pr + r_nf + r_wh, 0), coalesce(r_pr, 0), coalesce(r_nf, 0),
           coalesce(r_wh, 0), coalesce(r_he, 0), coalesce(r_re, 0), coalesce(r_ex, 0),
           coalesce(r_un, 0), coalesce(reg.n, 0), coalesce(bulk.n, 0)
      FROM period FULL JOIN rec USING (day) FULL JOIN reg USING (day) FULL JOIN bulk USING (day)
     ORDER BY day
$$;

CREATE FUNCTION usage_sum(p_from date, p_to date)
RETURNS TABLE (asked bigint, asked_provided bigint, asked_not_found bigint,
               asked_withheld bigint, asked_pending bigint, asked_refused bigint,
               asked_expired bigint, asked_failed bigint, answered bigint,
               answered_provided bigint, answered_not_found bigint, answered_withheld bigint,
               held bigint, answered_refused bigint, answered_expired bigint,
               answered_undelivered bigint, rows_registered bigint, bulk_files bigint)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(sum(asked), 0)::bigint, coalesce(sum(asked_provided), 0)::bigint,
           coalesce(sum(asked_not_found), 0)::bigint, coalesce(sum(asked_withheld), 0)::bigint,
           coalesce(sum(asked_pending), 0)::bigint, coalesce(sum(asked_refused), 0)::bigint,
           coalesce(sum(asked_expired), 0)::bigint, coalesce(sum(asked_failed), 0)::bigint,
           coalesce(sum(answered), 0)::bigint, coalesce(sum(answered_provided), 0)::bigint,
           coalesce(sum(answered_not_found), 0)::bigint,
           coalesce(sum(answered_withheld), 0)::bigint, coalesce(sum(held), 0)::bigint,
           coalesce(sum(answered_refused), 0)::bigint, coalesce(sum(answered_expired), 0)::bigint,
           coalesce(sum(answered_undelivered), 0)::bigint,
           coalesce(sum(rows_registered), 0)::bigint, coalesce(sum(bulk_files), 0)::bigint
      FROM usage_by_day(p_from, p_to)
$$;

-- usage_now(): 008's, and the held queries whose deadline is less than a day away
DROP FUNCTION IF EXISTS usage_now();
CREATE FUNCTION usage_now()
RETURNS TABLE (held_waiting bigint, outbox_queued bigint, outbox_failed bigint,
               queries_sent bigint, queries_pending bigint, queries_timed_out bigint,
               held_expiring bigint)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT (SELECT count(*) FROM pending_answer WHERE state = 'pending'),
           (SELECT count(*) FROM outbox WHERE state = 'queued'),
           (SELECT count(*) FROM outbox WHERE state = 'failed'),
           (SELECT count(*) FROM query WHERE state = 'sent'),
           (SELECT count(*) FROM query WHERE state = 'pending'),
           (SELECT count(*) FROM query WHERE state = 'timed_out'),
           (SELECT count(*) FROM pending_answer
             WHERE state = 'pending' AND deadline < now() + interval '1 day')
$$;
