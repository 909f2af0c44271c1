# Trusted time on the record chains (issue 14, item 4). The stack's gateways
# have every signed chain head time-stamped by the stack's time-stamping
# authority (tools/khtsa, RFC 3161, OpenSSL's TS API): the token is stored
# with the head (chain_timestamp) and verifies with the openssl command alone
# against the TSA's CA, over the head's signature, which itself verifies
# with the tenant's signing certificate over the head's message. The TSA
# stopped: queries go on, the heads signed meanwhile wait (metrics, the
# connectivity check and one log line say so); started again: every one of
# them gets its token, and the metrics and the log say it is over. A TSA
# whose certificate tsa_ca does not trust gives no token.
. "$(dirname "$0")/lib.sh"
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a admin "$@" 2>&1 || true; }
metric() { adm metrics | awk -v n="$1" '$1 == n { print $2 }'; }
GWLOG=$KH_STACK/log/gw-a.log
T=t_131016
W=$(mktemp -d)
ROGUE=
trap '[ -z "$ROGUE" ] || kill "$ROGUE" 2>/dev/null || true; rm -rf "$W"; "$KH_ROOT/tools/khstack" start "$KH_STACK" tsa >/dev/null 2>&1 || true' EXIT

records() {
    new_person
    client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=5100000 >/dev/null
    client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
    client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
    client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O"
}
# signed heads of provision_record from seq $1 on without a token
unstamped_after() {
    sql kh_gw_a "SELECT count(*) FROM $T.chain_signature s WHERE s.chain = 'provision_record'
        AND s.seq > $1 AND NOT EXISTS (SELECT 1 FROM $T.chain_timestamp t
        WHERE t.chain = s.chain AND t.seq = s.seq)"
}
signed_head() { sql kh_gw_a "SELECT coalesce(max(seq), 0) FROM $T.chain_signature WHERE chain = 'provision_record'"; }
# wait_for DESCRIPTION COMMAND...: up to 20 s for COMMAND to succeed
wait_for() {
    local d=$1
    shift
    for _ in $(seq 1 100); do "$@" && { pass "$d"; return 0; }; sleep 0.2; done
    fail "$d"
}

records >/dev/null
head_now() { sql kh_gw_a "SELECT seq FROM $T.chain_head WHERE chain = 'provision_record'"; }
H=$(head_now)
latest_stamped() {
    [ "$(sql kh_gw_a "SELECT count(*) FROM $T.chain_timestamp WHERE chain = 'provision_record' AND seq = $H")" = 1 ]
}
wait_for "the head of provision_record (seq $H) is signed and time-stamped within a few passes" latest_stamped

# the evidence of that head, verified with the openssl command alone
IFS='|' read -r sighex tokhex hashhex <<<"$(sql kh_gw_a "SELECT encode(s.signature, 'hex'),
    encode(t.token, 'hex'), encode(s.hash, 'hex') FROM $T.chain_signature s JOIN $T.chain_timestamp t
    USING (chain, seq) WHERE s.chain = 'provision_record' AND s.seq = $H")"
xxd -r -p <<<"$sighex" >"$W/head.sig"
xxd -r -p <<<"$tokhex" >"$W/head.tst"
printf 'kakehashi-chain-head\n131016\nprovision_record\n%s\n%s\n' "$H" "$hashhex" >"$W/head.txt"
openssl x509 -in "$PKI/org/131016/sign.crt" -pubkey -noout >"$W/sign.pub"
expect_contains "the head's signature verifies with the tenant's signing certificate (openssl dgst)" \
    "Verified OK" "$(openssl dgst -sha256 -verify "$W/sign.pub" -signature "$W/head.sig" "$W/head.txt" 2>&1)"
expect_contains "its token verifies over the signature against the TSA's CA (openssl ts -verify)" \
    "Verification: OK" "$(openssl ts -verify -data "$W/head.sig" -in "$W/head.tst" -token_in \
        -CAfile "$PKI/tsa-ca.crt" 2>&1)"
