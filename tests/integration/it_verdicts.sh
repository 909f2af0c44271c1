# Table-driven verdicts (issue 4): legal basis x job role x system permission
# x hold x non-disclosure x subject, seen at the asking gateway (its business
# API, through khclient), at the answering gateway (khforge signing as the
# router, straight to its peer API: queries the asking side would never send)
# and at the router (khforge as the asker's gateway). verdicts/rules.tsv says
# what each scenario does, verdicts/expected.tsv what it must lead to at each
# end and what each end records; their heading comments explain the columns.
# One line per scenario:
#   ok    ID
#   FAIL  ID: COLUMN expected [..] got [..]; ...
#   xfail ID: a known bug (its note starts with BUG) still shows exactly the
#         wrong outcome its note records after "shows:": not a failure
#   FAIL  ID: XPASS ... a known bug no longer shows: take BUG out of its note
# Usage: it_verdicts.sh            run every scenario against the stack (ctest)
#        it_verdicts.sh --check [RULES EXPECTED]   only read and check the files
# KH_VERDICTS_ONLY=REGEX runs only the scenarios whose id matches REGEX.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RULES=$HERE/verdicts/rules.tsv
EXPECTED=$HERE/verdicts/expected.tsv
CHECK_ONLY=0
if [ "${1:-}" = --check ]; then
    CHECK_ONLY=1
    [ $# -ge 3 ] && RULES=$2 EXPECTED=$3
fi

# ----------------------------------------------------------- the network
# Where each organisation lives, how its people are numbered (local ID =
# prefix + 8 digits of the scenario's person), which of its systems obtains
# link codes, and which registers each item it holds.
declare -A GW=([131016]=gw-a [271004]=gw-a [N00001]=gw-b [130001]=gw-b [S00001]=gw-b)
# the database of each organisation's schema (S00001: its tenant_db of gw-b)
declare -A DBOF=([131016]=kh_gw_a [271004]=kh_gw_a [N00001]=kh_gw_b [130001]=kh_gw_b [S00001]=kh_gw_b2)
declare -A PREFIX=([131016]=1 [271004]=2 [N00001]=3 [130001]=4 [S00001]=5)
declare -A LINKSYS=([131016]=tax [271004]=childallowance [N00001]=pension [130001]=welfare
    [S00001]=loans)
declare -A REGSYS=([131016:TK001]=tax [131016:TK002]=resident [131016:TK003]=childallowance
    [271004:TK001]=tax [N00001:TK008]=pension)
# A full synthetic record per item, so that minimisation has fields to drop.
declare -A FIELDS=(
    [TK001]="fiscal_year=2025 annual_tax=190000 municipal_tax_income=110000 prefectural_tax=75000 total_income=3800000 separate_income=120000 deduction_medical=40000 spouse_category=1 dependents[1].relation=01 dependents[1].birth_date=20150505 dependents[1].dependent_category=1"
    [TK002]="household_no=0000054321 relation=01 municipality_code=131016 move_in_date=20200401 change_reason=A1 change_date=20200401 resident_status=1 remarks=synthetic name_kana=テスト"
    [TK003]="recognition_status=1 recognition_date=20240401 monthly_amount=10000 payment_start_month=202405 children[1].child_birth_date=20150505 children[1].child_order=1"
    [TK008]="pension_no=1234567890 pension_type=11 entitlement_date=20200401 annual_amount=780000 payment_status=1 payee_name_kana=テスト payments[1].payment_month=202504 payments[1].payment_amount=65000"
)

# ------------------------------------------------------ reading the tables
RULE_COLS=(id via asker system staff procedure provider items subject data flags)
EXP_COLS=(id asker answerer withheld items query asker_prov asker_access router answerer_prov
    answerer_access note)
# the observed columns, in the order they are compared
CMP_COLS=(asker answerer withheld items query asker_prov asker_access router answerer_prov
    answerer_access)
IDS=()
declare -A R E

table_die() { # FILE LINE-NUMBER MESSAGE [LINE]
    printf 'it_verdicts: %s:%s: %s\n' "$1" "$2" "$3" >&2
    [ -z "${4:-}" ] || printf '  the line: %s\n' "$4" >&2
    exit 2
}

CODE='[0-9A-Z]{1,16}'
CODES="$CODE(,$CODE)*"
INTERVAL='\[-?[0-9]{1,4},(-?[0-9]{1,4})?\)'
ROLES="(-|[A-Z0-9]{1,16}$INTERVAL(\+[A-Z0-9]{1,16}$INTERVAL)*)"
SCOPE="(person|other|proc|proc=$CODE|item=$CODE)"
FLAG="(hold|nd):$SCOPE(\+$SCOPE)*($INTERVAL)?(/revoked)?"
REC='[a-z_]+(/KH-[0-9]{4})?'

# check_value FILE LINE KIND(R|E) COLUMN VALUE LINE-TEXT: the column's syntax
check_value() {
    local f=$1 n=$2 col=$4 v=$5 re
    case $3.$col in
    ?.id) re='[A-Za-z0-9][A-Za-z0-9.+_-]{0,47}' ;;
    R.via) re='(biz|router|peer(@gw-[ab])?)' ;;
    R.asker | R.provider) re='[0-9A-Z]{6}' ;;
    R.system) re='(-|[a-z0-9-]{1,32})' ;;
    R.staff)
        re='(-|[!-~]{1,64})'
        [[ $v == new:* || $v == inactive:* ]] && re="(new|inactive):$ROLES" ;;
    R.procedure) re=$CODE ;;
    R.items) re=$CODES ;;
    R.subject) re='(person|no-link|unknown)' ;;
    R.data) re="(-|asked|$CODES)" ;;
    R.flags) re="(-|$FLAG(;$FLAG)*)" ;;
    E.asker) re='(-|sent|KH-[0-9]{4})' ;;
    E.answerer) re='(-|FOUND|NOT_FOUND|WITHHELD|PENDING|KH-[0-9]{4})' ;;
    E.withheld | E.items) re="(-|$CODES)" ;;
    E.query | E.asker_prov | E.router | E.answerer_prov | E.asker_access | E.answerer_access)
        re="(-|$REC(,$REC)*)" ;;
    E.note) re='.+' ;;
    *) table_die "$f" "$n" "unknown column $col" ;;
    esac
    [[ $v =~ ^$re$ ]] || table_die "$f" "$n" "column '$col': '$v' is not valid" "$6"
}

