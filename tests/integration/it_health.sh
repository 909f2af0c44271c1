# Health endpoints for load balancers (issue 12) and a database that turns
# read-only, as the old primary does after a failover:
# - GET /health and GET /ready on gw-a's health_listen (plain HTTP) answer
#   JSON; a path no route serves, a path cut by %00 and a POST are refused
#   as JSON with their codes;
# - gw-a's database made read-only (ALTER DATABASE ... SET
#   default_transaction_read_only, its sessions ended as a failover ends
#   them): /ready turns 503 KH-5007 naming the database, a registration is
#   refused 503 KH-5002 (a retry may succeed: never 500), and the gateway
#   logs that it replaces the read-only connection;
# - writable again (sessions ended again): /ready turns 200 and every
#   registration succeeds, without a restart: the workers notice that their
#   connections were ended before their next job, not by failing it.
. "$(dirname "$0")/lib.sh"
HEALTH_PORT=$((KH_PORT_BASE + 14))
LOG=$KH_STACK/log/gw-a.log

# get METHOD PATH: the whole HTTP response (head and body), or nothing
http() {
    timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$1" "$2" >&3
        cat <&3' "$HEALTH_PORT" "$1" "$2" || true
}
status() { head -1 <<<"$1" | awk '{print $2}'; }
body() { sed '1,/^\r$/d' <<<"$1"; }
# wait_ready STATUS [TEXT]: /ready answers STATUS (with TEXT in its body)
# within 15 s
wait_ready() {
    local r
    for _ in $(seq 1 150); do
        r=$(http GET /ready)
        [ "$(status "$r")" = "$1" ] && [[ $(body "$r") == *"${2:-}"* ]] && return 0
        sleep 0.1
    done
    return 1
}
readonly_db() { # on|off: gw-a's database, and its sessions ended
    if [ "$1" = on ]; then
        sql kh_router "ALTER DATABASE kh_gw_a SET default_transaction_read_only = on" >/dev/null
    else
        sql kh_router "ALTER DATABASE kh_gw_a RESET default_transaction_read_only" >/dev/null
    fi
    # from another database: a session on kh_gw_a would be read-only too
    sql kh_router "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'kh_gw_a' AND usename = 'kh_gw_a'" >/dev/null
}
trap 'readonly_db off' EXIT

r=$(http GET /health)
expect_eq "/health answers 200" 200 "$(status "$r")"
expect_contains "/health says alive" '"status":"alive"' "$(body "$r")"
expect_contains "/health is JSON" "Content-Type: application/json" "$r"

check "/ready answers 200 on a running gateway" wait_ready 200
r=$(body "$(http GET /ready)")
expect_contains "/ready: ready" '"ready":true' "$r"
expect_contains "/ready: database writable" '"database":"writable"' "$r"
expect_contains "/ready: directory loaded" '"directory":"loaded"' "$r"
expect_contains "/ready: two tenants" '"tenants":2' "$r"
case $r in *code*) fail "/ready when ready carries no code: $r" ;; *) pass "/ready when ready carries no code" ;; esac

r=$(http GET /nope)
expect_eq "an unknown path: 404" 404 "$(status "$r")"
expect_contains "an unknown path: KH-1006 as JSON" '"code":"KH-1006"' "$(body "$r")"
r=$(http GET /ready%00/x)
expect_eq "a path cut by %00: 404" 404 "$(status "$r")"
expect_contains "a path cut by %00: KH-1006" '"code":"KH-1006"' "$(body "$r")"
r=$(http POST /ready)
expect_contains "POST: KH-1001 as JSON" '"code":"KH-1001"' "$(body "$r")"
expect_contains "POST: the message says GET only" 'only GET is served' "$(body "$r")"

# the database turns read-only
new_person
warned=$(grep -c 'a write was refused as read-only (a standby?); reconnecting' "$LOG" || true)
readonly_db on
# the sessions just ended make the next check say "unreachable"; the one
# after it reaches the read-only server
check "/ready turns 503 once the database is read-only" wait_ready 503 '"database":"read-only"'
r=$(body "$(http GET /ready)")
expect_contains "/ready names KH-5007" '"code":"KH-5007"' "$r"
expect_contains "/ready names the database as read-only" '"database":"read-only"' "$r"
expect_contains "/ready is not ready" '"ready":false' "$r"
codes=""
for _ in $(seq 1 10); do
    out=$(client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=2950000)
    codes="$codes $(grep -o 'KH-[0-9]*' <<<"$out" | head -1)"
    [ "$(grep -c 'a write was refused as read-only (a standby?); reconnecting' "$LOG" || true)" -gt "$warned" ] && break
done
expect_eq "every registration on a read-only database is refused KH-5002" "" \
    "$(tr ' ' '\n' <<<"$codes" | grep -v '^KH-5002$' | grep -v '^$' || true)"
check "the gateway replaces a connection whose write was refused as read-only" \
    test "$(grep -c 'a write was refused as read-only (a standby?); reconnecting' "$LOG" || true)" -gt "$warned"
expect_eq "nothing was stored" 0 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica WHERE local_id = '$LOCAL_C'")"

# writable again: no restart
readonly_db off
check "/ready turns 200 again" wait_ready 200
# every worker noticed that the server ended its connection (the socket
# says so) and connects again before its next job: none fails for it
codes=""
for v in 1 2 3 4 5 6; do
    out=$(client 131016 tax register "$LOCAL_C" TK001 2025010$v fiscal_year=2025 total_income=2950000)
    codes="$codes $(grep -o 'OK registered\|KH-[0-9]*' <<<"$out" | head -1 | tr ' ' _)"
done
expect_eq "six registrations in a row succeed without a restart" \
    " OK_registered OK_registered OK_registered OK_registered OK_registered OK_registered" "$codes"
expect_eq "stored once each" 6 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica WHERE local_id = '$LOCAL_C'")"
finish
