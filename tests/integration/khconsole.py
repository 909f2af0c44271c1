#!/usr/bin/python3
"""The web console in a real browser (issue 13, item 8): headless Chromium
driven by Selenium, each operator a browser of their own that presents the
operator's certificate from its own NSS database (the test's Chromium
policy selects it automatically for the admin listener). Run by
it_console.sh, which sets the stack up and cleans up; prints one line per
check ("ok   ..." or "FAIL ..."), as the shell tests do, and saves a
screenshot of every page in SHOTS.

usage: khconsole.py   (environment: KH_ROOT KH_STACK KH_PORT SHOTS WORK
                       LOCAL_C LOCAL_O UPLOAD RESIDENT)"""
import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT, STACK, PORT = os.environ["KH_ROOT"], os.environ["KH_STACK"], int(os.environ["KH_PORT"])
SHOTS, WORK = os.environ["SHOTS"], os.environ["WORK"]
LOCAL_C, LOCAL_O, UPLOAD = os.environ["LOCAL_C"], os.environ["LOCAL_O"], os.environ["UPLOAD"]
RESIDENT = os.environ["RESIDENT"]
BASE = f"https://127.0.0.1:{PORT}"
FAILS = 0
BROWSERS = []
REASON = "console test hold (synthetic)"


def ok(desc, cond, detail=""):
    global FAILS
    if cond:
        print(f"ok   {desc}", flush=True)
    else:
        FAILS += 1
        print(f"FAIL {desc}{': ' + detail if detail else ''}", flush=True)
    return cond


