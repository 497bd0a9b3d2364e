"""PostgreSQL, MySQL, Redis and DNS traffic between real servers and clients
(installed from Debian by scripts/setup.sh --test): every statement or
command the client sent is a row with its text, status and a plausible
latency; errors appear as such."""

from __future__ import annotations

import json
import subprocess
import sys


from tests.bpf.peers import servers
from tests.bpf.test_http import wait_rows

DB_CLIENT = str(servers.PEERS / "db_client.py")


def run(command: list[str], **kwargs) -> subprocess.Popen:
    """Run a client to its end; return it (for its pid)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    proc.out, proc.err = proc.communicate(timeout=60)
    return proc


def rows_of(collector, table: str, columns: str, where: str, count: int) -> list[dict]:
    names = [c.strip() for c in columns.split(",")]
    rows = wait_rows(collector, f"select {columns} from {table} where {where} order by time_", count)
    return [dict(zip(names, r)) for r in rows]


def assert_plausible_latency(rows: list[dict]) -> None:
    assert all(0 < r["latency"] < 10e9 for r in rows), rows


def test_postgresql_simple_and_extended_protocol(tracer):
    with servers.postgres() as (_, port):
        psql = run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-X",
                    "-c", "select 1 as one", "-c", "select * from nope"])
        driver = run([sys.executable, DB_CLIENT, "pgsql", str(port)])
        assert json.loads(driver.out) == [["select", [42, "tracedb"]], ["error", "42P01"]]
        simple = rows_of(tracer, "pgsql_events", "req_cmd, req, resp, latency", f"pid = {psql.pid}", 2)
        extended = rows_of(tracer, "pgsql_events", "req_cmd, req, resp, latency", f"pid = {driver.pid}", 2)
        server = rows_of(tracer, "pgsql_events", "req, trace_role", f"local_port = {port}", 4)
    assert [r["req"] for r in simple] == ["select 1 as one", "select * from nope"]
    assert "SELECT 1" in simple[0]["resp"]
    assert 'relation "nope" does not exist' in simple[1]["resp"]
    assert "40" in extended[0]["req"] and "tracedb" in extended[0]["req"], "bound parameters are shown"
    assert "SELECT 1" in extended[0]["resp"]
    assert "42P01" in extended[1]["resp"] or "does not exist" in extended[1]["resp"]
    assert_plausible_latency(simple + extended)
    assert {r["trace_role"] for r in server} == {"server"}
    assert [r["req"] for r in server if r["req"] in ("select 1 as one", "select * from nope")] == [
        "select 1 as one", "select * from nope"]


def test_mysql_queries_prepared_statements_and_errors(tracer):
    with servers.mariadb() as (_, port):
        cli = run(["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root",
                   "-e", "select 1 + 1 as two; select * from mysql.nope"])
        driver = run([sys.executable, DB_CLIENT, "mysql", str(port)])
        assert json.loads(driver.out) == [["select", ["42", "tracedb"]]]
        queries = rows_of(tracer, "mysql_events", "req_cmd, req_body, resp_status, resp_body, latency",
                          f"pid = {cli.pid} and req_body like 'select%'", 2)
        prepared = rows_of(tracer, "mysql_events", "req_cmd, req_body, resp_status, resp_body, latency",
                           f"pid = {driver.pid}", 2)
    assert [r["req_body"] for r in queries] == ["select 1 + 1 as two", "select * from mysql.nope"]
    assert queries[1]["resp_status"].upper().startswith("ERR") and "nope" in queries[1]["resp_body"]
    executes = [r for r in prepared if "40" in r["req_body"] and "tracedb" in r["req_body"]]
    assert executes, f"the execute shows its parameters: {prepared}"
    assert_plausible_latency(queries + executes)


def test_redis_commands_pipeline_and_errors(tracer):
    with servers.redis() as (_, port):
        cli = run(["redis-cli", "-p", str(port), "set", "greeting", "hello"])
        setname = run(["redis-cli", "-p", str(port), "client", "setname", "tester"])
        wrong = run(["redis-cli", "-p", str(port), "nosuchcommand", "x"])
        pipe_input = "".join(f"*3\r\n$3\r\nSET\r\n$2\r\nk{i}\r\n$2\r\nv{i}\r\n" for i in range(5))
        pipe = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        pipe.communicate(pipe_input, timeout=60)
        one = rows_of(tracer, "redis_events", "req_cmd, req_args, resp, latency", f"pid = {cli.pid}", 1)
        named = rows_of(tracer, "redis_events", "req_cmd, req_args", f"pid = {setname.pid}", 1)
        error = rows_of(tracer, "redis_events", "req_cmd, resp", f"pid = {wrong.pid}", 1)
        piped = rows_of(tracer, "redis_events", "req_cmd, req_args, resp", f"pid = {pipe.pid} and req_cmd = 'SET'", 5)
    assert [(r["req_cmd"], json.loads(r["req_args"])) for r in one if r["req_cmd"] == "SET"] == [("SET", ["greeting", "hello"])]
    assert "OK" in next(r["resp"] for r in one if r["req_cmd"] == "SET")
    assert any(r["req_cmd"] == "CLIENT SETNAME" and json.loads(r["req_args"]) == ["tester"] for r in named)
    assert any("unknown command" in r["resp"].lower() for r in error)
    assert [json.loads(r["req_args"]) for r in piped] == [[f"k{i}", f"v{i}"] for i in range(5)]
    assert_plausible_latency(one)


def test_dns_over_udp_tcp_and_the_libc_resolver(tracer):
    zone = ["--address=/a.tracedb/10.1.2.3", "--address=/a.tracedb/fd00::3", "--local=/tracedb/"]
    with servers.dns_namespace(zone) as (dnsmasq, ns):
        in_ns = ["ip", "netns", "exec", ns]
        dig_udp = run(in_ns + ["dig", "+short", "@127.0.0.1", "a.tracedb", "A"])
        dig_tcp = run(in_ns + ["dig", "+tcp", "+short", "@127.0.0.1", "a.tracedb", "A"])
        nx = run(in_ns + ["dig", "@127.0.0.1", "missing.tracedb", "A"])
        libc = run(in_ns + ["getent", "ahosts", "a.tracedb"])
        assert dig_udp.out.split() == ["10.1.2.3"] and dig_tcp.out.split() == ["10.1.2.3"]
        assert "NXDOMAIN" in nx.out and "10.1.2.3" in libc.out
        columns = "req_body, resp_header, resp_body, remote_port, latency"
        udp = rows_of(tracer, "dns_events", columns, f"pid = {dig_udp.pid}", 1)
        tcp = rows_of(tracer, "dns_events", columns, f"pid = {dig_tcp.pid}", 1)
        missing = rows_of(tracer, "dns_events", columns, f"pid = {nx.pid}", 1)
        resolver = rows_of(tracer, "dns_events", columns, f"pid = {libc.pid}", 2)
    for rows in (udp, tcp):
        (row,) = rows
        assert "a.tracedb" in row["req_body"] and "10.1.2.3" in row["resp_body"] and row["remote_port"] == 53
    assert "NXDOMAIN" in missing[0]["resp_header"]
    assert {"10.1.2.3", "fd00::3"} <= {a for r in resolver for a in ("10.1.2.3", "fd00::3") if a in r["resp_body"]}
    assert_plausible_latency(udp + tcp + missing + resolver)
