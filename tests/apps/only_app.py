"""A module with `app` and no `application`: the default callable falls back to `app`."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fallback to app\n"]
