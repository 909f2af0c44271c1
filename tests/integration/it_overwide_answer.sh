# An answer wider than its legal basis (issue 11, tests that can fail): the
# asking gateway discards an answer that carries a field its legal-basis row
# does not allow (KH-4012), but no provider of the stack ever sends one: with
# that check disabled, every test still passed. Here a misbehaving provider,
# khforge, sends a deferred answer for a held query, as the router relays it
# to the asker's peer API, once with a field LB01 does not allow (refused with
# KH-4012; the query stays pending) and once within LB01 (accepted: the
# forged answer is otherwise right, so the refusal is about the field).
# Then the same for a normal answer: khforge --serve stands for Chiyoda's
# gateway behind the router and answers Osaka's query at once.
. "$(dirname "$0")/lib.sh"
FORGE=$KH_BUILD/tools/khforge
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=3330000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
qstate() { sql kh_gw_a "SELECT state || ' ' || coalesce(result, '-') FROM t_271004.query WHERE msg_id = '$1'"; }
out=$(adm ta-131016 --json flags add 131016 hold --local-id "$LOCAL_C" --reason "synthetic hold")
hold=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$out")
check "Chiyoda holds the person's answers (flag $hold)" test -n "$hold"
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O")
h=$(grep -o '[0-9a-f]\{32\}' <<<"$out" | head -1)
expect_contains "Osaka's query waits for a decision" "PENDING handle=$h" "$out"
lc=$(sql kh_gw_a "SELECT link_code FROM t_271004.linkcode WHERE local_id = '$LOCAL_O'")
peer=$(awk '$1 == "peer_listen" { print $3 }' "$KH_STACK/gw-a.conf")
# deferred FIELD...: the provider's deferred answer to h, relayed as the router would
deferred() {
    local args=() f
    for f in "$@"; do args+=(--field "TK001.$f"); done
    "$FORGE" --pki "$PKI" --to "$peer" --as router --sign-as ROUTER --sender 131016 \
        --recipient 271004 --procedure JT001 --items TK001 --subject "$lc" \
        --deferred-answer "$h" "${args[@]}" 2>&1 || true
}
out=$(deferred fiscal_year=2025 total_income=3330000 deduction_medical=123450)
expect_contains "a deferred answer with a field LB01 does not allow: KH-4012" "SEND 1 HTTP 502 KH-4012" "$out"
expect_eq "the query still waits" "pending PENDING" "$(qstate "$h")"
check "and nothing of the answer was recorded as provided to Osaka" test \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE msg_id = '$h' AND outcome = 'provided'")" = 0
check "the gateway says why in its log" grep -q "refused deferred answer [0-9a-f]*: KH-4012" \
    "$KH_STACK/log/gw-a.log"
out=$(deferred fiscal_year=2025 total_income=3330000)
expect_contains "the same answer within LB01 is accepted" "SEND 1 HTTP 200" "$out"
for _ in $(seq 1 50); do [ "$(qstate "$h")" = "answered FOUND" ] && break; sleep 0.1; done
expect_eq "and answers the query" "answered FOUND" "$(qstate "$h")"
adm ta-131016 flags revoke 131016 "$hold" >/dev/null

# --- a normal (synchronous) answer, from a provider's gateway behind the router
# The router is restarted on a copy of its configuration that sends Chiyoda's
# queries to khforge --serve (gw-a's TLS identity, Chiyoda's keys), which
# answers at once with the fields it is given; the real router comes back
# at the end.
T=$(mktemp -d)
FPORT=$((KH_PORT_BASE + 31)) rlog=$KH_STACK/log/router-forge.log
# (CODE,CLASS,NAME,GATEWAY, then every endpoint of the gateway's nodes: all replaced)
sed "s|^\(org = 131016,[^,]*,[^,]*,[^,]*,\).*\$|\1127.0.0.1:$FPORT|" "$KH_STACK/router.conf" >"$T/router.conf"
check "the copy sends Chiyoda's queries to khforge" grep -q "^org = 131016,.*:$FPORT\$" "$T/router.conf"
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}
stop_pid "$(cat "$KH_STACK/run/router.pid")"
: >"$rlog"
setsid "$KH_BUILD/tools/khrouter" -c "$T/router.conf" 2>>"$rlog" >/dev/null </dev/null &
frouter=$!
back() {
    stop_pid "$frouter"
    "$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
    rm -rf "$T"
}
trap back EXIT
for _ in $(seq 1 100); do grep -q '"ready on' "$rlog" && break; sleep 0.1; done
check "the router runs on the copy" grep -q '"ready on' "$rlog"
# answered FIELD...: Osaka asks Chiyoda, khforge answers with these fields
answered() {
    local args=() f
    for f in "$@"; do args+=(--field "TK001.$f"); done
    "$FORGE" --serve --pki "$PKI" --to "127.0.0.1:$FPORT" --as gw-a --timeout-ms 20000 \
        "${args[@]}" >"$T/serve.out" 2>&1 &
    local spid=$!
    for _ in $(seq 1 100); do grep -q '^READY' "$T/serve.out" && break; sleep 0.1; done
    client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O" || true
    wait "$spid" || true
}
out=$(answered fiscal_year=2025 total_income=3330000 deduction_medical=123450)
expect_contains "khforge answered Osaka's query as Chiyoda" "SERVED 1 QUERY" "$(cat "$T/serve.out")"
expect_contains "an answer with a field LB01 does not allow: KH-4012" "KH-4012" "$out"
h2=$(grep -o '[0-9a-f]\{32\}' <<<"$out" | head -1)
check "the query has a handle ($h2)" test -n "$h2"
check "nothing of that answer was recorded as provided to Osaka" test \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE msg_id = '$h2' AND outcome = 'provided'")" = 0
out=$(answered fiscal_year=2025 total_income=3330000)
expect_contains "the same answer within LB01 is accepted" "OK FOUND" "$out"
expect_contains "... with the forged provider's values" "TK001.total_income=3330000" "$out"
finish
