-- Retransmissions (issue 4): a gateway that could not reach the router or
-- the answering gateway sends the same envelope again. The router tells a
-- retransmission (same sender, message id and payload digest) from a replay
-- (same id, another payload) and forwards only the former; the answering
-- gateway answers a retransmission with the answer it already gave.
ALTER TABLE router.seen_msg ADD COLUMN IF NOT EXISTS digest bytea NULL;
