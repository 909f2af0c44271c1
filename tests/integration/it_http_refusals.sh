# Refusals libevent used to make itself (issue 11, class 7): a request line
# or header it cannot read, headers or a body over the listener's limits, a
# method it does not allow, an Expect it does not know. They were HTML pages
# without a code; now every one is the listener's own status message with a
# code from proto/ERRORS.md (gateway/core/khhttp.c, evhttp_send_error), on
# every listener: business, peer and admin of a gateway, and the router.
. "$(dirname "$0")/lib.sh"
conf() { awk -v k="$2" '$1 == k { print $3 }' "$KH_STACK/$1.conf"; }
biz=$(conf gw-a business_listen)
peer=$(conf gw-a peer_listen)
admin=$(conf gw-a admin_listen)
router=$(conf router listen)
sys=$PKI/org/131016/systems/tax
gw=$PKI/gw/gw-a/tls
rt=$PKI/router/tls
op=$PKI/operator/admin/tls
# raw ADDR CERT: sends stdin as it is over mutual TLS; prints the answer
raw() {
    timeout 20 openssl s_client -connect "$1" -cert "$2.crt" -key "$2.key" \
        -CAfile "$PKI/national-ca.crt" -quiet -ign_eof 2>/dev/null || true
}
big=$(head -c 20000 /dev/zero | tr '\0' 'a')
# refused NAME ADDR CERT STATUS CODE CTYPE REQUEST
refused() {
    local name=$1 addr=$2 cert=$3 status=$4 code=$5 ctype=$6 out
    out=$(printf '%b' "$7" | raw "$addr" "$cert" | tr -d '\r' | tr '\0' ' ')
    expect_contains "$name: status $status" "HTTP/1.1 $status " "$out"
    expect_contains "$name: code $code" "$code" "$out"
    expect_contains "$name: our content type" "Content-Type: $ctype" "$out"
    expect_contains "$name: the connection is closed after it" "Connection: close" "$out"
    case $out in *'<HTML>'* | *'<html>'*) fail "$name: an HTML page came back" ;; *) pass "$name: no HTML" ;; esac
}
for l in "business $biz $sys application/x-protobuf" "peer $peer $rt application/x-protobuf" \
    "router $router $gw application/x-protobuf" "admin $admin $op application/json"; do
    set -- $l
    name=$1 addr=$2 cert=$3 ctype=$4
    refused "$name, garbage request line" "$addr" "$cert" 400 KH-1001 "$ctype" \
        'NOT HTTP AT ALL\r\n\r\n'
    refused "$name, a header line without a colon" "$addr" "$cert" 400 KH-1001 "$ctype" \
        'GET /v1/x HTTP/1.1\r\nHost: gw\r\nno colon here\r\n\r\n'
    refused "$name, 20,000 bytes of headers" "$addr" "$cert" 413 KH-1003 "$ctype" \
        "GET /v1/x HTTP/1.1\r\nHost: gw\r\nX-Big: $big\r\n\r\n"
    refused "$name, a body announced over the limit" "$addr" "$cert" 413 KH-1003 "$ctype" \
        'POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 999999999\r\n\r\n'
    refused "$name, method PUT" "$addr" "$cert" 400 KH-1001 "$ctype" \
        'PUT /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n'
    refused "$name, an unknown Expect" "$addr" "$cert" 400 KH-1001 "$ctype" \
        'POST /v1/x HTTP/1.1\r\nHost: gw\r\nExpect: 200-maybe\r\nContent-Length: 3\r\n\r\n'
done
# after a refusal nothing more is read from the connection: not for a CONNECT
# (libevent obeys no Connection: close for it), nor for an HTTP/1.0 keep-alive
# (whose reply must not say keep-alive as well)
out=$(printf 'CONNECT a:1 HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nGET /v1/x HTTP/1.1\r\nHost: gw\r\n\r\n' |
    raw "$biz" "$sys" | tr -d '\r' | tr '\0' ' ')
expect_eq "a refused CONNECT: one reply, then the connection is closed" 1 "$(grep -c '^HTTP/1.1 ' <<<"$out")"
expect_contains "... with a Content-Length" "Content-Length: " "$out"
out=$(printf 'POST /v1/x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 99999999\r\n\r\n' |
    raw "$biz" "$sys" | tr -d '\r' | tr '\0' ' ')
expect_eq "an HTTP/1.0 keep-alive refused: one Connection header, close" "Connection: close" \
    "$(grep '^Connection:' <<<"$out")"
out=$(printf 'NOT HTTP\r\n\r\n' | raw "$admin" "$op" | tr -d '\r')
expect_contains "the admin API's refusal is its JSON status" \
    '{"code":"KH-1001","message":"malformed HTTP request: its request line or a header could not be read"}' "$out"
out=$(printf 'POST /v1/x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n' | raw "$biz" "$sys" | tr -d '\r')
expect_contains "the message names the limits" "(16384 bytes of headers, 1048576 of body)" "$out"
check "the gateway logs what it refused" grep -q "refused a request libevent could not accept" \
    "$KH_STACK/log/gw-a.log"
new_person
out=$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
expect_contains "a well-formed request is served meanwhile" "OK" "$out"
finish
