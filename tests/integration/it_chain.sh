# Tamper-evident records: the three chains of a tenant (provision records,
# access records, audit log) verify, read by an auditor role that may only
# read them; altering, deleting, inserting, reordering or truncating rows
# directly in PostgreSQL (triggers bypassed, as an administrator could) is
# detected by khctl verify, which names the first bad row of the chain; even
# a chain whose hashes were all recomputed is caught by the signed head, and
# the end of a chain past its last signed head by the chain's head row. The
# gateway's roles cannot change, remove or drop records.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=5100000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
for _ in 1 2 3 4; do
    client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O" >/dev/null
done
T=t_131016
CERT=$PKI/org/131016/sign.crt
# as an administrator with triggers off: sqlx SQL
sqlx() { sql kh_gw_a "SET session_replication_role = replica; $1"; }
# an auditor's login: it holds kh_auditor_131016, which may only read the records
sql kh_gw_a "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kh_it_auditor') THEN
        CREATE ROLE kh_it_auditor LOGIN;
    END IF; END \$\$; GRANT kh_auditor_131016 TO kh_it_auditor" >/dev/null
DB="host=$KH_STACK/pg/run dbname=kh_gw_a user=kh_it_auditor"
verify() { "$KH_BUILD/tools/khctl" verify --db "$DB" --tenant 131016 --cert "$CERT" "$@" 2>&1; }

# Access decisions and operator actions, written by the tenant role like the
# gateway writes them: the chain triggers link each row.
for i in 1 2 3 4; do
    as_gw "INSERT INTO $T.access_record (msg_id, direction, actor, operation, staff_id, procedure,
               items, decision, code)
           VALUES (md5(random()::text), 'business', 'tax', 'query', 'C-TAX-001', 'JT001',
                   '{TK001}', CASE WHEN $i = 3 THEN 'refused' ELSE 'allowed' END,
                   CASE WHEN $i = 3 THEN 'KH-2001' END)" >/dev/null
    as_gw "INSERT INTO $T.audit_log (operator, action, target, detail, outcome)
           VALUES ('it-op-$i', 'staff.update', 'C-TAX-001', '{\"step\": $i, \"note\": \"t\\u00e9st\"}',
                   'ok')" >/dev/null
done

declare -A HEAD
for c in provision_record access_record audit_log; do
    HEAD[$c]=$(sql kh_gw_a "SELECT seq FROM $T.chain_head WHERE chain = '$c'")
    check "Chiyoda has $c rows to chain (${HEAD[$c]})" test "${HEAD[$c]}" -ge 4
    for _ in $(seq 1 100); do
        [ "$(sql kh_gw_a "SELECT count(*) FROM $T.chain_signature WHERE chain = '$c' AND seq = ${HEAD[$c]}")" = 1 ] && break
        sleep 0.1
    done
done
out=$(verify); rc=$?
expect_eq "untouched chains verify (as the auditor role)" 0 "$rc"
for c in provision_record access_record audit_log; do
    expect_contains "$c: intact up to its signed head" \
        "chain $c: ${HEAD[$c]} rows intact from seq 1; signed head at seq ${HEAD[$c]} " "$out"
done

