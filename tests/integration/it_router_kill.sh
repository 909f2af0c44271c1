# Resilience of delivery: the router is killed (kill -9) before and while
# queries are in flight, then restarted. The asking gateway retries the same
# sealed envelope with backoff while the message is valid; the router forwards
# a retransmission, and the answering gateway answers it with the answer it
# already gave. Every query ends answered exactly once (one answer record at
# the provider, one at the asker) or failed: never answered twice, never left
# without a final state.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=2950000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
router_pid() { cat "$KH_STACK/run/router.pid"; }
ask() {
    local out
    out=$(client 271004 childallowance --async query O-CA-001 JT001 131016 TK001 "$LOCAL_O")
    grep -o 'SENT handle=[0-9a-f]\{32\}' <<<"$out" | cut -d= -f2
}
in_list() { local IFS=,; printf "'%s'" "$*" | sed "s/,/','/g"; }
wait_final() { # wait until none of the handles is sent (or timed_out)
    local list=$1
    for _ in $(seq 1 400); do
        [ "$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($list) AND state IN ('sent', 'timed_out')")" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# 1. the router is down before the queries are sent
kill -9 "$(router_pid)"
H1=()
for _ in 1 2 3 4; do H1+=("$(ask)"); done
expect_eq "four queries got handles while the router was down" 4 "${#H1[@]}"
L1=$(in_list "${H1[@]}")
sleep 1.2
expect_eq "they wait, retrying" "4" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($L1) AND state = 'sent'")"
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
check "they reach a final state after the restart" wait_final "$L1"
expect_eq "all four are answered" "4" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($L1) AND state = 'answered' AND result = 'FOUND'")"
check "after more than one attempt" test \
    "$(sql kh_gw_a "SELECT min(attempts) FROM t_271004.query WHERE msg_id IN ($L1)")" -ge 2

# 2. the router is killed while queries are in flight
H2=()
for i in $(seq 1 16); do
    H2+=("$(ask)")
    if [ "$i" = 8 ]; then kill -9 "$(router_pid)"; fi
done
sleep 0.5
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
L2=$(in_list "${H2[@]}")
check "every query reaches a final state" wait_final "$L2"
ALL="$L1,$L2"
total=$(( ${#H1[@]} + ${#H2[@]} ))
expect_eq "every query is answered or failed" "$total" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($ALL) AND state IN ('answered', 'failed')")"
expect_eq "no query has two answer records at the provider" "" \
    "$(sql kh_gw_a "SELECT msg_id FROM t_131016.provision_record WHERE msg_id IN ($ALL) GROUP BY msg_id HAVING count(*) > 1")"
expect_eq "no query has two records at the asker" "" \
    "$(sql kh_gw_a "SELECT msg_id FROM t_271004.provision_record WHERE msg_id IN ($ALL) GROUP BY msg_id HAVING count(*) > 1")"
expect_eq "every answered query has exactly one answer record at the provider" "" \
    "$(sql kh_gw_a "SELECT q.msg_id FROM t_271004.query q LEFT JOIN t_131016.provision_record p ON p.msg_id = q.msg_id WHERE q.msg_id IN ($ALL) AND q.state = 'answered' GROUP BY q.msg_id HAVING count(p.id) <> 1")"
expect_eq "the asker's record agrees with each query's state" "" \
    "$(sql kh_gw_a "SELECT q.msg_id FROM t_271004.query q JOIN t_271004.provision_record p ON p.msg_id = q.msg_id WHERE q.msg_id IN ($ALL) AND (q.state = 'answered') <> (p.outcome = 'provided')")"
answered=$(sql kh_gw_a "SELECT count(*) FROM t_271004.query WHERE msg_id IN ($ALL) AND state = 'answered'")
resent=$(sql kh_router "SELECT count(*) FROM router.query_record WHERE msg_id IN ($ALL) AND outcome = 'forwarded_again'")
printf 'info: %s of %s answered, %s failed; %s forwarded again by the router\n' \
    "$answered" "$total" "$((total - answered))" "$resent"
check "the router restarted within the messages' validity: all answered" test "$answered" = "$total"

# 3. a query left "sent" by an asking gateway that died mid-flight (the row
# is written as the dead gateway left it, with its message expired): the
# restarted gateway ends it failed, with a provision record
orphan=$(printf '%032x' "$RANDOM$RANDOM$RANDOM")
sql kh_gw_a "INSERT INTO t_271004.query (msg_id, system_id, staff_id, procedure, provider, items, local_id, state, expires_at, created_at) VALUES ('$orphan', 'childallowance', 'O-CA-001', 'JT001', '131016', '{TK001}', '$LOCAL_O', 'sent', now() - interval '5 minutes', now() - interval '10 minutes')" >/dev/null
kill -TERM "$(cat "$KH_STACK/run/gw-a.pid")"
for _ in $(seq 1 100); do kill -0 "$(cat "$KH_STACK/run/gw-a.pid")" 2>/dev/null || break; sleep 0.05; done
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
for _ in $(seq 1 50); do
    [ "$(sql kh_gw_a "SELECT state FROM t_271004.query WHERE msg_id = '$orphan'")" = failed ] && break
    sleep 0.1
done
expect_eq "an unfinished query ends failed after its validity" "failed KH-5004" \
    "$(sql kh_gw_a "SELECT state || ' ' || code FROM t_271004.query WHERE msg_id = '$orphan'")"
expect_eq "and is recorded as failed" "failed" \
    "$(sql kh_gw_a "SELECT outcome FROM t_271004.provision_record WHERE msg_id = '$orphan'")"
finish
