-- The admin API's diagnosis (GET /admin/v1/diagnose) compares the migrations
-- applied to this database with those the gateway was built with: the
-- operator store may read which were applied, nothing else of the table.
GRANT USAGE ON SCHEMA kh TO kh_operator_store;
GRANT SELECT ON kh.schema_migrations TO kh_operator_store;
