# The web console in a real browser (issue 13, item 8): headless Chromium
# from Debian, driven by Selenium (tests/integration/khconsole.py). Three
# operators, each a browser presenting their own certificate: the tenant
# admin logs in with certificate and password and holds a person's answers;
# Osaka's query is held; the responder sees it arrive and approves fewer
# items; the deferred answer reaches Osaka without the other item; a staff
# CSV with bad lines is refused with a report naming them and nothing
# changes; a rejected bulk file's report is read on the page (and through
# khctl); a responder is offered no staff pages and the API refuses them;
# the platform admin finds the query by handle, reads the audit log, the
# usage chart with its CSV, the operators; adds an operator, resets its
# password; the new operator (a certificate of its own) logs in with it and
# changes it on its account page; the platform admin ends its session and
# disables it, each change in the operators' audit log; a cross-site POST with the
# cookie is refused and changes nothing; the console cannot be framed.
# Screenshots of every page: $KH_BUILD/console-screenshots/.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=3550000 >/dev/null
client 131016 resident register "$LOCAL_C" TK002 20250101 household_no=0000035555 relation=01 \
    municipality_code=131016 resident_status=1 change_reason=A1 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null

# a bulk file with a bad record: rejected, with a report (no values in it)
tmp=$(mktemp -d)
"$KH_BUILD/tools/khgen" residents --count 3 --seed 7 --items TK001 --as-of 20260701 --out "$tmp" >/dev/null 2>&1
bad=$tmp/TK001_full_20260701.csv
sed -i '3s/^\([0-9]*,[0-9]*,[01],[01],[0-9]*\),[0-9]*,/\1,abc,/' "$bad"
out=$(client 131016 tax bulk TK001 diff 20260701 "$bad" 2>&1)
expect_contains "a bulk file with a bad record is rejected" "REFUSED KH-1100" "$out"
UPLOAD=$(sql kh_gw_a "SELECT upload_id FROM t_131016.bulk_upload WHERE state = 'REJECTED' ORDER BY opened_at DESC LIMIT 1")
rm -rf "$tmp"
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
expect_contains "the admin API lists it with its refusal" "\"state\":\"REJECTED\"" \
    "$(adm ta-131016 --json bulk 131016 --state REJECTED)"
rep=$(adm aud-131016 bulk report 131016 "$UPLOAD")
expect_eq "an auditor reads its report: the header" "line,field,code,reason" "$(head -1 <<<"$rep" | tr -d '\r')"
expect_contains "... the bad line, its field and code" "3,annual_tax,KH-1106," "$rep"
case $rep in *abc*) fail "the report quotes the value" ;; *) pass "the report never quotes the value" ;; esac
rest=$(adm aud-131016 bulk report 131016 "$UPLOAD" --offset 23)
expect_eq "from an offset: the report after its header" "$(tail -n +2 <<<"$rep")" "$rest"
expect_contains "a responder may not" "KH-6005" "$(adm resp-131016 bulk 131016)"
expect_contains "an upload ID that is not one" "KH-6008" "$(adm ta-131016 bulk report 131016 "${UPLOAD:0:31}")"
expect_contains "an upload of another tenant" "KH-6010" "$(adm ta-271004 bulk report 271004 "$UPLOAD")"
expect_contains "an offset that is not a number" "KH-6008" \
    "$(adm ta-131016 raw GET "/admin/v1/tenants/131016/bulk/report?upload=$UPLOAD&offset=-1")"
st=$(adm aud-131016 --json raw GET /admin/v1/tenants/131016/status)
expect_contains "a tenant's status: its record chains" '"provision_record"' "$st"
expect_contains "... and its certificates' time left" '"cert":"business_ca","seconds_left":' "$st"
expect_contains "a responder may not read it" "KH-6005" "$(adm resp-131016 raw GET /admin/v1/tenants/131016/status)"
expect_contains "the files applied are listed" '"files":[' "$(adm ta-131016 --json bulk files 131016 --limit 5)"

PORT=$((KH_PORT_BASE + 13)) # gw-a's admin listener
WORK=$(mktemp -d)
# Chromium asks the user which certificate to present unless a policy picks
# it: this one, for the admin listener only, picks the operator CA's (each
# browser's NSS database holds one operator's). Chromium reads policies only
# from /etc; the file is the test's and goes with it.
POLICY=/etc/chromium/policies/managed/kakehashi-it-console-$PORT.json
cleanup() {
    pkill -f "user-data-dir=$WORK" 2>/dev/null || true # a browser left by a killed run
    rm -rf "$WORK" "$POLICY"
    local id
    "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a ta-131016 maintenance off 131016 >/dev/null 2>&1 || true
    "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a ta-131016 policy set 131016 --hold-deadline 1209600 >/dev/null 2>&1 || true
    for id in $(sql kh_gw_a "SELECT id FROM t_131016.answer_flag WHERE local_id = '$LOCAL_C' AND revoked_at IS NULL"); do
        "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a ta-131016 flags revoke 131016 "$id" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
if ! mkdir -p "$(dirname "$POLICY")" 2>/dev/null || ! printf '%s\n' \
    "{\"AutoSelectCertificateForUrls\": [\"{\\\"pattern\\\":\\\"https://127.0.0.1:$PORT\\\",\\\"filter\\\":{\\\"ISSUER\\\":{\\\"CN\\\":\\\"Kakehashi Dev Operator CA\\\"}}}\"]}" \
    >"$POLICY"; then
    fail "cannot write Chromium's policy $POLICY (the test runs as root, as tools/test does)"
    finish
    exit 1
fi

SHOTS=$KH_BUILD/console-screenshots
rm -rf "$SHOTS"
out=$(KH_PORT=$PORT SHOTS=$SHOTS WORK=$WORK LOCAL_C=$LOCAL_C LOCAL_O=$LOCAL_O UPLOAD=$UPLOAD RESIDENT=$RESIDENT \
    timeout -k 10 600 /usr/bin/python3 "$KH_ROOT/tests/integration/khconsole.py" 2>&1) || true
printf '%s\n' "$out"
# the browser's checks count as this test's
CHECKS=$((CHECKS + $(grep -c '^ok   \|^FAIL ' <<<"$out" || true)))
FAILS=$((FAILS + $(grep -c '^FAIL ' <<<"$out" || true)))
check "the browser ran its checks" grep -q '^ok   after logout' <<<"$out"
n=$(find "$SHOTS" -name '*.png' 2>/dev/null | wc -l)
check "a screenshot of every page ($n)" test "$n" -ge 22
finish
