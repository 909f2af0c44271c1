# A tenant's registry through the admin API (issue 13, item 1): staff, job
# roles, assignments with validity periods and business systems' permissions
# are changed by the tenant's admin with khctl, and the very next business
# request is decided by them (a query allowed, then refused when the
# assignment ends, the role loses the procedure, the staff member is made
# inactive, the system loses its permission). Deny by default across roles
# and tenants; every change in the tenant's audit log without names; bad
# input refused with nothing changed; CSV import all or nothing with a
# line-level report, --check, export and import again; no name in the log.
. "$(dirname "$0")/lib.sh"
new_person
T=$(mktemp -d)
R=$RANDOM$RANDOM # IDs of this run (the registry keeps its history: nothing is deleted)
ST=O-REG-$R
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
expect_code() { expect_contains "$1 -> $2" "REFUSED $2:" "$3"; }
# JSON as PostgreSQL builds it, without the blanks around its separators
compact() { sed 's/" : /":/g; s/, "/,"/g; s/}, {/},{/g'; }
staff_count() { sql kh_gw_a "SELECT count(*) FROM t_271004.staff"; }
last_audit() { sql kh_gw_a "SELECT coalesce(max(id), 0) FROM t_271004.audit_log"; }
audit_rows() { sql kh_gw_a "SELECT count(*) FROM t_271004.audit_log WHERE action = '$1' AND outcome = 'ok'"; }
ask() { client 271004 childallowance query "$1" JT001 131016 TK001 "$LOCAL_O"; }
restore_system() {
    adm ta-271004 systems set 271004 childallowance --name "Osaka child allowance system" \
        --permit query:JT001 --permit linkcode >/dev/null
}
trap 'restore_system; rm -rf "$T"' EXIT

# a person Osaka may ask about
out=$(client 131016 tax register "$LOCAL_C" TK001 20250601 fiscal_year=2025 total_income=4120000 \
    annual_tax=206000 municipal_tax_income=123600 spouse_category=1)
expect_contains "Chiyoda registers the tax row asked for" "OK registered version" "$out"
for who in "131016 tax $LOCAL_C" "271004 childallowance $LOCAL_O"; do
    set -- $who
    expect_contains "$1 obtains a link code" "OK link code acquired" "$(client "$1" "$2" linkcode "$3" "$RESIDENT")"
done

# --- reading: the seeded registry -------------------------------------------
out=$(adm ta-271004 --json staff 271004 --staff O-CA-001 | compact)
expect_contains "staff lists a member with their current roles" '"staff_id":"O-CA-001","display_name":"Staff O-CA-001 (synthetic)","active":true,"roles":[{"role_code":"CHILD"' "$out"
expect_contains "roles lists the procedures each covers" '"role_code":"CHILD","name":"Child allowance section","procedures":["JT001"]' \
    "$(adm ta-271004 --json roles 271004)"
expect_contains "systems lists the permissions" '"system_id":"childallowance"' "$(adm ta-271004 --json systems 271004)"
expect_contains "an auditor of 131016 reads its staff" "C-TAX-001" "$(adm aud-131016 staff 131016)"

# --- deny by default ----------------------------------------------------------
expect_code "a responder reads no staff" KH-6005 "$(adm resp-271004 staff 271004)"
expect_code "a responder reads no roles" KH-6005 "$(adm resp-271004 roles 271004)"
expect_code "a responder exports no staff" KH-6005 "$(adm resp-271004 export staff 271004)"
expect_code "an auditor changes no staff" KH-6005 "$(adm aud-131016 staff set 131016 X-1 --name x)"
expect_code "an auditor imports nothing" KH-6005 "$(printf 'staff_id,display_name,active\n' >"$T/e.csv"; adm aud-131016 import staff 131016 "$T/e.csv")"
a0=$(last_audit)
expect_code "another tenant's admin reads no staff" KH-6006 "$(adm ta-131016 staff 271004)"
expect_code "another tenant's admin sets no staff" KH-6006 "$(adm ta-131016 staff set 271004 "$ST" --name x)"
expect_eq "the refusals on 271004 are in its audit log" "2" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.audit_log WHERE id > $a0 AND outcome = 'refused'
        AND code = 'KH-6006' AND operator = 'ta-131016'")"

