# Database failover (issue 12), on a platform of its own: 'khstack up --ha'
# (etcd, PostgreSQL under Patroni on two nodes, a primary and a synchronous
# standby, two nodes of each gateway behind HAProxy, the router) on ports
# KH_PORT_BASE+500... While a business system registers one record after
# another through HAProxy, the primary's PostgreSQL is killed (-9) and,
# once it serves again, the primary is switched over to the other node.
# The gateways and the router are not restarted; then node 2 of gw-a is
# stopped (SIGTERM) and drains first: no registration fails; node 1 is
# killed (-9): the registrations go on through node 2. Every registration
# acknowledged is in the database afterwards, none twice; every node is
# ready again (node 1 started again); a query crosses the network after all
# that, and again after the router is killed and started again. The second
# PostgreSQL pair (S00001's database) loses its primary: only S00001 waits
# for its failover. Then the
# pair's backups (tools/khbackup): WAL archived by the primary, a full backup,
# a restore to a point in time into a new cluster beside the running stack;
# the second pair is backed up and restored too.
# (tools/khbench-failover measures the same events under a mixed load.)
. "$(dirname "$0")/lib.sh"
. "$KH_ROOT/tools/lib.sh" # kh_within, kh_http_ok
D=$KH_BUILD/it-ha
HB=$((KH_PORT_BASE + 500))
hk() { KH_PORT_BASE=$HB "$KH_ROOT/tools/khstack" "$@"; }
hsql() { hk psql "$D" "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
cleanup() {
    "$KH_ROOT/tools/khdb" stop "$D/restored/pg" >/dev/null 2>&1 || true
    "$KH_ROOT/tools/khdb" stop "$D/restored2/pg" >/dev/null 2>&1 || true
    hk down "$D" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$D"
if ! hk up --ha "$D" >"$KH_BUILD/it-ha.up.log" 2>&1; then
    fail "the HA stack came up (log $KH_BUILD/it-ha.up.log): $(tail -3 "$KH_BUILD/it-ha.up.log")"
    finish
fi
roles() { hk ha "$D" | awk '{ print $2 }' | sort | paste -sd' ' -; }
leader() { hk ha "$D" | awk '$2 == "leader" && $3 == "running" { print $1 }'; }
paired() { [ "$(roles)" = "leader sync_standby" ]; }
ready() { kh_http_ok "http://127.0.0.1:$1/ready"; } # PORT: GET /ready is 200
expect_eq "two PostgreSQL nodes: a leader and a synchronous standby" "leader sync_standby" "$(roles)"
pids() { cat "$D"/run/gw-a.pid "$D"/run/gw-a-n2.pid "$D"/run/gw-b.pid "$D"/run/gw-b-n2.pid "$D"/run/router.pid | paste -sd' ' -; }
P0=$(pids)

# the writer: registrations of one record, each with a value of its own;
# ACK lines "VALUE VERSION SECONDS" for those acknowledged, the rest counted
L=1$((RANDOM % 9000 + 1000))0001
ACK=$D/acks
: >"$ACK"
: >"$D/refusals"
writer() {
    local i out
    for i in $(seq 1 "$1"); do
        out=$(hk client "$D" 131016 tax register "$L" TK001 20250101 fiscal_year=2025 \
            total_income=$((1000000 + i)) 2>&1 | tail -1) || true
        case $out in
        "OK registered version "*) echo "$((1000000 + i)) ${out##* } $(date +%s.%N)" >>"$ACK" ;;
        *) echo "- $out" >>"$D/refusals" ;;
        esac
        sleep 0.05
    done
}
writer 1000000 &
W=$!
acks_over() { [ "$(wc -l <"$ACK")" -ge "$1" ]; }
wait_acks() { # N: until N more acknowledgements than now (60 s)
    kh_within 60 acks_over $(($(wc -l <"$ACK") + $1))
}
check "registrations are acknowledged" wait_acks 10

# 1. the primary's PostgreSQL dies (kill -9): Patroni brings a primary back
old=$(leader)
pm=$(head -1 "$D/ha/$old/data/postmaster.pid")
kill -9 "$pm"
check "after the primary's PostgreSQL was killed, registrations are acknowledged again" wait_acks 10
check "... and there is a leader and a synchronous standby again" kh_within 90 paired

# 2. a switchover: the other node becomes the primary
from=$(leader)
to=pg1
[ "$from" = pg1 ] && to=pg2
setpriv --reuid="${KH_PGUSER:-postgres}" --regid="${KH_PGUSER:-postgres}" --init-groups \
    patronictl -c "$D/ha/$from.yml" switchover --leader "$from" --candidate "$to" --force \
    >"$D/switchover.log" 2>&1 || true
leads() { [ "$(leader)" = "$1" ]; }
check "after the switchover $to leads" kh_within 60 leads "$to"
check "after the switchover, registrations are acknowledged again" wait_acks 10
expect_eq "no gateway node and not the router was restarted" "$P0" "$(pids)"

