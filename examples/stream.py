"""Streaming: a generator app whose chunks must reach the client as they are produced.
`?n=3&delay=0.5` sets the chunk count and the pause between chunks."""

import time
from urllib.parse import parse_qs


def application(environ, start_response):
    q = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(q.get("n", ["3"])[0])
    delay = float(q.get("delay", ["0.5"])[0])
    # X-Accel-Buffering: nginx passes the chunks on without buffering them.
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])

    def chunks():
        for i in range(n):
            if i:
                time.sleep(delay)
            yield f"chunk {i} at {time.time():.3f}\n".encode()

    return chunks()
