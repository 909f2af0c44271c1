# Operators' accounts after their creation (issue 13, item 4): an operator
# changes their own password (the current one checked and counted towards
# the lock; their other sessions end), lists and ends their own sessions; a
# platform admin unlocks, resets a password, disables and enables, and
# lists and ends anyone's sessions; other roles cannot; every change is in
# kh.operator_audit; no password reaches the log. A metrics operator scrapes
# /metrics and may do nothing else.
. "$(dirname "$0")/lib.sh"
ADMIN_PORT=$((KH_PORT_BASE + 13))
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
adm() { "$KH_ROOT/tools/khstack" admin "$KH_STACK" gw-a "$@" 2>&1 || true; }
# as OPERATOR with PASSWORD-FILE: khctl admin ARGS...
as() {
    local op=$1 pw=$2
    shift 2
    "$KH_BUILD/tools/khctl" admin --admin "127.0.0.1:$ADMIN_PORT" --gateway-name gw-a \
        --pki "$PKI" --operator "$op" --password-file "$pw" "$@" 2>&1 || true
}
expect_code() { expect_contains "$1 -> $2" "REFUSED $2:" "$3"; }
audit() { sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE action = '$1' AND target = '$n' AND outcome = '$2'"; }

n="it-acct-$RANDOM"
"$KH_ROOT/tools/khpki" operator "$PKI" "$n" >/dev/null
pw() { (umask 077 && echo "$2" >"$T/$1.pw"); }
pw old "it-old-password-$RANDOM-$RANDOM"
pw new "it-new-password-$RANDOM-$RANDOM"
pw reset "it-reset-password-$RANDOM-$RANDOM"
pw wrong "it-wrong-password-$RANDOM"
pw short "short"
expect_contains "the platform admin creates an operator" "name: $n" \
    "$(adm admin operator add "$n" responder --tenant 131016 --new-password-file "$T/old.pw")"

# --- sessions: one's own; a platform admin's view of everyone's ---------------
as "$n" "$T/old.pw" --token-file "$T/a.tok" login >/dev/null
as "$n" "$T/old.pw" --token-file "$T/b.tok" login >/dev/null
out=$(as "$n" "$T/old.pw" --token-file "$T/a.tok" --json sessions)
expect_eq "the operator sees their two sessions" "2" "$(grep -o '"operator":"'"$n"'"' <<<"$out" | wc -l)"
expect_contains "... this one marked current" '"current":true' "$out"
case $out in *'"operator":"admin"'*) fail "a responder sees another operator's sessions" ;; *) pass "a responder sees only their own sessions" ;; esac
case $out in *"$(cat "$T/a.tok")"*) fail "a session listing shows a token" ;; *) pass "no token in the listing" ;; esac
expect_code "a responder asks for another's sessions" KH-6005 "$(as "$n" "$T/old.pw" --token-file "$T/a.tok" sessions --of admin)"
expect_contains "the platform admin lists the operator's sessions" "(2 rows)" "$(adm admin sessions --of "$n")"
sid_b=$(as "$n" "$T/old.pw" --token-file "$T/a.tok" --json sessions |
    grep -o '"session":"[0-9a-f]*"[^}]*"current":false' | head -1 | cut -d'"' -f4)
check "a session has a 16-hex ID" test "${#sid_b}" = 16
expect_eq "... the first 8 bytes of its token's SHA-256" "$sid_b" \
    "$(printf '%s' "$(cat "$T/b.tok")" | xxd -r -p | sha256sum | cut -c1-16)"

# --- one's own password -----------------------------------------------------
expect_code "the current password wrong" KH-6002 \
    "$(as "$n" "$T/wrong.pw" --token-file "$T/a.tok" password --new-password-file "$T/new.pw")"
expect_eq "... is audited as refused" "1" "$(audit operator.password refused)"
expect_code "a new password too short" KH-6008 \
    "$(as "$n" "$T/old.pw" --token-file "$T/a.tok" password --new-password-file "$T/short.pw")"
expect_code "... is refused before the current one is checked (no oracle)" KH-6008 \
    "$(as "$n" "$T/wrong.pw" --token-file "$T/a.tok" password --new-password-file "$T/short.pw")"
h0=$(sql kh_gw_a "SELECT password_hash FROM kh.operator WHERE name = '$n'")
expect_code "the same password again" KH-6008 \
    "$(as "$n" "$T/old.pw" --token-file "$T/a.tok" password --new-password-file "$T/old.pw")"
out=$(as "$n" "$T/old.pw" --token-file "$T/a.tok" password --new-password-file "$T/new.pw")
expect_contains "the operator changes their password" "other_sessions_ended: 1" "$out"
expect_code "the other session has ended" KH-6001 "$(as "$n" "$T/old.pw" --token-file "$T/b.tok" whoami)"
expect_contains "this one goes on" "operator: $n" "$(as "$n" "$T/new.pw" --token-file "$T/a.tok" whoami)"
expect_code "the old password no longer logs in" KH-6002 "$(as "$n" "$T/old.pw" whoami)"
expect_contains "the new one does" "operator: $n" "$(as "$n" "$T/new.pw" whoami)"
expect_eq "the change is audited" "1" "$(audit operator.password ok)"
check "the stored hash changed" test "$(sql kh_gw_a "SELECT password_hash FROM kh.operator WHERE name = '$n'")" != "$h0"
expect_eq "no password in any audit row" "0" \
    "$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE detail::text LIKE '%it-%-password-%'")"

