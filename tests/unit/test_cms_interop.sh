#!/usr/bin/env bash
# Interop of khcrypto with the stock openssl CLI (DESIGN.md, "Wire protocol"):
# a payload sealed by khc_seal decrypts with `openssl cms -decrypt` for the
# recipient only, carries no certificate, and verifies with `openssl cms
# -verify` given the signer's certificate (as a receiver takes it from the
# directory) against the national CA; a payload made by the CLI (which
# carries its certificate) opens with khc_open; a khc_sign signature verifies
# with `openssl dgst -sha256 -verify`.
# Usage: test_cms_interop.sh path/to/khc_seal_tool path/to/khpki
set -euo pipefail

TOOL=${1:?usage: test_cms_interop.sh KHC_SEAL_TOOL KHPKI}
KHPKI=${2:?usage: test_cms_interop.sh KHC_SEAL_TOOL KHPKI}
T=$(mktemp -d "${TMPDIR:-/tmp}/test_cms_interop.XXXXXX")
trap 'rm -rf "$T"' EXIT
P="$T/pki"
A="$P/org/131016"
B="$P/org/271004"
fails=0

ok() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*" >&2
    fails=$((fails + 1))
}

"$KHPKI" init "$P" >/dev/null
"$KHPKI" org "$P" 131016 >/dev/null
"$KHPKI" org "$P" 271004 >/dev/null

# A body with binary bytes, CR LF and NUL: must survive byte for byte.
printf '{"msg":"m-0001","proc":"P001"}\r\n\000\001\377 end' >"$T/body"
head -c 5000 /dev/urandom >>"$T/body"

# 1. khc_seal from 131016 to 271004; the tool prints nothing on success.
out=$("$TOOL" seal "$A/sign.crt" "$A/sign.key" "$B/enc.crt" "$T/body" "$T/p.der" 2>&1) &&
    [ -z "$out" ] && [ -s "$T/p.der" ] && ok "khc_seal wrote a payload, silently" ||
    fail "khc_seal: $out"
openssl cms -cmsout -inform DER -in "$T/p.der" -print 2>/dev/null |
    grep -q 'contentType: id-smime-ct-authEnvelopedData' &&
    ok "payload is AuthEnvelopedData" || fail "payload type"
openssl cms -cmsout -inform DER -in "$T/p.der" -print 2>/dev/null | grep -q 'aes-256-gcm' &&
    ok "content encryption is AES-256-GCM" || fail "content cipher"
openssl cms -cmsout -inform DER -in "$T/p.der" -print 2>/dev/null |
    grep -q 'dhSinglePass-stdDH-sha256kdf-scheme' &&
    ok "key agreement is ECDH with the SHA-256 KDF" || fail "key agreement scheme"
openssl cms -decrypt -inform DER -in "$T/p.der" -recip "$B/enc.crt" -inkey "$B/enc.key" 2>/dev/null |
    openssl cms -cmsout -inform DER -print 2>/dev/null | grep -q 'ecdsa-with-SHA256' &&
    ok "inner signature is ECDSA with SHA-256" || fail "inner signature algorithm"

# 2. Decrypts with 271004's enc key, not with 131016's.
if openssl cms -decrypt -inform DER -in "$T/p.der" -recip "$B/enc.crt" -inkey "$B/enc.key" \
    -out "$T/s.der" 2>"$T/err"; then
    ok "openssl cms -decrypt with the recipient's key"
else
    fail "decrypt with recipient key: $(cat "$T/err")"
fi
if openssl cms -decrypt -inform DER -in "$T/p.der" -recip "$A/enc.crt" -inkey "$A/enc.key" \
    -out "$T/s2.der" 2>/dev/null; then
    fail "decrypted with another organisation's key"
else
    ok "openssl cms -decrypt with another organisation's key fails"
fi
if openssl cms -decrypt -inform DER -in "$T/p.der" -inkey "$A/enc.key" \
    -out "$T/s3.der" 2>/dev/null && cmp -s "$T/s3.der" "$T/s.der"; then
    fail "decrypted with another organisation's key (no -recip)"
else
    ok "openssl cms -decrypt with another key and no -recip fails"
fi

