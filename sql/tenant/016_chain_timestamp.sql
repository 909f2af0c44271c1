-- Trusted time on the signed chain heads (issue 14). A signed head (004,
-- chain_signature) proves who vouched for a chain's state, and the gateway's
-- own clock says when. chain_timestamp keeps, for a signed head, an RFC 3161
-- time-stamp token from a time-stamping authority (TSA) over the head's
-- signature (its DER bytes): the TSA's signed word that this signature, hence
-- this head and every row before it, existed at the token's genTime.
-- gateway/daemon/gw_stamp.c asks for them; khctl verify and export read them.
--
-- Like chain_signature it belongs to the keeper (kh_records_<org>); the
-- gateway may read and add rows, never change or remove one; an auditor
-- reads. A row goes with its signed head: retention (record_retain, 006)
-- removes old signed heads, and their tokens with them (ON DELETE CASCADE,
-- carried out with the owner's rights).
-- Runs as the keeper and ends as the tenant role again, like 011.
SELECT 'kh_records_' || substr(:'role', 6) AS keeper,
       'kh_auditor_' || substr(:'role', 6) AS auditor \gset

RESET ROLE;
SET LOCAL ROLE :"keeper";
CREATE TABLE IF NOT EXISTS :"schema".chain_timestamp (
    chain      text NOT NULL,
    seq        bigint NOT NULL,
    token      bytea NOT NULL,       -- TimeStampToken (DER), imprint SHA-256(signature)
    gen_time   timestamptz NOT NULL, -- the token's genTime (the TSA's clock)
    stamped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, seq),
    FOREIGN KEY (chain, seq) REFERENCES :"schema".chain_signature (chain, seq) ON DELETE CASCADE
);
GRANT SELECT, INSERT ON :"schema".chain_timestamp TO :"role";
GRANT SELECT ON :"schema".chain_timestamp TO :"auditor";
SET LOCAL ROLE :"role";