# --- wrong current passwords lock like failed logins -----------------------
as "$n" "$T/new.pw" --token-file "$T/c.tok" login >/dev/null
as "$n" "$T/new.pw" --token-file "$T/c2.tok" login >/dev/null
for i in 1 2 3 4 5; do
    expect_code "wrong current password $i" KH-6002 \
        "$(as "$n" "$T/wrong.pw" --token-file "$T/c.tok" password --new-password-file "$T/old.pw")"
done
expect_code "the lock ended the session used for it" KH-6001 "$(as "$n" "$T/new.pw" --token-file "$T/c.tok" whoami)"
expect_code "... and every other session" KH-6001 "$(as "$n" "$T/new.pw" --token-file "$T/a.tok" whoami)"
expect_code "... all of them" KH-6001 "$(as "$n" "$T/new.pw" --token-file "$T/c2.tok" whoami)"
expect_code "and the right password cannot log in" KH-6003 "$(as "$n" "$T/new.pw" whoami)"
expect_code "a tenant admin cannot unlock" KH-6005 "$(adm ta-131016 operator unlock "$n")"
expect_contains "the platform admin unlocks" "locked: false" "$(adm admin operator unlock "$n")"
expect_code "... once" KH-6011 "$(adm admin operator unlock "$n")"
expect_contains "then the operator logs in" "operator: $n" "$(as "$n" "$T/new.pw" whoami)"
expect_eq "the unlock is audited" "1" "$(audit operator.unlock ok)"

# a lock from failed logins leaves sessions; they change no password while it lasts
as "$n" "$T/new.pw" --token-file "$T/l.tok" login >/dev/null
for i in 1 2 3 4 5; do as "$n" "$T/wrong.pw" whoami >/dev/null; done
expect_code "while locked, a session changes no password" KH-6003 \
    "$(as "$n" "$T/new.pw" --token-file "$T/l.tok" password --new-password-file "$T/old.pw")"
expect_eq "... and the refusal is audited" "1" \
    "$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE action = 'operator.password' AND actor = '$n' AND code = 'KH-6003'")"
adm admin operator unlock "$n" >/dev/null

# --- a reset by the platform admin ------------------------------------------
as "$n" "$T/new.pw" --token-file "$T/d.tok" login >/dev/null
expect_code "a tenant admin cannot reset a password" KH-6005 \
    "$(adm ta-131016 operator password "$n" --new-password-file "$T/reset.pw")"
expect_code "the platform admin does not reset their own" KH-6008 \
    "$(adm admin operator password admin --new-password-file "$T/reset.pw")"
expect_contains "the platform admin resets it" "password_changed: true" \
    "$(adm admin operator password "$n" --new-password-file "$T/reset.pw")"
expect_code "the reset ended the operator's sessions" KH-6001 "$(as "$n" "$T/new.pw" --token-file "$T/d.tok" whoami)"
expect_contains "the reset password logs in" "operator: $n" "$(as "$n" "$T/reset.pw" whoami)"
expect_eq "the reset is audited" "1" "$(audit operator.reset_password ok)"

# --- ending sessions ----------------------------------------------------------
as "$n" "$T/reset.pw" --token-file "$T/e.tok" login >/dev/null
as "$n" "$T/reset.pw" --token-file "$T/f.tok" login >/dev/null
sid_f=$(as "$n" "$T/reset.pw" --token-file "$T/f.tok" --json sessions |
    grep -o '"session":"[0-9a-f]*"[^}]*"current":true' | cut -d'"' -f4)
expect_contains "an operator ends one of their sessions" "sessions_ended: 1" \
    "$(as "$n" "$T/reset.pw" --token-file "$T/e.tok" sessions end "$sid_f")"
expect_code "... which is over" KH-6001 "$(as "$n" "$T/reset.pw" --token-file "$T/f.tok" whoami)"
adm admin --token-file "$T/adm.tok" login >/dev/null
adm_sid=$(adm admin --token-file "$T/adm.tok" --json sessions --of admin |
    grep -o '"session":"[0-9a-f]*"[^}]*"current":true' | cut -d'"' -f4)
check "the platform admin's live session has an ID" test "${#adm_sid}" = 16
expect_code "another's session ID is not theirs to end" KH-6010 \
    "$(as "$n" "$T/reset.pw" --token-file "$T/e.tok" sessions end "$adm_sid")"
