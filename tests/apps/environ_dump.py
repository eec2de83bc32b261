"""Environ dump: every environ key with a str value, and the wsgi.* flags, as JSON.
Unlike examples/echo.py it is not wrapped in wsgiref.validate, so it can show an environ
the validator would refuse (for example SCRIPT_NAME and PATH_INFO both empty)."""

import json


def application(environ, start_response):
    info = {
        "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
        "url_scheme": environ["wsgi.url_scheme"],
        "run_once": environ["wsgi.run_once"],
        "value_types": sorted({type(v).__name__ for k, v in environ.items() if "." not in k}),
    }
    body = json.dumps(info, sort_keys=True).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