# read_table FILE KIND(R|E) COLUMNS...: fields are separated by one or more
# tabs (so columns can be aligned); '#' lines and blank lines are skipped;
# the first other line is the header.
read_table() {
    local f=$1 kind=$2 n=0 line header_seen=0 i id
    shift 2
    local cols=("$@") fields
    [ -r "$f" ] || table_die "$f" 0 "cannot read the file"
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
        [[ $line == *' '$'\t'* || $line == *$'\t'' '* || $line == ' '* ]] &&
            table_die "$f" "$n" "a blank next to a tab: separate columns with tabs only" "$line"
        IFS=$'\t' read -r -a fields <<<"$line"
        if [ $header_seen = 0 ]; then
            [ "${fields[*]}" = "${cols[*]}" ] ||
                table_die "$f" "$n" "the header must be: ${cols[*]} (tab-separated)" "$line"
            header_seen=1
            continue
        fi
        [ ${#fields[@]} -eq ${#cols[@]} ] ||
            table_die "$f" "$n" "${#fields[@]} columns, expected ${#cols[@]} (${cols[*]}; '-' for none)" "$line"
        id=${fields[0]}
        for i in "${!cols[@]}"; do
            check_value "$f" "$n" "$kind" "${cols[$i]}" "${fields[$i]}" "$line"
        done
        if [ "$kind" = R ]; then
            [ -z "${R[$id|via]:-}" ] || table_die "$f" "$n" "scenario $id is listed twice" "$line"
            IDS+=("$id")
            R[$id|line]=$n
        else
            [ -n "${R[$id|via]:-}" ] || table_die "$f" "$n" "scenario $id is not in $RULES" "$line"
            [ -z "${E[$id|asker]:-}" ] || table_die "$f" "$n" "scenario $id is listed twice" "$line"
        fi
        for i in "${!cols[@]}"; do
            if [ "$kind" = R ]; then R[$id|${cols[$i]}]=${fields[$i]}; else E[$id|${cols[$i]}]=${fields[$i]}; fi
        done
    done <"$f"
    [ $header_seen = 1 ] || table_die "$f" "$n" "no header line"
}

# What the rules' columns must agree on beyond their syntax.
check_rule() {
    local id=$1 f=$RULES n=${R[$1|line]} via=${R[$1|via]} a=${R[$1|asker]} p=${R[$1|provider]}
    local s=${R[$1|subject]} d=${R[$1|data]} item
    local bad=
    case $via in
    biz)
        [ -n "${GW[$a]:-}" ] || bad="asker $a is not hosted by the network"
        [ "${R[$id|system]}" != - ] || bad="a biz scenario names the asker's business system" ;;
    router)
        [ -n "${GW[$a]:-}" ] || bad="asker $a is not hosted: the router knows only hosted senders"
        [ "$s" = person ] || bad="via router needs subject person (the asker's link code)" ;;
    peer*)
        [ -n "${GW[$p]:-}" ] || bad="provider $p is not hosted: nothing answers on a peer API" ;;
    esac
    [[ $via == biz || ${R[$id|system]} == - ]] || bad="system must be - unless via is biz"
    [[ $via == biz || ${R[$id|staff]} != new:* && ${R[$id|staff]} != inactive:* ]] ||
        bad="only biz scenarios make staff members"
    [[ $s != no-link || $via == biz ]] || bad="subject no-link is for biz scenarios"
    if [ "$d" != - ]; then
        [ "$s" = person ] || bad="data needs subject person (the provider must know the person)"
        [ "$d" = asked ] && d=${R[$id|items]}
        for item in ${d//,/ }; do
            [ -n "${REGSYS[$p:$item]:-}" ] || bad="no system of $p registers $item (see REGSYS)"
        done
    fi
    [[ ${R[$id|flags]} == - || -n ${GW[$p]:-} ]] || bad="flags need a hosted provider"
    [[ $via != biz || ${R[$id|staff]} != - ]] || bad="a biz scenario needs a staff member"
    [ -z "$bad" ] || table_die "$f" "$n" "scenario $id: $bad"
}

