-- Record chains, part two (issue 5). audit_log and access_record become
-- append-only hash chains exactly like provision_record (004); the three
-- record tables are partitioned by month on `at`; record_retain() removes
-- whole months past the retention period and says so in the audit log; and
-- the records change hands, so that the gateway can append to them and read
-- them but no longer change, remove or drop them, even as the schema's owner.
--
-- Roles (per tenant <org>; sql/README.md says more):
--   kh_records_<org>  NOLOGIN, no members, nobody's member: owns the schema,
--                     the three record tables and their partitions,
--                     chain_head, chain_signature and the functions below.
--                     It acts only through those functions.
--   kh_t_<org>        the tenant role the gateway switches to: keeps its other
--                     tables and USAGE, CREATE on the schema; SELECT, INSERT
--                     on the record tables; SELECT on chain_head; SELECT,
--                     INSERT on chain_signature; EXECUTE
--                     record_partitions_ensure. No UPDATE, DELETE, TRUNCATE,
--                     no ALTER or DROP of a record table or partition.
--   kh_auditor_<org>  NOLOGIN: SELECT on the record tables, chain_head and
--                     chain_signature (what khctl verify and export read).
--   kh_retention      NOLOGIN, one per cluster: EXECUTE record_retain of
--                     every tenant, and a member of every kh_auditor_<org>.
-- Creating roles and handing objects to kh_records_<org> needs the migrating
-- superuser (khdb's session user): this file does that part after RESET ROLE,
-- works as kh_records_<org> for the rest, and ends as the tenant role again.
--
-- Every function that runs as kh_records_<org> has search_path = pg_catalog,
-- pg_temp (or qualifies every name) and names the tenant's objects with their
-- schema: the tenant role may create objects in the schema, and none of them
-- can be picked up by a function that runs with the keeper's rights, nor by
-- an auditor's or superuser's khctl. The bodies are therefore built
-- here with the schema's name put in (@S@ as an identifier, @SL@ as a literal,
-- @K@ the keeper's name as a literal) and run with \gexec.
--
-- Partitions: one per UTC month, named <table>_yYYYYmMM, plus a DEFAULT
-- partition <table>_default so that an insert never fails for want of a
-- partition. record_partitions_ensure(months_ahead) creates the months from
-- the current one to months_ahead ahead and moves rows that landed in the
-- default partition into their month; the gateway calls it periodically and
-- this migration calls it once. Indexes on partitioned tables must include
-- the partition key, so the primary key is (id, at) and seq has a plain
-- (not unique) index: the trigger keeps seq unique, khctl verify checks it.
--
-- The conversion keeps every row: provision_record rows are copied with their
-- seq, prev_hash and hash (their canonical bytes are unchanged, so existing
-- chains and signed heads still verify); rows already in audit_log and
-- access_record are chained in id order as they are copied.

SELECT 'kh_records_' || substr(:'role', 6) AS keeper,
       'kh_auditor_' || substr(:'role', 6) AS auditor,
       quote_ident(:'schema') AS s_ident, quote_literal(:'schema') AS s_lit,
       quote_literal('kh_records_' || substr(:'role', 6)) AS k_lit \gset

-- 1. As the migrating superuser: roles, the schema and the chain tables change hands.
RESET ROLE;
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY[:'keeper', :'auditor', 'kh_retention']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
GRANT :"auditor" TO kh_retention;
ALTER SCHEMA :"schema" OWNER TO :"keeper";
GRANT USAGE, CREATE ON SCHEMA :"schema" TO :"role";
GRANT USAGE ON SCHEMA :"schema" TO :"auditor";
-- (their id sequences follow the tables)
ALTER TABLE provision_record OWNER TO :"keeper";
ALTER TABLE audit_log OWNER TO :"keeper";
ALTER TABLE access_record OWNER TO :"keeper";
ALTER TABLE chain_head OWNER TO :"keeper";
ALTER TABLE chain_signature OWNER TO :"keeper";

-- provision_detail (003) reads provision_record: it is dropped with the old
-- table and made again, from this very definition, on the new one.
SELECT pg_get_viewdef('provision_detail'::regclass) AS provision_detail_def \gset

-- 2. As the keeper: the old tables step aside, the partitioned ones take their names.
SET LOCAL ROLE :"keeper";
ALTER TABLE provision_record RENAME TO provision_record_unpartitioned;
ALTER INDEX provision_record_pkey RENAME TO provision_record_unpartitioned_pkey;
DROP INDEX provision_record_local_id, provision_record_seq;
ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER INDEX audit_log_pkey RENAME TO audit_log_unpartitioned_pkey;
ALTER TABLE audit_log_unpartitioned ADD COLUMN seq bigint, ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;
ALTER TABLE access_record RENAME TO access_record_unpartitioned;
ALTER INDEX access_record_pkey RENAME TO access_record_unpartitioned_pkey;
ALTER TABLE access_record_unpartitioned ADD COLUMN seq bigint, ADD COLUMN prev_hash bytea,
    ADD COLUMN hash bytea;

-- Same columns in the same order, defaults (the same id sequences), NOT NULL and CHECKs.
CREATE TABLE provision_record
    (LIKE provision_record_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (at);
ALTER TABLE provision_record ADD PRIMARY KEY (id, at);
CREATE INDEX provision_record_seq ON provision_record (seq);
CREATE INDEX provision_record_local_id ON provision_record (local_id, at);
ALTER SEQUENCE provision_record_id_seq OWNED BY provision_record.id;

CREATE TABLE audit_log
    (LIKE audit_log_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (at);
ALTER TABLE audit_log ADD PRIMARY KEY (id, at);
CREATE INDEX audit_log_seq ON audit_log (seq);
-- khctl verify and record_retain look up a chain's latest retention record
CREATE INDEX audit_log_retention ON audit_log (target, seq) WHERE action = 'record_retention';
ALTER SEQUENCE audit_log_id_seq OWNED BY audit_log.id;

CREATE TABLE access_record
    (LIKE access_record_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (at);
ALTER TABLE access_record ADD PRIMARY KEY (id, at);
CREATE INDEX access_record_seq ON access_record (seq);
ALTER SEQUENCE access_record_id_seq OWNED BY access_record.id;

GRANT SELECT, INSERT ON provision_record, audit_log, access_record TO :"role";
GRANT USAGE ON SEQUENCE provision_record_id_seq, audit_log_id_seq, access_record_id_seq
    TO :"role";
GRANT SELECT ON chain_head TO :"role";
GRANT SELECT, INSERT ON chain_signature TO :"role";
GRANT SELECT ON provision_record, audit_log, access_record, chain_head, chain_signature
    TO :"auditor";

-- 3. Canonical text of a row: a jsonb object of every column but seq,
-- prev_hash and hash, times in UTC. provision_record's is the one of 004,
-- byte for byte. Every name in them is qualified with pg_catalog instead of a
-- SET search_path, which keeps them safe from objects the tenant role creates
-- and lets PostgreSQL inline them into khctl's reads (verify runs faster).
DROP VIEW provision_detail;
DROP FUNCTION chain_canonical_provision_record(provision_record_unpartitioned);
SELECT replace(replace(replace($fn$
CREATE FUNCTION @S@.chain_canonical_@T@(r @S@.@T@)
RETURNS pg_catalog.text LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.jsonb_build_object(
        'id', r.id,
        'at', pg_catalog.to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        @COLUMNS@)::pg_catalog.text
$$
$fn$, '@S@', :'s_ident'), '@T@', t), '@COLUMNS@', columns)
FROM (VALUES
    ('provision_record', $c$'msg_id', r.msg_id, 'direction', r.direction, 'counterpart', r.counterpart,
        'procedure', r.procedure, 'items', pg_catalog.to_jsonb(r.items), 'local_id', r.local_id,
        'staff_id', r.staff_id, 'outcome', r.outcome, 'code', r.code,
        'provided', r.provided$c$),
    ('audit_log', $c$'operator', r.operator, 'action', r.action, 'target', r.target,
        'detail', r.detail, 'outcome', r.outcome, 'code', r.code$c$),
    ('access_record', $c$'msg_id', r.msg_id, 'direction', r.direction, 'actor', r.actor,
        'operation', r.operation, 'staff_id', r.staff_id, 'procedure', r.procedure,
        'items', pg_catalog.to_jsonb(r.items), 'decision', r.decision, 'code', r.code$c$))
    AS c (t, columns) \gexec

-- 4. Append only. Nobody but the keeper may delete a row, and the keeper does
-- only to move rows out of a default partition into their month (the rows
-- are inserted into the month's table first, unchanged). Privileges already
-- stop the tenant role; this also stops a superuser's slip.
SELECT replace(replace($fn$
CREATE FUNCTION @S@.record_refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND current_user = @K@ THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only', TG_ARGV[0] USING ERRCODE = 'insufficient_privilege';
END
$$
$fn$, '@S@', :'s_ident'), '@K@', :'k_lit') \gexec

-- Only record_retain (running as the keeper) writes retention records: khctl
-- verify takes the start of a chain from them.
SELECT replace(replace($fn$
CREATE FUNCTION @S@.audit_log_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.action = 'record_retention' AND current_user <> @K@ THEN
        RAISE EXCEPTION 'only record_retain() writes record_retention entries'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$
$fn$, '@S@', :'s_ident'), '@K@', :'k_lit') \gexec

-- 5. Partitions. record_partition_add(table, t) creates the partition of t's
-- UTC month unless it exists; rows of that month waiting in the default
-- partition are moved into it first (else PostgreSQL refuses the new
-- partition). Internal: called by the two functions after it, as the keeper.
SELECT replace(replace($fn$
CREATE FUNCTION @S@.record_partition_add(p_table text, p_at timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET timezone = 'UTC' AS $$
DECLARE
    lo constant timestamptz := date_trunc('month', p_at);
    hi constant timestamptz := date_trunc('month', p_at) + interval '1 month';
    part constant text := p_table || to_char(date_trunc('month', p_at), '"_y"YYYY"m"MM');
    def constant text := p_table || '_default';
    waiting boolean;
BEGIN
    IF p_table NOT IN ('provision_record', 'access_record', 'audit_log') THEN
        RAISE EXCEPTION 'not a record table: %', p_table;
    END IF;
    IF to_regclass(format('%I.%I', @SL@, part)) IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_inherits
                        WHERE inhrelid = format('%I.%I', @SL@, part)::regclass
                          AND inhparent = format('%I.%I', @SL@, p_table)::regclass) THEN
            RAISE EXCEPTION '%.% exists and is not a partition of %', @SL@, part, p_table;
        END IF;
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE at >= $1 AND at < $2)', @SL@, def)
        INTO waiting USING lo, hi;
    IF waiting THEN
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       @SL@, part, @SL@, p_table);
        EXECUTE format('INSERT INTO %I.%I SELECT * FROM %I.%I WHERE at >= $1 AND at < $2',
                       @SL@, part, @SL@, def) USING lo, hi;
        EXECUTE format('DELETE FROM %I.%I WHERE at >= $1 AND at < $2', @SL@, def) USING lo, hi;
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                       @SL@, p_table, @SL@, part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                       @SL@, part, @SL@, p_table, lo, hi);
    END IF;
    RETURN true;
END
$$
$fn$, '@S@', :'s_ident'), '@SL@', :'s_lit') \gexec

-- record_partitions_ensure(months_ahead, chain): the partitions of the
-- current month and months_ahead (0..24) months after it, and of every month
-- that has rows waiting in a default partition; for one chain or (NULL) all
-- three. Returns how many partitions it created. Only ever adds: the tenant
-- role may call it.
SELECT replace(replace($fn$
CREATE FUNCTION @S@.record_partitions_ensure(p_months_ahead integer DEFAULT 3,
                                             p_chain text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET timezone = 'UTC' AS $$
DECLARE
    t text;
    m timestamptz;
    n integer := 0;
BEGIN
    IF p_months_ahead IS NULL OR p_months_ahead NOT BETWEEN 0 AND 24 THEN
        RAISE EXCEPTION 'months_ahead must be 0 to 24' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH t IN ARRAY ARRAY['provision_record', 'access_record', 'audit_log'] LOOP
        CONTINUE WHEN p_chain IS NOT NULL AND p_chain <> t;
        FOR m IN EXECUTE format('SELECT DISTINCT date_trunc(''month'', at) FROM %I.%I',
                                @SL@, t || '_default') LOOP
            n := n + @S@.record_partition_add(t, m)::integer;
        END LOOP;
        FOR i IN 0 .. p_months_ahead LOOP
            n := n + @S@.record_partition_add(t, date_trunc('month', now())
                                                    + make_interval(months => i))::integer;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$
$fn$, '@S@', :'s_ident'), '@SL@', :'s_lit') \gexec

-- 6. Retention. record_retain(years, dry_run) removes, from each chain, the
-- partitions whose months end at least `years` years ago, as long as they
-- are exactly the start of the chain: every row in them comes (by seq)
-- before every row kept, and no seq between the chain's start and their last
-- row is missing. A month that holds a row coming after a row of a later
-- month (a record dated in the past) is kept, with the months after it,
-- until that later month may go too. A chain whose old months are not
-- contiguous is not touched at all: the function raises, and nothing is
-- removed (verify the chain first: khctl retain does).
--
-- In the same transaction it appends to audit_log, for each of the three
-- chains, a record_retention entry (operator: the session user; target: the
-- chain) whose detail says what was removed and where the chain now starts:
--   {"years", "cutoff", "partitions": [...], "removed_rows",
--    "removed_seq": [first, last] | null, "signatures_removed",
--    "first_seq": the first seq kept, "anchor": hex hash of the last removed row}
-- khctl verify starts each chain at the first_seq/anchor of its latest entry.
-- All three chains are restated whenever anything is removed, so the latest
-- entry of every chain always survives the removal of older audit_log months.
-- Signed heads of removed rows are deleted, except the one at the anchor.
-- It locks the three record tables (ACCESS EXCLUSIVE) for its duration;
-- appends wait. dry_run locks nothing and changes nothing.
-- (#variable_conflict use_column: where a column and an OUT parameter share a
-- name, such as chain or action, the column is meant.)
SELECT replace(replace($fn$
CREATE FUNCTION @S@.record_retain(p_years integer DEFAULT 7, p_dry_run boolean DEFAULT false)
RETURNS TABLE (chain text, partition_name text, month text, row_count bigint,
               first_seq bigint, last_seq bigint, action text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO, YMD' AS $$
#variable_conflict use_column
DECLARE
    cutoff timestamptz;
    t text;
    p record;
    n integer;
    k integer;
    names text[];
    lows timestamptz[];
    cnts bigint[];
    mins bigint[];
    maxs bigint[];
    laters bigint[];
    rest bigint;
    later bigint;
    last_removed bigint;
    removed_rows bigint;
    start_seq bigint;
    start_hash bytea;
    anchor bytea;
    nsig bigint;
    c_min bigint;
    c_max bigint;
    c_cnt bigint;
    entries jsonb := '{}';
    anything boolean := false;
BEGIN
    IF p_years IS NULL OR p_years NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'the retention period must be 1 to 100 years'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_dry_run IS NULL THEN
        RAISE EXCEPTION 'dry_run must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := now() - make_interval(years => p_years);
    IF NOT p_dry_run THEN
        -- all three at once, before anything else, so that the waits cannot interleave
        LOCK TABLE @S@.audit_log, @S@.access_record, @S@.provision_record
            IN ACCESS EXCLUSIVE MODE;
    END IF;
    FOREACH t IN ARRAY ARRAY['provision_record', 'access_record', 'audit_log'] LOOP
        IF NOT p_dry_run THEN
            -- old rows waiting in the default partition go to their month first
            PERFORM @S@.record_partitions_ensure(0, t);
        END IF;
        -- where the chain starts now: after its latest retention, else at seq 1
        start_seq := NULL;
        start_hash := NULL;
        SELECT (a.detail ->> 'first_seq')::bigint, decode(a.detail ->> 'anchor', 'hex')
          INTO start_seq, start_hash
          FROM @S@.audit_log a
         WHERE a.action = 'record_retention' AND a.target = t
         ORDER BY a.seq DESC LIMIT 1;
        start_seq := coalesce(start_seq, 1);
        start_hash := coalesce(start_hash, decode(repeat('00', 32), 'hex'));

        -- the partitions that end before the cutoff, oldest first, with their
        -- rows; the least seq of every other partition
        names := '{}'; lows := '{}'; cnts := '{}'; mins := '{}'; maxs := '{}'; rest := NULL;
        FOR p IN
            SELECT b.name, b.bound[1]::timestamptz AS lo, b.bound[2]::timestamptz AS hi
              FROM (SELECT c.relname AS name,
                           regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        $r$^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$r$)
                               AS bound
                      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = format('%I.%I', @SL@, t)::regclass) b
             ORDER BY 2 NULLS LAST
        LOOP
            IF p.hi IS NOT NULL AND p.hi <= cutoff THEN
                EXECUTE format('SELECT count(*), min(seq), max(seq) FROM %I.%I', @SL@, p.name)
                    INTO c_cnt, c_min, c_max;
                names := names || p.name::text;
                lows := lows || p.lo;
                cnts := cnts || c_cnt;
                mins := mins || c_min;
                maxs := maxs || c_max;
            ELSE
                EXECUTE format('SELECT min(seq) FROM %I.%I', @SL@, p.name) INTO c_min;
                rest := least(rest, c_min);
            END IF;
        END LOOP;

        -- the longest run of old months that is exactly the start of the chain
        n := coalesce(array_length(names, 1), 0);
        k := 0;
        last_removed := start_seq - 1;
        removed_rows := 0;
        laters := '{}';
        FOR i IN 1 .. n LOOP
            -- the least seq of every row in a later month
            later := rest;
            FOR j IN i + 1 .. n LOOP
                later := least(later, mins[j]);
            END LOOP;
            laters := laters || later;
            c_max := greatest(last_removed, (SELECT max(x) FROM unnest(maxs[1:i]) x));
            c_cnt := (SELECT sum(x) FROM unnest(cnts[1:i]) x);
            IF later IS NULL OR c_max < later THEN
                c_min := (SELECT min(x) FROM unnest(mins[1:i]) x);
                IF c_cnt <> c_max - start_seq + 1 OR (c_cnt > 0 AND c_min <> start_seq) THEN
                    RAISE EXCEPTION 'chain %: its months before % hold % rows for seq % to %: it is not intact (khctl verify); nothing removed',
                        t, to_char(cutoff, 'YYYY-MM-DD'), c_cnt, start_seq, c_max
                        USING ERRCODE = 'data_corrupted';
                END IF;
                k := i;
            END IF;
        END LOOP;
        IF k > 0 THEN
            last_removed := greatest(start_seq - 1, (SELECT max(x) FROM unnest(maxs[1:k]) x));
            removed_rows := (SELECT sum(x) FROM unnest(cnts[1:k]) x);
        END IF;

        anchor := start_hash;
        IF removed_rows > 0 THEN
            EXECUTE format('SELECT hash FROM %I.%I WHERE seq = $1', @SL@, t)
                INTO anchor USING last_removed;
        END IF;
        FOR i IN 1 .. n LOOP
            chain := t;
            partition_name := names[i];
            month := to_char(lows[i], 'YYYY-MM');
            row_count := cnts[i];
            first_seq := mins[i];
            last_seq := maxs[i];
            IF i <= k THEN
                action := CASE WHEN p_dry_run THEN 'would be removed' ELSE 'removed' END;
                IF NOT p_dry_run THEN
                    EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I',
                                   @SL@, t, @SL@, names[i]);
                    EXECUTE format('DROP TABLE %I.%I', @SL@, names[i]);
                END IF;
            ELSIF laters[i] IS NOT NULL AND maxs[i] > laters[i] THEN
                action := 'kept: it holds a row that comes after rows of a later month (a record '
                          'dated in the past); it goes when they may';
            ELSE
                action := 'kept: an older month is kept';
            END IF;
            RETURN NEXT;
        END LOOP;

        nsig := 0;
        IF removed_rows > 0 AND NOT p_dry_run THEN
            DELETE FROM @S@.chain_signature s WHERE s.chain = t AND s.seq < last_removed;
            GET DIAGNOSTICS nsig = ROW_COUNT;
        END IF;
        anything := anything OR k > 0;
        entries := entries || jsonb_build_object(t, jsonb_build_object(
            'years', p_years,
            'cutoff', to_char(cutoff, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'partitions', to_jsonb(names[1:k]),
            'removed_rows', removed_rows,
            'removed_seq', CASE WHEN removed_rows > 0
                                THEN jsonb_build_array(start_seq, last_removed) END,
            'signatures_removed', nsig,
            'first_seq', last_removed + 1,
            'anchor', encode(anchor, 'hex')));
    END LOOP;

    IF anything AND NOT p_dry_run THEN
        INSERT INTO @S@.audit_log (operator, action, target, detail, outcome)
        SELECT session_user, 'record_retention', e.key, e.value, 'ok'
          FROM jsonb_each(entries) e
         ORDER BY array_position(ARRAY['provision_record', 'access_record', 'audit_log'], e.key);
    END IF;
END
$$
$fn$, '@S@', :'s_ident'), '@SL@', :'s_lit') \gexec

-- 7. The partitions the rows need, then the copy of provision_record as it
-- is (no trigger yet: its chain columns are kept).
CREATE TABLE provision_record_default PARTITION OF provision_record DEFAULT;
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CREATE TABLE access_record_default PARTITION OF access_record DEFAULT;
DO $$
BEGIN
    PERFORM record_partition_add('provision_record', m)
       FROM (SELECT DISTINCT date_trunc('month', at, 'UTC') AS m
               FROM provision_record_unpartitioned) x;
    PERFORM record_partition_add('audit_log', m)
       FROM (SELECT DISTINCT date_trunc('month', at, 'UTC') AS m FROM audit_log_unpartitioned) x;
    PERFORM record_partition_add('access_record', m)
       FROM (SELECT DISTINCT date_trunc('month', at, 'UTC') AS m
               FROM access_record_unpartitioned) x;
    PERFORM record_partitions_ensure(3);
END
$$;
INSERT INTO provision_record SELECT * FROM provision_record_unpartitioned ORDER BY seq;

DROP TABLE provision_record_unpartitioned;
DROP FUNCTION chain_append_provision_record();
DROP FUNCTION chain_refuse_change();

-- 8. The chain trigger, one body for the three tables (@T@: the table). It
-- runs as the keeper (the tenant role has no right on chain_head but SELECT)
-- and holds the chain's head row until commit: appends are serialised per
-- chain, and the head names the last row.
SELECT replace(replace(replace($fn$
CREATE FUNCTION @S@.chain_append_@T@() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h @S@.chain_head%ROWTYPE;
BEGIN
    SELECT * INTO h FROM @S@.chain_head WHERE chain = '@T@' FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO @S@.chain_head (chain) VALUES ('@T@') ON CONFLICT DO NOTHING;
        SELECT * INTO h FROM @S@.chain_head WHERE chain = '@T@' FOR UPDATE;
    END IF;
    NEW.seq := h.seq + 1;
    NEW.prev_hash := h.hash;
    NEW.hash := sha256(h.hash || convert_to(@S@.chain_canonical_@T@(NEW), 'UTF8'));
    UPDATE @S@.chain_head SET seq = NEW.seq, hash = NEW.hash WHERE chain = '@T@';
    RETURN NEW;
END
$$
$fn$, '@S@', :'s_ident'), '@SL@', :'s_lit'), '@T@', t)
  FROM unnest(ARRAY['provision_record', 'audit_log', 'access_record']) AS t \gexec

SELECT format('CREATE TRIGGER %1$I BEFORE INSERT ON %2$I.%3$I '
              'FOR EACH ROW EXECUTE FUNCTION %2$I.%4$I()',
              t || '_chain', :'schema', t, 'chain_append_' || t),
       format('CREATE TRIGGER %1$I BEFORE UPDATE OR DELETE ON %2$I.%3$I '
              'FOR EACH ROW EXECUTE FUNCTION %2$I.record_refuse_change(%3$L)',
              t || '_append_only', :'schema', t),
       format('CREATE TRIGGER %1$I BEFORE TRUNCATE ON %2$I.%3$I '
              'FOR EACH STATEMENT EXECUTE FUNCTION %2$I.record_refuse_change(%3$L)',
              t || '_no_truncate', :'schema', t)
  FROM unnest(ARRAY['provision_record', 'audit_log', 'access_record']) AS t \gexec
CREATE TRIGGER audit_log_guard BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
INSERT INTO chain_head (chain)
VALUES ('provision_record'), ('audit_log'), ('access_record') ON CONFLICT DO NOTHING;

-- 9. Rows already in audit_log and access_record are chained as they are copied.
INSERT INTO audit_log SELECT * FROM audit_log_unpartitioned ORDER BY id;
INSERT INTO access_record SELECT * FROM access_record_unpartitioned ORDER BY id;
DROP TABLE audit_log_unpartitioned, access_record_unpartitioned;

REVOKE ALL ON FUNCTION record_partition_add(text, timestamptz), record_refuse_change(),
    audit_log_guard(), chain_append_provision_record(), chain_append_audit_log(),
    chain_append_access_record(), record_partitions_ensure(integer, text),
    record_retain(integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_partitions_ensure(integer, text) TO :"role";
GRANT EXECUTE ON FUNCTION record_retain(integer, boolean) TO kh_retention;

-- 10. As the tenant role again: the view of 003 on the new table.
SET LOCAL ROLE :"role";
CREATE VIEW provision_detail AS :provision_detail_def
