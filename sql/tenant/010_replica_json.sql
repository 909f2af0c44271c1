-- Reference copies' values as json, not jsonb (issue 10). A bulk file's rows
-- reach replica by COPY; converting each row's values into jsonb (parsing,
-- sorting and de-duplicating ~40 keys, building the binary form) was more
-- than half of PostgreSQL's work per row (measured: 300,000 TK001 rows took
-- 8.9 s into jsonb, 5.1 s into json, 3.6 s into text). json keeps the text
-- the gateway built after checking it is JSON; the gateway validated every
-- field before, so there are no duplicate keys to resolve. Reads take one
-- person's few rows apart with json_each_text, which costs nothing to
-- notice. Runs as the tenant role with search_path set to the tenant schema,
-- like 001; provision_detail (003, remade by 006) reads the column, so it is
-- made again from its own definition.
SELECT format_type(atttypid, atttypmod) = 'jsonb' AS data_is_jsonb
FROM pg_attribute WHERE attrelid = 'replica'::regclass AND attname = 'data' \gset
\if :data_is_jsonb
SELECT pg_get_viewdef('provision_detail'::regclass) AS provision_detail_def \gset
DROP VIEW provision_detail;
ALTER TABLE replica ALTER COLUMN data DROP DEFAULT,
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN data SET DEFAULT '{}';
CREATE VIEW provision_detail AS :provision_detail_def
\endif
