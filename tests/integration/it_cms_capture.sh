# What the router really sees (DESIGN.md, "Wire protocol"): a real query's
# envelope as the router captured it is checked with the stock openssl CLI
# only. The payload decrypts for the answering organisation alone, its inner
# SignedData verifies against the national CA and names the asking
# organisation, the header signature verifies with the asker's signing
# certificate, and no personal data travels in clear, neither in the query
# nor in the answer that comes back through the router.
. "$(dirname "$0")/lib.sh"
new_person
T=$(mktemp -d "${TMPDIR:-/tmp}/kh-it-cms.XXXXXX")
trap 'rm -rf "$T"' EXIT
FORGE=$KH_BUILD/tools/khforge
# quiet CMD...: runs a command, output dropped (its status is what counts)
quiet() { "$@" >/dev/null 2>&1; }
# absent FILE STRING: the file does not contain the string anywhere (binary-safe)
absent() { ! grep -qaF -- "$2" "$1"; }
income=$(( (RANDOM << 15 | RANDOM) % 90000000 + 10000000 ))  # 8 digits, unlike anything else here

out=$(client 131016 tax register "$LOCAL_C" TK001 20250601 fiscal_year=2025 total_income=$income)
expect_contains "Chiyoda registers local tax information" "OK registered version" "$out"
for who in "131016 tax $LOCAL_C" "271004 childallowance $LOCAL_O"; do
    set -- $who
    out=$(client "$1" "$2" linkcode "$3" "$RESIDENT")
    expect_contains "$1 obtains a link code" "OK link code acquired" "$out"
done

out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O")
expect_contains "Osaka's query is answered" "OK FOUND" "$out"
expect_contains "with the registered value" "TK001.total_income=$income" "$out"
handle=$(sed -n 's/.*handle=\([0-9a-f]*\).*/\1/p' <<<"$out")
cap=$KH_STACK/capture/271004-$handle.envelope
check "the router captured the query as $handle.envelope" test -n "$handle" -a -s "$cap"

hdr=$("$FORGE" --extract "$cap" "$T" 2>&1) || true
expect_contains "the capture is the query's envelope" \
    "msg_id=$handle type=QUERY sender=271004 recipient=131016 signer=271004 procedure=JT001 items=TK001" "$hdr"
check "header, signature and payload extracted" test -s "$T/header.bin" -a -s "$T/header_sig.bin" -a -s "$T/payload.der"

# the payload: only the recipient decrypts it
check "openssl cms -decrypt with 131016's encryption key succeeds" \
    quiet openssl cms -decrypt -inform DER -in "$T/payload.der" -recip "$PKI/org/131016/enc.crt" \
    -inkey "$PKI/org/131016/enc.key" -out "$T/signed.der"
for o in 271004 N00001; do
    if openssl cms -decrypt -inform DER -in "$T/payload.der" -recip "$PKI/org/$o/enc.crt" \
        -inkey "$PKI/org/$o/enc.key" -out "$T/wrong-$o.der" 2>/dev/null; then
        fail "openssl cms -decrypt with $o's encryption key fails"
    else
        pass "openssl cms -decrypt with $o's encryption key fails"
    fi
done
# the payload carries no certificate: the signer's comes from the directory
# (here the PKI folder), and the signature verifies only with the right one
check "openssl cms -verify with 271004's certificate against the national CA succeeds" \
    quiet openssl cms -verify -inform DER -in "$T/signed.der" -certfile "$PKI/org/271004/sign.crt" \
    -CAfile "$PKI/national-ca.crt" -binary -out "$T/body.bin" -signer "$T/signer.pem"
if openssl cms -verify -inform DER -in "$T/signed.der" -certfile "$PKI/org/131016/sign.crt" \
    -CAfile "$PKI/national-ca.crt" -binary -out /dev/null 2>/dev/null; then
    fail "the inner signature does not verify as 131016's"
else
    pass "the inner signature does not verify as 131016's"
