"""The `tracedb` command line.

    tracedb                     collector with the default sources + SQL prompt (= tracedb repl)
    tracedb repl [--parquet DIR] the SQL prompt, over a running collector or over exported files
    tracedb query [-c SQL]...   SQL from -c or stdin, after --duration of collection (or --parquet DIR)
    tracedb run [options]       headless collector: stream tables, scheduled queries, SQL at the end
    tracedb doctor [--fix]      what this node's kernel offers; fix what can be fixed
    tracedb tables              the tables and what they hold (from the schema files)
    tracedb schema TABLE        a table's columns, types, units and descriptions
    tracedb export --out DIR    collect for --duration, then write the tables as Parquet files
                                (continuous export while collecting: tracedb run --export-dir DIR)

Exit status: 0 on success, 1 when a -c statement failed (the others still run),
2 for a usage error or an environment that cannot run the chosen sources.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading

import pyarrow as pa

from tracedb import output
from tracedb.collector import DEFAULT_NICE, IDLE, Collector, EnvironmentNotReady
from tracedb.connectors.registry import connectors
from tracedb.export import ContinuousExporter, ParquetSource, export_tables, parse_time
from tracedb.repl.sqltext import split_statements
from tracedb.schema import builtin_schemas, get_schema
from tracedb.storage import QueryError, Retention

SIZE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
EXPORT_EVERY_S = 10.0


def parse_size(text: str) -> int:
    """'512M', '2G', '1048576' -> bytes."""
    match = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", text.strip(), re.IGNORECASE)
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a positive size: {text!r} (examples: 64M, 1G)")
    return int(match[1]) * SIZE_SUFFIXES[match[2].upper()]


def parse_seconds(text: str) -> float:
    """'90', '1.5', '30s', '5m', '1h' -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", text.strip())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (examples: 10, 30s, 5m, 1h)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def parse_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more comma-separated names")
    return names


def _time_arg(text: str) -> str:
    """A --since/--until value: checked now, read when the export runs (a relative time counts from then)."""
    try:
        parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracedb", description="Node telemetry in SQL: eBPF and /proc into DuckDB.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the collector headless")
    _add_collector_options(run)
    run.add_argument("--duration", type=parse_seconds, metavar="S", help="stop after S seconds (default: until Ctrl-C/SIGTERM)")
    _add_statement_options(run, "SQL to run when collection ends (repeatable)")
    run.add_argument("--print", dest="print_tables", type=parse_names, default=[], metavar="TABLE,...", help="stream these tables' rows as they arrive")
    run.add_argument("--schedule", metavar="FILE", help="run the queries of this TOML file on their intervals (example: tracedb/examples/schedule.toml)")
    run.add_argument("--export-dir", metavar="DIR", help="write every row collected into Parquet files under DIR (query them: tracedb query --parquet DIR)")
    run.add_argument("--export-every", type=parse_seconds, metavar="S", help="with --export-dir: write new rows every S seconds (default 10), and all remaining ones at exit")

    export = commands.add_parser("export", help="collect for a while, then write the tables as Parquet files")
    _add_collector_options(export)
    export.add_argument("--out", required=True, metavar="DIR", help="export directory: DIR/<table>/date=YYYY-MM-DD/hour=H/*.parquet")
    export.add_argument("--tables", type=parse_names, metavar="TABLE,...", help="tables to write (default: all collected; also the default --sources)")
    export.add_argument("--since", type=_time_arg, metavar="TIME", help="rows with time_ >= TIME: 10m (ago), 2h, now, '2026-11-21 22:00' (UTC unless an offset is given)")
    export.add_argument("--until", type=_time_arg, metavar="TIME", help="rows with time_ < TIME (same forms as --since)")
    export.add_argument("--duration", type=parse_seconds, default=5.0, metavar="S", help="collect for S seconds before writing (default 5)")

    doctor = commands.add_parser("doctor", help="check (and with --fix, set up) the kernel environment")
    doctor.add_argument("--fix", action="store_true", help="mount tracefs and install the closest kernel headers if missing")

    commands.add_parser("tables", help="list the tables")
    schema = commands.add_parser("schema", help="describe a table's columns")
    schema.add_argument("table")

    repl = commands.add_parser("repl", help="the SQL prompt (the default command)")
    _add_collector_options(repl)
    _add_parquet_option(repl)
    query = commands.add_parser("query", help="run SQL given with -c or on stdin, after a short collection")
    _add_collector_options(query)
    _add_parquet_option(query)
    query.add_argument("--duration", type=parse_seconds, default=2.0, metavar="S", help="collect for S seconds first (default 2)")
    _add_statement_options(query, "SQL to run (repeatable; default: the statements on stdin, ending with `;`)")

    _add_collector_options(parser)
    _add_parquet_option(parser)
    return parser


