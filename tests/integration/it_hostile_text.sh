# Strings that are not text (issue 11, class 1): protobuf-c hands a string
# field to C cut at its first NUL, and checks nothing about UTF-8. Every
# protobuf body is now unpacked by kh_pb_unpack (gateway/core/khpb.c), which
# refuses a string field holding a NUL or invalid UTF-8, at any depth, with
# KH-1002 naming the field; nothing is stored. The bodies here are made by
# hand (protobuf's wire form with printf) and posted as they are.
. "$(dirname "$0")/lib.sh"
new_person
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
post() { client 131016 tax post "$1" "$2"; }
# str FIELD-NUMBER BYTES(printf format): one length-delimited field
str() {
    local bytes
    bytes=$(printf "$2" | wc -c)
    printf "\\x$(printf %02x $(($1 << 3 | 2)))\\x$(printf %02x "$bytes")"
    printf "$2"
}

# a control: the same hand-made LinkCodeRequest, well formed, is obeyed
{ str 1 "$LOCAL_C"; str 2 "$RESIDENT"; } >"$dir/lc_ok"
out=$(post /v1/linkcode "$dir/lc_ok")
expect_contains "a hand-made LinkCodeRequest is understood" "OK HTTP 200" "$out"
check "and its link code stored" \
    test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.linkcode WHERE local_id = '$LOCAL_C'")" = 1

# a NUL inside local_id: "555" must not be what is obeyed
nul_id="55${LOCAL_N:2:3}"
{ str 1 "$nul_id\\x00${LOCAL_N:5}"; str 2 "29${RESIDENT:2}"; } >"$dir/lc_nul"
out=$(post /v1/linkcode "$dir/lc_nul")
expect_contains "a local_id with a NUL inside is refused" "REFUSED KH-1002" "$out"
expect_contains "naming the field and the NUL" "field local_id of kh.LinkCodeRequest: a NUL byte" \
    "$out"
expect_contains "as a client error" "(HTTP 400)" "$out"
check "nothing was stored under the cut local_id" \
    test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.linkcode WHERE local_id = '$nul_id'")" = 0

# the same in a reference copy: the top-level local_id, an item code that is
# not UTF-8, and a NUL or bad UTF-8 inside a nested Field's value
field() { str 1 "$1" >"$dir/f"; str 2 "$2" >>"$dir/f"; str 5 "$(sed 's/\\/\\\\/g; s/%/%%/g' "$dir/f" |
    od -An -tx1 -v | tr -d ' \n' | sed 's/../\\x&/g')"; }
register_body() { # LOCAL_ID ITEM FIELD_VALUE
    str 1 "$1"
    str 2 "$2"
    str 3 "20260101"
    field fiscal_year 2026
    field total_income "$3"
}
register_body "${LOCAL_C:0:3}\\x00${LOCAL_C:3}" TK001 5100000 >"$dir/r_nul"
register_body "$LOCAL_C" 'TK\xc3\x28' 5100000 >"$dir/r_item"
register_body "$LOCAL_C" TK001 '51\x0000' >"$dir/r_val_nul"
register_body "$LOCAL_C" TK001 '51\xff00' >"$dir/r_val_utf8"
register_body "$LOCAL_C" TK001 4100000 >"$dir/r_ok"
before=$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica")
for case in "r_nul:local_id of kh.RegisterRequest: a NUL byte" \
    "r_item:item_code of kh.RegisterRequest: not valid UTF-8" \
    "r_val_nul:value of kh.Field: a NUL byte" \
    "r_val_utf8:value of kh.Field: not valid UTF-8"; do
    f=${case%%:*}
    out=$(post /v1/replica "$dir/$f")
    expect_contains "register $f: refused with KH-1002" "REFUSED KH-1002" "$out"
    expect_contains "register $f: naming the field" "field ${case#*:}" "$out"
done
check "none of them stored a version" \
    test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica")" = "$before"
out=$(post /v1/replica "$dir/r_ok")
expect_contains "the well-formed hand-made registration is obeyed" "OK HTTP 200" "$out"
check "and stored" test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.replica")" = $((before + 1))

# Paths are matched as sent (issue 11, class 4): libevent decoded them first,
# so "/v1/linkcode%00/../x" was served as /v1/linkcode.
new_person
{ str 1 "$LOCAL_C"; str 2 "$RESIDENT"; } >"$dir/lc_ok"
for path in '/v1/linkcode%00/../x' '/v1/linkcode%00' '/v1/link%63ode' '/v1//linkcode'; do
    out=$(client 131016 tax post "$path" "$dir/lc_ok")
    expect_contains "$path is no endpoint" "REFUSED KH-1006" "$out"
done
check "and none of them was obeyed" \
    test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.linkcode WHERE local_id = '$LOCAL_C'")" = 0
out=$(client 131016 tax post '/v1/linkcode?x=1' "$dir/lc_ok")
expect_contains "a query string after the exact path is no harm" "OK HTTP 200" "$out"

# A client's mistake is a 4xx with its own code, never "database unavailable"
# (issue 11, class 2): a second local ID for a resident who already has a
# link code here hit the link code's unique constraint and came back as 503.
new_person
out=$(client 131016 tax linkcode "$LOCAL_C" "$RESIDENT")
expect_contains "a resident's first local ID gets its link code" "OK" "$out"
out=$(client 131016 tax linkcode "$LOCAL_N" "$RESIDENT")
expect_contains "a second local ID for the same resident is refused as a conflict" \
    "REFUSED KH-3006: this resident already has a link code here under another local ID (HTTP 409)" \
    "$out"
check "the first mapping stays, the second is not stored" test \
    "$(sql kh_gw_a "SELECT string_agg(local_id, ',') FROM t_131016.linkcode
                    WHERE local_id IN ('$LOCAL_C', '$LOCAL_N')")" = "$LOCAL_C"

# The body's type (issue 11, class 3): the protobuf listeners read protobuf only.
new_person
{ str 1 "$LOCAL_C"; str 2 "$RESIDENT"; } >"$dir/lc_ok"
out=$(client 131016 tax post /v1/linkcode "$dir/lc_ok" text/plain)
expect_contains "a protobuf body labelled text/plain is refused" \
    "REFUSED KH-1001: expected POST with an application/x-protobuf body of at most" "$out"
expect_contains "saying which type it must be" "Content-Type must be application/x-protobuf" "$out"
check "and not obeyed" \
    test "$(sql kh_gw_a "SELECT count(*) FROM t_131016.linkcode WHERE local_id = '$LOCAL_C'")" = 0
out=$(client 131016 tax post /v1/linkcode "$dir/lc_ok" "Application/X-Protobuf; v=1")
expect_contains "the type is compared without case, parameters allowed" "OK HTTP 200" "$out"
finish