# tamper CHAIN SET-CLAUSE INSERT-COLUMNS INSERT-VALUES: every kind of tampering
# on one chain, each detected at its first bad row, then restored.
tamper() {
    local c=$1 alter=$2 cols=$3 vals=$4 head=${HEAD[$1]} s2
    sqlx "DROP TABLE IF EXISTS public.chain_backup, public.sig_backup;
          CREATE TABLE public.chain_backup AS SELECT * FROM $T.$c;
          CREATE TABLE public.sig_backup AS SELECT * FROM $T.chain_signature WHERE chain = '$c'" >/dev/null
    s2=$(sql kh_gw_a "SELECT min(seq) + 1 FROM $T.$c")
    restore() {
        # the signed heads as they were, byte for byte (a head the gateway
        # signed again meanwhile would no longer match its time-stamp token)
        sqlx "DELETE FROM $T.$c; INSERT INTO $T.$c SELECT * FROM public.chain_backup;
              DELETE FROM $T.chain_signature WHERE chain = '$c' AND seq IN (SELECT seq FROM public.sig_backup);
              INSERT INTO $T.chain_signature SELECT * FROM public.sig_backup ON CONFLICT DO NOTHING" >/dev/null
    }
    # expect_broken DESCRIPTION WANT-IN-OUTPUT
    expect_broken() {
        local rc=0
        out=$(verify --chain "$c") || rc=$?
        expect_eq "$c: $1: detected" 1 "$rc"
        expect_contains "$c: $1: names the first bad row" "chain $c: BROKEN at $2" "$out"
        restore
    }
    sqlx "UPDATE $T.$c SET $alter WHERE seq = $s2" >/dev/null
    expect_broken "a row altered" "seq $s2 "
    sqlx "DELETE FROM $T.$c WHERE seq = $s2" >/dev/null
    expect_broken "a row deleted" "seq $((s2 + 1)) "
    sqlx "UPDATE $T.$c SET seq = -seq WHERE seq >= $s2;
          UPDATE $T.$c SET seq = 1 - seq WHERE seq < 0;
          INSERT INTO $T.$c ($cols, seq, prev_hash, hash)
          SELECT $vals, $s2, hash, sha256(hash) FROM $T.$c WHERE seq = $s2 - 1" >/dev/null
    expect_broken "a row inserted" "seq $s2 "
    sqlx "UPDATE $T.$c SET seq = -1 WHERE seq = $s2;
          UPDATE $T.$c SET seq = $s2 WHERE seq = $s2 + 1;
          UPDATE $T.$c SET seq = $s2 + 1 WHERE seq = -1" >/dev/null
    expect_broken "two rows reordered" "seq $s2 "
    sqlx "DELETE FROM $T.$c WHERE seq >= $head" >/dev/null
    expect_broken "the newest rows deleted" "a head was signed at seq $head"
    # past the last signed head only the chain's head row knows the end (the
    # signer may sign the head again meanwhile: then the signed head tells)
    sqlx "DELETE FROM $T.$c WHERE seq = $head;
          DELETE FROM $T.chain_signature WHERE chain = '$c' AND seq = $head" >/dev/null
    expect_broken "the newest row and its signed head deleted" ""
    expect_contains "$c: ... reported as rows deleted at the end" "rows deleted at the end" "$out"
    # an administrator who also recomputes every hash after the altered row
    sqlx "UPDATE $T.$c SET $alter WHERE seq = $s2;
          DO \$\$ DECLARE r record; prev bytea;
          BEGIN
            SELECT hash INTO prev FROM $T.$c WHERE seq = $s2 - 1;
            FOR r IN SELECT * FROM $T.$c WHERE seq >= $s2 ORDER BY seq LOOP
              UPDATE $T.$c SET prev_hash = prev,
                     hash = sha256(prev || convert_to($T.chain_canonical_$c(p), 'UTF8'))
                FROM $T.$c p WHERE p.seq = r.seq AND $T.$c.seq = r.seq
              RETURNING $T.$c.hash INTO prev;
            END LOOP;
          END \$\$" >/dev/null
    expect_broken "a chain rewritten after an alteration" "seq "
    expect_contains "$c: ... by the head signed after it" \
        "the chain no longer matches the head signed there (rewritten)" "$out"
    local rc=0
    out=$(verify --chain "$c") || rc=$?
    expect_eq "$c: restored, the chain verifies again" 0 "$rc"
}
tamper provision_record "outcome = 'not_found'" "id, at, msg_id, direction" "999999, now(), 'forged', 'answered'"
tamper access_record "actor = actor || '-x'" "id, at, direction, actor, operation, decision" \
    "999999, now(), 'business', 'tax', 'query', 'allowed'"
tamper audit_log "detail = '{\"step\": 0}'" "id, at, operator, action, outcome" \
    "999999, now(), 'forged', 'staff.update', 'ok'"
