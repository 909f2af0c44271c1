#!/usr/bin/env bash
# test_hardening.sh FORTIFY BINARY...: every daemon and tool was built
# hardened (CMakeLists.txt): a position-independent executable, full RELRO
# (a GNU_RELRO segment and BIND_NOW), a stack that is not executable, the
# stack protector linked in, and, if FORTIFY is 1, glibc's checked functions
# (__*_chk) in use. readelf reads what the linker actually produced.
set -u
fortify=$1
shift
passed=0
failed=0
ok() { printf 'ok: %s\n' "$1"; passed=$((passed + 1)); }
ko() { printf 'FAIL: %s\n' "$1"; failed=$((failed + 1)); }
for b in "$@"; do
    n=$(basename "$b")
    readelf -h "$b" | grep -q 'Type: *DYN' && ok "$n is a PIE" || ko "$n is a PIE"
    readelf -lW "$b" | grep -q GNU_RELRO && ok "$n has a RELRO segment" || ko "$n has a RELRO segment"
    readelf -dW "$b" | grep -Eq 'BIND_NOW|FLAGS_1.*NOW' && ok "$n binds every symbol at start (full RELRO)" ||
        ko "$n binds every symbol at start (full RELRO)"
    if readelf -lW "$b" | grep GNU_STACK | grep -q RWE; then ko "$n has an executable stack"; else
        ok "$n has no executable stack"; fi
    syms=$(nm -D "$b" 2>/dev/null)
    grep -q '__stack_chk_fail' <<<"$syms" && ok "$n uses the stack protector" ||
        ko "$n uses the stack protector"
    if [ "$fortify" = 1 ]; then
        grep -Eq '__[a-z]+_chk@' <<<"$syms" && ok "$n uses glibc's checked functions (_FORTIFY_SOURCE)" ||
            ko "$n uses glibc's checked functions (_FORTIFY_SOURCE)"
    fi
done
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
