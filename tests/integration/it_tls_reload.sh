# TLS reloaded without a restart (issue 14, item 2): gw-a answers queries
# without a pause while its TLS certificate is renewed (tools/khpki renew) and
# taken on SIGHUP, while a bad certificate is refused on SIGHUP (the one in
# use stays), and while its operator CA is rolled over (a second CA with the
# same name trusted beside the first, then withdrawn).
# - the load: Osaka (271004) asks Chiyoda (131016), both on gw-a, again and
#   again: each query crosses gw-a's business listener, its client to the
#   router and its peer listener; not one may fail;
# - after the renewal every listener presents the new certificate (its serial
#   read with openssl s_client), the metrics show its validity for the
#   business, peer, admin and client contexts, and the log says so once;
# - a certificate whose key is not the one beside it: the log names the
#   problem, every listener still presents the renewed one;
# - an operator whose certificate was issued by the new operator CA is
#   refused at the handshake, let in once the CA is in operator-ca.crt and
#   gw-a had SIGHUP, and refused again once it is withdrawn.
. "$(dirname "$0")/lib.sh"
K=$KH_ROOT/tools/khstack
LOG=$KH_STACK/log/gw-a.log
GWD=$PKI/gw/gw-a
W=$(mktemp -d)
cp -p "$PKI/operator-ca.crt" "$W/operator-ca.crt.orig"
cp -p "$PKI/operator-ca.crl" "$W/operator-ca.crl.orig"
cleanup() {
    touch "$W/stop"
    wait 2>/dev/null || true
    # whatever the test left: the renewed pair, the stack's operator CA
    [ ! -f "$W/tls.crt.good" ] || cp -p "$W/tls.crt.good" "$GWD/tls.crt"
    cp -p "$W/operator-ca.crt.orig" "$PKI/operator-ca.crt"
    cp -p "$W/operator-ca.crl.orig" "$PKI/operator-ca.crl"
    kill -HUP "$(cat "$KH_STACK/run/gw-a.pid")" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

served() { # PORT: the serial of the certificate the listener presents
    local pem
    pem=$(openssl s_client -connect "127.0.0.1:$1" -CAfile "$PKI/national-ca.crt" </dev/null 2>/dev/null || true)
    openssl x509 -noout -serial 2>/dev/null <<<"$pem" || echo "no certificate from port $1"
}
file_serial() { openssl x509 -in "$GWD/tls.crt" -noout -serial; }
reloads() { grep -c '"msg":"TLS reloaded' "$LOG" || true; }
unchanged() { grep -c '"msg":"TLS unchanged' "$LOG" || true; }
hup() { kill -HUP "$(cat "$KH_STACK/run/gw-a.pid")"; }
wait_count() { # DESCRIPTION FUNCTION N: until FUNCTION prints N or more
    for _ in $(seq 1 100); do [ "$($2)" -ge "$3" ] && { pass "$1"; return 0; }; sleep 0.1; done
    fail "$1 (still $($2), wanted $3)"
}
metric() {
    "$K" admin "$KH_STACK" gw-a admin metrics 2>&1 |
        awk -v k="kakehashi_certificate_expiry_seconds{cert=\"$1\"}" '$1 == k { print $2 }'
}
BIZ=$((KH_PORT_BASE + 11)) PEER=$((KH_PORT_BASE + 12)) ADMIN=$((KH_PORT_BASE + 13))

askable_person

# the load, until $W/stop: one line per query
load() {
    while [ ! -e "$W/stop" ]; do
        if out=$("$K" client "$KH_STACK" 271004 childallowance query O-CA-001 JT001 131016 TK001 \
            "$LOCAL_O" 2>&1) && [[ $out == *"OK FOUND"* ]]; then
            echo ok
        else
            echo "failed: ${out//$'\n'/ }" | cut -c1-300
        fi
    done >"$W/load.log"
}
load &
for _ in $(seq 1 100); do [ -s "$W/load.log" ] && break; sleep 0.1; done
check "the load runs" grep -q '^ok$' "$W/load.log"

s0=$(file_serial)
for p in $BIZ $PEER $ADMIN; do expect_eq "port $p presents gw-a's certificate" "$s0" "$(served $p)"; done

# the next generation, taken on SIGHUP
n=$(reloads)
check "khpki renews gw-a's TLS certificate (400 days)" "$KH_ROOT/tools/khpki" renew --days 400 "$PKI" gateway gw-a
s1=$(file_serial)
cp -p "$GWD/tls.crt" "$W/tls.crt.good"
check "... a new serial" test "$s1" != "$s0"
hup
wait_count "gw-a says that it reloaded its TLS" reloads $((n + 1))
for p in $BIZ $PEER $ADMIN; do expect_eq "port $p presents the renewed certificate" "$s1" "$(served $p)"; done
for c in tls_business tls_peer tls_admin tls_client; do
    v=$(metric $c)
    check "the metrics show the renewed certificate's 400 days for $c (${v:-absent} s)" \
        test "${v:-0}" -gt $((399 * 86400)) -a "${v:-0}" -le $((400 * 86400))
done
k=$(wc -l <"$W/load.log")
for _ in $(seq 1 100); do [ "$(wc -l <"$W/load.log")" -ge $((k + 3)) ] && break; sleep 0.1; done
check "queries go on after the reload" test "$(wc -l <"$W/load.log")" -ge $((k + 3))

# a certificate that is not the key's: refused, the renewed one stays
n=$(reloads)
u=$(unchanged)
cp "$PKI/gw/gw-b/tls.crt" "$GWD/tls.crt"
hup
wait_count "a certificate not matching its key: gw-a says TLS unchanged" unchanged $((u + 1))
expect_contains "... and why" "the certificates in use stay" "$(grep '"msg":"TLS unchanged' "$LOG" | tail -1)"
for p in $BIZ $PEER $ADMIN; do expect_eq "port $p still presents the renewed certificate" "$s1" "$(served $p)"; done
cp -p "$W/tls.crt.good" "$GWD/tls.crt"
hup # the good pair back: the files are those in use, nothing to reload (checked below)

# an operator CA rollover: a second CA of the same name beside the first
mkdir -p "$W/ops"
"$KH_ROOT/tools/khpki" operator "$W/ops" admin >/dev/null
cp "$PKI/national-ca.crt" "$W/ops/national-ca.crt"
as_new_op() {
    "$KH_BUILD/tools/khctl" admin --admin "127.0.0.1:$ADMIN" --gateway-name gw-a --pki "$W/ops" \
        --operator admin --password-file "$KH_STACK/operators/admin.password" metrics 2>&1 || true
}
out=$(as_new_op)
expect_contains "an operator certificate of the new operator CA is refused in the handshake" "alert" "$out"
sleep 1
# the CRLs first: a refresh between the two finds a CRL without its CA and
# keeps what it had
cat "$W/operator-ca.crl.orig" "$W/ops/operator-ca.crl" >"$PKI/operator-ca.crl"
cat "$W/operator-ca.crt.orig" "$W/ops/operator-ca.crt" >"$PKI/operator-ca.crt"
hup
wait_count "the new CA added to operator-ca.crt: gw-a reloads its TLS" reloads $((n + 1))
expect_eq "... once: the good pair put back before was no reload" "$((n + 1))" "$(reloads)"
expect_contains "... and lets that operator in" "kakehashi_certificate_expiry_seconds" "$(as_new_op)"
expect_contains "... the stack's operators too" "kakehashi_certificate_expiry_seconds" \
    "$("$K" admin "$KH_STACK" gw-a admin metrics 2>&1 || true)"
n=$(reloads)
cp -p "$W/operator-ca.crt.orig" "$PKI/operator-ca.crt"
cp -p "$W/operator-ca.crl.orig" "$PKI/operator-ca.crl"
hup
wait_count "the new CA withdrawn: gw-a reloads its TLS" reloads $((n + 1))
expect_contains "... and refuses that operator again in the handshake" "alert" "$(as_new_op)"

touch "$W/stop"
wait
total=$(wc -l <"$W/load.log")
bad=$(grep -vc '^ok$' "$W/load.log" || true)
check "the load ran through every reload ($total queries)" test "$total" -ge 10
expect_eq "not one query failed" "0" "$bad"
[ "$bad" = 0 ] || head -3 "$W/load.log"
finish
