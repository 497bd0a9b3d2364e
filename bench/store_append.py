"""Append throughput of the table store (TableStore.append).

Builds, untimed, record batches of 65,536 synthetic http_events rows in time
order (one hour of event time), then times appending all of them, batch by
batch, into a fresh store, under two retention budgets:

  * large: max_bytes 4 GiB, so every row is kept; partitions seal at 256 MiB
    (max_bytes/16), each seal copying its batches into one contiguous table;
  * small: max_bytes 256 MiB, so partitions seal at 16 MiB and retention drops
    the oldest ones while appending goes on.

The store's clock follows the event time of the batch being appended; the age
limit (1 day) is never the one that seals or drops. Each budget is run 3 times
on a new store; the median run gives rows/s and MB/s (Arrow bytes of the input
batches per second). Memory per row is the store's own account (stats() bytes
over rows held) at the end of a run.

    .venv/bin/python bench/store_append.py [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import gc
import time

from common import (
    DEFAULT_ROWS, HTTP_EVENTS, MIB, SECOND_US, EventClock, append_all, end_us, make_batches, median,
    print_table,
)

from tracedb.storage import Retention, TableStore

BUDGETS = {"large (4 GiB)": 4096 * MIB, "small (256 MiB)": 256 * MIB}
MAX_AGE_S = 86_400.0


def run_budget(batches, ends, max_bytes: int, runs: int) -> tuple[list[float], dict]:
    """Seconds of each run, and the store's stats row after the last one."""
    times = []
    for _ in range(runs):
        gc.collect()
        clock = EventClock()
        store = TableStore([HTTP_EVENTS], Retention(max_bytes=max_bytes, max_age_s=MAX_AGE_S), clock_us=clock)
        t0 = time.perf_counter()
        append_all(store, batches, clock, ends)
        times.append(time.perf_counter() - t0)
        stats = store.stats().to_pylist()[0]
        del store
    return times, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows appended per run (default 10M)")
    parser.add_argument("--runs", type=int, default=3, help="runs per budget; the median is reported")
    args = parser.parse_args()

    t0 = time.perf_counter()
    batches = make_batches(args.rows, start_us=1_700_000_000 * SECOND_US, span_us=3600 * SECOND_US)
    ends = [end_us(b) for b in batches]
    in_bytes = sum(b.nbytes for b in batches)
    print(
        f"built {args.rows:,} rows in {len(batches)} batches, {in_bytes / MIB:,.0f} MiB of Arrow "
        f"({in_bytes / args.rows:.1f} B/row) in {time.perf_counter() - t0:.1f} s (not timed)"
    )
    print(f"append, median of {args.runs} runs per budget:\n")

    rows = []
    for name, max_bytes in BUDGETS.items():
        times, s = run_budget(batches, ends, max_bytes, args.runs)
        t = median(times)
        rows.append([
            name, f"{t:.3f}", f"{args.rows / t / 1e6:.2f}", f"{in_bytes / t / 1e6:,.0f}",
            f"{s['rows']:,}", s["partitions"], f"{s['rows_dropped']:,}", f"{s['bytes'] / max(s['rows'], 1):.1f}",
            " ".join(f"{x:.3f}" for x in times),
        ])
    print_table(
        ["budget", "median s", "M rows/s", "MB/s", "rows held", "parts", "rows dropped", "B/row held", "runs (s)"],
        rows,
    )


if __name__ == "__main__":
    main()
