"""Socket tracer behaviour beyond HTTP parsing: addresses of NULL-address
accepts, its own sockets, pid and port filters, lost events, connections
older than the collector, syscalls already blocked when it starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.bpf.peers.servers import nginx, peer_server, python_http_server
from tests.bpf.test_http import run_client, wait_rows
from tracedb import Collector


def test_server_accepting_with_null_address_still_knows_its_client(tracer):
    with peer_server("null_accept_server.py", "127.0.0.1") as (server, port):
        client_pid, sent = run_client("pipelined", "127.0.0.1", port, [["GET", "/x", 0]])
        assert sent["results"][0][2] == 200
        client = wait_rows(tracer, f"select local_port from http_events where pid = {client_pid}", 1)
        server_rows = wait_rows(
            tracer,
            f"select remote_addr, remote_port, local_port, trace_role, req_path from http_events where pid = {server.pid}",
            1,
        )
    assert server_rows == [("127.0.0.1", client[0][0], port, "server", "/x")]


def test_own_sockets_are_never_traced(tracer):
    with python_http_server("127.0.0.1") as (server, port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/size/5", timeout=10) as resp:
            assert resp.read() == b"xxxxx"
        wait_rows(tracer, f"select 1 from http_events where pid = {server.pid}", 1)
    me = os.getpid()
    assert tracer.query(f"select count(*) as n from http_events where pid = {me}").to_pylist() == [{"n": 0}]
    assert tracer.query(f"select count(*) as n from conn_stats where pid = {me}").to_pylist() == [{"n": 0}]


def test_pid_and_port_filters(bpf_ready):
    with python_http_server("127.0.0.1") as (server_a, port_a), python_http_server("127.0.0.1") as (server_b, port_b):
        options = {"socket_tracer": {"pids": (server_a.pid, server_b.pid), "ports": (port_a,)}}
        with Collector(sources=["socket_tracer"], connector_options=options) as collector:
            client_a, _ = run_client("keepalive", "127.0.0.1", port_a, [["GET", "/size/1", 0]])
            run_client("keepalive", "127.0.0.1", port_b, [["GET", "/size/1", 0]])
            rows = wait_rows(collector, "select pid, local_port, trace_role from http_events", 1)
            stats = collector.query("select distinct pid from conn_stats").to_pylist()
    assert rows == [(server_a.pid, port_a, "server")], "no client rows (pid filter), nothing on port b (port filter)"
    assert stats == [{"pid": server_a.pid}]


def test_a_full_ring_buffer_is_counted_and_tracing_goes_on(bpf_ready):
    options = {"socket_tracer": {"data_ring_bytes": 16 << 10}}  # smaller than one 30 KiB capture
    with python_http_server("127.0.0.1") as (server, port):
        with Collector(sources=["socket_tracer"], connector_options=options) as collector:
            run_client("pipelined", "127.0.0.1", port, [["POST", "/echo", 200_000]] * 5)
            client_pid, _ = run_client("keepalive", "127.0.0.1", port, [["GET", "/size/3", 0]])
            rows = wait_rows(collector, f"select req_path, resp_status from http_events where pid = {client_pid}", 1)
            (status,) = collector.query("select events_lost, state from tracedb_connectors").to_pylist()
    assert status["events_lost"] > 0 and status["state"] == "running"
    assert rows == [("/size/3", 200)]


OPEN_THEN_WAIT_CLIENT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
s.sendall(b"GET /three HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n")
data = b""
while not data.endswith(b"\\r\\n\\r\\nxxx"):
    data += s.recv(4096)
print(data.split(b"\\r\\n", 1)[0].decode(), flush=True)
"""


def test_connections_older_than_the_collector_get_their_roles(bpf_ready):
    """Both ends of a connection opened before the collector started are
    adopted at their first traced bytes, and get their roles from them, in
    http_events and in conn_stats alike."""
    with nginx({"three": b"xxx"}) as (_, port):
        client = subprocess.Popen([sys.executable, "-c", OPEN_THEN_WAIT_CLIENT, str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            client_port = int(client.stdout.readline())
            with Collector(sources=["socket_tracer"]) as collector:
                client.stdin.write("go\n")
                client.stdin.flush()
                assert client.stdout.readline().strip() == "HTTP/1.1 200 OK"
                ends = (f"(pid = {client.pid} and local_port = {client_port}) "
                        f"or (local_port = {port} and remote_port = {client_port})")
                rows = wait_rows(collector, f"select local_port, trace_role, req_path from http_events where {ends} "
                                            "order by local_port", 2)
                roles = wait_rows(collector, f"select distinct remote_port, trace_role from conn_stats "
                                             f"where (pid = {client.pid} and remote_port = {port}) "
                                             f"or remote_port = {client_port} order by remote_port", 2)
        finally:
            client.kill()
            client.wait(timeout=10)
    assert rows == sorted([(port, "server", "/three"), (client_port, "client", "/three")])
    assert roles == sorted([(port, "client"), (client_port, "server")])


BLOCKED_IN_RECV_SERVER = """
import socket
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
request = b""
while not request.endswith(b"\\r\\n\\r\\n"):
    request += conn.recv(4096)
conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
conn.recv(1)
"""
RECVFROM = 45  # x86-64 syscall number: Python's socket.recv()


def blocked_in(pid: int, syscall_nr: int, timeout_s: float = 10.0) -> None:
    """Wait until `pid` sleeps inside that syscall (/proc/<pid>/syscall)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/syscall").read_text().split()[0] == str(syscall_nr):
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not block in syscall {syscall_nr} within {timeout_s} s")


def test_a_read_blocked_before_the_collector_started_is_seen_whole(bpf_ready):
    """A syscall is followed at its exit alone, its arguments read from the
    registers saved at its entry: a server that was already waiting in recv()
    when the probes were attached still has its request traced."""
    server = subprocess.Popen([sys.executable, "-c", BLOCKED_IN_RECV_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            blocked_in(server.pid, RECVFROM)
            with Collector(sources=["socket_tracer"]) as collector:
                client.sendall(b"GET /waiting HTTP/1.1\r\nHost: h\r\n\r\n")
                assert client.recv(4096).endswith(b"ok")
                rows = wait_rows(collector, f"select trace_role, req_method, req_path, resp_status, resp_body "
                                            f"from http_events where pid = {server.pid}", 1)
    finally:
        server.kill()
        server.wait(timeout=10)
    assert rows == [("server", "GET", "/waiting", 200, "ok")]
