# Records disclosure (flow 5) through the router: the national portal asks,
# for one person named by their resident-record code, for the provision
# records about them and their own information (自己情報) at every
# organisation holding a link code for them. Two synthetic persons with
# records at 131016, 271004 and N00001: the disclosure for A returns exactly
# A's records at each organisation (the same rows SQL finds by A's local ID
# there) and nothing of B; own information is A's registered values, every
# field, the version in force today, holds and non-disclosure
# notwithstanding. Refusals: an unknown person, a malformed request, a
# client that is not a configured portal; at the gateway, a replayed or
# expired disclosure envelope and a payload the router did not sign. The
# disclosures themselves are recorded at the router and at each gateway.
. "$(dirname "$0")/lib.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/kh-it-disclosure.XXXXXX")
trap 'rm -rf "$T"' EXIT
A_PEER=127.0.0.1:$((KH_PORT_BASE + 12))
ROUTER=127.0.0.1:$KH_PORT_BASE
FORGE=$KH_BUILD/tools/khforge

# disclose RESIDENT ARGS...: the portal's request (the code on stdin); prints
# khportal's output and "EXIT n"
disclose() {
    local res=$1 rc=0 o
    shift
    o=$(printf '%s\n' "$res" | "$KH_ROOT/tools/khstack" portal "$KH_STACK" disclose "$@" 2>&1) ||
        rc=$?
    printf '%s\nEXIT %d\n' "$o" "$rc"
}
# khportal with another client certificate (BASE of DIR/BASE.{crt,key})
disclose_as() {
    local base=$1 rc=0 o
    o=$(printf '%s\n' "$A_RES" | "$KH_BUILD/tools/khportal" -r "$ROUTER" --cert "$PKI/$base.crt" \
        --key "$PKI/$base.key" --ca "$PKI/national-ca.crt" disclose --records 2>&1) || rc=$?
    printf '%s\nEXIT %d\n' "$o" "$rc"
}
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
# expected RECORD lines of ORG for LOCAL_ID, in khportal's format, from SQL
sql_records() {
    local db=$1 org=$2 lid=$3
    sql "$db" "SELECT 'RECORD $org ' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
        || ' ' || direction || ' ' || coalesce(nullif(counterpart, ''), '-') || ' '
        || coalesce(nullif(procedure, ''), '-') || ' '
        || coalesce(nullif(array_to_string(items, ','), ''), '-') || ' '
        || coalesce(nullif(outcome, ''), '-') || ' ' || coalesce(nullif(code, ''), '-')
        || ' msg=' || msg_id || coalesce(' provided=' || (SELECT string_agg(key || ':' || value, ','
        ORDER BY key) FROM jsonb_each_text(provided)), '')
        FROM t_${org,,}.provision_record WHERE local_id = '$lid' ORDER BY id"
}
records_of() { grep "^RECORD $1 " <<<"$2" || true; }
msg_of() { sed -n "s/^ORG $1 .* msg=\([0-9a-f]*\) .*/\1/p" <<<"$2"; }
db_of() { if [ "$1" = N00001 ]; then echo kh_gw_b; else echo kh_gw_a; fi; }

new_person
A_RES=$RESIDENT A_C=$LOCAL_C A_O=$LOCAL_O A_N=$LOCAL_N
new_person
B_RES=$RESIDENT B_C=$LOCAL_C B_O=$LOCAL_O B_N=$LOCAL_N
check "two different synthetic persons" test "$A_RES" != "$B_RES" -a "$A_C" != "$B_C"

# --- data: reference copies and link codes at the three organisations
today=$(sql kh_gw_a "SELECT to_char(current_date, 'YYYYMMDD')")
out=$(client 131016 tax register "$A_C" TK001 20250601 fiscal_year=2025 total_income=4410000 \
    annual_tax=220500 deduction_medical=123450 spouse_category=1)
expect_contains "Chiyoda registers A's local tax information" "OK registered version" "$out"
va=$(sed -n 's/^OK registered version //p' <<<"$out")
out=$(client 131016 tax register "$A_C" TK001 20991231 fiscal_year=2099 total_income=9990001)
expect_contains "and a version that comes into force later" "OK registered version" "$out"
client 131016 tax register "$B_C" TK001 20250601 fiscal_year=2025 total_income=7770002 >/dev/null
out=$(client 271004 tax register "$A_O" TK001 20250601 fiscal_year=2025 total_income=4410000 \
    prefectural_tax=88200)