expect_contains "... the platform admin's session lives on" "operator: admin" "$(adm admin --token-file "$T/adm.tok" whoami)"
adm admin --token-file "$T/adm.tok" logout >/dev/null
expect_eq "the refusal is audited" "1" \
    "$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE action = 'session.end' AND actor = '$n' AND outcome = 'refused'")"
expect_code "nor another operator's sessions" KH-6005 \
    "$(as "$n" "$T/reset.pw" --token-file "$T/e.tok" sessions end --of admin)"
expect_eq "... refused and audited" "2" \
    "$(sql kh_gw_a "SELECT count(*) FROM kh.operator_audit WHERE action = 'session.end' AND actor = '$n' AND outcome = 'refused'")"
expect_code "a malformed session ID" KH-6008 "$(as "$n" "$T/reset.pw" --token-file "$T/e.tok" sessions end XYZ)"
expect_contains "the platform admin ends all of the operator's" "sessions_ended: 1" "$(adm admin sessions end --of "$n")"
expect_code "the operator's session is over" KH-6001 "$(as "$n" "$T/reset.pw" --token-file "$T/e.tok" whoami)"
expect_eq "both ends are audited" "2" "$(audit session.end ok)"

# --- disable and enable ----------------------------------------------------
as "$n" "$T/reset.pw" --token-file "$T/g.tok" login >/dev/null
expect_contains "disabled" "active: false" "$(adm admin operator disable "$n")"
expect_code "a disable ends the sessions" KH-6001 "$(as "$n" "$T/reset.pw" --token-file "$T/g.tok" whoami)"
expect_code "a disabled operator cannot log in" KH-6002 "$(as "$n" "$T/reset.pw" whoami)"
expect_contains "enabled again" "active: true" "$(adm admin operator enable "$n")"
expect_code "... once" KH-6011 "$(adm admin operator enable "$n")"
expect_contains "then the operator logs in" "operator: $n" "$(as "$n" "$T/reset.pw" whoami)"
expect_code "an unknown operator" KH-6010 "$(adm admin operator enable "nobody-$RANDOM")"
expect_eq "disable and enable are audited" "1|1" "$(audit operator.disable ok)|$(audit operator.enable ok)"

# --- a metrics operator: /metrics and nothing else ----------------------------
m="it-metrics-$RANDOM"
"$KH_ROOT/tools/khpki" operator "$PKI" "$m" >/dev/null
expect_contains "the platform admin creates a metrics operator" "role: metrics" \
    "$(adm admin operator add "$m" metrics --tenant 131016 --new-password-file "$T/old.pw")"
out=$(as "$m" "$T/old.pw" metrics)
expect_contains "it scrapes its tenant's series" 'kakehashi_queries_asked_total{tenant="131016"}' "$out"
expect_contains "... and the gateway's own figures" 'kakehashi_http_connections{listener="business"' "$out"
case $out in *'tenant="271004"'*) fail "a metrics operator sees another tenant" ;; *) pass "no other tenant's series" ;; esac
k0=$(as "$m" "$T/old.pw" metrics | sed -n 's/^kakehashi_http_refusals_total{listener="admin",code="KH-6005"} //p')
for cmd in "pending 131016" "queries 131016" "audit 131016" "usage 131016" "staff 131016" \
    "flags list 131016" "export staff 131016" "operator list"; do
    # shellcheck disable=SC2086 # the command's words
    expect_code "a metrics operator: $cmd" KH-6005 "$(as "$m" "$T/old.pw" $cmd)"
done
expect_contains "it manages its own session" "(1 row)" "$(as "$m" "$T/old.pw" sessions)"
out=$(as "$m" "$T/old.pw" metrics)
n6005=$(sed -n 's/^kakehashi_http_refusals_total{listener="admin",code="KH-6005"} //p' <<<"$out")
expect_eq "the 8 refusals just made are counted by code" "8" "$((${n6005:-0} - ${k0:-0}))"
expect_contains "the admin API's time per action is a histogram" \
    'kakehashi_http_request_duration_seconds_bucket{listener="admin",endpoint="login",le="+Inf"}' "$out"
expect_contains "... with its count" 'kakehashi_http_request_duration_seconds_count{listener="admin",endpoint="metrics"}' "$out"
left=$(sed -n 's/^kakehashi_certificate_expiry_seconds{tenant="131016",cert="sign"} //p' <<<"$out")
check "its tenant's signing certificate has time left (${left:-none} s)" test "${left:-0}" -gt 86400
expect_contains "the gateway's TLS certificate too" 'kakehashi_certificate_expiry_seconds{cert="tls_business"}' "$out"
expect_contains "the database job queue's depth" 'kakehashi_db_jobs{state="workers"}' "$out"
age=$(sed -n 's/^kakehashi_directory_age_seconds //p' <<<"$out")
check "the directory's age (${age:-none} s)" test "${age:--1}" -ge 0

# --- no password in the log -------------------------------------------------
hits=$(grep -hoFf <(cat "$T"/*.pw) "$KH_STACK/log/gw-a.log" | head -3 || true)
expect_eq "no password in gw-a's log" "" "$hits"
finish
