-- The chain trigger in one statement (issue 10). Each record appended to a
-- chain (006) read the chain's head with SELECT ... FOR UPDATE and then wrote
-- it back with UPDATE: two statements inside the trigger, the most costly
-- part of every record insert. One UPDATE now takes the head's row lock,
-- moves it on and returns what the new row needs: SET expressions all see
-- the row as it was, so prev_hash = hash keeps the previous head. Under READ
-- COMMITTED a concurrent append makes the UPDATE wait and then re-evaluate
-- against the newest head, so appends stay serialised per chain exactly as
-- before. The rows, their canonical text and their hashes are unchanged:
-- existing chains and signed heads verify as they did.
--
-- chain_head gains prev_hash: the hash before the last append (what that
-- row's prev_hash holds). Readers name their columns (khctl, gw_chain).
-- Runs as the keeper (owner of chain_head and the functions) and ends as the
-- tenant role again, like 006.
SELECT 'kh_records_' || substr(:'role', 6) AS keeper, quote_ident(:'schema') AS s_ident \gset

RESET ROLE;
SET LOCAL ROLE :"keeper";
ALTER TABLE chain_head ADD COLUMN IF NOT EXISTS prev_hash bytea;

SELECT replace(replace($fn$
CREATE OR REPLACE FUNCTION @S@.chain_append_@T@() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    LOOP
        UPDATE @S@.chain_head
           SET prev_hash = hash, seq = seq + 1,
               hash = sha256(hash || convert_to(@S@.chain_canonical_@T@(NEW), 'UTF8'))
         WHERE chain = '@T@'
        RETURNING seq, prev_hash, hash INTO NEW.seq, NEW.prev_hash, NEW.hash;
        EXIT WHEN FOUND;
        INSERT INTO @S@.chain_head (chain) VALUES ('@T@') ON CONFLICT DO NOTHING;
    END LOOP;
    RETURN NEW;
END
$$
$fn$, '@S@', :'s_ident'), '@T@', t)
  FROM unnest(ARRAY['provision_record', 'audit_log', 'access_record']) AS t \gexec

SET LOCAL ROLE :"role";
