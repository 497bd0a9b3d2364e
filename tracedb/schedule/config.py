"""Reading a schedule file: TOML text into checked `ScheduledQuery` values.

Owns everything that can be checked without a database: TOML syntax, the
keys of each query, intervals, styles, sink names and their options, and that
the SQL parses as one SELECT using no parameters but `$window_start` and
`$window_end`. Checks that need the live tables (unknown tables and columns,
sink tables) are the runner's, at the same start-up step.

Every error is a `ScheduleError` whose message starts `FILE:LINE:`, the line
of the offending key when it can be found, else of the query's `[query.NAME]`
header; TOML syntax errors carry the parser's own line.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from tracedb.cli import parse_seconds
from tracedb.schedule.sinks import SINKS

STYLES = ("differential", "snapshot")
PARAMETERS = frozenset({"window_start", "window_end"})
KEYS = {"sql", "interval", "style", "sink", "path", "table"}
DEFAULT_STYLE = "differential"  # osquery's default too
DEFAULT_SINK = "stdout"

# Query names end up in file names, JSON and table rows: TOML's bare-key characters.
NAME = re.compile(r"[A-Za-z0-9_-]+")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER = re.compile(r"""\s*\[\s*query\s*\.\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]""")
ANY_HEADER = re.compile(r"\s*\[")
KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


Lines = dict[str | None, int]  # key -> line of its first use; None -> the [query.NAME] header


class ScheduleError(ValueError):
    """A schedule file that cannot run; the message starts with FILE:LINE."""


@dataclass(frozen=True)
class Location:
    """Where a query is declared, to point errors at the right line."""

    source: str  # the schedule file
    name: str  # the query
    lines: Lines

    def error(self, reason: str, key: str | None = None) -> ScheduleError:
        line = self.lines.get(key) or self.lines.get(None)
        place = f"{self.source}:{line}" if line else self.source
        return ScheduleError(f"{place}: query {self.name}: {reason}")


@dataclass(frozen=True)
class ScheduledQuery:
    name: str
    sql: str  # one SELECT, without a trailing semicolon
    parameters: frozenset[str]  # which of PARAMETERS the SQL uses
    interval_s: float
    style: str
    sink: str
    path: Path | None  # jsonl file or parquet directory
    table: str | None  # store table of the table sink
    where: Location


@dataclass(frozen=True)
class Schedule:
    source: str
    queries: tuple[ScheduledQuery, ...]


def load_schedule(path: str | Path) -> Schedule:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScheduleError(f"{path}: cannot read the schedule: {e.strerror}") from None
    return parse_schedule(text, str(path), base_dir=path.parent)


def parse_schedule(text: str, source: str = "<string>", base_dir: Path = Path(".")) -> Schedule:
    """Parse and check a schedule; relative sink paths are resolved against `base_dir`."""
    doc = _toml(text, source)
    lines = _key_lines(text)
    unknown = sorted(set(doc) - {"query"})
    if unknown:
        raise ScheduleError(f"{source}: unknown top-level keys {unknown}; each query is a [query.NAME] table")
    raw_queries = doc.get("query")
    if not isinstance(raw_queries, dict) or not raw_queries:
        raise ScheduleError(f"{source}: no queries; declare each as a [query.NAME] table")
    queries = tuple(
        _parse_query(name, raw, source, lines.get(name, {}), base_dir) for name, raw in raw_queries.items()
    )
    return Schedule(source, queries)


def _toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScheduleError(f"{source}:{_error_line(str(e), text)}: not valid TOML: {e}") from None


def _error_line(message: str, text: str) -> int:
    # tomllib (3.11) puts the position only in the message: "(at line 3, column 7)" or "(at end of document)".
    match = re.search(r"at line (\d+)", message)
    return int(match[1]) if match else max(1, len(text.splitlines()))


def _key_lines(text: str) -> dict[str, Lines]:
    """For each [query.NAME] table: the line of its header (key None) and of each key's first use."""
    found: dict[str, Lines] = {}
    current: Lines | None = None
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        opens_or_closes = (line.count('"""') + line.count("'''")) % 2 == 1
        if not in_multiline:
            current = _scan_line(line, number, current, found)
        if opens_or_closes:
            in_multiline = not in_multiline
    return found