# --- a new staff member, their role, and the query they may make --------------
a0=$(audit_rows staff.set)
out=$(adm ta-271004 staff set 271004 "$ST" --name "Staff $ST (synthetic)")
expect_contains "the tenant admin adds a staff member" "created: true" "$out"
expect_eq "... with its audit row" $((a0 + 1)) "$(audit_rows staff.set)"
expect_eq "... whose detail names no one" "0" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.audit_log WHERE detail::text LIKE '%synthetic%'")"
expect_code "with no role, the query is refused" KH-2003 "$(ask "$ST")"
out=$(adm ta-271004 assign 271004 "$ST" CHILD)
expect_contains "the admin assigns the role from today" "created: true" "$out"
expect_contains "the query is answered at once" "OK FOUND" "$(ask "$ST")"
today=$(sql kh_gw_a "SELECT current_date")
expect_contains "ending the assignment today" "valid_to: $today" "$(adm ta-271004 assign 271004 "$ST" CHILD --from "$today" --to "$today")"
expect_code "after the end, the query is refused" KH-2003 "$(ask "$ST")"
adm ta-271004 assign 271004 "$ST" CHILD --from 2099-04-01 >/dev/null
expect_contains "a future assignment is listed, not current" '"valid_from":"2099-04-01","valid_to":null,"current":false' \
    "$(adm ta-271004 --json assignments 271004 --staff "$ST" --current false)"

# a role of its own: covers JT001, then nothing
RO=REG$R
expect_contains "a new role covering JT001" "created: true" \
    "$(adm ta-271004 roles set 271004 "$RO" --name "Registry test role" --procedures JT001)"
adm ta-271004 assign 271004 "$ST" "$RO" >/dev/null
expect_contains "with it, the query is answered" "OK FOUND" "$(ask "$ST")"
expect_contains "the role's procedures are replaced by none" "created: false" \
    "$(adm ta-271004 roles set 271004 "$RO" --name "Registry test role" --procedures "")"
expect_code "then the query is refused" KH-2003 "$(ask "$ST")"
expect_eq "the role change is audited with before and after" '["JT001"]|[]' \
    "$(sql kh_gw_a "SELECT (detail->'procedures_before')::text || '|' || coalesce((detail->'procedures')::text, 'null')
        FROM t_271004.audit_log WHERE action = 'role.set' AND target = 'role/$RO' ORDER BY id DESC LIMIT 1")"
adm ta-271004 roles set 271004 "$RO" --name "Registry test role" --procedures JT001 >/dev/null
expect_contains "an inactive member" "active: false" \
    "$(adm ta-271004 staff set 271004 "$ST" --name "Staff $ST (synthetic)" --inactive)"
expect_code "is refused whatever their roles" KH-2002 "$(ask "$ST")"

# a system's permissions
a0=$(last_audit)
expect_contains "the system loses query JT001" "created: false" \
    "$(adm ta-271004 systems set 271004 childallowance --name "Osaka child allowance system" --permit linkcode)"
expect_eq "the audit row has the permissions before and after" '2|1' \
    "$(sql kh_gw_a "SELECT jsonb_array_length(detail->'permissions_before') || '|' || jsonb_array_length(detail->'permissions')
        FROM t_271004.audit_log WHERE id > $a0 AND action = 'system.set'")"
expect_code "its query is refused" KH-2004 "$(ask O-CA-001)"
restore_system
expect_contains "given back, the query is answered" "OK FOUND" "$(ask O-CA-001)"
expect_eq "both system changes are audited" "2" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.audit_log WHERE id > $a0 AND action = 'system.set'
        AND target = 'system/childallowance' AND operator = 'ta-271004'")"
expect_contains "khctl will not empty a system's permissions by omission" "--permit none" \
    "$(adm ta-271004 systems set 271004 childallowance --name "Osaka child allowance system")"

# --- bad input: a clear code, nothing changed --------------------------------
n0=$(staff_count)
expect_code "a staff ID with a space" KH-6008 "$(adm ta-271004 staff set 271004 "bad id" --name x)"
expect_code "a name beginning with =" KH-6008 "$(adm ta-271004 staff set 271004 "$ST-2" --name "=1+2")"
expect_code "a name with a right-to-left override" KH-6008 "$(adm ta-271004 staff set 271004 "$ST-2" --name "$(printf 'abc\u202Edef')")"
expect_code "a name with a zero-width space" KH-6008 "$(adm ta-271004 staff set 271004 "$ST-2" --name "$(printf 'ab\u200Bc')")"
expect_code "an ID beginning with -" KH-6008 "$(adm ta-271004 staff set 271004 "-$ST" --name x)"
expect_code "a name with a control character" KH-6008 "$(adm ta-271004 staff set 271004 "$ST-2" --name "$(printf 'a\tb')")"
expect_code "an unknown field" KH-6008 \
    "$(adm ta-271004 raw POST /admin/v1/tenants/271004/staff '{"staff_id":"X1","display_name":"x","boss":true}')"
expect_code "active as a string" KH-6008 \
    "$(adm ta-271004 raw POST /admin/v1/tenants/271004/staff '{"staff_id":"X1","display_name":"x","active":"yes"}')"
