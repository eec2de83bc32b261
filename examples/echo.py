"""Echo: reports, as JSON, what the app saw (key CGI variables, the body's length and
sha256). Wrapped in wsgiref.validate.validator, so any PEP 3333 breach by the gateway
raises and shows up in the server's error log. Used by the tests and the doctor docs."""

import hashlib
import json
import os
import sys
from wsgiref.validate import validator

KEYS = [
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
    "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "HTTP_HOST",
    "HTTP_PROXY", "HTTP_X_TEST", "HTTP_AUTHORIZATION", "HTTP_CONTENT_TYPE",
    "HTTP_CONTENT_LENGTH", "REQUEST_URI",
]


def echo(environ, start_response):
    digest, length = hashlib.sha256(), 0
    read_mode = environ.get("QUERY_STRING", "")
    stream = environ["wsgi.input"]
    if "lines" in read_mode:
        for line in stream:
            digest.update(line)
            length += len(line)
    else:
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            digest.update(chunk)
            length += len(chunk)
    info = {k: environ.get(k) for k in KEYS}
    info.update({
        "path_info_utf8": environ["PATH_INFO"].encode("latin-1").decode("utf-8", "replace"),
        "body_length": length,
        "body_sha256": digest.hexdigest(),
        "url_scheme": environ["wsgi.url_scheme"],
        "run_once": environ["wsgi.run_once"],
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "input_terminated": environ.get("wsgi.input_terminated", False),
        "os_environ_http_proxy": os.environ.get("HTTP_PROXY"),
        "name": __name__,
        "argv": sys.argv,
        "stdout_encoding": sys.stdout.encoding,
    })
    # The app's own print() must land in the error log, never in the response.
    print("echo: print() from the app goes to the error log")
    environ["wsgi.errors"].write("echo: a line on wsgi.errors\n")
    body = json.dumps(info, sort_keys=True).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(echo)
