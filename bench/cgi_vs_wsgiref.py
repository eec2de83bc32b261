#!/usr/bin/env python3
"""Per-request CGI cost: cgi2wsgi vs wsgiref.handlers.CGIHandler, for the raw hello app and
the Flask app, each run as a cgi-bin program would be (a `#!` file, an empty environment
plus the CGI variables), interleaved, median of many runs, in one run.

Usage: bench/cgi_vs_wsgiref.py [--runs N] [--binary PATH] [--venv DIR]
(defaults: 200 runs, target/release/cgi2wsgi, .venv). Run `cargo build --release` and
`dev/venv` first. Prints medians, p90 and the ratios; no figure is estimated.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CGI_ENV = {
    "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app",
    "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": "bench", "REMOTE_ADDR": "127.0.0.1",
}

WSGIREF = """#!{python}
import sys
sys.path.insert(0, {path!r})
from wsgiref.handlers import CGIHandler
from {module} import {callable} as application
CGIHandler().run(application)
"""

DROP_IN = """#!{binary}
# cgi2wsgi: venv = {venv}
# cgi2wsgi: pythonpath = {path}
from {module} import {callable} as application
"""

APPS = {
    "hello": (os.path.join(REPO, "examples"), "hello", "application"),
    "flask": (os.path.join(REPO, "examples", "flask"), "flaskapp", "app"),
}


def write_exe(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def run_once(path, expect=b""):
    """One CGI run of `path`, in ms; the answer must be a 200 (holding `expect`)."""
    env = dict(CGI_ENV, SCRIPT_FILENAME=path)
    start = time.perf_counter()
    out = subprocess.run([path], env=env, stdin=subprocess.DEVNULL, capture_output=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0 or not out.stdout.startswith(b"Status: 200") or expect not in out.stdout:
        raise SystemExit(f"{path} failed: rc={out.returncode}\n{out.stdout[:300]!r}\n{out.stderr.decode()[-2000:]}")
    return elapsed * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cgi2wsgi"))
    ap.add_argument("--venv", default=os.path.join(REPO, ".venv"))
    ap.add_argument("--apps", default="hello,flask")
    args = ap.parse_args()
    binary, venv = os.path.abspath(args.binary), os.path.abspath(args.venv)
    python = os.path.join(venv, "bin", "python3")
    for need in (binary, python):
        if not os.path.exists(need):
            raise SystemExit(f"missing {need}: run `cargo build --release` and `dev/venv`")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# {version}; {os.cpu_count()} CPUs; {args.runs} interleaved runs each (ms)")
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for app in args.apps.split(","):
            path, module, call = APPS[app]
            fmt = dict(python=python, binary=binary, venv=venv, path=path, module=module, callable=call)
            cases.append((app, "cgi2wsgi", write_exe(tmp, f"{app}.cgi", DROP_IN.format(**fmt))))
            cases.append((app, "wsgiref", write_exe(tmp, f"{app}_wsgiref.py", WSGIREF.format(**fmt))))
        for _, _, path in cases:  # warm the page cache and the .pyc files
            for _ in range(3):
                run_once(path)
        times = {(a, w): [] for a, w, _ in cases}
        for _ in range(args.runs):
            for app, who, path in cases:
                times[(app, who)].append(run_once(path))
    print(f"{'app':8} {'server':10} {'median':>8} {'p90':>8}")
    medians = {}
    for (app, who), t in times.items():
        t.sort()
        medians[(app, who)] = statistics.median(t)
        print(f"{app:8} {who:10} {medians[(app, who)]:8.2f} {t[int(len(t) * 0.9)]:8.2f}")
    for app in args.apps.split(","):
        ratio = medians[(app, "cgi2wsgi")] / medians[(app, "wsgiref")]
        print(f"{app}: cgi2wsgi takes {ratio:.2f}x wsgiref's time per request")


if __name__ == "__main__":
    main()
