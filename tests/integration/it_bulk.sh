# Bulk registration (issue 3) through the business API and the drop folder:
# valid files load exactly; broken files change nothing and the report names
# each bad line; a duplicate is a no-op; a full file deletes absent persons;
# every change-reason sample loads; kill -9 mid-load leaves nothing and a
# resent file then loads once; progress is visible while a file loads.
# Needs the fresh stack the ctest fixture brings up (full files and fixed seeds).
. "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GEN=$KH_BUILD/tools/khgen
DROP=$KH_STACK/drop-gw-a/131016
replica_count() { sql kh_gw_a "SELECT count(*) FROM t_131016.replica"; }
tax() { client 131016 tax --timeout-ms 120000 "$@"; }

# wait_drop NAME: waits until a dropped file has been handled; prints where it went
wait_drop() {
    for _ in $(seq 1 600); do
        for w in done rejected; do
            [ -f "$DROP/$w/$1.result" ] && { echo "$w"; return 0; }
        done
        sleep 0.1
    done
    echo timeout
}

# --- a valid full file through the API ------------------------------------
"$GEN" residents --count 1500 --seed 41 --items TK001,TK002 --as-of 20260401 --out "$tmp/r" >/dev/null
f=$tmp/r/TK001_full_20260401.csv
records=$(($(wc -l <"$f") - 1))
before=$(replica_count)
out=$(tax bulk TK001 full 20260401 "$f")
expect_contains "a valid full file is applied" "OK APPLIED records=$records" "$out"
expect_eq "every record became a version" $((before + records)) "$(replica_count)"
file_id=$(sed -n 's/.* file=\([0-9]*\).*/\1/p' <<<"$out")

# the values stored are exactly the file's: compare a sample of rows
row=$(sed -n '2p' "$f")
lid=${row%%,*}
stored=$(sql kh_gw_a "SELECT data->>'total_income' FROM t_131016.replica WHERE batch_id = $file_id AND local_id = '$lid'")
col=$(head -n 1 "$f" | tr ',' '\n' | grep -nx total_income | cut -d: -f1)
expect_eq "a stored value equals the file's" "$(cut -d, -f"$col" <<<"$row")" "$stored"
mism=0
while IFS= read -r line; do
    l=${line%%,*}
    want=$(cut -d, -f"$col" <<<"$line")
    got=$(sql kh_gw_a "SELECT data->>'total_income' FROM t_131016.replica WHERE batch_id = $file_id AND local_id = '$l'")
    [ "$want" = "$got" ] || mism=$((mism + 1))
done < <(sed -n '2~97p' "$f")
expect_eq "sampled rows all stored exactly" 0 "$mism"

# --- the same file again: applied once -------------------------------------
out=$(tax bulk TK001 full 20260401 "$f")
expect_contains "the same file sent twice is a no-op" "OK DUPLICATE" "$out"
expect_contains "and names the first application" "file=$file_id" "$out"
expect_eq "nothing was added" $((before + records)) "$(replica_count)"

# --- answers come from the bulk data, as of a date --------------------------
res=$(awk -F'\t' -v l="$lid" '$1 == l {print $3}' "$tmp/r/persons.tsv")
client 131016 tax linkcode "$lid" "$res" >/dev/null
client 271004 childallowance linkcode 8"${lid:1}" "$res" >/dev/null
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 8"${lid:1}")
expect_contains "a query is answered from bulk-loaded data" "TK001.total_income=$stored" "$out"

# --- a full snapshot deletes persons absent from it -------------------------
gone=$(sed -n '3p' "$f" | cut -d, -f1)
{ head -n 2 "$f"; tail -n +4 "$f"; } >"$tmp/snapshot.csv"
out=$(tax bulk TK001 full 20260501 "$tmp/snapshot.csv")
expect_contains "a second snapshot is applied" "deleted_absent=1 " "$out"
expect_eq "the absent person's item ends as of the snapshot's date" "true 2026-05-01" \
    "$(sql kh_gw_a "SELECT deleted || ' ' || effective_from FROM t_131016.replica WHERE local_id = '$gone' AND item_code = 'TK001' ORDER BY version DESC LIMIT 1")"

# --- history rows: answers give the version in force at the date asked ------
"$GEN" residents --count 300 --seed 43 --items TK001 --as-of 20260401 --history --out "$tmp/h" >/dev/null
hf=$tmp/h/TK001_hist.csv
sed '2,$s/^1/71/' "$tmp/h/TK001_full_20260401.csv" >"$hf" # own local IDs, order kept
out=$(tax bulk TK001 diff 20260401 "$hf")
expect_contains "a file with history rows is applied" "OK APPLIED" "$out"
hp=$(tail -n +2 "$hf" | cut -d, -f1 | uniq -d | head -n 1)
check "the history file has a person with several versions" test -n "$hp"
first=$(grep "^$hp," "$hf" | head -n 1)
last=$(grep "^$hp," "$hf" | tail -n 1)
e1=$(cut -d, -f2 <<<"$first") e2=$(cut -d, -f2 <<<"$last")
hres=18$(printf '%09d' $(((RANDOM * 32768 + RANDOM) % 1000000000)))
client 131016 tax linkcode "$hp" "$hres" >/dev/null
client 271004 childallowance linkcode 6"${hp:2}" "$hres" >/dev/null
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 6"${hp:2}" "$e1")
expect_contains "as of the first row's date: the first row's income" \
    "TK001.total_income=$(cut -d, -f"$col" <<<"$first")" "$out"
