"""Socket tracer behaviour beyond HTTP parsing: addresses of NULL-address
accepts, its own sockets, pid and port filters, lost events."""

from __future__ import annotations

import os
import urllib.request

from tests.bpf.peers.servers import peer_server, python_http_server
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
