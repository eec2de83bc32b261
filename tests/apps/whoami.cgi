#!/usr/local/bin/cgi2wsgi
# A cgi-bin drop-in whose app answers with the name its module runs under.
# A drop-in runs as a module that is not __main__, so the guard below stays inert.
"""A drop-in that reports its own module name (__name__)."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [__name__.encode()]


if __name__ == "__main__":
    raise SystemExit("whoami.cgi ran as __main__")
