# The web console's ground (issue 13, item 7), over real HTTPS with the
# operators' real certificates, as a browser sends it: the files are served
# by the admin listener with a strict Content-Security-Policy and never in a
# frame; the console logs in with a cookie (HttpOnly, Secure,
# SameSite=Strict) bound to the operator's certificate; a change sent with
# the cookie but without the session's CSRF token (a cross-site POST) is
# refused with KH-6013 and changes nothing; logout ends the cookie.
. "$(dirname "$0")/lib.sh"
PORT=$((KH_PORT_BASE + 13)) # gw-a's admin listener
web() { python3 "$KH_ROOT/tests/integration/khweb.py" "$KH_STACK" "$PORT" "$@" 2>&1 || true; }
header() { grep -i "^$1: " <<<"$2" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
status() { head -1 <<<"$1" | cut -d' ' -f1; }
json() { sed '1,/^$/d' <<<"$1" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$2" 2>/dev/null || true; }
flags() { sql kh_gw_a "SELECT count(*) FROM t_131016.answer_flag"; }

# the files
r=$(web ta-131016 GET /console/)
expect_eq "the console's page is served" 200 "$(status "$r")"
expect_contains "as HTML" "text/html" "$(header Content-Type "$r")"
csp=$(header Content-Security-Policy "$r")
expect_contains "its policy: scripts from the gateway only" "script-src 'self'" "$csp"
expect_contains "... never in a frame" "frame-ancestors 'none'" "$csp"
case $csp in *unsafe-inline* | *unsafe-eval* | *"*"*) fail "the policy allows inline or any source: $csp" ;; *) pass "no inline script, no wildcard" ;; esac
expect_eq "X-Frame-Options for older browsers" DENY "$(header X-Frame-Options "$r")"
expect_eq "no sniffing" nosniff "$(header X-Content-Type-Options "$r")"
case $r in *"<script>"* | *" on"[a-z]*"="*) fail "the page has inline script" ;; *) pass "the page has no inline script or handler" ;; esac
r=$(web ta-131016 GET /console/app.js)
expect_contains "the script is served as JavaScript" "text/javascript" "$(header Content-Type "$r")"
case $r in *innerHTML* | *outerHTML* | *insertAdjacentHTML* | *document.write*) fail "the script parses text as HTML" ;; *) pass "the script never parses text as HTML" ;; esac
expect_eq "an unknown file" 404 "$(status "$(web ta-131016 GET /console/nope.js)")"
expect_eq "/console goes to /console/" /console/ "$(header Location "$(web ta-131016 GET /console)")"
expect_contains "the files are read, not posted" "KH-6009" "$(web ta-131016 POST /console/ '{}')"

# the console's login: a cookie, never the token in the body
pw=$(head -1 "$KH_STACK/operators/ta-131016.password")
body=$(python3 -c 'import json,sys; print(json.dumps({"operator": "ta-131016", "password": sys.argv[1], "cookie": True}))' "$pw")
r=$(web ta-131016 POST /admin/v1/login "$body")
expect_eq "the console logs in" 200 "$(status "$r")"
sc=$(header Set-Cookie "$r")
cookie=$(grep -o '__Host-kh_session_gw-a=[0-9a-f]\{64\}' <<<"$sc")
check "the session is a __Host- cookie named for the gateway" test -n "$cookie"
for attr in HttpOnly Secure SameSite=Strict Path=/; do
    expect_contains "the cookie is $attr" "$attr" "$sc"
done
csrf=$(json "$r" csrf)
check "the answer carries the CSRF token" test "${#csrf}" = 64
expect_eq "and not the session token" "" "$(json "$r" token)"
expect_contains "API answers are never framed either" "frame-ancestors 'none'" \
    "$(header Content-Security-Policy "$r")"

