# Runs last: the operational logs of router and gateways after all the other
# tests hold no local IDs, link codes, resident-record codes or item values.
. "$(dirname "$0")/lib.sh"
# some traffic of its own, so the scan has something to find even when run alone
new_person
client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=7654321 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O" >/dev/null
logs=("$KH_STACK"/log/router.log "$KH_STACK"/log/gw-a.log "$KH_STACK"/log/gw-b.log)
# the scans below find nothing in a log that is not there: each must exist
# and hold its process's start and some traffic
# (the count takes in the earlier runs' logs: a test may restart a daemon
# just before, as it_zz_connections does the router)
for l in "${logs[@]}"; do
    check "$(basename "$l") exists and says its process started" grep -q '"ready' "$l"
    n=$(cat "$l" "$l".* 2>/dev/null | wc -l || true) # no earlier run: cat fails
    check "... and holds more than its start, with its earlier runs ($n lines)" test "$n" -ge 20
done
# and the logs of earlier runs of daemons restarted during the tests
# (khstack keeps them as NAME.log.<time>): scanned for personal data too
for l in "$KH_STACK"/log/*.log.*; do [ -e "$l" ] && logs+=("$l"); done
check "logs are JSON lines" bash -c '! grep -vh "^{.*}$" "$@"' _ "${logs[@]}"
secrets=$(mktemp)
trap 'rm -f "$secrets"' EXIT
orgs=$(for db in kh_gw_a kh_gw_b kh_gw_b2; do sql $db "SELECT org_code FROM kh.tenant"; done | paste -sd'|' -)
{
    # every tenant of both gateways
    for db in kh_gw_a kh_gw_b kh_gw_b2; do
        for t in $(sql $db "SELECT schema_name FROM kh.tenant ORDER BY 1"); do
            sql $db "SELECT local_id FROM $t.linkcode UNION SELECT link_code FROM $t.linkcode
                     UNION SELECT local_id FROM $t.replica
                     UNION SELECT v FROM $t.replica, json_each_text(data) AS e(k, v)
                     -- identifying values: long numbers (dates, codes) and text (names);
                     -- short amounts like 100000 also appear as counts in the log
                     WHERE (v ~ '^[0-9]+$' AND length(v) >= 8) OR (v !~ '^[-0-9]+$' AND length(v) >= 6)"
        done
    done
} | sort -u | grep -vxE "|$orgs" >"$secrets" # organisation codes are not personal
n=$(wc -l <"$secrets")
check "there is personal data to look for ($n values)" test "$n" -ge 5
# whole words only: a value must not match inside a message id or a timestamp
hits=$(grep -hwoFf "$secrets" "${logs[@]}" | sort -u | head -5 || true)
expect_eq "no local ID, link code or item value in the operational logs" "" "$hits"
# message ids and link codes (32 hex digits) taken out first: 11 digits inside
# one of them are not a resident-record code
hits=$(sed -E 's/[0-9a-f]{32}/<hex>/g' "${logs[@]}" | grep -E '(^|[^0-9])19[0-9]{9}([^0-9]|$)' | head -3 || true)
expect_eq "no resident-record code in the operational logs" "" "$hits"
finish
