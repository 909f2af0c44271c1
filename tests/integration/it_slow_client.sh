# A client that trickles its request (issue 11, class 8): a TLS connection
# sending a byte a second was never closed, each byte renewing the read
# timeout. Every accepted connection now counts the bytes of the request it
# is reading (gateway/core/khhttp.c): slower than KH_HTTP_MIN_RATE (1 KiB/s)
# once KH_HTTP_GRACE_S (10 s) have passed since its first byte, the
# connection is shut down. A request being answered is not timed.
. "$(dirname "$0")/lib.sh"
biz=$(awk '$1 == "business_listen" { print $3 }' "$KH_STACK/gw-a.conf")
sys=$PKI/org/131016/systems/tax
log=$KH_STACK/log/gw-a.log
before=$(grep -c 'slower than 1024 bytes/s' "$log" || true)
start=$(date +%s)
{
    printf 'POST /v1/linkcode HTTP/1.1\r\nHost: gw\r\n'
    for _ in $(seq 1 45); do printf 'X'; sleep 1; done
} | timeout 60 openssl s_client -connect "$biz" -cert "$sys.crt" -key "$sys.key" \
    -CAfile "$PKI/national-ca.crt" -quiet >/dev/null 2>&1 || true
took=$(($(date +%s) - start))
check "a request trickled at a byte a second is cut off (after ${took} s)" test "$took" -le 20
check "... not before its grace of 10 s" test "$took" -ge 9
after=$(grep -c 'slower than 1024 bytes/s' "$log" || true)
check "and the gateway says why in its log" test "$after" -gt "$before"
# the same with the TLS handshake: a ClientHello's record header, then a
# byte a second of its body (the handshake never completes)
start=$(date +%s)
(
    exec 3<>"/dev/tcp/${biz%:*}/${biz#*:}"
    { printf '\x16\x03\x01\x00\xff'; for _ in $(seq 1 45); do printf 'A'; sleep 1; done; } >&3 2>/dev/null &
    timeout 60 cat <&3 >/dev/null
) || true
took=$(($(date +%s) - start))
check "a TLS handshake trickled at a byte a second is cut off (after ${took} s)" test "$took" -le 20
check "... not before its 10 s" test "$took" -ge 9
check "and said so" grep -q "TLS handshake took over 10 s" "$log"
new_person
out=$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
expect_contains "a client at a normal pace is served meanwhile" "OK" "$out"
finish
