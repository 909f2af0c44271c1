# Helpers for the integration tests. Source it. Environment (set by ctest):
# KH_ROOT, KH_BUILD, KH_STACK, KH_PORT_BASE.
set -euo pipefail
: "${KH_ROOT:?}" "${KH_BUILD:?}" "${KH_STACK:?}" "${KH_PORT_BASE:?}"
export KH_ROOT KH_BUILD KH_STACK KH_PORT_BASE
PKI=$KH_STACK/pki
FAILS=0
CHECKS=0

# client ORG SYSTEM KHCLIENT-ARGS... : a business system's call; prints its output.
client() { "$KH_ROOT/tools/khstack" client "$KH_STACK" "$@" 2>&1 || true; }
# sql DB QUERY: one value or rows, unaligned, as the cluster superuser.
sql() { "$KH_ROOT/tools/khstack" psql "$KH_STACK" "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }

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

finish() {
    printf '%d checks, %d failed\n' "$CHECKS" "$FAILS"
    [ "$FAILS" -eq 0 ] && [ "$CHECKS" -gt 0 ]
}
