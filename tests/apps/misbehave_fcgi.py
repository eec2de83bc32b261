"""tests/bad_input.rs over FastCGI: PATH_INFO picks a callable from misbehave.py
(/str_chunk, /start_twice, ...); /stdio writes to sys.stdout and sys.stderr and answers an
exact body; /whoami answers "uid gid groups"; anything else answers "ok\n"."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import misbehave  # noqa: E402

STDIO_BODY = b"stdio body\n"


def application(environ, start_response):
    name = environ.get("PATH_INFO", "").strip("/")
    if name == "stdio":
        print("misbehave_fcgi: print() to stdout")
        sys.stdout.write("misbehave_fcgi: sys.stdout.write\n")
        sys.stderr.write("misbehave_fcgi: sys.stderr.write\n")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(STDIO_BODY)))])
        return [STDIO_BODY]
    if name == "whoami":
        body = f"{os.getuid()} {os.getgid()} {sorted(os.getgroups())}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    if name and not name.startswith("_") and hasattr(misbehave, name):
        return getattr(misbehave, name)(environ, start_response)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
