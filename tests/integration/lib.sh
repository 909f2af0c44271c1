# Helpers for the integration tests. Source it. Environment (set by ctest):
# KH_ROOT, KH_BUILD, KH_STACK, KH_PORT_BASE.
set -euo pipefail
: "${KH_ROOT:?}" "${KH_BUILD:?}" "${KH_STACK:?}" "${KH_PORT_BASE:?}"
export KH_ROOT KH_BUILD KH_STACK KH_PORT_BASE
PKI=$KH_STACK/pki
FAILS=0
CHECKS=0

# A check that fails inside a command substitution cannot count itself in
# FAILS (it runs in a subshell): it writes a line here, and finish() counts
# the lines. A negative check ("no such row", "no such line") must never pass
# because the command it reads failed: client and sql below report that.
SUBFAILS=$KH_STACK/.subfails.$$
: >"$SUBFAILS"
subfail() {
    local one=${*//$'\n'/ } # one line each: finish() counts lines
    printf '%s\n' "$one" >>"$SUBFAILS"
    printf 'FAIL %s\n' "$one" >&2
}

# client ORG SYSTEM KHCLIENT-ARGS... : a business system's call; prints its
# output as it comes (a refusal too: tests look at it). khclient's exit
# status must agree with what it printed (0 answered, 3 REFUSED, EXPIRED or FAILED
# KH-nnnn, 4 FAILED); any other status (a usage error, a crash) is a failure
# of the test.
client() {
    local f out rc=0
    f=$(mktemp)
    # streamed as it comes (a test may read the progress of a long call)
    "$KH_ROOT/tools/khstack" client "$KH_STACK" "$@" 2>&1 | tee "$f" || rc=${PIPESTATUS[0]}
    out=$(cat "$f")
    rm -f "$f"
    case $rc in
    0) [[ $out != REFUSED* && $out != *$'\n'REFUSED* ]] || subfail "client $1 $2 $3: REFUSED with exit 0" ;;
    3) [[ $out == *REFUSED* || $out == *"FAILED KH-"* || $out == *"EXPIRED KH-"* ]] ||
        subfail "client $1 $2 $3: exit 3 without a refusal: ${out:0:200}" ;;
    4) [[ $out == *FAILED* ]] || subfail "client $1 $2 $3: exit 4 without FAILED: ${out:0:200}" ;;
    *) subfail "client $1 $2 $3: exit status $rc (a usage error or a crash): ${out:0:200}" ;;
    esac
}
# sql DB QUERY: one value or rows, unaligned, as the cluster superuser. A
# query that fails prints SQL-FAILED (never an empty or plausible result) and
# fails the test.
sql() {
    local out
    if ! out=$("$KH_ROOT/tools/khstack" psql "$KH_STACK" "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"); then
        subfail "sql on $1 failed: ${2:0:120}"
        echo SQL-FAILED
        return 1
    fi
    [ -z "$out" ] || printf '%s\n' "$out"
}
# dump_count DB TEXT: how many lines of a whole dump of DB hold TEXT; the
# dump must succeed and hold the tenants' tables (or SQL-FAILED is printed).
dump_count() {
    local f n
    f=$(mktemp)
    if ! PGHOST="$KH_STACK/pg/run" pg_dump -U khadmin -d "$1" >"$f" ||
        ! grep -qE '^CREATE TABLE (t_|router\.)' "$f"; then
        rm -f "$f"
        subfail "pg_dump of $1 failed or holds no tenant or router table"
        echo SQL-FAILED
        return 1
    fi
    n=$(grep -c -- "$2" "$f" || true)
    rm -f "$f"
    echo "$n"
}
# sql_refused DB QUERY: a statement that must be refused; prints the error.
sql_refused() {
    local out
    if out=$("$KH_ROOT/tools/khstack" psql "$KH_STACK" "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2" 2>&1); then
        subfail "sql on $1 was expected to be refused and succeeded: ${2:0:120}"
    fi
    printf '%s\n' "$out"
}

