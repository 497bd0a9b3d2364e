"""HTTP clients for the socket tracer tests, run as a script.

    python http_client.py MODE HOST PORT PLAN_JSON

PLAN_JSON: a list of [method, path, request_body_size]. MODE:
- keepalive: http.client, one connection, requests one after the other;
- pipelined: one raw socket, every request written at once, then the answers read;
- vectored: as pipelined, with one sendmsg() of an iovec per request part and recvmsg().

Prints one JSON object: {"results": [[method, path, status, req_body_size,
resp_body_size], ...], "bytes_sent": N, "bytes_recv": N} (byte counts of the
socket, pipelined mode only).
"""

import http.client
import io
import json
import socket
import sys


def keepalive(host, port, plan):
    conn = http.client.HTTPConnection(host, port, timeout=20)
    results = []
    for method, path, body_size in plan:
        body = b"b" * body_size if method == "POST" else None
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        results.append([method, path, resp.status, body_size, len(data)])
    conn.close()
    return {"results": results}


class _Unclosable(io.BytesIO):
    def close(self):
        """HTTPResponse closes its file after each answer; the next one needs it."""


class _Replay:
    """A socket stand-in whose stream is bytes already received."""

    def __init__(self, data: bytes):
        self.file = _Unclosable(data)

    def makefile(self, *args, **kwargs):
        return self.file


def _request_parts(plan) -> list[bytes]:
    parts = []
    for method, path, body_size in plan:
        parts.append(f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {body_size}\r\n\r\n".encode())
        parts.append(b"b" * body_size)
    return parts


def _send_all_and_read(host, port, parts: list[bytes], vectored: bool) -> bytes:
    """Write every request at once, half-close, read until the server closes.
    vectored: one sendmsg() with an iovec per part, recvmsg() to read."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect((host, port))
        if vectored:
            sent = sock.sendmsg(parts)
            assert sent == sum(map(len, parts)), "loopback takes it all at once"
            read = lambda: sock.recvmsg(65536)[0]  # noqa: E731
        else:
            sock.sendall(b"".join(parts))
            read = lambda: sock.recv(65536)  # noqa: E731
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(read, b""))


def pipelined(host, port, plan, vectored=False):
    parts = _request_parts(plan)
    received = _send_all_and_read(host, port, parts, vectored)
    replay = _Replay(received)
    results = []
    for method, path, body_size in plan:
        resp = http.client.HTTPResponse(replay, method=method)
        resp.begin()
        results.append([method, path, resp.status, body_size, len(resp.read())])
    return {"results": results, "bytes_sent": sum(map(len, parts)), "bytes_recv": len(received)}


def vectored(host, port, plan):
    return pipelined(host, port, plan, vectored=True)


if __name__ == "__main__":
    mode, host, port, plan = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    print(json.dumps({"keepalive": keepalive, "pipelined": pipelined, "vectored": vectored}[mode](host, port, plan)))
