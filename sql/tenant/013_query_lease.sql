-- Queries in flight outlive the gateway process that sent them (issue 12).
-- A query's sealed envelope is kept with its row, and the node (one
-- kakehashi-gw process) working on it holds a lease that it renews while it
-- retries. A node that finds a query still in flight whose lease ran out (its
-- node died, or was stopped) takes it over with FOR UPDATE SKIP LOCKED and sends
-- the same envelope again: the answering side recognises a retransmission by
-- its message id, and the row's state moves once (sent|timed_out -> final),
-- so the answer is recorded once, whichever node receives it.
-- envelope: NULL for a query refused before it was sealed (and for rows made
-- before this migration, which are never taken over).
-- Runs as the tenant role with search_path set to the tenant schema, like 001.
ALTER TABLE query ADD COLUMN IF NOT EXISTS envelope bytea NULL;
ALTER TABLE query ADD COLUMN IF NOT EXISTS node text NULL;
ALTER TABLE query ADD COLUMN IF NOT EXISTS lease_until timestamptz NULL;
CREATE INDEX IF NOT EXISTS query_in_flight ON query (lease_until)
    WHERE state IN ('sent', 'timed_out');
