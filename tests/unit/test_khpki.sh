#!/usr/bin/env bash
# Tests tools/khpki: layout, permissions, chains, idempotency, rogue certificates
# and argument checking. Usage: test_khpki.sh [path/to/khpki]
set -euo pipefail

KHPKI=${1:-$(cd "$(dirname "$0")/../.." && pwd)/tools/khpki}
T=$(mktemp -d "${TMPDIR:-/tmp}/test_khpki.XXXXXX")
trap 'rm -rf "$T"' EXIT
P="$T/pki"
fails=0

ok() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*" >&2
    fails=$((fails + 1))
}
check() { # description command...
    local d=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$d"; else fail "$d"; fi
}
check_not() { # description command... (must fail)
    local d=$1
    shift
    if "$@" >/dev/null 2>&1; then fail "$d"; else ok "$d"; fi
}

run_all() {
    "$KHPKI" init "$P"
    "$KHPKI" gateway "$P" gw1
    "$KHPKI" org "$P" 131016
    "$KHPKI" org "$P" N00001
    "$KHPKI" system "$P" 131016 tax-1
    "$KHPKI" operator "$P" ta-131016
    "$KHPKI" operator "$P" admin
    "$KHPKI" portal "$P" portal
}

check "help exits 0" "$KHPKI" --help
check_not "no arguments exits non-zero" "$KHPKI"
run_all >"$T/run1.log" 2>&1 || {
    cat "$T/run1.log" >&2
    fail "first run"
    exit 1
}
ok "first run"

# Layout and permissions.
expect=(national-ca router/tls router/sign router/enc rogue/ca rogue/client rogue/sign rogue/tls
    gw/gw1/tls org/131016/sign org/131016/enc org/131016/business-ca org/N00001/sign
    org/N00001/enc org/N00001/business-ca org/131016/systems/tax-1 operator-ca
    operator/ta-131016/tls operator/admin/tls portal/portal/tls tsa-ca tsa/tsa)
for b in "${expect[@]}"; do
    [ -f "$P/$b.crt" ] && [ -f "$P/$b.key" ] || fail "missing $b.{crt,key}"
done
bad_perm=$(find "$P" \( -name '*.key' ! -perm 600 \) -o \( -name '*.crt' ! -perm 644 \) \
    -o \( -type d ! -perm 700 \))
[ -z "$bad_perm" ] && ok "permissions (keys 600, certs 644, dirs 700)" || fail "permissions: $bad_perm"
for k in $(find "$P" -name '*.key'); do
    [ "$(stat -c %a "$k")" = 600 ] || fail "key mode $k"
    openssl pkey -in "$k" -noout -text 2>/dev/null | grep -q 'NIST CURVE: P-256' ||
        fail "$k is not a P-256 key"
done
ok "keys are P-256"

# Chains.
for b in router/tls router/sign router/enc gw/gw1/tls org/131016/sign org/131016/enc \
    org/N00001/sign org/N00001/enc portal/portal/tls; do
    check "$b verifies against the national CA" openssl verify -CAfile "$P/national-ca.crt" "$P/$b.crt"
done
check "system cert verifies against the business CA" \
    openssl verify -CAfile "$P/org/131016/business-ca.crt" "$P/org/131016/systems/tax-1.crt"
check_not "system cert does not verify against the national CA" \
    openssl verify -CAfile "$P/national-ca.crt" "$P/org/131016/systems/tax-1.crt"
check_not "system cert does not verify against another tenant's business CA" \
    openssl verify -CAfile "$P/org/N00001/business-ca.crt" "$P/org/131016/systems/tax-1.crt"
for b in rogue/client rogue/sign rogue/tls; do
    check_not "$b does not verify against the national CA" \
        openssl verify -CAfile "$P/national-ca.crt" "$P/$b.crt"
    check "$b verifies against the rogue CA" openssl verify -CAfile "$P/rogue/ca.crt" "$P/$b.crt"
done
check "operator cert verifies against the operator CA" \
    openssl verify -CAfile "$P/operator-ca.crt" "$P/operator/ta-131016/tls.crt"
check_not "operator cert does not verify against the national CA" \
    openssl verify -CAfile "$P/national-ca.crt" "$P/operator/ta-131016/tls.crt"
check_not "business system cert does not verify against the operator CA" \
    openssl verify -CAfile "$P/operator-ca.crt" "$P/org/131016/systems/tax-1.crt"
check "operator subject is O=KH-OPERATOR, CN=NAME" sh -c "openssl x509 -in '$P/operator/ta-131016/tls.crt' \
    -noout -subject -nameopt RFC2253 | grep -q '^subject=CN=ta-131016,O=KH-OPERATOR$'"
check "operator cert is for TLS clients only" sh -c "openssl x509 -in '$P/operator/admin/tls.crt' -noout \
    -text | grep -A1 'Extended Key Usage' | grep -qx ' *TLS Web Client Authentication'"
