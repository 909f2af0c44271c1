# khctl verify makes the rows' canonical texts itself (tools/khcanon.c) from
# a binary COPY, and hashes them on every core in batches (tools/khverify.c);
# an export's rows are hashed the same way. The database's
# chain_canonical_<table> stays the definition. This checks, on a tenant of
# its own (database kh_it_canon, organisation 999903), that:
# - rows with every awkward value a column can hold (quotes, backslashes,
#   control characters, non-ASCII text, NULLs, empty and NULL-holding arrays,
#   nested jsonb, negative and large ids, old and new dates) verify on the fast
#   path: the texts are byte for byte the database's, so no "note:" (the slow
#   fall-back) is printed;
# - a chain of thousands of rows (many batches) verifies, and an alteration
#   in its middle is named at its seq, from the database and from an export;
# - a value the fast path cannot render (a year past 9999) falls back to the
#   database's text, says so, and still verifies.
. "$(dirname "$0")/lib.sh"
PGDIR=$KH_STACK/pg
DBN=kh_it_canon
"$KH_ROOT/tools/khdb" migrate "$PGDIR" "$DBN" >/dev/null
"$KH_ROOT/tools/khdb" tenant "$PGDIR" "$DBN" 999903 kh_gw_a >/dev/null
T=t_999903
q() { "$KH_ROOT/tools/khdb" psql "$PGDIR" -d "$DBN" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
DB="host=$PGDIR/run dbname=$DBN user=khadmin"
CERT=$PKI/org/131016/sign.crt # no head is signed here: any certificate will do
verify() { "$KH_BUILD/tools/khctl" verify --db "$DB" --tenant 999903 --cert "$CERT" "$@" 2>&1; }
exp=$(mktemp)
trap 'rm -f "$exp"' EXIT

# Awkward values, through the chain triggers like every append.
q "INSERT INTO $T.provision_record (id, at, msg_id, direction, counterpart, procedure, items,
        local_id, staff_id, outcome, code, provided) VALUES
    (-7, '2000-01-01 00:00:00+00', E'q\"uote\\\\back', 'answered', NULL, 'JT001', '{}',
        E'tab\there\nnl\r\b\f\x01\x1f\x7f', 'O-CA-001', 'provided', NULL,
        '{\"TK001\": {\"n\": 1.50, \"e\": 1e3, \"s\": \"x\\u00e9\\\"y\", \"a\": [null, true, {}]}}'),
    (9223372036854775807, '1999-12-31 23:59:59.999999+00', 'm2', 'asked', '131016', NULL,
        ARRAY['TK001', NULL, E'\"'], NULL, NULL, 'refused', 'KH-2001', NULL),
    (3, '0044-03-01 12:00:00+00', '漢字かな', 'answered', '271004', 'JT002', NULL, '', '',
        'provided', '', '{}'),
    (4, '2024-02-29 23:59:59.5+00', 'leap', 'answered', '271004', 'JT002', ARRAY['a b', ''],
        'x', 'y', 'provided', 'OK', '[]')" >/dev/null
q "INSERT INTO $T.access_record (msg_id, direction, actor, operation, staff_id, procedure, items,
        decision, code) VALUES
    (NULL, 'business', E'a\\\\\"b', 'query', NULL, NULL, NULL, 'refused', 'KH-2001'),
    ('m', 'peer', 'ç', 'answer', 's', 'p', ARRAY[NULL]::text[], 'allowed', NULL)" >/dev/null
q "INSERT INTO $T.audit_log (operator, action, target, detail, outcome, code)
   SELECT 'op-' || g, 'staff.update', CASE WHEN g % 7 = 0 THEN NULL ELSE 'C-' || g END,
          jsonb_build_object('step', g, 'note', E'n\\\\o\"t\u0001e', 'f', g / 3.0),
          'ok', CASE WHEN g % 5 = 0 THEN 'KH-' || g END
   FROM generate_series(1, 5000) g" >/dev/null

rc=0
out=$(verify) || rc=$?
expect_eq "awkward values and 5000 rows verify" 0 "$rc"
expect_contains "every provision record" "chain provision_record: 4 rows intact from seq 1" "$out"
expect_contains "every access record" "chain access_record: 2 rows intact from seq 1" "$out"
expect_contains "every audit entry" "chain audit_log: 5000 rows intact from seq 1" "$out"
check "the texts khctl made are the database's, byte for byte (no fall-back)" \
    bash -c '! grep -q "note:" <<<"$1"' _ "$out"

"$KH_BUILD/tools/khctl" export --db "$DB" --tenant 999903 >"$exp"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$CERT" 2>&1) || rc=$?
expect_eq "their export verifies" 0 "$rc"
expect_contains "all 5000 audit entries of it" "chain audit_log: 5000 rows intact from seq 1" "$out"

# An alteration deep in the chain, past the first batches, is named at its seq.
q "SET session_replication_role = replica;
   UPDATE $T.audit_log SET detail = detail || '{\"x\": 1}' WHERE seq = 3001" >/dev/null
rc=0
out=$(verify --chain audit_log) || rc=$?
expect_eq "an entry altered at seq 3001 is detected" 1 "$rc"
expect_contains "and named" "chain audit_log: BROKEN at seq 3001 " "$out"
expect_contains "as altered" "no longer matches its hash (altered)" "$out"
check "the fast walk's verdict was confirmed by the database's text, without fall-back" \
    bash -c '! grep -q "note:" <<<"$1"' _ "$out"
sed -i 's/\(^{"seq":4001,.*"step": \)4001/\14002/' "$exp"
rc=0
out=$("$KH_BUILD/tools/khctl" verify --export "$exp" --cert "$CERT" 2>&1) || rc=$?
expect_eq "an export row altered at seq 4001 is detected" 1 "$rc"
expect_contains "and named" "chain audit_log: BROKEN at seq 4001 " "$out"
q "SET session_replication_role = replica;
   UPDATE $T.audit_log SET detail = detail - 'x' WHERE seq = 3001" >/dev/null
rc=0
out=$(verify --chain audit_log) || rc=$?
expect_eq "restored, it verifies again" 0 "$rc"

# A year khctl does not render (to_char writes five digits): the database's
# text decides, and khctl says it fell back.
q "INSERT INTO $T.access_record (at, direction, actor, operation, decision)
   VALUES ('12044-01-01 00:00:00+00', 'business', 'tax', 'query', 'allowed')" >/dev/null
rc=0
out=$(verify --chain access_record) || rc=$?
expect_eq "a row khctl cannot render still verifies" 0 "$rc"
expect_contains "by the database's text" "chain access_record: 3 rows intact from seq 1" "$out"
expect_contains "saying so" "note: chain access_record: khctl's canonical text of seq 3" "$out"

q "SET session_replication_role = replica; DROP SCHEMA $T CASCADE" >/dev/null
finish
