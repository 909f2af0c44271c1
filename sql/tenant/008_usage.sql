-- Usage counts (issue 5): what a tenant asked, answered, held and
-- registered, by day, for cost sharing (admin API) and for the metrics
-- (gateway/gw_usage.c). Nothing is counted twice and nothing is kept beside
-- the records: every count is read from the tenant's own append-only
-- records, so it cannot drift from what happened. Days are days of the
-- database's time zone (TimeZone, Asia/Tokyo in tools/khdb's cluster).
--
-- From provision_record (one row per outcome, gw_record):
--   direction 'asked' (queries this tenant asked), outcome provided,
--   not_found, withheld (an answer came), pending (the provider holds it for
--   a responder), refused (by this gateway's checks, the router, the
--   provider, or the provider's responder), failed (not delivered while
--   valid, or an answer that did not verify). A held query has two records:
--   'pending', then the outcome of the deferred answer under the same
--   msg_id. asked counts each query once, on the day of its first record:
--   every asked record but those that conclude a pending one.
--   direction 'answered' (queries put to this tenant): provided, not_found,
--   withheld (answered: immediately, or after a responder approved a held
--   query), held (waiting for a responder), refused (by a responder),
--   undelivered (a deferred answer given up when it expired: the decision's
--   own record still counts it as answered or refused). A held query counts
--   as held on the day it came and as answered or refused on the day of the
--   decision. Queries the answering gateway refuses before
--   reading anything (legal basis, replay...) leave no provision record
--   (they are access records) and are not counted here.
-- From replica: rows registered (every version: online, bulk, deletions) by
-- registered_at; from bulk_file: files applied by applied_at.
--
-- Plain SQL on provision_record: the same whether it is one table or
-- partitioned by month on `at` (006_chains).

-- Indexes, made as the owner of each table (provision_record belongs to the
-- tenant role, or from 006_chains on to the tenant's record keeper, which
-- the tenant role cannot act as: hence the superuser's RESET ROLE). BRIN on
-- the times: the tables are appended to in time order, the index is a few
-- pages and costs a bulk load nearly nothing (002 keeps btrees off replica).
RESET ROLE;
SELECT format('SET LOCAL ROLE %I', tableowner) FROM pg_tables
 WHERE schemaname = :'schema' AND tablename = 'provision_record' \gexec
CREATE INDEX IF NOT EXISTS provision_record_at_brin ON provision_record USING brin (at);
-- the pending records, small: which asked records conclude a held query
CREATE INDEX IF NOT EXISTS provision_record_asked_pending ON provision_record (msg_id)
    WHERE direction = 'asked' AND outcome = 'pending';
RESET ROLE;
SET LOCAL ROLE :"role";
CREATE INDEX IF NOT EXISTS replica_registered_brin ON replica USING brin (registered_at);
-- the metrics' gauge of undeliverable deferred answers (queued ones have outbox_due)
CREATE INDEX IF NOT EXISTS outbox_failed ON outbox (created_at) WHERE state = 'failed';

-- usage_by_day(from, to): the counts of the days in [from, to), one row per
-- day: every day of the period if both ends are given (zeros included),
-- else (an end NULL: unbounded) only the days that have any.
CREATE OR REPLACE FUNCTION usage_by_day(p_from date, p_to date)
RETURNS TABLE (day date, asked bigint, asked_provided bigint, asked_not_found bigint,
               asked_withheld bigint, asked_pending bigint, asked_refused bigint,
               asked_failed bigint, answered bigint, answered_provided bigint,
               answered_not_found bigint, answered_withheld bigint, held bigint,
               answered_refused bigint, answered_undelivered bigint, rows_registered bigint,
               bulk_files bigint)
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
               count(*) FILTER (WHERE p.direction = 'asked' AND p.outcome = 'failed') AS a_fa,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'provided') AS r_pr,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'not_found') AS r_nf,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'withheld') AS r_wh,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'held') AS r_he,
               count(*) FILTER (WHERE p.direction = 'answered' AND p.outcome = 'refused') AS r_re,
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
           coalesce(a_pe, 0), coalesce(a_re, 0), coalesce(a_fa, 0),
           coalesce(r_pr + r_nf + r_wh, 0), coalesce(r_pr, 0), coalesce(r_nf, 0),
           coalesce(r_wh, 0), coalesce(r_he, 0), coalesce(r_re, 0), coalesce(r_un, 0),
           coalesce(reg.n, 0), coalesce(bulk.n, 0)
      FROM period FULL JOIN rec USING (day) FULL JOIN reg USING (day) FULL JOIN bulk USING (day)
     ORDER BY day
$$;

-- usage_sum(from, to): the same counts over all of [from, to), in one row.
CREATE OR REPLACE FUNCTION usage_sum(p_from date, p_to date)
RETURNS TABLE (asked bigint, asked_provided bigint, asked_not_found bigint,
               asked_withheld bigint, asked_pending bigint, asked_refused bigint,
               asked_failed bigint, answered bigint, answered_provided bigint,
               answered_not_found bigint, answered_withheld bigint, held bigint,
               answered_refused bigint, answered_undelivered bigint, rows_registered bigint,
               bulk_files bigint)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT coalesce(sum(asked), 0)::bigint, coalesce(sum(asked_provided), 0)::bigint,
           coalesce(sum(asked_not_found), 0)::bigint, coalesce(sum(asked_withheld), 0)::bigint,
           coalesce(sum(asked_pending), 0)::bigint, coalesce(sum(asked_refused), 0)::bigint,
           coalesce(sum(asked_failed), 0)::bigint, coalesce(sum(answered), 0)::bigint,
           coalesce(sum(answered_provided), 0)::bigint,
           coalesce(sum(answered_not_found), 0)::bigint,
           coalesce(sum(answered_withheld), 0)::bigint, coalesce(sum(held), 0)::bigint,
           coalesce(sum(answered_refused), 0)::bigint,
           coalesce(sum(answered_undelivered), 0)::bigint,
           coalesce(sum(rows_registered), 0)::bigint, coalesce(sum(bulk_files), 0)::bigint
      FROM usage_by_day(p_from, p_to)
$$;

-- usage_now(): what is open at this moment, for the metrics' gauges: held
-- queries waiting for a responder, deferred answers queued or given up, and
-- this tenant's own queries still sent, pending or timed out.
CREATE OR REPLACE FUNCTION usage_now()
RETURNS TABLE (held_waiting bigint, outbox_queued bigint, outbox_failed bigint,
               queries_sent bigint, queries_pending bigint, queries_timed_out bigint)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT (SELECT count(*) FROM pending_answer WHERE state = 'pending'),
           (SELECT count(*) FROM outbox WHERE state = 'queued'),
           (SELECT count(*) FROM outbox WHERE state = 'failed'),
           (SELECT count(*) FROM query WHERE state = 'sent'),
           (SELECT count(*) FROM query WHERE state = 'pending'),
           (SELECT count(*) FROM query WHERE state = 'timed_out')
$$;
