#!/usr/bin/env bash
# Configuration from one typed table per daemon (gateway/core/khconf.h):
# -t refuses every bad value with the file and line and says ok to a good
# file; --help lists every option from the table; SIGHUP applies the options
# marked reloadable when the whole file is valid, and changes nothing (the
# daemon keeps serving) when it is not or when a fixed option changed.
. "$(dirname "$0")/lib.sh"

GW=$KH_BUILD/gateway/daemon/kakehashi-gw
ROUTER=$KH_BUILD/tools/khrouter
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base=$KH_STACK/gw-a.conf

# gw_check DESCRIPTION EXPECTED-TEXT LINES...: a copy of gw-a.conf with the
# lines appended, checked with -t; it must fail and say EXPECTED-TEXT.
gw_refuses() {
    local d=$1 want=$2 out rc=0
    shift 2
    { cat "$base"; printf '%s\n' "$@"; } > "$tmp/gw.conf"
    out=$("$GW" -c "$tmp/gw.conf" -t 2>&1) || rc=$?
    if [ $rc -eq 0 ]; then
        fail "$d: -t accepted it"
    else
        expect_contains "$d" "$want" "$out"
    fi
}
lines=$(($(wc -l < "$base") + 1))

# --- -t and the table's checks ---------------------------------------------
out=$("$GW" -c "$base" -t 2>&1) && rc=0 || rc=$?
expect_eq "-t accepts the stack's own gw-a.conf" "0" "$rc"
expect_contains "-t says what it checked" "configuration ok: 2 tenants" "$out"

gw_refuses "log_level must be one of the levels" \
    "gw.conf:$lines: log_level: 'verbose' is not one of debug, info, warn, error" \
    "log_level = verbose"
gw_refuses "db_workers must be a number" \
    "gw.conf:$lines: db_workers: 'lots' is not an integer in [1, 64]" "db_workers = lots"
gw_refuses "db_workers has bounds" "gw.conf:$lines: db_workers: '65' is not an integer" \
    "db_workers = 65"
gw_refuses "a typo is an unknown option, not a default" "gw.conf:$lines: unknown option 'time_out_ms'" \
    "time_out_ms = 5000"
gw_refuses "an option given twice" "gw.conf:$((lines + 1)): option 'max_skew' given twice (first on line $lines)" \
    "max_skew = 100" "max_skew = 110"
gw_refuses "a tenant must be an organisation code" "gw.conf:$lines: tenant: '131017' is not an organisation code" \
    "tenant = 131017"
gw_refuses "a tenant listed twice" "tenant 131016 listed twice" "tenant = 131016"
# a tenant's own database (tenant_db)
gw_refuses "a tenant_db without a connection string" \
    "gw.conf:$lines: tenant_db: expected an organisation code, a space and a libpq connection string" \
    "tenant_db = 131016"
gw_refuses "a tenant_db for an organisation this gateway does not host" \
    "tenant_db for N00001, which is not a tenant" "tenant_db = N00001 dbname=elsewhere"
