"""A small HTTP/1.1 server for the socket tracer tests, run as a script.

    python http_server.py HOST      # binds HOST:0, prints the port, serves until killed

Routes: GET /size/N (N body bytes, Content-Length), GET /chunked/N (N body
bytes in 1000-byte chunks), GET /status/CODE, POST /echo (answers with as
many bytes as it received), HEAD on any of them. Keep-alive throughout.
"""

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_POST(self):
        received = len(self._read_body())
        self._fixed(200, received, send_body=True)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _answer(self, send_body: bool):
        parts = self.path.strip("/").split("/")
        if parts[0] == "size":
            self._fixed(200, int(parts[1]), send_body)
        elif parts[0] == "chunked":
            self._chunked(int(parts[1]), send_body)
        elif parts[0] == "status":
            code = int(parts[1])
            self._fixed(code, 0 if code in (204, 304) else 9, send_body and code not in (204, 304))
        else:
            self._fixed(404, 9, send_body)

    def _fixed(self, code: int, size: int, send_body: bool):
        self.send_response(code)
        if code not in (204, 304):
            self.send_header("Content-Length", str(size))
        self.end_headers()
        if send_body:
            self.wfile.write(b"x" * size)

    def _chunked(self, size: int, send_body: bool):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not send_body:
            return
        for start in range(0, size, 1000):
            n = min(1000, size - start)
            self.wfile.write(b"%x\r\n" % n + b"c" * n + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), Handler)


if __name__ == "__main__":
    server = Server(sys.argv[1])
    print(server.server_address[1], flush=True)
    server.serve_forever()
