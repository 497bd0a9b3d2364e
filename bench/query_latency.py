"""Query latency of the store's SQL layer (QueryEngine.query) against two baselines.

Builds 10M synthetic http_events rows covering the hour that ends now, appends
them in time order with the store's clock following event time, under
Retention(max_age_s=3600, max_bytes=1 TiB): partitions seal by age every
225 s of event time (max_age_s/16), giving 15 sealed partitions plus the open
one. Then runs each query below `--repeat` times (after one untimed warm-up run)
and prints the median and p99 of the repetitions, in milliseconds, including
the conversion of the result to an Arrow table:

  * store: QueryEngine(store).query(sql), i.e. the per-query sync with
    the store snapshot plus the UNION ALL view of time-guarded partitions;
  * arrow: the same rows as one pyarrow Table (store.read(), one
    chunk per partition) registered in a plain DuckDB connection, no partitions;
  * native: CREATE TABLE ... AS SELECT * FROM that Arrow table.

Queries: select 1 (fixed per-query cost), count(*), a group by req_path with
count/avg/quantile_cont(0.99) of latency, and select * of the last 1% of the
time window (36 s), bounded by a TIMESTAMPTZ literal and by now() - interval
(the interval is computed at the start of each series so that it selects ~1%;
the window then slides a little with wall time, so its row counts vary).

Last, the cost of the engine's lazy registration: count(*) as the first query
of a new QueryEngine (registers every partition), as the first query after an
append that only grew the open partition, after an append that sealed a
partition or let the age limit drop the oldest (new view), and repeated with
nothing new; each count is also checked against the store's row count.

    .venv/bin/python bench/query_latency.py [--rows 200000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable

import duckdb
import pyarrow as pa
from common import (
    BATCH_ROWS, DEFAULT_ROWS, HTTP_EVENTS, MIB, SECOND_US, TABLE, EventClock, append_all, end_us, make_batches,
    median, ms, p99, print_table, time_runs,
)

from tracedb.storage import QueryEngine, Retention, TableStore
from tracedb.storage.table import PARTITIONS_PER_WINDOW

SPAN_S = 3600
SEAL_AGE_US = SPAN_S * SECOND_US // PARTITIONS_PER_WINDOW
COUNT = f"select count(*) as n from {TABLE}"


def wall_us() -> int:
    return time.time_ns() // 1000


def query_set(bound_us: int) -> dict[str, Callable[[], str]]:
    """Name -> SQL maker (called at the start of each series)."""
    literal = dt.datetime.fromtimestamp(bound_us / SECOND_US, dt.timezone.utc).isoformat(sep=" ")
    return {
        "select 1": lambda: "select 1 as one",
        "count(*)": lambda: COUNT,
        "group by req_path": lambda: (
            f"select req_path, count(*) as n, avg(latency) as avg_ns, "
            f"quantile_cont(latency, 0.99) as p99_ns from {TABLE} group by req_path"
        ),
        "last 1%, TIMESTAMPTZ literal": lambda: f"select * from {TABLE} where time_ > TIMESTAMPTZ '{literal}'",
        "last 1%, now() - interval": lambda: (
            f"select * from {TABLE} where time_ > now() - interval '{(wall_us() - bound_us) / SECOND_US:.3f} seconds'"
        ),
    }


def build_store(rows: int) -> tuple[TableStore, EventClock, int]:
    """The store loaded with `rows` rows over the hour ending now; returns it, its clock, the data's end."""
    t0 = time.perf_counter()
    start_us = wall_us() - SPAN_S * SECOND_US
    batches = make_batches(rows, start_us, SPAN_S * SECOND_US)
    ends = [end_us(b) for b in batches]
    built = time.perf_counter() - t0
    clock = EventClock()
    store = TableStore([HTTP_EVENTS], Retention(max_bytes=1 << 40, max_age_s=SPAN_S), clock_us=clock)
    t0 = time.perf_counter()
    append_all(store, batches, clock, ends)
    snap = store.snapshot()[TABLE]
    print(
        f"built {rows:,} rows in {built:.1f} s, appended in {time.perf_counter() - t0:.2f} s: "
        f"{len(snap.sealed)} sealed partitions + open ({snap.open.num_rows if snap.open else 0:,} rows), "
        f"{sum(p.nbytes for p in snap.partitions) / MIB:,.0f} MiB"
    )
    return store, clock, ends[-1]


