# A tenant added to a running gateway and retired again, without a restart
# (issue 13, item 2). 472018 is made the way an operator onboards a
# municipality: its keys and business CA (tools/khpki org, a system
# certificate), its schema and role (tools/khdb tenant, as the cluster's
# superuser), its registry, its line in the router's configuration (SIGHUP,
# then gw-a refreshes the directory); before gw-a hosts it, its business
# system cannot even complete TLS with gw-a. Then 'tenant = 472018' in
# gw-a's configuration and SIGHUP: gw-a adds it (keys, business CA, schema,
# directory checked), trusts its business CA for new connections, and it
# registers, obtains a link code and answers Osaka's query, with a provision
# record. A tenant gw-a cannot use is refused, saying why, and changes
# nothing else: one missing from the directory, then one without a schema.
# Retired (its line removed, SIGHUP): its business system is refused at the
# TLS handshake, a query to it is refused, the other tenants go on; listed
# again, it is hosted again. GET /admin/v1/tenants shows each step.
. "$(dirname "$0")/lib.sh"
NEW=472018 BAD=472026
GWLOG=$KH_STACK/log/gw-a.log
RCONF=$KH_STACK/router.conf
RLOG=$KH_STACK/log/router.log
A_PEER=$((KH_PORT_BASE + 12))
A_BIZ=$((KH_PORT_BASE + 11))
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a admin "$@" 2>&1 || true; }
tenants() { adm --json raw GET /admin/v1/tenants; }
# state CODE: the last slot's state of CODE in GET /admin/v1/tenants
state() {
    tenants | python3 -c 'import json,sys; t=[x["state"] for x in json.load(sys.stdin)["tenants"] if x["code"]==sys.argv[1]]; print(t[-1] if t else "absent")' "$1" 2>/dev/null || echo "?"
}
# new_client ARGS: the business system 'tax' of the new tenant
new_client() {
    local rc=0
    "$KH_BUILD/tools/khclient" -g "127.0.0.1:$A_BIZ" --gateway-name gw-a \
        --cert "$PKI/org/$NEW/systems/tax.crt" --key "$PKI/org/$NEW/systems/tax.key" \
        --ca "$PKI/national-ca.crt" --timeout-ms 10000 "$@" 2>&1 || rc=$?
    echo "exit=$rc"
}
# wait_log FILE TEXT COUNT-BEFORE: waits (10 s) for one more line with TEXT
wait_log() {
    for _ in $(seq 1 100); do
        [ "$(grep -c -- "$2" "$1" || true)" -gt "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
count() { grep -c -- "$2" "$1" || true; }
# change_no: the number of gw-a's last change of its tenants (0: none yet)
change_no() {
    tenants | python3 -c 'import json,sys; c=json.load(sys.stdin)["last_change"]; print(c["seq"] if c else 0)' 2>/dev/null || echo "?"
}
# gw_tenants LINE...: gw-a's configuration with these tenant lines (and the
# original's others), applied by SIGHUP; waits (10 s) until the change it
# starts (on a worker) is over: GET /admin/v1/tenants shows its outcome
gw_tenants() {
    local n
    n=$(change_no)
    reconf gw-a "$@" || return 1
    for _ in $(seq 1 100); do
        [ "$(change_no)" != "$n" ] && return 0
        sleep 0.1
    done
    return 1
}
router_hup() {
    local n
    n=$(count "$RLOG" "directory rebuilt")
    kill -HUP "$(cat "$KH_STACK/run/router.pid")"
    wait_log "$RLOG" "directory rebuilt" "$n" || return 1
    case $(adm --json directory refresh) in *'"changed":true'*) return 0 ;; *) return 1 ;; esac
}
# hosted_gone CODE: waits until gw-a hosts CODE no more
hosted_gone() {
    for _ in $(seq 1 100); do
        [ "$(state "$1")" != hosted ] && return 0
        sleep 0.1
    done
    return 1
}
# Left on the stack: the schema and role of $NEW, the PKI folders of $NEW
# and $BAD, $NEW's drop folders; in gw-a's memory (until it restarts) the
# retired tenant and the TLS contexts it replaced.
cleanup() {
    reconf_restore gw-a || true
    # the retirement ends on a worker: only then may the router drop it
    # (gw-a refuses a directory without a tenant it hosts)
    hosted_gone "$NEW" || true
    if [ -f "$RCONF.orig-live" ]; then
        cp "$RCONF.orig-live" "$RCONF" && rm -f "$RCONF.orig-live"
        router_hup || true
    fi
}
trap cleanup EXIT
[ -f "$RCONF.orig-live" ] || cp "$RCONF" "$RCONF.orig-live"

