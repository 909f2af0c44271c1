# Node loss (issue 12): two nodes of gw-a (two kakehashi-gw processes, the
# same tenants, the same database). With the router down, Osaka's welfare
# section asks the pension organisation (on gw-b, which stays up: Chiyoda
# would be answered by gw-a's peer listener, whose one address in the
# directory is node 1's) through node 1; the query stays in flight, retried
# by node 1.
# - While node 1 lives it keeps its lease: after longer than a lease, node 2
#   has taken nothing (no query is sent by two nodes while its node lives).
# - node 1 is killed (kill -9) and the router comes back: node 2 takes the
#   query over once node 1's lease has run out, sends the same envelope
#   again, and the query ends answered, with exactly one provision record at
#   the asker and one at the provider, and its row no longer keeps the
#   envelope (its header names the link code); the business system reads it
#   by handle from node 2.
# - node 1 back, the router down again: a query held by node 2 when node 2
#   is stopped cleanly (SIGTERM) is handed over: node 1 takes it sooner than
#   its lease would have run out, and it ends answered once.
. "$(dirname "$0")/lib.sh"
. "$KH_ROOT/tools/lib.sh" # kh_within
K=$KH_ROOT/tools/khstack
LOG2=$KH_STACK/log/gw-a-n2.log
cleanup() {
    [ ! -f "$KH_STACK/run/gw-a-n2.pid" ] || kill -TERM "$(cat "$KH_STACK/run/gw-a-n2.pid")" 2>/dev/null || true
    rm -f "$KH_STACK/run/gw-a-n2.pid"
    "$K" up "$KH_STACK" >/dev/null # router and node 1, whatever the test left
}
trap cleanup EXIT

new_person
client N00001 pension register "$LOCAL_N" TK008 20250101 pension_no=0000012345 pension_type=11 \
    entitlement_date=20200101 annual_amount=780000 payment_status=1 >/dev/null
client N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
client 271004 welfare linkcode "$LOCAL_O" "$RESIDENT" >/dev/null

N2=$("$K" node "$KH_STACK" gw-a 2)
node_of() { grep -o '"ready: [^"]*node [^"]*' "$1" | tail -1 | sed 's/.*node //'; }
NODE1=$(node_of "$KH_STACK/log/gw-a.log")
NODE2=$(node_of "$LOG2")
check "the two nodes have names of their own" test -n "$NODE1" -a -n "$NODE2" -a "$NODE1" != "$NODE2"
qcol() { sql kh_gw_a "SELECT $2 FROM t_271004.query WHERE msg_id = '$1'"; }

kill -9 "$(cat "$KH_STACK/run/router.pid")"
out=$(client 271004 welfare --async query O-WEL-001 JT003 N00001 TK008 "$LOCAL_O")
H=$(grep -o 'SENT handle=[0-9a-f]\{32\}' <<<"$out" | cut -d= -f2 || true)
check "the query got a handle while the router was down" test -n "$H"
expect_eq "node 1 holds it" "$NODE1" "$(qcol "$H" node)"
check "its sealed envelope is kept with its row" \
    test "$(qcol "$H" "length(envelope)")" -gt 100
sleep $((15 + 5 + 2)) # longer than a lease and a tick: renewed, not taken
expect_eq "node 1 still holds it after longer than a lease" "$NODE1" "$(qcol "$H" node)"
expect_eq "still in flight" sent "$(qcol "$H" state)"
expect_eq "node 2 did not take it over" 0 "$(grep -c "query $H taken over" "$LOG2" || true)"

kill -9 "$(cat "$KH_STACK/run/gw-a.pid")"
"$K" start "$KH_STACK" router >/dev/null
answered() { [ "$(qcol "$H" state)" = answered ]; }
wait_answered() {
    for _ in $(seq 1 450); do answered && return 0; sleep 0.1; done
    return 1
}
check "node 2 finishes the query once node 1's lease has run out" wait_answered
expect_eq "its final state drops the envelope and the lease" t \
    "$(qcol "$H" "envelope IS NULL AND node IS NULL AND lease_until IS NULL")"
expect_contains "node 2 says it took it over" "query $H taken over" "$(cat "$LOG2")"
expect_eq "one provision record at the asker" 1 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE msg_id = '$H'")"
expect_eq "one provision record at the provider" 1 \
    "$(sql kh_gw_b "SELECT count(*) FROM t_n00001.provision_record WHERE msg_id = '$H'")"
out=$(client 271004 welfare -g "127.0.0.1:$N2" status "$H")
expect_contains "the business system reads the answer by handle from node 2" "OK FOUND handle=$H" "$out"

"$K" start "$KH_STACK" gw-a >/dev/null
kill -9 "$(cat "$KH_STACK/run/router.pid")"
out=$(client 271004 welfare -g "127.0.0.1:$N2" --async query O-WEL-001 JT003 N00001 TK008 "$LOCAL_O")
H=$(grep -o 'SENT handle=[0-9a-f]\{32\}' <<<"$out" | cut -d= -f2 || true)
check "a query sent through node 2 while the router is down" test -n "$H"
expect_eq "node 2 holds it" "$NODE2" "$(qcol "$H" node)"
NODE1=$(node_of "$KH_STACK/log/gw-a.log")
p2=$(cat "$KH_STACK/run/gw-a-n2.pid")
t0=$(date +%s)
kill -TERM "$p2"
exited() { ! kill -0 "$p2" 2>/dev/null; }
check "node 2 stops within 5 s of SIGTERM" kh_within 5 exited
rm -f "$KH_STACK/run/gw-a-n2.pid"
expect_contains "node 2 says it handed its query over" "1 queries in flight handed over" \
    "$(grep 'handed over' "$LOG2" || true)"
expect_eq "its lease ended when node 2 stopped (or node 1 has it already)" t \
    "$(qcol "$H" "lease_until <= now() OR node <> '$NODE2'")"
taken1() { [ "$(qcol "$H" node)" = "$NODE1" ]; }
# a lease has 10 to 15 s left at any time; node 1 looks every 5 s
check "node 1 takes it over within 9 s of node 2's stop signal, before the lease would have run out" \
    kh_within $((t0 + 9 - $(date +%s))) taken1
echo "taken over $(($(date +%s) - t0)) s after the stop signal"
"$K" start "$KH_STACK" router >/dev/null
check "it ends answered" wait_answered
expect_eq "one provision record at the asker" 1 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE msg_id = '$H'")"

finish
