# Revocation (issue 14, item 3): gw-a reads the CRLs of the CAs it trusts
# (pki/national-ca.crl, pki/operator-ca.crl, each tenant's
# pki/org/ORG/business-ca.crl) every crl_refresh_s (1 s here) and refuses a
# revoked certificate from then on; a CA whose CRL has expired has every
# certificate refused (fail-closed).
# - a business system: refused in the TLS handshake once revoked; a
#   connection it opened before gets KH-4013 to its next request;
# - an operator: refused by the admin listener once revoked;
# - the router: gw-a refuses to talk to it (a link code asked fails with a
#   code) until the CRL without it is back;
# - a gateway (gw-b): the router, reading the CRL every second too, refuses
#   it: gw-b's tenants get KH-5004, gw-a's are answered;
# - Chiyoda's business CA's CRL expires: every Chiyoda system is refused,
#   Osaka's still answered; a CRL signed anew lets them in again.
# Every CRL and revocation database the test changes is put back at the end.
. "$(dirname "$0")/lib.sh"
LOG=$KH_STACK/log/gw-a.log
A_BIZ=$((KH_PORT_BASE + 11)) A_ADMIN=$((KH_PORT_BASE + 13))
W=$(mktemp -d)
KHPKI=$KH_ROOT/tools/khpki
CAS="national-ca operator-ca org/131016/business-ca"
for ca in $CAS; do
    mkdir -p "$W/save/$(dirname "$ca")"
    cp -a "$PKI/$ca.crl" "$PKI/$ca.crldb" "$W/save/$(dirname "$ca")/"
done
put_back() { # CA: its CRL and database as the test found them
    rm -rf "${PKI:?}/$1.crldb"
    cp -a "$W/save/$1.crl" "$W/save/$1.crldb" "$PKI/$(dirname "$1")/"
}
cleanup() {
    for ca in $CAS; do put_back "$ca"; done
    reconf_restore gw-a || true
    reconf_restore gw-b || true
    if [ -f "$W/router.conf.orig" ]; then
        cp -p "$W/router.conf.orig" "$KH_STACK/router.conf"
        kill -HUP "$(cat "$KH_STACK/run/router.pid")" 2>/dev/null || true
    fi
    rm -rf "$W"
}
trap cleanup EXIT

reloads() { grep -c '"msg":"TLS reloaded' "$LOG" || true; }
wait_reload() { # DESCRIPTION COUNT-BEFORE: within 10 s, a reload after it
    for _ in $(seq 1 100); do [ "$(reloads)" -gt "$2" ] && { pass "$1"; return 0; }; sleep 0.1; done
    fail "$1 (no 'TLS reloaded' in gw-a's log)"
}
as_system() { # CODE SYSID ARGS: a business system with the stack's certificate files
    local rc=0 code=$1 sys=$2
    shift 2
    "$KH_BUILD/tools/khclient" -g "127.0.0.1:$A_BIZ" --gateway-name gw-a \
        --cert "$PKI/org/$code/systems/$sys.crt" --key "$PKI/org/$code/systems/$sys.key" \
        --ca "$PKI/national-ca.crt" --timeout-ms 10000 "$@" 2>&1 || rc=$?
    echo "exit=$rc"
}
as_operator() { # NAME: the admin API's metrics as that operator
    "$KH_BUILD/tools/khctl" admin --admin "127.0.0.1:$A_ADMIN" --gateway-name gw-a --pki "$PKI" \
        --operator "$1" --password-file "$KH_STACK/operators/admin.password" metrics 2>&1 || true
}
handshake_refused() { [[ $1 == *"certificate revoked"* ]]; }

reconf gw-a "crl_refresh_s = 1"
# gw-b too: it must not keep for 300 s a CRL of this test that revokes the router
reconf gw-b "crl_refresh_s = 1"
askable_person
Q="query O-CA-001 JT001 131016 TK001 $LOCAL_O"

# a business system: a spare one of Chiyoda's, not registered (KH-2005 over TLS)
"$KHPKI" system "$PKI" 131016 crl-spare >/dev/null
out=$(as_system 131016 crl-spare linkcode "$LOCAL_C" "$RESIDENT")
expect_contains "a business system's certificate passes TLS before its revocation" "KH-2005" "$out"
# one connection kept open across the revocation (khclient batch: one connection)
mkfifo "$W/in"
"$KH_BUILD/tools/khclient" -g "127.0.0.1:$A_BIZ" --gateway-name gw-a \
    --cert "$PKI/org/131016/systems/crl-spare.crt" --key "$PKI/org/131016/systems/crl-spare.key" \
    --ca "$PKI/national-ca.crt" --timeout-ms 10000 batch <"$W/in" >"$W/batch.out" 2>&1 &
BATCH=$!
exec 3>"$W/in"
echo "linkcode $LOCAL_C $RESIDENT" >&3
for _ in $(seq 1 100); do grep -q KH-2005 "$W/batch.out" && break; sleep 0.1; done
check "... its open connection is answered" grep -q KH-2005 "$W/batch.out"
n=$(reloads)
check "khpki revokes it" "$KHPKI" revoke "$PKI" system 131016 crl-spare
wait_reload "gw-a reads the business CA's new CRL within a refresh" "$n"
out=$(as_system 131016 crl-spare linkcode "$LOCAL_C" "$RESIDENT")
check "a new connection with the revoked certificate is refused in the handshake" handshake_refused "$out"
echo "linkcode $LOCAL_C $RESIDENT" >&3
exec 3>&-
wait "$BATCH" || true
check "the connection opened before gets KH-4013 to its next request" grep -q "KH-4013" "$W/batch.out"
expect_contains "... the log says why" "its client certificate: certificate revoked" "$(tail -50 "$LOG")"
expect_contains "Chiyoda's other systems are still answered" "OK FOUND" "$(client 271004 childallowance $Q)"

