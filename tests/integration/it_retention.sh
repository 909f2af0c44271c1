# Monthly partitions and retention of the record chains. A tenant created for
# this test (Z00001, in gw-b's database, served by no gateway) gets records
# dated over three years, nine to six years ago, through the real chain
# triggers as its tenant role (rows of months without a partition land in the
# DEFAULT partition until record_partitions_ensure moves them); its chain
# heads are signed with its key as gw_chain.c does. khctl retain, run with a
# role holding kh_retention, removes exactly the whole months older than
# seven years that start each chain, records it in the audit log, and the
# chains still verify from the recorded anchors, in the database (as an
# auditor) and in an export. A month dropped without retention, or a row
# missing from an old month, is still detected, and retention then refuses.
. "$(dirname "$0")/lib.sh"
ORG=Z00001
T=t_z00001
DBN=kh_gw_b
CERT=$PKI/org/$ORG/sign.crt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$KH_ROOT/tools/khdb" tenant "$KH_STACK/pg" "$DBN" "$ORG" kh_gw_b >/dev/null
"$KH_ROOT/tools/khpki" org "$PKI" "$ORG" >/dev/null
sql "$DBN" "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kh_it_auditor_z') THEN
        CREATE ROLE kh_it_auditor_z LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kh_it_retainer') THEN
        CREATE ROLE kh_it_retainer LOGIN;
    END IF; END \$\$;
    GRANT kh_auditor_z00001 TO kh_it_auditor_z; GRANT kh_retention TO kh_it_retainer" >/dev/null
AUDITOR="host=$KH_STACK/pg/run dbname=$DBN user=kh_it_auditor_z"
RETAINER="host=$KH_STACK/pg/run dbname=$DBN user=kh_it_retainer"
khctl() { "$KH_BUILD/tools/khctl" "$@" 2>&1; }
verify() { khctl verify --db "$AUDITOR" --tenant "$ORG" --cert "$CERT" "$@"; }
as_tenant() { psql -h "$KH_STACK/pg/run" -U kh_gw_b -d "$DBN" -XAtq -v ON_ERROR_STOP=1 -c "SET ROLE kh_t_z00001; $1" 2>&1; }
sqlx() { sql "$DBN" "SET session_replication_role = replica; $1"; }
# the chain heads signed with the tenant's key: the message of gateway/gw_chain.c
sign_heads() {
    local chain seq hash
    while IFS='|' read -r chain seq hash; do
        printf 'kakehashi-chain-head\n%s\n%s\n%s\n%s\n' "$ORG" "$chain" "$seq" "$hash" >"$tmp/head.msg"
        openssl dgst -sha256 -sign "$PKI/org/$ORG/sign.key" -out "$tmp/head.sig" "$tmp/head.msg"
        sql "$DBN" "INSERT INTO $T.chain_signature (chain, seq, hash, signature)
                    VALUES ('$chain', $seq, decode('$hash', 'hex'), decode('$(xxd -p "$tmp/head.sig" | tr -d '\n')', 'hex'))
                    ON CONFLICT DO NOTHING" >/dev/null
    done < <(sql "$DBN" "SELECT chain, seq, encode(hash, 'hex') FROM $T.chain_head WHERE seq > 0")
}

# Month m (0..35) starts m months after BASE, nine years before this month
# (UTC). Months 0..23 ended seven or more years ago; 24..35 did not.
BASE="date_trunc('month', now() - interval '9 years', 'UTC')"
as_tenant "
    INSERT INTO $T.provision_record (at, msg_id, direction, counterpart, procedure, items, outcome)
    SELECT $BASE + make_interval(months => m, days => d), md5(m || '-' || d), 'answered', '271004',
           'JT001', '{TK001}', 'provided'
    FROM generate_series(0, 35) m, unnest(ARRAY[1, 10, 20]) d ORDER BY m, d;
    INSERT INTO $T.access_record (at, direction, actor, operation, decision)
    SELECT $BASE + make_interval(months => m, days => d), 'peer', '271004', 'answer', 'allowed'
    FROM generate_series(0, 35) m, unnest(ARRAY[2, 12]) d ORDER BY m, d;
    INSERT INTO $T.audit_log (at, operator, action, target, outcome)
    SELECT $BASE + make_interval(months => m, days => 3), 'it-op', 'staff.update', 'S' || m, 'ok'
    FROM generate_series(0, 35) m ORDER BY m;
    INSERT INTO $T.provision_record (msg_id, direction, outcome) VALUES ('today', 'asked', 'sent');
    INSERT INTO $T.access_record (direction, actor, operation, decision)
    VALUES ('business', 'tax', 'query', 'allowed');
    INSERT INTO $T.audit_log (operator, action, outcome) VALUES ('it-op', 'login', 'ok');
    -- a record dated in month 20, appended last: it comes after today's in the chain
    INSERT INTO $T.provision_record (at, msg_id, direction, outcome)
    VALUES ($BASE + make_interval(months => 20, days => 5), 'late', 'asked', 'sent')" >/dev/null
