"""A FastCGI app that answers every request with a bare END_REQUEST(FCGI_UNKNOWN_ROLE), no
STDOUT: what cgi2wsgi used to answer an AUTHORIZER request with. The tests point each web
server's authorizer at it to record what the server makes of that answer (lighttpd 1.4.69
lets the request through). Listens on fd 0 (started by mod_fcgid), a unix socket path or a
TCP port on 127.0.0.1, given as the only argument ("fd0" for fd 0)."""

import os
import socket
import struct
import sys


def listener(where):
    if where == "fd0":
        return socket.socket(fileno=0)
    if where.startswith("/"):
        if os.path.exists(where):
            os.unlink(where)
        s = socket.socket(socket.AF_UNIX)
        s.bind(where)
        os.chmod(where, 0o666)
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(where)))
    s.listen(16)
    return s


def read_exact(conn, n):
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def serve(conn):
    # Read records until the end of PARAMS, then answer.
    while True:
        _version, kind, request_id, length, padding, _ = struct.unpack(">BBHHBB", read_exact(conn, 8))
        read_exact(conn, length + padding)
        if kind == 4 and length == 0:
            end = struct.pack(">IB3x", 0, 3)
            conn.sendall(struct.pack(">BBHHBB", 1, 3, request_id, len(end), 0, 0) + end)
            return


def main():
    s = listener(sys.argv[1])
    while True:
        conn, _ = s.accept()
        try:
            serve(conn)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


main()
