#!/usr/bin/env python3
"""User-space instructions per request, counted by callgrind (repeatable whatever the load).

One cgi2wsgi process (`--workers 1 --threads 1`, no supervisor) on a private unix socket runs
under `valgrind --tool=callgrind`; a FastCGI client here sends the 12-param GET of
`cgi2wsgi bench` (src/bench/mod.rs `request_vars`). The process is run twice, with a small
and a large number of requests; the difference of the two totals divided by the difference
of the counts is the cost of one request, start-up and shutdown cancelled out.

Modes: `keepalive` (every request on one connection, FCGI_KEEP_CONN) and `newconn` (a new
connection per request, as nginx's default and uWSGI do). `--floor` also counts the same app
called in a Python loop in-process (the interpreter this binary embeds, Debian's python3):
what no gateway can go under.

    cargo build --release && dev/venv
    .venv/bin/python3 bench/callgrind.py                      # raw hello and Flask, both modes
    .venv/bin/python3 bench/callgrind.py --apps hello --floor
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APPS = {
    "hello": ("examples/hello.py", "examples", "hello"),
    "flask": ("examples/flask/flaskapp.py", "examples/flask", "flaskapp"),
}

PARAMS = [
    ("GATEWAY_INTERFACE", "CGI/1.1"), ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", ""),
    ("PATH_INFO", "/"), ("QUERY_STRING", ""), ("REQUEST_URI", "/"),
    ("SERVER_NAME", "127.0.0.1"), ("SERVER_PORT", "80"), ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("SERVER_SOFTWARE", "cgi2wsgi-bench"), ("REMOTE_ADDR", "127.0.0.1"), ("HTTP_HOST", "127.0.0.1"),
]


def nv(name, value):
    out = b""
    for s in (name, value):
        n = len(s)
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def record(rtype, rid, content):
    return struct.pack(">BBHHBx", 1, rtype, rid, len(content), 0) + content


def request_bytes(keep_conn):
    params = b"".join(nv(k.encode(), v.encode()) for k, v in PARAMS)
    return (record(1, 1, struct.pack(">HB5x", 1, 1 if keep_conn else 0))
            + record(4, 1, params) + record(4, 1, b"") + record(5, 1, b""))


def read_response(sock, buf):
    """Read records up to END_REQUEST; return (stdout bytes, leftover buffer)."""
    out = b""
    while True:
        while len(buf) >= 8:
            _, rtype, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
            if len(buf) < 8 + clen + plen:
                break
            content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
            if rtype == 6:
                out += content
            elif rtype == 3:
                return out, buf
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the connection closed before END_REQUEST")
        buf += chunk


def drive(sock_path, n, keepalive):
    keep = request_bytes(True)
    once = request_bytes(False)
    if keepalive:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock_path)
        buf = b""
        for _ in range(n):
            s.sendall(keep)
            out, buf = read_response(s, buf)
            check(out)
        s.close()
    else:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock_path)
            s.sendall(once)
            out, _ = read_response(s, b"")
            check(out)
            s.close()


def check(out):
    if b"200" not in out.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"not a 200: {out[:200]!r}")


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def run_server(binary, app, venv, n, keepalive, tmp):
    sock = os.path.join(tmp, "s.sock")
    out = os.path.join(tmp, f"cg.{n}.{keepalive}")
    log = open(os.path.join(tmp, "server.log"), "ab")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
           "--bind", f"unix:{sock}", "--workers", "1", "--threads", "1"]
    if venv:
        cmd += ["--venv", venv]
    cmd.append(os.path.join(REPO, APPS[app][0]))
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start; see {log.name}")
            time.sleep(0.1)
        drive(sock, 2, keepalive)  # warm-up: lazy imports, first-request caches
        drive(sock, n, keepalive)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if os.path.exists(sock):
            os.unlink(sock)
    return total_ir(out)


FLOOR = """
import sys
sys.path.insert(0, {path!r})
from {module} import {name} as app
environ = dict({params!r})
import io
def start_response(status, headers, exc_info=None):
    return None
def one():
    env = dict(environ)
    env.update({{'wsgi.input': io.BytesIO(b''), 'wsgi.errors': sys.stderr, 'wsgi.version': (1, 0),
                'wsgi.url_scheme': 'http', 'wsgi.multithread': False, 'wsgi.multiprocess': True,
                'wsgi.run_once': False}})
    result = app(env, start_response)
    for chunk in result:
        pass
    close = getattr(result, 'close', None)
    if close:
        close()
for _ in range({n}):
    one()
"""


def run_floor(app, venv, n, tmp):
    path, directory, module = APPS[app]
    name = "app" if app == "flask" else "application"
    script = os.path.join(tmp, f"floor{n}.py")
    with open(script, "w") as f:
        f.write(FLOOR.format(path=os.path.join(REPO, directory), module=module, name=name, params=PARAMS, n=n))
    python = os.path.join(venv, "bin", "python3") if venv else "/usr/bin/python3"
    out = os.path.join(tmp, f"floor.{n}")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, script],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return total_ir(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(REPO, "target/release/cgi2wsgi"))
    ap.add_argument("--venv", default=os.path.join(REPO, ".venv"), help="for the Flask app (default: .venv)")
    ap.add_argument("--apps", default="hello,flask")
    ap.add_argument("--modes", default="keepalive,newconn")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1100)
    ap.add_argument("--floor", action="store_true", help="also count the app called in-process")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed: apt-get install valgrind")
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} is missing: cargo build --release")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cg2w-callgrind-") as tmp:
        for app in args.apps.split(","):
            venv = args.venv if app == "flask" else None
            for mode in args.modes.split(","):
                small = run_server(args.binary, app, venv, args.small, mode == "keepalive", tmp)
                large = run_server(args.binary, app, venv, args.large, mode == "keepalive", tmp)
                per = (large - small) / (args.large - args.small)
                rows.append((app, mode, per))
                print(f"{app:6} {mode:9} {per / 1000:8.1f}k instructions/request", flush=True)
            if args.floor:
                small = run_floor(app, venv, args.small, tmp)
                large = run_floor(app, venv, args.large, tmp)
                per = (large - small) / (args.large - args.small)
                rows.append((app, "in-process", per))
                print(f"{app:6} {'in-process':9} {per / 1000:8.1f}k instructions/request", flush=True)


if __name__ == "__main__":
    main()
