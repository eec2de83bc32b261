"""App for tests/stall.rs: /big yields 32 MiB in 64 KiB chunks (a response a peer that never
reads cannot take in); anything else answers "ok\n"."""

CHUNK = b"x" * 65536


def application(environ, start_response):
    if environ.get("PATH_INFO", "") == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(512 * len(CHUNK)))])
        return (CHUNK for _ in range(512))
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
