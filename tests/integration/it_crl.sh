# Revocation (issue 14, item 3): gw-a reads the CRLs of the CAs it trusts
# (pki/national-ca.crl, pki/operator-ca.crl, each tenant's
# pki/org/ORG/business-ca.crl) every crl_refresh_s (1 s here) and refuses a
# revoked certificate from then on; a CA whose CRL has expired has every
# certificate refused (fail-closed).
# - a business system: refused in the TLS handshake once revoked; a
#   connection it opened before gets KH-4013 to its next request;
# - an operator: refused by the admin listener once revoked;
# - the router: gw-a refuses to talk to it (a query fails with a code) until
#   the CRL without it is back;
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
expect_contains "... gw-a's log says the router's certificate is revoked" "certificate revoked" \
    "$(tail -100 "$LOG")"
n=$(reloads)
put_back national-ca
wait_reload "the CRL without the router back: gw-a reads it" "$n"
expect_contains "link codes come through the router again" "OK link code acquired" \
    "$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")"

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
openssl ca -batch -config "$W/ca.cnf" -gencrl -crlsec 4 -keyfile "$B.key" -cert "$B.crt" \
    -out "$B.crl" 2>"$W/ca.err" || subfail "openssl ca: $(cat "$W/ca.err")"
wait_reload "a CRL valid for 4 seconds: gw-a reads it" "$n"
expect_contains "Chiyoda's system is answered while it is current" "OK link code acquired" \
    "$(as_system 131016 tax linkcode "$LOCAL_C" "$RESIDENT")"
sleep 5
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
