"""The app tests/workers.rs drives: answers "VERSION PID" so a test sees which code and
which worker process served each request. The tests copy it into their fixture and edit
the VERSION line to reload it.

/work?MS sleeps MS milliseconds; /slow?S touches slow.started beside this file, then
sleeps S seconds; /hog keeps 8 MiB more alive in this worker; /crash ends the worker with os._exit(3); /segv reads address 0.
"""

import os
import time

VERSION = "v1"
HOG = []


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/work" and query:
        time.sleep(int(query) / 1000)
    elif path == "/slow":
        open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow.started"), "w").close()
        time.sleep(float(query or "1"))
    elif path == "/hog":
        HOG.append(b"x" * (8 << 20))
    elif path == "/crash":
        os._exit(3)
    elif path == "/segv":
        import ctypes

        ctypes.string_at(0)
    body = f"{VERSION} {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
