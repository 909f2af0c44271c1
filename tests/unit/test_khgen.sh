#!/usr/bin/env bash
# Tests tools/khgen: usage errors, determinism (same seed, same bytes), headers
# from the catalogue, sort order and latest flags, persons.tsv, tax consistency,
# a new item in the catalogue, and, with khcheck: every generated file passes
# and every broken file fails with exactly the rows of its .expect.
# Usage: test_khgen.sh SOURCE_DIR KHGEN [KHCHECK]
set -euo pipefail

SRC=$1
KHGEN=$2
KHCHECK=${3:-}
CAT="$SRC/sql/catalogue"
T=$(mktemp -d "${TMPDIR:-/tmp}/test_khgen.XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0

ok() { printf 'ok   %s\n' "$*"; }
fail() {
    printf 'FAIL %s\n' "$*" >&2
    fails=$((fails + 1))
}
expect_exit() { # description status command...
    local d=$1 want=$2 got=0
    shift 2
    "$@" >/dev/null 2>&1 || got=$?
    if [ "$got" -eq "$want" ]; then ok "$d"; else fail "$d (exit $got, want $want)"; fi
}

# ---------------------------------------------------------------- usage
expect_exit "--help exits 0" 0 "$KHGEN" --help
"$KHGEN" --help | grep -q "khgen residents" && ok "--help shows usage" || fail "--help shows usage"
expect_exit "no command: 2" 2 "$KHGEN"
expect_exit "unknown command: 2" 2 "$KHGEN" frobnicate --seed 1 --out "$T/u"
expect_exit "unknown option: 2" 2 "$KHGEN" residents --count 1 --seed 1 --out "$T/u" --bogus
expect_exit "missing --seed: 2" 2 "$KHGEN" residents --count 1 --out "$T/u"
expect_exit "missing --count: 2" 2 "$KHGEN" residents --seed 1 --out "$T/u"
expect_exit "missing --out: 2" 2 "$KHGEN" broken --seed 1
expect_exit "bad --count: 2" 2 "$KHGEN" residents --count 12x --seed 1 --out "$T/u"
expect_exit "bad --as-of: 2" 2 "$KHGEN" residents --count 1 --seed 1 --out "$T/u" --as-of 20260230
expect_exit "--count with changes: 2" 2 "$KHGEN" changes --count 5 --seed 1 --out "$T/u"
expect_exit "unknown item: 2" 2 "$KHGEN" residents --count 1 --seed 1 --out "$T/u" --items TK999
expect_exit "missing catalogue: 2" 2 "$KHGEN" residents --count 1 --seed 1 --out "$T/u" \
    --catalogue "$T/nowhere"

# ---------------------------------------------------------- determinism
gen_all() { # dir seed
    "$KHGEN" residents --count 3000 --seed "$2" --history --out "$1/r" 2>/dev/null
    "$KHGEN" changes --seed "$2" --out "$1/c" 2>/dev/null
    "$KHGEN" broken --seed "$2" --out "$1/b" 2>/dev/null
}
sums() { (cd "$1" && find . -type f | LC_ALL=C sort | xargs sha256sum); }
gen_all "$T/a" 42
gen_all "$T/b" 42
gen_all "$T/d" 43
if [ "$(sums "$T/a")" = "$(sums "$T/b")" ]; then ok "same seed, same bytes"; else
    fail "same seed, same bytes"
fi
if [ "$(sha256sum <"$T/a/r/TK001_full_20260401.csv")" != \
    "$(sha256sum <"$T/d/r/TK001_full_20260401.csv")" ]; then ok "another seed, other data"; else
    fail "another seed, other data"
fi
"$KHGEN" residents --count 3000 --seed 42 --history --items TK001 --out "$T/one" 2>/dev/null
if cmp -s "$T/one/TK001_full_20260401.csv" "$T/a/r/TK001_full_20260401.csv"; then
    ok "a person's values do not depend on --items"
else
    fail "a person's values do not depend on --items"
fi
"$KHGEN" residents --count 50 --seed 42 --as-of 20251001 --items TK002 --out "$T/asof" 2>/dev/null
[ -s "$T/asof/TK002_full_20251001.csv" ] && ok "--as-of names the file" || fail "--as-of names the file"

# ------------------------------------------------- headers from the catalogue
# The flattened header of an item, computed here from fields.tsv.
expected_header() { # item
    awk -F'\t' -v item="$1" '
        NR > 1 && $1 == item { n++; name[n] = $4; type[n] = $5; maxo[n] = $12; grp[n] = $13 }
        END {
            h = "local_id,effective_from,latest_flag,delete_flag"
            for (i = 1; i <= n; i++) {
                if (grp[i] != "") continue
                if (type[i] == "GROUP") {
                    for (o = 1; o <= maxo[i]; o++)
                        for (j = 1; j <= n; j++)
                            if (grp[j] == name[i]) h = h "," name[i] "[" o "]." name[j]
                } else if (maxo[i] > 1) {
                    for (o = 1; o <= maxo[i]; o++) h = h "," name[i] "[" o "]"
                } else h = h "," name[i]
            }
            print h
        }' "$CAT/fields.tsv"
}
checked=0
for f in "$T"/a/r/TK*_full_*.csv "$T"/a/c/TK002_diff_*.csv; do
    item=$(basename "$f" | cut -d_ -f1)
    if [ "$(head -n 1 "$f")" != "$(expected_header "$item")" ]; then
        fail "header of $(basename "$f")"
        continue
    fi
    # sorted by local_id, then effective_from, strictly (byte order)
    if ! tail -n +2 "$f" | cut -d, -f1,2 | LC_ALL=C sort -c -u -t, -k1,1 -k2,2 2>/dev/null; then
        fail "sort order of $(basename "$f")"
        continue
    fi
    # exactly one latest_flag 1 per person, on the last row; delete rows empty
    if ! tail -n +2 "$f" | awk -F, '
        function person_end() { if (id != "" && !(last == 1 && ones == 1)) bad = 1 }
        $1 != id { person_end(); id = $1; ones = 0 }
        { last = $3; ones += $3 == 1
          if ($4 == 1) for (i = 5; i <= NF; i++) if ($i != "") bad = 1 }
        END { person_end(); exit bad }'; then
        fail "latest and delete flags of $(basename "$f")"
        continue
    fi
    checked=$((checked + 1))
done
[ "$checked" -eq 19 ] && ok "headers, sort order and flags of every residents and changes file"
[ "$(ls "$T"/a/r/TK*_full_20260401.csv | wc -l)" -eq "$(($(wc -l <"$CAT/items.tsv") - 1))" ] &&
    ok "one full file per catalogue item" || fail "one full file per catalogue item"
if awk -F, 'NR > 1 { seen[$1]++; if (seen[$1] > 1) more = 1 } END { exit !more }' \
    "$T/a/r/TK002_full_20260401.csv"; then ok "--history gives some persons several rows"; else
    fail "--history gives some persons several rows"
fi

# ----------------------------------------------------------- persons.tsv
P="$T/a/r/persons.tsv"
if [ "$(head -n 1 "$P")" = "$(printf 'local_id\thousehold_no\tresident_code')" ] &&
    [ "$(tail -n +2 "$P" | wc -l)" -eq 3000 ] &&
    [ "$(tail -n +2 "$P" | cut -f1 | sort -u | grep -cE '^[0-9]{9}$')" -eq 3000 ] &&
    [ "$(tail -n +2 "$P" | cut -f3 | sort -u | grep -cE '^19[0-9]{9}$')" -eq 3000 ] &&
    [ "$(tail -n +2 "$P" | cut -f2 | grep -cvE '^[0-9]{10}$')" -eq 0 ]; then
    ok "persons.tsv: 3000 unique local IDs and resident codes (19 + 9 digits)"
else
    fail "persons.tsv"
fi
sizes=$(tail -n +2 "$P" | cut -f2 | uniq -c | awk '{ print $1 }' | sort -u | tr '\n' ' ')
[ "$(echo $sizes)" = "1 2 3 4 5 6" ] && ok "households of 1 to 6 persons" ||
    fail "households of 1 to 6 persons (got $sizes)"

# ------------------------------------------------------- tax consistency
if awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $4 == 0 { tax = $c["annual_tax"]; parts = $c["municipal_tax_flat"] + $c["municipal_tax_income"] + $c["prefectural_tax"]
              if (tax != parts) bad = 1
              if ($c["total_income"] == 0 && $c["separate_income"] == 0 && tax != 0) bad = 1
              if ($c["total_income"] > 3000000 && tax == 0) bad = 1
              if ($c["fiscal_year"] != substr($2, 1, 4)) bad = 1 }
    END { exit bad }' "$T/a/r/TK001_full_20260401.csv"; then
    ok "TK001: annual_tax is the sum of its parts and follows total_income"
else
    fail "TK001: annual_tax is the sum of its parts and follows total_income"
fi

# ----------------------------------------------------------- change files
reasons=$(awk -F'\t' '$1 == "CHANGE_REASON" { print $2 }' "$CAT/codes.tsv" | sort | tr '\n' ' ')
got=$(tail -n +2 "$T/a/c/changes.tsv" | cut -f2 | sort | tr '\n' ' ')
[ "$reasons" = "$got" ] && ok "one change file per CHANGE_REASON code" ||
    fail "one change file per CHANGE_REASON code (want $reasons, got $got)"
grep -q ',3,' "$T"/a/c/TK002_diff_*_B2.csv && ok "death: resident_status 3" || fail "death: resident_status 3"
awk -F, 'NR > 1 && $(NF - 1) == "1" { f = 1 } END { exit !f }' "$T"/a/c/TK002_diff_*_B1.csv &&
    ok "move-out with destination unknown" || fail "move-out with destination unknown"
awk -F, 'NR > 1 && $4 == "1" { f = 1 } END { exit !f }' "$T"/a/c/TK002_diff_*_D2.csv &&
    ok "removal by authority: a deletion row" || fail "removal by authority: a deletion row"

# ------------------------------------------- a new item in the catalogue
C2="$T/cat2"
cp -r "$CAT" "$C2"
printf 'TK099\t1\ta test item khgen has never seen\n' >>"$C2/items.tsv"
cat >>"$C2/fields.tsv" <<'EOF'
TK099	1	1	code_no	9	8	t	-	zero	-	1	1	
TK099	1	2	amount	9	7	f	-	suppress	-	1	1	
TK099	1	3	balance	S9	11	t	-	-	-	1	1	
TK099	1	4	start	DATE	8	t	-	-	-	1	1	
TK099	1	5	label	X	6	f	-	-	ascii	1	1	
TK099	1	6	kana	X	5	t	-	-	kana	1	1	
TK099	1	7	note	X	2	f	-	-	any	1	1	
TK099	1	8	flags	CODE	1	f	FLAG	-	-	2	4	
TK099	1	9	entries	GROUP	0	f	-	-	-	1	3	
TK099	1	10	entry_day	DATE	8	f	-	-	-	1	1	entries
TK099	1	11	entry_code	CODE	2	f	RELATION	-	-	1	1	entries
EOF
"$KHGEN" residents --count 400 --seed 5 --items TK099,TK002 --catalogue "$C2" --out "$T/new" \
    2>/dev/null && [ "$(wc -l <"$T/new/TK099_full_20260401.csv")" -gt 10 ] &&
    [ "$(head -n 1 "$T/new/TK099_full_20260401.csv")" = "$(CAT=$C2 expected_header TK099)" ] &&
    ok "a new item gets a file with its catalogue header" || fail "a new item gets a file"

# ----------------------------------------------------------------- khcheck
if [ -z "$KHCHECK" ] || [ ! -x "$KHCHECK" ]; then
    echo "SKIP khcheck part: khcheck not built in this tree"
else
    bad=0
    for f in "$T"/a/r/TK*_full_*.csv "$T"/a/c/TK002_diff_*.csv "$T"/d/r/TK*_full_*.csv; do
        item=$(basename "$f" | cut -d_ -f1)
        if ! "$KHCHECK" "$item" "$f" >"$T/report" 2>/dev/null; then
            fail "khcheck passes $f: $(head -n 3 "$T/report" | tr '\n' ' ')"
            bad=1
        fi
    done
    [ $bad -eq 0 ] && ok "khcheck passes every residents and changes file"
    "$KHCHECK" --catalogue "$C2" TK099 "$T/new/TK099_full_20260401.csv" >"$T/report" 2>/dev/null &&
        ok "khcheck passes the new item's file" ||
        fail "khcheck passes the new item's file: $(head -n 3 "$T/report" | tr '\n' ' ')"
    n=0
    bad=0
    while IFS=$'\t' read -r file item mode desc; do
        [ "$file" = file ] && continue
        n=$((n + 1))
        status=0
        "$KHCHECK" "$item" "$T/a/b/$file" >"$T/report" 2>/dev/null || status=$?
        tail -n +2 "$T/report" | cut -d, -f1-3 >"$T/got"
        if [ $status -ne 1 ] || ! cmp -s "$T/got" "$T/a/b/${file%.csv}.expect"; then
            fail "$file ($desc): exit $status, got $(tr '\n' ' ' <"$T/got"), want $(tr '\n' ' ' <"$T/a/b/${file%.csv}.expect")"
            bad=1
        fi
    done <"$T/a/b/broken.tsv"
    [ $bad -eq 0 ] && ok "khcheck reports exactly the expected rows of all $n broken files"
    codes=$(cat "$T"/a/b/*.expect | cut -d, -f3 | sort -u | tr '\n' ' ')
    want="KH-1101 KH-1102 KH-1103 KH-1104 KH-1105 KH-1106 KH-1107 KH-1108 KH-1109 KH-1110 KH-1111 KH-1112 KH-1113 KH-1114 KH-1115 KH-1116 "
    [ "$codes" = "$want" ] && ok "broken files cover KH-1101..1116" ||
        fail "broken files cover KH-1101..1116 (got $codes)"
fi

if [ $fails -ne 0 ]; then
    echo "$fails failure(s)" >&2
    exit 1
fi
echo "all khgen tests passed"
