# Minimisation: an answer never carries a field the legal-basis row for the
# procedure does not allow (router.legal_basis_field; an item with no list
# there may carry all its fields), even when the reference copy holds more.
# Checked for every row of the legal-basis table; the expected set is read
# from the router's table, not written here, so the test follows the table.
. "$(dirname "$0")/lib.sh"
new_person
out=$(client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 annual_tax=190000 \
    municipal_tax_flat=5000 municipal_tax_income=110000 prefectural_tax=75000 total_income=3800000 \
    separate_income=120000 deduction_medical=40000 spouse_category=1 short_term_capital_gain=1 \
    long_term_capital_gain=2 forestry_income=3 retirement_income=4 futures_income=5 \
    treaty_interest_dividend=6 deduction_casualty_loss=7 deduction_small_business=8 \
    deduction_life_insurance=9 deduction_special_spouse=10 'dependents[1].relation=01' \
    'dependents[1].birth_date=20150505' 'dependents[1].dependent_category=1')
expect_contains "every TK001 field registered" "OK registered" "$out"
out=$(client 131016 resident register "$LOCAL_C" TK002 20250101 household_no=0000077777 relation=01 \
    municipality_code=131016 move_in_date=20200401 change_reason=A1 change_date=20200401 \
    resident_status=1 remarks=synthetic name_kana=テスト previous_municipality_code=271004 \
    destination_unknown=0 notification_date=20200402)
expect_contains "every TK002 field registered" "OK registered" "$out"
out=$(client 131016 childallowance register "$LOCAL_C" TK003 20250101 recognition_status=1 \
    recognition_date=20250101 monthly_amount=15000 payment_start_month=202502 \
    income_limit_exceeded=0 'children[1].child_birth_date=20200101' 'children[1].child_order=1' \
    'children[1].child_custody=1')
expect_contains "every TK003 field registered" "OK registered" "$out"
out=$(client N00001 pension register "$LOCAL_N" TK008 20250101 pension_no=0000012345 pension_type=11 \
    entitlement_date=20200101 annual_amount=780000 payment_status=1 suspension_note=none \
    payee_name_kana=テスト 'payments[1].payment_month=202501' 'payments[1].payment_amount=65000')
expect_contains "every TK008 field registered" "OK registered" "$out"
LOCAL_T="4${LOCAL_C:1}" LOCAL_S="5${LOCAL_C:1}"
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
client N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
client 130001 welfare linkcode "$LOCAL_T" "$RESIDENT" >/dev/null
client S00001 loans linkcode "$LOCAL_S" "$RESIDENT" >/dev/null

# base names of the fields an answer carried for ITEM, sorted
carried() { grep "^  $1\." <<<"$2" | sed -e "s/^  $1\.//" -e 's/=.*//' -e 's/\[.*//' -e 's/\..*//' | sort -u | tr '\n' ' '; }
# what row ROW allows for ITEM: its list, or every field of the layout
allowed() {
    local l
    l=$(sql kh_router "SELECT string_agg(field, ' ' ORDER BY field) FROM router.legal_basis_field WHERE legal_basis = '$1' AND item_code = '$2'")
    if [ -z "$l" ]; then
        l=$(sql kh_gw_a "SELECT string_agg(name, ' ' ORDER BY name) FROM kh.item_field WHERE item_code = '$2' AND layout_version = (SELECT layout_version FROM kh.item WHERE item_code = '$2') AND group_name IS NULL")
    fi
    tr ' ' '\n' <<<"$l" | sort -u | tr '\n' ' '
}
# row ID ORG SYSTEM STAFF PROCEDURE ITEMS LOCAL_ID [PROVIDER]
row() {
    local id=$1 org=$2 sys=$3 staff=$4 proc=$5 items=$6 lid=$7 prov=${8:-131016} out item
    out=$(client "$org" "$sys" query "$staff" "$proc" "$prov" "$items" "$lid")
    expect_contains "$id: the query is answered" "OK FOUND" "$out"
    for item in ${items//,/ }; do
        expect_eq "$id $item: only the fields the row allows" "$(allowed "$id" "$item")" "$(carried "$item" "$out")"
    done
}
# every row of the legal-basis table, with every item it allows
row LB01 271004 childallowance O-CA-001 JT001 TK001,TK002 "$LOCAL_O"
row LB02 271004 nhi O-NHI-001 JT002 TK001 "$LOCAL_O"
row LB03 130001 welfare T-WEL-001 JT003 TK001,TK002,TK003 "$LOCAL_T"
row LB04 271004 welfare O-WEL-001 JT003 TK001,TK002,TK003 "$LOCAL_O"
row LB05 271004 care O-CARE-001 JT004 TK001 "$LOCAL_O"
row LB06 271004 welfare O-WEL-001 JT005 TK001,TK002 "$LOCAL_O"
row LB07 N00001 pension N-PEN-001 JT006 TK001,TK002 "$LOCAL_N"
row LB08 130001 childrearing T-CR-001 JT007 TK001,TK002 "$LOCAL_T"
row LB09 130001 housing T-HOU-001 JT008 TK001,TK002 "$LOCAL_T"
row LB10 271004 housing O-HOU-001 JT008 TK001,TK002 "$LOCAL_O"
row LB11 130001 tuition T-TUI-001 JT009 TK001 "$LOCAL_T"
row LB12 S00001 loans S-LOAN-001 JT010 TK001 "$LOCAL_S"
row LB13 271004 welfare O-WEL-001 JT003 TK008 "$LOCAL_O" N00001
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK002 "$LOCAL_O")
# a negative check reads a real answer: one that carries TK002 fields
expect_contains "LB01 TK002 is answered" "OK FOUND" "$out"
check "... with TK002 fields" grep -q '^  TK002\.' <<<"$out"
check "... but not the name kana the asker holds" bash -c '! grep -q name_kana <<<"$1"' _ "$out"
finish