expect_contains "... and not against another CA (the national one)" "Verification: FAILED" \
    "$(openssl ts -verify -data "$W/head.sig" -in "$W/head.tst" -token_in \
        -CAfile "$PKI/national-ca.crt" 2>&1)"
echo tampered >>"$W/head.sig"
expect_contains "... nor over other bytes" "Verification: FAILED" \
    "$(openssl ts -verify -data "$W/head.sig" -in "$W/head.tst" -token_in -CAfile "$PKI/tsa-ca.crt" 2>&1)"
gen=$(sql kh_gw_a "SELECT extract(epoch FROM gen_time)::bigint FROM $T.chain_timestamp WHERE chain = 'provision_record' AND seq = $H")
check "the token's time is the TSA's, within a minute of now ($gen)" test $((gen - $(date +%s))) -gt -60 -a $((gen - $(date +%s))) -lt 60
expect_contains "the token is the TSA's (its policy, SHA-256 imprint)" "Policy OID: 2.999.3161.1" \
    "$(openssl ts -reply -in "$W/head.tst" -token_in -text 2>&1)"
expect_eq "the metrics: the TSA gives tokens" "1" "$(metric kakehashi_tsa_up)"
expect_contains "the connectivity check: TSA ok" '"check":"timestamps","target":"TSA","status":"ok"' \
    "$(adm --json diagnose)"
expect_contains "the gateway's role cannot remove a token" "permission denied" \
    "$(as_gw "DELETE FROM $T.chain_timestamp")"
expect_contains "... nor change one" "permission denied" \
    "$(as_gw "UPDATE $T.chain_timestamp SET gen_time = now()")"

# the TSA stopped: queries go on, heads wait
kill -TERM "$(cat "$KH_STACK/run/tsa.pid")"
for _ in $(seq 1 50); do kill -0 "$(cat "$KH_STACK/run/tsa.pid")" 2>/dev/null || break; sleep 0.1; done
before=$(signed_head)
warns0=$(grep -c 'cannot time-stamp' "$GWLOG" || true)
out=$(records)
expect_contains "with the TSA down a query is answered as before" "FOUND" "$out"
records >/dev/null
H2=$(head_now)
waiting() { [ "$(metric kakehashi_tsa_up)" = 0 ] && [ "$(metric kakehashi_tsa_heads_waiting)" -gt 0 ] && [ "$(signed_head)" -ge "$H2" ]; }
wait_for "the metrics say the TSA gives no tokens and heads wait" waiting
check "the heads signed meanwhile have no token yet" test "$(unstamped_after "$before")" -gt 0
expect_contains "the connectivity check warns, saying heads wait" \
    '"check":"timestamps","target":"TSA","status":"warn","detail":"no tokens for' "$(adm --json diagnose)"
sleep 5 # a few more passes fail
expect_eq "the outage is logged once, not at every pass" "$((warns0 + 1))" "$(grep -c 'cannot time-stamp' "$GWLOG" || true)"
check "the metrics count the failed requests" test "$(metric kakehashi_tsa_failures_total)" -gt 0

# a TSA the gateway does not trust answers at the TSA's address: no token
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/rogue.key" \
    -out "$W/rogue.crt" -subj "/O=ROGUE/CN=rogue TSA" -days 2 \
    -addext "extendedKeyUsage=critical,timeStamping" -addext "keyUsage=critical,digitalSignature" \
    >/dev/null 2>&1
chmod 600 "$W/rogue.key"
setsid "$KH_BUILD/tools/khtsa" --listen "127.0.0.1:$((KH_PORT_BASE + 15))" --cert "$W/rogue.crt" \
    --key "$W/rogue.key" 2>"$W/rogue.log" >/dev/null </dev/null &
