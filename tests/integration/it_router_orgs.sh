# The router simulator adds and removes organisations while it runs (issue
# 13, item 2): an org line added to its configuration and SIGHUP rebuild the
# signed directory with the new organisation (its certificates from the PKI
# folder, the legal-basis table read again), issued after the version in
# use; gw-a takes it on refresh and addresses the new organisation (the
# router routes the query to its gateway's endpoint, where nobody listens
# in this test: the query fails or times out, it is not refused). The line
# removed and SIGHUP again, the organisation is gone from the next version
# and gw-a refuses a query to it itself. An org line the router cannot use
# (no certificates) keeps the version in use and the log says why; the
# router never stops serving.
. "$(dirname "$0")/lib.sh"
conf=$KH_STACK/router.conf
log=$KH_STACK/log/router.log
NEW=011002
[ -f "$conf.orig-orgs" ] || cp "$conf" "$conf.orig-orgs" # a killed run's copy is the original
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a admin "$@" 2>&1 || true; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["directory"][sys.argv[1]])' "$1" 2>/dev/null || echo "?"; }
orgs() { adm --json directory | python3 -c 'import json,sys; print(" ".join(o["code"] for o in json.load(sys.stdin)["directory"]["organisations"]))' 2>/dev/null || echo "?"; }
# hup WHAT: SIGHUP to the router; waits for its log to say WHAT once more
hup() {
    local n
    n=$(grep -c "$1" "$log" || true)
    kill -HUP "$(cat "$KH_STACK/run/router.pid")"
    for _ in $(seq 1 100); do
        [ "$(grep -c "$1" "$log" || true)" -gt "$n" ] && return 0
        sleep 0.1
    done
    return 1
}
restore() {
    cp "$conf.orig-orgs" "$conf" && rm -f "$conf.orig-orgs"
    hup "directory rebuilt" || true
    adm directory refresh >/dev/null
    "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-b admin directory refresh >/dev/null 2>&1 || true
}
trap restore EXIT
[ -f "$PKI/org/$NEW/sign.crt" ] || "$KH_ROOT/tools/khpki" org "$PKI" "$NEW" >/dev/null
new_person
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
ask() { client 271004 childallowance query O-CA-001 JT001 "$NEW" TK001 "$LOCAL_O" || true; }

adm directory refresh >/dev/null
before=$(orgs)
issued0=$(adm --json directory | field issued_at)
case " $before " in *" $NEW "*) fail "$NEW is listed before it was added" ;; *) pass "$NEW is not in the directory in use" ;; esac
expect_contains "a query to it is refused by gw-a itself" "REFUSED KH-" "$(ask)"

# added
printf 'org = %s,municipality,Sapporo City (synthetic),gw-x,127.0.0.1:%d\n' "$NEW" $((KH_PORT_BASE + 97)) >>"$conf"
check "SIGHUP rebuilds the router's directory" hup "directory rebuilt"
expect_contains "the router logs the new count" "directory rebuilt: 6 organisations" "$(grep 'directory rebuilt' "$log" | tail -1)"
expect_contains "gw-a takes the new version on demand" '"changed":true' "$(adm --json directory refresh)"
expect_eq "it lists $NEW too" "$before $NEW" "$(orgs)"
issued1=$(adm --json directory | field issued_at)
check "issued after the version before ($issued0 < $issued1)" test "$issued1" \> "$issued0"
out=$(ask)
case $out in
*"KH-4"*) fail "the new organisation is still refused as unknown: $out" ;;
*FAILED* | *TIMED_OUT*) pass "a query to $NEW is routed to its gateway (no one listens there): ${out:0:80}" ;;
*) fail "a query to $NEW: $out" ;;
esac
expect_contains "the router recorded the query to $NEW" "$NEW" \
    "$(sql kh_router "SELECT recipient FROM router.query_record WHERE recipient = '$NEW' LIMIT 1")"

# a line the router cannot use: the version in use stays, the log says why
printf 'org = 011011,municipality,Hakodate City (synthetic),gw-x,127.0.0.1:%d\n' $((KH_PORT_BASE + 98)) >>"$conf"
check "an organisation without certificates: not rebuilt" hup "directory not rebuilt"
expect_contains "... the log names the file missing" "org/011011/sign.crt" "$(grep 'directory not rebuilt' "$log" | tail -1)"
expect_contains "gw-a's refresh finds nothing newer" '"changed":false' "$(adm --json directory refresh)"
expect_eq "the directory is the one before" "$before $NEW" "$(orgs)"

# removed
cp "$conf.orig-orgs" "$conf"
check "the line removed, SIGHUP rebuilds it again" hup "directory rebuilt"
check "SIGHUP with nothing changed makes no new version" hup "directory unchanged"
# added and removed again at once: each version issued after the one before,
# even within one second
printf 'org = %s,municipality,Sapporo City (synthetic),gw-x,127.0.0.1:%d\n' "$NEW" $((KH_PORT_BASE + 97)) >>"$conf"
hup "directory rebuilt" || fail "not rebuilt"
cp "$conf.orig-orgs" "$conf"
hup "directory rebuilt" || fail "not rebuilt"
issued=$(grep -o 'directory rebuilt: .* issued [0-9]*' "$log" | tail -3 | sed 's/.* issued //' | tr '\n' ' ')
read -r i1 i2 i3 <<<"$issued"
check "three versions, each issued after the one before ($issued)" test "${i1:-0}" -lt "${i2:-0}" -a "${i2:-0}" -lt "${i3:-0}"
expect_contains "gw-a takes the latest" '"changed":true' "$(adm --json directory refresh)"
expect_eq "$NEW is gone" "$before" "$(orgs)"
issued2=$(adm --json directory | field issued_at)
check "issued after the one before ($issued1 < $issued2)" test "$issued2" \> "$issued1"
expect_contains "a query to it is refused by gw-a again" "REFUSED KH-" "$(ask)"
expect_contains "the router still answers for the others" "OK" \
    "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" || true)"
finish