# onboarding, as an operator does it
[ -f "$PKI/org/$NEW/sign.crt" ] || "$KH_ROOT/tools/khpki" org "$PKI" "$NEW" >/dev/null
[ -f "$PKI/org/$NEW/systems/tax.crt" ] || "$KH_ROOT/tools/khpki" system "$PKI" "$NEW" tax >/dev/null
[ -f "$PKI/org/$BAD/sign.crt" ] || "$KH_ROOT/tools/khpki" org "$PKI" "$BAD" >/dev/null
"$KH_ROOT/tools/khdb" tenant "$KH_STACK/pg" kh_gw_a "$NEW" kh_gw_a >/dev/null
sql kh_gw_a "SET ROLE kh_t_$NEW; SET search_path = t_$NEW, kh;
INSERT INTO business_system VALUES ('tax','Naha tax system (synthetic)') ON CONFLICT DO NOTHING;
INSERT INTO system_permission VALUES ('tax','register','TK001'),('tax','linkcode','*') ON CONFLICT DO NOTHING;" >/dev/null
printf 'org = %s,municipality,Naha City (synthetic),gw-a,127.0.0.1:%d\n' "$NEW" "$A_PEER" >>"$RCONF"
check "the router lists $NEW (SIGHUP) and gw-a takes the new directory" router_hup

new_person
out=$(new_client linkcode "$LOCAL_N" "$RESIDENT")
# TLS 1.3: the server's refusal of the client certificate comes as an alert on the first read
expect_contains "before gw-a hosts $NEW, its business system is refused in TLS (unknown CA)" "alert unknown ca" "$out"
# absent, or retired by an earlier run against the same gw-a process
case $(state $NEW) in absent | retired) pass "GET /admin/v1/tenants: $NEW is not hosted" ;; *) fail "$NEW hosted: $(state $NEW)" ;; esac

# added
check "tenant = $NEW and SIGHUP: gw-a changes its tenants" gw_tenants "tenant = $NEW"
expect_contains "gw-a logs the tenant added" "tenant $NEW added" "$(tail -20 "$GWLOG")"
expect_eq "GET /admin/v1/tenants: hosted" "hosted" "$(state $NEW)"
expect_contains "... and the last change added it" "\"added\":[\"$NEW\"]" "$(tenants)"
out=$(new_client register "$LOCAL_N" TK001 20250101 fiscal_year=2025 total_income=4120000)
expect_contains "its business system registers a reference copy" "OK" "$out"
expect_contains "... and obtains a link code" "OK" "$(new_client linkcode "$LOCAL_N" "$RESIDENT")"
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
before=$(provided_count kh_gw_a "$NEW")
out=$(client 271004 childallowance query O-CA-001 JT001 "$NEW" TK001 "$LOCAL_O" || true)
expect_contains "Osaka's query to $NEW is answered by the added tenant" "total_income=4120000" "$out"
expect_eq "$NEW keeps a provision record of it" "$((before + 1))" "$(provided_count kh_gw_a "$NEW")"
expect_contains "the platform admin sees $NEW among the tenants" "\"$NEW\"" "$(adm --json whoami)"
expect_contains "the connectivity check checks its database" "\"target\":\"$NEW\",\"status\":\"ok\"" \
    "$(adm --json diagnose)"
