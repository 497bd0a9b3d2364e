"""Scheduled queries: `tracedb run --schedule FILE`, osquery's query packs over tracedb's tables.

A schedule is a TOML file of named queries::

    [query.top_cpu]
    sql = '''
        select comm, (max(cpu_utime_ns + cpu_ktime_ns) - min(cpu_utime_ns + cpu_ktime_ns)) / 1e9 as cpu_s
        from process_stats
        where time_ >= $window_start and time_ < $window_end
        group by comm order by cpu_s desc limit 10'''
    interval = "1m"            # seconds (60, 0.5) or "30s", "5m", "1h"
    style = "snapshot"         # or "differential" (the default)
    sink = "table"             # stdout (the default), jsonl, parquet or table
    table = "top_cpu"          # table sink: the table's name (default: the query's name)
    # path = "/var/log/tracedb/results.jsonl"   # jsonl: the file appended to
    # path = "/var/lib/tracedb/parquet"         # parquet: the directory

- `sql`: one SELECT. `$window_start` and `$window_end` (TIMESTAMPTZ) are the
  bounds of the stretch of time the run covers (see runner.py).
- `style`: `snapshot` emits every row at every run (action "snapshot");
  `differential` emits only the rows added and removed since the previous run
  (actions "added", "removed"; the first run adds every row). The previous
  result is kept in memory: after a restart the first run adds every row again.
- `sink`: see sinks.py for the shape of what each writes. Relative paths are
  relative to the schedule file's directory.

The whole file is checked when the collector starts, before collection does:
a TOML error, an unknown key, sink or style, a bad interval, SQL that does not
parse or names an unknown table or column, an unwritable path: each stops
`tracedb run` with exit status 2 and `FILE:LINE: query NAME: reason`.

Modules: config (the file), runner (threads, windows, status table),
differential (added/removed rows), sinks (where results go).
`tracedb/examples/schedule.toml` is a schedule of useful summaries.
"""

from tracedb.schedule.config import Schedule, ScheduledQuery, ScheduleError, load_schedule, parse_schedule
from tracedb.schedule.runner import STATUS_TABLE, Scheduler

__all__ = [
    "STATUS_TABLE",
    "Schedule",
    "ScheduleError",
    "ScheduledQuery",
    "Scheduler",
    "load_schedule",
    "parse_schedule",
]
