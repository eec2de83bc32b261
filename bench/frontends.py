#!/usr/bin/env python3
"""FastCGI apps spawned by the web server: cgi2wsgi vs flup behind lighttpd (`fastcgi.server`
with `bin-path`) and Apache mod_fcgid (`FcgidWrapper ... virtual`), for the raw hello app and
the Flask app, loaded with wrk, in one run.

In both set-ups the web server starts the app processes itself with a listening socket on
fd 0 (cgi2wsgi notices it and serves FastCGI, one process, one request at a time; flup's
WSGIServer with no bindAddress does the same). The configs are the repo's recipes
(lighttpd/fastcgi.conf, apache/fcgid.conf) rendered into a temp dir with only the paths
replaced, plus the process counts: lighttpd `max-procs` N, mod_fcgid `FcgidMaxProcesses` and
`FcgidMaxProcessesPerClass` N (--procs, default 2), the same for every backend. Backends:

  cgi2wsgi    target/release/cgi2wsgi --venv VENV APP   (the recipes' command lines)
  flup-fork   flup.server.fcgi_fork.WSGIServer(app).run()   (prefork: each spawned process
              forks its own children, flup's defaults minSpare 1, maxSpare 5, maxChildren 50,
              unless --flup-children N)
  flup        flup.server.fcgi.WSGIServer(app).run()        (threaded, one process)

Every case has its own web server (own config, pid file, logs, runtime and mutex dirs, a free
127.0.0.1 port), a warm-up, then `wrk -t2 -c32 --latency` for --duration seconds. mod_fcgid
starts its processes lazily (the first on the first request, more only when all are busy),
so the warm-up goes on past --warmup, one second at a time (at most --max-warmup), until the
web server has started all N processes; the table shows how long it took and how many there
were. When run as root the servers' workers and the apps run as www-data: the binary, the
apps (precompiled) and the venv (cp -a) are copied into a world-readable temp dir first.

Backend processes are found by scanning /proc for command lines naming the copied binary or
the flup runner (unique to the temp dir): their CPU per request is utime+stime (+ reaped
children's: flup prefork) from /proc/PID/stat over the measured load, divided by the
requests wrk counted. The web server's own CPU per request (its process tree minus the
backends) is shown too.

Latency: wrk's p50/p99 include wrk 4's coordinated-omission correction, so under mod_fcgid
(which makes a request that finds every process busy sleep 1 s before it tries again) a few
requests that waited seconds make wrk's p99 seconds whatever the backend. Apache also logs
every request's own time (`%D`, buffered access log): the table shows that distribution too
(requests that arrived during the measured load, waited for after it through mod_status).
Apache runs mpm_event with Debian's settings except 3 children from the start and none
retired (MaxSpareThreads 150), KeepAlive with no request limit (lighttpd: the same).

Usage:
  bench/fastcgi.py --setup          # once: bench/.venv-peers with uwsgi, flup, flask
  bench/frontends.py [--duration 10] [--warmup 2] [--frontends lighttpd,fcgid]
                     [--apps hello,flask] [--backends cgi2wsgi,flup-fork,flup] [--procs 2]
                     [--flup-children N] [--no-access-log] [--json FILE|-] [--keep-tmp]
Needs: lighttpd, apache2 + mod_fcgid, wrk (apt-get install lighttpd apache2
libapache2-mod-fcgid wrk), target/release/cgi2wsgi (`cargo build --release`; built when
missing), the peers venv (`bench/fastcgi.py --setup`).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

# bench/fastcgi.py only defines things at import (its main() runs under __main__): reuse its
# wrk parsing, process helpers and checks. No __pycache__ written into the repo.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastcgi as fb  # noqa: E402

REPO = fb.REPO
CLK_TCK = fb.CLK_TCK
Failure = fb.Failure

APACHE = "/usr/sbin/apache2"
APACHE_MODULES = "/usr/lib/apache2/modules"
LIGHTTPD = "/usr/sbin/lighttpd"
APT = "apt-get install lighttpd apache2 libapache2-mod-fcgid wrk"

APPS = {
    # name: (repo file, callable, URL path under the /app mount, expected body)
    "hello": ("examples/hello.py", "application", "/app/", b"Hello World\n"),
    "flask": ("examples/flask/flaskapp.py", "app", "/app/", b"Hello from Flask\n"),
}
FRONTENDS = ["lighttpd", "fcgid"]
BACKENDS = ["cgi2wsgi", "flup-fork", "flup"]

FRONTEND_LABEL = {"lighttpd": "lighttpd bin-path", "fcgid": "Apache mod_fcgid"}
BACKEND_LABEL = {"cgi2wsgi": "cgi2wsgi", "flup-fork": "flup fcgi_fork", "flup": "flup threaded"}

# flup with no bindAddress: FastCGI on the listening socket on fd 0.
FLUP_RUNNER = """\
import importlib, os, sys
kind, path, name = sys.argv[1:4]
children = int(sys.argv[4]) if len(sys.argv) > 4 else 0
sys.path.insert(0, os.path.dirname(path))
app = getattr(importlib.import_module(os.path.splitext(os.path.basename(path))[0]), name)
if kind == "thread":
    from flup.server.fcgi import WSGIServer
    server = WSGIServer(app)
