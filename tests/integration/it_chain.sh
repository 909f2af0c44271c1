# Tamper-evident provision records: the chain of a tenant verifies; altering,
# deleting, inserting, reordering or truncating rows directly in PostgreSQL
# (triggers bypassed, as an administrator could) is detected by khctl verify,
# which names the first bad row; even a chain whose hashes were all recomputed
# is caught by the signed head. The gateway's roles cannot change records.
. "$(dirname "$0")/lib.sh"
new_person
client 131016 tax register "$LOCAL_C" TK001 20260101 fiscal_year=2026 total_income=5100000 >/dev/null
client 131016 tax linkcode "$LOCAL_C" "$RESIDENT" >/dev/null
client 271004 childallowance linkcode "$LOCAL_O" "$RESIDENT" >/dev/null
for _ in 1 2 3 4; do
    client 271004 childallowance query O-CA-001 JT001 131016 TK001 "$LOCAL_O" >/dev/null
done
T=t_131016
DB="host=$KH_STACK/pg/run dbname=kh_gw_a user=khadmin"
verify() { "$KH_BUILD/tools/khctl" verify --db "$DB" --tenant 131016 --cert "$PKI/org/131016/sign.crt" 2>&1; }
# as an administrator with triggers off: sqlx SQL
sqlx() { sql kh_gw_a "SET session_replication_role = replica; $1"; }

head=$(sql kh_gw_a "SELECT seq FROM $T.chain_head WHERE chain = 'provision_record'")
check "Chiyoda has records to chain ($head)" test "$head" -ge 4
for _ in $(seq 1 100); do
    [ "$(sql kh_gw_a "SELECT count(*) FROM $T.chain_signature WHERE seq = $head")" = 1 ] && break
    sleep 0.1
done
out=$(verify); rc=$?
expect_eq "an untouched chain verifies" 0 "$rc"
expect_contains "up to a signed head" "rows intact from seq 1; signed head at seq $head " "$out"

sqlx "DROP TABLE IF EXISTS public.chain_backup; CREATE TABLE public.chain_backup AS SELECT * FROM $T.provision_record" >/dev/null
restore() { sqlx "DELETE FROM $T.provision_record; INSERT INTO $T.provision_record SELECT * FROM public.chain_backup" >/dev/null; }
s2=$(sql kh_gw_a "SELECT min(seq) + 1 FROM $T.provision_record")

# expect_broken DESCRIPTION WANT-IN-OUTPUT
expect_broken() {
    local out rc=0
    out=$(verify) || rc=$?
    expect_eq "$1: detected" 1 "$rc"
    expect_contains "$1: names the first bad row" "$2" "$out"
    restore
}

sqlx "UPDATE $T.provision_record SET outcome = 'not_found' WHERE seq = $s2" >/dev/null
expect_broken "a row altered" "BROKEN at seq $s2 "
sqlx "DELETE FROM $T.provision_record WHERE seq = $s2" >/dev/null
expect_broken "a row deleted" "BROKEN at seq $((s2 + 1)) "
sqlx "UPDATE $T.provision_record SET seq = -seq WHERE seq >= $s2;
      UPDATE $T.provision_record SET seq = 1 - seq WHERE seq < 0;
      INSERT INTO $T.provision_record (id, at, msg_id, direction, seq, prev_hash, hash)
      SELECT 999999, now(), 'forged', 'answered', $s2, hash, sha256(hash) FROM $T.provision_record WHERE seq = $s2 - 1" >/dev/null
expect_broken "a row inserted" "BROKEN at seq $s2 "
sqlx "UPDATE $T.provision_record SET seq = -1 WHERE seq = $s2;
      UPDATE $T.provision_record SET seq = $s2 WHERE seq = $s2 + 1;
      UPDATE $T.provision_record SET seq = $s2 + 1 WHERE seq = -1" >/dev/null
expect_broken "two rows reordered" "BROKEN at seq $s2 "
sqlx "DELETE FROM $T.provision_record WHERE seq >= $head" >/dev/null
expect_broken "the newest rows deleted" "BROKEN at a head was signed at seq $head"
# an administrator who also recomputes every hash after the altered row
sqlx "UPDATE $T.provision_record SET outcome = 'not_found' WHERE seq = $s2;
      DO \$\$ DECLARE r record; prev bytea;
      BEGIN
        SELECT hash INTO prev FROM $T.provision_record WHERE seq = $s2 - 1;
        FOR r IN SELECT * FROM $T.provision_record WHERE seq >= $s2 ORDER BY seq LOOP
          UPDATE $T.provision_record SET prev_hash = prev,
                 hash = sha256(prev || convert_to($T.chain_canonical_provision_record(p), 'UTF8'))
            FROM $T.provision_record p WHERE p.seq = r.seq AND $T.provision_record.seq = r.seq
          RETURNING $T.provision_record.hash INTO prev;
        END LOOP;
      END \$\$" >/dev/null
expect_broken "a chain rewritten after an alteration" "the chain no longer matches the head signed there"

out=$(verify); rc=$?
expect_eq "restored, the chain verifies again" 0 "$rc"

# an exported range verifies offline with only the public certificate
exp=$(mktemp)
trap 'rm -f "$exp"' EXIT
"$KH_BUILD/tools/khctl" export --db "$DB" --tenant 131016 >"$exp"
check "the export holds a header, signed heads and every row" \
    test "$(grep -c '"canonical":' "$exp")" = "$(sql kh_gw_a "SELECT count(*) FROM $T.provision_record")"
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$PKI/org/131016/sign.crt" 2>&1); rc=$?
expect_eq "the export verifies offline" 0 "$rc"
expect_contains "up to its signed head" "signed head at seq $head" "$out"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$PKI/org/271004/sign.crt" 2>&1) || rc=$?
expect_eq "with another tenant's certificate it does not" 1 "$rc"
expect_contains "the signed head is named" "does not verify with the certificate" "$out"
sed -i '0,/"outcome\\": \\"provided\\"/s//"outcome\\": \\"refused\\"/' "$exp"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$PKI/org/131016/sign.crt" 2>&1) || rc=$?
expect_eq "an export altered after the fact is detected" 1 "$rc"
expect_contains "naming the altered row" "no longer matches its hash (altered)" "$out"
sqlx "DROP TABLE public.chain_backup" >/dev/null

as_gw() { psql -h "$KH_STACK/pg/run" -U kh_gw_a -d kh_gw_a -XAtq -c "SET ROLE kh_t_131016; $1" 2>&1 || true; }
expect_contains "the tenant's role cannot alter a record" "append-only" \
    "$(as_gw "UPDATE $T.provision_record SET outcome = 'x' WHERE seq = $s2")"
expect_contains "nor delete one" "append-only" "$(as_gw "DELETE FROM $T.provision_record WHERE seq = $s2")"
finish
