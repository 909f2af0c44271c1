# Shared helpers for the scripts in tools/. Source it; do not run it.
# kh_deps installs the Debian packages the project needs, only those missing,
# so a second run does nothing.

KH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KH_PKGS="build-essential cmake pkg-config clang-format libssl-dev openssl libevent-dev \
libpq-dev postgresql-15 postgresql-client-15 libprotobuf-c-dev protobuf-c-compiler \
check libsubunit-dev xxd procps iproute2 python3"

kh_say() { printf '%s\n' "$*"; }
kh_die() { printf 'error: %s\n' "$*" >&2; exit 1; }
kh_http_ok() { # URL: true if a GET of it answers 200 within 2 s
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" \
        >/dev/null 2>&1
}
kh_within() { # SECONDS CMD...: until CMD succeeds (tried every 0.2 s), at most SECONDS
    local end=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}

kh_deps() {
    local missing="" p
    for p in $KH_PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    kh_say "installing Debian packages:$missing"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
        kh_die "apt-get update failed"
    # policy-rc.d keeps the package from starting a system PostgreSQL: the
    # project runs its own private cluster (tools/khdb).
    local prc=/usr/sbin/policy-rc.d created=0
    if [ ! -e $prc ] && [ "$(id -u)" -eq 0 ]; then
        printf '#!/bin/sh\nexit 101\n' > $prc && chmod 755 $prc && created=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $missing >/dev/null || { [ $created = 1 ] && rm -f $prc; kh_die "apt-get install failed"; }
    [ $created = 1 ] && rm -f $prc
    return 0
}

# kh_build DIR [cmake args...]: configure once, then build incrementally.
kh_build() {
    local dir=$1; shift
    if [ ! -f "$dir/CMakeCache.txt" ]; then
        cmake -S "$KH_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null ||
            kh_die "cmake configure failed for $dir"
    fi
    cmake --build "$dir" -j "$(nproc)" -- --no-print-directory >"$dir.log" 2>&1 || {
        tail -40 "$dir.log" >&2; kh_die "build failed in $dir (full log: $dir.log)"; }
}
