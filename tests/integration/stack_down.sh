# Stops the integration stack and fails if a daemon's log (or that of an
# earlier run of a daemon restarted during the tests) shows a sanitizer
# report or a crash.
set -euo pipefail
"$KH_ROOT/tools/khstack" down "$KH_STACK"
bad=0
for f in "$KH_STACK"/log/*.log; do
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$f"; then
        echo "FAIL sanitizer report in $f:"; grep -m5 -E 'Sanitizer|runtime error' "$f"; bad=1
    fi
    if ! grep -q '"msg":"stopped"' "$f"; then
        echo "FAIL $f: the daemon did not stop cleanly"; tail -3 "$f"; bad=1
    fi
done
# the logs of daemons restarted during the run (khstack keeps them as
# NAME.log.<time>; a killed one never says it stopped)
for f in "$KH_STACK"/log/*.log.*; do
    [ -e "$f" ] || continue
    if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$f"; then
        echo "FAIL sanitizer report in $f:"; grep -m5 -E 'Sanitizer|runtime error' "$f"; bad=1
    fi
done
exit $bad
