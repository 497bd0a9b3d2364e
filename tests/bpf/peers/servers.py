"""Starting and ending the servers the BPF tests talk to (only the ones the
tests start, ended by their own pid)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require

PEERS = Path(__file__).parent

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile {sendfile};
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        listen [::1]:{port};
        root {dir}/www;
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def stopping(proc: subprocess.Popen):
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def nginx(files: dict[str, bytes], sendfile: bool = True):
    """nginx serving `files` on 127.0.0.1 and ::1; yields (process, port)."""
    require(shutil.which("nginx") is not None, "nginx is not installed (scripts/setup.sh --test installs it)")
    with tempfile.TemporaryDirectory(prefix="tracedb-nginx-") as tmp:
        www = Path(tmp, "www")
        www.mkdir()
        for name, content in files.items():
            (www / name).write_bytes(content)
        port = free_port()
        conf = Path(tmp, "nginx.conf")
        conf.write_text(NGINX_CONF.format(dir=tmp, port=port, sendfile="on" if sendfile else "off"))
        with stopping(subprocess.Popen(["nginx", "-c", str(conf), "-p", tmp])) as proc:
            wait_listening(port)
            yield proc, port


@contextmanager
def peer_server(script: str, host: str):
    """A server script of peers/ on host; yields (process, port it printed)."""
    proc = subprocess.Popen([sys.executable, str(PEERS / script), host], stdout=subprocess.PIPE, text=True)
    with stopping(proc):
        yield proc, int(proc.stdout.readline())


def python_http_server(host: str):
    return peer_server("http_server.py", host)


def _setpriv_as(user: str) -> list[str]:
    """Run a command as `user` (servers that refuse root); setpriv execs, so
    the pid we hold is the server's own."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]


@contextmanager
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth); yields (postmaster, port).
    Each client connection is served by a forked backend: find it by local_port."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    require(bool(bins) and shutil.which("psql") is not None, "PostgreSQL is not installed (scripts/setup.sh --test)")
    with tempfile.TemporaryDirectory(prefix="tracedb-pg-") as tmp:
        shutil.chown(tmp, "postgres", "postgres")
        data, port = Path(tmp, "data"), free_port()
        subprocess.run(_setpriv_as("postgres") + [str(bins[-1] / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        command = [str(bins[-1] / "postgres"), "-D", str(data), "-p", str(port), "-k", tmp,
                   "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        with stopping(subprocess.Popen(_setpriv_as("postgres") + command, stderr=subprocess.DEVNULL)) as proc:
            wait_listening(port, timeout_s=30)
            yield proc, port


@contextmanager
def mariadb():
    """A throwaway MariaDB server on 127.0.0.1 without grant checks; yields (server, port)."""
    require(shutil.which("mariadbd") is not None or Path("/usr/sbin/mariadbd").exists(), "MariaDB is not installed")
    with tempfile.TemporaryDirectory(prefix="tracedb-mariadb-") as tmp:
        port = free_port()
        subprocess.run(["mariadb-install-db", "--user=root", f"--datadir={tmp}/data", "--auth-root-authentication-method=normal"],
                       check=True, capture_output=True)
        command = ["/usr/sbin/mariadbd", "--no-defaults", "--user=root", f"--datadir={tmp}/data", f"--port={port}",
                   "--bind-address=127.0.0.1", f"--socket={tmp}/sock", f"--pid-file={tmp}/pid", "--skip-grant-tables",
                   "--skip-log-bin", "--innodb-buffer-pool-size=16M"]
        with stopping(subprocess.Popen(command, stderr=subprocess.DEVNULL)) as proc:
            wait_listening(port, timeout_s=60)
            yield proc, port


@contextmanager
def redis():
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with stopping(subprocess.Popen(command, stdout=subprocess.DEVNULL)) as proc:
        wait_listening(port)
        yield proc, port


@contextmanager
def dns_namespace(zone_args: list[str]):
    """A network namespace of the test's own with dnsmasq answering on its
    127.0.0.1:53 and a resolv.conf pointing there, so that the libc resolver
    of processes run in it (`ip netns exec NAME ...`) asks our server; yields
    (dnsmasq process, namespace name)."""
    require(shutil.which("dnsmasq") is not None and shutil.which("ip") is not None, "dnsmasq/iproute2 not installed")
    name = f"tracedb-dns-{os.getpid()}"
    conf_dir = Path("/etc/netns", name)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        conf_dir.mkdir(parents=True)
        (conf_dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        command = ["ip", "netns", "exec", name, "dnsmasq", "--no-daemon", "--user=root", "--port=53",
                   "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts", *zone_args]
        with stopping(subprocess.Popen(command, stderr=subprocess.DEVNULL)) as proc:
            time.sleep(0.5)
            yield proc, name
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)
        subprocess.run(["ip", "netns", "delete", name], check=False)
