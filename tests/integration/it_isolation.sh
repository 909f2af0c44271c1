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

for db in kh_gw_a kh_gw_b kh_router; do
    n=$(PGHOST="$KH_STACK/pg/run" pg_dump -U khadmin -d "$db" | grep -c "$RESIDENT" || true)
    expect_eq "$db holds no copy of the resident-record code" "0" "$n"
done
dumped=$(PGHOST="$KH_STACK/pg/run" pg_dump -U khadmin -d kh_gw_a 2>/dev/null | wc -l)
check "the dump used for that check is not empty" test "$dumped" -gt 100
finish
