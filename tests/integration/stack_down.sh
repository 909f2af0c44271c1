# Stops the integration stack and fails if a daemon's log shows a sanitizer
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
exit $bad
