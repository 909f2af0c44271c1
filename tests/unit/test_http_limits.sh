#!/usr/bin/env bash
# Replies to outgoing requests are read within limits (issue 11, class 10):
# what the router or a peer sends back is as untrusted as what it sends. A
# misbehaving server (the stock `openssl s_server`, fed a scripted reply)
# answers one request made by kh_http_request (khhttp_probe), and the request
# must fail (status 0) when the reply:
#   - trickles, a byte every 0.25 s, so that no single read waits long: the
#     whole reply has a deadline (the request's timeout), not only each read;
#   - announces a body over KH_HTTP_MAX_RESPONSE (17 MiB), plain or chunked;
#   - has headers over KH_HTTP_MAX_HEADERS (16 KiB).
# A well-formed reply from the same server is read (status 200).
# Usage: test_http_limits.sh path/to/khhttp_probe path/to/khpki
set -euo pipefail

PROBE=${1:?usage: test_http_limits.sh KHHTTP_PROBE KHPKI}
KHPKI=${2:?usage: test_http_limits.sh KHHTTP_PROBE KHPKI}
T=$(mktemp -d "${TMPDIR:-/tmp}/test_http_limits.XXXXXX")
SERVER=
trap 'if [ -n "$SERVER" ]; then kill $SERVER 2>/dev/null || true; fi; rm -rf "$T"' EXIT
P=$T/pki
fails=0
ok() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*" >&2
    fails=$((fails + 1))
}

"$KHPKI" init "$P" >/dev/null
"$KHPKI" gateway "$P" gw-x >/dev/null
"$KHPKI" gateway "$P" gw-y >/dev/null

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 10000))
        [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }
    done
    echo "no free port found" >&2
    exit 1
}

# serve GENERATOR: a TLS server for one connection; what GENERATOR writes,
# once the client is connected, is the reply
serve() {
    PORT=$(free_port)
    { sleep 0.7; "$1"; sleep 15; } 2>/dev/null |
        timeout 40 openssl s_server -accept "127.0.0.1:$PORT" -cert "$P/gw/gw-x/tls.crt" \
            -key "$P/gw/gw-x/tls.key" -CAfile "$P/national-ca.crt" -Verify 1 -tls1_3 \
            -quiet -naccept 1 >"$T/request.txt" 2>"$T/server.err" &
    SERVER=$!
    for _ in $(seq 1 50); do # listening? (a connection would use its one accept)
        [ -n "$(ss -Hltn "sport = :$PORT")" ] && return
        sleep 0.1
    done
    echo "the test server did not start: $(cat "$T/server.err")" >&2
    exit 1
}
# probe TIMEOUT_MS: the request; prints the probe's line
probe() {
    "$PROBE" "$P/gw/gw-y/tls.crt" "$P/gw/gw-y/tls.key" "$P/national-ca.crt" \
        "127.0.0.1:$PORT" "$1"
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}
field() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$2"; }

well_formed() { printf 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'; }
trickle() {
    printf 'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n'
    for _ in $(seq 1 40); do printf 'x'; sleep 0.25; done
}
big_body() {
    printf 'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' $((18 << 20))
    head -c $((18 << 20)) /dev/zero
}
big_chunk() {
    printf 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n' $((18 << 20))
    head -c $((18 << 20)) /dev/zero
}
big_headers() {
    printf 'HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok' \
        "$(head -c 20000 /dev/zero | tr '\0' a)"
}

serve well_formed
out=$(probe 3000)
if [ "$(field status "$out")" = 200 ] && [ "$(field len "$out")" = 5 ]; then
    ok "a well-formed reply is read: $out"
else
    fail "a well-formed reply: expected status 200 and 5 bytes, got [$out]"
fi
grep -q '^GET /v1/directory HTTP/1.1' "$T/request.txt" &&
    ok "the server saw the request" || fail "the server did not see the request"

serve trickle
out=$(probe 1500)
ms=$(field ms "$out")
if [ "$(field status "$out")" = 0 ] && [ "$ms" -ge 1400 ] && [ "$ms" -lt 4000 ]; then
    ok "a reply trickled a byte every 0.25 s fails at its 1.5 s deadline: $out"
else
    fail "a trickled reply: expected status 0 after about 1500 ms, got [$out]"
fi

for gen in big_body big_chunk big_headers; do
    serve $gen
    out=$(probe 20000)
    ms=$(field ms "$out")
    if [ "$(field status "$out")" = 0 ] && [ "$ms" -lt 10000 ]; then
        ok "$gen: the reply is refused: $out"
    else
        fail "$gen: expected status 0, got [$out]"
    fi
done

[ "$fails" -eq 0 ] && echo "all HTTP reply limits hold" || exit 1
