#!/usr/bin/env bash
# check_layers.sh ROOT [OBJECTS...]: the architecture's rules, checked.
#
# 1. Every folder with C sources has a .may_include file, and every #include
#    of every .c and .h file in it is allowed by that file: a project header
#    must live in the same folder or in a folder listed there; a third-party
#    header (<openssl/...>, <event2/...>, <libpq-fe.h>, <protobuf-c/...>,
#    <check.h>) must match a pattern listed there, and where the pattern is
#    followed by file names, only those files may include it.
# 2. OpenSSL is called only by the files allowed to include <openssl/...>:
#    any other file that calls an OpenSSL function (EVP_*, X509_*, SSL_*,
#    OPENSSL_*, ...) fails.
# 3. No two files depend on each other in a loop: each OBJECTS argument is
#    the ;-separated object files of one library or program; a file that
#    uses a symbol defined by another file of the same group depends on it,
#    and these dependencies must have no cycle (tsort).
# 5. Protobuf messages are unpacked only by gateway/core/khpb.c
#    (kh_pb_unpack, which refuses strings with a NUL or bad UTF-8): no other
#    file calls protobuf_c_message_unpack or a generated *__unpack; and
#    routes are set only by gateway/core/khhttp.c (kh_http_route matches
#    the path as sent): no other file calls evhttp_set_cb.
# 4. No file of gateway/daemon/ is longer than 800 lines, and no two of its
#    files include each other's headers in a loop (X.c and X.h are one file).
# Prints every violation with its file and line; exits 1 if there is any.
set -u -o pipefail
export LC_ALL=C
root=${1:?usage: check_layers.sh ROOT [OBJECTS...]}
shift
cd "$root" || exit 2
fail=0
bad() {
    printf 'layers: %s\n' "$*"
    fail=1
}

# The source folders: every folder holding .c or .h files outside build
# trees and scratch folders.
folders=$(find . \( -name .git -o -name build -o -name 'build-*' -o -name var \) -prune -o \
    -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's#^\./##; s#/[^/]*$##' | sort -u)

# Header name -> folder. Names are unique across folders (a #include "x.h"
# must say one thing); kakehashi.pb-c.h is generated from proto/; .def files
# are tables included as headers (proto/errors.def).
declare -A home=([kakehashi.pb-c.h]=proto)
for d in $folders; do
    for h in "$d"/*.h "$d"/*.def; do
        [ -e "$h" ] || continue
        n=${h##*/}
        if [ -n "${home[$n]:-}" ] && [ "${home[$n]}" != "$d" ]; then
            bad "$h: header name also used in ${home[$n]}/"
        fi
        home[$n]=$d
    done
done

# third-party headers that only some folders may use (libevent's old
# <event.h>, <evhttp.h>... and <postgresql/libpq-fe.h> count too)
thirdparty='^(openssl/|event2/|protobuf-c/|postgresql/)|(^|/)libpq-fe\.h$|^check\.h$|^ev[a-z_]*\.h$'
ossl_call='(^|[^A-Za-z0-9_])(((EVP|X509|X509V3|SSL|OPENSSL|BIO|PEM|ERR|CMS|ASN1|BN|EC|ECDSA|RAND|OSSL|CRYPTO|HMAC|SHA1|SHA224|SHA256|SHA384|SHA512|MD5|PKCS5|PKCS7|PKCS8|PKCS12|OBJ|NID|d2i|i2d|sk|TLS|DTLS|RSA|DH|DSA|ENGINE|GENERAL_NAME|GENERAL_NAMES|SMIME|OCSP|UI|CONF|AES|DES|TS)_[A-Za-z0-9_]*)|SHA1|SHA224|SHA256|SHA384|SHA512|HMAC|MD5)[[:space:]]*\('