# as_gw SQL: SQL as gw-a's login role acting as tenant 131016's role, as the
# gateway does; prints the output or the error (a refusal is what tests read).
as_gw() { psql -h "$KH_STACK/pg/run" -U kh_gw_a -d kh_gw_a -XAtq -c "SET ROLE kh_t_131016; $1" 2>&1 || true; }

pass() { CHECKS=$((CHECKS + 1)); printf 'ok   %s\n' "$*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); printf 'FAIL %s\n' "$*"; }
# check DESCRIPTION COMMAND...: passes if the command succeeds.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}
# expect_contains DESCRIPTION NEEDLE HAYSTACK
expect_contains() {
    case $3 in *"$2"*) pass "$1" ;; *) fail "$1: [$2] not in [$3]" ;; esac
}
# provided_count DB ORG: provision records with outcome 'provided' in a tenant.
provided_count() { sql "$1" "SELECT count(*) FROM t_${2,,}.provision_record WHERE outcome = 'provided'"; }
router_count() { sql kh_router "SELECT count(*) FROM router.query_record WHERE outcome = '$1'"; }

# A fresh synthetic person per test run: local IDs and a resident code that
# no other test uses (random, so reruns against the same stack do not collide).
new_person() {
    local r=$(( (RANDOM << 15 | RANDOM) % 900000000 + 100000000 ))
    RESIDENT="19${r}"
    LOCAL_C="1${r:0:8}"
    LOCAL_O="2${r:0:8}"
    LOCAL_N="3${r:0:8}"
}

# askable_person: a new person whom Osaka (271004, childallowance) may ask
# Chiyoda (131016) about: local tax information (TK001) registered at
# Chiyoda, link codes at both.
askable_person() {
    local who
    new_person
    expect_contains "Chiyoda registers local tax information" "OK registered version" \
        "$(client 131016 tax register "$LOCAL_C" TK001 20250601 fiscal_year=2025 \
            total_income=3010000 annual_tax=150500 spouse_category=0)"
    for who in "131016 tax $LOCAL_C" "271004 childallowance $LOCAL_O"; do
        set -- $who
        expect_contains "$1 obtains a link code" "OK link code acquired" \
            "$(client "$1" "$2" linkcode "$3" "$RESIDENT")"
    done
}

# reconf GW [LINE...]: GW's (gw-a, gw-b) configuration as it was before the
# first reconf, plus the LINEs, applied by SIGHUP; returns once GW has logged
# that it reloaded (else fails the test, after 5 s). reconf_restore GW puts
# the original back so (a trap on EXIT should call it too).
reconf() {
    local gw=$1 conf=$KH_STACK/$1.conf
    shift
    [ -f "$conf.orig" ] || cp "$conf" "$conf.orig"
    { cat "$conf.orig"; printf '%s\n' "$@"; } >"$conf.new"
    reconf_apply "$gw" "$conf.new"
}
reconf_restore() {
    [ ! -f "$KH_STACK/$1.conf.orig" ] || reconf_apply "$1" "$KH_STACK/$1.conf.orig"
}
reconf_apply() {
    local gw=$1 log=$KH_STACK/log/$1.log n
    n=$(grep -c 'configuration reloaded' "$log" || true)
    mv "$2" "$KH_STACK/$gw.conf"
    kill -HUP "$(cat "$KH_STACK/run/$gw.pid")" || { fail "$gw is not running"; return 1; }
    for _ in $(seq 1 50); do
        [ "$(grep -c 'configuration reloaded' "$log" || true)" -gt "$n" ] && return 0
        sleep 0.1
    done
    fail "$gw did not reload its configuration"
    return 1
}

finish() {
    local sub
    sub=$(wc -l <"$SUBFAILS")
    rm -f "$SUBFAILS"
    CHECKS=$((CHECKS + sub))
    FAILS=$((FAILS + sub))
    printf '%d checks, %d failed\n' "$CHECKS" "$FAILS"
    [ "$FAILS" -eq 0 ] && [ "$CHECKS" -gt 0 ]
}
