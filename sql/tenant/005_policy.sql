-- Answering policy and query lifecycle (issue 4), and the two record tables
-- besides provision_record (issue 5). Runs as the tenant role with
-- search_path set to the tenant schema, like 001.

-- Staff roles: valid_to is the day the post ends. From that day on the role
-- no longer applies (valid_from <= day < valid_to), so a staff member moved
-- to another post loses the old post's procedures on the day it ends.

-- Holds (自動応答不可) and non-disclosure flags (不開示). A flag applies to a
-- query when every column it sets matches: local_id is the subject's local
-- ID, item_code one of the items asked for, procedure the query's procedure;
-- and the query's day is in [valid_from, valid_to). A revoked flag no longer
-- applies. Non-disclosure answers "withheld" for the items it covers, without
-- a human; a hold makes the whole answer wait for a responder's decision.
CREATE TABLE IF NOT EXISTS answer_flag (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('hold', 'nondisclosure')),
    local_id   text NULL CHECK (local_id ~ '^[0-9]{1,15}$'),
    item_code  text NULL CHECK (item_code ~ '^[A-Z0-9]{1,15}$'),
    procedure  text NULL CHECK (procedure ~ '^[A-Z0-9]{1,15}$'),
    reason     text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    valid_from date NOT NULL DEFAULT current_date,
    valid_to   date NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_by text NULL,
    revoked_at timestamptz NULL,
    CHECK (local_id IS NOT NULL OR item_code IS NOT NULL OR procedure IS NOT NULL),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX IF NOT EXISTS answer_flag_local_id ON answer_flag (local_id) WHERE revoked_at IS NULL;

-- Answering side: a query that hit a hold waits here for a responder.
-- state: pending -> approved (all or fewer items) | refused | expired.
CREATE TABLE IF NOT EXISTS pending_answer (
    msg_id         text PRIMARY KEY CHECK (msg_id ~ '^[0-9a-f]{32}$'),
    sender         text NOT NULL,
    procedure      text NOT NULL,
    items          text[] NOT NULL,
    subject        text NOT NULL CHECK (subject ~ '^[0-9a-f]{32}$'),
    local_id       text NOT NULL,
    staff_id       text NOT NULL,
    as_of          text NOT NULL,
    flags          bigint[] NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'approved', 'refused', 'expired')),
    decided_by     text NULL,
    decided_at     timestamptz NULL,
    approved_items text[] NULL,
    reason         text NULL
);
CREATE INDEX IF NOT EXISTS pending_answer_state ON pending_answer (state, received_at);

-- Answering side: deferred answers waiting to be delivered through the
-- router. envelope is sealed (encrypted to the asker), so it holds no
-- readable personal data. state: queued -> delivered | failed.
CREATE TABLE IF NOT EXISTS outbox (
    msg_id          text PRIMARY KEY CHECK (msg_id ~ '^[0-9a-f]{32}$'),
    in_reply_to     text NOT NULL,
    recipient       text NOT NULL,
    envelope        bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        int NOT NULL DEFAULT 0,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'delivered', 'failed')),
    last_code       text NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE state = 'queued';

-- Answering side idempotency: the reply sent for a message id, and the
-- digest of the envelope it answered. The same envelope sent again (a
-- retransmission) gets the same reply and no second record; a different
-- envelope under a seen id is a replay.
ALTER TABLE seen_msg ADD COLUMN IF NOT EXISTS digest bytea NULL;
ALTER TABLE seen_msg ADD COLUMN IF NOT EXISTS reply bytea NULL;

-- Asking side: every query gets a handle (its message id) and a state.
-- sent -> answered | pending -> answered | refused | failed | timed_out;
-- timed_out -> answered when a late answer still arrives.
-- answer: the AnswerBody as received (protobuf), for retrieval by handle.
CREATE TABLE IF NOT EXISTS query (
    msg_id     text PRIMARY KEY CHECK (msg_id ~ '^[0-9a-f]{32}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    system_id  text NOT NULL,
    staff_id   text NOT NULL,
    procedure  text NOT NULL,
    provider   text NOT NULL,
    items      text[] NOT NULL,
    local_id   text NOT NULL,
    as_of      text NOT NULL DEFAULT '',
    state      text NOT NULL
               CHECK (state IN ('sent', 'answered', 'pending', 'refused', 'failed', 'timed_out')),
    code       text NULL,
    message    text NULL,
    result     text NULL,
    answer     bytea NULL,
    expires_at timestamptz NOT NULL,
    attempts   int NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS query_created ON query (created_at);
CREATE INDEX IF NOT EXISTS query_state ON query (state, created_at);

-- 操作ログ: operator and configuration actions on this tenant (issue 5).
CREATE TABLE IF NOT EXISTS audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    operator text NOT NULL,
    action   text NOT NULL,
    target   text NULL,
    detail   jsonb NOT NULL DEFAULT '{}',
    outcome  text NOT NULL CHECK (outcome IN ('ok', 'refused')),
    code     text NULL
);

-- Access records: every authorisation decision of the linkage-interface
-- layer for this tenant (issue 5). actor: the business system (direction
-- 'business') or the asking organisation (direction 'peer').
CREATE TABLE IF NOT EXISTS access_record (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    msg_id    text NULL,
    direction text NOT NULL CHECK (direction IN ('business', 'peer', 'admin')),
    actor     text NOT NULL,
    operation text NOT NULL,
    staff_id  text NULL,
    procedure text NULL,
    items     text[] NULL,
    decision  text NOT NULL CHECK (decision IN ('allowed', 'refused')),
    code      text NULL
);
