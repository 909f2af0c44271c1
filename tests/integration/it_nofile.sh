# Out of file descriptors (issue 11, class 9): when a listener's accept()
# fails for want of descriptors, libevent 2.1 retries at once, forever: a
# whole CPU. gw-b's limit of open files is lowered on the fly (prlimit) to a
# few more than it holds, and plain TCP connections are opened to its
# business listener until none is left: gw-b says so in its log, stops
# accepting for a second at a time (its CPU time over 3 s stays small), and
# once the connections are gone and its limit is back, it serves again.
. "$(dirname "$0")/lib.sh"
pid=$(cat "$KH_STACK/run/gw-b.pid") log=$KH_STACK/log/gw-b.log
biz=$(awk '$1 == "business_listen" { print $3 }' "$KH_STACK/gw-b.conf")
orig=$(prlimit --pid "$pid" --nofile --output SOFT,HARD --noheadings | awk '{ print $1 ":" $2 }')
restore() { prlimit --pid "$pid" --nofile="$orig" 2>/dev/null || true; }
trap restore EXIT
check "gw-b's limit of open files is read ($orig)" test -n "$orig"
open=$(ls "/proc/$pid/fd" | wc -l)
lim=$((open + 8))
# the soft limit only: raising a hard limit again may not be allowed here
# (no CAP_SYS_RESOURCE in a container), and the soft one is what accept() meets
prlimit --pid "$pid" --nofile="$lim:${orig#*:}"
n0=$(grep -c 'not accepting for 1 s' "$log" || true)
# 40 connections held by this shell (bash's /dev/tcp): more than gw-b can take
fds=()
for _ in $(seq 1 40); do
    exec {fd}<>"/dev/tcp/${biz%:*}/${biz##*:}" || break
    fds+=("$fd")
done
check "40 connections were opened (the kernel's backlog holds those not accepted)" test "${#fds[@]}" = 40
sleep 0.5
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; } # utime + stime, in ticks
t0=$(cpu)
sleep 3
used=$(($(cpu) - t0))
tick=$(getconf CLK_TCK)
check "gw-b said it ran out of descriptors" test "$(grep -c 'not accepting for 1 s' "$log" || true)" -gt "$n0"
check "... and did not spin: $used ticks of CPU in 3 s (at most $tick, a third of a CPU)" \
    test "$used" -le "$tick"
for fd in "${fds[@]}"; do exec {fd}>&-; done
restore
expect_eq "gw-b's limit of open files is back" "$orig" \
    "$(prlimit --pid "$pid" --nofile --output SOFT,HARD --noheadings | awk '{ print $1 ":" $2 }')"

for _ in $(seq 1 30); do
    out=$(client S00001 loans list limit=1 2>&1 || true)
    case $out in OK*) break ;; esac
    sleep 0.5
done
expect_contains "with its connections gone and its limit back, gw-b serves again" "OK" "$out"
finish
