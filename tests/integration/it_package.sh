# Packages and services (issue 12): tools/khpkg makes the Debian package of
# this build; it is unpacked into a scratch root (not installed on the host).
# Its kakehashi-db creates a database with the package's migrations.
# Its control file names the libraries' packages; the man pages render without
# a warning and list every option; the systemd units are checked with
# systemd-analyze verify (their programs' paths moved into the scratch root)
# and carry the hardening; the sample configurations, with only their SITE
# values changed, pass -t. Then the installed router and the installed gateway
# (a node of gw-a) run from the installed files against the test network: a
# registration through the installed gateway, a query from it through the
# installed router to gw-b, answered; both stop cleanly on SIGTERM.
. "$(dirname "$0")/lib.sh"
T=$KH_BUILD/it-pkg
R=$T/root
rm -rf "$T"
mkdir -p "$T"
PIDS=""
cleanup() { [ -z "$PIDS" ] || kill $PIDS 2>/dev/null || true; }
trap cleanup EXIT

deb=$("$KH_ROOT/tools/khpkg" --build-dir "$KH_BUILD" --out "$T" 2>"$T/khpkg.err") || true
check "tools/khpkg made a package $(tail -1 "$T/khpkg.err")" test -f "$deb"
[ -f "$deb" ] || finish
depends=$(dpkg-deb -f "$deb" Depends)
for p in libssl3 libpq5 libevent-2.1-7 libprotobuf-c1 adduser; do
    expect_contains "it depends on $p" "$p" "$depends"
done
expect_contains "its postinst makes the system user" "adduser --system" "$(dpkg-deb -I "$deb" postinst)"
dpkg-deb -x "$deb" "$R"
for f in usr/sbin/kakehashi-gw usr/sbin/khrouter usr/sbin/kakehashi-db usr/bin/khctl usr/bin/khclient usr/bin/khcheck \
    usr/lib/systemd/system/kakehashi-gw@.service usr/lib/systemd/system/khrouter.service \
    usr/share/man/man8/kakehashi-gw.8.gz usr/share/man/man8/khrouter.8.gz usr/share/man/man1/khctl.1.gz \
    usr/share/doc/kakehashi/examples/gateway.conf usr/share/doc/kakehashi/examples/router.conf \
    usr/share/kakehashi/sql/tenant/001_tenant.sql usr/share/kakehashi/sql/catalogue/items.tsv \
    usr/share/doc/kakehashi/ERRORS.md; do
    check "the package holds /$f" test -s "$R/$f"
done
check "nothing in it names the build folder" eval "! grep -rlF '$KH_BUILD' '$R/usr/lib' '$R/usr/share'"

# man pages: no groff warning, every option of the program's table
for m in man8/kakehashi-gw.8:usr/sbin/kakehashi-gw man8/khrouter.8:usr/sbin/khrouter man1/khctl.1:usr/bin/khctl; do
    page=$R/usr/share/man/${m%%:*}.gz
    warn=$(gunzip -c "$page" | groff -man -Tutf8 -ww -z 2>&1)
    expect_eq "man ${m%%:*} renders without a warning" "" "$warn"
    text=$(gunzip -c "$page" | groff -man -Tutf8 2>/dev/null | col -bx)
    # every line of the program's --help, blanks squeezed, is in the page
    flat=$(tr -s ' \n' '  ' <<<"$text")
    lines=0 missing=""
    while IFS= read -r l; do
        l=$(tr -s ' ' <<<"$l" | sed 's/^ //; s/ $//')
        [ -n "$l" ] || continue
        lines=$((lines + 1))
        grep -qF -- "$l" <<<"$flat" || missing="$missing [$l]"
    done < <("$R/${m#*:}" --help 2>&1)
    expect_eq "man ${m%%:*} holds every line of the program's --help ($lines)" "" "$missing"
done

