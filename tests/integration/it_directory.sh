# The router's signed directory is refreshed while the gateways run (issue
# 13): on demand (khctl admin directory refresh, platform admins) and every
# directory_refresh_s. The router restarts with a changed legal-basis table
# (LB01 narrowed to TK002); gw-a takes the new version when asked, gw-b by
# itself once its refresh period is short; a query the new table no longer
# allows is refused by gw-a itself, and answered again once the table is
# restored and refreshed, without any gateway restarting. A refresh that
# cannot reach the router changes nothing. (That an older or future directory is refused is the unit test
# test_crypto's directory_successor; the version rule is kh_dir_successor_why.)
. "$(dirname "$0")/lib.sh"
restore_lb01() { sql kh_router "UPDATE router.legal_basis SET items = '{TK001,TK002}' WHERE id = 'LB01'" >/dev/null; }
trap 'reconf_restore gw-b; restore_lb01' EXIT
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=3550000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
adm() { local gw=$1; shift; "$KH_ROOT/tools/khstack" admin "$KH_STACK" "$gw" "$@" 2>&1 || true; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["directory"][sys.argv[1]])' "$1" 2>/dev/null || echo "?"; }
router_pid() { cat "$KH_STACK/run/router.pid"; }
router_restart() {
    local pid
    pid=$(router_pid)
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    sleep 1.1 # a new directory is issued in a later second
    "$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
}
ask() { client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O" || true; }

# what is in use (after a first refresh: an earlier test may have restarted
# the router), and who may see it or refresh it
adm gw-a admin directory refresh >/dev/null
d0=$(adm gw-a admin --json directory)
issued0=$(field issued_at <<<"$d0") sha0=$(field sha256 <<<"$d0") installs0=$(field installs <<<"$d0")
check "the directory in use has an issue time ($issued0)" test "$issued0" != "?"
expect_contains "it lists the organisations" '"code":"131016"' "$d0"
check "with a digest" test "${#sha0}" = 64
expect_contains "a tenant admin may read it" '"legal_basis_version"' "$(adm gw-a ta-131016 --json directory)"
expect_contains "a responder may not" "KH-6005" "$(adm gw-a resp-131016 directory)"
expect_contains "a tenant admin may not refresh it" "KH-6005" "$(adm gw-a ta-131016 directory refresh)"
expect_contains "a refresh takes no fields" "KH-6008" \
    "$(adm gw-a admin raw POST /admin/v1/directory/refresh '{"x": 1}')"

# the router's directory is the one in use: nothing changes
audited() { sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE action = 'directory.refresh' AND actor = 'admin'"; }
a0=$(audited)
out=$(adm gw-a admin --json directory refresh)
expect_contains "a refresh finds the version in use" '"changed":false' "$out"
expect_eq "the same digest" "$sha0" "$(field sha256 <<<"$out")"
expect_eq "the refresh asked for is audited" "$((a0 + 1))" "$(audited)"

expect_contains "before: JT001 for TK001 is answered" "OK FOUND" "$(ask)"

# the router restarts with LB01 narrowed to TK002
sql kh_router "UPDATE router.legal_basis SET items = '{TK002}' WHERE id = 'LB01'" >/dev/null
router_restart
expect_contains "the diagnosis sees that the router's differs" "khctl admin directory refresh" \
    "$(adm gw-a admin --json diagnose)"
expect_eq "gw-a still uses the old version until asked" "$issued0" \
    "$(field issued_at <<<"$(adm gw-a admin --json directory)")"
out=$(adm gw-a admin --json directory refresh)
expect_contains "the refresh takes the router's new directory" '"changed":true' "$out"
issued1=$(field issued_at <<<"$out")
check "issued after the old one ($issued0 -> $issued1)" test "$issued1" \> "$issued0"
check "another digest" test "$(field sha256 <<<"$out")" != "$sha0"
expect_eq "one more version installed" "$((installs0 + 1))" "$(field installs <<<"$out")"
expect_eq "no refresh error" "" "$(field last_error <<<"$out")"
out=$(ask)
expect_contains "gw-a itself refuses what the new table no longer allows" "KH-2001" "$out"
expect_eq "refused before anything was sent: the router saw no such query" 0 \
    "$(sql kh_router "SELECT count(*) FROM router.query_record WHERE msg_id = '$(grep -o '[0-9a-f]\{32\}' <<<"$out" | head -1)'")"
m=$(adm gw-a admin metrics)
expect_contains "the metrics count the install" "kakehashi_directory_installs_total $((installs0 + 1))" "$m"
expect_contains "and say the last refresh was good" "kakehashi_directory_refresh_ok 1" "$m"

# gw-b: periodic refresh
reconf gw-b "directory_refresh_s = 1"
got=""
for _ in $(seq 1 50); do
    got=$(field issued_at <<<"$(adm gw-b admin --json directory)")
    [ "$got" = "$issued1" ] && break
    sleep 0.1
done
expect_eq "gw-b takes it by itself within its refresh period" "$issued1" "$got"
reconf_restore gw-b

# the router unreachable: a refresh fails and nothing changes
kill -TERM "$(router_pid)"
for _ in $(seq 1 100); do kill -0 "$(router_pid)" 2>/dev/null || break; sleep 0.05; done
out=$(adm gw-a admin directory refresh)
expect_contains "a refresh without the router is refused with KH-5004" "KH-5004" "$out"
d=$(adm gw-a admin --json directory)
expect_eq "the version in use stays" "$issued1" "$(field issued_at <<<"$d")"
expect_contains "and the failure is shown" "KH-5004" "$(field last_error <<<"$d")"
expect_contains "the metrics say the last refresh failed" "kakehashi_directory_refresh_ok 0" \
    "$(adm gw-a admin metrics)"

# LB01 restored: the router restarts, gw-a refreshes, the query is answered again
restore_lb01
sleep 1.1
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
# queries keep coming while the version changes under them: each ends
# under one version (refused by gw-a with KH-2001 under the old one, answered
# under the new), none is lost (and under AddressSanitizer: no version is
# freed while a query still holds it)
burst=$(mktemp)
for _ in $(seq 1 12); do
    client 271004 childallowance --async query O-CA-001 JT001 131016 TK001 "$LOCAL_O" || true
done >"$burst" 2>&1 &
bpid=$!
expect_contains "the refresh takes the restored table" '"changed":true' \
    "$(adm gw-a admin --json directory refresh)"
wait "$bpid"
hs=$(grep -o '[0-9a-f]\{32\}' "$burst" | sort -u | sed "s/.*/'&'/" | paste -sd, -)
rm -f "$burst"
expect_eq "twelve queries got handles" 12 "$(tr ',' '\n' <<<"$hs" | grep -c .)"
for _ in $(seq 1 100); do
    [ "$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($hs) AND state IN ('sent', 'timed_out')")" = 0 ] && break
    sleep 0.1
done
expect_eq "each ended answered, or refused under the old table" 12 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($hs) AND (state = 'answered' OR (state = 'refused' AND code = 'KH-2001'))")"
out=$(ask)
expect_contains "JT001 for TK001 is answered again, no gateway restarted" "OK FOUND" "$out"
expect_contains "with the person's value" "TK001.total_income=3550000" "$out"
adm gw-b admin directory refresh >/dev/null
finish