out=$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
expect_contains "the tenants hosted before go on (new connections trust their CAs still)" "OK" "$out"

# refused: not in the directory, then without a schema; nothing else changes
check "a tenant missing from the directory: a change runs" gw_tenants "tenant = $NEW" "tenant = $BAD"
expect_contains "... it is not added, and the log says why" "tenant $BAD not added: not in the directory" \
    "$(tail -20 "$GWLOG")"
expect_contains "... GET /admin/v1/tenants says so" "\"tenant\":\"$BAD\",\"reason\":\"not in the directory" "$(tenants)"
expect_eq "... not hosted" "absent" "$(state $BAD)"
expect_eq "... $NEW still hosted" "hosted" "$(state $NEW)"
printf 'org = %s,municipality,Naha City 2 (synthetic),gw-a,127.0.0.1:%d\n' "$BAD" "$A_PEER" >>"$RCONF"
check "the router lists $BAD too" router_hup
check "in the directory now, without a schema: a change runs" gw_tenants "tenant = $NEW" "tenant = $BAD"
expect_contains "... not added: its schema through its role" "tenant $BAD not added: its schema through its role" \
    "$(tail -20 "$GWLOG")"
expect_eq "... not hosted" "absent" "$(state $BAD)"
expect_contains "a query to it is refused by gw-a, which does not host it" "REFUSED KH-4009" \
    "$(client 271004 childallowance query O-CA-001 JT001 "$BAD" TK001 "$LOCAL_O" || true)"
n=$(count "$GWLOG" "reload refused")
{ cat "$KH_STACK/gw-a.conf.orig"; printf 'tenant = %s\ntenant = 12345\n' "$NEW"; } >"$KH_STACK/gw-a.conf"
kill -HUP "$(cat "$KH_STACK/run/gw-a.pid")"
check "a list with a bad code: the whole reload is refused" wait_log "$GWLOG" "reload refused" "$n"
expect_contains "... the log names the line" "gw-a.conf:" "$(grep "reload refused" "$GWLOG" | tail -1)"
expect_eq "... and $NEW is still hosted" "hosted" "$(state $NEW)"

# retired
check "its line removed and SIGHUP: gw-a changes its tenants" gw_tenants
expect_contains "gw-a logs the tenant retired" "tenant $NEW retired" "$(tail -20 "$GWLOG")"
expect_eq "GET /admin/v1/tenants: retired" "retired" "$(state $NEW)"
out=$(new_client linkcode "$LOCAL_N" "$RESIDENT")
expect_contains "its business system is refused in TLS (its CA no longer trusted)" "alert unknown ca" "$out"
expect_contains "a query to it is refused by gw-a, which hosts it no more" "REFUSED KH-4009" \
    "$(client 271004 childallowance query O-CA-001 JT001 "$NEW" TK001 "$LOCAL_O" || true)"
expect_contains "the other tenants go on" "OK" "$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")"
case $(adm --json whoami) in *"\"$NEW\""*) fail "a retired tenant is still a platform admin's" ;; *) pass "a retired tenant is no platform admin's tenant" ;; esac

# hosted again
check "listed again: gw-a changes its tenants" gw_tenants "tenant = $NEW"
expect_eq "GET /admin/v1/tenants: hosted again" "hosted" "$(state $NEW)"
expect_contains "its business system works again" "OK" "$(new_client linkcode "$LOCAL_N" "$RESIDENT")"
out=$(client 271004 childallowance query O-CA-001 JT001 "$NEW" TK001 "$LOCAL_O" || true)
expect_contains "... and it answers again" "total_income=4120000" "$out"
check "gw-a ran all along (one process)" kill -0 "$(cat "$KH_STACK/run/gw-a.pid")"
finish
