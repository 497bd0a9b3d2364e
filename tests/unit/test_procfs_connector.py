"""The procfs connector reading this machine's real /proc (no root needed)."""

import subprocess
import sys
import time

from tracedb import Collector

# Idle, then burn exactly one second of CPU, then idle: samples before and
# after the burn exist however loaded the machine is.
BURN = (
    "import sys, time\n"
    "time.sleep(1.3)\n"
    "while time.process_time() < 1.0: pass\n"
    "time.sleep(1.3)\n"
)


def test_cpu_burning_child_shows_growing_cpu_time_and_its_cmdline():
    with Collector(sources=["procfs"]) as collector:
        child = subprocess.Popen([sys.executable, "-c", BURN, "2.5", "tracedb-burn-marker"])
        child.wait(timeout=30)
        time.sleep(0.2)
    samples = collector.query(
        f"select cpu_utime_ns + cpu_ktime_ns as cpu_ns, num_threads, rss_bytes, upid from process_stats where pid = {child.pid} order by time_"
    ).to_pylist()
    assert len(samples) >= 2, samples
    cpu = [s["cpu_ns"] for s in samples]
    assert cpu == sorted(cpu) and cpu[-1] - cpu[0] >= 0.8e9, "the burnt second shows as about 1e9 ns of CPU time"
    assert all(s["rss_bytes"] > 0 and s["num_threads"] >= 1 for s in samples)
    process = collector.query(
        f"select p.pid, p.ppid, p.cmdline, p.exe, p.start_time from processes p "
        f"join (select distinct upid from process_stats where pid = {child.pid}) using (upid)"
    ).to_pylist()
    assert process, "the child is in processes under the same upid"
    assert process[-1]["cmdline"].endswith("2.5 tracedb-burn-marker")
    assert process[-1]["ppid"] > 0
    assert abs(process[-1]["start_time"].timestamp() - time.time()) < 60
