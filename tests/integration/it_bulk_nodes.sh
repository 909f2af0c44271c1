# Bulk uploads outlive their node (issue 12): two nodes of gw-a (the same
# tenants, the same database); an upload lives in the tenant's schema
# (sql/tenant/014), not in a process.
# - One upload's parts go to node 1, node 2, node 1; a part sent twice is
#   refused by the other node (the order is the database's); a commit with
#   another SHA-256 is refused and changes nothing; the commit through node 2
#   is loaded, and its status read through node 1.
# - A rejected file's report is paged through the other node.
# - The node loading an upload is killed (-9): the other node finishes it
#   once the lease has run out: applied exactly once, attempt 2,
#   its parts gone. (It kills whichever node holds the load.)
# - A load started three times without an outcome ends FAILED.
. "$(dirname "$0")/lib.sh"
K=$KH_ROOT/tools/khstack
GEN=$KH_BUILD/tools/khgen
tmp=$(mktemp -d)
cleanup() {
    [ ! -f "$KH_STACK/run/gw-a-n2.pid" ] || kill -TERM "$(cat "$KH_STACK/run/gw-a-n2.pid")" 2>/dev/null || true
    rm -f "$KH_STACK/run/gw-a-n2.pid"
    rm -rf "$tmp"
}
trap cleanup EXIT

N2=$("$K" node "$KH_STACK" gw-a 2)
node_of() { grep -o '"ready: [^"]*node [^"]*' "$1" | tail -1 | sed 's/.*node //'; }
NODE1=$(node_of "$KH_STACK/log/gw-a.log")
NODE2=$(node_of "$KH_STACK/log/gw-a-n2.log")
check "two nodes of gw-a" test -n "$NODE1" -a -n "$NODE2" -a "$NODE1" != "$NODE2"

