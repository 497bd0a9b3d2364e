"""Starting and ending the servers the BPF tests talk to (only the ones the
tests start, ended by their own pid)."""

from __future__ import annotations

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
