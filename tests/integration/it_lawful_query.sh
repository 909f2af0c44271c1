# Flow 1-3 end to end: registration at Chiyoda, link codes at both
# municipalities, a child-allowance query from Osaka answered with exactly the
# registered values and only the items the legal basis allows; records at
# both gateways and at the router; a lawful query from the national body.
. "$(dirname "$0")/lib.sh"
new_person

out=$(client 131016 tax register "$LOCAL_C" TK001 20250601 fiscal_year=2025 total_income=4120000 \
      annual_tax=206000 municipal_tax_income=123600 spouse_category=1)
expect_contains "Chiyoda registers local tax information" "OK registered version" "$out"
v1=$(sed -n 's/^OK registered version //p' <<<"$out")
out=$(client 131016 tax register "$LOCAL_C" TK001 20260601 fiscal_year=2026 total_income=3250000 \
      annual_tax=162500 spouse_category=0)
expect_contains "a second version is kept" "OK registered version" "$out"
v2=$(sed -n 's/^OK registered version //p' <<<"$out")
check "versions increase" test "$v2" -gt "$v1"
out=$(client 131016 resident register "$LOCAL_C" TK002 20260401 household_no=0000012345 relation=01 municipality_code=131016 \
      resident_status=2 change_reason=B1)
expect_contains "Chiyoda registers resident-record information" "OK registered version" "$out"
vr=$(sed -n 's/^OK registered version //p' <<<"$out")

for who in "131016 tax $LOCAL_C" "271004 childallowance $LOCAL_O" "N00001 pension $LOCAL_N"; do
    set -- $who
    out=$(client "$1" "$2" linkcode "$3" "$RESIDENT")
    expect_contains "$1 obtains a link code" "OK link code acquired" "$out"
done

pa=$(provided_count kh_gw_a 271004); pc=$(provided_count kh_gw_a 131016); ra=$(router_count answered)
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O")
expect_contains "Osaka's query is answered" "OK FOUND" "$out"
expect_contains "answer is the version in force today" "ITEM TK001 version=$v2 " "$out"
want=$'  TK001.fiscal_year=2026\n  TK001.annual_tax=162500\n  TK001.total_income=3250000\n  TK001.spouse_category=0'
expect_eq "answer carries exactly the registered values" "$want" "$(grep '^  ' <<<"$out")"
expect_eq "Osaka records the query as provided" $((pa + 1)) "$(provided_count kh_gw_a 271004)"
expect_eq "Chiyoda records the answer as provided" $((pc + 1)) "$(provided_count kh_gw_a 131016)"
expect_eq "the router records the answered query" $((ra + 1)) "$(router_count answered)"
handle=$(sed -n 's/.*handle=\([0-9a-f]*\).*/\1/p' <<<"$out")
expect_eq "both gateways hold the same message id" "2" \
    "$(sql kh_gw_a "SELECT count(*) FROM (SELECT msg_id FROM t_271004.provision_record UNION ALL SELECT msg_id FROM t_131016.provision_record) r WHERE msg_id = '$handle'")"

expect_eq "Chiyoda's record names the version it provided" "$v2" \
    "$(sql kh_gw_a "SELECT provided->>'TK001' FROM t_131016.provision_record WHERE msg_id = '$handle'")"
expect_eq "Osaka's record names the version it received" "$v2" \
    "$(sql kh_gw_a "SELECT provided->>'TK001' FROM t_271004.provision_record WHERE msg_id = '$handle'")"

today=$(sql kh_gw_a "SELECT current_date")
expect_eq "what Chiyoda provided today, with the values it sent" "$v2 3250000" \
    "$(sql kh_gw_a "SELECT version || ' ' || (data->>'total_income') FROM t_131016.provision_detail WHERE at::date = '$today' AND msg_id = '$handle'")"

out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O" 20251231)
expect_contains "as-of date selects the older version" "ITEM TK001 version=$v1 " "$out"
expect_contains "older values" "TK001.total_income=4120000" "$out"

out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001,TK002 "$LOCAL_O")
expect_contains "two allowed items in one query" "ITEM TK002 version=$vr " "$out"

out=$(client N00001 pension query N-PEN-001 JT006 131016 TK001 "$LOCAL_N")
expect_contains "the national body's lawful query is answered" "OK FOUND" "$out"
expect_contains "with Chiyoda's values" "TK001.total_income=3250000" "$out"
finish
