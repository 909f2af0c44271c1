#!/usr/bin/env bash
# test_layers.sh ROOT [OBJECTS...]: the architecture check (check_layers.sh)
# passes on the tree as it is, and fails, naming the place, on each kind of
# violation planted in a copy of the tree: an upward include, a call into
# OpenSSL outside the crypto and TLS modules, an OpenSSL header in a tool, a
# daemon file over 800 lines, a folder without .may_include, and two files
# that depend on each other in a loop.
set -u
root=${1:?usage: test_layers.sh ROOT [OBJECTS...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
check="$here/check_layers.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() {
    printf 'ok: %s\n' "$1"
    passed=$((passed + 1))
}
ko() {
    printf 'FAIL: %s\n' "$1"
    failed=$((failed + 1))
}

# 1. The tree as it is.
if out=$("$check" "$root" "$@" 2>&1); then
    ok "the tree follows its layers"
else
    printf '%s\n' "$out"
    ko "the tree follows its layers"
fi

# A copy of the sources (C files, headers, tables, allow-lists) to plant in.
mkdir -p "$tmp/tree"
(cd "$root" && find . \( -name .git -o -name build -o -name 'build-*' -o -name var \) -prune -o \
    -type f \( -name '*.c' -o -name '*.h' -o -name '*.def' -o -name .may_include \) -print0 |
    tar --null -T - -cf -) | tar -xf - -C "$tmp/tree"
cp -a "$tmp/tree" "$tmp/pristine"

# expect_fail WHAT PATTERN: the check on the planted copy fails and says PATTERN.
expect_fail() {
    local what=$1 pattern=$2 out
    if out=$("$check" "$tmp/tree" "${@:3}" 2>&1); then
        ko "$what: the check passed"
    elif printf '%s\n' "$out" | grep -qE -- "$pattern"; then
        ok "$what: $(printf '%s\n' "$out" | grep -E -- "$pattern" | head -1)"
    else
        printf '%s\n' "$out"
        ko "$what: no line matching /$pattern/"
    fi
    rm -rf "$tmp/tree"
    cp -a "$tmp/pristine" "$tmp/tree"
}

# 2. The middle layer includes the daemon.
printf '#include "gw_state.h"\n' >> "$tmp/tree/refdb/refdb.c"
expect_fail "upward include" 'refdb/refdb\.c:[0-9]+: #include "gw_state\.h" \(gateway/daemon/\) is not allowed'

# 3. The core library includes the middle layer.
printf '#include "idconv.h"\n' >> "$tmp/tree/gateway/core/khenv.c"
expect_fail "core includes the middle layer" 'khenv\.c:[0-9]+: #include "idconv\.h" \(idconv/\) is not allowed'

# 4. A daemon file calls OpenSSL itself.
printf 'static void leak(void *p) { EVP_MD_CTX_free(p); }\n' >> "$tmp/tree/gateway/daemon/gw_biz.c"
expect_fail "OpenSSL call in the daemon" 'gw_biz\.c:[0-9]+: calls OpenSSL outside the crypto and TLS modules'

# 5. A core file that is not the crypto or TLS module wipes with OpenSSL.
printf 'static void w(char *p) { OPENSSL_cleanse(p, 1); }\n' >> "$tmp/tree/gateway/core/khjson.c"
expect_fail "OpenSSL call in the core outside crypto/TLS" 'khjson\.c:[0-9]+: calls OpenSSL'

# 5b. A one-shot digest call of OpenSSL's, and a project header in angle brackets.
printf 'static void d(unsigned char *o) { SHA256((const unsigned char *)"", 0, o); }\n' >> "$tmp/tree/gateway/daemon/gw_record.c"
expect_fail "one-shot OpenSSL call" 'gw_record\.c:[0-9]+: calls OpenSSL outside the crypto and TLS modules'
printf '#include <gw_state.h>\n' >> "$tmp/tree/tools/khctl.c"
expect_fail "a daemon header in angle brackets" 'khctl\.c:[0-9]+: #include "gw_state\.h" \(gateway/daemon/\) is not allowed'
printf '#include <evhttp.h>\n' >> "$tmp/tree/refdb/refdb.c"
expect_fail "libevent's old headers in the middle layer" 'refdb\.c:[0-9]+: #include <evhttp\.h> is not allowed'

# 6. A tool includes an OpenSSL header.
printf '#include <openssl/evp.h>\n' >> "$tmp/tree/tools/khclient.c"
expect_fail "OpenSSL header in a tool" 'khclient\.c:[0-9]+: #include <openssl/evp\.h> is not allowed'

# 7. A daemon file grows past 800 lines.
for _ in $(seq 1 801); do printf '/* padding */\n'; done >> "$tmp/tree/gateway/daemon/gw_biz.c"
expect_fail "daemon file too long" 'gw_biz\.c: [0-9]+ lines \(at most 800'

# 7b. Two daemon files that include each other (gw_admin.c includes gw_usage.h).
sed -i 's/#include "khjson.h"/#include "khjson.h"\n#include "gw_admin.h"/' "$tmp/tree/gateway/daemon/gw_usage.h"
expect_fail "daemon files that include each other" 'include each other in a loop: .*gw_(admin|usage)'

# 8. A new folder of sources without an allow-list.
mkdir -p "$tmp/tree/gateway/extra"
printf 'int extra(void);\n' > "$tmp/tree/gateway/extra/extra.h"
expect_fail "folder without .may_include" 'gateway/extra/: no \.may_include'

# 9. Two files that call each other.
mkdir -p "$tmp/loop"
printf 'int pong(int);\nint ping(int n) { return n ? pong(n - 1) : 0; }\n' > "$tmp/loop/ping.c"
printf 'int ping(int);\nint pong(int n) { return n ? ping(n - 1) : 1; }\n' > "$tmp/loop/pong.c"
printf 'int ping(int);\nint main(void) { return ping(3); }\n' > "$tmp/loop/top.c"
if cc -c -o "$tmp/loop/ping.c.o" "$tmp/loop/ping.c" && cc -c -o "$tmp/loop/pong.c.o" "$tmp/loop/pong.c" &&
    cc -c -o "$tmp/loop/top.c.o" "$tmp/loop/top.c"; then
    expect_fail "files in a loop" 'depend on each other in a loop: .*ping.*pong|loop: .*pong.*ping' \
        "$tmp/loop/top.c.o;$tmp/loop/ping.c.o;$tmp/loop/pong.c.o"
    # and without the loop (top -> ping only) the same check passes
    printf 'int ping(int n) { return n; }\n' > "$tmp/loop/ping.c"
    cc -c -o "$tmp/loop/ping.c.o" "$tmp/loop/ping.c"
    mkdir -p "$tmp/empty"
    if "$check" "$tmp/empty" "$tmp/loop/top.c.o;$tmp/loop/ping.c.o;$tmp/loop/pong.c.o"; then
        ok "files that call each other one way only are no loop"
    else
        ko "files that call each other one way only are no loop"
    fi
    # an object that cannot be read fails the check (it never passes blind)
    if "$check" "$tmp/empty" "$tmp/loop/top.c.o;$tmp/loop/missing.c.o" >/dev/null; then
        ko "a missing object file fails the check"
    else
        ok "a missing object file fails the check"
    fi
else
    ko "cannot compile the loop fixture"
fi

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
