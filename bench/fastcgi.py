#!/usr/bin/env python3
"""FastCGI throughput behind nginx: cgi2wsgi vs uWSGI vs flup (threaded and prefork) vs a C
libfcgi responder, for the raw hello app and the Flask app, loaded with wrk, in one run.

Every case is: one backend (FastCGI on a unix socket, or TCP 127.0.0.1 with --transport
tcp, the same for all) with --procs N worker processes (default 1: cgi2wsgi --workers N,
uWSGI --processes N --threads 1 without --master, flup fcgi_fork with N children, the C
responder forking N children; flup threaded is always one process), one nginx
(worker_processes 1, its own prefix in a temp dir) on a free 127.0.0.1 port, a warm-up, then
`wrk -t2 -c32 --latency` for --duration seconds. Cases run one at a time. CPU per request is
utime+stime (+ reaped children's) of every process of the backend's tree (cgi2wsgi
supervisor -> zygote -> workers, uWSGI worker 1 -> workers 2..N, flup/C parent -> children)
from /proc/PID/stat before and after the measured load, divided by the requests wrk reports;
nginx's CPU per request is shown too. After the load, cgi2wsgi's and uWSGI's workers' USS
(Private_Clean + Private_Dirty, /proc/PID/smaps_rollup) is printed for the Flask app.

Upstream keep-alive (--keepalive on|off|both, default both): `on` is `fastcgi_keep_conn on`
+ `upstream { keepalive 16; }`; `off` is nginx's default (one FastCGI connection per
request). Every backend runs in both modes and is compared with cgi2wsgi in the same mode.
cgi2wsgi, flup (threaded) and libfcgi honour FCGI_KEEP_CONN; uWSGI 2.0 ignores it (closes
after each response: nginx logs an upstream error and retries on reuse). Backends whose
processes serve one connection at a time (flup prefork children, the C responder) stall
under upstream keep-alive; the table flags them STALLED and gives them no ratio.

Usage:
  bench/fastcgi.py --setup         # once: bench/.venv-peers with uwsgi, flup, flask
  bench/fastcgi.py [--duration 10] [--warmup 2] [--keepalive both] [--apps hello,flask]
                   [--backends cgi2wsgi,uwsgi,flup,flup-fork,c] [--transport unix|tcp]
                   [--procs 1] [--rounds 1] [--json FILE|-]
Needs: nginx, wrk, gcc + libfcgi-dev (apt-get install nginx-light wrk gcc libfcgi-dev),
target/release/cgi2wsgi (built with `cargo build --release` when missing).
"""

import argparse
import json
import os
import re
import shutil
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
DEFAULT_VENV = os.path.join(BENCH, ".venv-peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")

APPS = {
    # name: (file, callable, cgi2wsgi APP, expected body)
    "hello": ("examples/hello.py", "application", "examples/hello.py", b"Hello World\n"),
    "flask": ("examples/flask/flaskapp.py", "app", "examples/flask/flaskapp.py:app", b"Hello from Flask\n"),
}
BACKENDS = ["cgi2wsgi", "uwsgi", "flup", "flup-fork", "c"]
# USS of the workers is measured for these backends (with the Flask app).
USS_BACKENDS = ("cgi2wsgi", "uwsgi")
USS_APPS = ("flask",)


def label(backend, procs):
    return {
        "cgi2wsgi": f"cgi2wsgi {procs}w",
        "uwsgi": f"uWSGI {procs}p/1t",
        "flup": "flup threaded 1p",  # one process whatever --procs says
        "flup-fork": f"flup prefork {procs}",
        "c": f"C libfcgi {procs}p",
    }[backend]


# cgi2wsgi options that make even one worker run under a supervisor (src/server/mod.rs).
SUPERVISED_OPTIONS = ("--lazy-apps", "--max-requests", "--max-rss", "--reload", "--timeout")


def tree_roles(backend, procs, cgi2wsgi_args=""):
    """Role of a process of the backend's tree by its depth (0 = the PID we started), and how
    many processes the tree should have once up."""
    if backend == "cgi2wsgi":
        # --workers 1 without lifecycle options: one process, no supervisor (see README).
        supervised = procs > 1 or any(a.split("=", 1)[0] in SUPERVISED_OPTIONS
                                      for a in shlex.split(cgi2wsgi_args))
        if not supervised:
            return ["worker"], 1
        return ["supervisor", "zygote", "worker"], procs + 2
    if backend == "uwsgi":  # no --master: the first process is worker 1 and forks the others
        return ["worker", "worker"], procs
    if backend == "flup":
        return ["worker"], 1
    if backend == "flup-fork":
        return ["parent", "worker"], procs + 1
    if backend == "c":
        return (["worker"], 1) if procs == 1 else (["parent", "worker"], procs + 1)
    raise ValueError(backend)