# 3. The inner SignedData verifies against the national CA; content == body.
openssl cms -cmsout -inform DER -in "$T/s.der" -print 2>/dev/null >"$T/s.txt"
grep -q 'signerInfos' "$T/s.txt" &&
    [ "$(awk '/^ *certificates:/ {getline; print $1}' "$T/s.txt")" = "<ABSENT>" ] &&
    ok "the SignedData carries no certificate" || fail "the SignedData carries a certificate"
if openssl cms -verify -inform DER -in "$T/s.der" -CAfile "$P/national-ca.crt" -binary \
    -out /dev/null 2>/dev/null; then
    fail "verified without the signer's certificate"
else
    ok "openssl cms -verify needs the signer's certificate"
fi
if openssl cms -verify -inform DER -in "$T/s.der" -certfile "$A/sign.crt" \
    -CAfile "$P/national-ca.crt" -binary -out "$T/content" 2>"$T/err"; then
    ok "openssl cms -verify with 131016's certificate against national-ca.crt"
else
    fail "cms -verify: $(cat "$T/err")"
fi
cmp -s "$T/content" "$T/body" && ok "verified content equals the body" || fail "content differs"
openssl cms -verify -inform DER -in "$T/s.der" -certfile "$A/sign.crt" \
    -CAfile "$P/national-ca.crt" -binary -out /dev/null -signer "$T/signer.pem" 2>/dev/null &&
    openssl x509 -in "$T/signer.pem" -noout -subject -nameopt RFC2253 | grep -q 'O=131016$' &&
    ok "signer is 131016" || fail "signer subject"
if openssl cms -verify -inform DER -in "$T/s.der" -certfile "$A/sign.crt" \
    -CAfile "$P/rogue/ca.crt" -binary -out /dev/null 2>/dev/null; then
    fail "verified against the rogue CA"
else
    ok "openssl cms -verify against the rogue CA fails"
fi

# 4. khc_open opens khc_seal's payload, and refuses it for the wrong recipient.
"$TOOL" open "$B/enc.crt" "$B/enc.key" "$P/national-ca.crt" "$A/sign.crt" "$T/p.der" "$T/o1" &&
    cmp -s "$T/o1" "$T/body" && ok "khc_open round trip" || fail "khc_open round trip"
err=$("$TOOL" open "$A/enc.crt" "$A/enc.key" "$P/national-ca.crt" "$A/sign.crt" "$T/p.der" \
    "$T/o2" 2>&1) &&
    fail "khc_open with another organisation's key" || {
    [[ $err == *KH-4002* ]] && ok "khc_open with another organisation's key: KH-4002" ||
        fail "khc_open wrong key: $err"
}
err=$("$TOOL" open "$B/enc.crt" "$B/enc.key" "$P/national-ca.crt" "$B/sign.crt" "$T/p.der" \
    "$T/o2" 2>&1) &&
    fail "khc_open accepted 131016's payload as 271004's" || {
    [[ $err == *KH-4004* ]] && ok "khc_open expecting another signer: KH-4004" ||
        fail "khc_open other signer: $err"
}

# 5. A payload made by the CLI (sign, then encrypt) opens with khc_open.
openssl cms -sign -binary -nodetach -md sha256 -signer "$A/sign.crt" -inkey "$A/sign.key" \
    -in "$T/body" -outform DER -out "$T/cli-s.der"
openssl cms -encrypt -binary -aes-256-gcm -recip "$B/enc.crt" -keyopt ecdh_kdf_md:sha256 \
    -in "$T/cli-s.der" -outform DER -out "$T/cli-p.der"
"$TOOL" open "$B/enc.crt" "$B/enc.key" "$P/national-ca.crt" "$A/sign.crt" "$T/cli-p.der" "$T/o3" &&
    cmp -s "$T/o3" "$T/body" && ok "khc_open opens a payload made by the openssl CLI" ||
    fail "khc_open of a CLI payload"
