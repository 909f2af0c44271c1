# Usage counts (issue 5) on the admin API and as Prometheus metrics: a known
# number of registrations, lawful queries, refusals and held queries (one
# refused by the responder, one left waiting, then approved) change the
# day's counts by exactly that much at both municipalities, in the API and
# in the metrics alike; the counts agree with the provision records read
# directly; /metrics is strict Prometheus text (histograms included) with a
# tenant label on every tenant's sample and is scraped like Prometheus does (client certificate + bearer
# token); roles and tenant scopes hold; bad parameters are refused with
# KH-6008 and change nothing. The stack is shared: everything compares
# before and after.
. "$(dirname "$0")/lib.sh"
ADMIN_PORT=$((KH_PORT_BASE + 13))
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
expect_code() { expect_contains "$1 -> $2" "REFUSED $2:" "$3"; }
handle_of() { grep -o '[0-9a-f]\{32\}' <<<"$1" | head -1; }
qstate() { sql kh_gw_a "SELECT state FROM t_271004.query WHERE msg_id = '$1'"; }
wait_state() { # HANDLE STATE
    for _ in $(seq 1 100); do
        [ "$(qstate "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# get OPERATOR PATH [TOKEN]: one GET on gw-a's admin listener the way a
# Prometheus scrape does it (client certificate, bearer token); prints the
# HTTP response, head and body.
get() {
    local auth=""
    [ -n "${3:-}" ] && auth="Authorization: Bearer $3"$'\r\n'
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n' "$2" "$auth" |
        timeout 20 openssl s_client -connect "127.0.0.1:$ADMIN_PORT" -CAfile "$PKI/national-ca.crt" \
            -cert "$PKI/operator/$1/tls.crt" -key "$PKI/operator/$1/tls.key" -quiet -ign_eof \
            2>/dev/null || true
}
body() { sed '1,/^\r$/d'; }
# scrape OPERATOR FILE: the metrics body into FILE (after the cache's 5 s)
scrape() {
    sleep 5.2
    get "$1" /metrics "$(cat "$T/$1.tok")" >"$2.http"
    body <"$2.http" >"$2"
}
# metric FILE SERIES: the value of one series
metric() { awk -v s="$2" 'index($0, s " ") == 1 { print $2 }' "$1"; }

# prom_ok FILE: the text exposition format 0.0.4, strictly. Every line is a
# HELP, a TYPE or a sample (names, label names, escaped label values, a
# number); a family's HELP then TYPE come once, before its samples, which
# stay together; counters end in _total; no series twice; a final newline.
prom_ok() {
    local name='[a-zA-Z_:][a-zA-Z0-9_:]*' lname='[a-zA-Z_][a-zA-Z0-9_]*'
    local lval='"([^"\\]|\\[\\"n])*"' num='-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?'
    local help="^# HELP $name "'([^\\]|\\[\\n])*$' type="^# TYPE $name (counter|gauge|histogram)$"
    local sample="^$name(\\{$lname=$lval(,$lname=$lval)*\\})? $num\$"
    if grep -Eqv -e "$help" -e "$type" -e "$sample" "$1"; then
        echo "not exposition format: $(grep -Ev -e "$help" -e "$type" -e "$sample" "$1" | head -2)"
        return 1
    fi
    [ -s "$1" ] && [ "$(tail -c 1 "$1" | od -An -tx1 | tr -d ' ')" = 0a ] || {
        echo "no final newline"
        return 1
    }
    awk '
        /^# HELP / { if ($3 in helped) { print "HELP twice: " $3; bad = 1 }
                     helped[$3] = 1; last_help = $3; next }
        /^# TYPE / { if ($3 in typed) { print "TYPE twice: " $3; bad = 1 }
                     if ($3 != last_help) { print "TYPE without its HELP: " $3; bad = 1 }
                     typed[$3] = $4; fam = $3; next }
        { series = $0; sub(/ [^ ]*$/, "", series); n = series; sub(/\{.*/, "", n)
          h = typed[fam] == "histogram" && (n == fam "_bucket" || n == fam "_sum" || n == fam "_count")
          if (n != fam && !h) { print "sample outside its family: " series; bad = 1 }
          if (n == fam "_bucket" && series !~ /le="[^"]*"}$/) { print "bucket without le: " series; bad = 1 }
          # a histogram: buckets cumulative, +Inf equal to _count
          if (n == fam "_bucket") { key = series; sub(/,?le="[^"]*"}$/, "", key); sub(/^[^{]*/, "", key)
                                    v = $NF + 0
                                    if ((key in prev) && v < prev[key]) { print "buckets not cumulative: " series; bad = 1 }
                                    prev[key] = v; if (series ~ /le="\+Inf"}$/) inf[key] = v }
          if (n == fam "_count") { key = series; sub(/^[^{]*/, "", key); sub(/}$/, "", key)
                                   if (!((key) in inf) || inf[key] != $NF + 0) { print "+Inf is not _count: " series; bad = 1 } }
          if (typed[fam] == "counter" && fam !~ /_total$/) { print "counter " fam " without _total"; bad = 1 }
          if (series in seen) { print "series twice: " series; bad = 1 }
          seen[series] = 1 }
        END { exit bad }' "$1"
}