for d in $folders; do
    mi="$d/.may_include"
    if [ ! -f "$mi" ]; then
        bad "$d/: no .may_include (what this folder may include must be declared)"
        continue
    fi
    # folders and patterns this folder may use
    allowed_dirs=" $d "
    patterns=()
    while read -r first rest; do
        case "$first" in
        '' | '#'*) continue ;;
        '<'*) patterns+=("${first#<}|$rest") ;;
        *) allowed_dirs="$allowed_dirs${first%/} " ;;
        esac
    done < "$mi"
    for f in "$d"/*.c "$d"/*.h; do
        [ -e "$f" ] || continue
        base=${f##*/}
        may_openssl=0
        # includes, with their line numbers
        while IFS=: read -r ln inc; do
            kind=${inc:0:1}
            name=${inc:1:${#inc}-2}
            if [ "$kind" = '<' ] && [ -n "${home[$name]:-}" ]; then
                kind='"' # a project header in angle brackets is still a project header
            fi
            if [ "$kind" = '"' ]; then
                h=${home[${name##*/}]:-}
                if [ -z "$h" ]; then
                    bad "$f:$ln: #include \"$name\" is not a header of the project"
                elif [[ "$allowed_dirs" != *" $h "* ]]; then
                    bad "$f:$ln: #include \"$name\" ($h/) is not allowed by $mi"
                fi
            elif [[ "$name" =~ $thirdparty ]]; then
                ok=0
                for p in "${patterns[@]}"; do
                    pat=${p%%|*}
                    pat=${pat%>}
                    files=${p#*|}
                    # shellcheck disable=SC2053
                    if [[ "$name" == $pat ]]; then
                        if [ -z "$files" ] || [[ " $files " == *" $base "* ]]; then ok=1; fi
                    fi
                done
                [ $ok = 1 ] || bad "$f:$ln: #include <$name> is not allowed here by $mi"
            fi
        done < <(sed -e 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*\(["<][^">]*[">]\).*/\1/' \
                         -e t -e 's/.*//' "$f" | grep -n . || true)
        for p in "${patterns[@]}"; do
            pat=${p%%|*}
            files=${p#*|}
            if [[ "$pat" == openssl/* ]] && { [ -z "$files" ] || [[ " $files " == *" $base "* ]]; }; then
                may_openssl=1
            fi
        done
        if [ $may_openssl = 0 ]; then
            # calls into OpenSSL, comments and strings left out
            sed -e 's#"\([^"\\]\|\\.\)*"#""#g' -e 's#//.*##' -e 's#/\*.*\*/##g' "$f" |
                grep -nE "$ossl_call" | while IFS=: read -r ln text; do
                printf 'layers: %s:%s: calls OpenSSL outside the crypto and TLS modules: %s\n' \
                    "$f" "$ln" "$(echo "$text" | sed 's/^[[:space:]]*//' | cut -c1-80)"
            done | grep . && fail=1
        fi
    done
done

# Line limit of the daemon's files.
for f in gateway/daemon/*.c gateway/daemon/*.h; do
    [ -e "$f" ] || continue
    n=$(wc -l < "$f")
    [ "$n" -le 800 ] || bad "$f: $n lines (at most 800: split it along its seams)"
done

# Include loops between the daemon's files: X.c and X.h are one module X;
# X includes Y.h of the daemon: X depends on Y. No cycle allowed.
inc_edges=$(mktemp)
for f in gateway/daemon/*.c gateway/daemon/*.h; do
    [ -e "$f" ] || continue
    m=$(basename "$f")
    m=${m%.*}
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]\([^">]*\)\.h[">].*/\1/p' "$f" |
        while read -r h; do
            [ "$h" != "$m" ] && [ -e "gateway/daemon/$h.h" ] && echo "$m $h"
        done
done | sort -u > "$inc_edges"
if ! out=$(tsort "$inc_edges" 2>&1 >/dev/null); [ -n "$out" ]; then
    loop=$(printf '%s\n' "$out" | sed -n 's/^tsort: \([^:]*\)$/\1/p' | tr '\n' ' ')
    bad "daemon files that include each other in a loop: $loop"
fi
rm -f "$inc_edges"

# Dependency cycles between the files of each library or program.
for group in "$@"; do
    IFS=';' read -r -a objs <<< "$group"
    [ ${#objs[@]} -gt 0 ] || continue
    defs=$(mktemp)
    edges=$(mktemp)
    for o in "${objs[@]}"; do
        m=$(basename "$o" .o)
        m=${m%.c}
        if [ ! -s "$o" ] || ! nm --defined-only -g "$o" > "$defs.one"; then
            printf 'layers: cannot read the symbols of %s (is the build complete?)\n' "$o"
            touch "$defs.bad" # (inside a pipeline: bad would not reach fail)
            continue
        fi
        awk -v m="$m" 'NF == 3 {print $3, m}' "$defs.one"
    done | sort -u > "$defs"
    for o in "${objs[@]}"; do
        m=$(basename "$o" .o)
        m=${m%.c}
        nm -u "$o" | awk '{print $NF}' | sort -u |
            join - "$defs" | awk -v m="$m" '$2 != m {print m, $2}'
    done | sort -u > "$edges"
    if ! out=$(tsort "$edges" 2>&1 >/dev/null); [ -n "$out" ]; then
        loop=$(printf '%s\n' "$out" | sed -n 's/^tsort: \([^:]*\)$/\1/p' | tr '\n' ' ')
        bad "files that depend on each other in a loop: $loop(in $(dirname "${objs[0]}" | sed 's#.*/CMakeFiles/##'))"
    fi
    [ -e "$defs.bad" ] && fail=1
    [ -s "$defs" ] || bad "no symbols read from ${objs[0]} and the rest of its group"
    rm -f "$defs" "$defs.one" "$defs.bad" "$edges"
done

# 5. one place unpacks protobuf
for d in $folders; do
    for f in "$d"/*.c; do
        [ -e "$f" ] || continue
        [ "$f" = gateway/core/khpb.c ] && continue
        grep -nE '(protobuf_c_message_unpack|[a-z_]__unpack)[[:space:]]*\(' "$f" |
            while IFS=: read -r line _; do
                printf 'layers: %s:%s: unpacks protobuf itself (use kh_pb_unpack, gateway/core/khpb.h)\n' "$f" "$line"
            done | grep . && fail=1
        [ "$f" = gateway/core/khhttp.c ] && continue
        grep -nE 'evhttp_set_(gen)?cb[[:space:]]*\(' "$f" |
            while IFS=: read -r line _; do
                printf 'layers: %s:%s: sets a route itself (use kh_http_route, gateway/core/khhttp.h)\n' "$f" "$line"
            done | grep . && fail=1
    done
done

exit $fail
