"""tracedb: a node telemetry collector with an embedded SQL store.

Connectors (tracedb.connectors) read the kernel through BPF and /proc; their
rows land in time-partitioned Arrow tables (tracedb.storage) that DuckDB
queries in place. `Collector` is the Python entry point, `tracedb.cli` the
command line.
"""

from tracedb.collector import Collector
from tracedb.storage import QueryError, Retention

__all__ = ["Collector", "QueryError", "Retention"]
