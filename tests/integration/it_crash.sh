# Crash safety under a mixed load (issue 11): tools/khcrash, 3 cycles on the
# test stack (tools/khcrash alone runs 50 on a stack of its own). Each cycle
# kills gw-a (SIGKILL) while registrations, a bulk load, lawful queries, held
# queries and a responder's decisions run against it, restarts it and checks
# that every acknowledged write is there exactly once and nothing is there
# twice; at the end every deferred answer has reached the asker and every
# chain of both tenants verifies. Each kind of load must have been
# acknowledged at least once, or the checks would have had nothing to check.
. "$(dirname "$0")/lib.sh"
rc=0
out=$("$KH_ROOT/tools/khcrash" --stack "$KH_STACK" --cycles 3 2>&1) || rc=$?
printf '%s\n' "$out" | sed 's/^/  khcrash: /'
expect_eq "khcrash ends with success" 0 "$rc"
last=$(grep '^cycles=' <<<"$out" | tail -1)
expect_contains "three cycles, no failure" "cycles=3 " "$last"
expect_contains "... failures=0" "failures=0" "$last"
for kind in registrations bulk_files queries held decided; do
    n=$(sed -n "s/.*\b$kind=\([0-9]*\).*/\1/p" <<<"$last")
    check "some $kind were acknowledged (${n:-none})" test "${n:-0}" -ge 1
done
check "gw-a is up again" kill -0 "$(cat "$KH_STACK/run/gw-a.pid")"
finish
