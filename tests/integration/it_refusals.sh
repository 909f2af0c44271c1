# Every refusal of the asking gateway and of registration, each with its
# documented code, and nothing recorded as provided anywhere.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=2800000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null

pa=$(provided_count kh_gw_a 271004); pc=$(provided_count kh_gw_a 131016); ra=$(router_count answered)
refused_before=$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE outcome='refused'")

# expect_refused DESCRIPTION CODE ORG SYSTEM ARGS...
expect_refused() {
    local d=$1 code=$2
    shift 2
    local out
    out=$(client "$@")
    expect_contains "$d -> $code" "REFUSED $code:" "$out"
}

expect_refused "no legal-basis row (NHI asks for resident record)" KH-2001 \
    271004 nhi query O-NHI-001 JT002 131016 TK002 "$LOCAL_O"
expect_refused "an item the legal basis does not allow" KH-2001 \
    271004 childallowance query O-CA-001 JT001 131016 TK001,TK003 "$LOCAL_O"
expect_refused "staff member without the role" KH-2003 \
    271004 childallowance query O-TAX-001 JT001 131016 TK001 "$LOCAL_O"
expect_refused "staff member whose role ended" KH-2003 \
    271004 childallowance query O-MOVED-001 JT001 131016 TK001 "$LOCAL_O"
expect_refused "inactive staff member" KH-2002 \
    271004 childallowance query O-GONE-001 JT001 131016 TK001 "$LOCAL_O"
expect_refused "unknown staff member" KH-2002 \
    271004 childallowance query O-NOBODY-9 JT001 131016 TK001 "$LOCAL_O"
expect_refused "business system without the permission (tax system queries)" KH-2004 \
    271004 tax query O-CA-001 JT001 131016 TK001 "$LOCAL_O"
expect_refused "business system permitted another procedure only" KH-2004 \
    271004 nhi query O-CA-001 JT001 131016 TK001 "$LOCAL_O"
expect_refused "unknown local ID" KH-3001 \
    271004 childallowance query O-CA-001 JT001 131016 TK001 999999999999
expect_refused "provider not in the directory (Sapporo)" KH-2007 \
    271004 childallowance query O-CA-001 JT001 011002 TK001 "$LOCAL_O"
expect_refused "malformed provider code (check digit)" KH-1002 \
    271004 childallowance query O-CA-001 JT001 131017 TK001 "$LOCAL_O"
expect_refused "malformed local ID" KH-1002 \
    271004 childallowance query O-CA-001 JT001 131016 TK001 12AB
expect_refused "item listed twice" KH-1002 \
    271004 childallowance query O-CA-001 JT001 131016 TK001,TK001 "$LOCAL_O"

expect_eq "nothing provided to Osaka" "$pa" "$(provided_count kh_gw_a 271004)"
expect_eq "nothing provided by Chiyoda" "$pc" "$(provided_count kh_gw_a 131016)"
expect_eq "the router forwarded nothing" "$ra" "$(router_count answered)"
# the 10 refusals of well-formed queries are recorded; the 3 malformed ones are
# refused at the boundary before they become queries
expect_eq "each refusal of a well-formed query is recorded with its code" $((refused_before + 10)) \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE outcome='refused'")"
expect_eq "refusal records carry codes" "0" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_271004.provision_record WHERE outcome='refused' AND code NOT LIKE 'KH-%'")"

# the subject has no link code at the provider: an answer, not a refusal
other=$((LOCAL_O + 1))
client 271004 childallowance linkcode "$other" "29${RESIDENT:2}" >/dev/null
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$other")
expect_contains "person unknown at the provider is NOT_FOUND" "OK NOT_FOUND" "$out"
expect_eq "still nothing provided" "$pc" "$(provided_count kh_gw_a 131016)"

# registration and link-code refusals change nothing
before=$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica")
expect_refused "field fails its layout" KH-1005 \
    131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=20X6 total_income=1
expect_refused "unknown field" KH-1005 \
    131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=1 salary=3
expect_refused "mandatory field missing" KH-1005 \
    131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026
expect_refused "code outside its code table" KH-1005 \
    131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=1 spouse_category=7
expect_refused "unknown item" KH-1004 \
    131016 tax register "$LOCAL_C" TK999 20260101 fiscal_year=2026
expect_refused "system may not register this item" KH-2004 \
    131016 tax register "$LOCAL_C" TK002 20260101 household_no=1 relation=01 municipality_code=131016 resident_status=1
expect_refused "bad effective date" KH-1002 \
    131016 tax register "$LOCAL_C" TK001 20261399 fiscal_year=2026 total_income=1
expect_eq "refused registrations changed nothing" "$before" "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica")"
expect_refused "resident code not 11 digits" KH-3004 131016 tax linkcode 1234 12345
expect_refused "business system of another tenant's CA is not enough" KH-2004 \
    271004 childallowance register "$LOCAL_O" TK001 20260101 fiscal_year=2026 total_income=1
finish