expect_code "a procedure in no legal-basis row" KH-6008 "$(adm ta-271004 roles set 271004 "$RO" --name x --procedures JT999)"
expect_code "a procedure twice" KH-6008 "$(adm ta-271004 roles set 271004 "$RO" --name x --procedures JT001,JT001)"
expect_code "linkcode with a scope" KH-6008 "$(adm ta-271004 systems set 271004 childallowance --name x --permit linkcode:TK001)"
expect_code "register of an item not in the catalogue" KH-6008 "$(adm ta-271004 systems set 271004 childallowance --name x --permit register:ZZ999)"
expect_code "an unknown operation" KH-6008 "$(adm ta-271004 systems set 271004 childallowance --name x --permit delete)"
expect_code "an assignment of an unknown role" KH-6010 "$(adm ta-271004 assign 271004 "$ST" NOSUCHROLE)"
expect_code "an assignment of an unknown staff member" KH-6010 "$(adm ta-271004 assign 271004 NOBODY-$R CHILD)"
expect_code "valid_to before valid_from" KH-6008 "$(adm ta-271004 assign 271004 "$ST" CHILD --from 2030-04-01 --to 2030-03-31)"
expect_code "a day that does not exist" KH-6008 "$(adm ta-271004 assign 271004 "$ST" CHILD --from 2030-02-30)"
expect_eq "nothing was added" "$n0" "$(staff_count)"
expect_contains "the system kept its permissions" '"system_id":"childallowance","name":"Osaka child allowance system","permissions":[{"operation":"linkcode","scope":"*"},{"operation":"query","scope":"JT001"}]' \
    "$(adm ta-271004 --json systems 271004 | compact)"

# --- CSV: all or nothing, with the lines named --------------------------------
cat >"$T/bad.csv" <<EOF
staff_id,display_name,active
$ST-A,Staff $ST-A (synthetic),true
$ST-B,=1+2,true
$ST-C,Staff $ST-C (synthetic),maybe
$ST-A,Staff $ST-A again (synthetic),true
EOF
out=$(adm ta-271004 import staff 271004 "$T/bad.csv")
expect_contains "a staff CSV with bad lines is refused" "REFUSED KH-6012: 3 problems in the staff file; nothing was changed" "$out"
expect_contains "... naming line 3's formula" "line 3, display_name: cannot begin with =" "$out"
expect_contains "... line 4's flag" "line 4, active: true or false" "$out"
expect_contains "... and line 5's repeated staff ID" "line 5, staff_id: $ST-A is also on line 2" "$out"
expect_eq "nothing changed" "$n0" "$(staff_count)"
printf 'staff_id,name,active\n' >"$T/hdr.csv"
expect_contains "a wrong header is line 1" "line 1, -: the header must be staff_id,display_name,active" \
    "$(adm ta-271004 import staff 271004 "$T/hdr.csv")"
expect_code "a JSON body on the import" KH-6007 \
    "$(adm ta-271004 raw POST /admin/v1/tenants/271004/staff/import '{"a":1}')"

{
    echo "staff_id,display_name,active"
    for i in $(seq 1 1999); do echo "$ST-N$i,\"Staff $ST-N$i, synthetic\",true"; done
    echo "$ST-N2000,Staff $ST-N2000 (synthetic),TRUE" # as a spreadsheet writes it
} >"$T/staff.csv"
out=$(adm ta-271004 import staff 271004 "$T/staff.csv" --check)
expect_contains "--check counts 2000 new members" "created: 2000" "$out"
expect_eq "... and changes nothing" "$n0" "$(staff_count)"
t0=$(date +%s%N)
out=$(adm ta-271004 import staff 271004 "$T/staff.csv")
t1=$(date +%s%N)
expect_contains "the import creates them" "created: 2000" "$out"
echo "note: 2000 staff imported in $(( (t1 - t0) / 1000000 )) ms"
expect_eq "... all of them" $((n0 + 2000)) "$(staff_count)"
expect_contains "the same file again changes nothing" "unchanged: 2000" "$(adm ta-271004 import staff 271004 "$T/staff.csv")"
expect_eq "one audit row per applied import, with the file's SHA-256" "2" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.audit_log WHERE action = 'staff.import'
        AND detail->>'sha256' = '$(sha256sum "$T/staff.csv" | cut -c1-64)'")"