# systemd units: verified (their man pages are checked above, in the package,
# not on the host: --man=no), hardened
mkdir -p "$T/units"
for u in kakehashi-gw@.service khrouter.service; do
    sed -e "s|/usr/sbin/|$R/usr/sbin/|g" "$R/usr/lib/systemd/system/$u" >"$T/units/$u"
done
for u in kakehashi-gw@node1.service khrouter.service; do
    out=$(cd "$T/units" && systemd-analyze verify --man=no "$T/units/$u" 2>&1) && rc=0 || rc=$?
    expect_eq "systemd-analyze verify $u: no complaint (rc $rc)" "" "$out"
    for d in User=kakehashi ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes \
        CapabilityBoundingSet= ProtectHome=yes LimitCORE=0 'ExecStartPre=.* -t -c'; do
        check "$u has $d" grep -q "^$d" "$R/usr/lib/systemd/system/${u/@node1/@}"
    done
done
# (the check can fail: a misspelt directive is reported)
sed 's/^ProtectSystem=strict/ProtectSystem=strickt/' "$T/units/khrouter.service" >"$T/units/bad.service"
check "systemd-analyze verify reports a bad directive" \
    eval "(cd '$T/units' && systemd-analyze verify --man=no '$T/units/bad.service' 2>&1) | grep -q strickt"

# kakehashi-db: the installed migrations applied to a new database of the
# test network's server, as an existing PostgreSQL (DIR @)
expect_contains "kakehashi-db runs the installed khdb" "exec /usr/share/kakehashi/tools/khdb" \
    "$(cat "$R/usr/sbin/kakehashi-db")"
PDB=kh_pkg_test
sql postgres "DROP DATABASE IF EXISTS $PDB" >/dev/null
kdb() { PGHOST=$KH_STACK/pg/run PGUSER=khadmin "$R/usr/share/kakehashi/tools/khdb" "$@" 2>&1; }
expect_contains "kakehashi-db migrate @ creates a platform database" "platform schema current" \
    "$(kdb migrate @ $PDB)"
expect_contains "kakehashi-db tenant @ adds a tenant" "tenant 131016 current" \
    "$(kdb tenant @ $PDB 131016 kh_pkg_gw)"
expect_eq "... every tenant migration of the package is applied" \
    "$(find "$R/usr/share/kakehashi/sql/tenant" -name '*.sql' | wc -l)" \
    "$(sql $PDB "SELECT count(*) FROM t_131016.schema_migrations")"
expect_eq "... and the catalogue is loaded" "$(($(wc -l <"$R/usr/share/kakehashi/sql/catalogue/items.tsv") - 1))" \
    "$(sql $PDB "SELECT count(*) FROM kh.item")"
sql postgres "DROP DATABASE $PDB" >/dev/null
sql postgres "DROP ROLE kh_pkg_gw" >/dev/null

# the sample configurations with their SITE values only
B=$KH_PORT_BASE
GW_DB=$(sed -n 's/^db = //p' "$KH_STACK/gw-a.conf")
RT_DB=$(sed -n 's/^db = //p' "$KH_STACK/router.conf")
sed -e "s|^name = .*|name = gw-a|" -e "s|^pki = .*|pki = $KH_STACK/pki|" \
    -e "s|^router = .*|router = 127.0.0.1:$((B + 305))|" -e "s|^db = .*|db = $GW_DB|" \
    -e "s|^business_listen = .*|business_listen = 127.0.0.1:$((B + 301))|" \
    -e "s|^peer_listen = .*|peer_listen = 127.0.0.1:$((B + 302))|" \
    -e "s|^admin_listen = .*|admin_listen = 127.0.0.1:$((B + 303))|" \
    -e "s|^health_listen = .*|health_listen = 127.0.0.1:$((B + 304))|" \
    -e "s|^tenant = .*|tenant = 131016\ntenant = 271004|" -e "s|^spool_dir = .*|spool_dir = $T/spool|" \
    "$R/usr/share/doc/kakehashi/examples/gateway.conf" >"$T/gw.conf"
{
    sed -e "s|^listen = .*|listen = 127.0.0.1:$((B + 305))|" -e "s|^pki = .*|pki = $KH_STACK/pki|" \
        -e "s|^db = .*|db = $RT_DB|" -e "s|^secret = .*|secret = $KH_STACK/router.secret|" -e '/^org = /d' \
        "$R/usr/share/doc/kakehashi/examples/router.conf"
    # the test network's organisations; gw-a's nodes: the installed one first
    sed -n 's/^org = \(.*,gw-a\),.*/org = \1,127.0.0.1:'$((B + 302))'/p; /^org = .*,gw-b,/p' "$KH_STACK/router.conf"
} >"$T/router.conf"
expect_contains "the router's sample passes -t" "configuration ok" \
    "$("$R/usr/sbin/khrouter" -t -c "$T/router.conf" 2>&1)"