# 3. node 2 of gw-a is stopped (SIGTERM; drain_s 4 in this stack): it drains
# (GET /ready 503, HAProxy takes it out) before it stops: not one
# registration fails meanwhile
n2=$(cat "$D/run/gw-a-n2.pid")
before=$(wc -l <"$D/refusals")
kill -TERM "$n2"
sleep 0.3
health() { # PATH: the status and the Connection header of node 2's health listener
    python3 - "http://127.0.0.1:$((HB + 124))$1" <<'EOF' 2>/dev/null || echo "no answer"
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError as e:
    r = e
print(r.status, r.headers.get("Connection"))
EOF
}
expect_eq "a draining node says it is not ready" "503 close" "$(health /ready)"
expect_eq "... is still alive, and closes each connection after its reply" "200 close" "$(health /health)"
gone2() { ! kill -0 "$n2" 2>/dev/null || [ "$(awk '{ print $3 }' "/proc/$n2/stat" 2>/dev/null)" = Z ]; }
check "gw-a's node 2 stops within 15 s of SIGTERM" kh_within 15 gone2
expect_contains "... after draining" '"drained: stopping with 0 request(s) in flight"' "$(cat "$D/log/gw-a-n2.log")"
check "... while registrations went on" wait_acks 5
expect_eq "... and none failed meanwhile" "$before" "$(wc -l <"$D/refusals")"
hk node "$D" gw-a 2 >/dev/null
# node 2 back in HAProxy (rise 2) before node 1 goes
check "gw-a's node 2 is ready again" kh_within 15 ready $((HB + 124))
sleep 3

# 4. node 1 of gw-a dies (kill -9): HAProxy sends the business system to node 2
tk=$(date +%s.%N)
kill -9 "$(cat "$D/run/gw-a.pid")"
check "after gw-a's node 1 was killed, registrations are acknowledged again" wait_acks 10
kill "$W" 2>/dev/null || true
wait "$W" 2>/dev/null || true
gap=$(awk -v tk="$tk" '$3 > tk { printf "%.1f", $3 - p; exit } { p = $3 }' "$ACK")
check "... the first one within 5 s of the last one before the kill ($gap s)" \
    awk -v g="$gap" 'BEGIN { exit !(g != "" && g < 5) }'
hk start "$D" gw-a >/dev/null
acked=$(wc -l <"$ACK")
vals=$(awk '{ print $1 }' "$ACK" | paste -sd, -)
expect_eq "every acknowledged registration ($acked) is in the database" "$acked" \
    "$(hsql kh_gw_a "SELECT count(*) FROM t_131016.replica WHERE local_id = '$L'
                    AND (data->>'total_income')::bigint IN ($vals)")"
expect_eq "... none twice" 0 \
    "$(hsql kh_gw_a "SELECT count(*) - count(DISTINCT data->>'total_income') FROM t_131016.replica
                    WHERE local_id = '$L'")"
worst=$(awk 'NR > 1 { g = $3 - t; if (g > w) w = g } { t = $3 } END { printf "%.1f", w }' "$ACK")
check "the longest time between two acknowledgements was under 30 s ($worst s)" \
    awk -v w="$worst" 'BEGIN { exit !(w < 30) }'
printf 'ha: %d acknowledged, %d refused or failed, longest gap %s s\n' "$acked" \
    "$(wc -l <"$D/refusals")" "$worst"
for p in $((HB + 14)) $((HB + 24)) $((HB + 124)) $((HB + 224)); do
    ok=0
    for _ in $(seq 1 50); do ready "$p" && { ok=1; break; }; sleep 0.1; done
    expect_eq "the node with health port $p is ready" 1 "$ok"
done

# a query through the router (its database failed over too)
R=19$((RANDOM % 90000000 + 10000000))0
hk client "$D" 131016 tax linkcode "$L" "$R" >/dev/null
hk client "$D" 271004 childallowance linkcode "2${L:1}" "$R" >/dev/null
out=$(hk client "$D" 271004 childallowance query O-CA-001 JT001 131016 TK001 "2${L:1}")
expect_contains "a query crosses the network after the failovers" "OK FOUND" "$out"

# 5. the router dies (kill -9) and is started again, as a supervisor would:
# the gateways' next queries cross the network through the new process
pm=$(cat "$D/run/router.pid")
kill -9 "$pm"
gone() { ! kill -0 "$pm" 2>/dev/null; }
kh_within 10 gone || true # gone before it is started again
hk start "$D" router >/dev/null
out=$(hk client "$D" 271004 childallowance query O-CA-001 JT001 131016 TK001 "2${L:1}")
expect_contains "a query crosses the network after the router was killed and started again" "OK FOUND" "$out"
# 5b. the second cluster (pg3, pg4: kh_gw_b2, S00001's database by gw-b's
# tenant_db): its primary's PostgreSQL dies (kill -9); S00001 is served again
# after Patroni's failover there, and gw-b's tenants on the first cluster are
# served all along
roles2() { hk ha "$D" 2 | awk '{ print $2 }' | sort | paste -sd' ' -; }
expect_eq "the second cluster: a leader and a synchronous standby" "leader sync_standby" "$(roles2)"
expect_eq "S00001's schema is on it" "S00001" \
    "$(hsql kh_gw_b2 "SELECT string_agg(org_code, ',') FROM kh.tenant")"