# assignments: the April rotation
{
    echo "staff_id,role_code,valid_from,valid_to"
    echo "$ST-N1,CHILD,2020-04-01,2027-04-01"
    echo "$ST-N1,NHI,2027-04-01,"
    echo "$ST-N2,NOSUCHROLE,2027-04-01,"
    echo "NOBODY-$R,CHILD,2027-04-01,"
} >"$T/assign.csv"
out=$(adm ta-271004 import assignments 271004 "$T/assign.csv")
expect_contains "an assignment file with an unknown role and staff member is refused" "REFUSED KH-6012: 2 problems" "$out"
expect_contains "... line 4 names the role" "line 4, role_code: no job role NOSUCHROLE" "$out"
expect_contains "... line 5 the staff member" "line 5, staff_id: no staff member NOBODY-$R" "$out"
expect_eq "nothing assigned" "0" "$(sql kh_gw_a "SELECT count(*) FROM t_271004.staff_role WHERE staff_id = '$ST-N1'")"
head -3 "$T/assign.csv" >"$T/assign2.csv"
expect_contains "the fixed file is applied" "created: 2" "$(adm ta-271004 import assignments 271004 "$T/assign2.csv")"
expect_eq "its audit row lists the grants" "2" \
    "$(sql kh_gw_a "SELECT jsonb_array_length(detail->'changes') FROM t_271004.audit_log
        WHERE action = 'assignment.import' ORDER BY id DESC LIMIT 1")"
expect_code "ending by valid_to alone, when the assignment began earlier" KH-6011 \
    "$(adm ta-271004 assign 271004 "$ST-N1" CHILD --to 2026-12-31)"

# what was taken away is not given back by an old file
adm ta-271004 staff set 271004 "$ST-N1" --name "Staff $ST-N1, synthetic" --inactive >/dev/null
out=$(adm ta-271004 import staff 271004 "$T/staff.csv")
expect_contains "an old staff file would reactivate a member: refused" "line 2, active: staff_id $ST-N1 is inactive" "$out"
expect_eq "... nothing changed" "f" "$(sql kh_gw_a "SELECT active FROM t_271004.staff WHERE staff_id = '$ST-N1'")"
expect_contains "with --reopen it is meant" "updated: 1" "$(adm ta-271004 import staff 271004 "$T/staff.csv" --reopen)"
expect_eq "... and audited with the state before" '{"active": true, "created": false, "staff_id": "'"$ST-N1"'", "name_changed": false, "active_before": false}' \
    "$(sql kh_gw_a "SELECT detail->'changes'->0 FROM t_271004.audit_log WHERE action = 'staff.import' ORDER BY id DESC LIMIT 1")"
printf 'staff_id,role_code,valid_from,valid_to\n%s,CHILD,%s,\n' "$ST" "$today" >"$T/reopen.csv"
expect_contains "an ended assignment is not reopened by a file" "would reopen it (reopen=true to mean it)" \
    "$(adm ta-271004 import assignments 271004 "$T/reopen.csv")"
expect_contains "... unless asked to" "updated: 1" "$(adm ta-271004 import assignments 271004 "$T/reopen.csv" --reopen)"
expect_eq "... with the end it had" "$today" \
    "$(sql kh_gw_a "SELECT detail->'changes'->0->>'valid_to_before' FROM t_271004.audit_log WHERE action = 'assignment.import' ORDER BY id DESC LIMIT 1")"
expect_eq "the rotation is in place" "CHILD 2020-04-01 2027-04-01|NHI 2027-04-01 -" \
    "$(sql kh_gw_a "SELECT string_agg(role_code || ' ' || valid_from || ' ' || coalesce(valid_to::text, '-'), '|' ORDER BY role_code)
        FROM t_271004.staff_role WHERE staff_id = '$ST-N1'")"

# export, and import again
adm ta-271004 export staff 271004 >"$T/export.csv"
expect_eq "the export has every member and the header" $((n0 + 2000 + 1)) "$(wc -l <"$T/export.csv")"
check "a name with a comma is quoted" grep -q "^$ST-N7,\"Staff $ST-N7, synthetic\",true" "$T/export.csv"
check "the export begins with a UTF-8 BOM" test "$(head -c 3 "$T/export.csv" | xxd -p)" = efbbbf
expect_contains "importing the export changes nothing" "unchanged: $((n0 + 2000))" \
    "$(adm ta-271004 import staff 271004 "$T/export.csv")"
adm ta-271004 export assignments 271004 >"$T/aexport.csv"
out=$(adm ta-271004 import assignments 271004 "$T/aexport.csv")
expect_contains "the assignments export imports again: nothing created" "created: 0" "$out"
expect_contains "... nothing updated" "updated: 0" "$out"

# --- the log names no one -----------------------------------------------------
expect_eq "no staff name in gw-a's log" "0" "$(grep -c "Staff $ST" "$KH_STACK/log/gw-a.log" || true)"
finish