check "the TSA's cert verifies against the TSA CA" \
    openssl verify -CAfile "$P/tsa-ca.crt" "$P/tsa/tsa.crt"
check_not "the TSA's cert does not verify against the national CA" \
    openssl verify -CAfile "$P/national-ca.crt" "$P/tsa/tsa.crt"
check "the TSA's cert is for time-stamping only (critical)" sh -c "openssl x509 -in '$P/tsa/tsa.crt' \
    -noout -ext extendedKeyUsage | grep -q 'critical' && openssl x509 -in '$P/tsa/tsa.crt' -noout \
    -ext extendedKeyUsage | grep -qx ' *Time Stamping'"
check "portal subject is O=PORTAL, CN=NAME" sh -c "openssl x509 -in '$P/portal/portal/tls.crt' \
    -noout -subject -nameopt RFC2253 | grep -q '^subject=CN=portal,O=PORTAL$'"
check "portal cert is for TLS clients only" sh -c "openssl x509 -in '$P/portal/portal/tls.crt' -noout \
    -text | grep -A1 'Extended Key Usage' | grep -qx ' *TLS Web Client Authentication'"
check "router TLS cert has SAN and EKU" sh -c "openssl x509 -in '$P/router/tls.crt' -noout -text |
    grep -q 'DNS:localhost, IP Address:127.0.0.1' && openssl x509 -in '$P/router/tls.crt' -noout -text |
    grep -q 'TLS Web Server Authentication, TLS Web Client Authentication'"
check "org subject" sh -c "openssl x509 -in '$P/org/131016/sign.crt' -noout -subject -nameopt RFC2253 |
    grep -q '^subject=CN=131016 sign,OU=sign,O=131016$'"
check "cert matches key" sh -c "[ \"\$(openssl x509 -in '$P/org/131016/enc.crt' -noout -pubkey)\" = \
    \"\$(openssl pkey -in '$P/org/131016/enc.key' -pubout)\" ]"

