"""A one-connection-at-a-time HTTP server that accepts with a NULL address
(accept4(fd, NULL, NULL, 0) through libc), as some servers do: the tracer
must still learn the client's address. Run as a script: prints its port.

    python null_accept_server.py HOST
"""

import ctypes
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)

if __name__ == "__main__":
    host = sys.argv[1]
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.bind((host, 0))
    listener.listen()
    print(listener.getsockname()[1], flush=True)
    while True:
        fd = libc.accept4(listener.fileno(), None, None, 0)
        if fd < 0:
            sys.exit(f"accept4: {os.strerror(ctypes.get_errno())}")
        with socket.socket(fileno=fd) as conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