ROGUE=$!
for _ in $(seq 1 50); do grep -q '"ready on' "$W/rogue.log" && break; sleep 0.1; done
stamped0=$(sql kh_gw_a "SELECT count(*) FROM $T.chain_timestamp")
records >/dev/null
rogue_asked() {
    adm --json diagnose | grep -q '"status":"warn","detail":"no tokens for[^"]*the time-stamp response does not verify'
}
wait_for "a TSA whose certificate tsa_ca does not trust: its tokens are refused (the check says why)" rogue_asked
expect_eq "... and none of them is stored" "$stamped0" "$(sql kh_gw_a "SELECT count(*) FROM $T.chain_timestamp")"
kill -TERM "$ROGUE"
wait "$ROGUE" 2>/dev/null || true
ROGUE=

# started again: every head signed during the outage gets its token
"$KH_ROOT/tools/khstack" start "$KH_STACK" tsa >/dev/null
caught_up() { [ "$(unstamped_after "$before")" = 0 ] && [ "$(metric kakehashi_tsa_up)" = 1 ]; }
wait_for "the TSA back: every head signed during the outage gets its token (none skipped)" caught_up
expect_eq "... and none waits" "0" "$(metric kakehashi_tsa_heads_waiting)"
expect_contains "the log says the outage is over" "time-stamps again after" "$(tail -n 200 "$GWLOG")"
n=$(sql kh_gw_a "SELECT count(*) FROM $T.chain_timestamp WHERE chain = 'provision_record' AND seq > $before")
IFS='|' read -r sighex tokhex <<<"$(sql kh_gw_a "SELECT encode(s.signature, 'hex'), encode(t.token, 'hex')
    FROM $T.chain_signature s JOIN $T.chain_timestamp t USING (chain, seq)
    WHERE s.chain = 'provision_record' AND s.seq > $before ORDER BY s.seq LIMIT 1")"
xxd -r -p <<<"$sighex" >"$W/late.sig"
xxd -r -p <<<"$tokhex" >"$W/late.tst"
expect_contains "a head stamped after the outage ($n of them) verifies too" "Verification: OK" \
    "$(openssl ts -verify -data "$W/late.sig" -in "$W/late.tst" -token_in -CAfile "$PKI/tsa-ca.crt" 2>&1)"

# khctl verify and export, as an auditor's role that may only read the records
sql kh_gw_a "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kh_it_auditor') THEN
        CREATE ROLE kh_it_auditor LOGIN;
    END IF; END \$\$; GRANT kh_auditor_131016 TO kh_it_auditor" >/dev/null
DB="host=$KH_STACK/pg/run dbname=kh_gw_a user=kh_it_auditor"
CERT=$PKI/org/131016/sign.crt
KHCTL=$KH_BUILD/tools/khctl
out=$("$KHCTL" verify --db "$DB" --tenant 131016 --cert "$CERT" --chain provision_record \
    --tsa-ca "$PKI/tsa-ca.crt" 2>&1) && rc=0 || rc=$?
expect_eq "khctl verify --tsa-ca: intact (exit 0)" "0" "$rc"
expect_contains "... every token verifies, and the latest's time is named" \
    "signed heads time-stamped, every token verifies (latest: seq" "$out"
out=$("$KHCTL" verify --db "$DB" --tenant 131016 --cert "$CERT" --chain provision_record 2>&1) || true
expect_contains "without --tsa-ca the tokens are counted, not checked" "tokens not checked: no --tsa-ca" "$out"
out=$("$KHCTL" verify --db "$DB" --tenant 131016 --cert "$CERT" --chain provision_record \
    --tsa-ca "$PKI/national-ca.crt" 2>&1) && rc=0 || rc=$?
expect_eq "against a CA that is not the TSA's: broken (exit 1)" "1" "$rc"
expect_contains "... naming the head whose token does not verify" "the time-stamp token of the signed head at seq" "$out"

