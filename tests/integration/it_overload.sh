# Overload is refused, not queued (issue 11, class 9): 300 connections
# against one gateway gave p50 8.9 s and memory tenfold. Each listener now
# admits a request only if it has room (gateway/core/khhttp.c, admit): at
# most max_inflight requests being answered, tenant_max_inflight of one
# tenant and system_max_inflight of one business system, and max_connections
# connections; otherwise 503 KH-5003 with Retry-After at once. A tenant with
# nothing in flight is admitted even when the listener is full. Here gw-b's
# limits are made small (SIGHUP) and the router is stopped (SIGSTOP), so that
# queries stay in flight for as long as the test needs. Last, the peer
# listener, where the tenant is the recipient (kh_http_admit_for), and the
# admin listener, where the operator is the unit.
. "$(dirname "$0")/lib.sh"
new_person
LOCAL_T="4${LOCAL_C:1}" LOCAL_S="5${LOCAL_C:1}"
client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=1000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
client 130001 welfare linkcode "$LOCAL_T" "$RESIDENT" >/dev/null
client S00001 loans linkcode "$LOCAL_S" "$RESIDENT" >/dev/null
conf=$KH_STACK/gw-b.conf
router_pid=$(cat "$KH_STACK/run/router.pid")
restore() {
    kill -CONT "$router_pid" 2>/dev/null || true
    reconf_restore gw-b
    reconf_restore gw-a
}
trap restore EXIT
# limits MAX TENANT SYSTEM CONNS: gw-b's admission limits, applied by SIGHUP
limits() {
    reconf gw-b "max_inflight = $1" "tenant_max_inflight = $2" "system_max_inflight = $3" \
        "max_connections = $4"
}
# hang ORG SYSTEM STAFF PROCEDURE LOCAL_ID: a query left waiting (the router is stopped)
hang() {
    client "$1" "$2" --timeout-ms 9000 query "$3" "$4" 131016 TK001 "$5" >/dev/null &
    HUNG+=($!)
    local db=kh_gw_b s=t_${1,,}
    [ "$1" = S00001 ] && db=kh_gw_b2 # its tenant_db
    for _ in $(seq 1 50); do
        [ "$(sql $db "SELECT count(*) FROM $s.query WHERE local_id = '$5' AND state = 'sent'")" -gt "${6:-0}" ] && return 0
        sleep 0.1
    done
    fail "a query of $1 $2 did not get in flight"
}
# timed ORG SYSTEM: a quick request (the system's list of queries); prints
# its output and how long it took
timed() {
    local t0 out
    t0=$(date +%s%N)
    out=$(client "$1" "$2" list limit=1)
    printf '%s (%d ms)' "$out" $((($(date +%s%N) - t0) / 1000000))
}
HUNG=()

limits 2 2 2 1024
kill -STOP "$router_pid"
hang N00001 pension N-PEN-001 JT006 "$LOCAL_N"
hang 130001 welfare T-WEL-001 JT003 "$LOCAL_T"
out=$(timed 130001 childrearing)
expect_contains "the listener full (2 in flight): a tenant with one in flight is refused" \
    "REFUSED KH-5003: overloaded: this listener has 2 requests in flight (at most 2)" "$out"
