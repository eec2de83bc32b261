"""start_response with exc_info (PEP 3333 error handling): replacing the head before any
body went out, and calling it after the body started (the error must be re-raised)."""

import sys


def replace_before_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("exc_info: the app changed its mind")
    except ValueError:
        body = b"the app's own error page\n"
        start_response("500 App Error", [("Content-Type", "text/plain"), ("X-App-Error", "yes")], sys.exc_info())
    return [body]


def after_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"first chunk\n"
        try:
            raise ValueError("exc_info: failed after the body started")
        except ValueError:
            # The head is out: start_response must re-raise this error into the app.
            start_response("500 Too Late", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"must never be sent\n"

    return body()