else:
    from flup.server.fcgi_fork import WSGIServer
    kw = dict(minSpare=children, maxSpare=children, maxChildren=children) if children else {}
    server = WSGIServer(app, **kw)
sys.exit(server.run())
"""


def is_root():
    return os.geteuid() == 0


# ---------------------------------------------------------------- processes

def start_server(cmd, log_path):
    """Start a web server in the foreground in its own process group (Apache signals its
    whole group when it stops), registered with fastcgi.py's list of processes to stop."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, cwd="/", stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            process_group=0)
    log.close()
    fb.STARTED.append(proc)
    return proc


def backend_pids(marker):
    """PIDs of live processes whose command line contains `marker` (the copied binary or the
    flup runner: paths unique to this run's temp dir), with their parent PIDs."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            if marker not in cmdline:
                continue
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            out[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def top_level(pids):
    """Backend processes the web server started (parent is not itself a backend process)."""
    return sorted(p for p, ppid in pids.items() if ppid not in pids)


def cpu_of(pids):
    """{pid: utime+stime+cutime+cstime ticks} of the given PIDs (a process's own fields cover
    all its threads; children it reaped are in its cutime/cstime)."""
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[p] = sum(int(x) for x in fields[11:15])
        except OSError:
            continue
    return out


def kill_leftovers(marker):
    """Backend processes still alive after their web server stopped (by PID, ours only)."""
    for pid in backend_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------- set-up

def check_tools(args):
    fb.need(shutil.which("wrk"), "wrk", APT)
    if "lighttpd" in args.frontends:
        fb.need(os.path.exists(LIGHTTPD), "lighttpd", APT)
    if "fcgid" in args.frontends:
        fb.need(os.path.exists(APACHE), "apache2", APT)
        fb.need(os.path.exists(f"{APACHE_MODULES}/mod_mpm_event.so"), "apache2 (mod_mpm_event)", APT)
        fb.need(os.path.exists(f"{APACHE_MODULES}/mod_fcgid.so"), "mod_fcgid", APT)
    if is_root():
        try:
            import pwd
            pwd.getpwnam("www-data")
        except KeyError:
            raise Failure("running as root, but there is no www-data user for the servers' workers")
    py = os.path.join(args.venv, "bin", "python3")
    setup = (f"run `bench/fastcgi.py --setup` (makes {fb.DEFAULT_VENV} with {' '.join(fb.PIP_PACKAGES)}; "
             f"uwsgi compiles C: needs gcc, python3-dev)")
    fb.need(os.path.exists(py), f"the peers venv {args.venv}", setup)
    mods = (["flask"] if "flask" in args.apps else []) + (["flup"] if any(b.startswith("flup") for b in args.backends) else [])
    if mods:
        r = subprocess.run([py, "-c", "import " + ", ".join(mods)], capture_output=True, text=True)
        fb.need(r.returncode == 0, f"{', '.join(mods)} in {args.venv}", setup)
    if "cgi2wsgi" in args.backends:
        args.build = getattr(args, "build", False)
        fb.ensure_binary(args)  # builds target/release/cgi2wsgi when missing (cargo build --release)


def prepare_tree(tmp, args):
    """World-readable copies of what the servers run: binary, apps (precompiled), venv, flup
    runner. Returns the paths."""
    os.chmod(tmp, 0o755)
    paths = {"bin": os.path.join(tmp, "bin", "cgi2wsgi"), "apps": os.path.join(tmp, "apps"),
             "venv": os.path.join(tmp, "venv"), "runner": os.path.join(tmp, "apps", "flup_fcgi_runner.py")}
    os.makedirs(os.path.dirname(paths["bin"]))
    os.makedirs(paths["apps"])
    if "cgi2wsgi" in args.backends:
        shutil.copy2(args.binary, paths["bin"])
        os.chmod(paths["bin"], 0o755)
    for app in args.apps:
        shutil.copy2(os.path.join(REPO, APPS[app][0]), paths["apps"])
    with open(paths["runner"], "w") as f:
        f.write(FLUP_RUNNER)
    r = subprocess.run(["cp", "-a", args.venv, paths["venv"]], capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"cp -a {args.venv} {paths['venv']}: {r.stderr.strip()}")
    # The servers' user cannot write __pycache__ there: compile once now (timestamps kept by cp -a).
    py = os.path.join(paths["venv"], "bin", "python3")
    subprocess.run([py, "-m", "compileall", "-q", paths["apps"],
                    os.path.join(paths["venv"], "lib")], capture_output=True)
    subprocess.run(["chmod", "-R", "a+rX", tmp], check=True)
    return paths


def backend_command(backend, app, paths, args):
    """(command line the web server runs, marker that finds its processes in /proc)."""
    file, callable_, _, _ = APPS[app]
    app_file = os.path.join(paths["apps"], os.path.basename(file))
    if backend == "cgi2wsgi":
        # The callable defaults to `application`, then `app`: the file alone names both apps.
        return f"{paths['bin']} --venv {paths['venv']} {app_file}", paths["bin"]
    kind = "thread" if backend == "flup" else "fork"
    cmd = f"{paths['venv']}/bin/python3 {paths['runner']} {kind} {app_file} {callable_}"
    if backend == "flup-fork" and args.flup_children:
        cmd += f" {args.flup_children}"
    return cmd, paths["runner"]


def render(repo_file, replacements):
    """A recipe from the repo with its example paths replaced (each must still be there)."""
    with open(os.path.join(REPO, repo_file)) as f:
        text = f.read()
    for old, new in replacements:
        if old not in text:
            raise Failure(f"{repo_file} no longer contains {old!r}: update bench/frontends.py")
        text = text.replace(old, new)
    return text


def chown_www(path):
    if is_root():
        shutil.chown(path, "www-data", "www-data")


def lighttpd_config(case, port, backend, app, paths, args):
    cmd, _ = backend_command(backend, app, paths, args)
    sockets = os.path.join(case, "sockets")  # lighttpd creates them after dropping root
    os.makedirs(sockets)
    chown_www(sockets)
    recipe = render("lighttpd/fastcgi.conf", [
        ("/usr/local/bin/cgi2wsgi /srv/myapp/app.py", cmd),
        ("/srv/myapp/venv", paths["venv"]),
        ("/run/lighttpd", sockets),
        ('"max-procs"       => 2', f'"max-procs"       => {args.procs}'),
    ])
    htdocs = os.path.join(case, "htdocs")
    for d in (htdocs, os.path.join(case, "logs"), os.path.join(case, "tmp")):
        os.makedirs(d)
    chown_www(os.path.join(case, "logs"))  # opened after dropping root
    user = 'server.username = "www-data"\nserver.groupname = "www-data"\n' if is_root() else ""
    conf = (f'server.document-root = "{htdocs}"\nserver.bind = "127.0.0.1"\nserver.port = {port}\n'
            f'server.pid-file = "{case}/logs/lighttpd.pid"\n'
            f'server.errorlog = "{case}/logs/error.log"\nserver.breakagelog = "{case}/logs/breakage.log"\n'
            f'server.upload-dirs = ( "{case}/tmp" )\n{user}'
            # wrk keeps its 32 connections: no reconnect every 1000 requests (Apache: the same).
            "server.max-keep-alive-requests = 1000000\n"
            f"{recipe}\n")
    path = os.path.join(case, "lighttpd.conf")
    with open(path, "w") as f:
        f.write(conf)
    return [LIGHTTPD, "-D", "-f", path], [os.path.join(case, "logs", "error.log"),
                                          os.path.join(case, "logs", "breakage.log")]


def apache_config(case, port, backend, app, paths, args):
    cmd, _ = backend_command(backend, app, paths, args)
    app_file = os.path.join(paths["apps"], os.path.basename(APPS[app][0]))
    dropins = os.path.join(case, "fcgi-bin")  # the recipe's drop-in section: present, unused
    run = os.path.join(case, "run")
    htdocs = os.path.join(case, "htdocs")
    for d in (dropins, run, htdocs, os.path.join(case, "logs")):
        os.makedirs(d)
    recipe = render("apache/fcgid.conf", [
        ("/usr/local/bin/cgi2wsgi --venv /srv/myapp/venv /srv/myapp/app.py", cmd),
        ("/srv/myapp/app.py", app_file),  # the Alias target: must exist, never served as a file
        ("/srv/fcgi-bin", dropins),
    ])
    modules = ["mpm_event_module mod_mpm_event.so", "authz_core_module mod_authz_core.so",
               "alias_module mod_alias.so", "mime_module mod_mime.so", "env_module mod_env.so",
               "dir_module mod_dir.so", "status_module mod_status.so", "fcgid_module mod_fcgid.so"]
    load = "".join(f"LoadModule {m.split()[0]} {APACHE_MODULES}/{m.split()[1]}\n" for m in modules)
    user = "User www-data\nGroup www-data\n" if is_root() else ""
    # Mutex: the default mechanism (pthread/sysvsem, no file); file-based (fcntl) locks
    # make mod_fcgid's threads hit false EDEADLK ("can't get pipe mutex").
    conf = (f"ServerRoot {case}\nDefaultRuntimeDir {run}\nPidFile {run}/httpd.pid\nMutex default:{run} default\n"
            f"Listen 127.0.0.1:{port}\nServerName 127.0.0.1\n{load}{user}"
            f"ErrorLog {case}/logs/error.log\nLogLevel warn\nTypesConfig /etc/mime.types\nTimeout 60\n"
            # Debian's mpm_event.conf, but 3 children (75 threads) from the start and never
            # fewer: no child is started or retired during the load (a retiring child closes
            # its kept-alive connections: wrk read errors that are no backend's doing).
            "StartServers 3\nMinSpareThreads 25\nMaxSpareThreads 150\nThreadLimit 64\n"
            "ThreadsPerChild 25\nMaxRequestWorkers 150\nMaxConnectionsPerChild 0\n"
            "KeepAlive On\nMaxKeepAliveRequests 0\nKeepAliveTimeout 5\n"
            # Each request's start and time taken, as Apache saw it (see server_latency()).
            + ('LogFormat "%{usec}t %D %>s" bench\n'
               f"CustomLog {case}/logs/access.log bench\nBufferedLogs On\n" if args.access_log else "") +
            "<Directory />\n  AllowOverride None\n  Require all denied\n</Directory>\n"
            f"DocumentRoot {htdocs}\n<Directory {htdocs}>\n  Require all granted\n</Directory>\n"
            # BusyWorkers, to wait for the requests still in flight after the load (drain()).
            "ExtendedStatus Off\n<Location /server-status>\n  SetHandler server-status\n"
            "  Require all granted\n</Location>\n"
            # mod_fcgid's sockets and process table (Debian: /var/lib/apache2/fcgid).
            f"FcgidIPCDir {run}/fcgid\nFcgidProcessTableFile {run}/fcgid_shm\n"
            f"FcgidMaxProcesses {args.procs}\nFcgidMaxProcessesPerClass {args.procs}\n"
            f"{recipe}\n")
    path = os.path.join(case, "apache.conf")
    with open(path, "w") as f:
        f.write(conf)
    return [APACHE, "-f", path, "-DFOREGROUND"], [os.path.join(case, "logs", "error.log")]


def versions(args):
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001 - informative only
            return f"? ({e})"
    out = {}
    if "lighttpd" in args.frontends:
        out["lighttpd"] = first_line([LIGHTTPD, "-v"])
    if "fcgid" in args.frontends:
        out["apache"] = first_line([APACHE, "-v"])
        out["mod_fcgid"] = first_line(["dpkg-query", "-W", "-f", "${Version}\n", "libapache2-mod-fcgid"])
    out["wrk"] = first_line(["wrk", "--version"])
    if "cgi2wsgi" in args.backends:
        out["cgi2wsgi"] = first_line([args.binary, "--version"])
    out["python pkgs"] = first_line([os.path.join(args.venv, "bin", "python3"), "-c",
                                     "import importlib.metadata as m, sys; print(sys.version.split()[0], "
                                     "*(f'{p} {m.version(p)}' for p in ('flup', 'flask') "
                                     "if __import__('importlib.util').util.find_spec(p)))"])
    return out


# ---------------------------------------------------------------- one case

APACHE_TIME = re.compile(r"^\[\w{3} (\w{3} \d+ [\d:]+)(\.\d+) (\d{4})\] \[([\w_]+):(\w+)\]")
LIGHTTPD_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d): ")


def wait_http(server, name, url, expect, logs, timeout=30.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failure(f"{name} exited ({server.returncode}):\n{''.join(fb.tail(p, 15) for p in logs)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read()
            if body == expect:
                return
            last = f"unexpected body {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise Failure(f"{url} never answered {expect!r}: {last}\n{''.join(fb.tail(p, 15) for p in logs)}")


def drain(port, limit=60.0):
    """Wait until Apache has no request in flight but the status request itself. Requests
    still polling mod_fcgid for a free process (it sleeps 1 s between tries) finish after
    wrk has gone; stopped earlier, they would be missing from the access log, and Apache
    would wait for them in vain (its process manager gone). Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server-status?auto", timeout=5) as r:
                m = re.search(rb"^BusyWorkers: (\d+)", r.read(), re.M)
            if m and int(m.group(1)) <= 1:
                break
        except OSError:
            pass
        time.sleep(0.2)
    return time.monotonic() - t0


