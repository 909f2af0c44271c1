# Expiry visible (issue 14, item 6): the remaining validity of every
# certificate the gateway holds, its tenants' and its own (its TLS
# certificate as each listener and its client present it, the router's from
# the directory, the national, operator and TSA CAs), in the metrics and the
# connectivity check; and a certificate that ends within 30 days is named in
# the log when the gateway starts (and every day after), rated warn by the
# check, with kakehashi-gw -t too. The short-lived certificate is a gateway
# TLS certificate issued for 10 days by the stack's national CA to a copy of
# the PKI, used by a second gw-a process on ports of its own.
. "$(dirname "$0")/lib.sh"
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a admin "$@" 2>&1 || true; }
W=$(mktemp -d)
NODE=
trap '[ -z "$NODE" ] || kill "$NODE" 2>/dev/null || true; rm -rf "$W"' EXIT

m=$(adm metrics)
for c in tls_business tls_peer tls_admin tls_client router_sign router_enc national_ca operator_ca tsa_ca; do
    v=$(awk -v k="kakehashi_certificate_expiry_seconds{cert=\"$c\"}" '$1 == k { print $2 }' <<<"$m")
    check "the metrics carry the remaining validity of $c (${v:-absent} s)" test "${v:-0}" -gt 86400
done
expect_contains "... and of each tenant's certificates" \
    'kakehashi_certificate_expiry_seconds{tenant="131016",cert="business_ca"}' "$m"
d=$(adm --json diagnose)
for t in "national CA" "operator CA" "TSA CA" "router signing" "gateway TLS (client)" "131016 sign"; do
    expect_contains "the connectivity check rates the $t certificate" \
        "\"check\":\"certificate\",\"target\":\"$t\",\"status\":\"ok\"" "$d"
done

# a gateway TLS certificate that ends in 10 days
cp -a "$PKI" "$W/pki"
cat >"$W/ext.cnf" <<'X'
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
X
openssl req -new -key "$W/pki/gw/gw-a/tls.key" -subj "/O=KH-GW/CN=gw-a" -out "$W/csr.pem" 2>"$W/req.err" || subfail "cannot request: $(cat "$W/req.err")"
openssl x509 -req -in "$W/csr.pem" -CA "$W/pki/national-ca.crt" -CAkey "$W/pki/national-ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 10 -sha256 -extfile "$W/ext.cnf" \
    -out "$W/pki/gw/gw-a/tls.crt" 2>"$W/x509.err" || subfail "cannot issue: $(cat "$W/x509.err")"
P=$((KH_PORT_BASE + 700))
sed -e "s|^pki = .*|pki = $W/pki|" -e "s/^business_listen = .*/business_listen = 127.0.0.1:$((P + 1))/" \
    -e "s/^peer_listen = .*/peer_listen = 127.0.0.1:$((P + 2))/" \
    -e "s/^admin_listen = .*/admin_listen = 127.0.0.1:$((P + 3))/" \
    -e "s/^health_listen = .*/health_listen = 127.0.0.1:$((P + 4))/" \
    -e "s|^spool_dir = .*|spool_dir = $W/spool|" -e "s|^drop_dir = .*|drop_dir = $W/drop|" \
    "$KH_STACK/gw-a.conf" >"$W/gw.conf"
GW=$KH_BUILD/gateway/daemon/kakehashi-gw
out=$("$GW" -c "$W/gw.conf" -t 2>&1) && rc=0 || rc=$?
expect_eq "kakehashi-gw -t with a certificate ending in 10 days: a warning, not a failure (exit 0)" "0" "$rc"
# (10 days from issue: 9 or 10 days left, as the seconds fall)
check "... naming it and its days left" grep -Eq 'warn: certificate gateway TLS \(business\): (9|10) days left' <<<"$out"
setsid "$GW" -c "$W/gw.conf" 2>"$W/gw.log" >/dev/null </dev/null &
NODE=$!
for _ in $(seq 1 100); do grep -q '"ready:' "$W/gw.log" && break; sleep 0.1; done
check "the second gw-a process became ready" grep -q '"ready:' "$W/gw.log"
check "a gateway starting with it says so in its log, for each use of the certificate" \
    grep -Eq 'certificate gateway TLS \(business\) ends in (9|10) day\(s\): renew it' "$W/gw.log"
check "... the client's too" grep -Eq 'certificate gateway TLS \(client\) ends in (9|10) day' "$W/gw.log"
check "... and names no other certificate" test "$(grep -c '"sub":"expiry"' "$W/gw.log")" -eq 4
kill -TERM "$NODE"
for _ in $(seq 1 100); do kill -0 "$NODE" 2>/dev/null || break; sleep 0.1; done
NODE=
expect_contains "... and stops cleanly" '"msg":"stopped"' "$(cat "$W/gw.log")"
finish