# A last row rewritten together with its hash, past the last signed head:
# the chain's head row still holds the hash the trigger gave it.
sqlx "DROP TABLE IF EXISTS public.head_backup; CREATE TABLE public.head_backup AS SELECT * FROM $T.chain_head;
      UPDATE $T.chain_head SET hash = sha256(hash) WHERE chain = 'audit_log'" >/dev/null
out=$(verify --chain audit_log) || true
expect_contains "the last row no longer matching the chain's head is detected" \
    "chain audit_log: BROKEN at seq ${HEAD[audit_log]}, the last row: the chain's head holds another hash" "$out"
sqlx "UPDATE $T.chain_head h SET hash = b.hash FROM public.head_backup b WHERE b.chain = h.chain;
      DROP TABLE public.head_backup, public.chain_backup, public.sig_backup" >/dev/null

out=$(verify); rc=$?
expect_eq "restored, every chain verifies again" 0 "$rc"

# an exported range verifies offline with only the public certificate
exp=$(mktemp)
trap 'rm -f "$exp"' EXIT
"$KH_BUILD/tools/khctl" export --db "$DB" --tenant 131016 >"$exp"
check "the export holds a header, signed heads and every row of the three chains" \
    test "$(grep -c '"canonical":' "$exp")" = "$(sql kh_gw_a "SELECT (SELECT count(*) FROM $T.provision_record)
        + (SELECT count(*) FROM $T.access_record) + (SELECT count(*) FROM $T.audit_log)")"
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$CERT" 2>&1); rc=$?
expect_eq "the export verifies offline" 0 "$rc"
for c in provision_record access_record audit_log; do
    expect_contains "$c: up to its signed head" "chain $c: ${HEAD[$c]} rows intact from seq 1; signed head at seq ${HEAD[$c]}" "$out"
done
"$KH_BUILD/tools/khctl" export --db "$DB" --tenant 131016 --chain audit_log --from 2 --to 3 >"$exp"
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$CERT" 2>&1); rc=$?
expect_eq "a range of one chain verifies offline" 0 "$rc"
expect_contains "a range: its rows only" "chain audit_log: 2 rows intact from seq 2" "$out"
# numbers are strict: digits only (strtoll alone would take a blank or a plus)
for v in " 2" "+2" "2x" "" "-2" "99999999999999999999"; do
    rc=0
    "$KH_BUILD/tools/khctl" export --db "$DB" --tenant 131016 --chain audit_log --from "$v" \
        >/dev/null 2>&1 || rc=$?
    expect_eq "--from '$v' is a usage error" 2 "$rc"
done
"$KH_BUILD/tools/khctl" export --db "$DB" --tenant 131016 >"$exp"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$PKI/org/271004/sign.crt" 2>&1) || rc=$?
expect_eq "with another tenant's certificate it does not" 1 "$rc"
expect_contains "the signed head is named" "does not verify with the certificate" "$out"
sed -i '0,/"outcome": "provided"/s//"outcome": "refused"/' "$exp"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$CERT" 2>&1) || rc=$?
expect_eq "an export altered after the fact is detected" 1 "$rc"
expect_contains "naming the altered row" "chain provision_record: BROKEN at seq" "$out"
expect_contains "as altered" "no longer matches its hash (altered)" "$out"
expect_contains "while the other chains still verify" "chain audit_log: ${HEAD[audit_log]} rows intact" "$out"
# version 2 exports (the canonical text as a JSON string) still verify
"$KH_BUILD/tools/khctl" export --db "$DB" --tenant 131016 --chain provision_record >"$exp"
check "an export (version 3) carries each canonical text as it is, a JSON object" \
    grep -q '^{"seq":1,.*"canonical":{"at": ' "$exp"