expect_eq "old rows wait in the default partitions" "109 72 36" \
    "$(sql "$DBN" "SELECT (SELECT count(*) FROM $T.provision_record_default) || ' ' ||
                          (SELECT count(*) FROM $T.access_record_default) || ' ' ||
                          (SELECT count(*) FROM $T.audit_log_default)")"
out=$(as_tenant "INSERT INTO $T.access_record (at, direction, actor, operation, decision)
                 VALUES (now() + interval '2 years', 'business', 'tax', 'query', 'allowed')
                 RETURNING tableoid::regclass")
expect_eq "a row dated past the prepared months lands in the default partition too" "$T.access_record_default" "$out"
created=$(as_tenant "SELECT $T.record_partitions_ensure(3)")
expect_eq "record_partitions_ensure, run as the tenant role, creates their months (36 + 36 + 36 + 1)" "109" "$created"
expect_eq "and moves the rows out of the default partitions" "0 0 0" \
    "$(sql "$DBN" "SELECT (SELECT count(*) FROM $T.provision_record_default) || ' ' ||
                          (SELECT count(*) FROM $T.access_record_default) || ' ' ||
                          (SELECT count(*) FROM $T.audit_log_default)")"
expect_eq "each row is in its month's partition" "0" \
    "$(sql "$DBN" "SELECT count(*) FROM $T.provision_record
                   WHERE tableoid::regclass::text <> '$T.provision_record' || to_char(at AT TIME ZONE 'UTC', '\"_y\"YYYY\"m\"MM')")"
expect_eq "a second run has nothing to do" "0" "$(as_tenant "SELECT $T.record_partitions_ensure(3)")"
sign_heads
rc=0; out=$(verify) || rc=$?
expect_eq "the chains verify after the moves (as an auditor)" 0 "$rc"
expect_contains "provision_record from seq 1" "chain provision_record: 110 rows intact from seq 1; signed head at seq 110 " "$out"
expect_contains "access_record from seq 1" "chain access_record: 74 rows intact from seq 1; signed head at seq 74 " "$out"
expect_contains "audit_log from seq 1" "chain audit_log: 37 rows intact from seq 1; signed head at seq 37 " "$out"
anchor60=$(sql "$DBN" "SELECT encode(hash, 'hex') FROM $T.provision_record WHERE seq = 60")

# A dry run names what would go and changes nothing.
before=$(sql "$DBN" "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relnamespace = '$T'::regnamespace")
rc=0; out=$(khctl retain --db "$RETAINER" --tenant "$ORG" --cert "$CERT" --dry-run) || rc=$?
expect_eq "retain --dry-run succeeds" 0 "$rc"
expect_contains "it would remove the months older than seven years at the start of each chain" \
    "would remove 68 partition(s), 132 row(s) older than 7 years; nothing changed (dry run)" "$out"
expect_eq "and removes nothing" "$before" \
    "$(sql "$DBN" "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relnamespace = '$T'::regnamespace")"
expect_eq "nor records anything" "0" "$(sql "$DBN" "SELECT count(*) FROM $T.audit_log WHERE action = 'record_retention'")"

# Only a kh_retention role may retain: an auditor runs the checks, then is refused.
rc=0; out=$(khctl retain --db "$AUDITOR" --tenant "$ORG" --cert "$CERT") || rc=$?
expect_eq "an auditor cannot retain" 2 "$rc"
expect_contains "record_retain is refused to it" "permission denied for function record_retain" "$out"

rc=0; out=$(khctl retain --db "$RETAINER" --tenant "$ORG" --cert "$CERT") || rc=$?
expect_eq "retain succeeds" 0 "$rc"
expect_contains "it verified the chains first" "chain audit_log: 37 rows intact from seq 1" "$out"
expect_contains "it removed 20 + 24 + 24 months" \
    "removed 68 partition(s), 132 row(s) older than 7 years; recorded in audit_log" "$out"
expect_eq "provision_record: months 0-19 removed (month 20 holds the late record)" "20" \
    "$(grep -c 'chain provision_record: removed provision_record_y' <<<"$out")"
expect_eq "provision_record: months 20-23 kept, though older than seven years" "4" \
    "$(grep -c 'chain provision_record: kept provision_record_y' <<<"$out")"
expect_eq "month 20 because of the late record, 21-23 because month 20 stays" "1 3" \
    "$(grep -c 'kept .*: it holds a row that comes after rows of a later month' <<<"$out") $(grep -c 'kept .*: an older month is kept' <<<"$out")"
expect_eq "what is left starts at seq 61, 49 and 25" "61 49 25" \
    "$(sql "$DBN" "SELECT (SELECT min(seq) FROM $T.provision_record) || ' ' || (SELECT min(seq) FROM $T.access_record)
                          || ' ' || (SELECT min(seq) FROM $T.audit_log WHERE action <> 'record_retention')")"
expect_eq "no row of a removed month is left, none of a kept month is gone" "0 50 26 13" \
    "$(sql "$DBN" "SELECT (SELECT count(*) FROM $T.provision_record WHERE at < $BASE + interval '20 months') || ' ' ||
                          (SELECT count(*) FROM $T.provision_record) || ' ' ||
                          (SELECT count(*) FROM $T.access_record) || ' ' ||
                          (SELECT count(*) FROM $T.audit_log WHERE action <> 'record_retention')")"
ret=$(sql "$DBN" "SELECT seq || ' ' || operator || ' ' || (detail->>'first_seq') || ' ' || (detail->'removed_seq')::text
                  || ' ' || (detail->>'removed_rows') || ' ' || (detail->>'anchor') || ' ' || jsonb_array_length(detail->'partitions')
                  FROM $T.audit_log WHERE action = 'record_retention' AND target = 'provision_record'")
rseq=${ret%% *}
expect_eq "the audit log records it: who, where the chain starts, what went, the anchor" \
    "$rseq kh_it_retainer 61 [1, 60] 60 $anchor60 20" "$ret"
expect_eq "one record_retention entry per chain" "provision_record access_record audit_log" \
    "$(sql "$DBN" "SELECT string_agg(target, ' ' ORDER BY seq) FROM $T.audit_log WHERE action = 'record_retention'")"
sign_heads
rc=0; out=$(verify) || rc=$?
expect_eq "after retention every chain verifies" 0 "$rc"
expect_contains "provision_record: from the recorded anchor" \
    "chain provision_record: 50 rows intact from seq 61, where it starts after the retention recorded at audit_log seq $rseq; signed head at seq 110 " "$out"
expect_contains "access_record: from the recorded anchor" "chain access_record: 26 rows intact from seq 49, where it starts after the retention" "$out"
expect_contains "audit_log: from its own recorded anchor" "chain audit_log: 16 rows intact from seq 25, where it starts after the retention" "$out"
khctl export --db "$AUDITOR" --tenant "$ORG" >"$tmp/export.jsonl"
rc=0; out=$(khctl verify --export "$tmp/export.jsonl" --cert "$CERT") || rc=$?
expect_eq "an export after retention verifies offline" 0 "$rc"
expect_contains "from the anchor it carries" "chain provision_record: 50 rows intact from seq 61, where it starts after the retention" "$out"
rc=0; out=$(khctl retain --db "$RETAINER" --tenant "$ORG" --cert "$CERT") || rc=$?
expect_eq "a second retention removes nothing more" "0 3" "$rc $(sql "$DBN" "SELECT count(*) FROM $T.audit_log WHERE action = 'record_retention'")"
expect_contains "and says so" "nothing older than 7 years to remove" "$out"

# A month dropped without retention is missing rows.
sqlx "CREATE TABLE public.ret_backup AS SELECT * FROM $T.provision_record WHERE at < $BASE + interval '21 months';
      ALTER TABLE $T.provision_record DETACH PARTITION $T.provision_record_y$(sql "$DBN" "SELECT to_char($BASE + interval '20 months', 'YYYY\"m\"MM')");
      DROP TABLE $T.provision_record_y$(sql "$DBN" "SELECT to_char($BASE + interval '20 months', 'YYYY\"m\"MM')")" >/dev/null
rc=0
out=$(verify --chain provision_record) || rc=$?
expect_eq "an old month dropped without retention is detected" 1 "$rc"
expect_contains "at the first row left" \
    "chain provision_record: BROKEN at seq 64 (row id 64) is the first row, but the chain starts at seq 61 (after the retention recorded at audit_log seq $rseq): 3 row(s) missing (deleted)" "$out"
rc=0
out=$(khctl retain --db "$RETAINER" --tenant "$ORG" --cert "$CERT" --years 6) || rc=$?
expect_eq "retention refuses to run on a broken chain" 1 "$rc"
expect_contains "and says why" "retention refused: a chain does not verify; nothing removed" "$out"
sqlx "INSERT INTO $T.provision_record SELECT * FROM public.ret_backup WHERE at >= $BASE + interval '20 months';
      DROP TABLE public.ret_backup" >/dev/null
expect_eq "rows put back into a dropped month wait in the default partition until it is made again" "1" \
    "$(as_tenant "SELECT $T.record_partitions_ensure(0, 'provision_record')")"
rc=0; out=$(verify --chain provision_record) || rc=$?
expect_eq "its rows put back, the chain verifies again" 0 "$rc"

# record_retain itself refuses old months that are not exactly the start of
# the chain (here a row gone from month 30 of access_record).
sqlx "CREATE TABLE public.ret_backup AS SELECT * FROM $T.access_record WHERE seq = 62;
      DELETE FROM $T.access_record WHERE seq = 62" >/dev/null
out=$(psql -h "$KH_STACK/pg/run" -U kh_it_retainer -d "$DBN" -XAtq -c "SELECT count(*) FROM $T.record_retain(6)" 2>&1 || true)
expect_contains "record_retain refuses a chain with a hole, removing nothing" \
    "chain access_record: its months before" "$out"
expect_contains "... and names it" "it is not intact (khctl verify); nothing removed" "$out"
sqlx "INSERT INTO $T.access_record SELECT * FROM public.ret_backup; DROP TABLE public.ret_backup" >/dev/null
rc=0; out=$(verify) || rc=$?
expect_eq "everything verifies at the end" 0 "$rc"
finish