def log_summary(paths, window):
    """Lines the web server logged (its own errors, the apps' stderr) while wrk's measured
    load ran, by level: {"counts": {level: n}, "lines": first few}. Apache's lines carry
    their level; lighttpd's error log and breakage log (the apps' stderr) do not: `log`."""
    counts, sample = {}, []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            m = APACHE_TIME.match(line)
            if m:
                t = time.mktime(time.strptime(f"{m.group(1)} {m.group(3)}", "%b %d %H:%M:%S %Y")) + float(m.group(2))
                level = m.group(5)
            else:
                m = LIGHTTPD_TIME.match(line)
                t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) if m else None
                level = "log"
                if t is not None and int(window[0]) <= t <= window[1]:  # whole seconds
                    t = window[0]
            if t is None or level in ("notice", "info", "debug") or not window[0] <= t <= window[1]:
                continue
            if "server started" in line or "server stopped" in line:  # lighttpd's own notices
                continue
            counts[level] = counts.get(level, 0) + 1
            if len(sample) < 5:
                sample.append(line[:300])
    return {"counts": counts, "lines": sample}


def server_latency(path, window):
    """Per-request times from Apache's access log (`%{usec}t %D`: when the request arrived and
    the microseconds it took) for requests that arrived during the measured window: the
    distribution with no coordinated-omission correction (wrk's has one, see the notes)."""
    times = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and window[0] <= int(parts[0]) / 1e6 <= window[1]:
                    times.append(int(parts[1]) / 1000)
    except (OSError, ValueError):
        return None
    if not times:
        return None
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return {"n": len(times), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
            "max_ms": times[-1], "over_1s": sum(1 for t in times if t >= 1000),
            "mean_ms": sum(times) / len(times)}