read_table "$RULES" R "${RULE_COLS[@]}"
read_table "$EXPECTED" E "${EXP_COLS[@]}"
for id in "${IDS[@]}"; do
    check_rule "$id"
    [ -n "${E[$id|asker]:-}" ] || table_die "$EXPECTED" "-" "scenario $id (rules line ${R[$id|line]}) has no expected line"
done
if [ $CHECK_ONLY = 1 ]; then
    printf 'it_verdicts: %d scenarios, both files well-formed\n' ${#IDS[@]}
    exit 0
fi

# ------------------------------------------------------------ the stack
. "$HERE/lib.sh"
STARTED=$SECONDS
T=$(mktemp -d "${TMPDIR:-/tmp}/kh-it-verdicts.XXXXXX")
GLOBAL_FLAGS=() # "DB ORG IDS" of flags in force for everyone: revoked on exit
revoke_global() {
    local g db org ids
    for g in ${GLOBAL_FLAGS[@]+"${GLOBAL_FLAGS[@]}"}; do
        read -r db org ids <<<"$g"
        sql "$db" "UPDATE t_${org,,}.answer_flag SET revoked_at = now(), revoked_by = 'it_verdicts' WHERE id IN ($ids) AND revoked_at IS NULL" >/dev/null || true
    done
    GLOBAL_FLAGS=()
}
trap 'revoke_global; rm -rf "$T"' EXIT
FORGE=$KH_BUILD/tools/khforge
ROUTER=127.0.0.1:$KH_PORT_BASE
declare -A PEER_PORT=([gw-a]=$((KH_PORT_BASE + 12)) [gw-b]=$((KH_PORT_BASE + 22)))
mkdir -p "$T/out" "$T/batch"

if [ -n "${KH_VERDICTS_ONLY:-}" ]; then
    sel=()
    for id in "${IDS[@]}"; do [[ $id =~ $KH_VERDICTS_ONLY ]] && sel+=("$id"); done
    IDS=(${sel[@]+"${sel[@]}"})
fi

# spawn COMMAND...: in the background, at most 8 jobs at once
spawn() {
    while [ "$(jobs -rp | wc -l)" -ge 8 ]; do wait -n || true; done
    "$@" &
}

# ---------------------------------------------------- people and setup
# A fresh person per scenario; local IDs derived from lib.sh's new_person.
declare -A SEEN P
RUN=$(printf '%05d' $((RANDOM % 100000)))
nstaff=0
for id in "${IDS[@]}"; do
    while :; do
        new_person
        k=${RESIDENT:2:8}
        [ -z "${SEEN[$k]:-}" ] && break
    done
    SEEN[$k]=1
    P[$id|resident]=$RESIDENT
    P[$id|digits]=$k
    P[$id|alocal]=${PREFIX[${R[$id|asker]}]:-9}$k
    P[$id|plocal]=${PREFIX[${R[$id|provider]}]:-9}$k
    staff=${R[$id|staff]}
    if [[ $staff == new:* || $staff == inactive:* ]]; then
        nstaff=$((nstaff + 1))
        P[$id|staff]=V$RUN-$nstaff
    else
        P[$id|staff]=$staff
    fi
done

# add_batch ORG SYSTEM LINE [ID]: one command for a batch of that business
# system; batches of at most 16 commands, so that they run side by side.
# GROUP[FILE] lists the scenario ids of a batch's commands.
declare -A NLINES GROUP
add_batch() {
    local n=${NLINES[$1 $2]:-0} f
    f="$T/batch/$1 $2 $((n / 16))"
    NLINES[$1 $2]=$((n + 1))
    printf '%s\n' "$3" >>"$f"
    [ -z "${4:-}" ] || GROUP[$(basename "$f")]+="$4 "
}
for id in "${IDS[@]}"; do
    a=${R[$id|asker]} p=${R[$id|provider]} s=${R[$id|subject]} d=${R[$id|data]}
    res=${P[$id|resident]}
    if [[ $s != no-link && ${R[$id|via]} != peer* ]]; then
        add_batch "$a" "${LINKSYS[$a]}" "linkcode ${P[$id|alocal]} $res"
    fi
    if [ "$s" = person ] && [ -n "${GW[$p]:-}" ]; then
        add_batch "$p" "${LINKSYS[$p]}" "linkcode ${P[$id|plocal]} $res"
    fi
    [ "$d" = asked ] && d=${R[$id|items]}
    [ "$d" = - ] && continue
    for item in ${d//,/ }; do
        add_batch "$p" "${REGSYS[$p:$item]}" "register ${P[$id|plocal]} $item 20250101 ${FIELDS[$item]}"
    done
done
# organisations that are not in the directory but send forged queries get
# certificates from the national CA (khpki is idempotent)
for id in "${IDS[@]}"; do
    a=${R[$id|asker]}
    if [ -z "${GW[$a]:-}" ] && [[ ${R[$id|via]} == peer* ]]; then
        "$KH_ROOT/tools/khpki" org "$PKI" "$a" >/dev/null
    fi
done
run_batch() { # FILE: the batch of business system "ORG SYSTEM" -> res/FILE.out, .err
    local f=$1 org sys o
    o=$T/res/$(basename "$f")
    read -r org sys _ <<<"$(basename "$f")"
    "$KH_ROOT/tools/khstack" client "$KH_STACK" "$org" "$sys" batch <"$f" >"$o.out" 2>"$o.err" || true
}
run_batches() {
    local f
    rm -rf "$T/res" && mkdir "$T/res"
    for f in "$T"/batch/*; do [ -e "$f" ] && spawn run_batch "$f"; done
    wait
}
run_batches
for f in "$T"/batch/*; do
    [ -e "$f" ] || continue
    o=$T/res/$(basename "$f")
    [ "$(grep -c '^END ' "$o.out")" -eq "$(wc -l <"$f")" ] && ! grep -q '^END [^0]' "$o.out" && continue
    printf 'FAIL setup: the batch of %s did not go through:\n' "$(basename "$f")"
    grep -v '^END 0' "$o.out" | head -5
    head -5 "$o.err"
    exit 1
done

# staff members made for the run, and the flags that name a person: one
# transaction per database, as each tenant's role
declare -A SETUP_SQL
sql_add() { SETUP_SQL[$1]+="SET ROLE kh_t_${2,,}; $3 RESET ROLE;"$'\n'; }
# interval_sql "[F,T)" -> "current_date + F, current_date + T|NULL"
interval_sql() {
    local iv=${1#\[} from to
    iv=${iv%)}
    from=${iv%,*} to=${iv#*,}
    printf 'current_date + (%d), %s' "$from" "$( [ -n "$to" ] && printf 'current_date + (%d)' "$to" || printf NULL)"
}
staff_sql() { # ID: INSERTs for a staff member made for the run
    local id=$1 spec=${R[$1|staff]} org=${R[$1|asker]} sid=${P[$1|staff]} active=true r role iv out
    [[ $spec == inactive:* ]] && active=false
    spec=${spec#*:}
    out="INSERT INTO t_${org,,}.staff VALUES ('$sid', 'Staff $sid (synthetic, it_verdicts)', $active);"
    if [ "$spec" != - ]; then
        for r in ${spec//+/ }; do
            role=${r%%\[*} iv=${r#"$role"}
            out+=" INSERT INTO t_${org,,}.staff_role VALUES ('$sid', '$role', $(interval_sql "$iv"));"
        done
    fi
    printf '%s' "$out"
}
# flag_sql ID SPEC: the INSERT of one flag at the provider
flag_sql() {
    local id=$1 spec=$2 org=${R[$1|provider]} kind scopes iv="" revoked=0 s lid=NULL item=NULL proc=NULL
    kind=${spec%%:*}
    scopes=${spec#*:}
    [[ $scopes == */revoked ]] && revoked=1 scopes=${scopes%/revoked}
    if [[ $scopes == *\[* ]]; then iv=[${scopes#*\[}; scopes=${scopes%%\[*}; fi
    for s in ${scopes//+/ }; do
        case $s in
        person) lid="'${P[$id|plocal]}'" ;;
        other) lid="'8${P[$id|digits]}'" ;;
        proc) proc="'${R[$id|procedure]}'" ;;
        proc=*) proc="'${s#proc=}'" ;;
        item=*) item="'${s#item=}'" ;;
        esac
    done
    [ "$kind" = nd ] && kind=nondisclosure
    printf "INSERT INTO t_%s.answer_flag (kind, local_id, item_code, procedure, reason, valid_from, valid_to, created_by, revoked_by, revoked_at) VALUES ('%s', %s, %s, %s, 'it_verdicts %s %s', %s, 'it_verdicts', %s, %s) RETURNING id;" \
        "${org,,}" "$kind" "$lid" "$item" "$proc" "$RUN" "$id" "$( [ -n "$iv" ] && interval_sql "$iv" || printf 'current_date, NULL')" \
        "$( [ $revoked = 1 ] && printf "'it_verdicts'" || printf NULL)" "$( [ $revoked = 1 ] && printf 'now()' || printf NULL)"
}
is_global() { # ID: a flag that applies to every person
    local spec
    [ "${R[$1|flags]}" = - ] && return 1
    for spec in ${R[$1|flags]//;/ }; do
        [[ $spec == *:*person* || $spec == *:*other* ]] || return 0
    done
    return 1
}
PHASE1=() PHASE2=()
for id in "${IDS[@]}"; do
    if [[ ${R[$id|staff]} == new:* || ${R[$id|staff]} == inactive:* ]]; then
        sql_add "${DBOF[${R[$id|asker]}]}" "${R[$id|asker]}" "$(staff_sql "$id")"
    fi
    if is_global "$id"; then
        PHASE2+=("$id")
        continue
    fi
    PHASE1+=("$id")
    if [ "${R[$id|flags]}" != - ]; then
        for spec in ${R[$id|flags]//;/ }; do
            sql_add "${DBOF[${R[$id|provider]}]}" "${R[$id|provider]}" "$(flag_sql "$id" "$spec")"
        done
    fi
done
for db in "${!SETUP_SQL[@]}"; do
    sql "$db" "BEGIN; ${SETUP_SQL[$db]} COMMIT;" >/dev/null
done

# link codes for the forged queries: the provider's (peer) or the asker's (router)
declare -A LINK
want_links() {
    local id org lid
    for id in "${IDS[@]}"; do
        case ${R[$id|via]} in
        peer*) org=${R[$id|provider]} lid=${P[$id|plocal]} ;;
        router) org=${R[$id|asker]} lid=${P[$id|alocal]} ;;
        *) continue ;;
        esac
        [ "${R[$id|subject]}" = person ] && printf '%s %s\n' "${DBOF[$org]}" "t_${org,,}:$lid"
    done
}
while read -r db list; do
    q=""
    for x in $list; do
        q+="${q:+ UNION ALL }SELECT '${x#*:}', link_code FROM ${x%%:*}.linkcode WHERE local_id = '${x#*:}'"
    done
    while IFS='|' read -r lid code; do LINK[$lid]=$code; done < <(sql "$db" "$q")
