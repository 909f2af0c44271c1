-- Maintenance mode (issue 13): a tenant, or a whole gateway (every node of
-- that name), refuses new work with KH-5008 while work in flight finishes.
-- A row is the mode on; it is set and ended through the admin API and read
-- by every node of the gateway within a second or two (the health check's
-- job). scope: 'gateway:NAME' or 'tenant:ORG'.
CREATE TABLE IF NOT EXISTS kh.maintenance (
    scope  text PRIMARY KEY CHECK (scope ~ '^(gateway:[A-Za-z0-9_.-]{1,64}|tenant:[0-9A-Z]{6})$'),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    set_by text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON kh.maintenance FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON kh.maintenance TO kh_operator_store;
