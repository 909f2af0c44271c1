# The connectivity check (issue 13, item 3): `khctl admin diagnose` on a
# healthy network says ok for every database, migration, certificate, key,
# the router, its directory and clock; a platform admin's only; a tenant's
# migrations behind the gateway's, and a router that is down, each fail with
# a detail that says what to do, and exit 1; nothing is changed by it.
. "$(dirname "$0")/lib.sh"
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" "$@" 2>&1; }
expect_code() { expect_contains "$1 -> $2" "REFUSED $2:" "$3"; }
restore() {
    sql kh_gw_a "INSERT INTO t_271004.schema_migrations (version) VALUES ('$last') ON CONFLICT DO NOTHING" >/dev/null
    "$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null 2>&1 || true
}
last=$(sql kh_gw_a "SELECT max(version) FROM t_271004.schema_migrations")
trap restore EXIT

T=$(mktemp -d)
adm gw-a admin --token-file "$T/tok" login >/dev/null
counts() {
    sql kh_gw_a "SELECT (SELECT count(*) FROM kh.operator_audit) || ',' ||
        (SELECT count(*) FROM t_131016.audit_log) || ',' || (SELECT count(*) FROM t_271004.audit_log) || ',' ||
        (SELECT count(*) FROM kh.maintenance) || ',' || (SELECT count(*) FROM kh.operator_session)"
}
c0=$(counts)
out=$(adm gw-a admin --token-file "$T/tok" --json diagnose) && rc=0 || rc=$?
expect_eq "a diagnosis changes nothing (audit rows, sessions, maintenance)" "$c0" "$(counts)"
adm gw-a admin --token-file "$T/tok" logout >/dev/null
rm -rf "$T"
expect_eq "a healthy gw-a: exit 0" "0" "$rc"
expect_contains "... every check ok" '"gateway":"gw-a","ok":true' "$out"
for c in '"check":"database","target":"gateway","status":"ok"' \
    '"check":"migrations","target":"271004","status":"ok"' \
    '"check":"keys","target":"131016","status":"ok"' \
    '"check":"certificate","target":"gateway TLS (business)","status":"ok"' \
    '"check":"router","target":"127.0.0.1:'"$KH_PORT_BASE"'","status":"ok"' \
    '"check":"directory","target":"router","status":"ok","detail":"signature valid' \
    '"check":"directory","target":"in use","status":"ok"' \
    '"check":"clock","target":"router","status":"ok"'; do
    expect_contains "row ${c:9:40}" "$c" "$out"
done
case $out in *'"status":"fail"'* | *'"status":"warn"'*) fail "a healthy network has a failed or warned check" ;; *) pass "no check failed or warned" ;; esac
out=$(adm gw-b admin diagnose) && rc=0 || rc=$?
expect_contains "gw-b checks the tenant in a database of its own" "S00001                  ok      reachable" "$out"
expect_code "a tenant admin may not diagnose" KH-6005 "$(adm gw-a ta-131016 diagnose || true)"

# a tenant's migrations behind the gateway's
sql kh_gw_a "DELETE FROM t_271004.schema_migrations WHERE version = '$last'" >/dev/null
out=$(adm gw-a admin --json diagnose) && rc=0 || rc=$?
expect_eq "migrations behind: exit 1" "1" "$rc"
expect_contains "... the tenant's row fails and says what to run" \
    '"check":"migrations","target":"271004","status":"fail","detail":"behind: last applied' "$out"
expect_contains "... the other tenant is still ok" '"check":"migrations","target":"131016","status":"ok"' "$out"
sql kh_gw_a "INSERT INTO t_271004.schema_migrations (version) VALUES ('$last')" >/dev/null

# kakehashi-gw -t: the same checks without a running gateway
GW="$KH_BUILD/gateway/daemon/kakehashi-gw"
out=$("$GW" -c "$KH_STACK/gw-a.conf" -t 2>&1) && rc=0 || rc=$?
expect_eq "-t on a healthy gw-a: exit 0" "0" "$rc"
expect_contains "... and says what it checked" "checked: 21 database, certificate and key checks, 0 failed" "$out"
sql kh_gw_a "DELETE FROM t_271004.schema_migrations WHERE version = '$last'" >/dev/null
out=$("$GW" -c "$KH_STACK/gw-a.conf" -t 2>&1) && rc=0 || rc=$?
expect_eq "-t with a tenant's migrations behind: exit 1" "1" "$rc"
expect_contains "... naming the tenant" "fail: migrations 271004: behind" "$out"
sql kh_gw_a "INSERT INTO t_271004.schema_migrations (version) VALUES ('$last')" >/dev/null
T2=$(mktemp -d)
sed "s/^db = .*/db = host=127.0.0.1 port=1 dbname=kh_gw_a connect_timeout=2/" "$KH_STACK/gw-a.conf" >"$T2/gw.conf"
out=$("$GW" -c "$T2/gw.conf" -t 2>&1) && rc=0 || rc=$?
rm -rf "$T2"
expect_eq "-t with the database unreachable: exit 1" "1" "$rc"
expect_contains "... the file itself is fine" "configuration ok: 2 tenants" "$out"
expect_contains "... the database is not" "fail: database gateway: unreachable (db)" "$out"
case $out in *password=* | *host=127.0.0.1*) fail "-t prints a connection string" ;; *) pass "-t prints no connection string" ;; esac

# the router down
kill "$(cat "$KH_STACK/run/router.pid")"
sleep 0.5
out=$(adm gw-a admin --json diagnose) && rc=0 || rc=$?
expect_eq "router down: exit 1" "1" "$rc"
expect_contains "... the router row says unreachable" '"check":"router","target":"127.0.0.1:'"$KH_PORT_BASE"'","status":"fail","detail":"unreachable' "$out"
expect_contains "... the databases are still checked" '"check":"database","target":"gateway","status":"ok"' "$out"
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null 2>&1
out=$(adm gw-a admin --json diagnose) && rc=0 || rc=$?
expect_eq "the router back: exit 0" "0" "$rc"
check "the tenant admin's refused diagnosis is in the operators' audit log" \
    test "$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE action = 'diagnose'
        AND actor = 'ta-131016' AND code = 'KH-6005'")" -ge 1
finish