def run_case(frontend, backend, app, args, paths, tmp, index):
    case = os.path.join(tmp, f"{index:02d}-{frontend}-{backend}-{app}")
    os.makedirs(case)
    os.chmod(case, 0o755)
    port = fb.free_port()
    cmd, marker = backend_command(backend, app, paths, args)
    render_fn = lighttpd_config if frontend == "lighttpd" else apache_config
    server_cmd, logs = render_fn(case, port, backend, app, paths, args)
    server = start_server(server_cmd, os.path.join(case, "server.out"))
    logs = logs + [os.path.join(case, "server.out")]
    try:
        url = f"http://127.0.0.1:{port}{APPS[app][2]}"
        wait_http(server, FRONTEND_LABEL[frontend], url, APPS[app][3], logs)
        # Warm-up: --warmup seconds, then on until the web server has started all --procs
        # processes (mod_fcgid spawns them lazily), at most --max-warmup seconds.
        t0 = time.monotonic()
        if args.warmup > 0:
            fb.run_wrk(url, args.warmup, args, latency=False)
        while (len(top_level(backend_pids(marker))) < args.procs
               and time.monotonic() - t0 < args.max_warmup):
            fb.run_wrk(url, 1, args, latency=False)
        warm = time.monotonic() - t0
        before = backend_pids(marker)
        front0 = {p: t for p, t in fb.cpu_by_proc(server.pid).items() if p not in before}
        b0 = cpu_of(before)
        t_start = time.time()
        res = fb.run_wrk(url, args.duration, args)
        after = backend_pids(marker)
        b1 = cpu_of(after)
        front1 = {p: t for p, t in fb.cpu_by_proc(server.pid).items() if p not in after}
        with open(os.path.join(case, "wrk.txt"), "w") as f:
            f.write(res["raw"])
        if server.poll() is not None:
            raise Failure(f"the web server exited during the load:\n{''.join(fb.tail(p, 15) for p in logs)}")
        if frontend == "fcgid":
            res["drain_s"] = drain(port)
        reqs = max(res["requests"], 1)
        res["backend_cpu_us"] = sum(t - b0.get(p, 0) for p, t in b1.items()) * 1e6 / CLK_TCK / reqs
        res["frontend_cpu_us"] = sum(t - front0.get(p, 0) for p, t in front1.items()) * 1e6 / CLK_TCK / reqs
        res["warmup_s"] = warm
        res["procs_before"] = len(top_level(before))
        res["procs_top"] = len(top_level(after))
        res["procs_total"] = len(after)
        res["procs_started"] = sorted(set(after) - set(before))
        res["procs_exited"] = sorted(set(before) - set(after))
        res["command"] = cmd
        res["backend_tree"] = [{"pid": p, "ppid": after[p], "cpu_s": (b1.get(p, 0) - b0.get(p, 0)) / CLK_TCK}
                               for p in sorted(after)]
    finally:
        fb.stop(server, timeout=15)
        fb.STARTED.remove(server)
        kill_leftovers(marker)
    # After the stop: buffered access log entries are flushed. The window ends a little before
    # wrk's end: when wrk closes its connections the servers log aborted requests.
    window = (t_start, t_start + args.duration - 0.2)
    res["log"] = log_summary(logs, window)
    if frontend == "fcgid" and args.access_log:
        res["server_latency"] = server_latency(os.path.join(case, "logs", "access.log"), window)
    return res


