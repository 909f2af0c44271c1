#!/usr/bin/env python3
"""One HTTPS request to a gateway's admin listener as a browser would send
it: with an operator's client certificate, optionally a cookie, a CSRF
header, an Origin. Prints the status line, the response headers, a blank
line and the body. Used by it_console_http.sh (curl is not installed here).

usage: khweb.py STACK PORT OPERATOR METHOD PATH [BODY]
       [--cookie C] [--csrf X] [--ctype T] [--origin O]"""
import http.client
import ssl
import sys


def main():
    args, opts = [], {}
    argv = sys.argv[1:]
    while argv:
        a = argv.pop(0)
        if a.startswith("--"):
            opts[a[2:]] = argv.pop(0)
        else:
            args.append(a)
    stack, port, op, method, path = args[:5]
    body = args[5] if len(args) > 5 else None
    pki = f"{stack}/pki"
    ctx = ssl.create_default_context(cafile=f"{pki}/national-ca.crt")
    ctx.check_hostname = False  # the certificate names gw-a, the address is 127.0.0.1
    ctx.load_cert_chain(f"{pki}/operator/{op}/tls.crt", f"{pki}/operator/{op}/tls.key")
    conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=30)
    headers = {}
    if "cookie" in opts:
        headers["Cookie"] = opts["cookie"]
    if "csrf" in opts:
        headers["X-KH-CSRF"] = opts["csrf"]
    if "origin" in opts:
        headers["Origin"] = opts["origin"]
    if body is not None:
        headers["Content-Type"] = opts.get("ctype", "application/json")
    conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
    r = conn.getresponse()
    print(r.status, r.reason)
    for k, v in r.getheaders():
        print(f"{k}: {v}")
    print()
    print(r.read().decode("utf-8", "replace"))


main()
