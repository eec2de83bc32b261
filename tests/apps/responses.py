"""Well-behaved but less common responses: write() plus an iterable, an empty 204, and
wsgi.file_wrapper over a file whose close() is recorded (SERVE_FILE and CLOSE_LOG come
from --env)."""

import io
import os


def write_then_iterable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"two,")
    return [b"three,", b"four"]


def no_content(environ, start_response):
    start_response("204 No Content", [])
    return []


class TrackedFile(io.FileIO):
    def close(self):
        if not self.closed:
            with open(os.environ["CLOSE_LOG"], "a") as f:
                f.write("file closed\n")
        super().close()


def file_wrapper(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](TrackedFile(os.environ["SERVE_FILE"], "rb"))