# ---------------------------------------------------------------- report

def report(results, args):
    rows = []
    for r in results:
        name = [FRONTEND_LABEL[r["frontend"]], r["app"], BACKEND_LABEL[r["backend"]]]
        if "rps" not in r:
            rows.append(name + ["FAILED"] + [""] * 11 + [r["error"].splitlines()[0][:70]])
            continue
        ref = next((q for q in results if q["backend"] == "cgi2wsgi" and q["app"] == r["app"]
                    and q["frontend"] == r["frontend"] and "rps" in q), None)
        notes = []
        if r["procs_before"] < args.procs:
            notes.append(f"only {r['procs_before']} of {args.procs} processes when measuring")
        if r["procs_started"]:
            notes.append(f"{len(r['procs_started'])} process(es) started during the load")
        if r["procs_exited"]:
            notes.append(f"{len(r['procs_exited'])} process(es) exited during the load (CPU lost)")
        logc = (r.get("log") or {}).get("counts") or {}
        if logc:
            notes.append("server log during the load: " + ", ".join(f"{n} {lvl}" for lvl, n in sorted(logc.items())))
        if r.get("in_flight") and r["in_flight"] > 1.5 * args.connections:
            notes.append(f"wrk's latencies CO-corrected (avg x req/s = {r['in_flight']:.0f} in flight)")
        if r.get("drain_s", 0) >= 1:
            notes.append(f"requests still in flight {r['drain_s']:.0f} s after the load")
        sl = r.get("server_latency")
        if sl and sl["over_1s"]:
            notes.append(f"{sl['over_1s']} requests took >= 1 s in Apache, max {sl['max_ms'] / 1000:.1f} s")
        if r["backend"] == "cgi2wsgi":
            vs_rps = vs_cpu = "1"
        elif ref:
            vs_rps = fb.ratio(r["rps"], ref["rps"])
            vs_cpu = fb.ratio(r["backend_cpu_us"], ref["backend_cpu_us"])
        else:
            vs_rps = vs_cpu = "-"
        rows.append(name + [f"{r['procs_top']}/{r['procs_total']}", f"{r['rps']:.0f}",
                            fb.fmt(r["p50_ms"], ".2f"), fb.fmt(r["p99_ms"], ".2f"),
                            fb.fmt(sl and sl["p50_ms"], ".2f"), fb.fmt(sl and sl["p99_ms"], ".2f"),
                            f"{r['errors']:.0f}",
                            f"{r['backend_cpu_us']:.0f}", f"{r['frontend_cpu_us']:.0f}", vs_rps, vs_cpu,
                            f"{r['warmup_s']:.0f}", "; ".join(notes)])
    head = ["frontend", "app", "backend", "procs", "req/s", "wrk p50 ms", "wrk p99 ms",
            "Apache p50 ms", "Apache p99 ms", "errors", "backend CPU us/req", "server CPU us/req",
            "req/s vs cgi2wsgi", "CPU/req vs cgi2wsgi", "warm-up s", "note"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    left = (0, 1, 2, len(head) - 1)
    line = lambda cells: "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    print()
    print(line(head))
    print(line(["-" * w for w in widths]))
    prev = None
    for row in rows:
        if prev and prev != row[:2]:
            print()
        prev = row[:2]
        print(line(row))

    # The project's goals.
    print()
    by = {(r["frontend"], r["app"], r["backend"]): r for r in results if "rps" in r}
    for app in args.apps:
        c = by.get(("lighttpd", app, "cgi2wsgi"))
        for b in ("flup-fork", "flup"):
            f = by.get(("lighttpd", app, b))
            if c and f:
                x = c["rps"] / f["rps"] if f["rps"] else float("inf")
                print(f"goal lighttpd {app}: cgi2wsgi >= 5x {BACKEND_LABEL[b]} req/s: {x:.1f}x "
                      f"({'met' if x >= 5 else 'NOT met'})")
    for app in args.apps:
        c = by.get(("fcgid", app, "cgi2wsgi"))
        if not c:
            continue
        for what, val in (("wrk", lambda r: r.get("p99_ms")),
                          ("Apache's access log", lambda r: (r.get("server_latency") or {}).get("p99_ms"))):
            if val(c) is None:
                continue
            others = ", ".join(f"{BACKEND_LABEL[b]} {val(by[('fcgid', app, b)]):.1f} ms"
                               for b in ("flup-fork", "flup") if ("fcgid", app, b) in by
                               and val(by[("fcgid", app, b)]) is not None)
            print(f"goal mod_fcgid {app}: cgi2wsgi p99 < 50 ms ({what}): {val(c):.1f} ms "
                  f"({'met' if val(c) < 50 else 'NOT met'})" + (f"; {others}" if others else ""))
    print()
    flup_fork = (f"minSpare = maxSpare = maxChildren = {args.flup_children}" if args.flup_children
                 else "flup's defaults: minSpare 1, maxSpare 5, maxChildren 50")
    print(textwrap.fill(
        f"procs = backend processes the web server started / all backend processes after the load "
        f"(lighttpd max-procs {args.procs}; mod_fcgid FcgidMaxProcesses = FcgidMaxProcessesPerClass = "
        f"{args.procs}; flup fcgi_fork processes fork their own children: {flup_fork}). Each "
        "process is given one request at a time by mod_fcgid; lighttpd connects as often as it "
        "has requests (the socket's backlog queues them). "
        f"Warm-up: at least {args.warmup} s of the same wrk load, then on (1 s steps, at most "
        f"{args.max_warmup} s) until all {args.procs} processes existed: the 'warm-up s' column. "
        "p50/p99 are wrk's: wrk 4 corrects for coordinated omission (a request that waited "
        "longer than the mean interval adds samples as if the requests queued behind it had "
        "waited too), so a few multi-second waits dominate them. Apache p50/p99: the same "
        "requests from Apache's access log (%D, buffered; requests that arrived during the "
        "measured load), with no correction. "
        "errors = wrk socket errors (timeout 5 s) + non-2xx responses. CPU = utime+stime (+ reaped "
        "children's) from /proc/PID/stat over the measured load, divided by the requests wrk "
        f"counted, {1e6 / CLK_TCK:.0f} us tick resolution; backend processes found by their command "
        "line, server = the web server's process tree minus them. Ratios compare with cgi2wsgi "
        "behind the same server for the same app (req/s: >1 is faster than cgi2wsgi; CPU/req: <1 "
        "is cheaper). Shared 2-core machine: wrk, the web server and the backends compete for CPU "
        "and other jobs may be running: expect noise, compare within a run.", width=95))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--duration", type=int, default=10, help="seconds of measured load per case (10)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of unmeasured load first (2); longer while processes are missing")
    ap.add_argument("--max-warmup", type=int, default=30, metavar="S",
                    help="stop waiting for the web server to start all processes after S seconds (30)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    ap.add_argument("--frontends", default=",".join(FRONTENDS), help="lighttpd,fcgid")
    ap.add_argument("--apps", default="hello,flask")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="cgi2wsgi,flup-fork,flup")
    ap.add_argument("--procs", type=int, default=2, metavar="N",
                    help="processes the web server starts: lighttpd max-procs, FcgidMaxProcesses(PerClass) (2)")
    ap.add_argument("--flup-children", type=int, default=0, metavar="N",
                    help="flup fcgi_fork: minSpare = maxSpare = maxChildren = N per process (default: flup's)")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "cgi2wsgi"))
    ap.add_argument("--venv", default=fb.DEFAULT_VENV, help="venv with flup and flask (bench/fastcgi.py --setup)")
    ap.add_argument("--no-access-log", dest="access_log", action="store_false",
                    help="no Apache access log (%%D per request, buffered): no Apache p50/p99 columns")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON (- for stdout)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs, wrk output)")
    args = ap.parse_args()
    args.venv = os.path.abspath(args.venv)
    args.binary = os.path.abspath(args.binary)
    args.build = False
    for name, allowed in (("frontends", FRONTENDS), ("apps", list(APPS)), ("backends", BACKENDS)):
        vals = [v for v in getattr(args, name).split(",") if v]
        for v in vals:
            if v not in allowed:
                ap.error(f"unknown {name[:-1]} {v!r} ({', '.join(allowed)})")
        setattr(args, name, vals)
    if args.procs < 1:
        ap.error("--procs must be at least 1")

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, fb.on_signal)
    signal.signal(signal.SIGHUP, fb.on_signal)
    tmp = None
    marker_dirs = []
    try:
        check_tools(args)
        tmp = tempfile.mkdtemp(prefix="cgi2wsgi-frontends-")
        paths = prepare_tree(tmp, args)
        marker_dirs = [paths["bin"], paths["runner"]]
        cases = [(f, a, b) for f in args.frontends for a in args.apps for b in args.backends]
        vers = versions(args)
        print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
              f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s after >= {args.warmup}s warm-up "
              f"(longer until all {args.procs} backend processes exist, at most {args.max_warmup}s); "
              f"{len(cases)} cases; workers as {'www-data' if is_root() else 'the current user'}")
        for k, v in vers.items():
            print(f"# {k}: {v}")
        results = []
        for index, (frontend, app, backend) in enumerate(cases, 1):
            name = f"{FRONTEND_LABEL[frontend]} / {app} / {BACKEND_LABEL[backend]}"
            print(f"[{index}/{len(cases)}] {name} ...", end=" ", flush=True)
            try:
                res = run_case(frontend, backend, app, args, paths, tmp, index)
                print(f"warm-up {res['warmup_s']:.0f} s ({res['procs_before']} processes), "
                      f"{res['rps']:.0f} req/s, p50 {fb.fmt(res['p50_ms'], '.2f')} ms, "
                      f"p99 {fb.fmt(res['p99_ms'], '.2f')} ms, {res['errors']} errors, "
                      f"{res['backend_cpu_us']:.0f} us CPU/req, "
                      f"{res['procs_top']}/{res['procs_total']} backend processes", flush=True)
            except Failure as e:
                res = {"error": str(e)}
                print(f"FAILED: {e}", flush=True)
            res.update(frontend=frontend, app=app, backend=backend)
            results.append(res)
        report(results, args)
        if args.json:
            doc = {"settings": {k: getattr(args, k) for k in ("duration", "warmup", "max_warmup", "threads",
                                                             "connections", "procs", "flup_children")},
                   "versions": vers, "cpus": os.cpu_count(),
                   "results": [{k: v for k, v in r.items() if k != "raw"} for r in results]}
            fb.write_json(args.json, doc)
        return 1 if any("rps" not in r for r in results) else 0
    except Failure as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        fb.stop_all()
        for marker in marker_dirs:
            kill_leftovers(marker)
        if tmp:
            if args.keep_tmp:
                print(f"# kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