# post NODE PATH REQUEST RESPONSE: one business API call of Chiyoda's tax
# system to node 1 or 2; prints khclient's line (OK or REFUSED KH-nnnn ...)
post() {
    if [ "$1" = 1 ]; then
        "$K" client "$KH_STACK" 131016 tax post "$2" "$3" application/x-protobuf "$4" 2>&1 || true
        return 0
    fi
    "$KH_BUILD/tools/khclient" -g "127.0.0.1:$N2" --gateway-name gw-a \
        --cert "$PKI/org/131016/systems/tax.crt" --key "$PKI/org/131016/systems/tax.key" \
        --ca "$PKI/national-ca.crt" post "$2" "$3" application/x-protobuf "$4" 2>&1 || true
}
# pb OUT KIND ARGS: a request message (kakehashi.proto) written to OUT
#   open ITEM MODE AS_OF NAME | part ID SEQ FILE OFFSET LENGTH | commit ID SHA | status ID [OFFSET]
pb() {
    python3 - "$@" <<'PY'
import sys
def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
def ld(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data
def vi(num, n):
    return varint(num << 3) + varint(n)
out, kind, a = sys.argv[1], sys.argv[2], sys.argv[3:]
if kind == "open":
    m = b"".join(ld(i + 1, s.encode()) for i, s in enumerate(a))
elif kind == "part":
    with open(a[2], "rb") as f:
        f.seek(int(a[3]))
        data = f.read(int(a[4]))
    m = ld(1, a[0].encode()) + vi(2, int(a[1])) + ld(3, data)
elif kind == "commit":
    m = ld(1, a[0].encode()) + ld(2, a[1].encode())
else:
    m = ld(1, a[0].encode()) + (vi(2, int(a[1])) if len(a) > 1 else b"")
open(out, "wb").write(m)
PY
}
replica_count() { sql kh_gw_a "SELECT count(*) FROM t_131016.replica"; }
up() { sql kh_gw_a "SELECT $2 FROM t_131016.bulk_upload WHERE upload_id = '$1'"; }
wait_state() { # wait_state ID STATE: up to 60 s
    for _ in $(seq 1 600); do
        [ "$(up "$1" state)" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# --- one upload through both nodes ------------------------------------------
"$GEN" residents --count 3000 --seed 91 --items TK001 --as-of 20260801 --out "$tmp/a" >/dev/null
# (diff: a full snapshot would also add a deletion for everyone absent from it)
f=$tmp/a/TK001_full_20260801.csv
size=$(stat -c %s "$f")
rec=$(($(wc -l <"$f") - 1))
third=$((size / 3))
pb "$tmp/open" open TK001 diff 20260801 nodes.csv
out=$(post 2 /v1/bulk/open "$tmp/open" "$tmp/resp")
id=$(grep -ao '[0-9a-f]\{32\}' "$tmp/resp" | head -n 1 || true)
check "node 2 opens an upload ($out)" test -n "$id"
expect_eq "it is in the tenant's schema, receiving" "RECEIVING" "$(up "$id" state)"
pb "$tmp/p1" part "$id" 1 "$f" 0 "$third"
pb "$tmp/p2" part "$id" 2 "$f" "$third" "$third"
pb "$tmp/p3" part "$id" 3 "$f" $((2 * third)) $((size - 2 * third))
expect_contains "part 1 through node 1" OK "$(post 1 /v1/bulk/part "$tmp/p1" "$tmp/r")"
expect_contains "part 2 through node 2" OK "$(post 2 /v1/bulk/part "$tmp/p2" "$tmp/r")"
out=$(post 1 /v1/bulk/part "$tmp/p2" "$tmp/r")
expect_contains "part 2 again, through node 1: out of sequence" "REFUSED KH-1121" "$out"
expect_contains "... naming the part expected" "expected 3" "$out"
expect_contains "part 3 through node 1" OK "$(post 1 /v1/bulk/part "$tmp/p3" "$tmp/r")"
expect_eq "three parts stored, the whole file's bytes" "3 $size" \
    "$(sql kh_gw_a "SELECT count(*) || ' ' || sum(length(data)) FROM t_131016.bulk_upload_part WHERE upload_id = '$id'")"
pb "$tmp/c0" commit "$id" "$(printf '%064d' 0)"
expect_contains "a commit with another SHA-256 is refused" "REFUSED KH-1122" \
    "$(post 2 /v1/bulk/commit "$tmp/c0" "$tmp/r")"
expect_eq "... and changes nothing" "RECEIVING" "$(up "$id" state)"
before=$(replica_count)
pb "$tmp/c" commit "$id" "$(sha256sum "$f" | cut -d' ' -f1)"
expect_contains "the commit through node 2" OK "$(post 2 /v1/bulk/commit "$tmp/c" "$tmp/r")"
check "the upload is loaded" wait_state "$id" APPLIED
pb "$tmp/s" status "$id"
post 1 /v1/bulk/status "$tmp/s" "$tmp/st" >/dev/null
check "its status reads APPLIED through node 1" grep -aq APPLIED "$tmp/st"
expect_eq "its records are in replica" $((before + rec)) "$(replica_count)"
expect_eq "its parts are gone" 0 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.bulk_upload_part WHERE upload_id = '$id'")"

# --- a rejected file's report through the other node ------------------------
printf 'not,the,header\r\n1,2,3\r\n' >"$tmp/bad.csv"
# send_whole NODE FILE: open (TK001 diff), one part, commit; prints the id
send_whole() {
    local u
    pb "$tmp/open" open TK001 diff 20260801 "$(basename "$2")"
    post "$1" /v1/bulk/open "$tmp/open" "$tmp/resp" >/dev/null
    u=$(grep -ao '[0-9a-f]\{32\}' "$tmp/resp" | head -n 1 || true)
    pb "$tmp/p1" part "$u" 1 "$2" 0 "$(stat -c %s "$2")"
    post "$1" /v1/bulk/part "$tmp/p1" "$tmp/r" >/dev/null
    pb "$tmp/c" commit "$u" "$(sha256sum "$2" | cut -d' ' -f1)"
    post "$1" /v1/bulk/commit "$tmp/c" "$tmp/r" >/dev/null
    echo "$u"
}
bid=$(send_whole 1 "$tmp/bad.csv")
check "a broken file committed through node 1 is rejected" wait_state "$bid" REJECTED
pb "$tmp/s" status "$bid"
post 2 /v1/bulk/status "$tmp/s" "$tmp/st" >/dev/null
check "node 2 reads its report" grep -aq "KH-1103" "$tmp/st"
full=$(sql kh_gw_a "SELECT encode(string_agg(data, ''::bytea ORDER BY seq), 'hex') FROM t_131016.bulk_upload_report WHERE upload_id = '$bid'")
expect_eq "its size is the stored report's" "$(up "$bid" report_size)" $((${#full} / 2))

# --- a long report, paged -----------------------------------------------------
python3 - "$f" "$tmp/long.csv" <<'PY'
import sys
head = open(sys.argv[1], encoding="utf-8").readline()
with open(sys.argv[2], "w", encoding="utf-8", newline="") as out:
    out.write(head)
    for i in range(12000):  # each a record with the wrong number of columns
        out.write("L%07d,20260801,x\r\n" % i)
PY
lid=$(send_whole 2 "$tmp/long.csv")
check "a file with 12000 bad records is rejected" wait_state "$lid" REJECTED
sql kh_gw_a "SELECT encode(string_agg(data, ''::bytea ORDER BY seq), 'hex') FROM t_131016.bulk_upload_report WHERE upload_id = '$lid'" >"$tmp/full.hex"
rsize=$(up "$lid" report_size)
check "its report spans more than a page of status ($rsize bytes)" test "$rsize" -gt 600000
for off in 0 70000 $((rsize - 1000)) "$rsize"; do
    pb "$tmp/s" status "$lid" "$off"
    post 1 /v1/bulk/status "$tmp/s" "$tmp/st3" >/dev/null
    expect_eq "node 1 pages the report from offset $off: the next $((rsize - off < 524288 ? rsize - off : 524288)) bytes exactly" True \
        "$(python3 -c 'import sys
d = open(sys.argv[1], "rb").read()
full, off = bytes.fromhex(open(sys.argv[2]).read().strip()), int(sys.argv[3])
def varint(i):
    n = s = 0
    while True:
        b = d[i]; n |= (b & 0x7F) << s; i += 1; s += 7
        if b < 0x80: return n, i
i, report = 0, b""
while i < len(d):  # the BulkStatus fields; 14 is the report page
    key, i = varint(i)
    if key & 7 == 0:
        _, i = varint(i)
    else:
        n, i = varint(i)
        if key >> 3 == 14: report = d[i:i + n]
        i += n
print(len(full) > 600000 and report == full[off:off + 524288])' \
            "$tmp/st3" "$tmp/full.hex" "$off")"
done

# --- the node loading an upload dies ----------------------------------------
"$GEN" residents --count 300000 --seed 92 --items TK001 --as-of 20260802 --out "$tmp/k" >/dev/null
big=$tmp/k/TK001_full_20260802.csv
bigrec=$(($(wc -l <"$big") - 1))
before=$(replica_count)
"$KH_BUILD/tools/khclient" -g "127.0.0.1:$N2" --gateway-name gw-a --timeout-ms 120000 \
    --cert "$PKI/org/131016/systems/tax.crt" --key "$PKI/org/131016/systems/tax.key" \
    --ca "$PKI/national-ca.crt" bulk TK001 diff 20260802 "$big" >"$tmp/k.out" 2>"$tmp/k.err" &
cpid=$!
kid=""
holder=""
for _ in $(seq 1 1200); do
    kid=$(grep -o 'upload [0-9a-f]\{32\} opened' "$tmp/k.err" | cut -d' ' -f2 || true)
    if [ -n "$kid" ]; then
        holder=$(up "$kid" "CASE WHEN state = 'LOADING' THEN node END")
        [ -n "$holder" ] && break
    fi
    sleep 0.05
done
check "a node is loading the upload" test -n "$holder"
# kill the node that holds it (usually node 2, which took the commit)
if [ "$holder" = "$NODE1" ]; then victim=gw-a other=gw-a-n2; else victim=gw-a-n2 other=gw-a; fi
kill -9 "$(cat "$KH_STACK/run/$victim.pid")"
wait "$cpid" || true
expect_eq "its node killed: nothing of the file applied yet" "$before" "$(replica_count)"
wait_long() { # up to 180 s: a lease (15 s), a tick (5 s) and a load from the start
    for _ in $(seq 1 1800); do
        [ "$(up "$kid" state)" = APPLIED ] && return 0
        sleep 0.1
    done
    return 1
}
check "the other node loads it again once the lease has run out" wait_long
expect_eq "... as attempt 2, exactly once" "2 $bigrec $((before + bigrec))" \
    "$(up "$kid" attempts) $(up "$kid" records) $(replica_count)"
expect_eq "... by the other node" 1 \
    "$(grep -c "loading upload $kid of TK001 diff (attempt 2)" "$KH_STACK/log/$other.log" || true)"
expect_eq "its parts are gone" 0 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.bulk_upload_part WHERE upload_id = '$kid'")"

# --- a load started three times without an outcome --------------------------
# (as if three nodes had died loading it): the sweeper ends it FAILED and
# deletes its parts; it runs when a node starts, so the killed node's restart
# shows it
gone=ffffffffffffffffffffffffffffff01
sql kh_gw_a "BEGIN; SET LOCAL ROLE kh_t_131016;
INSERT INTO t_131016.bulk_upload (upload_id, system_id, item_code, mode, as_of, file_name, state,
    next_seq, sha256, node, lease_until, attempts, committed_at)
VALUES ('$gone', 'tax', 'TK001', 'diff', '20260803', 'gone.csv', 'LOADING', 2, repeat('0', 64),
    'a-node-that-died', now() - interval '1 minute', 3, now());
INSERT INTO t_131016.bulk_upload_part VALUES ('$gone', 1, '\\x41');
COMMIT" >/dev/null
if [ "$victim" = gw-a ]; then "$K" up "$KH_STACK" >/dev/null; else "$K" node "$KH_STACK" gw-a 2 >/dev/null; fi
check "it ends FAILED" wait_state "$gone" FAILED
expect_eq "... with KH-5001 and no parts" "KH-5001 0" \
    "$(up "$gone" code) $(sql kh_gw_a "SELECT count(*) FROM t_131016.bulk_upload_part WHERE upload_id = '$gone'")"
expect_eq "no upload is left loading or queued" 0 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.bulk_upload WHERE state IN ('QUEUED', 'LOADING')")"
finish
