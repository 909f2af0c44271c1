# Restore drill (issue 12), on a stack of its own (ports KH_PORT_BASE+600...):
# WAL archiving and a full backup with pgBackRest (tools/khbackup), then
# work after the backup: a registration and a query answered before the
# point in time T, a registration and a query after it. The key material is
# backed up encrypted to a recovery certificate. Then the disaster: the stack
# stops, its cluster and its keys are gone. The keys come back from their
# encrypted file, the cluster is restored to T into a new data folder, and
# the router and gateways start on it unchanged: every tenant's record chains
# verify from the restored data, the work before T is there and the work after
# T is not, and the answers read by handle and asked again are identical to
# the ones given before.
. "$(dirname "$0")/lib.sh"
D=$KH_BUILD/it-rs
RB=$((KH_PORT_BASE + 600))
rk() { KH_PORT_BASE=$RB "$KH_ROOT/tools/khstack" "$@"; }
kb() { KH_PORT_BASE=$RB "$KH_ROOT/tools/khbackup" "$@"; }
rsql() { rk psql "$D" "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
rcl() { rk client "$D" "$@" 2>&1; }
cleanup() { rk down "$D" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
rm -rf "$D"
if ! rk up "$D" >"$KH_BUILD/it-rs.up.log" 2>&1; then
    fail "the stack came up (log $KH_BUILD/it-rs.up.log): $(tail -3 "$KH_BUILD/it-rs.up.log")"
    finish
fi

new_person
rcl 131016 tax register "$LOCAL_C" TK001 20250101 fiscal_year=2025 total_income=4100000 >/dev/null
rcl 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
rcl 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
ask() { rcl 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O"; }
handle_of() { grep -o 'handle=[0-9a-f]\{32\}' <<<"$1" | head -1 | cut -d= -f2; }
values_of() { grep -v '^OK ' <<<"$1"; } # the answer's lines after its first one
h0=$(handle_of "$(ask)")

out=$(kb setup "$D" 2>&1)
expect_contains "WAL archiving is set up" "archived into $D/backup/repo" "$out"
expect_eq "archive_mode is on" on "$(rsql postgres "SHOW archive_mode")"
out=$(kb backup "$D" full 2>&1)
expect_contains "a full backup is taken" "full backup:" "$out"
check "the repository is encrypted" grep -q "cipher: aes-256-cbc" <<<"$out"

# after the backup, before T
rcl 131016 tax register "$LOCAL_C" TK001 20250401 fiscal_year=2025 total_income=4200000 >/dev/null
before=$(ask)
h1=$(handle_of "$before")
expect_contains "a query is answered before T" "OK FOUND handle=$h1" "$before"
expect_contains "... with the value registered before T" "TK001.total_income=4200000" "$before"
status1=$(rcl 271004 childallowance status "$h1")
# and one to gw-b, so that the pension organisation's chains have rows too
rcl N00001 pension register "$LOCAL_N" TK008 20250101 pension_no=0000012345 pension_type=11 \
    entitlement_date=20200101 annual_amount=780000 payment_status=1 >/dev/null
rcl N00001 pension linkcode "$LOCAL_N" "$RESIDENT" >/dev/null
rcl 271004 welfare linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
expect_contains "a query to gw-b is answered before T" "OK FOUND" \
    "$(rcl 271004 welfare query O-WEL-001 JT003 N00001 TK008 "$LOCAL_O")"
sleep 1.1
T=$(rsql postgres "SELECT to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') || to_char(clock_timestamp(), 'OF')")
sleep 1.1
# after T: all of this must be gone after the restore
rcl 131016 tax register "$LOCAL_C" TK001 20250701 fiscal_year=2025 total_income=9990000 >/dev/null
h2=$(handle_of "$(ask)")
check "a query is answered after T" test -n "$h2"
check "every commit so far is archived" kb check "$D"

# the key material, encrypted to a recovery certificate
kb recovery-key "$D.recovery" >/dev/null
out=$(kb keys "$D" "$D.keys" --to "$D.recovery/recovery.crt")
expect_contains "the keys are backed up" "OK $D.keys sha256=" "$out"
sums() { (cd "$1" && find pki operators router.secret backup/pgbackrest.conf -type f -print0 | sort -z | xargs -0 sha256sum); }
keys_before=$(sums "$D")
check "no private key is in the clear in the backup" \
    eval "! grep -qa 'PRIVATE KEY' '$D.keys'"
cp "$D.keys" "$D.keys.bad"
at=$(($(stat -c %s "$D.keys") - 20)) # a byte of the ciphertext, its bits flipped
byte=$(od -An -tu1 -j "$at" -N1 "$D.keys" | tr -d ' ')
printf "\\$(printf %03o $((byte ^ 255)))" | dd of="$D.keys.bad" bs=1 seek="$at" conv=notrunc 2>/dev/null
check "... a damaged copy differs from it" eval "! cmp -s '$D.keys' '$D.keys.bad'"
out=$(kb keys-restore "$D.keys.bad" "$D.bad" --key "$D.recovery/recovery.key" \
    --cert "$D.recovery/recovery.crt" 2>&1) || true
expect_contains "a damaged key backup is refused" "does not open" "$out"
check "... and nothing of it is unpacked" test ! -e "$D.bad/pki"

# the disaster: everything stops, the cluster and the keys are lost
rk down "$D" >/dev/null
rm -rf "$D/pg/data" "$D/pki" "$D/operators" "$D/router.secret" "$D/backup/pgbackrest.conf"
kb keys-restore "$D.keys" "$D" --key "$D.recovery/recovery.key" --cert "$D.recovery/recovery.crt" >/dev/null
expect_eq "the keys, the link-code key and the repository's passphrase are restored byte for byte" \
    "$keys_before" "$(sums "$D")"
out=$(kb restore "$D" --time "$T" 2>&1)
expect_contains "the cluster is restored to T on a new timeline" "timeline 2" "$out"
for p in router gw-a gw-b; do rk start "$D" "$p" >/dev/null; done

expect_eq "the registrations before T are there, the one after is not" "4100000 4200000" \
    "$(rsql kh_gw_a "SELECT string_agg(data->>'total_income', ' ' ORDER BY effective_from)
                     FROM t_131016.replica WHERE local_id = '$LOCAL_C'")"
expect_eq "the queries before T are answered, the one after T does not exist" \
    "answered answered absent" \
    "$(rsql kh_gw_a "SELECT string_agg(coalesce(q.state, 'absent'), ' ' ORDER BY h.n)
                     FROM unnest(ARRAY['$h0', '$h1', '$h2']) WITH ORDINALITY h(id, n)
                     LEFT JOIN t_271004.query q ON q.msg_id = h.id")"
expect_eq "the answer read by handle is identical" "$status1" "$(rcl 271004 childallowance status "$h1")"
after=$(ask)
expect_contains "a query is answered on the restored platform" "OK FOUND handle=" "$after"
expect_eq "... with the same values as before" "$(values_of "$before")" "$(values_of "$after")"

# every tenant's record chains, from the restored data
for t in 131016:kh_gw_a 271004:kh_gw_a N00001:kh_gw_b 130001:kh_gw_b S00001:kh_gw_b2; do
    org=${t%%:*} db=${t#*:}
    out=$("$KH_BUILD/tools/khctl" verify --db "host=$D/pg/run dbname=$db user=khadmin" --tenant "$org" \
        --cert "$D/pki/org/$org/sign.crt" 2>&1) && rc=0 || rc=$?
    expect_eq "the record chains of $org verify from the restored data ($(grep -c 'rows intact' <<<"$out") of 3 with rows)" 0 "$rc"
    case $org in 131016 | 271004 | N00001)
        expect_contains "... its provision records among them" "chain provision_record: " "$(grep intact <<<"$out")" ;;
    esac
done
check "the chains are not empty: Chiyoda's provision records are there" \
    test "$(rsql kh_gw_a "SELECT count(*) FROM t_131016.provision_record")" -ge 3
check "no sanitizer report in the restored stack's logs" \
    eval "! grep -l 'ERROR: AddressSanitizer\|runtime error:' '$D'/log/*.log"
rm -rf "$D.keys" "$D.keys.bad" "$D.bad" "$D.recovery"
finish
