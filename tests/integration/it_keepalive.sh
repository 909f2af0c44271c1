# Kept-alive connections on the query path (issue 10): gw-a keeps its
# connection to the router open after a query and sends the next queries on
# it; the router does the same towards gw-a's peer listener. Connections are
# observed from the outside, in the kernel's socket table (ss), by owner
# process and local port. A client with many requests at once keeps every
# connection it opened. When the router is killed, the idle connections
# die with it and the next query still answers (a new connection, no error).
. "$(dirname "$0")/lib.sh"
ROUTER_PORT=$KH_PORT_BASE
PEER_A=$((KH_PORT_BASE + 12))
new_person
client 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=2950000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
Q="query O-CA-001 JT001 131016 TK001 $LOCAL_O"
pid_of() { cat "$KH_STACK/run/$1.pid"; }
# conns PROCESS PORT: local ports of PROCESS's established connections to
# 127.0.0.1:PORT, sorted, one a line
conns() {
    ss -tnpH state established "( dport = :$2 )" 2>/dev/null |
        awk -v p="pid=$(pid_of "$1")," 'index($0, p) {n = split($3, a, ":"); print a[n]}' | sort -n
}
answered() { grep -c '^OK FOUND' <<<"$1" || true; }
# reused BEFORE AFTER: every connection of BEFORE is still open in AFTER, and
# AFTER has at most one other. gw-a's outbox (a 1 s timer) may deliver a
# deferred answer left by an earlier test while the queries run, on a
# connection of its own; a pool that did not reuse its idle connection would
# have opened one per query (ten), one that closed them would keep none.
reused() {
    local extra
    [ -n "$1" ] || return 1
    [ -z "$(comm -23 <(sort <<<"$1") <(sort <<<"$2"))" ] || return 1
    extra=$(comm -13 <(sort <<<"$1") <(sort <<<"$2") | grep -c . || true)
    [ "$extra" -le 1 ]
}

out=$(client 271004 childallowance $Q)
expect_contains "a first query answers" "OK FOUND" "$out"
a1=$(conns gw-a "$ROUTER_PORT")
r1=$(conns router "$PEER_A")
check "after it, gw-a keeps a connection to the router open" test -n "$a1"
check "and the router one to gw-a's peer listener" test -n "$r1"

out=$(for _ in $(seq 1 10); do echo "$Q"; done | client 271004 childallowance batch)
expect_eq "ten more queries in a row answer" 10 "$(answered "$out")"
a2=$(conns gw-a "$ROUTER_PORT")
r2=$(conns router "$PEER_A")
check "gw-a sent them on the connection the first query opened ([$a1] then [$a2])" reused "$a1" "$a2"
check "the router answered through its first connection too ([$r1] then [$r2])" reused "$r1" "$r2"

# many at once: the pool keeps every connection it opened, beyond the 64 it
# used to keep (those above were closed on return and opened again, a TLS
# handshake each: issue 11). khhttp_probe is kh_http_request as the gateway
# and the router use it; 100 directory reads at once, three rounds, to the
# router, as gw-a
out=$("$KH_BUILD/tests/unit/khhttp_probe" "$PKI/gw/gw-a/tls.crt" "$PKI/gw/gw-a/tls.key" \
    "$PKI/national-ca.crt" "127.0.0.1:$ROUTER_PORT" 10000 100 3)
expect_eq "100 requests at once, three times, all answered, on 100 connections opened once" \
    "answered=300 opened=100 reused=200 resent=0" "$out"

# the router dies with gw-a's idle connection open; the next query finds it
# closed (or closing) and goes out on a new connection
kill -9 "$(pid_of router)"
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
out=$(client 271004 childallowance $Q)
expect_contains "after a router restart the next query answers at once" "OK FOUND" "$out"
a3=$(conns gw-a "$ROUTER_PORT")
check "on a new connection" test -n "$a3" -a "$a3" != "$a1"
finish
