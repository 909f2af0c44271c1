# Tenant isolation enforced by PostgreSQL, link codes per organisation, and no
# national reference kept anywhere after acquisition.
. "$(dirname "$0")/lib.sh"
new_person
for who in "131016 tax $LOCAL_C" "271004 childallowance $LOCAL_O" "N00001 pension $LOCAL_N"; do
    set -- $who
    client "$1" "$2" linkcode "$3" "$RESIDENT" >/dev/null
done
client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=1000 >/dev/null

# as_role DB LOGIN SQL: run SQL connected as a gateway's login role; prints psql's output
as_role() {
    psql -h "$KH_STACK/pg/run" -U "$2" -d "$1" -XAtq -v ON_ERROR_STOP=1 -c "$3" 2>&1
}
out=$(as_role kh_gw_a kh_gw_a "SET ROLE kh_t_131016; SELECT count(*) FROM t_271004.replica" || true)
expect_contains "as Chiyoda's role, Osaka's reference copies are out of reach" "permission denied" "$out"
out=$(as_role kh_gw_a kh_gw_a "SET ROLE kh_t_271004; SELECT count(*) FROM t_131016.linkcode" || true)
expect_contains "as Osaka's role, Chiyoda's link codes are out of reach" "permission denied" "$out"
out=$(as_role kh_gw_a kh_gw_a "SELECT count(*) FROM t_131016.replica" || true)
expect_contains "the gateway's login role itself reads no tenant table" "permission denied" "$out"
out=$(as_role kh_gw_b kh_gw_b "SET ROLE kh_t_131016" || true)
expect_contains "gateway b cannot take a tenant role of gateway a" "permission denied" "$out"
out=$(as_role kh_gw_a kh_gw_a "SET ROLE kh_t_131016; SELECT count(*) FROM t_131016.replica WHERE local_id = '$LOCAL_C'")
expect_eq "as Chiyoda's role, Chiyoda's own rows are readable" "1" "$out"

# Every privilege, checked directly (not only the samples above, and not
# depending on what an earlier test did): in each gateway database, no tenant
# role holds any privilege on another tenant's schema, tables, views or
# sequences, and no login role holds one on any tenant's (a gateway reaches a
# tenant only through SET ROLE).
cross_privileges() {
    sql "$1" "WITH tr AS (SELECT oid, rolname, 't_' || substr(rolname, 6) AS own FROM pg_roles
                          WHERE rolname LIKE 'kh\_t\_%'),
                   lr AS (SELECT oid, rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper
                                AND rolname NOT LIKE 'kh\_it\_%'), -- made by tests
                   who AS (SELECT oid, rolname, own FROM tr
                           UNION ALL SELECT oid, rolname, '' FROM lr),
                   ts AS (SELECT oid, nspname FROM pg_namespace WHERE nspname LIKE 't\_%')
              SELECT who.rolname || ' ' || p || ' on schema ' || ts.nspname
                FROM who, ts, unnest(ARRAY['USAGE', 'CREATE']) p
               WHERE ts.nspname <> who.own AND has_schema_privilege(who.oid, ts.oid, p)
              UNION ALL
              SELECT who.rolname || ' ' || p || ' on ' || ts.nspname || '.' || c.relname
                FROM who, ts JOIN pg_class c ON c.relnamespace = ts.oid,
                     unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE',
                                  'REFERENCES', 'TRIGGER']) p
               WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ts.nspname <> who.own
                 AND has_table_privilege(who.oid, c.oid, p)
              UNION ALL
              SELECT who.rolname || ' ' || p || ' on ' || ts.nspname || '.' || c.relname
                FROM who, ts JOIN pg_class c ON c.relnamespace = ts.oid,
                     unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p
               WHERE c.relkind = 'S' AND ts.nspname <> who.own
                 AND has_sequence_privilege(who.oid, c.oid, p)
              ORDER BY 1 LIMIT 5"
}
# the control: what the query checks is there to check
own_privileges() {
    sql "$1" "SELECT count(*) FROM pg_roles r JOIN pg_namespace n
                ON n.nspname = 't_' || substr(r.rolname, 6)
               WHERE r.rolname LIKE 'kh\_t\_%' AND has_schema_privilege(r.oid, n.oid, 'USAGE')
                 AND has_table_privilege(r.oid, n.nspname || '.replica', 'SELECT')"
}
for db in kh_gw_a kh_gw_b; do
    tenants=$(sql "$db" "SELECT count(*) FROM kh.tenant")
    check "$db: each of its $tenants tenant roles can use its own schema (the control)" \
        test "$(own_privileges "$db")" = "$tenants" -a "$tenants" -ge 2
    expect_eq "$db: no role holds a privilege on another tenant's objects" "" \
        "$(cross_privileges "$db")"
done
# S00001's schema is in a database of its own (gw-b's tenant_db): there alone
expect_eq "kh_gw_b2 holds S00001's schema and no other tenant's" "S00001" \
    "$(sql kh_gw_b2 "SELECT string_agg(org_code, ',') FROM kh.tenant")"
expect_eq "... and gw-b's own database has no S00001 schema" "0" \
    "$(sql kh_gw_b "SELECT count(*) FROM pg_namespace WHERE nspname = 't_s00001'")"
expect_eq "kh_gw_b2: no role holds a privilege on another tenant's objects" "" \
    "$(cross_privileges kh_gw_b2)"

lc=$(sql kh_gw_a "SELECT link_code FROM t_131016.linkcode WHERE local_id = '$LOCAL_C'")
lo=$(sql kh_gw_a "SELECT link_code FROM t_271004.linkcode WHERE local_id = '$LOCAL_O'")
ln=$(sql kh_gw_b "SELECT link_code FROM t_n00001.linkcode WHERE local_id = '$LOCAL_N'")
check "each organisation holds a 32-hex link code" \
    bash -c "[[ '$lc' =~ ^[0-9a-f]{32}$ && '$lo' =~ ^[0-9a-f]{32}$ && '$ln' =~ ^[0-9a-f]{32}$ ]]"
check "the same person has different link codes at the two municipalities" test "$lc" != "$lo"
check "and another at the national body" test "$ln" != "$lc" -a "$ln" != "$lo"
out=$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
expect_eq "acquiring again gives the same link code" "$lc" \
    "$(sql kh_gw_a "SELECT link_code FROM t_131016.linkcode WHERE local_id = '$LOCAL_C'")"

for db in kh_gw_a kh_gw_b kh_gw_b2 kh_router; do
    expect_eq "$db holds no copy of the resident-record code" "0" "$(dump_count "$db" "$RESIDENT")"
done
finish