fi
expect_contains "the inner signer is O=271004" "O=271004" \
    "$(openssl x509 -in "$T/signer.pem" -noout -subject -nameopt RFC2253 2>&1)"
if openssl cms -verify -inform DER -in "$T/signed.der" -certfile "$PKI/org/271004/sign.crt" \
    -CAfile "$PKI/rogue/ca.crt" -binary -out /dev/null 2>/dev/null; then
    fail "the inner signature does not verify against another CA"
else
    pass "the inner signature does not verify against another CA"
fi
check "the body names the staff member (it is the query body)" grep -qaF O-CA-001 "$T/body.bin"

# the header: signed by the asker, verifiable with its signing certificate
openssl x509 -in "$PKI/org/271004/sign.crt" -pubkey -noout >"$T/271004.pub"
openssl x509 -in "$PKI/org/131016/sign.crt" -pubkey -noout >"$T/131016.pub"
check "the header signature verifies with 271004's signing certificate" \
    quiet openssl dgst -sha256 -verify "$T/271004.pub" -signature "$T/header_sig.bin" "$T/header.bin"
if openssl dgst -sha256 -verify "$T/131016.pub" -signature "$T/header_sig.bin" "$T/header.bin" \
    >/dev/null 2>&1; then
    fail "the header signature does not verify with another organisation's certificate"
else
    pass "the header signature does not verify with another organisation's certificate"
fi

# no personal data in clear in what the router handled
check "the captured query does not carry the staff ID in clear" absent "$cap" O-CA-001
check "the captured query does not carry the local ID in clear" absent "$cap" "$LOCAL_O"
check "the captured query does not carry the registered income in clear" \
    absent "$cap" "$income"
# the answer as the router relays it (khforge keeps it): sealed for Osaka only
LINK_O=$(sql kh_gw_a "SELECT link_code FROM t_271004.linkcode WHERE local_id='$LOCAL_O'")
out=$("$FORGE" --pki "$PKI" --to "127.0.0.1:$KH_PORT_BASE" --as gw-a --sender 271004 \
      --recipient 131016 --procedure JT001 --items TK001 --subject "$LINK_O" \
      --save-answer "$T/answer.envelope" 2>&1) || true
expect_contains "a forged query through the router is answered" "SEND 1 HTTP 200 ANSWER FOUND" "$out"
check "the relayed answer does not carry the income in clear" \
    absent "$T/answer.envelope" "$income"
mkdir -p "$T/ans"
ahdr=$("$FORGE" --extract "$T/answer.envelope" "$T/ans" 2>&1) || true
expect_contains "the relayed answer's header is re-signed by the router" "type=ANSWER sender=131016 recipient=271004 signer=ROUTER" "$ahdr"
openssl x509 -in "$PKI/router/sign.crt" -pubkey -noout >"$T/router.pub"
check "the relayed answer's header signature verifies with the router's certificate" \
    quiet openssl dgst -sha256 -verify "$T/router.pub" -signature "$T/ans/header_sig.bin" "$T/ans/header.bin"
if openssl cms -decrypt -inform DER -in "$T/ans/payload.der" -recip "$PKI/org/271004/enc.crt" \
    -inkey "$PKI/org/271004/enc.key" -out "$T/ans/signed.der" 2>/dev/null &&
    openssl cms -verify -inform DER -in "$T/ans/signed.der" -certfile "$PKI/org/131016/sign.crt" \
        -CAfile "$PKI/national-ca.crt" -binary -out "$T/ans/body.bin" \
        -signer "$T/ans/signer.pem" 2>/dev/null; then
    pass "openssl opens the answer with 271004's key and verifies it"
else
    fail "openssl opens the answer with 271004's key and verifies it"
fi
check "the opened answer carries the income" grep -qaF "$income" "$T/ans/body.bin"
expect_contains "the answer's inner signer is O=131016" "O=131016" \
    "$(openssl x509 -in "$T/ans/signer.pem" -noout -subject -nameopt RFC2253 2>&1)"
finish
