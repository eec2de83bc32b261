"""Apps that break PEP 3333, one callable each (load as misbehave.py:NAME). The gateway
must answer each with a clean 500 (or cut the response short once the head is out) and
log what went wrong."""


def str_chunk(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str, not bytes"]


def no_start_response(environ, start_response):
    return [b"x"]


def no_start_response_empty(environ, start_response):
    return []


def start_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"twice"]


def crlf_header(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=b\r\nX-Evil: 1")])
    return [b"split"]


def non_latin1_header(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Smiley", "\u263a")])
    return [b"smiley"]


def short_status(environ, start_response):
    start_response("20 OK", [("Content-Type", "text/plain")])
    return [b"short"]


def bytes_status(environ, start_response):
    start_response(b"200 OK", [("Content-Type", "text/plain")])
    return [b"bytes status"]


def raise_before_start(environ, start_response):
    raise RuntimeError("misbehave: boom before start_response")


class _CloseRaises:
    def __iter__(self):
        return iter([])

    def close(self):
        raise RuntimeError("misbehave: boom in close()")


def close_raises(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _CloseRaises()


def raise_after_first_chunk(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first chunk\n"
        raise RuntimeError("misbehave: boom after the first chunk")

    return body()


def empty_then_raise(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b""
        raise RuntimeError("misbehave: boom after an empty chunk")

    return body()


def write_empty_then_raise(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"")
    raise RuntimeError("misbehave: boom after write(b'')")
