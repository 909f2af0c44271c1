# Several nodes per gateway (issue 12): the signed directory lists the peer
# endpoints of gw-b's nodes 1 and 2; the router probes each one's
# GET /v1/ready, spreads envelopes over the nodes that are ready, and when a
# node dies (kill -9) sends the envelope it could not deliver to the other
# node: no query fails, each is answered once. A node that comes back is
# found ready by the probes and served again.
. "$(dirname "$0")/lib.sh"
K=$KH_ROOT/tools/khstack
LOGR=$KH_STACK/log/router.log
LOG1=$KH_STACK/log/gw-b.log
LOG2=$KH_STACK/log/gw-b-n2.log
cleanup() {
    [ ! -f "$KH_STACK/run/gw-b-n2.pid" ] || kill -TERM "$(cat "$KH_STACK/run/gw-b-n2.pid")" 2>/dev/null || true
    rm -f "$KH_STACK/run/gw-b-n2.pid"
    "$K" up "$KH_STACK" >/dev/null # node 1, whatever the test left
}
trap cleanup EXIT

P1=$(awk '$1 == "peer_listen" { print $3 }' "$KH_STACK/gw-b.conf")
P2=127.0.0.1:$((KH_PORT_BASE + 222)) # node 2's peer listener (tools/khstack node)
out=$("$KH_BUILD/tools/khrouter" -c "$KH_STACK/router.conf" -t 2>&1)
expect_contains "the router's configuration lists two endpoints per gateway" \
    "5 organisations, 4 gateway endpoints" "$out"

new_person
client N00001 pension register "$LOCAL_N" TK008 20250101 pension_no=0000012345 pension_type=11 \
    entitlement_date=20200101 annual_amount=780000 payment_status=1 >/dev/null
client N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
client 271004 welfare linkcode "$LOCAL_O" "$RESIDENT" >/dev/null

lines() { grep -c "$2" "$1" 2>/dev/null || true; }
wait_line() { # FILE TEXT N: until FILE has more than N lines with TEXT (10 s)
    for _ in $(seq 1 100); do
        [ "$(lines "$1" "$2")" -gt "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
answered() { lines "$1" 'tenant N00001 answered message'; }
HANDLES=$KH_STACK/.failover-handles.$$
: >"$HANDLES"
ask_n() { # N: asks N times; prints how many were answered (OK FOUND), keeps their handles
    local ok=0 out
    for _ in $(seq 1 "$1"); do
        out=$(client 271004 welfare query O-WEL-001 JT003 N00001 TK008 "$LOCAL_O")
        case $out in "OK FOUND"*) ok=$((ok + 1)) ;; esac
        grep -o 'handle=[0-9a-f]\{32\}' <<<"$out" | cut -d= -f2 >>"$HANDLES" || true
    done
    echo "$ok"
}

check "while node 2 does not run, the router finds it down" \
    wait_line "$LOGR" "endpoint $P2 of gw-b down" 0
up2=$(lines "$LOGR" "endpoint $P2 of gw-b up: ready")
"$K" node "$KH_STACK" gw-b 2 >/dev/null
check "once node 2 runs, a probe finds it ready" \
    wait_line "$LOGR" "endpoint $P2 of gw-b up: ready" "$up2"

a1=$(answered "$LOG1") a2=$(answered "$LOG2")
expect_eq "8 queries to the pension organisation, all answered" 8 "$(ask_n 8)"
b1=$(answered "$LOG1") b2=$(answered "$LOG2")
check "... node 1 answered some ($((b1 - a1)))" test $((b1 - a1)) -ge 2
check "... node 2 answered some ($((b2 - a2)))" test $((b2 - a2)) -ge 2
expect_eq "... each once" 8 $((b1 - a1 + b2 - a2))

down1=$(lines "$LOGR" "endpoint $P1 of gw-b down")
kill -9 "$(cat "$KH_STACK/run/gw-b.pid")"
rm -f "$KH_STACK/run/gw-b.pid"
# at once, before any probe: the router learns of the loss from a send
expect_eq "node 1 killed: 6 queries at once, all answered" 6 "$(ask_n 6)"
c2=$(answered "$LOG2")
expect_eq "... by node 2" 6 $((c2 - b2))
check "the router took node 1 out" test "$(lines "$LOGR" "endpoint $P1 of gw-b down")" -gt "$down1"
check "... and sent node 1 at most one envelope it could not deliver (sent again to node 2)" \
    test "$(lines "$LOGR" "sent again to $P2")" -le 1

up1=$(lines "$LOGR" "endpoint $P1 of gw-b up: ready")
"$K" start "$KH_STACK" gw-b >/dev/null
check "node 1 back: a probe finds it ready" wait_line "$LOGR" "endpoint $P1 of gw-b up: ready" "$up1"
d1=$(answered "$LOG1")
expect_eq "4 more queries, all answered" 4 "$(ask_n 4)"
check "... node 1 serves again ($(($(answered "$LOG1") - d1)))" test $(($(answered "$LOG1") - d1)) -ge 1

ids=$(sed "s/.*/'&'/" "$HANDLES" | paste -sd, -)
expect_eq "18 handles, distinct" "18 18" "$(wc -l <"$HANDLES") $(sort -u "$HANDLES" | wc -l)"
expect_eq "exactly one provision record per query at the provider" "18 18" \
    "$(sql kh_gw_b "SELECT count(*), count(DISTINCT msg_id) FROM t_n00001.provision_record
                    WHERE msg_id IN ($ids)" | tr '|' ' ')"
expect_eq "... and at the asker" "18 18" \
    "$(sql kh_gw_a "SELECT count(*), count(DISTINCT msg_id) FROM t_271004.provision_record
                    WHERE msg_id IN ($ids)" | tr '|' ' ')"
rm -f "$HANDLES"
finish