def _add_statement_options(parser: argparse.ArgumentParser, command_help: str) -> None:
    parser.add_argument("-c", "--command", dest="commands", action="append", default=[], metavar="SQL", help=command_help)
    parser.add_argument("--format", choices=list(output.FORMATS), default="table", help="output format (default: table)")


def _add_parquet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parquet", metavar="DIR", help="query the Parquet files exported to DIR instead of collecting (no root needed)")


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in parse_names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def parse_nice(text: str) -> int | str:
    """A connector threads' niceness, 0..19, or idle."""
    if text == IDLE:
        return IDLE
    if text.isdigit() and 0 <= int(text) <= 19:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 0..19 or {IDLE}, got {text!r}")


def _add_collector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", type=parse_names, metavar="NAME,...", help="connectors or tables to run (default: all)")
    parser.add_argument("--retention-bytes", type=parse_size, metavar="SIZE", help="byte budget per table (default 128M)")
    parser.add_argument("--retention-age", type=parse_seconds, metavar="S", help="age limit per table (default 1h)")
    parser.add_argument("--nice", type=parse_nice, default=DEFAULT_NICE, metavar="N|idle",
                        help=f"run the connectors' decoding N nicer than the rest (0..19, default {DEFAULT_NICE}), or "
                             f"{IDLE} (SCHED_IDLE: only on CPU time nothing else wants): the node's applications come "
                             "first, and events a busy node leaves no CPU for are lost and counted; 0 keeps up at "
                             "the applications' expense")
    tracer = parser.add_argument_group("socket tracer")
    tracer.add_argument("--trace-pids", type=parse_ints, metavar="PID,...", help="trace only these processes' sockets")
    tracer.add_argument("--trace-ports", type=parse_ints, metavar="PORT,...", help="trace only connections with one of these local or remote ports")
    tracer.add_argument("--max-capture", type=parse_size, metavar="SIZE", help="payload bytes copied per syscall (default 30K, at most 32K)")
    tracer.add_argument("--body-limit", type=parse_size, metavar="SIZE", help="body bytes kept per HTTP message (default 1K)")


def _connector_options(args) -> dict[str, dict]:
    """Options of the connectors that run; a flag for one that does not run is refused."""
    given = {
        "pids": args.trace_pids,
        "ports": args.trace_ports,
        "max_capture_bytes": args.max_capture,
        "body_limit": args.body_limit,
    }
    tracer = {key: value for key, value in given.items() if value is not None}
    return {"socket_tracer": tracer} if tracer else {}


def _collector(args) -> Collector:
    return Collector(sources=args.sources, retention=_retention(args), connector_options=_connector_options(args),
                     nice=args.nice)