expect_contains "Osaka registers A's local tax information too" "OK registered version" "$out"
vo=$(sed -n 's/^OK registered version //p' <<<"$out")
for p in "A $A_RES $A_C $A_O $A_N" "B $B_RES $B_C $B_O $B_N"; do
    set -- $p
    for who in "131016 tax $3" "271004 childallowance $4" "N00001 pension $5"; do
        set -- $p $who
        out=$(client "$6" "$7" linkcode "$8" "$2")
        expect_contains "$1 has a link code at $6" "OK link code acquired" "$out"
    done
done

# --- records on both sides: queries about A and about B
for lid in "$A_O" "$B_O"; do
    out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$lid")
    expect_contains "Osaka asks Chiyoda (child allowance)" "OK FOUND" "$out"
done
for lid in "$A_N" "$B_N"; do
    out=$(client N00001 pension query N-PEN-001 JT006 131016 TK001 "$lid")
    expect_contains "the pension organisation asks Chiyoda" "OK FOUND" "$out"
done
out=$(client 271004 nhi query O-NHI-001 JT002 131016 TK001 "$A_O")
expect_contains "Osaka asks Chiyoda about A once more (health insurance)" "OK FOUND" "$out"
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK003 "$A_O")
expect_contains "an unlawful query about A is refused (and recorded)" "KH-2001" "$out"

# --- the disclosure for A: exactly A's records at each organisation
declare -A want
for org in 131016 271004 N00001; do
    case $org in 131016) lid=$A_C ;; 271004) lid=$A_O ;; N00001) lid=$A_N ;; esac
    want[$org]=$(sql_records "$(db_of $org)" $org "$lid")
done
check "A has records at all three organisations" \
    test -n "${want[131016]}" -a -n "${want[271004]}" -a -n "${want[N00001]}"
out=$(disclose "$A_RES" --records --self-info)
expect_contains "the portal's disclosure for A is answered" "EXIT 0" "$out"
expect_eq "every organisation holding a link code for A answers, in code order" \
    "131016 OK FOUND
271004 OK FOUND
N00001 OK FOUND" "$(awk '$1 == "ORG" {print $2, $3, $4}' <<<"$out")"
for org in 131016 271004 N00001; do
    expect_eq "at $org: exactly A's records, as SQL finds them by A's local ID" \
        "${want[$org]}" "$(records_of $org "$out")"
done
bmsgs=$(for org in 131016 271004; do sql kh_gw_a "SELECT msg_id FROM t_$org.provision_record
        WHERE local_id IN ('$B_C', '$B_O')"; done
        sql kh_gw_b "SELECT msg_id FROM t_n00001.provision_record WHERE local_id = '$B_N'")
check "B has records too ($(wc -l <<<"$bmsgs"))" test "$(wc -l <<<"$bmsgs")" -ge 4
expect_eq "none of B's records is in A's disclosure" "" "$(grep -oFf <(printf '%s\n' $bmsgs) <<<"$out" || true)"
expect_eq "none of B's values either" "" "$(grep -o 7770002 <<<"$out" || true)"
expect_eq "no local ID in the disclosure" "" "$(grep -owE "$A_C|$A_O|$A_N|$B_C" <<<"$out" || true)"

# --- own information: every field, the version in force today
want_c="ITEM 131016 TK001 version=$va effective_from=20250601
  131016 TK001.fiscal_year=2025
  131016 TK001.annual_tax=220500
  131016 TK001.total_income=4410000
  131016 TK001.deduction_medical=123450
  131016 TK001.spouse_category=1"
expect_eq "A's own information at Chiyoda: the registered values in force today, every field" \
    "$want_c" "$(grep -E '^(ITEM |  )131016 ' <<<"$out")"
out_q=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$A_O")
expect_contains "(a child-allowance query of TK001 is answered...)" "OK FOUND" "$out_q"
check "(... with TK001 fields...)" grep -q '^  TK001\.' <<<"$out_q"
expect_eq "(... but not deduction_medical: minimisation)" "" \
    "$(grep deduction_medical <<<"$out_q" || true)"
expect_eq "A's own information at Osaka" "ITEM 271004 TK001 version=$vo effective_from=20250601
  271004 TK001.fiscal_year=2025
  271004 TK001.prefectural_tax=88200
  271004 TK001.total_income=4410000" "$(grep -E '^(ITEM |  )271004 ' <<<"$out")"
check "(the disclosure lists own information, the check below reads a real one)" \
    grep -qE '^(ITEM |  )131016 ' <<<"$out"
expect_eq "nothing registered for A at the pension organisation" "" \
    "$(grep -E '^(ITEM |  )N00001 ' <<<"$out" || true)"