"$KHCTL" export --db "$DB" --tenant 131016 --chain provision_record >"$W/export.jsonl"
expect_contains "the export carries each head's token" '"tst":"' "$(grep -m1 '"signed_head"' "$W/export.jsonl")"
out=$("$KHCTL" verify --export "$W/export.jsonl" --cert "$CERT" --tsa-ca "$PKI/tsa-ca.crt" 2>&1) && rc=0 || rc=$?
expect_eq "the export verifies with the tokens (exit 0)" "0" "$rc"
# an exported head, checked with the openssl command alone
/usr/bin/python3 - "$W/export.jsonl" "$W" <<'PY'
import json, sys
heads = [json.loads(l)["signed_head"] for l in open(sys.argv[1]) if l.startswith('{"signed_head"')]
h = [x for x in heads if "tst" in x][-1]
open(sys.argv[2] + "/x.sig", "wb").write(bytes.fromhex(h["signature"]))
open(sys.argv[2] + "/x.tst", "wb").write(bytes.fromhex(h["tst"]))
open(sys.argv[2] + "/x.txt", "w").write("kakehashi-chain-head\n131016\nprovision_record\n%d\n%s\n" % (h["seq"], h["hash"]))
PY
expect_contains "an exported head's signature verifies with openssl dgst alone" "Verified OK" \
    "$(openssl dgst -sha256 -verify "$W/sign.pub" -signature "$W/x.sig" "$W/x.txt" 2>&1)"
expect_contains "... and its token with openssl ts -verify alone" "Verification: OK" \
    "$(openssl ts -verify -data "$W/x.sig" -in "$W/x.tst" -token_in -CAfile "$PKI/tsa-ca.crt" 2>&1)"
# a token altered in the export: broken; in the database: broken too
/usr/bin/python3 - "$W/export.jsonl" "$W/forged.jsonl" <<'PY'
import sys
out, done = [], False
for l in open(sys.argv[1]):
    if not done and '"tst":"' in l:
        i = l.index('"tst":"') + 7 + 200
        l = l[:i] + ("0" if l[i] != "0" else "1") + l[i + 1:]
        done = True
    out.append(l)
open(sys.argv[2], "w").write("".join(out))
PY
out=$("$KHCTL" verify --export "$W/forged.jsonl" --cert "$CERT" --tsa-ca "$PKI/tsa-ca.crt" 2>&1) && rc=0 || rc=$?
expect_eq "a token altered in an export: broken (exit 1)" "1" "$rc"
expect_contains "... forged or altered token" "does not verify with the TSA's CA" "$out"
# a signed head moved after the rows would escape the checks: refused
{ grep -v '"signed_head"' "$W/export.jsonl"; grep -m1 '"signed_head"' "$W/export.jsonl"; } >"$W/moved.jsonl"
out=$("$KHCTL" verify --export "$W/moved.jsonl" --cert "$CERT" --tsa-ca "$PKI/tsa-ca.crt" 2>&1) && rc=0 || rc=$?
expect_eq "an export with a signed head after the rows: refused (exit 2)" "2" "$rc"
expect_contains "... saying where" "a signed head after the section's rows" "$out"
s1=$(sql kh_gw_a "SELECT min(seq) FROM $T.chain_timestamp WHERE chain = 'provision_record'")
# the token's last byte is the last of the TSA's ECDSA signature: flipped, it
# never verifies (a byte in the middle may be one of the embedded certificate
# the signature does not cover, or already hold the value written)
sql kh_gw_a "UPDATE $T.chain_timestamp
    SET token = set_byte(token, length(token) - 1, get_byte(token, length(token) - 1) # 1)
    WHERE chain = 'provision_record' AND seq = $s1" >/dev/null
out=$("$KHCTL" verify --db "$DB" --tenant 131016 --cert "$CERT" --chain provision_record \
    --tsa-ca "$PKI/tsa-ca.crt" 2>&1) && rc=0 || rc=$?
expect_eq "a token altered in the database (as its superuser): broken (exit 1)" "1" "$rc"
expect_contains "... at that head" "the time-stamp token of the signed head at seq $s1 does not verify" "$out"
sql kh_gw_a "DELETE FROM $T.chain_timestamp WHERE chain = 'provision_record' AND seq = $s1" >/dev/null
finish