v2=$(mktemp)
perl -pe 's/"version":3/"version":2/;
          if (/^(\{"seq":\d+,.*"canonical":)(\{.*\})\}$/) { my ($a, $c) = ($1, $2);
              $c =~ s/(["\\])/\\$1/g; $_ = "$a\"$c\"}\n" }' "$exp" >"$v2"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$v2" --cert "$CERT" 2>&1) || rc=$?
expect_eq "an export of version 2 verifies" 0 "$rc"
expect_contains "all of it" "chain provision_record: ${HEAD[provision_record]} rows intact" "$out"
# an export is untrusted input: a row cut inside its text is refused as unreadable
sed -i '0,/^{"seq":/s/\(^{"seq":.*"canonical":"{\\"at\\\).*/\1/' "$v2"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$v2" --cert "$CERT" 2>&1) || rc=$?
expect_eq "an export row (version 2) cut inside an escape is refused (exit 2)" 2 "$rc"
expect_contains "as unreadable" "unreadable row" "$out"
rm -f "$v2"
sed -i '0,/^{"seq":/s/\(^{"seq":.*"canonical":{"at": "\).*/\1/' "$exp"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$CERT" 2>&1) || rc=$?
expect_eq "an export row (version 3) cut inside its text is refused (exit 2)" 2 "$rc"
expect_contains "as unreadable" "unreadable row" "$out"

# Who may do what. The gateway's tenant role appends and reads; it cannot
# change, remove, detach or drop records, write a retention entry, or remove
# old months (record_retain belongs to kh_retention).
part=$(sql kh_gw_a "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = '$T.provision_record'::regclass ORDER BY 1 LIMIT 1")
s2=$(sql kh_gw_a "SELECT min(seq) + 1 FROM $T.provision_record")
expect_contains "the tenant's role cannot alter a record" "permission denied" \
    "$(as_gw "UPDATE $T.provision_record SET outcome = 'x' WHERE seq = $s2")"
expect_contains "nor delete one" "permission denied" "$(as_gw "DELETE FROM $T.audit_log WHERE seq = 1")"
expect_contains "nor truncate a chain" "permission denied" "$(as_gw "TRUNCATE $T.access_record")"
expect_contains "nor drop a partition ($part)" "must be owner" "$(as_gw "DROP TABLE $T.$part")"
expect_contains "nor detach one" "must be owner" \
    "$(as_gw "ALTER TABLE $T.provision_record DETACH PARTITION $T.$part")"
expect_contains "nor run retention" "permission denied for function record_retain" \
    "$(as_gw "SELECT * FROM $T.record_retain(1)")"
expect_contains "nor write a retention entry itself" "only record_retain() writes" \
    "$(as_gw "INSERT INTO $T.audit_log (operator, action, target, detail, outcome)
              VALUES ('x', 'record_retention', 'provision_record', '{}', 'ok')")"
expect_contains "nor move a chain's head" "permission denied" \
    "$(as_gw "UPDATE $T.chain_head SET seq = 1")"
expect_contains "nor remove a signed head" "permission denied" \
    "$(as_gw "DELETE FROM $T.chain_signature")"
expect_contains "nor take the schema" "must be owner" \
    "$(as_gw "ALTER SCHEMA $T RENAME TO t_gone")"
as_auditor() { psql -h "$KH_STACK/pg/run" -U kh_it_auditor -d kh_gw_a -XAtq -c "$1" 2>&1 || true; }
expect_contains "the auditor reads the records" "${HEAD[audit_log]}" \
    "$(as_auditor "SELECT count(*) FROM $T.audit_log")"
expect_contains "but writes none" "permission denied" \
    "$(as_auditor "INSERT INTO $T.audit_log (operator, action, outcome) VALUES ('a', 'b', 'ok')")"
expect_contains "and reads nothing else of the tenant" "permission denied" \
    "$(as_auditor "SELECT count(*) FROM $T.replica")"
expect_contains "nor another tenant's records" "permission denied" \
    "$(as_auditor "SELECT count(*) FROM t_271004.provision_record")"
expect_contains "even the superuser changes a record only with the triggers off" "append-only" \
    "$(sql_refused kh_gw_a "UPDATE $T.provision_record SET outcome = 'x' WHERE seq = $s2")"
finish
