-- Bulk uploads in progress outlive the gateway node that received them
-- (issue 12). Before this migration an upload lived in one process's memory
-- and spool folder: a load balancer had to keep it on one node, and a node
-- that died lost it. Now every part is stored here as it arrives, the commit
-- checks the SHA-256 over the stored parts, and a committed upload waits in
-- this table (state QUEUED) until a node claims it with a lease
-- (FOR UPDATE SKIP LOCKED) and loads it. The node renews the lease while it
-- loads; a node that finds a load whose lease ran out (its node died) loads
-- it again. The final state is written in the load's own transaction (or,
-- for a file that was not applied, in one right after it, by the node that
-- holds the lease), so a file is applied once, whichever node loads it.
-- Parts are deleted with the final state: personal data stays in these
-- tables only while the upload is in progress (like every row, it is also in
-- the WAL, on the standbys and in the backups for their retention). Finished uploads (state, figures, report)
-- are kept an hour for /v1/bulk/status, at most 32 per tenant.
-- Runs as the tenant role with search_path set to the tenant schema, like 001.
CREATE TABLE IF NOT EXISTS bulk_upload (
    upload_id      text PRIMARY KEY CHECK (upload_id ~ '^[0-9a-f]{32}$'),
    system_id      text NOT NULL,
    item_code      text NOT NULL,
    mode           text NOT NULL CHECK (mode IN ('full', 'diff')),
    as_of          text NOT NULL CHECK (as_of ~ '^[0-9]{8}$'),
    file_name      text NOT NULL,
    state          text NOT NULL DEFAULT 'RECEIVING' CHECK (state IN ('RECEIVING', 'QUEUED',
                       'LOADING', 'APPLIED', 'DUPLICATE', 'REJECTED', 'FAILED')),
    next_seq       integer NOT NULL DEFAULT 1,
    bytes          bigint NOT NULL DEFAULT 0,      -- received
    sha256         text NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'), -- set at commit
    node           text NULL,                      -- the node loading it
    lease_until    timestamptz NULL,
    attempts       integer NOT NULL DEFAULT 0,     -- loads started (with node: the fence)
    not_before     timestamptz NULL,               -- queued again: not claimed before
    read_bytes     bigint NOT NULL DEFAULT 0,      -- figures of the load
    records        bigint NOT NULL DEFAULT 0,
    bad_records    bigint NOT NULL DEFAULT 0,
    issues         bigint NOT NULL DEFAULT 0,
    persons        bigint NOT NULL DEFAULT 0,
    deleted_absent bigint NOT NULL DEFAULT 0,
    file_id        bigint NOT NULL DEFAULT 0,
    result_sha256  text NOT NULL DEFAULT '',
    code           text NOT NULL DEFAULT '',
    message        text NOT NULL DEFAULT '',
    report_size    bigint NOT NULL DEFAULT 0,
    opened_at      timestamptz NOT NULL DEFAULT now(),
    touched_at     timestamptz NOT NULL DEFAULT now(),
    committed_at   timestamptz NULL,
    finished_at    timestamptz NULL
);
CREATE INDEX IF NOT EXISTS bulk_upload_queue ON bulk_upload (committed_at)
    WHERE state IN ('QUEUED', 'LOADING');

-- The parts received, in order (seq from 1, no gaps: a part is stored in the
-- same transaction that moves next_seq). Not compressed: the bytes are read
-- back once, at the commit and by the load, and compression would cost more
-- than the disk it saves for the minutes they are kept.
CREATE TABLE IF NOT EXISTS bulk_upload_part (
    upload_id text NOT NULL REFERENCES bulk_upload ON DELETE CASCADE,
    seq       integer NOT NULL CHECK (seq > 0),
    data      bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
ALTER TABLE bulk_upload_part ALTER COLUMN data SET STORAGE EXTERNAL;

-- The report of a rejected file (refdb/FORMAT.md section 4) in chunks of
-- 64 KiB from seq 0, read by offset through /v1/bulk/status.
CREATE TABLE IF NOT EXISTS bulk_upload_report (
    upload_id text NOT NULL REFERENCES bulk_upload ON DELETE CASCADE,
    seq       integer NOT NULL CHECK (seq >= 0),
    data      bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
