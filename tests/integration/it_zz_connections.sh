# Runs last (its name): after every other test, no connection is left on
# the business or peer listener of either gateway, counted against
# max_connections or merely open, once their clients have gone (the watch
# lets a closed connection go within a second). The router is a client of
# the peer listeners that never goes (its readiness probes keep a connection
# to each): it is stopped first, and started again at the end. A count that
# outlives its connection would, in the end, fill a listener. Read from the
# metrics of a platform admin's scrape (kakehashi_http_connections).
. "$(dirname "$0")/lib.sh"
trap '"$KH_ROOT/tools/khstack" start "$KH_STACK" router >/dev/null' EXIT
kill -TERM "$(cat "$KH_STACK/run/router.pid")"
conns() { # GW: its four counts (business open, counted; peer open, counted), or FAILED
    local out
    out=$("$KH_ROOT/tools/khstack" admin "$KH_STACK" "$1" admin metrics 2>&1) || {
        echo "FAILED: $out" | head -1
        return
    }
    { grep -E '^kakehashi_http_connections\{listener="(business|peer)"' <<<"$out" || true; } |
        awk '{ print $2 }' | paste -sd' ' -
}
for gw in gw-a gw-b; do
    out= t0=$(date +%s)
    while [ $(($(date +%s) - t0)) -lt 40 ]; do
        out=$(conns "$gw")
        [ "$out" = "0 0 0 0" ] && break
        sleep 1
    done
    [ "$out" = "0 0 0 0" ] || ss -tanp | grep kakehashi-gw | sed 's/^/  ss: /' || true
    expect_eq "$gw: no connection left on its business and peer listeners (open, counted)" \
        "0 0 0 0" "$out"
done
finish