gw_refuses "a tenant given two databases" "tenant_db of 131016 given twice" \
    "tenant_db = 131016 dbname=one" "tenant_db = 131016 dbname=two"
{ cat "$base"; echo "tenant_db = 13101 dbname=x password=SeCrEt-Not-Shown"; } >"$tmp/gw.conf"
out=$("$GW" -c "$tmp/gw.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "a bad tenant_db is refused" "tenant_db: expected an organisation code" "$out"
check "... without quoting its connection string (it may hold a password)" \
    bash -c '! grep -q SeCrEt <<<"$1"' _ "$out"
out=$("$GW" -c "$KH_STACK/gw-b.conf" -t 2>&1) && rc=0 || rc=$?
expect_eq "-t accepts gw-b.conf, whose tenant S00001 has a database of its own" "0" "$rc"
expect_contains "... and counts its tenants" "configuration ok: 3 tenants" "$out"
out=$(sed 's/^admin_listen = .*/admin_listen = 127.0.0.1/' "$base" > "$tmp/gw.conf"; "$GW" -c "$tmp/gw.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "an address without a port" "admin_listen: '127.0.0.1' is not HOST:PORT" "$out"
out=$(grep -v '^name = ' "$base" > "$tmp/gw.conf"; "$GW" -c "$tmp/gw.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "a required option missing" "option 'name' is required" "$out"
out=$(sed 's/^admin_listen = .*/admin_session_idle = 7200\nadmin_session_max = 3600/' "$base" > "$tmp/gw.conf"; "$GW" -c "$tmp/gw.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "options checked together" "admin_session_idle (7200) is longer than admin_session_max (3600)" "$out"

# a 257th tenant is refused, not ignored
{
    grep -v '^tenant = ' "$base"
    n=0
    for p in $(seq 10 99); do
        for m in $(seq 100 999); do
            c=$(printf '%02d%03d' "$p" "$m")
            s=0; w=(6 5 4 3 2)
            for i in 0 1 2 3 4; do s=$((s + ${c:$i:1} * ${w[$i]})); done
            printf 'tenant = %s%d\n' "$c" $(((11 - s % 11) % 10))
            n=$((n + 1))
            [ $n -ge 257 ] && break 2
        done
    done
} > "$tmp/gw.conf"
out=$("$GW" -c "$tmp/gw.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "a 257th tenant line is refused" "tenant: more than 256 values" "$out"

# --help comes from the same table
help=$("$GW" --help)
for o in name pki router db business_listen peer_listen admin_listen tenant db_workers db_queue \
    max_skew msg_ttl max_body timeout_ms log_level spool_dir drop_dir drop_system \
    chain_sign_interval max_upload_mb admin_session_idle admin_session_max admin_lockout; do
    case $help in *"  $o = "*) ;; *) fail "--help lists $o"; continue ;; esac
done
pass "--help lists every option of the table"
expect_contains "--help marks what SIGHUP may change" "least severe level logged (debug, info, warn, error) [reloadable]" "$help"

# the router: its own table, the same checks
rbase=$KH_STACK/router.conf
out=$("$ROUTER" -c "$rbase" -t 2>&1) && rc=0 || rc=$?
expect_eq "khrouter -t accepts the stack's router.conf" "0" "$rc"
{ cat "$rbase"; echo "log_level = loud"; } > "$tmp/r.conf"
out=$("$ROUTER" -c "$tmp/r.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "khrouter: log_level checked" "r.conf:$(wc -l < "$tmp/r.conf"): log_level: 'loud' is not one of" "$out"
{ cat "$rbase"; for i in $(seq 1 17); do echo "portal = p$i"; done; } > "$tmp/r.conf"
out=$("$ROUTER" -c "$tmp/r.conf" -t 2>&1) && rc=0 || rc=$?
expect_contains "khrouter: at most 16 portals" "portal: more than 16 values" "$out"

# --- SIGHUP on the running gw-a ---------------------------------------------
pid=$(cat "$KH_STACK/run/gw-a.pid")
log=$KH_STACK/log/gw-a.log
cp "$base" "$tmp/gw-a.conf.orig"
restore() { cp "$tmp/gw-a.conf.orig" "$base"; kill -HUP "$pid" 2>/dev/null || true; }
trap 'restore; rm -rf "$tmp"' EXIT
# wait_log TEXT: the gateway's log shows TEXT (after the mark) within 5 s
wait_log() {
    for _ in $(seq 1 50); do
        tail -c +"$mark" "$log" | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    return 1
}

# a valid change of a reloadable option is applied: debug lines appear
mark=$(($(stat -c %s "$log") + 1))
{ cat "$tmp/gw-a.conf.orig"; echo "log_level = debug"; } > "$base"
kill -HUP "$pid"
check "SIGHUP applies log_level = debug" wait_log '"configuration reloaded from'
new_person
out=$(client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=1000)
expect_contains "the gateway serves after the reload" "OK registered version" "$out"

# a file with an error changes nothing
mark=$(($(stat -c %s "$log") + 1))
{ cat "$tmp/gw-a.conf.orig"; echo "log_level = debug"; echo "max_skew = forever"; } > "$base"
kill -HUP "$pid"
check "SIGHUP with a bad value is refused with the line" \
    wait_log "reload refused, configuration unchanged: $base:$(wc -l < "$base"): max_skew"

# a fixed option changed: refused, restart needed
mark=$(($(stat -c %s "$log") + 1))
{ cat "$tmp/gw-a.conf.orig"; echo "db_workers = 9"; } > "$base"
kill -HUP "$pid"
check "SIGHUP that changes a fixed option is refused" \
    wait_log "option db_workers cannot change while running"

# back to the original file: applied (info again)
mark=$(($(stat -c %s "$log") + 1))
cp "$tmp/gw-a.conf.orig" "$base"
kill -HUP "$pid"
check "SIGHUP with the original file is applied" wait_log '"configuration reloaded from'
out=$(client 131016 tax register "$LOCAL_C" TK001 20260102 fiscal_year=2026 total_income=2000)
expect_contains "gw-a still serves its business API" "OK registered version" "$out"
trap 'rm -rf "$tmp"' EXIT

finish
