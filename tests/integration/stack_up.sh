# Brings up the integration stack (fresh each run).
set -euo pipefail
"$KH_ROOT/tools/khstack" down "$KH_STACK" >/dev/null 2>&1 || true
rm -rf "$KH_STACK"
"$KH_ROOT/tools/khstack" up "$KH_STACK"
echo "stack up in $KH_STACK"
