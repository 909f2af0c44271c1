-- Bulk registration (issue 3). Runs as the tenant role with search_path set
-- to the tenant schema, like 001.

-- Versions come from one sequence per tenant: monotonic across all persons and
-- items, so "the version in force at D" (highest version with effective_from
-- <= D) holds whether a row came online or in a bulk file, and a bulk COPY
-- needs no per-person lookup.
CREATE SEQUENCE IF NOT EXISTS replica_version_seq AS bigint;
ALTER TABLE replica ALTER COLUMN version TYPE bigint;
ALTER TABLE replica ALTER COLUMN version SET DEFAULT nextval('replica_version_seq');
ALTER SEQUENCE replica_version_seq OWNED BY replica.version;
DO $$
BEGIN
    PERFORM setval('replica_version_seq', greatest((SELECT max(version) FROM replica), 1),
                   (SELECT max(version) FROM replica) IS NOT NULL);
END
$$;

ALTER TABLE replica ADD COLUMN IF NOT EXISTS layout_version int;
ALTER TABLE replica ADD COLUMN IF NOT EXISTS batch_id bigint;

-- Each bulk file applied (or being applied) to this tenant. A file is known by
-- its SHA-256: the same content for the same item, mode and date is applied
-- once (the same snapshot sent again for a later date is a new snapshot).
CREATE TABLE IF NOT EXISTS bulk_file (
    id             bigserial PRIMARY KEY,
    item_code      text NOT NULL,
    mode           text NOT NULL CHECK (mode IN ('full', 'diff')),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    file_name      text NOT NULL,
    system_id      text NOT NULL,
    as_of          date NOT NULL,
    records        bigint,
    persons        bigint,
    deleted_absent bigint,
    started_at     timestamptz NOT NULL DEFAULT now(),
    applied_at     timestamptz,
    UNIQUE (item_code, mode, as_of, sha256)
);

-- No index beyond the primary key (local_id, item_code, version): it serves
-- reads (one person, one item) and the full-mode snapshot (DISTINCT ON local_id),
-- and every extra index would slow bulk loads of millions of rows.

-- What was provided: the version of each item an answer carried.
ALTER TABLE provision_record ADD COLUMN IF NOT EXISTS provided jsonb;
