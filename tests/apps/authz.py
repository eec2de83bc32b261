"""Both FastCGI roles in one app, for the authorizer tests. The responder reports, as JSON,
what it saw (including what an authorizer's Variable- headers became). The authorizer
answers after the query string: lighttpd's own tests/mod-fastcgi.t cases (auth-ok,
auth-var, anything else 403), auth-user (variables for Apache), report (a 403 carrying what
the authorizer saw), then every way an authorizer can fail, each of which must
deny: raise, raise-after, close-raises, bad-status, bad-var, big, hang, die."""

import json
import os
import signal
import time

SEEN = [
    "FCGI_ROLE", "FCGI_APACHE_ROLE", "SCRIPT_NAME", "PATH_INFO", "REQUEST_URI", "QUERY_STRING",
    "REQUEST_METHOD", "CONTENT_LENGTH", "REMOTE_USER", "REMOTE_PASSWD", "AUTH_TYPE",
    "X_LIGHTTPD_FCGI_AUTH", "X_USER", "HTTP_AUTHORIZATION",
]


class CloseRaises:
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        raise RuntimeError("close() failed")


def report(environ):
    info = {k: environ.get(k) for k in SEEN}
    info["body"] = environ["wsgi.input"].read().decode("latin-1")
    return json.dumps(info).encode()


def authorizer(environ, start_response):
    case = environ.get("QUERY_STRING", "")
    if case == "auth-ok" or environ.get("PATH_INFO", "").startswith("/open/"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"this body is dropped"]
    if case == "auth-var":
        start_response("200 OK", [("Variable-X-LIGHTTPD-FCGI-AUTH", "LighttpdTestContent"), ("Variable-X_USER", "ann")])
        return []
    if case == "auth-user":
        # For Apache: REMOTE_USER becomes the user (UserExpr), X_GROUP passes `Require expr`.
        start_response("200 OK", [("Variable-REMOTE_USER", "gate-user"), ("Variable-X_USER", "ann"), ("Variable-X_GROUP", "staff")])
        return []
    if case == "report":
        start_response("403 Forbidden", [("Content-Type", "application/json")])
        return [report(environ)]
    if case == "raise":
        raise RuntimeError("the authorizer failed")
    if case == "raise-after":
        start_response("200 OK", [])

        def gen():
            yield b"partial"
            raise RuntimeError("failed after start_response('200 OK')")

        return gen()
    if case == "close-raises":
        start_response("200 OK", [])
        return CloseRaises([b"x"])
    if case == "bad-status":
        start_response("OK 200", [])
        return []
    if case == "bad-var":
        start_response("200 OK", [("Variable-A.B", "x")])
        return []
    if case == "big":
        start_response("200 OK", [])
        return [b"x" * (70 * 1024)]
    if case == "hang":
        time.sleep(60)
    if case == "die":
        start_response("200 OK", [("Variable-X_USER", "ann")])
        os.kill(os.getpid(), signal.SIGKILL)
    start_response("403 Forbidden", [("Content-Type", "text/plain")])
    return [b"denied by the authorizer\n"]


def application(environ, start_response):
    if environ.get("FCGI_ROLE") == "AUTHORIZER":
        return authorizer(environ, start_response)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [report(environ)]
