#!/usr/bin/env python3
"""The CGI accelerator: per-request CGI time for the Flask drop-in with `persist = on`
(warm worker), side by side with in-process cgi2wsgi CGI and wsgiref.handlers.CGIHandler,
interleaved, median of many runs, in one run. With --apache, also real Apache (mpm_event +
mod_cgid, loopback, workers as www-data when run as root) under wrk, accelerated drop-in
against the wsgiref CGI script.

Usage: bench/accel.py [--runs N] [--binary PATH] [--venv DIR] [--apache] [--duration S]
(defaults: 300 runs, target/release/cgi2wsgi, .venv). Run `cargo build --release` and
`dev/venv` first; --apache needs apache2 and wrk. Prints every figure it measures.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cgi_vs_wsgiref import WSGIREF, run_once as run_cgi  # noqa: E402  (one CGI environment, one wsgiref driver)

DROP_IN = """#!{binary}
# cgi2wsgi: venv = {venv}
# cgi2wsgi: pythonpath = {path}
{extra}from flaskapp import app as application
"""


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def run_once(path):
    return run_cgi(path, expect=b"Hello from Flask")


def worker_pids(persist_dir):
    pids = []
    for name in os.listdir(persist_dir) if os.path.isdir(persist_dir) else []:
        if name.endswith(".stamp"):
            with open(os.path.join(persist_dir, name)) as f:
                for line in f:
                    if line.startswith("pid "):
                        pids.append(int(line.split()[1]))
    return pids


def stop_workers(persist_dir):
    """SIGTERM the workers (by pid, from their stamps) and wait until they are gone."""
    pids = worker_pids(persist_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 15
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") and not open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] == "Z" for p in pids):
        time.sleep(0.1)


def direct(args, binary, venv, tmp):
    python = os.path.join(venv, "bin", "python3")
    path = os.path.join(REPO, "examples", "flask")
    persist_dir = os.path.join(tmp, "persist")
    fmt = dict(binary=binary, venv=venv, path=path, python=python, module="flaskapp", callable="app")
    cases = [
        ("cgi2wsgi --persist (warm)", write_exe(os.path.join(tmp, "persist.cgi"), DROP_IN.format(extra=f"# cgi2wsgi: persist = on\n# cgi2wsgi: persist-dir = {persist_dir}\n", **fmt))),
        ("cgi2wsgi in-process", write_exe(os.path.join(tmp, "inproc.cgi"), DROP_IN.format(extra="", **fmt))),
        ("wsgiref CGIHandler", write_exe(os.path.join(tmp, "flask_wsgiref.py"), WSGIREF.format(**fmt))),
    ]
    try:
        cold = run_once(cases[0][1])  # starts the worker
        for _, p in cases:  # page cache, .pyc files
            for _ in range(3):
                run_once(p)
        times = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            for name, p in cases:
                times[name].append(run_once(p))
        if len(worker_pids(persist_dir)) != 1:
            raise SystemExit(f"expected one worker, found {worker_pids(persist_dir)}")
    finally:
        stop_workers(persist_dir)
    print(f"\n## One CGI request, Flask `/`, run as a cgi-bin program ({args.runs} interleaved runs, ms)")
    print(f"first --persist request (cold, starts the worker): {cold:.1f} ms")
    print(f"{'':28} {'median':>8} {'p90':>8}")
    med = {}
    for name, t in times.items():
        t.sort()
        med[name] = statistics.median(t)
        print(f"{name:28} {med[name]:8.2f} {t[int(len(t) * 0.9)]:8.2f}")
    accel = med["cgi2wsgi --persist (warm)"]
    print(f"--persist is {med['wsgiref CGIHandler'] / accel:.1f}x faster than wsgiref, {med['cgi2wsgi in-process'] / accel:.1f}x faster than in-process cgi2wsgi")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(port, path, duration, conns):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--timeout", "30s", f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return rps, (int(non2xx.group(1)) if non2xx else 0), (errors.group(1) if errors else "")


def apache(args, binary, venv):
    if not shutil.which("wrk") or not os.path.exists("/usr/sbin/apache2"):
        raise SystemExit("--apache needs wrk and apache2 (apt-get install wrk apache2)")
    root = os.geteuid() == 0
    tmp = tempfile.mkdtemp(prefix="cgi2wsgi-bench-", dir="/tmp")
    server = None
    persist_dir = os.path.join(tmp, "persist")
    try:
        os.chmod(tmp, 0o755)
        # www-data cannot read the clone: the binary, the app and the venv go to a readable place.
        shutil.copy(binary, os.path.join(tmp, "cgi2wsgi"))
        shutil.copytree(os.path.join(REPO, "examples", "flask"), os.path.join(tmp, "flask"))
        subprocess.run(["cp", "-a", venv, os.path.join(tmp, "venv")], check=True)
        cgi_bin = os.path.join(tmp, "cgi-bin")
        os.makedirs(cgi_bin)
        for d in ("logs", "run"):
            os.makedirs(os.path.join(tmp, d))
        os.makedirs(persist_dir, mode=0o700)
        if root:
            shutil.chown(persist_dir, "www-data", "www-data")
        fmt = dict(binary=os.path.join(tmp, "cgi2wsgi"), venv=os.path.join(tmp, "venv"), path=os.path.join(tmp, "flask"), python=os.path.join(tmp, "venv", "bin", "python3"), module="flaskapp", callable="app")
        write_exe(os.path.join(cgi_bin, "persist.cgi"), DROP_IN.format(extra=f"# cgi2wsgi: persist = on\n# cgi2wsgi: persist-dir = {persist_dir}\n", **fmt))
        write_exe(os.path.join(cgi_bin, "inproc.cgi"), DROP_IN.format(extra="", **fmt))
        write_exe(os.path.join(cgi_bin, "flask_wsgiref.py"), WSGIREF.format(**fmt))
        subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
        if root:
            os.chmod(persist_dir, 0o700)
        port = free_port()
        mods = "/usr/lib/apache2/modules"
        load = "".join(f"LoadModule {m}_module {mods}/mod_{f}.so\n" for m, f in [
            ("mpm_event", "mpm_event"), ("cgid", "cgid"), ("authz_core", "authz_core"), ("alias", "alias"), ("mime", "mime")])
        user = "User www-data\nGroup www-data\n" if root else ""
        conf = (f"ServerRoot {tmp}\nDefaultRuntimeDir {tmp}/run\nPidFile {tmp}/run/httpd.pid\nMutex default:{tmp}/run default\n"
                f"Listen 127.0.0.1:{port}\nServerName 127.0.0.1\n{load}{user}ErrorLog {tmp}/logs/error.log\nLogLevel warn\n"
                f"TypesConfig /etc/mime.types\nScriptSock {tmp}/run/cgid.sock\n"
                f"<Directory />\n  Require all denied\n</Directory>\nScriptAlias /cgi-bin/ {cgi_bin}/\n"
                f"<Directory {cgi_bin}>\n  Options +ExecCGI\n  Require all granted\n</Directory>\n")
        with open(os.path.join(tmp, "apache.conf"), "w") as f:
            f.write(conf)
        server = subprocess.Popen(["/usr/sbin/apache2", "-f", os.path.join(tmp, "apache.conf"), "-DFOREGROUND"], start_new_session=True)
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("apache did not start; see " + os.path.join(tmp, "logs/error.log"))
                time.sleep(0.1)
        print(f"\n## Apache mpm_event + mod_cgid, Flask `/`, wrk -t2 -c{args.conns} -d{args.duration}s (loopback, {os.cpu_count()} CPUs)")
        rows = []
        for name, path in [("cgi2wsgi --persist", "/cgi-bin/persist.cgi/"), ("cgi2wsgi in-process", "/cgi-bin/inproc.cgi/"), ("wsgiref CGIHandler", "/cgi-bin/flask_wsgiref.py/")]:
            subprocess.run(["wrk", "-t1", "-c1", "-d2s", f"http://127.0.0.1:{port}{path}"], capture_output=True)  # warm-up
            rps, bad, errors = wrk(port, path, args.duration, args.conns)
            rows.append((name, rps))
            note = f"  ({bad} non-2xx)" if bad else ""
            note += f"  (socket errors: {errors})" if errors else ""
            print(f"{name:24} {rps:10.1f} req/s{note}")
        print(f"--persist: {rows[0][1] / rows[2][1]:.1f}x wsgiref's req/s, {rows[0][1] / rows[1][1]:.1f}x in-process cgi2wsgi's")
        print(f"workers running for the accelerated drop-in: {len(worker_pids(persist_dir))}")
    finally:
        if server:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        stop_workers(persist_dir)
        time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cgi2wsgi"))
    ap.add_argument("--venv", default=os.path.join(REPO, ".venv"))
    ap.add_argument("--apache", action="store_true", help="also Apache mod_cgid under wrk")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=8)
    args = ap.parse_args()
    binary, venv = os.path.abspath(args.binary), os.path.abspath(args.venv)
    for need in (binary, os.path.join(venv, "bin", "python3")):
        if not os.path.exists(need):
            raise SystemExit(f"missing {need}: run `cargo build --release` and `dev/venv`")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# cgi2wsgi {version}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        direct(args, binary, venv, tmp)
    if args.apache:
        apache(args, binary, venv)


if __name__ == "__main__":
    sys.exit(main())