out=$(client 271004 childallowance query O-CA-001 JT001 131016 TK001 6"${hp:2}" "$e2")
expect_contains "as of the last row's date: the last row's income" \
    "TK001.total_income=$(cut -d, -f"$col" <<<"$last")" "$out"

# --- broken files: nothing changes, the report names each bad line ----------
"$GEN" broken --seed 5 --out "$tmp/b" >/dev/null
before=$(replica_count)
nbroken=0
# all dropped at once (written under another name, then renamed), checked after
while IFS=$'\t' read -r name item mode _; do
    [ "$name" = file ] && continue
    drop=${item}_${mode}_20260401_${name%.csv}.csv
    cp "$tmp/b/$name" "$DROP/in/.$drop.tmp" && mv "$DROP/in/.$drop.tmp" "$DROP/in/$drop"
done <"$tmp/b/broken.tsv"
while IFS=$'\t' read -r name item mode _; do
    [ "$name" = file ] && continue
    nbroken=$((nbroken + 1))
    drop=${item}_${mode}_20260401_${name%.csv}.csv
    where=$(wait_drop "$drop")
    expect_eq "$name is rejected" rejected "$where"
    got=$(tail -n +2 "$DROP/rejected/$drop.report" | cut -d, -f1-3 | sort)
    want=$(sort "$tmp/b/${name%.csv}.expect")
    expect_eq "$name: the report names exactly the expected lines and codes" "$want" "$got"
done <"$tmp/b/broken.tsv"
check "there were broken files to try ($nbroken)" test "$nbroken" -ge 15
expect_eq "broken files changed nothing" "$before" "$(replica_count)"

# through the API, a rejected file returns the same report
bf=$(awk -F'\t' '$2 == "TK001" && $1 != "file" {print $1; exit}' "$tmp/b/broken.tsv")
out=$(tax bulk TK001 diff 20260401 "$tmp/b/$bf")
expect_contains "the API refuses a broken file" "REFUSED KH-1100" "$out"
expect_contains "with the report" "line,field,code,reason" "$out"
expect_eq "the API's report is exactly khcheck's report" \
    "$("$KH_BUILD/tools/khcheck" TK001 "$tmp/b/$bf" 2>/dev/null)" \
    "$(sed -n '/^line,field,code,reason$/,$p' <<<"$out")"

# --- the drop folder reads plain files only ----------------------------------
ln -s "$f" "$DROP/in/TK001_diff_20260401_link.csv"
mkfifo "$DROP/in/TK001_diff_20260401_fifo.csv"
for _ in $(seq 1 100); do
    [ -e "$DROP/in/TK001_diff_20260401_link.csv" ] || [ -e "$DROP/in/TK001_diff_20260401_fifo.csv" ] || break
    sleep 0.1
done
check "a symbolic link dropped is set aside in rejected/, not followed" \
    test -L "$DROP/rejected/TK001_diff_20260401_link.csv"
check "a FIFO dropped is set aside in rejected/, not read" \
    test -p "$DROP/rejected/TK001_diff_20260401_fifo.csv"

# --- every change-reason sample loads ---------------------------------------
"$GEN" changes --seed 9 --out "$tmp/c" >/dev/null
n=0
for cf in "$tmp"/c/TK002_diff_*.csv; do
    name=$(basename "$cf")
    cp "$cf" "$DROP/in/.$name.tmp" && mv "$DROP/in/.$name.tmp" "$DROP/in/$name"
done
for cf in "$tmp"/c/TK002_diff_*.csv; do
    name=$(basename "$cf")
    expect_eq "change sample $name is applied" done "$(wait_drop "$name")"
    grep -q '^state=APPLIED' "$DROP/done/$name.result" || fail "$name: not APPLIED"
    n=$((n + 1))
done
check "there is a sample for every change reason ($n)" test "$n" -ge 9

# --- kill -9 in the middle of a load, then resend ---------------------------
"$GEN" residents --count 400000 --seed 77 --items TK001 --as-of 20260601 --out "$tmp/k" >/dev/null
big=$tmp/k/TK001_full_20260601.csv
bigrec=$(($(wc -l <"$big") - 1))
before=$(replica_count)
tax bulk TK001 diff 20260601 "$big" >"$tmp/k.out" 2>"$tmp/k.err" &
cpid=$!
seen=0
for _ in $(seq 1 600); do
    if grep -qE 'LOADING [1-9][0-9]* records read' "$tmp/k.out"; then seen=1; break; fi
    sleep 0.05