ms=${out##*(}; ms=${ms%% ms)}
check "... at once (${ms} ms)" test "$ms" -lt 1000
out=$(timed S00001 loans)
expect_contains "a tenant with nothing in flight is still served" "OK" "$out"

limits 8 2 1 1024
hang 130001 childrearing T-CR-001 JT007 "$LOCAL_T" 1
expect_contains "a tenant with 2 in flight (its limit) is refused" \
    "REFUSED KH-5003: overloaded: this organisation has 2 requests in flight (at most 2)" \
    "$(timed 130001 housing)"
expect_contains "a business system with 1 in flight (its limit) is refused" \
    "REFUSED KH-5003: overloaded: this client has 1 requests in flight (at most 1)" \
    "$(timed N00001 pension)"
biz=$(awk '$1 == "business_listen" { print $3 }' "$conf")
sys=$PKI/org/N00001/systems/pension
raw=$(printf 'GET /v1/query/list HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "$biz" -cert "$sys.crt" -key "$sys.key" \
        -CAfile "$PKI/national-ca.crt" -quiet -ign_eof 2>/dev/null | tr -d '\r' || true)
expect_contains "the refusal is 503" "HTTP/1.1 503 " "$raw"
expect_contains "... and says when to retry" "Retry-After: 1" "$raw"

kill -CONT "$router_pid"
for p in "${HUNG[@]}"; do wait "$p" || true; done
expect_contains "once the queries are over, their places are free again" "OK" "$(timed 130001 housing)"

# the connection limit is checked by it_aa_connections (first, on a fresh stack)

# Handshakes: with handshake_rate = 2, eight connections at once from one
# address: two go through (and one more per half second the burst takes),
# the rest are refused at their first message (a TLS alert: no HTTP before
# TLS), counted and logged; a second later there is room again.
reconf gw-b "handshake_rate = 2"
hs=$(mktemp -d)
metric_hs() {
    "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-b admin metrics 2>&1 |
        sed -n 's/^kakehashi_http_handshakes_refused_total{listener="business"} //p'
}
logged() { grep -c 'refused TLS handshakes from 127.0.0.1: over handshake_rate (2 per second' "$KH_STACK/log/gw-b.log" || true; }
m0=$(metric_hs) l0=$(logged)
check "the metric is there before ($m0)" test -n "$m0"
sleep 1.1 # the business listener's budget full again (the requests above took some)
t0=$(date +%s%N)
for i in 1 2 3 4 5 6 7 8; do
    printf 'GET /v1/query/list HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n' |
        timeout 10 openssl s_client -connect "$biz" -cert "$sys.crt" -key "$sys.key" \
            -CAfile "$PKI/national-ca.crt" -ign_eof >"$hs/$i" 2>&1 &
done
wait
# the handshakes all began within the burst's time: 2 tokens, and 2 more a second
bound=$((2 + ($(date +%s%N) - t0) / 500000000))
served=$(grep -l '^HTTP/1.1 ' "$hs"/* | wc -l)
alerted=$(grep -l 'alert handshake failure' "$hs"/* | wc -l)
check "handshake_rate 2: at most $bound of 8 handshakes at once go through ($served)" \
    test "$served" -le "$bound"
check "... at least one does" test "$served" -ge 1
check "... some are refused ($alerted)" test "$alerted" -ge 1
check "... each of the others with a handshake_failure alert" test $((served + alerted)) = 8
check "... and the log says so, once a second at most" test "$(logged)" -gt "$l0"
m1=$(metric_hs)
check "... and the metrics count them ($m0 -> $m1)" test "$((m1 - m0))" -ge "$alerted"
rm -rf "$hs"
sleep 1.2
expect_contains "a second later a new connection is served" "OK" "$(timed 130001 housing)"
check "gw-b took its own configuration back" reconf_restore gw-b
expect_contains "and serves as before" "OK" "$(timed 130001 housing)"

# The peer listener's one client, the router, carries every tenant's
# queries: there the tenant is the recipient the router signed. gw-a (Chiyoda
# and Osaka) gets max_inflight = tenant_max_inflight = 1, and a query to
# Chiyoda is held in flight by a lock on Chiyoda's replay table. A second
# query to Chiyoda is refused; one to Osaka is served although the listener
# is full, at once (before, the router's one query in flight shut every
# tenant out).
reconf gw-a "max_inflight = 1" "tenant_max_inflight = 1"
# locks WANTED: the count of locks on Chiyoda's replay table, granted or not
locks() {
    sql kh_gw_a "SELECT count(*) FROM pg_locks WHERE relation = 't_131016.seen_msg'::regclass
                 AND granted = $1"
}
sql kh_gw_a "BEGIN; LOCK TABLE t_131016.seen_msg IN ACCESS EXCLUSIVE MODE;
             SELECT pg_sleep(6); COMMIT" >/dev/null &
locker=$!
for _ in $(seq 1 50); do [ "$(locks true)" -gt 0 ] && break; sleep 0.1; done
check "Chiyoda's replay table is locked" test "$(locks true)" -gt 0
held=$(mktemp)
client N00001 pension --timeout-ms 20000 query N-PEN-001 JT006 131016 TK001 "$LOCAL_N" >"$held" &
pension=$!
for _ in $(seq 1 50); do [ "$(locks false)" -gt 0 ] && break; sleep 0.1; done
check "a query to Chiyoda is in flight at gw-a, waiting for the lock" test "$(locks false)" -gt 0
# (an asking gateway retries a KH-5003 with backoff: whether the provider
# refused is read from the router's log, and "at once" from the lock, still
# held when the answer comes)
out=$(client N00001 pension query N-PEN-001 JT006 271004 TK001 "$LOCAL_N")
waiting=$(locks false)
case $out in
OK* | *KH-3001*) pass "peer listener full: a query to another tenant (Osaka) is served" ;;
*) fail "peer listener full: a query to another tenant (Osaka) is served: $out" ;;
esac
check "... at once, while the query to Chiyoda still waits" test "$waiting" -gt 0
check "... never refused by gw-a" \
    test "$(grep -c 'JT006 N00001 -> 271004: refused_by_provider' "$KH_STACK/log/router.log" || true)" = 0
refusals() { grep -c 'JT003 130001 -> 131016: refused_by_provider KH-5003' "$KH_STACK/log/router.log" || true; }
r0=$(refusals)
welfare=$(mktemp)
client 130001 welfare query T-WEL-001 JT003 131016 TK001 "$LOCAL_T" >"$welfare" &
second=$!
for _ in $(seq 1 50); do [ "$(refusals)" -gt "$r0" ] && break; sleep 0.1; done
check "a second query to Chiyoda (1 in flight, its limit) is refused by gw-a with KH-5003" \
    test "$(refusals)" -gt "$r0"
check "... while the first still waits" test "$(locks false)" -gt 0
wait "$locker" || true
wait "$pension" || true
wait "$second" || true
expect_contains "the held query is answered once the lock is gone" "OK" "$(cat "$held")"
expect_contains "... and the refused one, retried by gw-b, then too" "OK" "$(cat "$welfare")"
rm -f "$held" "$welfare"
reconf_restore gw-a

# The admin listener has limits of its own (before, none: one operator's
# script could hold every database worker). Every operator's certificate
# has O=KH-OPERATOR, so the operator is the unit: with
# admin_max_inflight = 3 and operator_max_inflight = 2, an auditor's two
# reads of Chiyoda's audit log (locked) and a tenant admin's one fill it
# (three of gw-a's database workers wait for the lock: the stack has the
# default four, so the fourth answers the operator admitted past the full
# listener).
reconf gw-a "admin_max_inflight = 3" "operator_max_inflight = 2"
T=$(mktemp -d)
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
for op in aud-131016 ta-131016 admin; do
    expect_contains "$op logs in" "operator: $op" "$(adm "$op" --token-file "$T/$op.tok" login)"
done
sql kh_gw_a "BEGIN; LOCK TABLE t_131016.audit_log IN ACCESS EXCLUSIVE MODE;
             SELECT pg_sleep(8); COMMIT" >/dev/null &
locker=$!
audit_locks() {
    sql kh_gw_a "SELECT count(*) FROM pg_locks WHERE relation = 't_131016.audit_log'::regclass
                 AND granted = $1"
}
for _ in $(seq 1 50); do [ "$(audit_locks true)" -gt 0 ] && break; sleep 0.1; done
check "Chiyoda's audit log is locked" test "$(audit_locks true)" -gt 0
waiters=()
# read OPERATOR N: one more read of the audit log in flight (N waiting in all)
read_audit() {
    adm "$1" --token-file "$T/$1.tok" audit 131016 --limit 1 >/dev/null &
    waiters+=($!)
    for _ in $(seq 1 50); do [ "$(audit_locks false)" -ge "$2" ] && break; sleep 0.1; done
    check "an audit-log read of $1 is in flight ($2 waiting)" test "$(audit_locks false)" -ge "$2"
}
read_audit aud-131016 1
read_audit aud-131016 2
admin_listen=$(awk '$1 == "admin_listen" { print $3 }' "$KH_STACK/gw-a.conf")
op=$PKI/operator/aud-131016/tls
raw=$(printf 'GET /admin/v1/whoami HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n' \
    "$(cat "$T/aud-131016.tok")" |
    timeout 10 openssl s_client -connect "$admin_listen" -cert "$op.crt" -key "$op.key" \
        -CAfile "$PKI/national-ca.crt" -quiet -ign_eof 2>/dev/null | tr -d '\r' || true)
expect_contains "an operator with 2 in flight (its limit) is refused: 503" "HTTP/1.1 503 " "$raw"
expect_contains "... with Retry-After" "Retry-After: 1" "$raw"
expect_contains "... in the API's JSON" \
    '{"code":"KH-5003","message":"overloaded: this client has 2 requests in flight (at most 2)' "$raw"
read_audit ta-131016 3
expect_contains "the admin listener full (3): an operator with one in flight is refused" \
    "REFUSED KH-5003: overloaded: this listener has 3 requests in flight (at most 3)" \
    "$(adm ta-131016 --token-file "$T/ta-131016.tok" whoami)"
t0=$(date +%s%N)
out=$(adm admin --token-file "$T/admin.tok" whoami)
ms=$((($(date +%s%N) - t0) / 1000000))
expect_contains "an operator with nothing in flight is still served" "operator: admin" "$out"
check "... at once (${ms} ms), while the reads still wait" \
    test "$ms" -lt 5000 -a "$(audit_locks false)" -ge 3
wait "$locker" || true
for p in "${waiters[@]}"; do wait "$p" || true; done
expect_contains "once the reads are over, their places are free again" "operator: ta-131016" \
    "$(adm ta-131016 --token-file "$T/ta-131016.tok" whoami)"
for op in aud-131016 ta-131016 admin; do adm "$op" --token-file "$T/$op.tok" logout >/dev/null; done
rm -rf "$T"
trap - EXIT
restore
finish
