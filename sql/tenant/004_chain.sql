-- Tamper-evident records (issue 5, first part): provision_record becomes an
-- append-only hash chain. Every row carries its position (seq), the hash of
-- the row before it, and its own hash:
--     hash = sha256(prev_hash || convert_to(canonical text, 'UTF8'))
-- The canonical text is chain_canonical_<table>(row): a jsonb object of every
-- column but seq/prev_hash/hash, times in UTC, printed by PostgreSQL's jsonb
-- output (keys in a fixed order), so any session computes the same bytes.
-- A BEFORE INSERT trigger fills the three columns while holding the chain's
-- head row: appends are serialised per chain and the head names the last row.
-- The gateway signs heads with the tenant's key (chain_signature), which pins
-- the chain: whoever can write the database still cannot forge a signed head.
-- tools/khctl verify recomputes everything. The functions keep the tenant's
-- search_path of their creation (SET search_path FROM CURRENT): whoever
-- inserts, with whatever search_path, gets this tenant's chain.

CREATE TABLE IF NOT EXISTS chain_head (
    chain text PRIMARY KEY,
    seq   bigint NOT NULL DEFAULT 0,
    hash  bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex')
);

CREATE TABLE IF NOT EXISTS chain_signature (
    chain      text NOT NULL,
    seq        bigint NOT NULL,
    hash       bytea NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now(),
    signature  bytea NOT NULL,
    PRIMARY KEY (chain, seq)
);

ALTER TABLE provision_record ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE provision_record ADD COLUMN IF NOT EXISTS prev_hash bytea;
ALTER TABLE provision_record ADD COLUMN IF NOT EXISTS hash bytea;
CREATE UNIQUE INDEX IF NOT EXISTS provision_record_seq ON provision_record (seq);

CREATE OR REPLACE FUNCTION chain_canonical_provision_record(r provision_record)
RETURNS text LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT jsonb_build_object(
        'id', r.id,
        'at', to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'msg_id', r.msg_id, 'direction', r.direction, 'counterpart', r.counterpart,
        'procedure', r.procedure, 'items', to_jsonb(r.items), 'local_id', r.local_id,
        'staff_id', r.staff_id, 'outcome', r.outcome, 'code', r.code,
        'provided', r.provided)::text
$$;

CREATE OR REPLACE FUNCTION chain_append_provision_record() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    h chain_head%ROWTYPE;
BEGIN
    INSERT INTO chain_head (chain) VALUES ('provision_record') ON CONFLICT DO NOTHING;
    SELECT * INTO h FROM chain_head WHERE chain = 'provision_record' FOR UPDATE;
    NEW.seq := h.seq + 1;
    NEW.prev_hash := h.hash;
    NEW.hash := sha256(h.hash || convert_to(chain_canonical_provision_record(NEW), 'UTF8'));
    UPDATE chain_head SET seq = NEW.seq, hash = NEW.hash WHERE chain = 'provision_record';
    RETURN NEW;
END
$$;

-- Append only: a record is never changed or removed through the gateway's
-- roles (retention, issue 5, will remove whole old partitions and record it).
CREATE OR REPLACE FUNCTION chain_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS provision_record_chain ON provision_record;
CREATE TRIGGER provision_record_chain BEFORE INSERT ON provision_record
    FOR EACH ROW EXECUTE FUNCTION chain_append_provision_record();
DROP TRIGGER IF EXISTS provision_record_append_only ON provision_record;
CREATE TRIGGER provision_record_append_only BEFORE UPDATE OR DELETE ON provision_record
    FOR EACH ROW EXECUTE FUNCTION chain_refuse_change();
DROP TRIGGER IF EXISTS provision_record_no_truncate ON provision_record;
CREATE TRIGGER provision_record_no_truncate BEFORE TRUNCATE ON provision_record
    FOR EACH STATEMENT EXECUTE FUNCTION chain_refuse_change();