def run(*args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return r.stdout + r.stderr


def client(*args):
    return run(f"{ROOT}/tools/khstack", "client", STACK, *args)


def sql(db, q):
    out = run(f"{ROOT}/tools/khstack", "psql", STACK, db, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", q)
    return out.strip()


def password(op):
    with open(f"{STACK}/operators/{op}.password") as f:
        return f.readline().strip()


def nssdb(op):
    """A HOME whose NSS database holds the national CA (to trust the
    gateway) and this operator's certificate and key (for the browser to
    present): Chromium on Linux reads client certificates from there."""
    home = f"{WORK}/home-{op}"
    db = f"{home}/.pki/nssdb"
    os.makedirs(db, exist_ok=True)
    pki = f"{STACK}/pki"
    run("certutil", "-N", "-d", f"sql:{db}", "--empty-password")
    run("certutil", "-A", "-d", f"sql:{db}", "-n", "kh-national", "-t", "C,,", "-i", f"{pki}/national-ca.crt")
    p12 = f"{WORK}/{op}.p12"
    run("openssl", "pkcs12", "-export", "-in", f"{pki}/operator/{op}/tls.crt", "-inkey",
        f"{pki}/operator/{op}/tls.key", "-name", op, "-passout", "pass:", "-out", p12)
    run("pk12util", "-i", p12, "-d", f"sql:{db}", "-W", "")
    os.unlink(p12)
    return home


def browser(op):
    """A headless Chromium of its own (profile, HOME, certificate) for op."""
    home = nssdb(op)
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={WORK}/profile-{op}", "--window-size=1366,900", "--lang=ja"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.makedirs(f"{WORK}/downloads-{op}", exist_ok=True)
    o.add_experimental_option("prefs", {"download.default_directory": f"{WORK}/downloads-{op}",
                                        "download.prompt_for_download": False})
    env = dict(os.environ, HOME=home)
    svc = Service("/usr/bin/chromedriver", env=env)
    d = webdriver.Chrome(service=svc, options=o)
    d.set_page_load_timeout(30)
    d.op = op
    BROWSERS.append(d)
    return d


def wait(d, by, what, secs=30):
    try:
        return WebDriverWait(d, secs).until(EC.presence_of_element_located((by, what)))
    except TimeoutException:
        # say where the browser was and what the page said, then stop
        err = d.find_elements(By.ID, "error")
        said = err[0].text if err and err[0].is_displayed() else ""
        raise TimeoutException(f"{d.op}: no #{what} within {secs} s at {d.current_url}"
                               f"{'; the page says ' + said if said else ''}") from None


def wait_text(d, by, what, text, secs=30):
    try:
        WebDriverWait(d, secs).until(EC.text_to_be_present_in_element((by, what), text))
        return True
    except TimeoutException:
        return False


def shot(d, name, role):
    path = f"{SHOTS}/{name}.png"
    d.save_screenshot(path)
    print(f"# screenshot {path} ({d.op}, {role})", flush=True)


def go(d, frag, ready):
    """Opens a page of the console: on the console already, by its address
    (the page's own navigation: the route runs again even for the same
    address; what the last page showed is cleared first, so that an element
    of it is never taken for the new page's); elsewhere, by loading it."""
    if d.current_url.startswith(f"{BASE}/console/"):
        d.execute_script("""document.getElementById('main').replaceChildren();
            if (location.hash === arguments[0]) route(); else location.hash = arguments[0];""",
                         f"#{frag}")
    else:
        d.get(f"{BASE}/console/#{frag}")
    return wait(d, By.ID, ready)


def login(d, op, pw=None):
    d.get(f"{BASE}/console/")
    wait(d, By.ID, "login-form")
    d.find_element(By.ID, "operator").send_keys(op)
    d.find_element(By.ID, "password").send_keys(pw or password(op))
    d.find_element(By.ID, "login-button").click()
    return wait(d, By.ID, "cards")


def fill(d, ident, text):
    box = d.find_element(By.ID, ident)
    box.clear()
    box.send_keys(text)


def said(d, ident, text, secs=30):
    """True when #ident says text; else False (what the page's error line says printed)"""
    if wait_text(d, By.ID, ident, text, secs):
        return True
    err = d.find_elements(By.ID, "error")
    print(f"# {d.op}: #{ident} never said {text!r}; error line: {err[0].text if err else ''}", flush=True)
    return False


def fetch(d, method, path, body=None, csrf=True):
    """The page's own fetch (same origin, the session cookie): what the
    console's JavaScript could send; answers [status, text]."""
    return d.execute_async_script(
        """const [m, p, b, withCsrf, done] = arguments;
        const h = {'Content-Type': 'application/json'};
        fetch('/admin/v1/whoami', {credentials: 'same-origin'}).then((r) => r.json()).then((w) => {
          if (withCsrf && w.csrf) h['X-KH-CSRF'] = w.csrf;
          return fetch(p, {method: m, headers: h, credentials: 'same-origin',
                           body: b === null ? undefined : b});
        }).then(async (r) => done([r.status, await r.text()])).catch((e) => done([0, String(e)]));""",
        method, path, body, csrf)


class Attacker(http.server.BaseHTTPRequestHandler):
    """Another site (http://localhost:P): a page that posts a hold to the
    gateway with a form, and one that frames the console."""

    def do_GET(self):
        if self.path == "/post":
            body = f"""<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="{BASE}/admin/v1/tenants/131016/flags">
<input type="hidden" name='{{"kind":"hold","local_id":"{LOCAL_C}","reason":"x","pad":"' value='"}}'>
</form><script>document.getElementById('f').submit();</script></body></html>"""
        else:
            body = f"""<!doctype html><html><body><h1 id="evil">another site</h1>
<iframe id="victim" src="{BASE}/console/" width="800" height="500"></iframe></body></html>"""
        b = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def log_message(self, *a):
        pass


def main():
    os.makedirs(SHOTS, exist_ok=True)
    try:
        scenario(browser("ta-131016"), browser("resp-131016"), browser("admin"))
    finally:
        for d in BROWSERS:
            try:
                d.quit()
            except WebDriverException:
                pass


def scenario(ta, resp, adm):
    # the login page, then a wrong password, then the right one
    ta.get(f"{BASE}/console/")
    wait(ta, By.ID, "login-form")
    ok("the console's login page opens over the operator's certificate",
       "ログイン" in ta.find_element(By.TAG_NAME, "h1").text)
    shot(ta, "01-login", "tenant_admin")
    ta.find_element(By.ID, "operator").send_keys("ta-131016")
    ta.find_element(By.ID, "password").send_keys("not the password")
    ta.find_element(By.ID, "login-button").click()
    ok("a wrong password is refused on the page (KH-6002)", wait_text(ta, By.ID, "error", "KH-6002"))
    ta.find_element(By.ID, "operator").clear()
    login(ta, "ta-131016")
    ok("the tenant admin logs in and sees the dashboard", wait(ta, By.ID, "card-131016") is not None)
    chain = ta.find_element(By.ID, "chain_unsigned-131016").text
    days = ta.find_element(By.ID, "cert_days-131016").text
    ok("the dashboard shows the record chains' state and the certificates' days left",
       chain.isdigit() and days.isdigit() and int(days) > 30, f"{chain} {days}")
    ok("... with the holds and staff pages in the navigation",
       ta.find_elements(By.ID, "nav-flags") and ta.find_elements(By.ID, "nav-registry"))
    cookies = ta.get_cookies()
    c = [x for x in cookies if x["name"].startswith("__Host-kh_session_")]
    ok("the session is an HttpOnly, Secure, SameSite=Strict cookie",
       len(c) == 1 and c[0]["httpOnly"] and c[0]["secure"] and c[0].get("sameSite") == "Strict", str(c))
    ok("the page's script cannot read the session cookie",
       "kh_session" not in ta.execute_script("return document.cookie"))
    shot(ta, "02-dashboard", "tenant_admin")

    # a hold set on the page
    go(ta, "/t/131016/flags", "flag-form")
    ta.find_element(By.ID, "flag-local_id").send_keys(LOCAL_C)
    ta.find_element(By.ID, "flag-reason").send_keys(REASON)
    ta.find_element(By.ID, "flag-add").click()
    ok("the hold appears in the list", wait_text(ta, By.ID, "flags", LOCAL_C))
    n = sql("kh_gw_a", f"SELECT count(*) FROM t_131016.answer_flag WHERE local_id = '{LOCAL_C}' "
            f"AND kind = 'hold' AND revoked_at IS NULL AND reason = '{REASON}'")
    ok("... and in the tenant's table, set by the console's operator", n == "1", n)
    st, body = fetch(ta, "POST", "/admin/v1/tenants/131016/flags",
                     json.dumps({"kind": "hold", "local_id": LOCAL_C, "reason": "no token"}), csrf=False)
    ok("a change with the cookie but without the CSRF token is refused (KH-6013)",
       st == 403 and "KH-6013" in body, f"{st} {body}")
    shot(ta, "03-flags", "tenant_admin")
    flags_before = sql("kh_gw_a", "SELECT count(*) FROM t_131016.answer_flag")

    # Osaka asks; the query is held
    out = client("271004", "childallowance", "query", "O-CA-001", "JT001", "131016", "TK001,TK002", LOCAL_O)
    m = re.search(r"PENDING handle=([0-9a-f]{32})", out)
    ok("Osaka's query waits for a decision", m is not None, out[:200])
    h = m.group(1) if m else "0" * 32

    # the responder sees it arrive and approves one item of two
    login(resp, "resp-131016")
    ok("the responder's dashboard counts the held query",
       int(wait(resp, By.ID, "waiting-131016").text or 0) >= 1)
    ok("the responder is offered no staff pages", not resp.find_elements(By.ID, "nav-registry"))
    ok("... nor the holds page", not resp.find_elements(By.ID, "nav-flags"))
    go(resp, "/t/131016/pending", "pending")
    row = wait(resp, By.ID, f"held-{h}")
    ok("the held query is listed with its items", "TK001, TK002" in row.text, row.text)
    shot(resp, "04-held-queries", "responder")
    for box in row.find_elements(By.CSS_SELECTOR, "input.item"):
        if box.get_attribute("value") == "TK001":
            box.click()
    row.find_element(By.CSS_SELECTOR, "input.reason").send_keys("TK002 only (synthetic)")
    row.find_element(By.CSS_SELECTOR, "button.approve-some").click()
    ok("the responder approves fewer items", wait_text(resp, By.ID, f"held-{h}", "判断しました"))
    shot(resp, "05-decided", "responder")
    st = ""
    for _ in range(100):
        st = sql("kh_gw_a", f"SELECT state FROM t_271004.query WHERE msg_id = '{h}'")
        if st == "answered":
            break
        time.sleep(0.1)
    ok("the deferred answer reaches Osaka", st == "answered", st)
    out = client("271004", "childallowance", "status", h)
    ok("Osaka reads TK002", "ITEM TK002" in out, out[:300])
    ok("... and TK001 withheld", "WITHHELD TK001" in out and "ITEM TK001" not in out, out[:300])
    dec = sql("kh_gw_a", f"SELECT decided_by || ' ' || array_to_string(approved_items, ',') "
              f"FROM t_131016.pending_answer WHERE msg_id = '{h}'")
    ok("the decision is the responder's, for TK002", dec == "resp-131016 TK002", dec)

    # a responder sees no staff pages, even by address; the API says no too
    go(resp, "/t/131016/registry", "not-allowed")
    ok("the registry page by address: not for this role", not resp.find_elements(By.ID, "staff"))
    shot(resp, "06-responder-no-registry", "responder")
    st, body = fetch(resp, "GET", "/admin/v1/tenants/131016/staff")
    ok("the API refuses the responder the staff list (KH-6005)", st == 403 and "KH-6005" in body, f"{st} {body}")

    # the registry, and a staff CSV with one bad line: the report names it, nothing changes
    go(ta, "/t/131016/registry", "staff")
    ok("the tenant admin sees the staff", "C-TAX-001" in ta.find_element(By.ID, "staff").text)
    shot(ta, "07-registry", "tenant_admin")
    staff_before = sql("kh_gw_a", "SELECT count(*) || '/' || md5(string_agg(staff_id || display_name || "
                       "active, ',' ORDER BY staff_id)) FROM t_131016.staff")
    csv = f"{WORK}/staff.csv"
    with open(csv, "w", encoding="utf-8", newline="") as f:
        f.write("staff_id,display_name,active\r\n"
                "C-CON-001,コンソール 一郎（架空）,true\r\n"
                "C/CON/002,コンソール 二郎（架空）,true\r\n"
                "C-CON-003,コンソール 三郎（架空）,maybe\r\n"
                "C-CON-004,コンソール 四郎（架空）,true\r\n")
    ta.find_element(By.ID, "import-file").send_keys(csv)
    ta.find_element(By.ID, "import-apply").click()
    ok("the import is refused on the page (KH-6012)", wait_text(ta, By.ID, "import-report", "KH-6012"))
    errs = ta.find_element(By.ID, "import-errors").text if ta.find_elements(By.ID, "import-errors") else ""
    lines = re.findall(r"^(\d+) ", errs, re.M)
    ok("the report names the bad lines, 3 and 4, and no other", sorted(set(lines)) == ["3", "4"], errs)
    shot(ta, "08-import-report", "tenant_admin")
    staff_after = sql("kh_gw_a", "SELECT count(*) || '/' || md5(string_agg(staff_id || display_name || "
                      "active, ',' ORDER BY staff_id)) FROM t_131016.staff")
    ok("nothing changed in the staff table", staff_before == staff_after, f"{staff_before} {staff_after}")
    with open(csv, "w", encoding="utf-8", newline="") as f:
        f.write("staff_id,display_name,active\r\nC-CON-001,コンソール 一郎（架空）,true\r\n")
    ta.find_element(By.ID, "import-file").clear()
    ta.find_element(By.ID, "import-file").send_keys(csv)
    ta.find_element(By.ID, "import-check").click()
    ok("a good file checks clean (check only)", wait_text(ta, By.ID, "import-report", "問題ありません"))
    ok("... and changed nothing either", sql("kh_gw_a", "SELECT count(*) || '/' || md5(string_agg(staff_id || "
       "display_name || active, ',' ORDER BY staff_id)) FROM t_131016.staff") == staff_before)
    registry_records(ta)

    # the rejected bulk file and its report
    go(ta, "/t/131016/bulk", "uploads")
    row = wait(ta, By.ID, f"upload-{UPLOAD}")
    ok("the rejected bulk file is listed with its refusal", "REJECTED" in row.text and "KH-1100" in row.text,
       row.text)
    row.find_element(By.CSS_SELECTOR, "button.show-report").click()
    ok("its report names the line, the field and the code",
       wait_text(ta, By.ID, "report-lines", "annual_tax") and
       "3 annual_tax KH-1106" in ta.find_element(By.ID, "report-lines").text)
    shot(ta, "16-bulk-report", "tenant_admin")

    # the platform admin: query look-up by handle, the audit log, usage, operators
    login(adm, "admin")
    go(adm, "/t/271004/queries", "query-form")
    adm.find_element(By.ID, "q-handle").send_keys(h)
    adm.find_element(By.ID, "search").click()
    try:  # the search's answer replaces the first listing: one row, the query's
        WebDriverWait(adm, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#queries tbody tr")) == 1)
        found = adm.find_element(By.ID, "queries").text
    except TimeoutException:
        found = ""
    ok("the query is found by its handle, alone, answered", h in found and "answered" in found, found[:300])
    shot(adm, "09-query-lookup", "platform_admin")
    go(adm, "/t/131016/audit", "audit")
    a = adm.find_element(By.ID, "audit").text
    ok("the audit log shows the hold and the decision", "flag.add" in a and "pending.decide" in a, a[:300])
    ok("... and the responder's refused look at the staff list", "staff.list refused KH-6005" in a, a[:300])
    shot(adm, "10-audit", "platform_admin")
    go(adm, "/t/131016/usage", "usage-chart")
    bars = adm.find_elements(By.CSS_SELECTOR, "#usage-chart rect")
    ok("usage by day is drawn as a chart", len(bars) >= 2, str(len(bars)))
    shot(adm, "11-usage", "platform_admin")
    adm.find_element(By.ID, "usage-csv").click()
    dl = f"{WORK}/downloads-admin"
    got = []
    for _ in range(50):
        got = [x for x in os.listdir(dl) if x.endswith(".csv")]
        if got:
            break
        time.sleep(0.1)
    text = open(f"{dl}/{got[0]}", encoding="utf-8").read() if got else ""
    ok("the usage CSV downloads with its header", text.startswith("day,asked,"), text[:80])
    answered = [int(c[9]) for c in (ln.split(",") for ln in text.splitlines()[1:]) if len(c) > 9 and c[9].isdigit()]
    ok("... a line a day, the answer given today counted", len(answered) >= 2 and max(answered) >= 1, text[:300])
    ok("the platform admin is offered the operators page", adm.find_elements(By.ID, "nav-operators"))
    go(adm, "/operators", "operators")
    ok("the platform admin sees the operators", "resp-131016" in adm.find_element(By.ID, "operators").text)
    shot(adm, "12-operators", "platform_admin")
    ok("a tenant admin is offered no operators page", not ta.find_elements(By.ID, "nav-operators"))
    accounts(adm)

    # the gateway (platform admins): the directory with a refresh, the connectivity check
    go(adm, "/gateway", "directory")
    ok("the gateway page shows the directory's organisations", "131016" in adm.find_element(By.ID, "dir-orgs").text)
    ok("... and the tenants this gateway hosts", "131016" in adm.find_element(By.ID, "tenant-rows").text and
       "収容中" in adm.find_element(By.ID, "tenant-rows").text)
    adm.find_element(By.ID, "dir-refresh").click()
    ok("... refreshed on demand", wait_text(adm, By.ID, "refresh-said", "新しい版"))
    adm.find_element(By.ID, "diag-run").click()
    ok("the connectivity check runs from the page",
       wait_text(adm, By.ID, "diag-checks", "database") and "migrations" in adm.find_element(By.ID, "diag-checks").text)
    shot(adm, "17-gateway", "platform_admin")

    # a tenant's settings: the hold deadline and maintenance, set by its admin, read by a responder
    go(ta, "/t/131016/settings", "policy-form")
    box = ta.find_element(By.ID, "hold-deadline")
    box.clear()
    box.send_keys("600")
    ta.find_element(By.ID, "policy-save").click()
    ok("the tenant admin sets the hold deadline", wait_text(ta, By.ID, "policy-saved", "保存しました") and
       sql("kh_gw_a", "SELECT hold_deadline_s FROM t_131016.hold_policy") == "600")
    ta.find_element(By.ID, "maint-reason").send_keys("console test (synthetic)")
    ta.find_element(By.ID, "maint-on").click()
    ok("... and puts the tenant in maintenance", wait_text(ta, By.ID, "maint-rows", "tenant:131016"))
    shot(ta, "18-settings", "tenant_admin")
    out = client("131016", "tax", "linkcode", LOCAL_C, RESIDENT)
    ok("a business request is then refused with KH-5008", "KH-5008" in out, out[:200])
    go(resp, "/t/131016/settings", "policy-form")
    ok("a responder reads the settings but cannot change them",
       not resp.find_elements(By.ID, "policy-save") and not resp.find_elements(By.ID, "maint-on") and
       resp.find_element(By.ID, "hold-deadline").get_attribute("disabled") is not None)
    go(ta, "/t/131016/settings", "maint-off")
    ta.find_element(By.ID, "maint-off").click()
    ok("the tenant admin ends the maintenance", wait(ta, By.ID, "maint-state") is not None)
    box = wait(ta, By.ID, "hold-deadline")
    box.clear()
    box.send_keys("1209600")
    ta.find_element(By.ID, "policy-save").click()
    ok("... and puts the deadline back", wait_text(ta, By.ID, "policy-saved", "保存しました"))

    # another site: a cross-site POST with the cookie is refused, and the console cannot be framed
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    evil = f"http://localhost:{srv.server_address[1]}"
    try:
        ta.get(f"{evil}/post")
        WebDriverWait(ta, 15).until(lambda d: d.current_url.startswith(BASE))
        body = ta.find_element(By.TAG_NAME, "body").text
        ok("a cross-site POST with the tenant admin's cookie is refused",
           re.search(r"KH-60(01|07|13)", body) is not None, body[:200])
        print(f"# the cross-site POST was answered: {body[:120]}", flush=True)
        shot(ta, "13-cross-site-post", "tenant_admin")
        ok("... and changed nothing", sql("kh_gw_a", "SELECT count(*) FROM t_131016.answer_flag") == flags_before)
        ta.get_log("browser")
        ta.get(f"{evil}/frame")
        wait(ta, By.ID, "victim")
        time.sleep(1)
        logs = " ".join(x.get("message", "") for x in ta.get_log("browser"))
        ok("the browser refuses to frame the console (frame-ancestors)", "frame-ancestors" in logs, logs[:300])
        ta.switch_to.frame(ta.find_element(By.ID, "victim"))
        framed = ta.find_elements(By.ID, "main")
        ta.switch_to.default_content()
        ok("... nothing of the console is in the frame", not framed)
        shot(ta, "14-framed", "another site")
    finally:
        srv.shutdown()

    # English on request; logout ends the session
    go(ta, "/", "cards")
    ta.find_element(By.ID, "lang").click()
    ok("English on request", wait_text(ta, By.ID, "logout", "Log out"))
    shot(ta, "15-dashboard-en", "tenant_admin")
    ta.find_element(By.ID, "lang").click()
    wait_text(ta, By.ID, "logout", "ログアウト")
    ta.find_element(By.ID, "logout").click()
    wait(ta, By.ID, "login-form")
    st, body = fetch(ta, "GET", "/admin/v1/whoami")
    ok("after logout the browser has no session", st == 401 and "KH-6001" in body, f"{st} {body}")


def registry_records(ta):
    """One record at a time on the registry page: a role whose procedure is
    not in the legal-basis table is refused and changes nothing; then a role,
    a staff member, an assignment and a business system with its
    permissions, each in the tenant's tables and shown on the page."""
    x = secrets.token_hex(3).upper()
    role, staff, system = f"CON-{x}", f"C-CON-{x}", f"con{x.lower()}"
    roles_before = sql("kh_gw_a", "SELECT count(*) FROM t_131016.job_role")
    fill(ta, "roles-role_code", role)
    fill(ta, "roles-name", "コンソール係（架空）")
    fill(ta, "roles-procedures", "JT001, XX999")
    ta.find_element(By.ID, "roles-save").click()
    ok("a role with a procedure not in the legal-basis table is refused (KH-6008)", said(ta, "error", "KH-6008") and
       sql("kh_gw_a", "SELECT count(*) FROM t_131016.job_role") == roles_before)
    fill(ta, "roles-procedures", "JT001")
    ta.find_element(By.ID, "roles-save").click()
    ok("the tenant admin adds a job role on the page", said(ta, "roles-said", "保存しました") and
       sql("kh_gw_a", f"SELECT string_agg(procedure, ',') FROM t_131016.role_procedure WHERE role_code = '{role}'")
       == "JT001")
    fill(ta, "staff-staff_id", staff)
    fill(ta, "staff-display_name", "コンソール 四郎（架空）")
    ta.find_element(By.ID, "staff-save").click()
    ok("... a staff member", said(ta, "staff-said", "保存しました") and wait_text(ta, By.ID, "staff", staff) and
       sql("kh_gw_a", f"SELECT active FROM t_131016.staff WHERE staff_id = '{staff}'") == "t")
    fill(ta, "assignments-staff_id", staff)
    fill(ta, "assignments-role_code", role)
    ta.find_element(By.ID, "assignments-save").click()
    ok("... the role assigned to them from today", said(ta, "assignments-said", "保存しました") and
       sql("kh_gw_a", f"SELECT valid_from = current_date AND valid_to IS NULL FROM t_131016.staff_role "
           f"WHERE staff_id = '{staff}' AND role_code = '{role}'") == "t")
    fill(ta, "systems-system_id", system)
    fill(ta, "systems-name", "コンソール試験システム（架空）")
    fill(ta, "systems-permissions", "query:JT001, linkcode")
    ta.find_element(By.ID, "systems-save").click()
    ok("... and a business system with its permissions", said(ta, "systems-said", "保存しました") and
       wait_text(ta, By.ID, "systems", "query:JT001") and
       sql("kh_gw_a", f"SELECT string_agg(operation || ':' || scope, ',' ORDER BY operation) FROM "
           f"t_131016.system_permission WHERE system_id = '{system}'") == "linkcode:*,query:JT001")
    shot(ta, "22-registry-records", "tenant_admin")


def accounts(adm):
    """Operators' accounts on the console: the platform admin adds an
    operator (new passwords that differ are refused first), resets its
    password; the new operator, with a certificate of its own, logs in with
    the reset one (not the first), changes it on its account page (a wrong
    current one refused); the platform admin sees its session and ends it;
    the new operator's browser then has no session; disabled at the end."""
    new = f"it-{secrets.token_hex(4)}"
    first, reset, mine = (secrets.token_urlsafe(12) for _ in range(3))
    audit = (f"SELECT string_agg(action || ':' || outcome, ',' ORDER BY id) FROM kh.operator_audit "
             f"WHERE target = '{new}' AND action NOT IN ('login', 'logout')")
    go(adm, "/operators", "operator-form")
    fill(adm, "op-name", new)
    adm.find_element(By.CSS_SELECTOR, "#op-role option[value=tenant_admin]").click()
    adm.find_element(By.CSS_SELECTOR, "input.op-tenant[value='131016']").click()
    fill(adm, "op-new", first)
    fill(adm, "op-again", first + "x")
    adm.find_element(By.ID, "op-add").click()
    ok("new passwords that differ are refused on the page", said(adm, "error", "一致しません") and
       sql("kh_gw_a", f"SELECT count(*) FROM kh.operator WHERE name = '{new}'") == "0")
    ok("... and both fields are cleared", adm.find_element(By.ID, "op-new").get_attribute("value") == "" and
       adm.find_element(By.ID, "op-again").get_attribute("value") == "")
    fill(adm, "op-new", first)
    fill(adm, "op-again", first)
    adm.find_element(By.ID, "op-add").click()
    ok("the platform admin adds an operator on the page", said(adm, "op-said", new) and
       "tenant_admin" in wait(adm, By.ID, f"op-{new}").text and
       sql("kh_gw_a", f"SELECT role || ':' || string_agg(org_code, ',') FROM kh.operator o JOIN "
           f"kh.operator_tenant t ON t.operator = o.name WHERE name = '{new}' GROUP BY role") == "tenant_admin:131016")
    row = adm.find_element(By.ID, f"op-{new}")
    row.find_element(By.CSS_SELECTOR, "details.reset-box summary").click()
    fill(adm, f"reset-{new}-new", reset)
    fill(adm, f"reset-{new}-again", reset)
    row.find_element(By.CSS_SELECTOR, "button.reset").click()
    ok("... and resets its password", said(adm, "op-said", "再設定しました"))
    shot(adm, "19-operator-added", "platform_admin")
    ok("both in the operators' audit log", sql("kh_gw_a", audit) == "operator.add:ok,operator.reset_password:ok",
       sql("kh_gw_a", audit))

    run(f"{ROOT}/tools/khpki", "operator", f"{STACK}/pki", new)
    nw = browser(new)
    nw.get(f"{BASE}/console/")
    wait(nw, By.ID, "login-form")
    nw.find_element(By.ID, "operator").send_keys(new)
    nw.find_element(By.ID, "password").send_keys(first)
    nw.find_element(By.ID, "login-button").click()
    ok("the new operator's first password no longer logs in", said(nw, "error", "KH-6002"))
    login(nw, new, reset)
    ok("the reset one does", wait(nw, By.ID, "card-131016") is not None)
    ok("every operator is offered their account page", nw.find_elements(By.ID, "nav-account"))
    go(nw, "/account", "password-form")
    ok("the account page lists the operator's own session, this one",
       "このセッション" in nw.find_element(By.ID, "sessions").text and
       len(nw.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 1)
    fill(nw, "pw-current", first)
    fill(nw, "pw-new", mine)
    fill(nw, "pw-again", mine)
    nw.find_element(By.ID, "pw-change").click()
    ok("a wrong current password is refused (KH-6002)", said(nw, "error", "KH-6002"))
    fill(nw, "pw-current", reset)
    fill(nw, "pw-new", mine)
    fill(nw, "pw-again", mine)
    nw.find_element(By.ID, "pw-change").click()
    ok("the operator changes their password", said(nw, "pw-said", "変更しました") and
       sql("kh_gw_a", f"SELECT failed_logins FROM kh.operator WHERE name = '{new}'") == "0")
    shot(nw, "20-account", "tenant_admin (new)")
    st, body = fetch(nw, "GET", "/admin/v1/whoami")
    ok("... and stays logged in", st == 200 and new in body, f"{st} {body[:120]}")

    go(adm, "/account", "password-form")
    mine_only = adm.find_element(By.ID, "sessions").text
    ok("the platform admin's own account page lists only their own sessions",
       "admin" in mine_only and new not in mine_only, mine_only[:200])
    go(adm, "/operators", "sessions")
    ok("the platform admin sees the new operator's session", new in adm.find_element(By.ID, "sessions").text)
    adm.find_element(By.CSS_SELECTOR, f"#op-{new} button.end-all").click()
    ok("... ends it from the page", said(adm, "op-said", "終了しました") and
       sql("kh_gw_a", f"SELECT count(*) FROM kh.operator_session WHERE operator = '{new}'") == "0")
    shot(adm, "21-sessions-ended", "platform_admin")
    st, body = fetch(nw, "GET", "/admin/v1/whoami")
    ok("the new operator's browser then has no session", st == 401 and "KH-6001" in body, f"{st} {body[:120]}")
    adm.find_element(By.CSS_SELECTOR, f"#op-{new} button.disable").click()
    ok("the platform admin disables the operator",
       wait(adm, By.CSS_SELECTOR, f"#op-{new} button.enable") is not None and
       sql("kh_gw_a", f"SELECT active FROM kh.operator WHERE name = '{new}'") == "f")
    ok("every change in the operators' audit log", sql("kh_gw_a", audit) ==
       "operator.add:ok,operator.reset_password:ok,operator.password:refused,operator.password:ok,"
       "session.end:ok,operator.disable:ok",
       sql("kh_gw_a", audit))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a step that could not run is a failure, said plainly
        FAILS += 1
        print(f"FAIL the browser scenario stopped: {type(e).__name__}: {str(e)[:400]}", flush=True)
    sys.exit(1 if FAILS else 0)