# Idempotency: a second run changes no file.
(cd "$P" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sum1"
(cd "$P" && find . -printf '%m %p\n' | sort) >"$T/mode1"
run_all >"$T/run2.log" 2>&1 || fail "second run"
(cd "$P" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/sum2"
(cd "$P" && find . -printf '%m %p\n' | sort) >"$T/mode2"
check "second run changes no file" cmp "$T/sum1" "$T/sum2"
check "second run changes no mode" cmp "$T/mode1" "$T/mode2"

# The next generation: a new key and certificate, the previous kept.
G=$P/gw/gw1
old_serial=$(openssl x509 -in "$G/tls.crt" -noout -serial)
old_key=$(sha256sum <"$G/tls.key")
check "renew a gateway's TLS certificate for 400 days" "$KHPKI" renew --days 400 "$P" gateway gw1
check "... a new serial" test "$(openssl x509 -in "$G/tls.crt" -noout -serial)" != "$old_serial"
check "... a new key" test "$(sha256sum <"$G/tls.key")" != "$old_key"
check "... the previous pair kept" test "$(openssl x509 -in "$G/tls.prev.crt" -noout -serial)" = "$old_serial"
check "... and its key" test "$(sha256sum <"$G/tls.prev.key")" = "$old_key"
check "... the new one matches its key" sh -c "[ \"\$(openssl x509 -in '$G/tls.crt' -noout -pubkey)\" = \
    \"\$(openssl pkey -in '$G/tls.key' -pubout)\" ]"
check "... the same subject" test "$(openssl x509 -in "$G/tls.crt" -noout -subject)" = \
    "$(openssl x509 -in "$G/tls.prev.crt" -noout -subject)"
check "... issued by the national CA" openssl verify -CAfile "$P/national-ca.crt" "$G/tls.crt"
check "... valid for 400 days" openssl x509 -in "$G/tls.crt" -noout -checkend $((399 * 86400))
check_not "... and not 401" openssl x509 -in "$G/tls.crt" -noout -checkend $((401 * 86400))
check "... key 0600" test "$(stat -c %a "$G/tls.key")" = 600
check "... no file left half-made" test -z "$(find "$G" -name '*.next.*' -o -name '*.tmp.*')"
check "renew a system's certificate" "$KHPKI" renew "$P" system 131016 tax-1
check "... issued by its business CA" openssl verify -CAfile "$P/org/131016/business-ca.crt" \
    "$P/org/131016/systems/tax-1.crt"
check "renew an operator's certificate" "$KHPKI" renew "$P" operator admin
check "renew the router's TLS certificate" "$KHPKI" renew "$P" router
check_not "renew what was never issued" "$KHPKI" renew "$P" gateway gw-none
check_not "renew an unknown kind" "$KHPKI" renew "$P" org 131016
check_not "renew with bad days" "$KHPKI" renew --days 0 "$P" gateway gw1
check_not "renew with a bad gateway name" "$KHPKI" renew "$P" gateway ../x
[ ! -e "$P/gw/gw-none" ] && ok "nothing created by a refused renew" || fail "renew created gw-none"

# Revocation: every CA has its CRL; revoke puts a certificate on it.
for ca in national-ca operator-ca org/131016/business-ca; do
    check "$ca has a CRL signed by it" openssl crl -in "$P/$ca.crl" -CAfile "$P/$ca.crt" -noout
done
check "revoke a business system's certificate" "$KHPKI" revoke "$P" system 131016 tax-1
check "... it no longer verifies with the CRL" sh -c "! openssl verify -crl_check -CAfile '$P/org/131016/business-ca.crt' \
    -CRLfile '$P/org/131016/business-ca.crl' '$P/org/131016/systems/tax-1.crt' >/dev/null 2>&1"
check "... the CRL names its CA's key (rollover)" sh -c "openssl crl -in '$P/org/131016/business-ca.crl' -noout -text | grep -q 'Authority Key Identifier'"
check "the gateway's still verifies with its CRL" openssl verify -crl_check -CAfile "$P/national-ca.crt" \
    -CRLfile "$P/national-ca.crl" "$P/gw/gw1/tls.crt"
check "revoke a certificate file (its CA found)" "$KHPKI" revoke "$P" file "$P/gw/gw1/tls.prev.crt"
check "... on the national CA's CRL" sh -c "openssl crl -in '$P/national-ca.crl' -noout -text | grep -qi \
    \"\$(openssl x509 -in '$P/gw/gw1/tls.prev.crt' -noout -serial | cut -d= -f2)\""
check "crl signs every CRL anew for 2 days" "$KHPKI" crl --days 2 "$P"
check "... valid 2 days" sh -c "openssl crl -in '$P/national-ca.crl' -noout -nextupdate | grep -q \"\$(date -u -d '+2 days' '+%b %e')\""
check "... the revoked stay revoked" sh -c "! openssl verify -crl_check -CAfile '$P/org/131016/business-ca.crt' \
    -CRLfile '$P/org/131016/business-ca.crl' '$P/org/131016/systems/tax-1.crt' >/dev/null 2>&1"
echo junk >"$P/operator-ca.crl"
check "init signs anew a CRL that is not current" "$KHPKI" init "$P"
check "... a CRL again" openssl crl -in "$P/operator-ca.crl" -CAfile "$P/operator-ca.crt" -noout
cat "$P/operator-ca.crt" "$P/national-ca.crt" >"$T/bundle.crt"
cp "$P/operator-ca.crt" "$T/operator-ca.crt.keep"
cp "$T/bundle.crt" "$P/operator-ca.crt"
check_not "crl refuses a CA file holding two certificates (a rollover bundle)" "$KHPKI" crl "$P"
cp "$T/operator-ca.crt.keep" "$P/operator-ca.crt"
check_not "revoke a certificate of a foreign CA" "$KHPKI" revoke "$P" file "$P/rogue/tls.crt"
check_not "revoke with an unknown kind" "$KHPKI" revoke "$P" portal portal

# Bad arguments.
check_not "bad SYSID (upper case)" "$KHPKI" system "$P" 131016 TAX
check_not "bad SYSID (too long)" "$KHPKI" system "$P" 131016 "$(printf 'a%.0s' {1..33})"
check_not "bad SYSID (slash)" "$KHPKI" system "$P" 131016 ../x
check_not "bad org code" "$KHPKI" org "$P" 13101
check_not "system for unknown org" "$KHPKI" system "$P" 999999 tax
check_not "missing DIR (gateway)" "$KHPKI" gateway "$T/nonexistent" gw1
check_not "missing DIR (org)" "$KHPKI" org "$T/nonexistent" 131016
check_not "missing arguments" "$KHPKI" org "$P"
check_not "unknown command" "$KHPKI" frobnicate "$P"
check_not "bad gateway name" "$KHPKI" gateway "$P" "a/b"
check_not "bad operator name (dot-dot)" "$KHPKI" operator "$P" ..
check_not "bad operator name (slash)" "$KHPKI" operator "$P" a/b
check_not "bad operator name (upper case)" "$KHPKI" operator "$P" Admin
check_not "bad operator name (too long)" "$KHPKI" operator "$P" "$(printf 'a%.0s' {1..33})"
check_not "missing DIR (operator)" "$KHPKI" operator "$T/nonexistent" admin
check_not "bad portal name (upper case)" "$KHPKI" portal "$P" Portal
check_not "bad portal name (slash)" "$KHPKI" portal "$P" a/b
check_not "missing DIR (portal)" "$KHPKI" portal "$T/nonexistent" portal
[ ! -e "$T/nonexistent" ] && ok "nothing created for a missing DIR" || fail "created missing DIR"
err=$("$KHPKI" system "$P" 131016 TAX 2>&1 || true)
[[ $err == *"invalid system id"* ]] && ok "error message names the problem" || fail "message: $err"

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "all khpki checks passed"
