-- Deferred answers (issue 4): a held query is answered later by the provider
-- as a message of its own (header answer_state DEFERRED, in_reply_to the
-- query). The router forwards it only for a query it recorded as pending,
-- and delivers one deferred answer per query.
ALTER TABLE router.query_record ADD COLUMN IF NOT EXISTS in_reply_to text NULL;
CREATE INDEX IF NOT EXISTS query_record_msg_id ON router.query_record (msg_id);
CREATE INDEX IF NOT EXISTS query_record_in_reply_to ON router.query_record (in_reply_to)
    WHERE in_reply_to IS NOT NULL;
