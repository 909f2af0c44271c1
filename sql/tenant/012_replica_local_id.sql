-- replica.local_id checked without a regular expression (issue 10). A bulk
-- file's rows reach replica by COPY, and the CHECK of 001 ran the regular
-- expression ^[0-9]{1,15}$ on each of them: measured, about 1.1 s of
-- PostgreSQL's 7.3 s for 1,000,000 TK001 rows. This CHECK accepts exactly the
-- same values (1 to 15 characters, each one of 0-9: the ASCII digits only, so
-- characters are bytes) with two plain string functions. The gateway checked
-- every local ID before (refdb_validate.c); this is the database's own line.
-- Runs as the tenant role with search_path set to the tenant schema, like 001.
ALTER TABLE replica DROP CONSTRAINT IF EXISTS replica_local_id_check;
ALTER TABLE replica DROP CONSTRAINT IF EXISTS replica_local_id_digits;
ALTER TABLE replica ADD CONSTRAINT replica_local_id_digits
    CHECK (length(local_id) BETWEEN 1 AND 15 AND translate(local_id, '0123456789', '') = '');