def _retention(args) -> Retention:
    default = Retention()
    return Retention(
        max_bytes=args.retention_bytes or default.max_bytes,
        max_age_s=args.retention_age or default.max_age_s,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "repl"
    try:
        return COMMANDS[command](args)
    except EnvironmentNotReady as e:
        print(f"tracedb: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # unknown source or table
        print(f"tracedb: {e}", file=sys.stderr)
        return 2


def cmd_tables(args) -> int:
    by_table = {t: cls.name for cls in connectors().values() for t in cls.tables}
    rows = [
        {"table": s.name, "connector": by_table.get(s.name, "(built in)"), "description": s.description}
        for s in builtin_schemas().values()
    ]
    print(output.format_table(pa.Table.from_pylist(rows)), end="")
    return 0


def cmd_schema(args) -> int:
    try:
        schema = get_schema(args.table)
    except KeyError as e:
        print(f"tracedb: {e.args[0]}", file=sys.stderr)
        return 2
    print(output.describe_schema(schema), end="")
    return 0


def cmd_doctor(args) -> int:
    from tracedb.kernel import doctor

    return doctor.report(fix=args.fix)


def _stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def cmd_run(args) -> int:
    stop = threading.Event()
    _stop_on_signals(stop)
    collector = _collector(args)
    scheduler = _scheduler(args, collector)
    printer = output.StreamPrinter(sys.stdout, args.format)
    for table in args.print_tables:
        collector.on_rows(table, lambda batch, table=table: printer.print_batch(table, batch))
    exporter = _exporter(args, collector)
    with exporter, collector, scheduler:
        _announce_ready(collector)
        stop.wait(args.duration)
    return run_statements(collector, args.commands, args.format)


def _scheduler(args, collector: Collector):
    """The --schedule file, checked against the collector's tables before it starts (a bad one: exit 2)."""
    if args.schedule is None:
        return contextlib.nullcontext()
    from tracedb.schedule import Scheduler, load_schedule  # here: tracedb.schedule imports parse_seconds from this module

    return Scheduler(load_schedule(args.schedule), collector.engine)


def _exporter(args, collector: Collector):
    """The --export-dir exporter. Entered before the collector, it stops after it: its final pass has the last rows."""
    if args.export_dir is None:
        if args.export_every is not None:
            raise ValueError("--export-every needs --export-dir")
        return contextlib.nullcontext()
    return ContinuousExporter(collector, args.export_dir, args.export_every or EXPORT_EVERY_S)


def cmd_export(args) -> int:
    """Collect for --duration (a one-shot export needs rows to export), then write them."""
    stop = threading.Event()
    _stop_on_signals(stop)
    if args.sources is None:
        args.sources = args.tables  # the connectors of the tables asked for
    collector = _collector(args)
    with collector:
        _announce_ready(collector)
        stop.wait(args.duration)
    print(export_tables(collector, args.out, args.tables, args.since, args.until), end="")
    return 0


def _announce_ready(collector: Collector) -> None:
    running = ", ".join(r.name for r in collector.running) or "none"
    skipped = "".join(f"; {r.name} skipped ({r.detail})" for r in collector.runs if r.state == "skipped")
    print(f"tracedb: ready: running {running}{skipped}", file=sys.stderr, flush=True)


def run_statements(collector: Collector, statements: list[str], fmt: str) -> int:
    status = 0
    for sql in statements:
        try:
            result = collector.query(sql)
        except QueryError as e:
            print(f"tracedb: error in {sql!r}: {e}", file=sys.stderr)
            status = 1
            continue
        if result is not None:
            sys.stdout.write(output.render(result, fmt))
    sys.stdout.flush()
    return status


def cmd_repl(args) -> int:
    from tracedb.repl import app

    if args.parquet:
        with contextlib.closing(ParquetSource(args.parquet)) as source:
            return app.run(source)
    with _collector(args) as collector:
        _announce_ready(collector)
        return app.run(collector)


def cmd_query(args) -> int:
    statements = args.commands or _statements_from_stdin()
    if args.parquet:
        with contextlib.closing(ParquetSource(args.parquet)) as source:
            return run_statements(source, statements, args.format)
    stop = threading.Event()
    _stop_on_signals(stop)
    with _collector(args) as collector:
        _announce_ready(collector)
        stop.wait(args.duration)
    return run_statements(collector, statements, args.format)


def _statements_from_stdin() -> list[str]:
    if sys.stdin.isatty():
        raise ValueError("query: give the SQL with -c, or pipe statements in (echo 'select 1;' | tracedb query)")
    statements, last = split_statements(sys.stdin.read())
    statements += [last.strip()] if last else []
    if not statements:
        raise ValueError("query: no SQL on stdin")
    return statements


COMMANDS = {
    "run": cmd_run,
    "export": cmd_export,
    "doctor": cmd_doctor,
    "tables": cmd_tables,
    "schema": cmd_schema,
    "repl": cmd_repl,
    "query": cmd_query,
}