# --- the disclosure itself is recorded: router, gateways (provision and access records)
for org in 131016 271004 N00001; do
    m=$(msg_of $org "$out")
    case $org in 131016) lid=$A_C ;; 271004) lid=$A_O ;; N00001) lid=$A_N ;; esac
    expect_eq "the router recorded its request to $org (sent, then disclosed, for the portal)" \
        "sent,ROUTER,portal
disclosed,ROUTER,portal" "$(sql kh_router "SELECT outcome || ',' || sender || ',' || requester
        FROM router.query_record WHERE msg_id = '$m' AND type = 'DISCLOSURE_REQUEST' AND recipient = '$org' ORDER BY id")"
    expect_eq "$org recorded the disclosure about A" "disclosed,ROUTER,$lid,portal,disclosed" \
        "$(sql "$(db_of $org)" "SELECT direction || ',' || counterpart || ',' || local_id || ',' || staff_id
            || ',' || outcome FROM t_${org,,}.provision_record WHERE msg_id = '$m'")"
    expect_eq "$org recorded the access decision" "peer,ROUTER,disclose,allowed" \
        "$(sql "$(db_of $org)" "SELECT direction || ',' || actor || ',' || operation || ',' || decision
            FROM t_${org,,}.access_record WHERE msg_id = '$m'")"
done
m1=$(msg_of 131016 "$out")
expect_eq "Chiyoda's record names the version it disclosed" "$va" \
    "$(sql kh_gw_a "SELECT provided->>'TK001' FROM t_131016.provision_record WHERE msg_id = '$m1'")"
out=$(disclose "$A_RES" --records --org 131016)
expect_eq "one organisation only, when named" "131016" "$(awk '$1 == "ORG" {print $2}' <<<"$out")"
expect_contains "a later disclosure lists the earlier one" "disclosed ROUTER - TK001 disclosed OK msg=$m1" "$out"
expect_eq "records only: no own information" "" "$(grep '^ITEM' <<<"$out" || true)"
now=$(sql_records kh_gw_a 271004 "$A_O")
out=$(disclose "$A_RES" --records --from "$today" --to "$today")
expect_eq "a period of today: every record (all were made today), disclosures included" \
    "$now" "$(records_of 271004 "$out")"
out=$(disclose "$A_RES" --records --from 20990101)
expect_eq "a period in the future: no record" "" "$(grep '^RECORD' <<<"$out" || true)"
expect_contains "... but every organisation answers" "OK 3 organisations" "$out"

# --- holds and non-disclosure protect the person from others, not from themselves
h=$(adm ta-131016 --json flags add 131016 hold --local-id "$A_C" --reason "DV protection (synthetic)")
hid=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$h")
n=$(adm ta-131016 --json flags add 131016 nondisclosure --local-id "$A_C" --reason "synthetic")
nid=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$n")
check "a hold and a non-disclosure flag on A at Chiyoda ($hid, $nid)" test -n "$hid" -a -n "$nid"
out=$(disclose "$A_RES" --self-info --org 131016)
expect_contains "A still sees their own information at Chiyoda" "131016 TK001.total_income=4410000" "$out"
adm ta-131016 flags revoke 131016 "$hid" >/dev/null
adm ta-131016 flags revoke 131016 "$nid" >/dev/null
expect_eq "(both flags revoked again)" "0" "$(sql kh_gw_a "SELECT count(*) FROM t_131016.answer_flag
    WHERE id IN ($hid, $nid) AND revoked_at IS NULL")"

# --- only organisations holding a link code; unknown persons
new_person
C_RES=$RESIDENT
client 131016 tax linkcode "$LOCAL_C" "$C_RES" >/dev/null
out=$(disclose "$C_RES" --records)
expect_eq "a person with a link code at Chiyoda only: Chiyoda only" "131016" \
    "$(awk '$1 == "ORG" {print $2}' <<<"$out")"
expect_contains "... and the person is known there" "ORG 131016 OK FOUND" "$out"
r3005=$(sql kh_router "SELECT count(*) FROM router.query_record WHERE type = 'DISCLOSURE_REQUEST'
    AND code = 'KH-3005' AND requester = 'portal'")
out=$(disclose "$C_RES" --records --org N00001)
expect_contains "... nothing at an organisation without one" "REFUSED KH-3005" "$out"
new_person
out=$(disclose "$RESIDENT" --records --self-info)
expect_contains "a resident-record code with no link code anywhere: KH-3005" "REFUSED KH-3005" "$out"
expect_contains "... exit 3" "EXIT 3" "$out"
expect_eq "the router recorded both refusals" "$((r3005 + 2))" \
    "$(sql kh_router "SELECT count(*) FROM router.query_record WHERE type = 'DISCLOSURE_REQUEST'
        AND code = 'KH-3005' AND requester = 'portal'")"
expect_contains "a malformed resident-record code: KH-3004" "REFUSED KH-3004" \
    "$(disclose 1234 --records)"
expect_contains "asking for nothing: KH-1002" "REFUSED KH-1002" "$(disclose "$A_RES")"
expect_contains "an impossible date: KH-1002" "REFUSED KH-1002" \
    "$(disclose "$A_RES" --records --from 20260231)"
expect_contains "an organisation not in the directory: KH-2007" "REFUSED KH-2007" \
    "$(disclose "$A_RES" --records --org 999999)"
for db in kh_router kh_gw_a kh_gw_b kh_gw_b2; do
    expect_eq "$db holds no copy of the resident-record code" "0" "$(dump_count "$db" "$A_RES")"
done

# --- only a configured portal may ask
expect_contains "a gateway's certificate (national CA, O=KH-GW) is refused: KH-4010" \
    "REFUSED KH-4010" "$(disclose_as gw/gw-a/tls)"
"$KH_ROOT/tools/khpki" portal "$PKI" stranger >/dev/null
expect_contains "a portal certificate the router is not configured for: KH-4010" \
    "REFUSED KH-4010" "$(disclose_as portal/stranger/tls)"
out=$(disclose_as org/271004/systems/childallowance)
expect_contains "a business system's certificate (another CA) fails the handshake" "EXIT 4" "$out"

# --- at the gateway: only the router, once, fresh, with its own signatures
LINK_A=$(sql kh_gw_a "SELECT link_code FROM t_131016.linkcode WHERE local_id = '$A_C'")
forge() {
    local rc=0 o
    o=$("$FORGE" --disclosure --pki "$PKI" --to "$A_PEER" --as router --recipient 131016 \
        --subject "$LINK_A" "$@" 2>&1) || rc=$?
    printf '%s\nEXIT %d\n' "$o" "$rc"
}
disclosed() { sql kh_gw_a "SELECT count(*) FROM t_131016.provision_record WHERE direction = 'disclosed'"; }
refused_at() { sql kh_gw_a "SELECT count(*) FROM t_131016.access_record WHERE operation = 'disclose'
    AND decision = 'refused' AND code = '$1'"; }
d0=$(disclosed) r4006=$(refused_at KH-4006) r4007=$(refused_at KH-4007) r4004=$(refused_at KH-4004)
out=$(forge --times 2 --save "$T/d.envelope")
expect_contains "a disclosure request as the router builds it is answered" "SEND 1 HTTP 200 ANSWER FOUND" "$out"
expect_contains "the same bytes again get the same sealed answer" "SEND 2 HTTP 200 ANSWER FOUND" "$out"
expect_eq "... and only one record" "$((d0 + 1))" "$(disclosed)"
out=$(forge --reuse-id "$T/d.envelope")
expect_contains "another payload under the same message id is a replay: KH-4006" "SEND 1 HTTP 409 KH-4006" "$out"
out=$(forge --expired)
expect_contains "an expired disclosure request: KH-4007" "SEND 1 HTTP 403 KH-4007" "$out"
out=$(forge --payload-signer 131016)
expect_contains "a payload not signed by the router: KH-4004" "SEND 1 HTTP 403 KH-4004" "$out"
out=$(forge --as gw-b)
expect_contains "a gateway on the peer API: KH-4010" "SEND 1 HTTP 403 KH-4010" "$out"
out=$(forge --sender 271004 --sign-as ROUTER --payload-signer ROUTER)
expect_contains "a disclosure request naming an organisation as its sender: KH-4010" \
    "SEND 1 HTTP 403 KH-4010" "$out"
out=$(forge --to "$ROUTER" --as gw-a --sender 271004)
expect_contains "a gateway cannot send a disclosure request through the router: KH-1001" \
    "SEND 1 HTTP 400 KH-1001" "$out"
out=$(forge --subject 0123456789abcdef0123456789abcdef)
expect_contains "a link code the organisation does not hold: NOT_FOUND" "SEND 1 HTTP 200 ANSWER NOT_FOUND" "$out"
for _ in $(seq 1 20); do [ "$(refused_at KH-4004)" -gt "$r4004" ] && break; sleep 0.1; done
expect_eq "Chiyoda's access records name the replay, the expired and the forged request" \
    "$((r4006 + 1)) $((r4007 + 1)) $((r4004 + 1))" \
    "$(refused_at KH-4006) $(refused_at KH-4007) $(refused_at KH-4004)"
expect_eq "nothing else was disclosed (one answer, and the unknown link code's not_found)" \
    "$((d0 + 2))" "$(disclosed)"
finish
