"""close() is always called: each app returns an iterable whose close() appends a line
to the file named by the CLOSE_LOG environment variable (set with --env)."""

import os


class Body:
    def __init__(self, name, chunks):
        self.name = name
        self.chunks = chunks

    def __iter__(self):
        for chunk in self.chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    def close(self):
        with open(os.environ["CLOSE_LOG"], "a") as f:
            f.write(f"closed {self.name}\n")


def normal(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body("normal", [b"one ", b"two\n"])


def wrong_type(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body("wrong_type", ["not bytes"])


def raise_mid(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body("raise_mid", [b"first\n", RuntimeError("close_log: boom mid-iteration")])
