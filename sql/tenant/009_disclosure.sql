-- Records disclosure (issue 5, flow 5): the router, for the national portal
-- acting on a person's behalf, asks for the person's provision records and
-- own information (自己情報). Each disclosure is itself a provision record,
-- direction 'disclosed' (counterpart ROUTER, staff_id the portal the router
-- acted for, items and provided the items disclosed and their versions).
-- Runs as the tenant role with search_path set to the tenant schema, like
-- 001; the record tables belong to the tenant's record keeper since 006, so
-- the check is changed as the keeper (sql/README.md), and the file ends as
-- the tenant role.
SELECT 'kh_records_' || substr(:'role', 6) AS keeper \gset
RESET ROLE;
SET LOCAL ROLE :"keeper";

-- Whatever named the direction check (001's inline CHECK, copied by 006 to
-- the partitioned table and each partition), it goes: the partitioned table
-- first (the drop reaches the partitions' inherited copies), then what a
-- partition still holds of its own.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT t.relid::regclass AS tbl, con.conname
        FROM pg_partition_tree('provision_record'::regclass) t
        JOIN pg_constraint con ON con.conrelid = t.relid
        WHERE con.contype = 'c' AND pg_get_constraintdef(con.oid) LIKE '%direction%'
        ORDER BY t.level
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', c.tbl, c.conname);
    END LOOP;
END
$$;
-- on the partitioned table: every partition, and every one made later, has it
ALTER TABLE provision_record ADD CONSTRAINT provision_record_direction_check
    CHECK (direction IN ('asked', 'answered', 'disclosed'));

SET LOCAL ROLE :"role";
