# The query lifecycle on the asking side: every query has a handle and a
# state in the tenant's `query` table; a business system can wait, give up
# waiting (the query goes on and a late answer is stored), or not wait at
# all, and read the state and the answer by handle later. Handles belong to
# the business system that asked; every authorisation decision is an access
# record.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=3100000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
qstate() { sql kh_gw_a "SELECT state || ' ' || coalesce(code, '-') FROM t_271004.query WHERE msg_id = '$1'"; }
handle_of() { grep -o '[0-9a-f]\{32\}' <<<"$1" | head -1; }

# async: the handle at once, the answer by handle
out=$(client 271004 childallowance --async query O-CA-001 JT001 131016 TK001 "$LOCAL_O")
expect_contains "an async query returns its handle at once" "SENT handle=" "$out"
h=$(handle_of "$out")
for _ in $(seq 50); do [ "$(qstate "$h")" = "answered -" ] && break; sleep 0.1; done
expect_eq "the async query is answered in the table" "answered -" "$(qstate "$h")"
out=$(client 271004 childallowance status "$h")
expect_contains "status by handle gives the answer" "OK FOUND handle=$h" "$out"
expect_contains "with the registered values" "TK001.total_income=3100000" "$out"

# a client that stops waiting gets TIMED_OUT with the handle; the late
# answer is still stored and delivered by handle
out=$(client 271004 childallowance --timeout-ms 1 query O-CA-001 JT001 131016 TK001 "$LOCAL_O")
expect_contains "waiting 1 ms ends in TIMED_OUT with a handle" "TIMED_OUT handle=" "$out"
h2=$(handle_of "$out")
for _ in $(seq 50); do [ "$(qstate "$h2")" = "answered -" ] && break; sleep 0.1; done
expect_eq "the late answer moves the query to answered" "answered -" "$(qstate "$h2")"
out=$(client 271004 childallowance status "$h2")
expect_contains "the late answer is delivered by handle" "TK001.total_income=3100000" "$out"
expect_eq "one provision record for the late answer at each side" "1 1" \
    "$(sql kh_gw_a "SELECT (SELECT count(*) FROM t_271004.provision_record WHERE msg_id = '$h2') || ' ' || (SELECT count(*) FROM t_131016.provision_record WHERE msg_id = '$h2')")"

# refusals have a handle and a row too
out=$(client 271004 childallowance query O-TAX-001 JT001 131016 TK001 "$LOCAL_O")
expect_contains "a refused query names its handle" "REFUSED KH-2003:" "$out"
h3=$(handle_of "$out")
expect_eq "the refused query's row" "refused KH-2003" "$(qstate "$h3")"
out=$(client 271004 childallowance status "$h3")
expect_contains "status of a refused query" "REFUSED KH-2003:" "$out"

# listing with filters, only this system's queries
out=$(client 271004 childallowance list state=refused since=20200101 limit=1000)
expect_contains "list by state finds the refused query" "$h3 REFUSED JT001 131016 TK001 O-TAX-001" "$out"
case $out in *"$h2"*) fail "list state=refused shows an answered query" ;; *) pass "list filters by state" ;; esac
out=$(client 271004 nhi list limit=1000)
case $out in *"$h"*) fail "another system sees this system's query" ;; *) pass "another system does not list it" ;; esac
out=$(client 271004 nhi status "$h")
expect_contains "another system cannot read it by handle" "REFUSED KH-1007:" "$out"
out=$(client 131016 tax status "$h")
expect_contains "another tenant cannot read it by handle" "REFUSED KH-1007:" "$out"
out=$(client 271004 childallowance status 0123)
expect_contains "a malformed handle" "REFUSED KH-1002:" "$out"
out=$(client 271004 childallowance list state=lost)
expect_contains "an unknown state filter" "REFUSED KH-1002:" "$out"
out=$(client 271004 childallowance list since=20251399)
expect_contains "a bad date filter" "REFUSED KH-1002:" "$out"

# access records: one decision per query, allowed or refused with its code
expect_eq "access records for the three queries" "allowed - allowed - refused KH-2003" \
    "$(sql kh_gw_a "SELECT string_agg(decision || ' ' || coalesce(code, '-'), ' ' ORDER BY id) FROM t_271004.access_record WHERE msg_id IN ('$h', '$h2', '$h3')")"
finish