# ... but only in the protocol's one recipient shape: the CLI's default KDF
# (SHA-1), AES key wrap with padding and a second recipient are refused as
# undecryptable before any key is used.
refuse_shape() {
    local what=$1 err
    shift
    openssl cms -encrypt -binary -aes-256-gcm "$@" -in "$T/cli-s.der" -outform DER \
        -out "$T/shape.der" || {
        fail "openssl cms -encrypt ($what)"
        return
    }
    err=$("$TOOL" open "$B/enc.crt" "$B/enc.key" "$P/national-ca.crt" "$A/sign.crt" \
        "$T/shape.der" "$T/o5" 2>&1) && fail "khc_open accepted $what" || {
        [[ $err == *KH-4002* ]] && ok "$what refused: KH-4002" || fail "$what: $err"
    }
}
refuse_shape "the SHA-1 KDF" -recip "$B/enc.crt"
refuse_shape "AES key wrap with padding" -recip "$B/enc.crt" -keyopt ecdh_kdf_md:sha256 \
    -wrap id-aes256-wrap-pad
refuse_shape "AES-128 key wrap" -recip "$B/enc.crt" -keyopt ecdh_kdf_md:sha256 \
    -wrap id-aes128-wrap
refuse_shape "two recipients" -recip "$B/enc.crt" -keyopt ecdh_kdf_md:sha256 \
    -recip "$A/enc.crt" -keyopt ecdh_kdf_md:sha256
# ... and a CLI payload signed by the rogue 271004 is refused as untrusted.
openssl cms -sign -binary -nodetach -md sha256 -signer "$P/rogue/sign.crt" \
    -inkey "$P/rogue/sign.key" -in "$T/body" -outform DER -out "$T/rogue-s.der"
openssl cms -encrypt -binary -aes-256-gcm -recip "$B/enc.crt" -keyopt ecdh_kdf_md:sha256 \
    -in "$T/rogue-s.der" -outform DER -out "$T/rogue-p.der"
for who in "$B/sign.crt" "$P/rogue/sign.crt"; do
    err=$("$TOOL" open "$B/enc.crt" "$B/enc.key" "$P/national-ca.crt" "$who" "$T/rogue-p.der" \
        "$T/o4" 2>&1) &&
        fail "khc_open accepted a rogue signer (expecting $who)" || {
        [[ $err == *KH-4004* ]] && ok "rogue signer refused: KH-4004 (expecting ${who#"$P"/})" ||
            fail "rogue signer: $err"
    }
done
# ... and a payload the right signer signed with SHA-1 is refused: KH-4003.
openssl cms -sign -binary -nodetach -md sha1 -signer "$A/sign.crt" -inkey "$A/sign.key" \
    -in "$T/body" -outform DER -out "$T/sha1-s.der"
openssl cms -encrypt -binary -aes-256-gcm -recip "$B/enc.crt" -keyopt ecdh_kdf_md:sha256 \
    -in "$T/sha1-s.der" -outform DER -out "$T/sha1-p.der"
err=$("$TOOL" open "$B/enc.crt" "$B/enc.key" "$P/national-ca.crt" "$A/sign.crt" "$T/sha1-p.der" \
    "$T/o6" 2>&1) && fail "khc_open accepted a SHA-1 signature" || {
    [[ $err == *KH-4003* ]] && ok "a SHA-1 signature refused: KH-4003" || fail "SHA-1 signature: $err"
}

# 6. A detached khc_sign signature verifies with openssl dgst, and not over other data.
printf 'outer header bytes' >"$T/header"
"$TOOL" sign "$A/sign.key" "$T/header" "$T/header.sig"
openssl x509 -in "$A/sign.crt" -noout -pubkey >"$T/pub.pem"
openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/header.sig" "$T/header" >/dev/null &&
    ok "openssl dgst -sha256 -verify accepts khc_sign's signature" || fail "dgst -verify"
printf 'outer header bytez' >"$T/header2"
if openssl dgst -sha256 -verify "$T/pub.pem" -signature "$T/header.sig" "$T/header2" \
    >/dev/null 2>&1; then
    fail "dgst verified altered data"
else
    ok "openssl dgst -verify rejects altered data"
fi

# 7. Key permission check through the tool.
cp "$A/sign.key" "$T/loose.key"
chmod 644 "$T/loose.key"
err=$("$TOOL" sign "$T/loose.key" "$T/header" "$T/x.sig" 2>&1) && fail "loaded a 0644 key" || {
    [[ $err == *0644* ]] && ok "a 0644 key is refused, naming the mode" || fail "loose key: $err"
}

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "all CMS interop checks passed"