PIP_PACKAGES = ["uwsgi", "flup", "flask"]

FLUP_RUNNER = r"""
import importlib, os, sys
kind, bind, path, name, procs = sys.argv[1:6]
sys.path.insert(0, os.path.dirname(path))
app = getattr(importlib.import_module(os.path.splitext(os.path.basename(path))[0]), name)
if not bind.startswith("/"):
    host, port = bind.rsplit(":", 1)
    bind = (host, int(port))
if kind == "thread":
    from flup.server.fcgi import WSGIServer
    server = WSGIServer(app, bindAddress=bind, umask=0)
else:
    from flup.server.fcgi_fork import WSGIServer
    n = int(procs)
    server = WSGIServer(app, bindAddress=bind, umask=0, minSpare=n, maxSpare=n, maxChildren=n)
sys.exit(server.run())
"""

NGINX_CONF = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    fastcgi_temp_path {d}/tmp/fastcgi;
    proxy_temp_path {d}/tmp/proxy;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    upstream backend {{
        server {upstream};
{upstream_extra}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            # Debian's fastcgi_params, with the app mounted at the root.
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO $uri;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param DOCUMENT_ROOT $document_root;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param REQUEST_SCHEME $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param HTTP_HOST $host;
            fastcgi_pass backend;
{location_extra}        }}
    }}
}}
"""


class Failure(Exception):
    pass


# ---------------------------------------------------------------- processes we started

STARTED = []  # Popen objects, stopped in reverse order at exit


def start(cmd, log_path, cwd=REPO, env=None):
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    STARTED.append(proc)
    return proc


def tree(pid):
    """(pid, depth) of pid (depth 0) and all its live descendants (from /proc/*/stat ppid)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [(pid, 0)], [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in children.get(parent, []):
            out.append((child, depth + 1))
            todo.append((child, depth + 1))
    return sorted(out, key=lambda t: (t[1], t[0]))


def descendants(pid):
    """PIDs of all live descendants of pid."""
    return [p for p, depth in tree(pid) if depth > 0]


def stop(proc, sig=signal.SIGTERM, timeout=5.0):
    if proc.poll() is not None:
        return
    kids = descendants(proc.pid)
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in kids:  # anything the backend forked and left behind, by PID
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_all():
    while STARTED:
        stop(STARTED.pop())


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- measurements

def cpu_by_proc(pid):
    """{pid: utime+stime+cutime+cstime (fields 14-17), in ticks} for pid and every live
    descendant (the whole tree: supervisor, zygote, workers...). A process's own fields cover
    all its threads; children it reaped land in its cutime/cstime, and live ones are counted
    by themselves (not yet in anybody's cutime), so nothing is counted twice."""
    out = {}
    for p, _depth in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[p] = sum(int(x) for x in fields[11:15])  # field N is fields[N - 3]
    return out


def cpu_ticks(pid):
    return sum(cpu_by_proc(pid).values())


def memory_kib(pid):
    """{"uss", "pss", "rss"} in KiB from /proc/PID/smaps_rollup (USS = Private_Clean +
    Private_Dirty), summed from /proc/PID/smaps on kernels without smaps_rollup."""
    fields = {}
    for name in ("smaps_rollup", "smaps"):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                        fields[key] = fields.get(key, 0) + int(rest.split()[0])
            break
        except (OSError, ValueError):
            fields = {}
    if not fields:
        return None
    return {"uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            "pss": fields.get("Pss", 0), "rss": fields.get("Rss", 0)}


def parse_duration(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def run_wrk(url, seconds, args, latency=True):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "5s"]
    if latency:
        cmd.append("--latency")
    out = subprocess.run(cmd + [url], capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    text = out.stdout
    res = {"raw": text}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if not m:
        raise Failure(f"cannot parse wrk output:\n{text}")
    res["requests"] = int(m.group(1))
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"^\s+Latency\s+([\d.]+)(us|ms|s|m)\s", text, re.M)
    res["avg_ms"] = parse_duration(*m.groups()) if m else None
    # Little's law: requests in flight on average. Far below -c means most wrk connections
    # were stuck (nginx parked their requests on upstream connections nobody reads).
    res["in_flight"] = res["rps"] * res["avg_ms"] / 1000 if res["avg_ms"] else None
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        res[f"p{pct}_ms"] = parse_duration(*m.groups()) if m else None
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    res["errors"] = errors
    return res


# ---------------------------------------------------------------- set-up

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(cond, what, how):
    if not cond:
        raise Failure(f"missing {what}: {how}")


def check_tools(args):
    apt = "apt-get install nginx-light wrk gcc libfcgi-dev"
    need(shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"), "nginx", apt)
    need(shutil.which("wrk"), "wrk", apt)
    if "c" in args.backends:
        need(shutil.which("gcc"), "gcc", apt)
        need(os.path.exists("/usr/include/fcgiapp.h"), "libfcgi-dev (fcgiapp.h)", apt)
    pythons = [b for b in args.backends if b != "c"]
    if pythons:
        py = os.path.join(args.venv, "bin", "python3")
        setup = (f"run `{sys.argv[0]} --setup` (= /usr/bin/python3 -m venv {args.venv} && "
                 f"{args.venv}/bin/pip install {' '.join(PIP_PACKAGES)}; uwsgi compiles C: needs gcc, python3-dev)")
        need(os.path.exists(py), f"the peers venv {args.venv}", setup)
        mods = ["flask"] if "flask" in args.apps else []
        if any(b.startswith("flup") for b in args.backends):
            mods.append("flup")
        if mods:
            r = subprocess.run([py, "-c", "import " + ", ".join(mods)], capture_output=True, text=True)
            need(r.returncode == 0, f"{', '.join(mods)} in {args.venv}", setup)
        if "uwsgi" in args.backends:
            need(os.path.exists(os.path.join(args.venv, "bin", "uwsgi")), f"uwsgi in {args.venv}", setup)
    if "cgi2wsgi" in args.backends:
        ensure_binary(args)


def ensure_binary(args):
    default = os.path.abspath(args.binary) == os.path.join(REPO, "target", "release", "cgi2wsgi")
    reason = None
    if not os.path.exists(args.binary):
        reason = "missing"
    else:
        helptext = subprocess.run([args.binary, "--help"], capture_output=True, text=True).stdout
        if "--bind" not in helptext:
            reason = "built before FastCGI (--bind) existed"
    if reason is None and not args.build:
        return
    if not default:
        raise Failure(f"{args.binary}: {reason}")
    need(shutil.which("cargo"), "cargo", "install a Rust toolchain (https://rustup.rs)")
    print(f"# building target/release/cgi2wsgi ({reason or '--build'}): cargo build --release", flush=True)
    r = subprocess.run(["cargo", "build", "--release"], cwd=REPO)
    if r.returncode != 0:
        raise Failure("cargo build --release failed")


def setup_venv(venv):
    if not os.path.exists(os.path.join(venv, "bin", "python3")):
        subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", *PIP_PACKAGES], check=True)


def build_c(tmp):
    exe = os.path.join(tmp, "hello_fcgi")
    r = subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(BENCH, "hello_fcgi.c"), "-lfcgi"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"cannot build bench/hello_fcgi.c (apt-get install gcc libfcgi-dev):\n{r.stderr}")
    return exe


def versions(args):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001 - informative only
            return f"? ({e})"
    out = {"nginx": first_line(["nginx", "-v"]), "wrk": first_line(["wrk", "--version"])}
    if "cgi2wsgi" in args.backends:
        out["cgi2wsgi"] = first_line([args.binary, "--version"])
    if "uwsgi" in args.backends:
        out["uwsgi"] = first_line([os.path.join(args.venv, "bin", "uwsgi"), "--version"])
    if any(b.startswith("flup") for b in args.backends) or "flask" in args.apps:
        out["python pkgs"] = first_line([os.path.join(args.venv, "bin", "python3"), "-c",
                                         "import importlib.metadata as m, sys; print(sys.version.split()[0], "
                                         "*(f'{p} {m.version(p)}' for p in ('flup', 'flask') "
                                         "if __import__('importlib.util').util.find_spec(p)))"])
    return out


# ---------------------------------------------------------------- one case

def backend_cmd(backend, app, bind, args, c_exe, log):
    file, callable_, spec, _ = APPS[app]
    unix = bind.startswith("/")
    if backend == "cgi2wsgi":
        # --workers always explicit: with --bind the default is one worker per CPU.
        return [os.path.abspath(args.binary), "--bind", f"unix:{bind}" if unix else bind,
                "--workers", str(args.procs),
                "--socket-mode", "0666", "--venv", args.venv, "--log-level", "warn", "--log-file", log,
                *shlex.split(args.cgi2wsgi_args), spec]
    if backend == "uwsgi":
        return [os.path.join(args.venv, "bin", "uwsgi"), "--fastcgi-socket", bind, "--chmod-socket=666",
                "--wsgi-file", file, "--callable", callable_, "--processes", str(args.procs), "--threads", "1",
                "--virtualenv", args.venv, "--need-app", "--die-on-term", "--disable-logging",
                "--ignore-sigpipe", "--ignore-write-errors", "--disable-write-exception"]
    if backend in ("flup", "flup-fork"):
        return [os.path.join(args.venv, "bin", "python3"), "-c", FLUP_RUNNER,
                "thread" if backend == "flup" else "fork", bind, os.path.join(REPO, file), callable_,
                str(args.procs)]
    if backend == "c":
        return [c_exe, bind, str(args.procs)]
    raise ValueError(backend)


def wait_backend(proc, bind, log, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"backend exited ({proc.returncode}); log {log}:\n{tail(log)}")
        try:
            if bind.startswith("/"):
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(bind)
            else:
                host, port = bind.rsplit(":", 1)
                socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"backend not listening on {bind} after {timeout}s; log {log}:\n{tail(log)}")


def wait_procs(proc, expected, timeout=15.0):
    """Wait until the backend's tree has its expected number of processes (workers forked);
    a shortfall is not an error here: run_case records the count after the load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(tree(proc.pid)) >= expected:
            return
        time.sleep(0.05)


def wait_http(proc, url, expect, log, timeout=20.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"nginx exited ({proc.returncode}):\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read()
            if body == expect:
                return
            last = f"unexpected body {body[:200]!r}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.1)
    raise Failure(f"{url} never answered {expect!r}: {last}")


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def run_case(backend, app, keepalive, args, tmp, c_exe, index):
    case = os.path.join(tmp, f"{index:02d}-{backend}-{app}-{'ka' if keepalive else 'noka'}")
    os.makedirs(os.path.join(case, "tmp"))
    os.chmod(case, 0o755)
    sockdir = os.path.join(tmp, "sock")
    bind = (os.path.join(sockdir, f"{index:02d}.sock") if args.transport == "unix"
            else f"127.0.0.1:{free_port()}")
    blog = os.path.join(case, "backend.log")
    backend_proc = start(backend_cmd(backend, app, bind, args, c_exe, blog), blog)
    nginx_proc = None
    try:
        wait_backend(backend_proc, bind, blog)
        roles, expected_procs = tree_roles(backend, args.procs, args.cgi2wsgi_args)
        wait_procs(backend_proc, expected_procs)
        port = free_port()
        conf = os.path.join(case, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(
                d=case, port=port, upstream=f"unix:{bind}" if bind.startswith("/") else bind,
                upstream_extra=f"        keepalive {args.upstream_keepalive};\n        keepalive_requests 1000000;\n" if keepalive else "",
                location_extra="            fastcgi_keep_conn on;\n" if keepalive else ""))
        nlog = os.path.join(case, "nginx-error.log")
        nginx_proc = start(["nginx", "-p", case + "/", "-c", conf, "-e", nlog, "-g", "daemon off;"], nlog)
        url = f"http://127.0.0.1:{port}/"
        wait_http(nginx_proc, url, APPS[app][3], nlog)
        if args.warmup > 0:
            run_wrk(url, args.warmup, args, latency=False)
        bt0, n0 = cpu_by_proc(backend_proc.pid), cpu_ticks(nginx_proc.pid)
        res = run_wrk(url, args.duration, args)
        with open(os.path.join(case, "wrk.txt"), "w") as f:
            f.write(res["raw"])
        bt1, n1 = cpu_by_proc(backend_proc.pid), cpu_ticks(nginx_proc.pid)
        after = tree(backend_proc.pid)
        if backend_proc.poll() is not None:
            raise Failure(f"backend died during the load; log {blog}:\n{tail(blog)}")
        b0, b1 = sum(bt0.values()), sum(bt1.values())
        reqs = max(res["requests"], 1)
        res["backend_cpu_us"] = (b1 - b0) * 1e6 / CLK_TCK / reqs
        res["nginx_cpu_us"] = (n1 - n0) * 1e6 / CLK_TCK / reqs
        res["backend_cpu_s"] = (b1 - b0) / CLK_TCK
        res["backend_procs"] = len(after)
        res["backend_procs_expected"] = expected_procs
        measure_mem = backend in USS_BACKENDS and app in USS_APPS
        procs = []
        for pid, depth in after:
            role = roles[depth] if depth < len(roles) else "other"
            entry = {"pid": pid, "depth": depth, "role": role,
                     "cpu_s": (bt1.get(pid, 0) - bt0.get(pid, 0)) / CLK_TCK}
            if measure_mem:
                entry["mem_kib"] = memory_kib(pid)
            procs.append(entry)
        gone = sorted(set(bt0) - set(bt1))  # exited during the load: its time moved to its parent
        res["backend_tree"] = procs
        res["backend_exited_during_load"] = gone
        if measure_mem:
            res["worker_uss_kib"] = sorted(p["mem_kib"]["uss"] for p in procs
                                           if p["role"] == "worker" and p.get("mem_kib"))
            res["other_uss_kib"] = {}
            for p in procs:
                if p["role"] != "worker" and p.get("mem_kib"):
                    res["other_uss_kib"][p["role"]] = res["other_uss_kib"].get(p["role"], 0) + p["mem_kib"]["uss"]
        res["stalled"] = res["in_flight"] is not None and res["in_flight"] < 0.5 * args.connections
        with open(nlog, errors="replace") as f:
            res["nginx_errors"] = sum(1 for line in f if "[error]" in line)
        return res
    finally:
        if nginx_proc is not None:
            stop(nginx_proc)
            STARTED.remove(nginx_proc)
        stop(backend_proc)
        STARTED.remove(backend_proc)
        if bind.startswith("/") and os.path.exists(bind):
            os.unlink(bind)


# ---------------------------------------------------------------- report

def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


def report(results, args):
    rows = []
    for r in results:
        ref = next((q for q in results if q["backend"] == "cgi2wsgi" and q["app"] == r["app"]
                    and q["keepalive"] == r["keepalive"] and "rps" in q), None)
        if "rps" not in r:
            rows.append([r["app"], label(r["backend"], args.procs), "on" if r["keepalive"] else "off",
                         "FAILED", "", "", "", "", "", "", "", "", r["error"].splitlines()[0][:60]])
            continue
        notes = []
        if r.get("stalled"):
            notes.append(f"STALLED: ~{r['in_flight']:.0f} of {args.connections} connections moving, not comparable")
        if (r.get("p99_ms") or 0) > 250 and r["p99_ms"] > 20 * (r.get("p50_ms") or 0):
            notes.append(f"long waits: p99 {r['p99_ms'] / 1000:.2f} s")
        if r.get("nginx_errors"):
            notes.append(f"{r['nginx_errors']:.0f} upstream errors in nginx log (retried)")
        if r.get("backend_procs") != r.get("backend_procs_expected"):
            notes.append(f"{r.get('backend_procs')} backend processes after the load, expected "
                         f"{r.get('backend_procs_expected')}")
        if r["backend"] == "cgi2wsgi" or r.get("stalled") or not ref or ref.get("stalled"):
            vs_rps = vs_cpu = "1" if r["backend"] == "cgi2wsgi" else "-"
        else:
            vs_rps = ratio(r["rps"], ref["rps"])
            vs_cpu = ratio(r["backend_cpu_us"], ref["backend_cpu_us"])
        rows.append([r["app"], label(r["backend"], args.procs), "on" if r["keepalive"] else "off",
                     f"{r['rps']:.0f}", fmt(r["p50_ms"], ".2f"), fmt(r["p99_ms"], ".2f"),
                     f"{r['backend_cpu_us']:.0f}", f"{r['nginx_cpu_us']:.0f}",
                     f"{r['errors']:.0f}", vs_rps, vs_cpu, "; ".join(notes)])
    head = ["app", "backend", "keepalive", "req/s", "p50 ms", "p99 ms", "backend CPU us/req",
            "nginx CPU us/req", "errors", "req/s vs cgi2wsgi", "CPU/req vs cgi2wsgi", "note"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 3 or i == 11 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    print()
    print(line(head))
    print(line(["-" * w for w in widths]))
    prev = None
    for row in rows:
        if prev and prev != row[0]:
            print()
        prev = row[0]
        print(line(row))
    mem = [r for r in results if r.get("worker_uss_kib") is not None]
    if mem:
        print()
        print("Worker USS after the load (Private_Clean + Private_Dirty, /proc/PID/smaps_rollup), MiB"
              + (", medians of the sorted values over rounds" if args.rounds > 1 else "") + ":")
        w = max(len(label(r["backend"], args.procs)) for r in mem)
        for r in mem:
            uss = r["worker_uss_kib"]
            text = (", ".join(f"{k / 1024:.1f}" for k in uss) if uss else "none found")
            if len(uss) > 1:
                text += f" (sum {sum(uss) / 1024:.1f})"
            others = r.get("other_uss_kib") or {}
            if others:
                text += "; not workers: " + ", ".join(f"{role} {k / 1024:.1f}" for role, k in others.items())
            print(f"  {r['app']}  {label(r['backend'], args.procs).ljust(w)}  keepalive "
                  f"{'on ' if r['keepalive'] else 'off'}  workers {text}")
    print()
    n = args.procs
    print(f"keepalive on  = nginx `upstream {{ keepalive {args.upstream_keepalive}; }}` + `fastcgi_keep_conn on` (FCGI_KEEP_CONN);")
    print(textwrap.fill(
        "keepalive off = one FastCGI connection per request (nginx default). Ratios compare each "
        "backend with cgi2wsgi for the same app and keepalive setting (req/s: >1 is faster than "
        "cgi2wsgi; CPU/req: <1 is cheaper). "
        f"--procs {n}: cgi2wsgi --workers {n}, uWSGI --processes {n} --threads 1 (no master), "
        f"flup prefork {n} child{'ren' if n > 1 else ''}, C {f'{n} children' if n > 1 else '1 process'}; flup threaded is always one process. "
        "CPU = utime+stime, threads included, of every process of the backend's tree "
        "(supervisor, zygote, parent and workers; reaped children's via cutime/cstime; "
        f"/proc/PID/stat 14-17), {1e6 / CLK_TCK:.0f} us tick resolution. errors = wrk socket "
        "errors + non-2xx responses. STALLED: req/s x mean latency (requests in flight, Little's "
        "law) under half of wrk's connections: most were stuck all along. A process serving one "
        "connection at a time (flup prefork children, the C responder) stalls with upstream "
        "keep-alive: it waits for the next request on its connection while nginx parks other "
        "requests on connections nobody accepts. uWSGI ignores FCGI_KEEP_CONN (closes after every "
        "response); nginx logs an upstream error and retries when it reuses such a connection. "
        "Shared 2-core machine: wrk, nginx and the backend compete for CPU, and other jobs may be "
        "running: expect noise.", width=95))


def write_json(dest, doc):
    """Write the results document to a file, or to stdout for "-"."""
    if dest == "-":
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        with open(dest, "w") as f:
            json.dump(doc, f, indent=2)


def median_of(runs):
    ok = [r for r in runs if "rps" in r]
    if not ok:
        return runs[-1]
    out = dict(ok[0])
    for key in ("rps", "avg_ms", "in_flight", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "backend_cpu_us",
                "nginx_cpu_us", "requests", "errors", "nginx_errors"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
    out["rounds"] = len(ok)
    uss = [r["worker_uss_kib"] for r in ok if r.get("worker_uss_kib") is not None]
    if uss:
        out["worker_uss_kib_rounds"] = uss
        if len({len(u) for u in uss}) == 1:
            out["worker_uss_kib"] = [statistics.median(col) for col in zip(*uss)]
        others = [r["other_uss_kib"] for r in ok if r.get("other_uss_kib")]
        if others:
            out["other_uss_kib"] = {role: statistics.median(o[role] for o in others if role in o)
                                    for role in others[0]}
    out["stalled"] = any(r.get("stalled") for r in ok)
    out.pop("raw", None)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--duration", type=int, default=10, help="seconds of measured load per case (10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first (2)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    ap.add_argument("--apps", default="hello,flask")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--keepalive", choices=["on", "off", "both"], default="both")
    ap.add_argument("--transport", choices=["unix", "tcp"], default="unix")
    ap.add_argument("--upstream-keepalive", type=int, default=16, metavar="N",
                    help="idle connections nginx keeps per worker with --keepalive on (16)")
    ap.add_argument("--cgi2wsgi-args", default="", metavar="ARGS",
                    help="extra cgi2wsgi options for experiments, e.g. '--max-conns 4'")
    ap.add_argument("--procs", type=int, default=1, metavar="N",
                    help="worker processes of every backend (1): cgi2wsgi --workers N, uWSGI --processes N "
                         "--threads 1, flup prefork N children, C N children; flup threaded stays 1 process")
    ap.add_argument("--rounds", type=int, default=1, help="run the whole matrix N times; report medians")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cgi2wsgi"))
    ap.add_argument("--build", action="store_true", help="run `cargo build --release` first")
    ap.add_argument("--venv", default=DEFAULT_VENV, help="venv with uwsgi, flup, flask (all Python backends use it)")
    ap.add_argument("--setup", action="store_true", help="create/update the peers venv and exit")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON (- for stdout)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    args.venv = os.path.abspath(args.venv)
    args.apps = [a for a in args.apps.split(",") if a]
    args.backends = [b for b in args.backends.split(",") if b]
    if args.procs < 1:
        ap.error("--procs must be at least 1")
    if any(a.split("=", 1)[0] == "--workers" for a in shlex.split(args.cgi2wsgi_args)):
        ap.error("set cgi2wsgi's --workers with --procs (every backend gets the same count)")
    for a in args.apps:
        if a not in APPS:
            ap.error(f"unknown app {a!r} (hello, flask)")
    for b in args.backends:
        if b not in BACKENDS:
            ap.error(f"unknown backend {b!r} ({', '.join(BACKENDS)})")
    if args.setup:
        setup_venv(args.venv)
        return 0

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    tmp = None
    try:
        check_tools(args)
        tmp = tempfile.mkdtemp(prefix="cgi2wsgi-fcgibench-")
        os.chmod(tmp, 0o755)  # nginx workers (nobody/www-data when root) reach the sockets
        os.makedirs(os.path.join(tmp, "sock"))
        os.chmod(os.path.join(tmp, "sock"), 0o755)
        c_exe = build_c(tmp) if "c" in args.backends else None
        modes = {"on": [True], "off": [False], "both": [True, False]}[args.keepalive]
        cases = [(b, a, ka) for a in args.apps for ka in modes for b in args.backends
                 if not (b == "c" and a != "hello")]
        vers = versions(args)
        if args.cgi2wsgi_args:
            print(f"# cgi2wsgi extra options: {args.cgi2wsgi_args}")
        print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
              f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s after {args.warmup}s warm-up; "
              f"{args.transport} sockets; --procs {args.procs}; {len(cases)} cases x {args.rounds} round(s)")
        for k, v in vers.items():
            print(f"# {k}: {v}")
        runs = {c: [] for c in cases}
        index = 0
        for rnd in range(args.rounds):
            for backend, app, ka in cases:
                index += 1
                name = f"{app} / {label(backend, args.procs)} / keepalive {'on' if ka else 'off'}"
                print(f"[{rnd + 1}/{args.rounds}] {name} ...", end=" ", flush=True)
                try:
                    res = run_case(backend, app, ka, args, tmp, c_exe, index)
                    print(f"{res['rps']:.0f} req/s, p99 {fmt(res['p99_ms'], '.2f')} ms, "
                          f"{res['backend_cpu_us']:.0f} us CPU/req, {res['errors']} errors, "
                          f"{res['backend_procs']} backend processes"
                          f"{', STALLED' if res['stalled'] else ''}", flush=True)
                except Failure as e:
                    res = {"error": str(e)}
                    print(f"FAILED: {e}", flush=True)
                runs[(backend, app, ka)].append(res)
        results = []
        for (backend, app, ka), rs in runs.items():
            r = median_of(rs)
            r.update(backend=backend, app=app, keepalive=ka, label=label(backend, args.procs))
            results.append(r)
        report(results, args)
        if args.json:
            doc = {"settings": {k: getattr(args, k) for k in ("duration", "warmup", "threads", "connections",
                                                             "transport", "rounds", "keepalive", "procs",
                                                             "upstream_keepalive", "cgi2wsgi_args")},
                   "versions": vers, "cpus": os.cpu_count(),
                   "results": [{k: v for k, v in r.items() if k != "raw"} for r in results]}
            write_json(args.json, doc)
        return 1 if any("rps" not in r for r in results) else 0
    except Failure as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if tmp:
            if args.keep_tmp:
                print(f"# kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