r=$(web ta-131016 GET /admin/v1/whoami --cookie "$cookie")
expect_eq "the cookie is a session" ta-131016 "$(json "$r" operator)"
expect_eq "whoami gives a reloaded page its CSRF token again" "$csrf" "$(json "$r" csrf)"
expect_contains "the cookie over another operator's certificate is no session" "KH-6001" \
    "$(web resp-131016 GET /admin/v1/whoami --cookie "$cookie")"
expect_contains "the cookie sent twice is no session" "KH-6001" \
    "$(web ta-131016 GET /admin/v1/whoami --cookie "$cookie; $cookie")"
expect_contains "gw-b's console cookie is not gw-a's" "KH-6001" \
    "$(web ta-131016 GET /admin/v1/whoami --cookie "__Host-kh_session_gw-b=${cookie#*=}")"

# changes need the CSRF token
before=$(flags)
flag='{"kind": "hold", "procedure": "JT001", "reason": "synthetic console check"}'
expect_contains "a cross-site POST (the cookie, no token) is refused" "KH-6013" \
    "$(web ta-131016 POST /admin/v1/tenants/131016/flags "$flag" --cookie "$cookie" --origin https://evil.example)"
expect_contains "a form post from another site too" "KH-6013" \
    "$(web ta-131016 POST /admin/v1/tenants/131016/flags "kind=hold" --cookie "$cookie" --ctype application/x-www-form-urlencoded)"
expect_contains "a wrong token" "KH-6013" \
    "$(web ta-131016 POST /admin/v1/tenants/131016/flags "$flag" --cookie "$cookie" --csrf "$(printf '0%.0s' $(seq 64))")"
expect_eq "the refused posts changed nothing" "$before" "$(flags)"
# refused before the session or the role is looked at: a responder's post
# without the token is KH-6013, not KH-6005, and leaves no refusal row
audit() { sql kh_gw_a "SELECT count(*) FROM t_131016.audit_log"; }
a0=$(audit)
body=$(python3 -c 'import json,sys; print(json.dumps({"operator": "resp-131016", "password": sys.argv[1], "cookie": True}))' "$(head -1 "$KH_STACK/operators/resp-131016.password")")
rc=$(grep -o '__Host-kh_session_gw-a=[0-9a-f]\{64\}' <<<"$(web resp-131016 POST /admin/v1/login "$body")")
seen0=$(sql kh_gw_a "SELECT last_seen FROM kh.operator_session WHERE operator = 'resp-131016' ORDER BY created_at DESC LIMIT 1")
expect_contains "a responder's cookie post without the token: KH-6013 first" "KH-6013" \
    "$(web resp-131016 POST /admin/v1/tenants/131016/flags "$flag" --cookie "$rc")"
expect_eq "no refusal row for it" "$a0" "$(audit)"
expect_eq "and the session's idle time is not renewed" "$seen0" \
    "$(sql kh_gw_a "SELECT last_seen FROM kh.operator_session WHERE operator = 'resp-131016' ORDER BY created_at DESC LIMIT 1")"
r=$(web ta-131016 POST /admin/v1/tenants/131016/flags "$flag" --cookie "$cookie" --csrf "$csrf")
expect_eq "with the token the change is made" 201 "$(status "$r")"
id=$(sed -n 's/.*"flag":{"id":\([0-9]*\),.*/\1/p' <<<"$r")
expect_eq "one flag more" "$((before + 1))" "$(flags)"
expect_eq "revoked the same way" 200 \
    "$(status "$(web ta-131016 POST "/admin/v1/tenants/131016/flags/$id/revoke" '{}' --cookie "$cookie" --csrf "$csrf")")"

# logout ends the cookie
r=$(web ta-131016 POST /admin/v1/logout '{}' --cookie "$cookie" --csrf "$csrf")
expect_eq "logout" 200 "$(status "$r")"
expect_contains "the cookie is cleared" "Max-Age=0" "$(header Set-Cookie "$r")"
expect_contains "the old cookie is no session any more" "KH-6001" \
    "$(web ta-131016 GET /admin/v1/whoami --cookie "$cookie")"
finish
