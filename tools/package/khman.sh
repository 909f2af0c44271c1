#!/usr/bin/env bash
# khman.sh TEMPLATE BINARY OUT VERSION: a man page from TEMPLATE, whose line
# "@HELP@" becomes BINARY's own --help text (preformatted), so the options a man
# page lists are the ones the program takes (their one home is its option
# table); "@VERSION@" becomes VERSION. Run by the build (tools/package/CMakeLists.txt).
set -euo pipefail
tmpl=$1 bin=$2 out=$3 version=$4
help=$("$bin" --help 2>&1) || true
[ -n "$help" ] || { echo "khman.sh: $bin --help printed nothing" >&2; exit 1; }
# roff: a backslash is written \e; a line may not start with . or '
esc=$(printf '%s\n' "$help" | sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/")
# the text through the environment: awk -v would interpret its backslashes
KH_HELP=$esc awk -v version="$version" '
    $0 == "@HELP@" { print ".nf"; print ".ft CR"; print ENVIRON["KH_HELP"]; print ".ft R"; print ".fi"; next }
    { gsub(/@VERSION@/, version); print }' "$tmpl" >"$out.tmp"
mv "$out.tmp" "$out"