done < <(want_links | awk '{a[$1] = a[$1] " " $2} END {for (d in a) print d, a[d]}')

# ------------------------------------------------------------- queries
forge_one() { # ID: a forged query, output in out/ID
    local id=$1 via=${R[$1|via]} a=${R[$1|asker]} p=${R[$1|provider]} subject to as sign gw
    if [ "${R[$id|subject]}" = unknown ]; then
        subject=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    elif [ "$via" = router ]; then
        subject=${LINK[${P[$id|alocal]}]}
    else
        subject=${LINK[${P[$id|plocal]}]}
    fi
    if [ "$via" = router ]; then
        to=$ROUTER as=${GW[$a]} sign=$a
    else
        gw=${GW[$p]}
        [[ $via == peer@* ]] && gw=${via#peer@}
        to=127.0.0.1:${PEER_PORT[$gw]} as=router sign=ROUTER
    fi
    local staff=${P[$id|staff]}
    [ "$staff" = - ] && staff=
    "$FORGE" --pki "$PKI" --to "$to" --as "$as" --sign-as "$sign" --sender "$a" --recipient "$p" \
        --procedure "${R[$id|procedure]}" --items "${R[$id|items]}" --subject "$subject" \
        --staff "$staff" >"$T/out/$id" 2>&1 || true
}
query_line() { # ID: the khclient command of a biz scenario
    printf 'query %s %s %s %s %s\n' "${P[$1|staff]}" "${R[$1|procedure]}" "${R[$1|provider]}" \
        "${R[$1|items]}" "${P[$1|alocal]}"
}
# phase 1: every scenario whose flags name a person (or none), all at once;
# biz scenarios in one batch per business system
rm -f "$T"/batch/*
NLINES=()
for id in ${PHASE1[@]+"${PHASE1[@]}"}; do
    if [ "${R[$id|via]}" = biz ]; then
        add_batch "${R[$id|asker]}" "${R[$id|system]}" "$(query_line "$id")" "$id"
    else
        spawn forge_one "$id"
    fi
done
run_batches
for g in ${GROUP[@]+"${!GROUP[@]}"}; do
    awk -v dir="$T/out" -v ids="${GROUP[$g]}" '
        BEGIN { n = split(ids, id, " "); i = 1 }
        /^END [0-9]+$/ { i++; next }
        i <= n { print > (dir "/" id[i]) }' "$T/res/$g.out"
done
# phase 2: flags in force for everyone, one scenario at a time
for id in ${PHASE2[@]+"${PHASE2[@]}"}; do
    p=${R[$id|provider]} db=${DBOF[${R[$id|provider]}]} q=""
    for spec in ${R[$id|flags]//;/ }; do q+="$(flag_sql "$id" "$spec") "; done
    ids=$(sql "$db" "SET ROLE kh_t_${p,,}; $q SELECT string_agg(id::text, ',') FROM t_${p,,}.answer_flag WHERE reason = 'it_verdicts $RUN $id'" | tail -1)
    GLOBAL_FLAGS+=("$db $p $ids")
    if [ "${R[$id|via]}" = biz ]; then
        client "${R[$id|asker]}" "${R[$id|system]}" $(query_line "$id") >"$T/out/$id"
    else
        forge_one "$id"
    fi
    revoke_global
done

# ------------------------------------------------------------ observing
# What the client saw: O[ID|handle|result|code|withheld|items|failed], from
# khclient's output (biz) or khforge's (peer, router); lists sorted.
declare -A O
while IFS='|' read -r id handle result code withheld items fields failed; do
    O[$id|handle]=$handle O[$id|result]=$result O[$id|code]=$code O[$id|withheld]=$withheld
    O[$id|items]=$items O[$id|fields]=$fields O[$id|failed]=$failed
done < <(for id in "${IDS[@]}"; do printf '%s\t%s\t%s\n' "$id" "${R[$id|via]}" "$T/out/$id"; done |
    awk -F'\t' '
    function sorted(s,   a, n, i, j, t, out) {
        n = split(s, a, ",")
        for (i = 2; i <= n; i++) {
            t = a[i]
            for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
            a[j + 1] = t
        }
        out = ""
        for (i = 1; i <= n; i++) if (a[i] != "" && a[i] != "-") out = out (out == "" ? "" : ",") a[i]
        return out == "" ? "-" : out
    }
    {
        id = $1; via = $2; f = $3
        handle = result = code = failed = first = send = w = it = fl = ""
        n = 0
        while ((getline line < f) > 0) {
            if (++n == 1) first = line
            if (via == "biz") {
                if (handle == "" && match(line, /handle[= ][0-9a-f]+/) && RLENGTH == 39)
                    handle = substr(line, RSTART + 7, 32)
                if (line ~ /^WITHHELD /) w = w "," substr(line, 10)
                if (line ~ /^ITEM /) { split(line, p, " "); it = it "," p[2] }
                if (match(line, /^  [A-Z0-9]+\.[a-z0-9_]+/)) fl = fl "," substr(line, 3, RLENGTH - 2)
            } else {
                if (line ~ /^MSG /) handle = substr(line, 5)
                if (line ~ /^SEND 1 /) send = line
            }
        }
        close(f)
        if (n == 0) failed = "no output"
        else if (via == "biz") {
            split(first, p, " ")
            if (first ~ /^OK /) result = p[2]
            else if (first ~ /^(PENDING|SENT|TIMED_OUT) /) result = p[1]
            else if (first ~ /^(REFUSED|FAILED) KH-/) code = substr(p[2], 1, 7)
            else failed = first
        } else {
            k = split(send, p, " ")
            if (send ~ /^SEND 1 HTTP 200 ANSWER / && k == 9) {
                result = p[6]; it = substr(p[7], 7); w = substr(p[8], 10); fl = substr(p[9], 8)
            } else if (send ~ /^SEND 1 HTTP [0-9]+ KH-/ && k == 5) code = p[5]
            else failed = send != "" ? send : first
        }
        gsub(/\|/, " ", failed)
        print id "|" handle "|" result "|" code "|" sorted(w) "|" sorted(it) "|" sorted(fl) "|" failed
    }')

# What each end recorded, by message id: REC[MSG|kind|org] (rows in id order)
declare -A REC MSG2ID
inlist=""
for id in "${IDS[@]}"; do
    h=${O[$id|handle]:-}
    [ -n "$h" ] || continue
    MSG2ID[$h]=$id
    inlist+="${inlist:+,}'$h'"
done
CODE_SQL="CASE WHEN code IS NULL OR code = 'OK' THEN '' ELSE '/' || code END"
if [ -n "$inlist" ]; then
    for db in kh_gw_a kh_gw_b kh_gw_b2; do
        q=""
        for org in "${!GW[@]}"; do
            [ "${DBOF[$org]}" = "$db" ] || continue
            s=t_${org,,}
            q+="${q:+ UNION ALL }SELECT 'query', '$org', msg_id, state || coalesce('/' || code, ''), 0::bigint, created_at FROM $s.query WHERE msg_id IN ($inlist)"
            q+=" UNION ALL SELECT 'prov', '$org', msg_id, direction || ' ' || outcome || $CODE_SQL || ' ' || coalesce((SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(provided) k), '-'), id, at FROM $s.provision_record WHERE msg_id IN ($inlist)"
            q+=" UNION ALL SELECT 'access', '$org', msg_id, direction || ' ' || decision || coalesce('/' || code, ''), id, at FROM $s.access_record WHERE msg_id IN ($inlist)"
        done
        while IFS='|' read -r kind org msg text; do
            key="$msg|$kind|$org"
            REC[$key]+="${REC[$key]:+;}$text"
        done < <(sql "$db" "SELECT kind, org, msg_id, text FROM ($q) x(kind, org, msg_id, text, n, at) ORDER BY at, n")
    done
    while IFS='|' read -r msg text; do
        REC[$msg|router|-]+="${REC[$msg|router|-]:+,}$text"
    done < <(sql kh_router "SELECT msg_id, outcome || $CODE_SQL FROM router.query_record WHERE msg_id IN ($inlist) ORDER BY id")
fi

# rows_of COLUMN MSG KIND ORG DIRECTION: OBS[COLUMN] = the outcomes of the
# rows (of that direction; another direction is shown as such),
# comma-separated, or -
rows_of() {
    local v=${REC[$2|$3|$4]:-} out="" r rs
    if [ -n "$v" ]; then
        IFS=';' read -r -a rs <<<"$v"
        for r in "${rs[@]}"; do
            [ "${r%% *}" = "$5" ] || { out+="${out:+,}WRONG-DIRECTION:$r"; continue; }
            r=${r#* }
            out+="${out:+,}${r%% *}"
        done
    fi
    OBS[$1]=${out:--}
}

# What an answer may carry (minimisation): the legal-basis row of an asker
# class, procedure and provider class, LBROW[AC|PROC|PC]; the fields that row
# lets an answer carry of an item, ALLOW[ROW|ITEM] (" f1 f2 "), or when the
# row lists none, every field of the item's layout, LAYOUT[ITEM]. Fields are
# compared by base name (a group's name for its members).
declare -A CLASS LBROW ALLOW LAYOUT
while IFS=, read -r code class _; do CLASS[$code]=$class; done < <(sed -n 's/^org = //p' "$KH_STACK/router.conf")
while read -r row ac proc pc; do LBROW[$ac|$proc|$pc]=$row; done < <(sql kh_router \
    "SELECT id || ' ' || asker_class || ' ' || procedure || ' ' || provider_class FROM router.legal_basis")
while read -r row item fields; do ALLOW[$row|$item]=" $fields "; done < <(sql kh_router \
    "SELECT legal_basis || ' ' || item_code || ' ' || string_agg(field, ' ') FROM router.legal_basis_field
      GROUP BY legal_basis, item_code")
while read -r item fields; do LAYOUT[$item]=" $fields "; done < <(sql kh_gw_a \
    "SELECT f.item_code || ' ' || string_agg(f.name, ' ') FROM kh.item_field f JOIN kh.item i
         ON i.item_code = f.item_code AND i.layout_version = f.layout_version
      WHERE f.group_name IS NULL GROUP BY f.item_code")
[ ${#LBROW[@]} -gt 0 ] && [ ${#ALLOW[@]} -gt 0 ] && [ ${#LAYOUT[@]} -gt 0 ] &&
    [ ${#CLASS[@]} -gt 0 ] || fail "the legal-basis rows, their fields or the layouts could not be read"
# overwide ID ASKER PROVIDER: each field the answer carried that its row does not allow
overwide() {
    local row f allowed out=""
    row=${LBROW[${CLASS[$2]:-?}|${R[$1|procedure]}|${CLASS[$3]:-?}]:-}
    for f in ${O[$1|fields]//,/ }; do
        [ "$f" = - ] && continue
        allowed=${ALLOW[$row|${f%%.*}]:-${LAYOUT[${f%%.*}]:-}}
        [[ $allowed == *" ${f#*.} "* ]] || out+=" the answer carried $f, which row ${row:-?} does not allow;"
    done
    printf '%s' "$out"
}

# ------------------------------------------------------------- verdicts
nbug=0 nfields=0
declare -A OBS
for id in "${IDS[@]}"; do
    via=${R[$id|via]} a=${R[$id|asker]} p=${R[$id|provider]} h=${O[$id|handle]:-}
    OBS=()
    router=-
    [ -n "$h" ] && router=${REC[$h|router|-]:--}
    if [ -n "${O[$id|failed]:-}" ]; then
        OBS[asker]="FAILED(${O[$id|failed]})"
    elif [ "$via" = biz ]; then
        if [ "$router" = - ]; then OBS[asker]=${O[$id|code]:-sent}; else OBS[asker]=sent; fi
    else
        OBS[asker]=-
    fi
    # the router records forwarding, then the outcome
    case $via:${router##*,} in
    peer*) OBS[answerer]=${O[$id|code]:-${O[$id|result]:-?}} ;;
    *:answered | *:pending) OBS[answerer]=${O[$id|result]:-?} ;;
    *:refused_by_provider/*) OBS[answerer]=${router##*/} ;;
    *) OBS[answerer]=- ;;
    esac
    OBS[withheld]=${O[$id|withheld]:--}
    OBS[items]=${O[$id|items]:--}
    OBS[router]=$router
    for c in query asker_prov asker_access answerer_prov answerer_access; do OBS[$c]=-; done
    stray=""
    if [ -n "$h" ]; then
        OBS[query]=${REC[$h|query|$a]:--}
        OBS[query]=${OBS[query]//;/,}
        rows_of asker_prov "$h" prov "$a" asked
        rows_of asker_access "$h" access "$a" business
        rows_of answerer_prov "$h" prov "$p" answered
        rows_of answerer_access "$h" access "$p" peer
        for org in "${!GW[@]}"; do
            [ "$org" = "$a" ] || [ "$org" = "$p" ] && continue
            for k in query prov access; do
                [ -z "${REC[$h|$k|$org]:-}" ] || stray+=" a $k record at $org (${REC[$h|$k|$org]});"
            done
        done
        [ "$a" = "$p" ] || [ -z "${REC[$h|query|$p]:-}" ] || stray+=" a query row at the provider;"
        # the provider recorded providing exactly the items the answer carried
        prov=${REC[$h|prov|$p]:-}
        if [[ $prov == "answered provided "* ]] && [ "${prov##* }" != "${OBS[items]}" ]; then
            stray+=" the provider recorded providing ${prov##* } but the answer carried ${OBS[items]};"
        fi
    fi
    # what the answer carried, field by field, within its legal-basis row
    stray+=$(overwide "$id" "$a" "$p")
    [ "${O[$id|fields]:--}" = - ] || nfields=$((nfields + 1))
    diff=""
    for c in "${CMP_COLS[@]}"; do
        [ "${E[$id|$c]}" = "${OBS[$c]}" ] || diff+=" $c expected [${E[$id|$c]}] got [${OBS[$c]}];"
    done
    diff+=$stray
    note=${E[$id|note]}
    if [[ $note == BUG* ]]; then
        # a known bug is an exact wrong outcome, recorded after "shows:" in
        # the note; any other difference is a failure like any other
        nbug=$((nbug + 1))
        shows=${note#*shows:}
        if [[ $note != *shows:* ]]; then
            fail "$id: its BUG note does not record the wrong outcome (… shows: <diff>)"
        elif [ -z "$diff" ]; then
            fail "$id: XPASS: the known bug no longer shows; take BUG out of its note in expected.tsv"
        elif [ "${shows# }" = "${diff# }" ]; then
            CHECKS=$((CHECKS + 1))
            printf 'xfail %s: %s\n' "$id" "$note"
        else
            fail "$id: the known bug shows differently: recorded [${shows# }], now [${diff# }]"
        fi
    elif [ -n "$diff" ]; then
        fail "$id:$diff"
    else
        pass "$id"
    fi
done

# the runner refuses a malformed table with a message naming file and line
bad=$T/bad.tsv
awk -F'\t' 'BEGIN { OFS = "\t" } /^LB02\t/ { NF = NF - 1 } { print }' "$RULES" >"$bad"
out=$(bash "$0" --check "$bad" "$EXPECTED" 2>&1) && rc=0 || rc=$?
expect_contains "a rules line with a column missing is refused, naming its line" \
    "$bad:$(grep -n $'^LB02\t' "$bad" | cut -d: -f1): 10 columns, expected 11" "$out"
sed 's/^\(LB03\t[\t]*\)biz/\1bus/' "$RULES" >"$bad"
out=$(bash "$0" --check "$bad" "$EXPECTED" 2>&1) && rc=0 || rc=$?
expect_contains "an unknown value is refused, naming its column" "column 'via': 'bus' is not valid" "$out"
[ "${KH_VERDICTS_ONLY:-}" ] || check "answers' fields were checked against their rows ($nfields scenarios)" \
    test "$nfields" -ge 20
printf '%d scenarios (%d with a known bug), %d s\n' ${#IDS[@]} $nbug $((SECONDS - STARTED))
finish
