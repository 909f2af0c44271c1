-- One tenant's schema: link codes, reference copies (副本), staff and job
-- roles, business systems and their permissions, provision records.
-- Run by tools/khdb tenant as the tenant role with search_path = :"schema", kh,
-- so every object below lands in the tenant schema and is owned by the tenant
-- role. psql variables: :"schema" (t_<org>), :"role" (kh_t_<org>).

REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;

-- 符号 ⇄ 団体内統合宛名番号.
CREATE TABLE IF NOT EXISTS linkcode (
    local_id    text PRIMARY KEY CHECK (local_id ~ '^[0-9]{1,15}$'),
    link_code   text NOT NULL UNIQUE CHECK (link_code ~ '^[0-9a-f]{32}$'),
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- Reference copies: every version is kept; the version in force at a date is
-- the highest version whose effective_from is on or before that date.
CREATE TABLE IF NOT EXISTS replica (
    local_id       text NOT NULL CHECK (local_id ~ '^[0-9]{1,15}$'),
    item_code      text NOT NULL,
    version        int  NOT NULL CHECK (version > 0),
    effective_from date NOT NULL,
    deleted        bool NOT NULL DEFAULT false,
    data           jsonb NOT NULL DEFAULT '{}',
    registered_at  timestamptz NOT NULL DEFAULT now(),
    system_id      text NOT NULL,
    PRIMARY KEY (local_id, item_code, version)
);

CREATE TABLE IF NOT EXISTS staff (
    staff_id     text PRIMARY KEY,
    display_name text NOT NULL,
    active       bool NOT NULL DEFAULT true
);

-- 職責: job roles and the procedures each allows.
CREATE TABLE IF NOT EXISTS job_role (
    role_code text PRIMARY KEY,
    name      text NOT NULL
);

CREATE TABLE IF NOT EXISTS role_procedure (
    role_code text NOT NULL REFERENCES job_role,
    procedure text NOT NULL,
    PRIMARY KEY (role_code, procedure)
);

CREATE TABLE IF NOT EXISTS staff_role (
    staff_id   text NOT NULL REFERENCES staff,
    role_code  text NOT NULL REFERENCES job_role,
    valid_from date NOT NULL DEFAULT current_date,
    valid_to   date NULL,
    PRIMARY KEY (staff_id, role_code, valid_from),
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);

CREATE TABLE IF NOT EXISTS business_system (
    system_id text PRIMARY KEY,
    name      text NOT NULL
);

-- scope: a procedure code for 'query', an item code for 'register', or '*'.
CREATE TABLE IF NOT EXISTS system_permission (
    system_id text NOT NULL REFERENCES business_system,
    operation text NOT NULL CHECK (operation IN ('register', 'linkcode', 'query')),
    scope     text NOT NULL DEFAULT '*',
    PRIMARY KEY (system_id, operation, scope)
);

-- 情報提供等記録: every query asked and answered.
CREATE TABLE IF NOT EXISTS provision_record (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    msg_id      text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('asked', 'answered')),
    counterpart text,
    procedure   text,
    items       text[],
    local_id    text,
    staff_id    text,
    outcome     text,
    code        text
);
CREATE INDEX IF NOT EXISTS provision_record_local_id ON provision_record (local_id, at);

-- Replay protection for messages addressed to this tenant: (sender, message
-- id) pairs seen within their validity window. Per tenant, so no tenant role
-- can touch another tenant's entries. Rows past expires_at may be purged.
CREATE TABLE IF NOT EXISTS seen_msg (
    sender     text NOT NULL,
    msg_id     text NOT NULL CHECK (msg_id ~ '^[0-9a-f]{32}$'),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (sender, msg_id)
);
CREATE INDEX IF NOT EXISTS seen_msg_expires ON seen_msg (expires_at);
