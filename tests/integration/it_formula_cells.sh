# Spreadsheet formula cells (issue 11, class 6): `=cmd|' /C calc'!A0` or
# `+SUM(A1)` in a reference copy was stored verbatim, to reach a spreadsheet
# here or at any organisation that receives it in an answer. The policy
# (refdb/FORMAT.md section 2): the types 9, S9, DATE and CODE cannot begin
# with a formula character by their own rules (a negative S9 is a number);
# an X value beginning with =, +, - or @ is refused (KH-1109 in a bulk file,
# KH-1005 online), but for a lone + or -; the full-width forms (＝＋－＠) are text and accepted; a
# check report neutralises any such cell with a leading apostrophe. The bulk
# path is covered by it_bulk (khgen's broken file "formula").
. "$(dirname "$0")/lib.sh"
new_person
base=(household_no=0000054321 relation=01 municipality_code=131016 resident_status=1
    change_reason=A1)
rows() { sql kh_gw_a "SELECT count(*) FROM t_131016.replica WHERE local_id = '$LOCAL_C'"; }
out=$(client 131016 resident register "$LOCAL_C" TK002 20250101 "${base[@]}")
expect_contains "a control: the row without remarks is stored" "OK" "$out"
check "... once" test "$(rows)" = 1
for v in "=cmd|' /C calc'!A0" "+SUM(A1)" "-2+3+cmd|' /C calc'!A0" "@SUM(A1)"; do
    out=$(client 131016 resident register "$LOCAL_C" TK002 20250102 "${base[@]}" "remarks=$v")
    expect_contains "remarks beginning with '${v:0:1}' is refused" "REFUSED KH-1005" "$out"
    expect_contains "... naming the field and why" "remarks" "$out"
    expect_contains "... the rule" "cannot begin with =, +, - or @" "$out"
    case $out in *"$v"*) fail "... the refusal quotes the value" ;; *) pass "... without quoting the value" ;; esac
done
check "none of them was stored" test "$(rows)" = 1
out=$(client 131016 resident register "$LOCAL_C" TK002 20250103 "${base[@]}" "remarks=＝ＳＵＭ－１")
expect_contains "full-width forms are text, and accepted" "OK" "$out"
check "... and stored as sent" test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica
    WHERE local_id = '$LOCAL_C' AND data->>'remarks' = '＝ＳＵＭ－１'")" = 1
out=$(client 131016 resident register "$LOCAL_C" TK002 20250104 "${base[@]}" "remarks=a=b-c")
expect_contains "formula characters inside a value are accepted" "OK" "$out"
out=$(client 131016 resident register "$LOCAL_C" TK002 20250105 "${base[@]}" "remarks=-")
expect_contains "a lone minus, a placeholder, is accepted" "OK" "$out"
finish
