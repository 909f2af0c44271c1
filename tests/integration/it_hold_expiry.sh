# Held queries do not wait forever (issue 13): a tenant's hold deadline
# (its answering policy, set by its admin through the admin API) is given to
# the asker in the PENDING answer (decide_by); a query nobody decides by
# then expires at the provider, which sends the asker an EXPIRED deferred
# answer (KH-2011); both sides record it; a late decision is refused; the
# listing shows what is about to expire. An asker that never hears back ends
# its query expired itself once the provider's outbox has given up.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=3440000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
handle_of() { grep -o '[0-9a-f]\{32\}' <<<"$1" | head -1; }
qstate() { sql kh_gw_a "SELECT state || ' ' || coalesce(result, '-') || ' ' || coalesce(code, '-') FROM t_271004.query WHERE msg_id = '$1'"; }
wait_state() { # HANDLE STATE TENTHS
    for _ in $(seq 1 "${3:-150}"); do
        case $(qstate "$1") in "$2"*) return 0 ;; esac
        sleep 0.1
    done
    return 1
}
ask() { client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O"; }
policy_of() { sql kh_gw_a "SELECT hold_deadline_s FROM t_131016.hold_policy"; }
# whatever happens below, the stack is left with the default deadline and no hold
hold=""
restore() {
    [ -z "$hold" ] || adm ta-131016 flags revoke 131016 "$hold" >/dev/null
    adm ta-131016 policy set 131016 --hold-deadline 1209600 >/dev/null
}
trap restore EXIT
metric() { sed -n "s/^$1 \([0-9]*\)\$/\1/p" <<<"$2"; }

# the policy: read by the tenant's operators, set by its admins, checked
expect_contains "the default deadline is 14 days" '"hold_deadline_s":1209600' \
    "$(adm resp-131016 --json policy 131016)"
expect_contains "a responder may not set it" "KH-6005" \
    "$(adm resp-131016 policy set 131016 --hold-deadline 60)"
expect_contains "Osaka's admin may not set Chiyoda's" "KH-6006" \
    "$(adm ta-271004 policy set 131016 --hold-deadline 60)"
for bad in '{"hold_deadline_s": 0}' '{"hold_deadline_s": 7776001}' '{"hold_deadline_s": "60"}' \
    '{"hold_deadline_s": 60, "x": 1}' '{}'; do
    expect_contains "refused: $bad" "KH-6008" \
        "$(adm ta-131016 raw POST /admin/v1/tenants/131016/policy "$bad")"
done
expect_eq "the refusals changed nothing" 1209600 "$(policy_of)"
expect_contains "khctl checks the number itself" "hold-deadline SECONDS" \
    "$(adm ta-131016 policy set 131016 --hold-deadline 1d)"

out=$(adm ta-131016 --json flags add 131016 hold --local-id "$LOCAL_C" --reason "synthetic expiry case")
hold=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$out")
check "a tenant admin holds the person's answers (flag $hold)" test -n "$hold"

# A: held under the default deadline, told to the asker
before=$(date +%s)
out=$(ask); ha=$(handle_of "$out")
expect_contains "query A waits, with the provider's deadline" "PENDING handle=$ha decide_by=" "$out"
told=$(sql kh_gw_a "SELECT extract(epoch FROM decide_by)::bigint FROM t_271004.query WHERE msg_id = '$ha'")
check "the asker keeps a deadline 14 days away ($told)" test "$((told - before))" -ge 1209590 -a \
    "$((told - before))" -le 1209700
expect_eq "it is the provider's own" "$told" \
    "$(sql kh_gw_a "SELECT floor(extract(epoch FROM deadline))::bigint FROM t_131016.pending_answer WHERE msg_id = '$ha'")"

# a shorter deadline for queries held from now on
out=$(adm ta-131016 --json policy set 131016 --hold-deadline 4)
expect_contains "the tenant admin sets 4 s" '"hold_deadline_s":4' "$out"
expect_contains "the change is audited with the value before" '"before": 1209600' \
    "$(sql kh_gw_a "SELECT detail::text FROM t_131016.audit_log WHERE action = 'policy.set' AND operator = 'ta-131016' ORDER BY id DESC LIMIT 1")"

# B: held under the new deadline; listed as about to expire, A is not
out=$(ask); hb=$(handle_of "$out")
expect_contains "query B waits" "PENDING handle=$hb" "$out"
out=$(adm resp-131016 --json pending 131016 --expiring 3600)
expect_contains "B is about to expire" "$hb" "$out"
case $out in *"$ha"*) fail "A (14 days left) is listed as about to expire" ;; *) pass "A is not about to expire" ;; esac
expect_contains "the listing says how long is left" '"seconds_left":' "$out"
expect_contains "--expiring must be seconds" "KH-6008" "$(adm resp-131016 pending 131016 --expiring soon)"
expect_contains "--expiring is for pending only" "KH-6008" \
    "$(adm resp-131016 pending 131016 --expiring 60 --state approved)"
