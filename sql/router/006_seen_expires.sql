-- The router's replay-id sweep (every 60 s: DELETE ... WHERE expires_at <
-- now() - 1 hour) reads the expired rows through an index instead of
-- scanning every id it keeps (an hour of traffic is hundreds of thousands).
-- The gateway's own seen_msg has had the same index since 001.
CREATE INDEX IF NOT EXISTS seen_msg_expires ON router.seen_msg (expires_at);
