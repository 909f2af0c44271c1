# A tenant whose schema is in a database of its own (issue 12: tenants
# spread over clusters). In the stack gw-b's S00001 lives in kh_gw_b2
# (tenant_db), its other tenants in kh_gw_b. Everything S00001 does (link
# codes, a bulk file with its parts, claim, lease keeper and load, the
# records) lands in kh_gw_b2 and nothing in kh_gw_b; when kh_gw_b2 refuses
# connections only S00001 is refused (KH-5002, worth a retry), gw-b's other
# tenants are served and the node stays ready; once it accepts them again
# S00001 is served again, without a restart.
. "$(dirname "$0")/lib.sh"
. "$KH_ROOT/tools/lib.sh" # kh_http_ok
tmp=$(mktemp -d)
allow() { sql kh_router "ALTER DATABASE kh_gw_b2 ALLOW_CONNECTIONS $1" >/dev/null; }
trap 'allow true; rm -rf "$tmp"' EXIT
GEN=$KH_BUILD/tools/khgen
B_HEALTH=$((KH_PORT_BASE + 24))
s_sql() { sql kh_gw_b2 "$1"; }
PID=$(cat "$KH_STACK/run/gw-b.pid")

# --- S00001's work lands in its database ------------------------------------
"$GEN" residents --count 40 --seed 77 --items TK001 --as-of 20260401 --out "$tmp/r" >/dev/null
f=$tmp/r/TK001_full_20260401.csv
row=$(sed -n '2p' "$f")
lid=${row%%,*}
res=$(awk -F'\t' -v l="$lid" '$1 == l {print $3}' "$tmp/r/persons.tsv")
out=$(client S00001 loans linkcode "$lid" "$res")
expect_contains "S00001 acquires a link code" "OK" "$out"
expect_eq "... stored in kh_gw_b2" 1 \
    "$(s_sql "SELECT count(*) FROM t_s00001.linkcode WHERE local_id = '$lid'")"
# a bulk file: parts, commit, claim, the lease keeper's own connection, the
# load and its outcome all go to the tenant's database
s_sql "SET ROLE kh_t_s00001; INSERT INTO t_s00001.system_permission VALUES ('loans', 'register', 'TK001') ON CONFLICT DO NOTHING" >/dev/null
records=$(($(wc -l <"$f") - 1))
out=$(client S00001 loans --timeout-ms 60000 bulk TK001 full 20260401 "$f")
expect_contains "a bulk file of S00001 is applied" "OK APPLIED records=$records" "$out"
expect_eq "... its versions are in kh_gw_b2" "$records" \
    "$(s_sql "SELECT count(*) FROM t_s00001.replica")"
expect_eq "... its upload is recorded there, its parts gone" "APPLIED|0" \
    "$(s_sql "SELECT string_agg(state, ','), (SELECT count(*) FROM t_s00001.bulk_upload_part) FROM t_s00001.bulk_upload")"
expect_eq "... and the file, once per content, there" 1 \
    "$(s_sql "SELECT count(*) FROM t_s00001.bulk_file")"
expect_eq "gw-b's own database has no S00001 schema" 0 \
    "$(sql kh_gw_b "SELECT count(*) FROM pg_namespace WHERE nspname = 't_s00001'")"

# --- kh_gw_b2 unreachable: only S00001 is refused ----------------------------
allow false
sql kh_router "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'kh_gw_b2'" >/dev/null
out=$(client S00001 loans list limit=1 2>&1 || true)
expect_contains "with its database refusing connections, S00001 is refused, worth a retry" \
    "KH-5002" "$out"
out=$(client N00001 pension list limit=1 2>&1 || true)
expect_contains "... while gw-b's other tenants are served" "OK" "$out"
check "... and gw-b stays ready (/ready checks its own db)" kh_http_ok "http://127.0.0.1:$B_HEALTH/ready"
allow true
# (a database found unreachable is not tried again for 1 s: a client retries KH-5002)
served() { client S00001 loans list limit=1 2>&1 | tail -1 | grep -q '^OK'; }
check "once it accepts connections again S00001 is served (10 s), without a restart" \
    kh_within 10 served
expect_eq "... by the same gw-b process" "$PID" "$(cat "$KH_STACK/run/gw-b.pid")"
check "gw-b's log never shows a connection string" \
    bash -c '! grep -q "dbname=kh_gw_b2" "$1"' _ "$KH_STACK/log/gw-b.log"
finish