m=$(adm aud-131016 metrics)
check "the metrics count it as expiring within a day" test \
    "$(metric 'kakehashi_held_queries_expiring{tenant="131016"}' "$m")" -ge 1

# B expires: the asker is told, both sides record it
check "Osaka's query B ends expired" wait_state "$hb" "expired EXPIRED KH-2011"
out=$(client 271004 childallowance status "$hb" || true)
expect_contains "Osaka reads EXPIRED with its code" "EXPIRED KH-2011:" "$out"
expect_eq "Chiyoda's row is expired" "expired" \
    "$(sql kh_gw_a "SELECT state FROM t_131016.pending_answer WHERE msg_id = '$hb'")"
expect_eq "provider records: held, expired (KH-2011)" "held:OK expired:KH-2011" \
    "$(sql kh_gw_a "SELECT string_agg(outcome || ':' || coalesce(code, ''), ' ' ORDER BY id) FROM t_131016.provision_record WHERE msg_id = '$hb'")"
expect_eq "asker records: pending, expired (KH-2011)" "pending:OK expired:KH-2011" \
    "$(sql kh_gw_a "SELECT string_agg(outcome || ':' || coalesce(code, ''), ' ' ORDER BY id) FROM t_271004.provision_record WHERE msg_id = '$hb'")"
expect_eq "the router delivered the EXPIRED answer" 1 \
    "$(sql kh_router "SELECT count(*) FROM router.query_record WHERE in_reply_to = '$hb' AND outcome = 'delivered'")"
expect_contains "a decision after the deadline is refused" "KH-6011" \
    "$(adm resp-131016 decide 131016 "$hb" approve)"
expect_eq "A is still waiting at both ends" "pending pending" \
    "$(sql kh_gw_a "SELECT (SELECT state FROM t_131016.pending_answer WHERE msg_id = '$ha') || ' ' || (SELECT state FROM t_271004.query WHERE msg_id = '$ha')")"
u=$(adm ta-271004 --json usage 271004)
expect_contains "Osaka's usage counts its expired query" '"asked_expired":' "$u"
check "at least one" test "$(sed -n 's/.*"total":{[^}]*"asked_expired":\([0-9]*\).*/\1/p' <<<"$u")" -ge 1
# (a scrape reads the records at most every 5 s)
n=0
for _ in $(seq 1 40); do
    n=$(metric 'kakehashi_queries_expired_total{tenant="131016",side="answering"}' "$(adm aud-131016 metrics)")
    [ "${n:-0}" -ge 1 ] && break
    sleep 0.25
done
check "Chiyoda's metrics count it ($n)" test "${n:-0}" -ge 1

# The asker's own end: the provider's answer never came (simulated by
# moving A's deadline, as the asker keeps it, a day into the past); the
# sweeper ends it expired within its 30 s period
sql kh_gw_a "UPDATE t_271004.query SET decide_by = now() - interval '1 day' WHERE msg_id = '$ha'" >/dev/null
check "Osaka's query A ends expired by its own sweeper" wait_state "$ha" "expired - KH-2011" 450
expect_eq "asker records: pending, expired (KH-2011)" "pending:OK expired:KH-2011" \
    "$(sql kh_gw_a "SELECT string_agg(outcome || ':' || coalesce(code, ''), ' ' ORDER BY id) FROM t_271004.provision_record WHERE msg_id = '$ha'")"
# a decision that comes after that is not delivered, and says so
out=$(adm resp-131016 --json decide 131016 "$ha" approve)
expect_contains "Chiyoda's responder still approves A" '"decision":"approved"' "$out"
ob=""
for _ in $(seq 1 100); do
    ob=$(sql kh_gw_a "SELECT state || ' ' || coalesce(last_code, '-') FROM t_131016.outbox WHERE in_reply_to = '$ha'")
    case $ob in failed*) break ;; esac
    sleep 0.1
done
expect_eq "Osaka refuses the late answer; the outbox gives up" "failed KH-4011" "$ob"
expect_eq "Chiyoda records it undelivered" "held:OK provided:OK undelivered:KH-4011" \
    "$(sql kh_gw_a "SELECT string_agg(outcome || ':' || coalesce(code, ''), ' ' ORDER BY id) FROM t_131016.provision_record WHERE msg_id = '$ha'")"
expect_eq "Osaka's query stays expired" "expired - KH-2011" "$(qstate "$ha")"

restore
hold=""
expect_eq "the default deadline is back" 1209600 "$(policy_of)"
finish
