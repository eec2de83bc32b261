"""Imports C extension modules from the standard library's lib-dynload (_ssl, _sqlite3,
_ctypes) and from site-packages (markupsafe._speedups, which Flask pulls in), and answers
with where each was loaded from: with a static libpython they resolve the C API in the
executable."""

import sys

import _ctypes
import _sqlite3
import _ssl
import markupsafe._speedups


def application(environ, start_response):
    names = ["_ssl", "_sqlite3", "_ctypes", "markupsafe._speedups"]
    body = "".join(f"{n} {sys.modules[n].__file__}\n" for n in names).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
