# The connection limit (issue 11, class 9; see it_overload for the rest of
# admission): with max_connections = 1 on gw-b's business listener, a
# connection whose first request comes while another is open is refused
# (503 KH-5003) and closed, and served once there is room; likewise with
# system_max_connections = 1, for one business system's second connection,
# while another system is served. It runs first on
# a fresh stack (its name), where no earlier test's connection can be left;
# it_zz_connections checks at the end that none is (a count that outlived
# its connection was once seen after the whole suite, before connections
# were counted from their first request).
. "$(dirname "$0")/lib.sh"
conf=$KH_STACK/gw-b.conf
trap 'reconf_restore gw-b' EXIT
reconf gw-b "max_connections = 1"
timed() {
    local t0 out
    t0=$(date +%s%N)
    out=$(client "$1" "$2" list limit=1)
    printf '%s (%d ms)' "$out" $((($(date +%s%N) - t0) / 1000000))
}
biz=$(awk '$1 == "business_listen" { print $3 }' "$conf")
sys=$PKI/org/N00001/systems/pension
# connections: one held open after its request (a connection counts from
# its first request), a limit of one; the next connection's request is refused
# no connection of the checks above may be left (a counted one would take
# the room); once closed, the watch lets each go within a second
for _ in $(seq 1 100); do
    [ -z "$(ss -Htn state established "( sport = :${biz##*:} )")" ] && break
    sleep 0.1
done
check "no connection is left on gw-b's business listener" \
    test -z "$(ss -Htn state established "( sport = :${biz##*:} )")"
sleep 1.5
# held for 4 s at most: timeout ends openssl itself, whatever else happens
{ printf 'GET /v1/query/list HTTP/1.1\r\nHost: gw\r\n\r\n'; sleep 3; } |
    timeout 4 openssl s_client -connect "$biz" -cert "$sys.crt" -key "$sys.key" \
        -CAfile "$PKI/national-ca.crt" -quiet >/dev/null 2>&1 &
sleep 1
expect_contains "a connection over max_connections is refused" \
    "REFUSED KH-5003: overloaded: this listener has its 1 connections" "$(timed S00001 loans)"
# the held connection ends within 4 s; the watch lets it go within a second
for _ in $(seq 1 40); do
    out=$(timed S00001 loans)
    case $out in OK*) break ;; esac
    sleep 0.2
done
case $out in OK*) ;; *) echo "(connections still established: $(ss -Htn state established "( sport = :${biz##*:} )" | wc -l))" ;; esac
expect_contains "... and served once there is room" "OK" "$out"

# one business system's connections (system_max_connections = 1, the listener
# roomy): its second connection is refused, another system is served
reconf gw-b "max_connections = 10" "system_max_connections = 1"
for _ in $(seq 1 100); do
    [ -z "$(ss -Htn state established "( sport = :${biz##*:} )")" ] && break
    sleep 0.1
done
sleep 1.5
{ printf 'GET /v1/query/list HTTP/1.1\r\nHost: gw\r\n\r\n'; sleep 3; } |
    timeout 4 openssl s_client -connect "$biz" -cert "$sys.crt" -key "$sys.key" \
        -CAfile "$PKI/national-ca.crt" -quiet >/dev/null 2>&1 &
sleep 1
# (the connection held open is the pension system's: $sys)
expect_contains "a business system's second connection over system_max_connections is refused" \
    "REFUSED KH-5003: overloaded: this client has its 1 connections on this listener" \
    "$(timed N00001 pension)"
expect_contains "... while another business system is served" "OK" "$(timed S00001 loans)"
for _ in $(seq 1 40); do
    out=$(timed N00001 pension)
    case $out in OK*) break ;; esac
    sleep 0.2
done
expect_contains "... and the first once its connection has gone" "OK" "$out"

trap - EXIT
check "gw-b took its own configuration back" reconf_restore gw-b
expect_contains "with its own configuration back, gw-b serves" "OK" "$(timed S00001 loans)"
finish
