# A held query end to end (issue 4): Chiyoda's tenant admin holds a person's
# answers (admin API); Osaka's queries wait (PENDING); Chiyoda's responder
# approves one, approves another with fewer items and refuses a third; the
# decisions travel back through the router as deferred answers, and Osaka's
# business system reads them by handle. Only a responder of the tenant may
# decide, once per query; everything is recorded at both ends and the router.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=3330000 >/dev/null
client 131016 resident register "$LOCAL_C" TK002 20250101 household_no=0000033333 relation=01 \
    municipality_code=131016 resident_status=1 change_reason=A1 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
handle_of() { grep -o '[0-9a-f]\{32\}' <<<"$1" | head -1; }
qstate() { sql kh_gw_a "SELECT state || ' ' || coalesce(result, '-') || ' ' || coalesce(code, '-') FROM t_271004.query WHERE msg_id = '$1'"; }
wait_state() { # HANDLE STATE
    for _ in $(seq 1 100); do
        case $(qstate "$1") in "$2"*) return 0 ;; esac
        sleep 0.1
    done
    return 1
}

out=$(adm ta-131016 --json flags add 131016 hold --local-id "$LOCAL_C" --reason "synthetic protection case")
hold=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$out")
check "a tenant admin holds the person's answers (flag $hold)" test -n "$hold"
ask() { client 271004 childallowance query O-CA-001 JT001 131016 "$1" "$LOCAL_O"; }
out=$(ask TK001); h1=$(handle_of "$out")
expect_contains "query 1 waits for a decision" "PENDING handle=$h1" "$out"
out=$(ask TK001,TK002); h2=$(handle_of "$out")
expect_contains "query 2 waits" "PENDING handle=$h2" "$out"
out=$(ask TK001); h3=$(handle_of "$out")
expect_contains "query 3 waits" "PENDING handle=$h3" "$out"
out=$(adm resp-131016 --json pending 131016)
expect_contains "the responder sees the held queries" "$h2" "$out"

# who may decide
expect_contains "a tenant admin may not decide" "KH-6005" "$(adm ta-131016 decide 131016 "$h1" approve)"
expect_contains "an auditor may not decide" "KH-6005" "$(adm aud-131016 decide 131016 "$h1" approve)"
expect_contains "Osaka's responder may not decide for Chiyoda" "KH-6006" \
    "$(adm resp-271004 decide 131016 "$h1" approve)"
expect_eq "nothing was decided by those attempts" "pending pending pending" \
    "$(sql kh_gw_a "SELECT string_agg(state, ' ') FROM t_131016.pending_answer WHERE msg_id IN ('$h1', '$h2', '$h3')")"

# bad decisions change nothing
expect_contains "an unknown message id" "KH-6010" \
    "$(adm resp-131016 decide 131016 0123456789abcdef0123456789abcdef approve)"
expect_contains "a malformed message id" "KH-6008" "$(adm resp-131016 decide 131016 12345 approve)"
expect_contains "an item that was not asked" "KH-6008" \
    "$(adm resp-131016 decide 131016 "$h1" approve --items TK002)"
expect_contains "items with a refusal" "KH-6008" \
    "$(adm resp-131016 decide 131016 "$h1" refuse --items TK001)"
expect_eq "still pending" "pending" "$(sql kh_gw_a "SELECT state FROM t_131016.pending_answer WHERE msg_id = '$h1'")"

# 1: approved; the deferred answer reaches Osaka
out=$(adm resp-131016 --json decide 131016 "$h1" approve --reason "checked with the case worker")
expect_contains "the responder approves query 1" '"decision":"approved"' "$out"
check "Osaka's query 1 is answered" wait_state "$h1" "answered FOUND"
out=$(client 271004 childallowance status "$h1")
expect_contains "Osaka reads the deferred answer by handle" "OK FOUND handle=$h1 deferred" "$out"
expect_contains "with Chiyoda's values" "TK001.total_income=3330000" "$out"
out=$(adm ta-271004 --json queries 271004 --handle "$h1")
expect_contains "Osaka's admin finds the query by its handle" "\"msg_id\":\"$h1\"" "$out"
expect_eq "... and only it" 1 "$(grep -o '"msg_id"' <<<"$out" | wc -l)"
expect_contains "a handle that is not one" "KH-6008" "$(adm ta-271004 queries 271004 --handle "${h1:0:31}X")"