# usage ORG: the total of the day's counts ("name:value" lines) from the
# admin API, over today and tomorrow (in case the day turns meanwhile)
DAY0=$(sql kh_gw_a "SELECT current_date")
DAY1=$(sql kh_gw_a "SELECT current_date + 1")
usage() {
    adm admin --token-file "$T/admin.tok" --json usage "$1" --since "$DAY0" --until "$DAY1" |
        tr -d '\n' | sed 's/.*"total":{\([^}]*\)}.*/\1/' | tr ',' '\n' | tr -d '"'
}
field() { sed -n "s/^$2://p" <<<"$1"; }
# expect_deltas WHAT BEFORE AFTER NAME=DELTA...: each count grew by exactly DELTA
expect_deltas() {
    local what=$1 b=$2 a=$3 kv
    shift 3
    for kv in "$@"; do
        expect_eq "$what: ${kv%%=*} +${kv#*=}" $(($(field "$b" "${kv%%=*}") + ${kv#*=})) \
            "$(field "$a" "${kv%%=*}")"
    done
}

for op in admin aud-131016; do
    adm "$op" --token-file "$T/$op.tok" login >/dev/null
    check "$op keeps a session for the test" test -s "$T/$op.tok"
done

# --- before ------------------------------------------------------------------
new_person
P1_C=$LOCAL_C P1_O=$LOCAL_O P1_R=$RESIDENT
new_person
P2_O=$LOCAL_O P2_R="29${RESIDENT:2}"
u131=$(usage 131016) u271=$(usage 271004)
check "the report has every count" test "$(wc -l <<<"$u131")" = 18
scrape admin "$T/m0"
check "/metrics before: Prometheus text" prom_ok "$T/m0"
# the validator itself refuses what is not the format
broken() { # DESCRIPTION SED-SCRIPT
    sed "$2" "$T/m0" >"$T/broken"
    if cmp -s "$T/m0" "$T/broken"; then
        fail "the validator test changed nothing ($1)"
    elif prom_ok "$T/broken" >/dev/null; then
        fail "the validator accepts $1"
    else
        pass "the validator refuses $1"
    fi
}
broken "an unescaped quote in a label value" '0,/tenant="131016"/s//tenant="13"1016"/'
broken "a sample without a value" '0,/^kakehashi_queries_asked_total{.*} [0-9]*$/s/ [0-9]*$//'
broken "a family without its TYPE" '0,/^# TYPE kakehashi_queries_held_total/{//d}'
broken "a series twice" '/^kakehashi_bulk_files_applied_total{/p'
broken "a sample outside its family" '0,/^# HELP kakehashi_queries_failed_total/s//kakehashi_queries_asked_total{tenant="x"} 1\n&/'
broken "a counter without _total" 's/kakehashi_bulk_files_applied_total/kakehashi_bulk_files_applied/g'
broken "a blank line" '0,/^# HELP/s//\n&/'

# --- what happens ------------------------------------------------------------
# registrations at Chiyoda: two versions online, one bulk file
for d in 20250101 20260101; do
    expect_contains "Chiyoda registers a version ($d)" "OK registered version" \
        "$(client 131016 resident register "$P1_C" TK002 "$d" household_no=0000054321 relation=01 \
            municipality_code=131016 resident_status=1 change_reason=A1)"
done
"$KH_BUILD/tools/khgen" changes --seed "$RANDOM$RANDOM" --as-of 20260501 --out "$T/bulk" >/dev/null
f=$(ls "$T"/bulk/TK002_diff_*.csv | head -1)
rows=$(($(wc -l <"$f") - 1))
expect_contains "Chiyoda applies a bulk file of $rows records" "OK APPLIED records=$rows" \
    "$(client 131016 resident --timeout-ms 60000 bulk TK002 diff 20260501 "$f")"
client 131016 resident linkcode "$P1_C" "$P1_R" >/dev/null
client 271004 childallowance linkcode "$P1_O" "$P1_R" >/dev/null
client 271004 childallowance linkcode "$P2_O" "$P2_R" >/dev/null
# Osaka asks: two lawful queries answered, one for a person Chiyoda does not know
ask() { client 271004 childallowance query O-CA-001 JT001 131016 TK002 "$1"; }
expect_contains "lawful query 1 is answered" "OK FOUND" "$(ask "$P1_O")"
expect_contains "lawful query 2 is answered" "OK FOUND" "$(ask "$P1_O")"
expect_contains "a person Chiyoda has no link code for: not found" "OK NOT_FOUND" "$(ask "$P2_O")"
# two refusals at Osaka's own gateway
expect_contains "no legal-basis row: refused" "REFUSED KH-2001:" \
    "$(client 271004 nhi query O-NHI-001 JT002 131016 TK002 "$P1_O")"
expect_contains "a staff member without the role: refused" "REFUSED KH-2003:" \
    "$(client 271004 childallowance query O-TAX-001 JT001 131016 TK002 "$P1_O")"
# two held queries: a hold set through the admin API
out=$(adm ta-131016 --json flags add 131016 hold --local-id "$P1_C" --reason "synthetic usage test")
hold=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$out")
check "a tenant admin holds the person's answers (flag $hold)" test -n "$hold"
out=$(ask "$P1_O") h1=$(handle_of "$out")
expect_contains "held query 1 waits" "PENDING handle=$h1" "$out"
out=$(ask "$P1_O") h2=$(handle_of "$out")
expect_contains "held query 2 waits" "PENDING handle=$h2" "$out"
scrape admin "$T/m1"
expect_contains "Chiyoda's responder refuses held query 2" '"decision":"refused"' \
    "$(adm resp-131016 --json decide 131016 "$h2" refuse --reason "synthetic")"
check "Osaka's query 2 ends refused" wait_state "$h2" refused
check "held query 1 is still pending at Osaka" test "$(qstate "$h1")" = pending
expect_contains "... and waits for Chiyoda's responder" "\"msg_id\":\"$h1\"" \
    "$(adm resp-131016 --json pending 131016)"

# --- the counts: exactly what happened ---------------------------------------
a131=$(usage 131016) a271=$(usage 271004)
expect_deltas "Osaka asked" "$u271" "$a271" asked=7 asked_provided=2 asked_not_found=1 \
    asked_withheld=0 asked_pending=2 asked_refused=3 asked_expired=0 asked_failed=0 answered=0 held=0 \
    rows_registered=0 bulk_files=0
expect_deltas "Chiyoda answered" "$u131" "$a131" asked=0 answered=3 answered_provided=2 \
    answered_not_found=1 answered_withheld=0 held=2 answered_refused=1 answered_expired=0 \
    answered_undelivered=0 \
    rows_registered=$((2 + rows)) bulk_files=1
# the same counts straight from the records
rec() { sql kh_gw_a "SELECT count(*) FROM t_$1.provision_record WHERE at >= '$DAY0' AND at < '$DAY1'::date + 1 AND $2"; }
expect_eq "Osaka's asked = queries whose first record is in the period" \
    "$(sql kh_gw_a "SELECT count(*) FROM (SELECT msg_id, min(at) AS first FROM t_271004.provision_record
        WHERE direction = 'asked' GROUP BY msg_id) q WHERE first >= '$DAY0' AND first < '$DAY1'::date + 1")" \
    "$(field "$a271" asked)"
expect_eq "Osaka's asked_refused = its refused records" "$(rec 271004 "direction = 'asked' AND outcome = 'refused'")" \
    "$(field "$a271" asked_refused)"
expect_eq "Chiyoda's held = its held records" "$(rec 131016 "direction = 'answered' AND outcome = 'held'")" \
    "$(field "$a131" held)"
expect_eq "Chiyoda's rows_registered = its replica rows of the period" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica WHERE registered_at >= '$DAY0' AND registered_at < '$DAY1'::date + 1")" \
    "$(field "$a131" rows_registered)"

# --- the metrics: the same deltas ------------------------------------------------
scrape admin "$T/m2"
check "/metrics after: Prometheus text" prom_ok "$T/m2"
expect_contains "served as text format 0.0.4" "Content-Type: text/plain; version=0.0.4" "$(cat "$T/m2.http")"
# mdelta DESCRIPTION SERIES DELTA: from the scrape before to the one after
mdelta() { expect_eq "metrics: $1" $(($(metric "$T/m0" "$2") + $3)) "$(metric "$T/m2" "$2")"; }
mdelta "Osaka asked +7" 'kakehashi_queries_asked_total{tenant="271004"}' 7
mdelta "Osaka's refused +3" 'kakehashi_queries_refused_total{tenant="271004",side="asking"}' 3
mdelta "Osaka's pending records +2" \
    'kakehashi_provision_records_total{tenant="271004",direction="asked",outcome="pending"}' 2
mdelta "Osaka failed +0" 'kakehashi_queries_failed_total{tenant="271004"}' 0
mdelta "Chiyoda answered +3" 'kakehashi_queries_answered_total{tenant="131016"}' 3
mdelta "Chiyoda held +2" 'kakehashi_queries_held_total{tenant="131016"}' 2
mdelta "Chiyoda's responder refused +1" 'kakehashi_queries_refused_total{tenant="131016",side="answering"}' 1
mdelta "Chiyoda's rows +$((2 + rows))" 'kakehashi_replica_rows_registered_total{tenant="131016"}' $((2 + rows))
mdelta "Chiyoda's bulk files +1" 'kakehashi_bulk_files_applied_total{tenant="131016"}' 1
mdelta "one held query still waits" 'kakehashi_held_queries_waiting{tenant="131016"}' 1
mdelta "Osaka has one query pending" 'kakehashi_asked_queries_open{tenant="271004",state="pending"}' 1
expect_eq "metrics: while both were held, two waited at Chiyoda" \
    $(($(metric "$T/m0" 'kakehashi_held_queries_waiting{tenant="131016"}') + 2)) \
    "$(metric "$T/m1" 'kakehashi_held_queries_waiting{tenant="131016"}')"
expect_eq "metrics: ... and two were pending at Osaka" \
    $(($(metric "$T/m0" 'kakehashi_asked_queries_open{tenant="271004",state="pending"}') + 2)) \
    "$(metric "$T/m1" 'kakehashi_asked_queries_open{tenant="271004",state="pending"}')"
expect_eq "every sample but the gateway's own has a tenant label" "" \
    "$(grep -v '^#' "$T/m2" | grep -v '^kakehashi_http_\|^kakehashi_db_jobs\|^kakehashi_directory_\|^kakehashi_tsa_' |
        grep -v '^kakehashi_certificate_expiry_seconds{cert="\(tls_[a-z]*\|router_[a-z]*\|[a-z]*_ca\)"}' |
        grep -v '{tenant="\(131016\|271004\)"[,}]' | head -1)"
# the gateway's own figures (platform admins only), read while this scrape
# was in flight on the admin listener
check "the scrape is a request in flight on the admin listener" \
    test "$(metric "$T/m2" 'kakehashi_http_requests_in_flight{listener="admin"}')" -ge 1
check "... on a connection open and counted" \
    test "$(metric "$T/m2" 'kakehashi_http_connections{listener="admin",state="counted"}')" -ge 1
for l in business peer admin; do
    check "the $l listener's load is there" test -n \
        "$(metric "$T/m2" "kakehashi_http_overload_refusals_total{listener=\"$l\"}")"
done
for org in 131016 271004; do
    expect_contains "the platform admin's metrics name tenant $org" "{tenant=\"$org\"" "$(cat "$T/m2")"
done
expect_eq "both tenants were read" "2" "$(grep -c '^kakehashi_usage_read_ok{tenant="[0-9A-Z]*"} 1$' "$T/m2")"
expect_eq "no personal data in the metrics" "" "$(grep -E "$P1_C|$P1_O|$P2_O|O-CA-001" "$T/m2" || true)"

# --- the held query approved: answered, and still asked once ------------------
expect_contains "Chiyoda's responder approves held query 1" '"decision":"approved"' \
    "$(adm resp-131016 --json decide 131016 "$h1" approve)"
check "Osaka's query 1 is answered" wait_state "$h1" answered
adm ta-131016 flags revoke 131016 "$hold" >/dev/null
b131=$(usage 131016) b271=$(usage 271004)
expect_deltas "Osaka, after the approval" "$a271" "$b271" asked=0 asked_provided=1 asked_pending=0
expect_deltas "Chiyoda, after the approval" "$a131" "$b131" answered=1 answered_provided=1 held=0

# --- reports: periods and their limits ------------------------------------------
out=$(adm aud-131016 --token-file "$T/aud-131016.tok" --json usage 131016)
expect_contains "by default the last 31 days up to today" \
    "\"since\":\"$(sql kh_gw_a "SELECT current_date - 30")\",\"until\":\"$(sql kh_gw_a "SELECT current_date")\"" "$out"
expect_eq "... one row a day" 31 "$(grep -o '"day":' <<<"$out" | wc -l)"
out=$(adm ta-131016 usage 131016 --since "$DAY0" --until "$DAY0")
expect_contains "a tenant admin reads the table" "usage of tenant 131016, $DAY0 to $DAY0" "$out"
expect_contains "... with a total row" "total " "$out"
Y=$(sql kh_gw_a "SELECT current_date - 365")
expect_contains "366 days is the longest period" "\"since\":\"$Y\"" \
    "$(adm admin --token-file "$T/admin.tok" --json usage 131016 --since "$Y")"
out=$(adm admin --token-file "$T/admin.tok" --json usage --all --since "$DAY0")
expect_contains "the platform admin reads every tenant" '"tenants":[{"tenant":"131016"' "$out"
expect_contains "... each with its own report" '{"tenant":"271004","days":' "$out"
expect_contains "usage --all prints one row a tenant" "271004 " \
    "$(adm admin --token-file "$T/admin.tok" usage --all --since "$DAY0")"

# --- bad parameters: KH-6008 naming the parameter, nothing changed ---------------
n131=$(sql kh_gw_a "SELECT count(*) FROM t_131016.audit_log")
nop=$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit")
bad() { # DESCRIPTION PARAMETER PATH
    expect_contains "$1 -> KH-6008 naming $2" "REFUSED KH-6008: $2" \
        "$(adm admin --token-file "$T/admin.tok" raw GET "$3")"
}
U=/admin/v1/tenants/131016/usage
bad "since not a date" since "$U?since=2026-02-30"
bad "until not a date" until "$U?until=yesterday"
bad "until before since" until "$U?since=2026-05-02&until=2026-05-01"
bad "a period over 366 days" since "$U?since=$(sql kh_gw_a "SELECT current_date - 366")"
bad "since after today (until's default)" since "$U?since=$(sql kh_gw_a "SELECT current_date + 1")"
bad "since given twice" since "$U?since=$DAY0&since=$DAY0"
bad "an unknown parameter" "unknown parameter 'colour'" "$U?colour=red"
bad "all tenants: a bad date" since "/admin/v1/usage?since=2026-1-1"
bad "metrics take no parameters" "unknown parameter 'name'" "/metrics?name=x"
expect_code "POST /metrics" KH-6009 "$(adm admin --token-file "$T/admin.tok" raw POST /metrics '{}')"
expect_eq "the bad requests wrote nothing to the tenant's audit log" "$n131" \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.audit_log")"
expect_eq "... nor to the operators' audit log" "$nop" "$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit")"
expect_deltas "Chiyoda's counts did not move" "$b131" "$(usage 131016)" asked=0 answered=0 held=0 \
    rows_registered=0

# --- who may read --------------------------------------------------------------
expect_code "a responder reads no usage" KH-6005 "$(adm resp-131016 usage 131016)"
expect_code "a responder reads no metrics" KH-6005 "$(adm resp-131016 metrics)"
expect_code "a tenant admin reads no metrics" KH-6005 "$(adm ta-131016 metrics)"
expect_code "a tenant admin reads not every tenant's usage" KH-6005 "$(adm ta-131016 usage --all)"
expect_code "an auditor reads not every tenant's usage" KH-6005 \
    "$(adm aud-131016 --token-file "$T/aud-131016.tok" usage --all)"
expect_code "an auditor of 131016 reads no usage of 271004" KH-6006 \
    "$(adm aud-131016 --token-file "$T/aud-131016.tok" usage 271004)"
expect_eq "the refusal on 131016 is in its audit log" "resp-131016,usage.read,refused,KH-6005" \
    "$(sql kh_gw_a "SELECT operator || ',' || action || ',' || outcome || ',' || code
        FROM t_131016.audit_log WHERE action = 'usage.read' ORDER BY id DESC LIMIT 1")"
expect_eq "the refused scrapes are in the operators' audit log" "ta-131016,metrics,KH-6005
resp-131016,metrics,KH-6005" "$(sql kh_gw_a "SELECT actor || ',' || action || ',' || code
    FROM kh.operator_audit WHERE action = 'metrics' ORDER BY id DESC LIMIT 2")"
out=$(get aud-131016 /metrics)
expect_contains "a scrape without a token -> KH-6001" '"code":"KH-6001"' "$out"
expect_contains "... with HTTP 401" "HTTP/1.1 401" "$out"
expect_contains "a scrape with another operator's token -> KH-6001" '"code":"KH-6001"' \
    "$(get aud-131016 /metrics "$(cat "$T/admin.tok")")"
scrape aud-131016 "$T/m3"
check "an auditor's scrape: Prometheus text" prom_ok "$T/m3"
expect_contains "... of its tenant" '{tenant="131016"' "$(cat "$T/m3")"
expect_eq "... and of no other" "" "$(grep 271004 "$T/m3" || true)"
expect_eq "... without the gateway's own figures" "" "$(grep kakehashi_http_ "$T/m3" || true)"
expect_contains "khctl admin metrics prints the same text" "# TYPE kakehashi_queries_asked_total counter" \
    "$(adm aud-131016 --token-file "$T/aud-131016.tok" metrics)"
out=$("$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-b admin metrics 2>&1 || true)
expect_contains "gw-b's metrics name its tenant" '{tenant="N00001"}' "$out"
case $out in *131016*) fail "gw-b's metrics name another gateway's tenant" ;; *) pass "gw-b's metrics name only its own tenant" ;; esac

for op in admin aud-131016; do adm "$op" --token-file "$T/$op.tok" logout >/dev/null; done
finish