def baselines(store: TableStore) -> dict[str, duckdb.DuckDBPyConnection]:
    one_table = store.read(TABLE)
    arrow_db = duckdb.connect()
    arrow_db.register(TABLE, one_table)
    native_db = duckdb.connect()
    native_db.register("src", one_table)
    t0 = time.perf_counter()
    native_db.execute(f"CREATE TABLE {TABLE} AS SELECT * FROM src")
    native_db.unregister("src")
    print(f"native DuckDB copy made in {time.perf_counter() - t0:.1f} s\n")
    return {"arrow": arrow_db, "native": native_db}


def compare(engine: QueryEngine, others: dict[str, duckdb.DuckDBPyConnection], bound_us: int, repeat: int) -> None:
    runners: dict[str, Callable[[str], pa.Table]] = {"store": engine.query}
    runners.update({name: (lambda sql, db=db: db.sql(sql).to_arrow_table()) for name, db in others.items()})
    rows = []
    for qname, make_sql in query_set(bound_us).items():
        cells, counts = [qname], []
        for run in runners.values():
            sql = make_sql()
            result = run(sql)  # warm-up, untimed
            times = time_runs(lambda: run(sql), repeat)
            cells += [ms(median(times)), ms(p99(times))]
            counts.append(result.num_rows)
        cells.append(f"{counts[0]:,}" if len(set(counts)) == 1 else "/".join(f"{n:,}" for n in counts))
        rows.append(cells)
    headers = ["query"] + [f"{n} {s}" for n in runners for s in ("med", "p99")] + ["rows"]
    print(f"latency in ms, median and p99 of {repeat} runs (after 1 warm-up); store = tracedb QueryEngine,")
    print("arrow = the same rows as one registered Arrow table, native = a DuckDB table:\n")
    print_table(headers, rows)


def sealed_ids(store: TableStore) -> list[int]:
    return [p.id for p in store.snapshot()[TABLE].sealed]


def registration(store: TableStore, clock: EventClock, data_end_us: int, repeat: int) -> None:
    """count(*) first on a new engine, first after appends (open partition only, or a changed sealed set), repeated."""
    fresh = []
    for _ in range(min(repeat, 5)):
        engine = QueryEngine(store)
        fresh += time_runs(lambda: engine.query(COUNT), 1)
        engine.close()
    engine = QueryEngine(store)
    engine.query(COUNT)
    # each new batch covers a quarter of the seal age, so every 4th or so append seals a partition
    new = make_batches(repeat * BATCH_ROWS, data_end_us + 1, repeat * SEAL_AGE_US // 4, seed=1)
    after_open, after_change, again, wrong = [], [], [], 0
    for batch in new:
        sealed_before = sealed_ids(store)
        append_all(store, [batch], clock, [end_us(batch)])
        first = time_runs(lambda: engine.query(COUNT), 1)
        (after_open if sealed_ids(store) == sealed_before else after_change).extend(first)
        again += time_runs(lambda: engine.query(COUNT), 1)
        wrong += engine.query(COUNT)["n"][0].as_py() != store.stats()["rows"][0].as_py()
    print("\ncount(*) through the engine, lazy registration (ms):\n")
    print_table(
        ["first query", "runs", "median", "p99"],
        [[name, len(xs), ms(median(xs)), ms(p99(xs))] for name, xs in [
            ("on a new QueryEngine", fresh),
            ("after an append to the open partition", after_open),
            ("after an append that sealed or dropped one", after_change),
            ("repeated, nothing new", again),
        ] if xs],
    )
    if wrong:
        print(f"WRONG: {wrong} of {len(new)} counts after an append differ from the store's row count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows in the table (default 10M)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per query and backend")
    args = parser.parse_args()

    store, clock, data_end_us = build_store(args.rows)
    others = baselines(store)
    engine = QueryEngine(store)
    compare(engine, others, data_end_us - SPAN_S * SECOND_US // 100, args.repeat)
    registration(store, clock, data_end_us, args.repeat)


if __name__ == "__main__":
    main()