# 2: approved with fewer items: the other is withheld
out=$(adm resp-131016 --json decide 131016 "$h2" approve --items TK002)
expect_contains "the responder approves query 2 for TK002 only" '"result":"FOUND"' "$out"
check "Osaka's query 2 is answered" wait_state "$h2" "answered FOUND"
out=$(client 271004 childallowance status "$h2")
expect_contains "TK001 is withheld" "WITHHELD TK001" "$out"
expect_contains "TK002 is answered" "ITEM TK002" "$out"
case $out in *"ITEM TK001"*) fail "an item the responder did not approve was sent" ;; *) pass "nothing of TK001 was sent" ;; esac

# 3: refused
out=$(adm resp-131016 --json decide 131016 "$h3" refuse --reason "protection order")
expect_contains "the responder refuses query 3" '"decision":"refused"' "$out"
check "Osaka's query 3 ends refused" wait_state "$h3" "refused REFUSED KH-2010"
out=$(client 271004 childallowance status "$h3")
expect_contains "Osaka reads the refusal by handle" "REFUSED KH-2010:" "$out"

# once only
expect_contains "a second decision is refused" "KH-6011" "$(adm resp-131016 decide 131016 "$h1" refuse)"

# records: provider, asker, router, audit, outbox
expect_eq "provider records: held then the decision" "held,provided held,provided held,refused" \
    "$(sql kh_gw_a "SELECT string_agg(o, ' ' ORDER BY m) FROM (SELECT msg_id m, string_agg(outcome, ',' ORDER BY id) o FROM t_131016.provision_record WHERE msg_id IN ('$h1', '$h2', '$h3') GROUP BY msg_id) x" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "asker records: pending then the answer" "pending,provided pending,provided pending,refused" \
    "$(sql kh_gw_a "SELECT string_agg(o, ' ' ORDER BY m) FROM (SELECT msg_id m, string_agg(outcome, ',' ORDER BY id) o FROM t_271004.provision_record WHERE msg_id IN ('$h1', '$h2', '$h3') GROUP BY msg_id) x" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the router delivered three deferred answers" 3 \
    "$(sql kh_router "SELECT count(*) FROM router.query_record WHERE in_reply_to IN ('$h1', '$h2', '$h3') AND outcome = 'delivered'")"
expect_eq "the outbox delivered them" "delivered delivered delivered" \
    "$(sql kh_gw_a "SELECT string_agg(state, ' ') FROM t_131016.outbox WHERE in_reply_to IN ('$h1', '$h2', '$h3')")"
expect_eq "each decision is in Chiyoda's audit log under the responder" 3 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.audit_log WHERE action = 'pending.decide' AND operator = 'resp-131016' AND outcome = 'ok' AND target IN ('$h1', '$h2', '$h3')")"
check "the refused decisions (item not asked, second decision) are in the audit log too" test \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.audit_log WHERE action = 'pending.decide' AND outcome = 'refused' AND target = '$h1'")" -ge 2
expect_eq "the pending rows name the decisions" "approved {TK001} approved {TK002} refused -" \
    "$(sql kh_gw_a "SELECT string_agg(state || ' ' || coalesce(approved_items::text, '-'), ' ' ORDER BY array_position(ARRAY['$h1', '$h2', '$h3'], msg_id)) FROM t_131016.pending_answer WHERE msg_id IN ('$h1', '$h2', '$h3')")"
adm ta-131016 flags revoke 131016 "$hold" >/dev/null
finish
