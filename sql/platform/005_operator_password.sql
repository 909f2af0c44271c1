-- Operators change their own password, and a platform admin resets a
-- forgotten one, through the admin API (issue 13: no SQL for accounts). The
-- gateway's operator store may now write the hash (only as scrypt, by the
-- column's check) and when it was last set; nothing else of the row beyond
-- what 003 allowed.
ALTER TABLE kh.operator ADD COLUMN IF NOT EXISTS password_changed_at timestamptz NULL;
GRANT UPDATE (password_hash, password_changed_at) ON kh.operator TO kh_operator_store;
