"""Apps for tests/fastcgi_wire.rs, one dispatcher on PATH_INFO:
/big     66,000 bytes returned as one chunk (must be split into several STDOUT records)
/raise   raises before start_response (500, traceback in the log)
/chatty  print()s a lot to stdout and stderr, then answers an exact body
anything else: "ok\n"."""

import sys

BIG = bytes(i % 251 for i in range(66000))
CHATTY_BODY = b"chatty body: " + b"0123456789" * 100 + b"\n"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [BIG]
    if path == "/raise":
        raise RuntimeError("fcgi_wire: boom before start_response")
    if path == "/chatty":
        for i in range(2000):
            print(f"fcgi_wire: print() line {i} on stdout " + "x" * 40)
            sys.stderr.write(f"fcgi_wire: line {i} on stderr\n")
        sys.stdout.flush()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(CHATTY_BODY)))])
        return [CHATTY_BODY]
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
