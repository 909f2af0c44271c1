#!/usr/bin/env bash
# Database test: a private cluster (tools/khdb) in a temporary folder of the
# build tree; migrations and tenant creation (each run twice: idempotent);
# tenant/006 applied to a tenant that already has records; the refdb/idconv C
# tests (test_refdb_db); and tenant isolation checked with
# psql as the gateway's login role.
# Usage: test_db.sh SOURCE_DIR WORK_DIR TEST_REFDB_DB_BINARY
set -euo pipefail
src=$1 work=$2 bin=$3
khdb="$src/tools/khdb"

mkdir -p "$work"
tmp=$(mktemp -d "$work/dbtest.XXXXXX")
cleanup() {
    "$khdb" stop "$tmp" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
step() { printf '== %s\n' "$*"; }

step "a bad KH_PG_SHARED_BUFFERS is refused before anything is made"
out=$(KH_PG_SHARED_BUFFERS=$'1MB\nfsync = off' "$khdb" start "$tmp/bad" 2>&1) &&
    fail "khdb started with a shared_buffers of two lines"
grep -q "KH_PG_SHARED_BUFFERS" <<<"$out" || fail "the refusal does not name the variable: $out"
[ ! -e "$tmp/bad" ] || fail "a refused start made $tmp/bad"

step "start (twice)"
"$khdb" start "$tmp"
"$khdb" start "$tmp" | grep -q "already running" || fail "second start should find the server running"
"$khdb" status "$tmp" >/dev/null || fail "status should say running"
url=$("$khdb" url "$tmp")
[ "$url" = "host=$tmp/run port=5432" ] || fail "url: $url"
[ "$(stat -c %a "$tmp/data")" = 700 ] || fail "data folder not 0700"
[ "$(stat -c %a "$tmp/run")" = 700 ] || fail "run folder not 0700"
[ -S "$tmp/run/.s.PGSQL.5432" ] || fail "no socket in $tmp/run"
[ "$("$khdb" psql "$tmp" -XAtc 'SHOW shared_buffers')" = 256MB ] || fail "shared_buffers is not the default 256MB"

sq() { "$khdb" psql "$tmp" -X -At -v ON_ERROR_STOP=1 -d khtest "$@"; }
# gw ARGS: psql as the gateway's login role
gw() { psql -X -At -v ON_ERROR_STOP=1 -h "$tmp/run" -p 5432 -U kh_gw_test -d khtest "$@" 2>&1; }

step "migrate (twice)"
"$khdb" migrate "$tmp" khtest
out=$("$khdb" migrate "$tmp" khtest)
grep -q applied <<<"$out" && fail "second migrate applied something: $out"
[ "$(sq -c 'SELECT count(*) FROM kh.schema_migrations')" = "$(ls "$src"/sql/platform/*.sql | wc -l)" ] ||
    fail "platform migrations"
[ "$(sq -c "SELECT count(*) FROM kh.item_field WHERE item_code = 'TK001'")" = 23 ] || fail "catalogue"
[ "$(sq -c 'SELECT count(*) FROM kh.item')" = 8 ] || fail "catalogue items"
snap() { sq -c 'SELECT md5(string_agg(t::text, $$;$$ ORDER BY t::text)) FROM (
    SELECT row(i.*)::text AS t FROM kh.item i UNION ALL SELECT row(f.*)::text FROM kh.item_field f
    UNION ALL SELECT row(c.*)::text FROM kh.code_value c) x'; }
before=$(snap)
out=$("$khdb" migrate "$tmp" khtest)
[ "$(snap)" = "$before" ] || fail "a third migrate changed the catalogue"
grep -q "item catalogue current (8 items" <<<"$out" || fail "migrate does not report the catalogue: $out"

step "catalogue: a published layout never changes, a new version is added"
cat2="$tmp/catalogue"
mkdir -p "$cat2"
cp "$src"/sql/catalogue/*.tsv "$cat2"/
sed -i 's/^\(TK001\t1\t6\ttotal_income\tS9\t\)13/\112/' "$cat2/fields.tsv"
grep -q "total_income.S9.12" "$cat2/fields.tsv" || fail "test setup: sed did not change fields.tsv"
if KH_CATALOGUE=$cat2 "$khdb" migrate "$tmp" khtest 2>/dev/null; then
    fail "migrate accepted a changed published layout"
fi
[ "$(snap)" = "$before" ] || fail "a refused catalogue load changed something"
cp "$src"/sql/catalogue/*.tsv "$cat2"/
sed -i 's/^TK005\t1\t/TK005\t2\t/; s/^\(TK005\t2\t8\t.*\)$/&\nTK005\t2\t9\tnote\tX\t20\tf\t-\t-\tany\t1\t1\t/' "$cat2/fields.tsv"
sed -i 's/^TK005\t1\t/TK005\t2\t/' "$cat2/items.tsv"
KH_CATALOGUE=$cat2 "$khdb" migrate "$tmp" khtest >/dev/null || fail "a new layout version was refused"
[ "$(sq -c "SELECT layout_version FROM kh.item WHERE item_code = 'TK005'")" = 2 ] || fail "TK005 version"
[ "$(sq -c "SELECT count(*) FROM kh.item_field WHERE item_code = 'TK005' AND layout_version = 2")" = 9 ] ||
    fail "TK005 version 2 fields"
[ "$(sq -c "SELECT count(*) FROM kh.item_field WHERE item_code = 'TK005' AND layout_version = 1")" = 8 ] ||
    fail "TK005 version 1 must be kept"
# back to the catalogue of the source tree (TK005 version 1 again)
"$khdb" migrate "$tmp" khtest >/dev/null
[ "$(sq -c "SELECT layout_version FROM kh.item WHERE item_code = 'TK005'")" = 1 ] || fail "TK005 back to 1"
sq -c "DELETE FROM kh.item_field WHERE item_code = 'TK005' AND layout_version = 2" >/dev/null
[ "$(snap)" = "$before" ] || fail "catalogue not restored"

step "tenants (131016 twice, 271004)"
"$khdb" tenant "$tmp" khtest 131016 kh_gw_test
out=$("$khdb" tenant "$tmp" khtest 131016 kh_gw_test)
grep -q applied <<<"$out" && fail "second tenant run applied something: $out"
"$khdb" tenant "$tmp" khtest 271004 kh_gw_test
[ "$(sq -c 'SELECT string_agg(org_code, $$,$$ ORDER BY org_code) FROM kh.tenant')" = "131016,271004" ] ||
    fail "kh.tenant rows"
[ "$(sq -c 'SELECT count(*) FROM t_131016.schema_migrations')" = "$(ls "$src"/sql/tenant/*.sql | wc -l)" ] || fail "tenant migrations"
[ "$(sq -c "SELECT tableowner FROM pg_tables WHERE schemaname = 't_271004' AND tablename = 'replica'")" = kh_t_271004 ] ||
    fail "replica not owned by the tenant role"
[ "$(sq -c "SELECT rolinherit::text || rolcanlogin::text FROM pg_roles WHERE rolname = 'kh_gw_test'")" = falsetrue ] ||
    fail "gateway role must be LOGIN NOINHERIT"
"$khdb" tenant "$tmp" khtest 13101 kh_gw_test 2>/dev/null && fail "bad org code accepted"
"$khdb" tenant "$tmp" khtest 131016 'kh;drop' 2>/dev/null && fail "bad role name accepted"

step "tenant/006 on a tenant with records: partitioned in place, chains unchanged"
pre="$tmp/sql-pre006"
mkdir -p "$pre"
cp "$src"/sql/tenant/00[1-5]_*.sql "$pre"/
KH_TENANT_SQL=$pre "$khdb" tenant "$tmp" khtest 011002 kh_gw_test >/dev/null
sq -c "SET ROLE kh_t_011002; SET search_path = t_011002;
    INSERT INTO provision_record (at, msg_id, direction, outcome, items, provided)
    SELECT now() - g * interval '45 days', md5(g::text), 'answered', 'provided', '{TK001}',
           '{\"TK001\": 3}' FROM generate_series(1, 30) g;
    INSERT INTO audit_log (operator, action, detail, outcome)
    VALUES ('op', 'staff.update', '{\"a\": [1, \"\\u00e9\"]}', 'ok'), ('op', 'flag.revoke', '{}', 'refused');
    INSERT INTO access_record (direction, actor, operation, decision)
    VALUES ('business', 'tax', 'query', 'allowed')" >/dev/null
chain_of() { sq -c "SELECT md5(string_agg(seq || ':' || encode(prev_hash, 'hex') || ':' || encode(hash, 'hex'), ',' ORDER BY seq))
                    FROM t_011002.$1"; }
before=$(chain_of provision_record)
head=$(sq -c "SELECT seq || encode(hash, 'hex') FROM t_011002.chain_head WHERE chain = 'provision_record'")
out=$("$khdb" tenant "$tmp" khtest 011002 kh_gw_test)
grep -q "applied tenant/006_chains" <<<"$out" || fail "006 not applied: $out"
[ "$(chain_of provision_record)" = "$before" ] || fail "provision_record's chain columns changed"
[ "$(sq -c "SELECT seq || encode(hash, 'hex') FROM t_011002.chain_head WHERE chain = 'provision_record'")" = "$head" ] ||
    fail "provision_record's head changed"
recomputed() { sq -c "SELECT count(*) FROM t_011002.$1 p
                      WHERE p.hash = sha256(p.prev_hash || convert_to(t_011002.chain_canonical_$1(p), 'UTF8'))"; }
[ "$(recomputed provision_record)" = 30 ] || fail "provision_record's canonical bytes changed"
[ "$(recomputed audit_log) $(recomputed access_record)" = "2 1" ] ||
    fail "the rows already in audit_log and access_record were not chained"
[ "$(sq -c "SELECT string_agg(relkind::text, '' ORDER BY relname) FROM pg_class
            WHERE relnamespace = 't_011002'::regnamespace
              AND relname IN ('provision_record', 'audit_log', 'access_record')")" = ppp ] ||
    fail "the record tables are not partitioned"
[ "$(sq -c "SELECT count(DISTINCT tableoid) FROM t_011002.provision_record")" = 30 ] ||
    fail "provision_record's rows (45 days apart) are not each in its month's partition"
[ "$(sq -c "SELECT count(*) FROM t_011002.provision_record_default")" = 0 ] || fail "rows left in default"
[ "$(sq -c "SELECT count(*) FROM t_011002.provision_detail")" = 30 ] || fail "provision_detail"
owners=$(sq -c "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class
                WHERE relnamespace = 't_011002'::regnamespace AND relkind IN ('r', 'p')
                  AND (relname ~ '^(provision_record|audit_log|access_record)' OR relname LIKE 'chain_%')")
[ "$owners" = kh_records_011002 ] || fail "records owned by $owners"
out=$("$khdb" tenant "$tmp" khtest 011002 kh_gw_test)
grep -q applied <<<"$out" && fail "a second tenant run applied something: $out"
[ "$(sq -c "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 't_011002'")" = kh_records_011002 ] ||
    fail "khdb tenant gave the schema back to the tenant role"
gw -c "SET ROLE kh_t_011002" -c "INSERT INTO t_011002.provision_record (msg_id, direction) VALUES ('x', 'asked')" \
    >/dev/null || fail "the tenant role cannot append after 006"
[ "$(recomputed provision_record)" = 31 ] || fail "an append after 006 does not chain"

step "router (twice)"
"$khdb" router "$tmp" khrouter kh_router_test >/dev/null
"$khdb" router "$tmp" khrouter kh_router_test >/dev/null
rq() { "$khdb" psql "$tmp" -X -At -v ON_ERROR_STOP=1 -d khrouter "$@"; }
[ "$(rq -c 'SELECT count(*) FROM router.legal_basis')" = 13 ] || fail "legal-basis rows"
[ "$(rq -c 'SELECT count(*) FROM router.procedure')" = 10 ] || fail "procedures"
[ "$(rq -c "SELECT items::text FROM router.legal_basis WHERE id = 'LB13'")" = "{TK008}" ] || fail "LB13"

step "refdb and idconv against tenant 131016 (test_refdb_db)"
KH_TEST_CONNINFO=$url KH_TEST_CATALOGUE="$src/sql/catalogue" "$bin"

step "replica's local IDs: 1 to 15 ASCII digits, nothing else (the CHECK of tenant/012)"
rep() { sq -c "INSERT INTO t_131016.replica (local_id, item_code, effective_from, system_id)
    VALUES (\$\$$1\$\$, 'TK001', '2026-04-01', 'tax')" 2>&1; }
for bad in '' '1234567890123456' '12a4' ' 123' '123 ' '+123' '-1' '1.5' '１２３' '12\n3' '٣'; do
    out=$(rep "$bad") && fail "replica took the local ID [$bad]"
    grep -q 'replica_local_id_digits' <<<"$out" || fail "local ID [$bad]: not the CHECK: $out"
done
for good in 0 7 123456789012345 000000000000001; do
    rep "$good" >/dev/null || fail "replica refused the local ID [$good]"
done
sq -c "DELETE FROM t_131016.replica WHERE system_id = 'tax' AND effective_from = '2026-04-01'
    AND local_id IN ('0', '7', '123456789012345', '000000000000001')" >/dev/null
[ "$(sq -c "SELECT count(*) FROM pg_constraint WHERE conrelid = 't_131016.replica'::regclass
    AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%local_id%'")" = 1 ] ||
    fail "replica should have exactly one CHECK on local_id"

step "tenant isolation (psql as kh_gw_test)"
expect_denied() {
    local what=$1
    shift
    local out
    if out=$(gw "$@"); then
        fail "$what: succeeded, expected permission denied: $out"
    fi
    grep -q "permission denied" <<<"$out" || fail "$what: expected permission denied, got: $out"
    printf 'ok: %s: %s\n' "$what" "$(grep -m1 ERROR <<<"$out")"
}
gw -c "SET ROLE kh_t_131016" -c "SELECT count(*) FROM t_131016.replica" >/dev/null ||
    fail "the tenant role cannot read its own tables"
gw -c "SET ROLE kh_t_271004" -c "INSERT INTO t_271004.staff VALUES ('S1', 'Staff One')" >/dev/null ||
    fail "the tenant role cannot write its own tables"
expect_denied "131016 reads 271004 replica" -c "SET ROLE kh_t_131016" -c "SELECT * FROM t_271004.replica"
expect_denied "131016 reads 271004 linkcode" -c "SET ROLE kh_t_131016" -c "SELECT * FROM t_271004.linkcode"
expect_denied "271004 reads 131016 replica" -c "SET ROLE kh_t_271004" -c "SELECT * FROM t_131016.replica"
expect_denied "gateway without SET ROLE reads 131016" -c "SELECT * FROM t_131016.replica"
expect_denied "gateway without SET ROLE reads 271004" -c "SELECT * FROM t_271004.staff"
expect_denied "tenant role writes the catalogue" -c "SET ROLE kh_t_131016" \
    -c "INSERT INTO kh.item VALUES ('TK777', 'x', 1)"
expect_denied "gateway becomes the superuser" -c "SET ROLE khadmin"
expect_denied "tenant role changes another tenant's table" -c "SET ROLE kh_t_131016" \
    -c "ALTER TABLE t_271004.replica OWNER TO kh_t_131016"
gw -c "SET ROLE kh_t_131016" -c "SELECT count(*) FROM kh.item" >/dev/null ||
    fail "the catalogue must be readable by tenant roles"

step "operator tables: only through kh_operator_store, and only what the admin API does"
sq -c "INSERT INTO kh.operator (name, role, password_hash, created_by) VALUES
    ('op1', 'auditor', 'scrypt\$32768\$8\$1\$c2FsdA==\$aGFzaA==', 'test')" >/dev/null
op() { gw -c "SET ROLE kh_operator_store" -c "$1"; }
op "SELECT name, role, password_hash FROM kh.operator" >/dev/null || fail "the admin API role cannot read operators"
op "UPDATE kh.operator SET failed_logins = 1, locked_until = now() WHERE name = 'op1'" >/dev/null ||
    fail "the admin API role cannot count failed logins"
op "INSERT INTO kh.operator_audit (actor, action, outcome) VALUES ('op1', 'test', 'ok')" >/dev/null ||
    fail "the admin API role cannot append to the operator audit log"
expect_denied "gateway without SET ROLE reads operators" -c "SELECT * FROM kh.operator"
expect_denied "tenant role reads operators" -c "SET ROLE kh_t_131016" -c "SELECT * FROM kh.operator"
expect_denied "tenant role reads sessions" -c "SET ROLE kh_t_131016" -c "SELECT * FROM kh.operator_session"
expect_denied "admin API role changes a role" -c "SET ROLE kh_operator_store" \
    -c "UPDATE kh.operator SET role = 'platform_admin' WHERE name = 'op1'"
op "UPDATE kh.operator SET password_hash = 'scrypt\$32768\$8\$1\$c2FsdA==\$bmV3', password_changed_at = now()
    WHERE name = 'op1'" >/dev/null || fail "the admin API role cannot set a password (sql/platform/005)"
if out=$(op "UPDATE kh.operator SET password_hash = 'x' WHERE name = 'op1'" 2>&1); then
    fail "the admin API role stored a password hash that is no scrypt hash"
fi
grep -q "check constraint" <<<"$out" || fail "a non-scrypt hash: expected a check violation, got: $out"
op "INSERT INTO kh.maintenance (scope, reason, set_by) VALUES ('tenant:131016', 'test', 'op1')" >/dev/null ||
    fail "the admin API role cannot set maintenance (sql/platform/008)"
op "SELECT max(version) FROM kh.schema_migrations" >/dev/null ||
    fail "the admin API role cannot read the applied migrations (sql/platform/007)"
expect_denied "admin API role changes the applied migrations" -c "SET ROLE kh_operator_store" \
    -c "DELETE FROM kh.schema_migrations"
expect_denied "admin API role deletes an operator" -c "SET ROLE kh_operator_store" \
    -c "DELETE FROM kh.operator WHERE name = 'op1'"
expect_denied "admin API role rewrites the operator audit log" -c "SET ROLE kh_operator_store" \
    -c "UPDATE kh.operator_audit SET outcome = 'ok'"
expect_denied "admin API role deletes from the operator audit log" -c "SET ROLE kh_operator_store" \
    -c "DELETE FROM kh.operator_audit"
expect_denied "admin API role reads tenant data" -c "SET ROLE kh_operator_store" \
    -c "SELECT * FROM t_131016.answer_flag"
if out=$(sq -c "DELETE FROM kh.operator_audit" 2>&1); then
    fail "the superuser deleted from the operator audit log: $out"
fi
grep -q "append-only" <<<"$out" || fail "operator audit log: expected append-only, got: $out"

step "stop (twice)"
"$khdb" stop "$tmp" >/dev/null
"$khdb" stop "$tmp" | grep -q "not running" || fail "second stop"
if "$khdb" status "$tmp" >/dev/null; then fail "status after stop"; fi
printf 'PASS\n'