def _scan_line(line: str, number: int, current: Lines | None, found: dict[str, Lines]) -> Lines | None:
    """Record a header or key found on `line`; the section the next line is in."""
    header = HEADER.match(line)
    if header:
        name = next(g for g in header.groups() if g is not None)
        found[name] = current = {None: number}
    elif ANY_HEADER.match(line):
        current = None
    elif current is not None:
        key = KEY.match(line)
        if key:
            current.setdefault(key[1], number)
    return current


def _parse_query(name: str, raw, source: str, lines: Lines, base_dir: Path) -> ScheduledQuery:
    where = Location(source, name, lines)
    if not NAME.fullmatch(name):
        raise where.error("a query name may hold only letters, digits, '_' and '-'")
    if not isinstance(raw, dict):
        raise where.error("expected a table of keys: sql, interval, and optionally style, sink, path, table")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise where.error(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})", unknown[0])
    sql, parameters = _parse_sql(raw.get("sql"), where)
    sink = _choice(raw, "sink", DEFAULT_SINK, tuple(SINKS), where)
    return ScheduledQuery(
        name=name,
        sql=sql,
        parameters=parameters,
        interval_s=_parse_interval(raw.get("interval"), where),
        style=_choice(raw, "style", DEFAULT_STYLE, STYLES, where),
        sink=sink,
        path=_sink_path(raw, sink, base_dir, where),
        table=_sink_table(raw, sink, where),
        where=where,
    )


def _parse_sql(value, where: Location) -> tuple[str, frozenset[str]]:
    if not isinstance(value, str) or not value.strip():
        raise where.error("`sql` is missing or empty", "sql")
    try:
        statements = duckdb.extract_statements(value)
    except duckdb.Error as e:
        raise where.error(f"the SQL does not parse: {e}", "sql") from None
    if len(statements) != 1:
        raise where.error(f"`sql` must be one statement, not {len(statements)}", "sql")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise where.error(f"`sql` must be a SELECT (this is {statement.type.name})", "sql")
    unknown = sorted(set(statement.named_parameters) - PARAMETERS)
    if unknown:
        known = ", ".join(f"${p}" for p in sorted(PARAMETERS))
        raise where.error(f"unknown parameter ${unknown[0]} (the known ones: {known})", "sql")
    return _without_trailing_semicolon(value), frozenset(statement.named_parameters)


def _without_trailing_semicolon(sql: str) -> str:
    """The SQL is embedded in PREPARE ... AS (...), where a closing ';' would end it early."""
    tokens = [(pos, kind) for pos, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    while tokens and sql[tokens[-1][0]] == ";":
        sql = sql[: tokens.pop()[0]]
    return sql


def _parse_interval(value, where: Location) -> float:
    hint = "a positive number of seconds or a duration such as \"30s\", \"5m\", \"1h\""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise where.error(f"`interval` is missing or not {hint}", "interval")
    if not isinstance(value, str):
        if value > 0:
            return float(value)
        raise where.error(f"`interval` must be {hint}, not {value}", "interval")
    try:
        return parse_seconds(value)
    except argparse.ArgumentTypeError:
        raise where.error(f"`interval` must be {hint}, not {value!r}", "interval") from None


def _choice(raw: dict, key: str, default: str, choices: tuple[str, ...], where: Location) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise where.error(f"unknown {key} {value!r} (known: {', '.join(choices)})", key)
    return value


def _option(raw: dict, key: str, sink: str, where: Location):
    """The sink option `key` as given, or None; refused when the sink takes another option."""
    if key in raw and SINKS[sink].option != key:
        users = [name for name, cls in SINKS.items() if cls.option == key]
        raise where.error(f"`{key}` is an option of the {' and '.join(users)} sinks, not of {sink}", key)
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise where.error(f"`{key}` must be a non-empty string", key)
    return value


def _sink_path(raw: dict, sink: str, base_dir: Path, where: Location) -> Path | None:
    value = _option(raw, "path", sink, where)
    if SINKS[sink].option != "path":
        return None
    if value is None:
        raise where.error(f"the {sink} sink needs a `path`", None)
    return base_dir / Path(value).expanduser()


def _sink_table(raw: dict, sink: str, where: Location) -> str | None:
    value = _option(raw, "table", sink, where)
    if SINKS[sink].option != "table":
        return None
    table = value or where.name
    if not IDENTIFIER.fullmatch(table):
        raise where.error(f"table name {table!r} is not a plain SQL identifier (letters, digits, '_')", "table")
    return table
