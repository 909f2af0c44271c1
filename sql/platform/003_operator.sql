-- Operators of the admin API (issue 4): platform admins, tenant admins,
-- responders and auditors, the tenants each may act on, their sessions, and
-- the platform-level audit log of operator management and logins. Holds no
-- personal data of residents. Run by tools/khdb migrate as khadmin.
--
-- The gateway reaches these tables only through the NOLOGIN role
-- kh_operator_store, which holds exactly the rights the admin API needs. The
-- gateway's login role is NOINHERIT and a member of it (tools/khdb tenant
-- grants it), so, as with the tenant roles, it has these rights only inside
-- a transaction that runs SET LOCAL ROLE kh_operator_store.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kh_operator_store') THEN
        CREATE ROLE kh_operator_store NOLOGIN;
    END IF;
END
$$;

-- name: the operator's login name, also the CN of their client certificate
-- (tools/khpki operator). role: what they may do (gateway/README.md).
-- password_hash: scrypt$N$r$p$salt$hash (gateway/khcrypto.c). After 5
-- failed logins in a row locked_until is set; a successful login resets
-- failed_logins. A disabled operator (active = false) cannot log in.
CREATE TABLE IF NOT EXISTS kh.operator (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,31}$'),
    role          text NOT NULL
                  CHECK (role IN ('platform_admin', 'tenant_admin', 'responder', 'auditor')),
    password_hash text NOT NULL CHECK (password_hash ~ '^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'),
    active        bool NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    failed_logins int NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until  timestamptz NULL
);

-- The tenants a tenant admin, responder or auditor may act on; nothing
-- else. A platform admin acts on every tenant and has no rows here.
CREATE TABLE IF NOT EXISTS kh.operator_tenant (
    operator text NOT NULL REFERENCES kh.operator (name),
    org_code text NOT NULL REFERENCES kh.tenant (org_code),
    PRIMARY KEY (operator, org_code)
);

-- A session: the SHA-256 of the random 32-byte bearer token (the token
-- itself is stored nowhere), its operator, and its times. It ends when idle
-- for longer than the gateway's admin_session_idle, at expires_at (absolute
-- lifetime), at logout (the row is deleted) or when the operator is
-- disabled (rows deleted).
CREATE TABLE IF NOT EXISTS kh.operator_session (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    operator   text NOT NULL REFERENCES kh.operator (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_session_operator ON kh.operator_session (operator);

-- Operator management and logins, refused ones included (outcome 'refused'
-- with the code). actor: the operator who acted; for a login, the CN of the
-- client certificate; 'khctl' for the bootstrap (khctl operator-add).
-- Append-only: the gateway may only insert and read, and a trigger refuses
-- changes and deletions by anyone else as well.
CREATE TABLE IF NOT EXISTS kh.operator_audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text NULL,
    detail  jsonb NOT NULL DEFAULT '{}',
    outcome text NOT NULL CHECK (outcome IN ('ok', 'refused')),
    code    text NULL
);

CREATE OR REPLACE FUNCTION kh.operator_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kh.operator_audit is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS operator_audit_append_only ON kh.operator_audit;
CREATE TRIGGER operator_audit_append_only BEFORE UPDATE OR DELETE ON kh.operator_audit
    FOR EACH ROW EXECUTE FUNCTION kh.operator_audit_refuse_change();
DROP TRIGGER IF EXISTS operator_audit_no_truncate ON kh.operator_audit;
CREATE TRIGGER operator_audit_no_truncate BEFORE TRUNCATE ON kh.operator_audit
    FOR EACH STATEMENT EXECUTE FUNCTION kh.operator_audit_refuse_change();

-- Exactly what the admin API does, nothing more: no one but khadmin changes a
-- role, a name or a password hash, and the audit log only grows.
REVOKE ALL ON kh.operator, kh.operator_tenant, kh.operator_session, kh.operator_audit
    FROM PUBLIC;
GRANT SELECT, INSERT ON kh.operator TO kh_operator_store;
GRANT UPDATE (active, failed_logins, locked_until) ON kh.operator TO kh_operator_store;
GRANT SELECT, INSERT ON kh.operator_tenant TO kh_operator_store;
GRANT SELECT, INSERT, DELETE ON kh.operator_session TO kh_operator_store;
GRANT UPDATE (last_seen) ON kh.operator_session TO kh_operator_store;
GRANT SELECT, INSERT ON kh.operator_audit TO kh_operator_store;
GRANT USAGE ON SEQUENCE kh.operator_audit_id_seq TO kh_operator_store;