expect_contains "the gateway's sample passes -t" "configuration ok: 2 tenants" \
    "$("$R/usr/sbin/kakehashi-gw" -t -c "$T/gw.conf" 2>&1)"
out=$("$R/usr/sbin/kakehashi-gw" -t -c "$R/usr/share/doc/kakehashi/examples/gateway.conf" 2>&1) || true
check "the sample as shipped is refused only for what the site must provide ($(head -1 <<<"$out"))" \
    eval "! grep -qi 'unknown option' <<<\"\$out\""

# the installed daemons, from the installed files, on the test network
waitlog() { # FILE TEXT: up to 20 s
    for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
"$R/usr/sbin/khrouter" -c "$T/router.conf" >"$T/router.log" 2>&1 &
RPID=$!
PIDS="$RPID"
check "the installed router is ready" waitlog "$T/router.log" '"ready on'
"$R/usr/sbin/kakehashi-gw" -c "$T/gw.conf" >"$T/gw.log" 2>&1 &
GPID=$!
PIDS="$PIDS $GPID"
check "the installed gateway is ready" waitlog "$T/gw.log" '"ready:'
icl() { # ORG SYSTEM ARGS: the installed khclient against the installed gateway
    local org=$1 sys=$2
    shift 2
    "$R/usr/bin/khclient" -g "127.0.0.1:$((B + 301))" --gateway-name gw-a \
        --cert "$KH_STACK/pki/org/$org/systems/$sys.crt" --key "$KH_STACK/pki/org/$org/systems/$sys.key" \
        --ca "$KH_STACK/pki/national-ca.crt" "$@" 2>&1
}
new_person
expect_contains "a registration through the installed gateway" "OK registered" \
    "$(icl 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=4400000)"
client N00001 pension register "$LOCAL_N" TK008 20250101 pension_no=0000012345 pension_type=11 \
    entitlement_date=20200101 annual_amount=780000 payment_status=1 >/dev/null
client N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
icl 271004 welfare linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
out=$(icl 271004 welfare query O-WEL-001 JT003 N00001 TK008 "$LOCAL_O")
expect_contains "a query from the installed gateway through the installed router to gw-b is answered" \
    "OK FOUND" "$out"
h=$(grep -o 'handle=[0-9a-f]\{32\}' <<<"$out" | cut -d= -f2)
expect_eq "the installed router recorded it" 1 \
    "$(sql kh_router "SELECT count(*) FROM router.query_record WHERE msg_id = '$h' AND outcome = 'answered'")"
for p in "$GPID" "$RPID"; do
    kill -TERM "$p"
    rc=0
    wait "$p" || rc=$?
    expect_eq "an installed daemon (pid $p) stops cleanly on SIGTERM" 0 "$rc"
done
PIDS=""
check "no sanitizer report in the installed daemons' logs" \
    eval "! grep -l 'ERROR: AddressSanitizer\|runtime error:' '$T'/*.log"
finish
