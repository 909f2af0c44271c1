# Answering policy at the providing tenant: non-disclosure (不開示) withholds
# the items it covers and says so, distinct from "not found"; a hold
# (自動応答不可) keeps the answer for a responder and tells the asker it is
# pending; flags apply only while valid and not revoked. Flags are written
# here as the tenant's rows (the admin API's own test covers their
# management).
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=2700000 >/dev/null
client 131016 resident register "$LOCAL_C" TK002 20250101 household_no=0000054321 relation=01 \
    municipality_code=131016 resident_status=1 change_reason=A1 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
client N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
flag() { # KIND LOCAL_ID ITEM PROCEDURE [VALID_FROM VALID_TO] -> id
    sql kh_gw_a "SET ROLE kh_t_131016; INSERT INTO t_131016.answer_flag (kind, local_id, item_code, procedure, reason, valid_from, valid_to, created_by) VALUES ('$1', NULLIF('$2',''), NULLIF('$3',''), NULLIF('$4',''), 'test', COALESCE(NULLIF('${5:-}','')::date, current_date), NULLIF('${6:-}','')::date, 'it_policy') RETURNING id"
}
revoke() { sql kh_gw_a "UPDATE t_131016.answer_flag SET revoked_at = now(), revoked_by = 'it_policy' WHERE id = $1" >/dev/null; }
handle_of() { grep -o '[0-9a-f]\{32\}' <<<"$1" | head -1; }
ask() { client 271004 childallowance query O-CA-001 JT001 131016 "$1" "$LOCAL_O"; }

out=$(ask TK001,TK002)
expect_contains "without flags both items are provided" "ITEM TK002" "$out"

f1=$(flag nondisclosure "$LOCAL_C" TK001 "")
out=$(ask TK001,TK002)
expect_contains "non-disclosure of one item: the other is FOUND" "OK FOUND" "$out"
expect_contains "the withheld item is named" "WITHHELD TK001" "$out"
case $out in *"ITEM TK001"* | *"TK001.total_income"*) fail "withheld item's data was sent" ;; *) pass "no data of the withheld item" ;; esac
h=$(handle_of "$out")
expect_eq "the provider records what it provided" "provided {\"TK002\": $(sql kh_gw_a "SELECT max(version) FROM t_131016.replica WHERE local_id = '$LOCAL_C' AND item_code = 'TK002'")}" \
    "$(sql kh_gw_a "SELECT outcome || ' ' || provided FROM t_131016.provision_record WHERE msg_id = '$h'")"
out=$(ask TK001)
expect_contains "every item withheld: WITHHELD, not NOT_FOUND" "OK WITHHELD" "$out"
h=$(handle_of "$out")
expect_eq "recorded as withheld at both ends" "withheld withheld" \
    "$(sql kh_gw_a "SELECT string_agg(outcome, ' ') FROM (SELECT outcome FROM t_131016.provision_record WHERE msg_id = '$h' UNION ALL SELECT outcome FROM t_271004.provision_record WHERE msg_id = '$h') x")"
revoke "$f1"
out=$(ask TK001)
expect_contains "a revoked flag no longer applies" "OK FOUND" "$out"

f2=$(flag nondisclosure "" TK001 JT001 "$(sql kh_gw_a "SELECT current_date - 30")" "$(sql kh_gw_a "SELECT current_date")")
f3=$(flag nondisclosure "" TK001 JT001 "$(sql kh_gw_a "SELECT current_date + 1")" "")
out=$(ask TK001)
expect_contains "flags ending today or starting tomorrow do not apply" "OK FOUND" "$out"
revoke "$f2"; revoke "$f3"

# a hold on the person: pending at both ends, nothing read or sent
ph=$(sql kh_gw_a "SELECT count(*) FROM t_131016.pending_answer")
rp=$(router_count pending)
f4=$(flag hold "$LOCAL_C" "" "")
out=$(ask TK001,TK002)
expect_contains "a held query is pending a decision" "PENDING handle=" "$out"
case $out in *ITEM*) fail "a held query carried data" ;; *) pass "a held query carries no data" ;; esac
h=$(handle_of "$out")
expect_eq "the asker's query is pending" "pending" "$(sql kh_gw_a "SELECT state FROM t_271004.query WHERE msg_id = '$h'")"
expect_eq "the provider keeps it for a responder" "pending $LOCAL_C {TK001,TK002} {$f4}" \
    "$(sql kh_gw_a "SELECT state || ' ' || local_id || ' ' || items::text || ' ' || flags::text FROM t_131016.pending_answer WHERE msg_id = '$h'")"
expect_eq "one more pending answer" $((ph + 1)) "$(sql kh_gw_a "SELECT count(*) FROM t_131016.pending_answer")"
expect_eq "recorded as held by the provider, pending by the asker" "held pending" \
    "$(sql kh_gw_a "SELECT (SELECT outcome FROM t_131016.provision_record WHERE msg_id = '$h') || ' ' || (SELECT outcome FROM t_271004.provision_record WHERE msg_id = '$h')")"
expect_eq "the router records it as pending" $((rp + 1)) "$(router_count pending)"
expect_eq "nothing provided for the held query" "" \
    "$(sql kh_gw_a "SELECT provided FROM t_131016.provision_record WHERE msg_id = '$h'")"
out=$(client 271004 childallowance status "$h")
expect_contains "status by handle says pending" "PENDING handle=$h" "$out"
revoke "$f4"

# a hold on a procedure holds every person's answers for it, and only those
f5=$(flag hold "" "" JT006)
out=$(client N00001 pension query N-PEN-001 JT006 131016 TK001 "$LOCAL_N")
expect_contains "a procedure hold holds the pension body's query" "PENDING handle=" "$out"
out=$(ask TK001)
expect_contains "but not another procedure's" "OK FOUND" "$out"
revoke "$f5"
finish
