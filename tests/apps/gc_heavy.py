"""tests/fastcgi_wire.rs: every request leaves its environ in a reference cycle whose
finalizer releases the GIL (time.sleep(0)); the cycle becomes garbage only when the gateway
drops the environ, and the GC runs at nearly every allocation, so the collection (and a GIL
hand-off to another request thread) happens inside an allocation the gateway makes."""

import gc
import time

gc.set_threshold(1, 1, 1)


class Node:
    def __init__(self, environ):
        self.environ = environ
        environ["test.cycle"] = self

    def __del__(self):
        time.sleep(0)


def application(environ, start_response):
    Node(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