served() { hk client "$D" "$1" "$2" list limit=1 2>&1 | tail -1 | grep -q '^OK'; }
SL=5$((RANDOM % 9000 + 1000))0001
expect_contains "S00001 acquires a link code (stored on the second cluster)" "OK" \
    "$(hk client "$D" S00001 loans linkcode "$SL" "19$((RANDOM % 90000000 + 10000000))1" 2>&1)"
check "S00001 is served before" served S00001 loans
old2=$(hk ha "$D" 2 | awk '$2 == "leader" { print $1 }')
kill -9 "$(head -1 "$D/ha/$old2/data/postmaster.pid")"
: >"$D/n00001.refused"
for _ in 1 2 3 4 5; do served N00001 pension || echo refused >>"$D/n00001.refused"; done
check "after its primary was killed, S00001 is served again (30 s)" kh_within 30 served S00001 loans
expect_eq "... while N00001, on the first cluster, was served every time" 0 "$(wc -l <"$D/n00001.refused")"
check "... and the second cluster pairs again" kh_within 90 eval '[ "$(roles2)" = "leader sync_standby" ]'
# 6. backups of the pair (tools/khbackup), after its failovers: WAL archived
# by whichever node is the primary, a full backup taken from it; restored to
# a point in time T into a new cluster beside the running stack
kb() { "$KH_ROOT/tools/khbackup" "$@"; }
out=$(kb setup "$D" 2>&1) || true
expect_contains "WAL archiving of the pair is set up" "archived into $D/backup/repo" "$out"
expect_eq "archive_mode is on at the primary" on "$(hsql postgres "SHOW archive_mode")"
out=$(kb backup "$D" full 2>&1) || true
expect_contains "a full backup is taken from the primary" "full backup:" "$out"
expect_contains "... of the second cluster too, a stanza of its own" "stanza: kh2" "$out"
reg() { hk client "$D" 131016 tax register "$L" TK001 20250101 fiscal_year=2025 total_income="$1"; }
expect_contains "a registration after the backup, before T" "OK registered" "$(reg 7770001)"
sleep 1.1
T=$(hsql postgres "SELECT to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') || to_char(clock_timestamp(), 'OF')")
sleep 1.1
expect_contains "a registration after T" "OK registered" "$(reg 7770002)"
check "every commit so far is archived" kb check "$D"
out=$(kb restore "$D" --into "$D/restored" --time "$T" 2>&1) || true
expect_contains "the pair's backup is restored to T into a new cluster" "into $D/restored/pg; timeline" "$out"
rq() { "$KH_ROOT/tools/khdb" psql "$D/restored/pg" -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
expect_eq "the registration before T is there, the one after is not" "7770001" \
    "$(rq kh_gw_a "SELECT string_agg(data->>'total_income', ' ') FROM t_131016.replica
                   WHERE local_id = '$L' AND data->>'total_income' IN ('7770001', '7770002')")"
expect_eq "... and every registration acknowledged before the failovers" "$acked" \
    "$(rq kh_gw_a "SELECT count(*) FROM t_131016.replica WHERE local_id = '$L'
                   AND (data->>'total_income')::bigint IN ($vals)")"
out=$("$KH_BUILD/tools/khctl" verify --db "host=$D/restored/pg/run dbname=kh_gw_a user=khadmin" \
    --tenant 131016 --cert "$D/pki/org/131016/sign.crt" 2>&1) && rc=0 || rc=$?
expect_eq "Chiyoda's record chains verify from the restored data" 0 "$rc"
# the second cluster's backup restores S00001's database
out=$(kb restore "$D" --into "$D/restored2" --cluster 2 2>&1) || true
expect_contains "the second cluster's backup is restored into a new cluster" "into $D/restored2/pg; timeline" "$out"
expect_eq "... with S00001's link code acquired before its failover" 1 \
    "$("$KH_ROOT/tools/khdb" psql "$D/restored2/pg" -XAtq -d kh_gw_b2 \
        -c "SELECT count(*) FROM t_s00001.linkcode WHERE local_id = '$SL'")"
expect_eq "the stack's pair is still a leader and a synchronous standby" "leader sync_standby" "$(roles)"
from=$(leader)
to=pg1
[ "$from" = pg1 ] && to=pg2
setpriv --reuid="${KH_PGUSER:-postgres}" --regid="${KH_PGUSER:-postgres}" --init-groups \
    patronictl -c "$D/ha/$from.yml" switchover --leader "$from" --candidate "$to" --force \
    >>"$D/switchover.log" 2>&1 || true
check "another switchover: $to leads" kh_within 60 leads "$to"
check "... and the new primary archives" kh_within 60 kb check "$D"
expect_contains "... and is backed up" "diff backup:" "$(kb backup "$D" diff 2>&1 || true)"
finish
