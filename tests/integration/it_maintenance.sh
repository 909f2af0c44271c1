# Maintenance mode (issue 13, item 3): a tenant's admin puts the tenant in
# maintenance and its new work is refused with KH-5008 at once — its own
# registrations, queries the router brings it — while the other tenant of the
# same gateway is served and reads of work in flight (query status) go on; a
# platform admin does the same for the whole gateway, whose /ready then says
# 503; a row set by another node's admin API is followed within seconds;
# every change is audited; roles and bad input are refused.
. "$(dirname "$0")/lib.sh"
. "$KH_ROOT/tools/lib.sh" # kh_within, kh_http_ok
new_person
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
expect_code() { expect_contains "$1 -> $2" "REFUSED $2:" "$3"; }
register() {
    client 131016 tax register "$LOCAL_C" TK001 "$1" fiscal_year=2026 total_income=4100000 \
        annual_tax=205000 spouse_category=1
}
ask() { client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O"; }
refused_now() { register 20260102 | grep -q "REFUSED KH-5008"; }
served_now() { register 20260103 | grep -q "OK registered"; }
cleanup() {
    sql kh_gw_a "DELETE FROM kh.maintenance" >/dev/null
}
trap cleanup EXIT
READY="http://127.0.0.1:$((KH_PORT_BASE + 14))/ready"
READY_B="http://127.0.0.1:$((KH_PORT_BASE + 24))/ready"

expect_contains "Chiyoda registers" "OK registered" "$(register 20260101)"
for who in "131016 tax $LOCAL_C" "271004 childallowance $LOCAL_O"; do
    set -- $who
    expect_contains "$1 obtains a link code" "OK link code acquired" "$(client "$1" "$2" linkcode "$3" "$RESIDENT")"
done
out=$(ask)
expect_contains "Osaka's query is answered" "OK FOUND" "$out"
handle=$(grep -o 'handle=[0-9a-f]*' <<<"$out" | head -1 | cut -d= -f2)

# --- a tenant's maintenance ----------------------------------------------------
expect_code "on needs a reason" KH-6008 "$(adm ta-131016 maintenance on 131016)"
expect_code "on must be a boolean" KH-6008 \
    "$(adm ta-131016 raw POST /admin/v1/tenants/131016/maintenance '{"on":"yes","reason":"x"}')"
expect_code "a tenant admin may not stop another tenant" KH-6006 \
    "$(adm ta-131016 maintenance on 271004 --reason "upgrade")"
expect_code "nor the whole gateway" KH-6005 "$(adm ta-131016 maintenance on --reason "upgrade")"
expect_code "a responder may not set it" KH-6005 "$(adm resp-131016 maintenance on 131016 --reason x)"
expect_contains "Chiyoda's admin puts Chiyoda in maintenance" "maintenance: true" \
    "$(adm ta-131016 maintenance on 131016 --reason "database upgrade, until 18:00")"
out=$(register 20260104)
expect_code "Chiyoda's registration is refused at once" KH-5008 "$out"
expect_contains "... naming the tenant" "tenant 131016 is in maintenance" "$out"
expect_contains "a query the router brings to Chiyoda is refused" "KH-5008" "$(ask)"
expect_contains "Osaka, on the same gateway, is served" "OK link code acquired" \
    "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"
expect_contains "a responder sees the maintenance and its reason" "database upgrade, until 18:00" \
    "$(adm resp-131016 --json maintenance 131016)"
kh_http_ok "$READY" && pass "a tenant's maintenance leaves gw-a ready" || fail "gw-a is not ready"
expect_contains "off again" "maintenance: false" "$(adm ta-131016 maintenance off 131016)"
expect_contains "Chiyoda registers again" "OK registered" "$(register 20260105)"
expect_code "off twice" KH-6011 "$(adm ta-131016 maintenance off 131016)"
expect_eq "both changes are audited" "ta-131016,tenant:131016,true
ta-131016,tenant:131016,false" "$(sql kh_gw_a "SELECT actor || ',' || target || ',' || (detail->>'on')
    FROM kh.operator_audit WHERE action = 'maintenance.set' AND outcome = 'ok' ORDER BY id DESC LIMIT 2" | tac)"

# reads of work in flight go on: Osaka in maintenance still reads its query
adm admin maintenance on 271004 --reason "rotation" >/dev/null
expect_code "Osaka in maintenance asks nothing new" KH-5008 "$(ask)"
expect_contains "... but reads the answer of its earlier query" "FOUND" \
    "$(client 271004 childallowance status "$handle")"
adm admin maintenance off 271004 >/dev/null

# --- the whole gateway --------------------------------------------------------
expect_contains "the platform admin puts gw-a in maintenance" "maintenance: true" \
    "$(adm admin maintenance on --reason "OS patches")"
expect_code "Chiyoda is refused" KH-5008 "$(register 20260106)"
expect_contains "... naming the gateway" "gateway gw-a is in maintenance" "$(register 20260106)"
expect_code "Osaka is refused" KH-5008 "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"
kh_http_ok "$READY" && fail "gw-a says ready in maintenance" || pass "gw-a's /ready answers 503"
kh_http_ok "$READY_B" && pass "gw-b stays ready" || fail "gw-b is not ready"
expect_contains "the gateway's row is listed" "OS patches" "$(adm admin --json maintenance)"
adm admin maintenance off >/dev/null
kh_within 5 kh_http_ok "$READY" && pass "off: gw-a ready again" || fail "gw-a not ready after maintenance"
expect_contains "and serves" "OK registered" "$(register 20260107)"

# --- set by another node: followed within seconds ------------------------------
sql kh_gw_a "INSERT INTO kh.maintenance (scope, reason, set_by) VALUES ('tenant:131016', 'set elsewhere', 'it')" >/dev/null
kh_within 5 refused_now && pass "a row written elsewhere is followed within 5 s" || fail "the row was not followed"
sql kh_gw_a "DELETE FROM kh.maintenance WHERE scope = 'tenant:131016'" >/dev/null
kh_within 5 served_now && pass "... and its end too" || fail "the end was not followed"
finish