done
check "progress is visible while the file loads" test "$seen" = 1
kill -9 "$(cat "$KH_STACK/run/gw-a.pid")"
wait "$cpid" || true
expect_eq "killed mid-load: nothing of the file was applied" "$before" "$(replica_count)"
kid=$(cat "$tmp/k.out" "$tmp/k.err" | grep -o 'upload [0-9a-f]\{32\} opened' | cut -d' ' -f2 || true)
check "the client printed the upload's id" test -n "$kid"
expect_eq "the upload outlives its node: it is LOADING in the database" "LOADING" \
    "$(sql kh_gw_a "SELECT state FROM t_131016.bulk_upload WHERE upload_id = '$kid'")"
# restarted, the gateway finds the load whose lease ran out and loads it again
"$KH_ROOT/tools/khstack" up "$KH_STACK" >/dev/null
st=""
for _ in $(seq 1 300); do
    st=$(sql kh_gw_a "SELECT state || ' ' || attempts || ' ' || records FROM t_131016.bulk_upload WHERE upload_id = '$kid'")
    case $st in APPLIED*) break ;; esac
    sleep 0.2
done
expect_eq "the interrupted upload is loaded again without being resent" "APPLIED 2 $bigrec" "$st"
expect_eq "exactly once" $((before + bigrec)) "$(replica_count)"
expect_eq "its parts are gone with the outcome" 0 \
    "$(sql kh_gw_a "SELECT count(*) FROM t_131016.bulk_upload_part WHERE upload_id = '$kid'")"
printf '\x0a\x20%s' "$kid" >"$tmp/k.status"
"$KH_ROOT/tools/khstack" client "$KH_STACK" 131016 tax post /v1/bulk/status "$tmp/k.status" \
    application/x-protobuf "$tmp/k.st" >/dev/null 2>&1 || true
check "its status reads APPLIED through the API" grep -aq APPLIED "$tmp/k.st"
out=$(tax bulk TK001 diff 20260601 "$big" 2>/dev/null)
expect_contains "and sending it again is a no-op" "OK DUPLICATE" "$out"

# Slots (issue 11, class 5): finished uploads hold none, and one business
# system cannot take all of its tenant's. Uploads are opened and committed by
# hand (khclient post) so that some stay open.
sdir=$(mktemp -d)
open_upload() { # prints the upload id, or the refusal
    printf '\x0a\x05TK001\x12\x04diff\x1a\x0820260601\x22\x05s.csv' >"$sdir/open"
    local out
    out=$("$KH_ROOT/tools/khstack" client "$KH_STACK" 131016 tax post /v1/bulk/open "$sdir/open" \
        application/x-protobuf "$sdir/resp" 2>&1) || true
    case $out in OK*) grep -ao '[0-9a-f]\{32\}' "$sdir/resp" | head -n 1 ;; *) echo "$out" ;; esac
}
commit_empty() { # an upload without parts: rejected by its check, so finished
    printf '\x0a\x20%s\x12\x40%s' "$1" e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 \
        >"$sdir/commit"
    "$KH_ROOT/tools/khstack" client "$KH_STACK" 131016 tax post /v1/bulk/commit "$sdir/commit" 2>&1 || true
    printf '\x0a\x20%s' "$1" >"$sdir/status"
    for _ in $(seq 1 100); do
        "$KH_ROOT/tools/khstack" client "$KH_STACK" 131016 tax post /v1/bulk/status "$sdir/status" \
            application/x-protobuf "$sdir/st" >/dev/null 2>&1 || true
        grep -aqE 'REJECTED|APPLIED|FAILED|DUPLICATE' "$sdir/st" 2>/dev/null && return 0
        sleep 0.05
    done
}
ok=0
for i in $(seq 1 12); do
    id=$(open_upload)
    [[ $id =~ ^[0-9a-f]{32}$ ]] && ok=$((ok + 1))
    commit_empty "$id" >/dev/null
done
expect_eq "twelve uploads one after another, each finished before the next, all open" 12 "$ok"
ids=()
for i in 1 2 3 4; do ids+=("$(open_upload)"); done
check "one system opens four uploads at once" bash -c '[[ "$*" =~ ^([0-9a-f]{32} ?){4}$ ]]' _ "${ids[*]}"
out=$(open_upload)
expect_contains "a fifth is refused while they are open" "REFUSED KH-5003" "$out"
expect_contains "... naming the system's limit" "this business system has 4 uploads in progress" "$out"
for id in "${ids[@]}"; do commit_empty "$id" >/dev/null; done
for _ in $(seq 1 50); do
    id=$(open_upload)
    [[ $id =~ ^[0-9a-f]{32}$ ]] && break
    sleep 0.1
done
check "once they have finished, the system opens again" bash -c '[[ $1 =~ ^[0-9a-f]{32}$ ]]' _ "$id"
commit_empty "$id" >/dev/null
rm -rf "$sdir"
finish