# an operator: a spare certificate of the operator CA
"$KHPKI" operator "$PKI" crl-op >/dev/null
out=$(as_operator crl-op)
check "an operator's certificate passes TLS before its revocation (the login is what fails)" \
    test "$(handshake_refused "$out" && echo revoked)" = ""
expect_contains "... refused by its password, not its certificate" "KH-600" "$out"
n=$(reloads)
check "khpki revokes it" "$KHPKI" revoke "$PKI" operator crl-op
wait_reload "gw-a reads the operator CA's new CRL" "$n"
check "the admin listener refuses the revoked operator certificate" handshake_refused "$(as_operator crl-op)"
expect_contains "... and lets the other operators in" "kakehashi_certificate_expiry_seconds" \
    "$("$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a admin metrics 2>&1 || true)"

# the router's TLS certificate revoked: gw-a no longer talks to it
n=$(reloads)
check "khpki revokes the router's TLS certificate" "$KHPKI" revoke "$PKI" router
wait_reload "gw-a reads the national CA's new CRL" "$n"
new_person # a link code the router has to give
expect_contains "a link code asked through the revoked router is refused with a code" \
    "REFUSED KH-5004" "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"
expect_contains "... gw-a's log names the router's certificate, revoked" \
    "certificate O=ROUTER CN=router serial $(openssl x509 -in "$PKI/router/tls.crt" -noout -serial | cut -d= -f2) refused: certificate revoked" \
    "$(tail -100 "$LOG")"
n=$(reloads)
put_back national-ca
wait_reload "the CRL without the router back: gw-a reads it" "$n"
expect_contains "link codes come through the router again" "OK link code acquired" \
    "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"

# a gateway's TLS certificate revoked: the router refuses it (the router
# reads the national CA's CRL every second here)
RLOG=$KH_STACK/log/router.log
rreloads() { grep -c '"msg":"TLS reloaded' "$RLOG" || true; }
cp -p "$KH_STACK/router.conf" "$W/router.conf.orig"
c=$(grep -c 'configuration reloaded' "$RLOG" || true)
echo "crl_refresh_s = 1" >>"$KH_STACK/router.conf"
kill -HUP "$(cat "$KH_STACK/run/router.pid")"
for _ in $(seq 1 50); do [ "$(grep -c 'configuration reloaded' "$RLOG" || true)" -gt "$c" ] && break; sleep 0.1; done
n=$(rreloads)
check "khpki revokes gw-b's TLS certificate" "$KHPKI" revoke "$PKI" gateway gw-b
for _ in $(seq 1 100); do [ "$(rreloads)" -gt "$n" ] && break; sleep 0.1; done
check "the router reads the national CA's new CRL within a refresh" test "$(rreloads)" -gt "$n"
new_person
expect_contains "a link code asked by a tenant of gw-b, whose certificate is revoked, is refused with a code" \
    "REFUSED KH-5004" "$(client N00001 pension linkcode "$LOCAL_N" "$RESIDENT")"
expect_contains "... the router's log names gw-b's certificate, revoked" \
    "certificate O=KH-GW CN=gw-b serial $(openssl x509 -in "$PKI/gw/gw-b/tls.crt" -noout -serial | cut -d= -f2) refused: certificate revoked" \
    "$(tail -200 "$RLOG")"
expect_contains "gw-a's tenants still get link codes" "OK link code acquired" \
    "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"
n=$(rreloads)
put_back national-ca
for _ in $(seq 1 100); do [ "$(rreloads)" -gt "$n" ] && break; sleep 0.1; done
check "the CRL without gw-b back: the router reads it" test "$(rreloads)" -gt "$n"
expect_contains "... and gw-b's tenants get link codes again" "OK link code acquired" \
    "$(client N00001 pension linkcode "$LOCAL_N" "$RESIDENT")"

# Chiyoda's business CA's CRL expires: fail-closed
B=$PKI/org/131016/business-ca
cat >"$W/ca.cnf" <<X
[ca]
default_ca = kh
[kh]
database = $B.crldb/index.txt
crlnumber = $B.crldb/crlnumber
default_md = sha256
unique_subject = no
X
n=$(reloads)
openssl ca -batch -config "$W/ca.cnf" -gencrl -crlsec 8 -keyfile "$B.key" -cert "$B.crt" \
    -out "$B.crl.tmp" 2>"$W/ca.err" || subfail "openssl ca: $(cat "$W/ca.err")"
mv "$B.crl.tmp" "$B.crl" # whole, at once
until_expired=$(($(date +%s) + 9))
wait_reload "a CRL valid for 8 seconds: gw-a reads it" "$n"
expect_contains "Chiyoda's system is answered while it is current" "OK link code acquired" \
    "$(as_system 131016 tax linkcode "$LOCAL_C" "$RESIDENT")"
while [ "$(date +%s)" -le "$until_expired" ]; do sleep 0.2; done
out=$(as_system 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
check "once it has expired every Chiyoda system is refused in the handshake" \
    grep -Eq "exit=[1-9]" <<<"$out"
check "... not answered" test "${out/OK link code/}" = "$out"
expect_contains "... gw-a's log names the expired CRL" "CRL has expired" "$(tail -100 "$LOG")"
expect_contains "Osaka's systems are still answered" "OK link code" \
    "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"
n=$(reloads)
check "khpki crl signs every CRL anew" "$KHPKI" crl "$PKI"
wait_reload "gw-a reads them" "$n"
expect_contains "Chiyoda's systems are answered again" "OK link code" \
    "$(as_system 131016 tax linkcode "$LOCAL_C" "$RESIDENT")"
finish
