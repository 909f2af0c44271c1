# Attacks on the envelope (DESIGN.md, "Wire protocol"), forged with
# tools/khforge exactly as a gateway or the router would build them and then
# broken on purpose: a tampered header or payload, a spliced payload, replays
# (at the router and at the answering gateway), expired messages, a payload
# signed under another CA, TLS certificates from another CA, a gateway on the
# peer API, and a header signed by the wrong organisation. Each is refused with
# its documented code, and none of them leads to anything being provided.
. "$(dirname "$0")/lib.sh"
new_person
T=$(mktemp -d "${TMPDIR:-/tmp}/kh-it-attacks.XXXXXX")
trap 'rm -rf "$T"' EXIT
ROUTER=127.0.0.1:$KH_PORT_BASE
A_BIZ=127.0.0.1:$((KH_PORT_BASE + 11))
A_PEER=127.0.0.1:$((KH_PORT_BASE + 12))
FORGE=$KH_BUILD/tools/khforge

out=$(client 131016 tax register "$LOCAL_C" TK001 20250601 fiscal_year=2025 total_income=5310000)
expect_contains "Chiyoda registers local tax information" "OK registered version" "$out"
out=$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
expect_contains "Chiyoda obtains a link code" "OK link code acquired" "$out"
out=$(client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT")
expect_contains "Osaka obtains a link code" "OK link code acquired" "$out"
LINK_O=$(sql kh_gw_a "SELECT link_code FROM t_271004.linkcode WHERE local_id='$LOCAL_O'")
LINK_C=$(sql kh_gw_a "SELECT link_code FROM t_131016.linkcode WHERE local_id='$LOCAL_C'")
check "both link codes are stored" test -n "$LINK_O" -a -n "$LINK_C"

# forge ARGS...: a query from Osaka to Chiyoda as Osaka's gateway would send it
# to the router; ARGS override or add options. Prints khforge's output and
# "EXIT n".
forge() {
    local rc=0 o
    o=$("$FORGE" --pki "$PKI" --to "$ROUTER" --as gw-a --sender 271004 --recipient 131016 \
        --procedure JT001 --items TK001 --subject "$LINK_O" --staff O-CA-001 "$@" 2>&1) || rc=$?
    printf '%s\nEXIT %d\n' "$o" "$rc"
}
# forge_direct ARGS...: the same query as the router forwards it to gw-a's
# peer API: router's TLS identity, header signed by the router, and the
# subject translated to Chiyoda's link code.
forge_direct() {
    forge --to "$A_PEER" --as router --sign-as ROUTER --subject "$LINK_C" "$@"
}

# a. control: a correct forged query is answered
out=$(forge --save "$T/valid.envelope")
expect_contains "a. a correctly forged query is answered" "SEND 1 HTTP 200 ANSWER FOUND" "$out"
expect_contains "a. khforge exits 0" "EXIT 0" "$out"

# The baseline for "nothing provided": taken after the control query. Only the
# two first sends of the replay cases below are answered (PROV_OK counts them).
pc=$(provided_count kh_gw_a 131016)
ra=$(router_count answered)
PROV_OK=0
ROUTER_OK=0

# b. header altered after signing
out=$(forge --tamper header)
expect_contains "b. tampered header: the router refuses KH-4001" "SEND 1 HTTP 403 KH-4001" "$out"

# c. payload altered after sealing
out=$(forge --tamper payload)
expect_contains "c. tampered payload: the answering gateway refuses KH-4002 (relayed)" \
    "SEND 1 HTTP 403 KH-4002" "$out"

# d. the payload of the control query under a fresh, correctly signed header
out=$(forge --splice "$T/valid.envelope")
expect_contains "d. spliced payload: refused KH-4005" "SEND 1 HTTP 403 KH-4005" "$out"

# e. replay at the router, then at the answering gateway itself
# via the router: the same bytes again are a retransmission (the asking
# gateway retries after a lost reply): forwarded again and answered with the
# same answer; another payload under the same message id is a replay
out=$(forge --times 2 --save "$T/routed.envelope")
expect_contains "e. via the router: first send answered" "SEND 1 HTTP 200 ANSWER FOUND" "$out"
expect_contains "e. via the router: the same bytes again get the same answer" "SEND 2 HTTP 200 ANSWER FOUND" "$out"
PROV_OK=$((PROV_OK + 1)) ROUTER_OK=$((ROUTER_OK + 2))
out=$(forge --reuse-id "$T/routed.envelope")
expect_contains "e. another payload under a seen id via the router: refused KH-4006" "SEND 1 HTTP 409 KH-4006" "$out"
# at gw-a itself: the same envelope again is a retransmission (the router
# lost the reply, say): the same answer, no second record; another payload
# under the same message id is a replay
before=$(provided_count kh_gw_a 131016)
out=$(forge_direct --times 2 --save "$T/direct.envelope")
expect_contains "e. gw-a's peer API: first send answered" "SEND 1 HTTP 200 ANSWER FOUND" "$out"
expect_contains "e. gw-a's peer API: the same bytes again get the same answer" "SEND 2 HTTP 200 ANSWER FOUND" "$out"
expect_eq "e. and only one provision record" $((before + 1)) "$(provided_count kh_gw_a 131016)"
PROV_OK=$((PROV_OK + 1))
out=$(forge_direct --reuse-id "$T/direct.envelope")
expect_contains "e. another payload under a seen id at gw-a: refused KH-4006" "SEND 1 HTTP 409 KH-4006" "$out"

# f. expired (correctly signed)
out=$(forge --expired)
expect_contains "f. expired: the router refuses KH-4007" "SEND 1 HTTP 403 KH-4007" "$out"
out=$(forge_direct --expired)
expect_contains "f. expired: gw-a's peer API refuses KH-4007" "SEND 1 HTTP 403 KH-4007" "$out"

# g. inner SignedData by a certificate of another CA (claiming O=271004)
out=$(forge --payload-signer rogue)
expect_contains "g. payload signed under a rogue CA: refused KH-4004" "SEND 1 HTTP 403 KH-4004" "$out"

# h. TLS client certificates from another CA, and a gateway on the peer API
rc=0
out=$("$KH_BUILD/tools/khclient" -g "$A_BIZ" --cert "$PKI/rogue/client.crt" \
      --key "$PKI/rogue/client.key" --ca "$PKI/national-ca.crt" \
      query O-CA-001 JT001 131016 TK001 "$LOCAL_C" 2>&1) || rc=$?
expect_eq "h. rogue business client certificate: khclient exits 4" 4 "$rc"
expect_contains "h. rogue business client certificate: TLS refused" "FAILED" "$out"
rc=0
out=$("$KH_BUILD/tools/khclient" -g "$A_BIZ" --gateway-name gw-b \
      --cert "$PKI/org/271004/systems/childallowance.crt" \
      --key "$PKI/org/271004/systems/childallowance.key" --ca "$PKI/national-ca.crt" \
      query O-CA-001 JT001 131016 TK001 "$LOCAL_O" 2>&1) || rc=$?
expect_eq "h. a business system refuses a gateway that is not the one it expects" 4 "$rc"
rc=0
out=$("$KH_BUILD/tools/khclient" -g "127.0.0.1:$KH_PORT_BASE" \
      --cert "$PKI/org/271004/systems/childallowance.crt" \
      --key "$PKI/org/271004/systems/childallowance.key" --ca "$PKI/national-ca.crt" \
      linkcode "$LOCAL_O" "$RESIDENT" 2>&1) || rc=$?
expect_eq "h. a business system never talks to a non-gateway (the router) even with a valid CA" 4 "$rc"
out=$(forge --as rogue)
expect_contains "h. rogue TLS certificate at the router: TLS refused" "SEND 1 FAILED" "$out"
expect_contains "h. rogue TLS certificate at the router: khforge exits 4" "EXIT 4" "$out"
out=$(forge_direct --as gw-a)
expect_contains "h. a gateway on gw-a's peer API: refused KH-4010" "SEND 1 HTTP 403 KH-4010" "$out"

# i. header signed by another organisation than the sender
out=$(forge --sign-as 131016)
expect_contains "i. header signed by the wrong organisation: refused KH-4001" \
    "SEND 1 HTTP 403 KH-4001" "$out"

expect_eq "nothing but the answered sends was provided by Chiyoda" $((pc + PROV_OK)) \
    "$(provided_count kh_gw_a 131016)"
expect_eq "the router recorded only the answered sends as answered" $((ra + ROUTER_OK)) \
    "$(router_count answered)"
finish
