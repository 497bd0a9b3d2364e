"""The REPL's meta commands: one registry of small functions.

A command is a function decorated with `@command(".name", *aliases, usage=...)`;
the first line of its docstring is its help, so `.help` is generated from the
registry and cannot miss one. Each takes the session and the rest of the line
and returns the text to show; it raises `CommandError` (or `UsageError`) to
report a problem. Aliases follow pgcli's backslash commands where it has one.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from tracedb import output
from tracedb.repl.sqltext import quote_literal, quote_name
from tracedb.storage import QueryError

if TYPE_CHECKING:
    from tracedb.repl.session import Session

CommandFunction = Callable[["Session", str], str]


class CommandError(Exception):
    """A command could not do what was asked; the message says why."""


class UsageError(CommandError):
    """The arguments do not fit the command's usage."""


@dataclass(frozen=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    usage: str
    summary: str
    run: CommandFunction

    @property
    def synopsis(self) -> str:
        return f"{self.name} {self.usage}".strip()


_by_word: dict[str, Command] = {}  # name and aliases -> command


def command(name: str, *aliases: str, usage: str = "") -> Callable[[CommandFunction], CommandFunction]:
    def register(function: CommandFunction) -> CommandFunction:
        entry = Command(name, aliases, usage, function.__doc__.strip().splitlines()[0], function)
        for word in (name, *aliases):
            if word in _by_word:
                raise ValueError(f"two meta commands answer to {word!r}")
            _by_word[word] = entry
        return function

    return register


def registered() -> list[Command]:
    """Every command once, in the order they were registered."""
    return list(dict.fromkeys(_by_word.values()))


def _split(line: str) -> tuple[str, str]:
    word, _, args = line.strip().rstrip(";").partition(" ")
    return word.lower(), args.strip()


def is_command(line: str) -> bool:
    """Whether a line is a meta command (known or not) rather than SQL."""
    word = _split(line)[0]
    return word.startswith((".", "\\")) or word in _by_word


def run(session: Session, line: str) -> str:
    """Run the meta command on `line`; the text to show."""
    word, args = _split(line)
    found = _by_word.get(word)
    if found is None:
        return session.error(f"unknown command {word}; .help lists them")
    try:
        return found.run(session, args)
    except UsageError as e:
        return session.error(f"{e} (usage: {found.synopsis})" if str(e) else f"usage: {found.synopsis}")
    except (CommandError, QueryError, OSError, ValueError) as e:  # ValueError: .export's bad table or time
        return session.error(str(e))


def _on_off(args: str, current: bool) -> bool:
    """`on`/`off`, or the opposite of `current` without an argument."""
    choices = {"on": True, "off": False, "": not current}
    if args.lower() not in choices:
        raise UsageError()
    return choices[args.lower()]


# -- the commands ----------------------------------------------------------------


@command(".help", "\\?", "help")
def show_help(session: Session, args: str) -> str:
    """List the meta commands."""
    entries = registered()
    width = max(len(c.synopsis) for c in entries)
    lines = [
        f"  {c.synopsis.ljust(width)}  {c.summary}" + (f" (also {', '.join(c.aliases)})" if c.aliases else "")
        for c in entries
    ]
    return "SQL statements end with `;` and may span lines. Meta commands:\n" + "\n".join(lines) + "\n"


@command(".tables", "\\dt")
def list_tables(session: Session, args: str) -> str:
    """List the tables and views with their row counts."""
    schemas = session.source.table_schemas()
    names = sorted(session.catalog.tables)
    table = pa.table(
        {
            "table": pa.array(names, pa.string()),
            "rows": pa.array([_row_count(session, n) for n in names], pa.int64()),
            "description": pa.array([_headline(schemas[n].description) if n in schemas else "" for n in names]),
        }
    )
    return output.format_table(table)


def _headline(description: str, limit: int = 64) -> str:
    """The first sentence, cut to `limit` characters: enough to tell the tables apart."""
    sentence = description.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _row_count(session: Session, table: str) -> int | None:
    try:
        return session.source.query(f"select count(*) from {quote_name(table)}").column(0)[0].as_py()
    except QueryError:  # a view whose query no longer works still gets listed
        return None


@command(".schema", "\\d", usage="[TABLE]")
def describe(session: Session, args: str) -> str:
    """Show a table's columns with types, units and descriptions (every table without TABLE)."""
    names = [args] if args else sorted(session.catalog.tables)
    return "\n".join(_describe_table(session, name) for name in names)


def _describe_table(session: Session, name: str) -> str:
    found = session.catalog.find_table(name)
    if found is None:
        raise CommandError(f"no table {name!r}; .tables lists them")
    schemas = session.source.table_schemas()
    if found in schemas:
        return output.describe_schema(schemas[found])
    columns = session.source.query(
        "select column_name as column, data_type as type from information_schema.columns "
        f"where table_name = {quote_literal(found)} order by ordinal_position"
    )
    return f"{found}: created in this database, no schema file\n" + output.format_table(columns)


@command(".mode", usage="[" + "|".join(output.FORMATS) + "]")
def set_mode(session: Session, args: str) -> str:
    """Set how results are shown; wide tables switch to one record per block."""
    if not args:
        return f"mode: {session.mode}\n"
    if args.lower() not in output.FORMATS:
        raise UsageError(f"unknown mode {args!r}")
    session.mode = args.lower()
    return ""


@command("\\x")
def toggle_expanded(session: Session, args: str) -> str:
    """Switch between the table and line modes."""
    session.mode = "table" if session.mode == "line" else "line"
    return f"mode: {session.mode}\n"


@command(".timer", "\\timing", usage="[on|off]")
def set_timer(session: Session, args: str) -> str:
    """Show how long each statement took (no argument: switch)."""
    session.timer = _on_off(args, session.timer)
    return f"timer: {'on' if session.timer else 'off'}\n"


@command(".maxrows", usage="[N]")
def set_max_rows(session: Session, args: str) -> str:
    """Show at most N rows of a result on screen (0: all of them)."""
    if args:
        if not args.isdigit():
            raise UsageError(f"not a row count: {args!r}")
        session.max_rows = int(args)
    return f"maxrows: {session.max_rows or 'no limit'}\n"


@command(".output", "\\o", usage="[FILE]")
def set_output(session: Session, args: str) -> str:
    """Write results to FILE from now on (no FILE: back to the screen)."""
    session.send_output_to(args or None)
    return ""


@command(".once", usage="FILE")
def set_output_once(session: Session, args: str) -> str:
    """Write the next result to FILE."""
    if not args:
        raise UsageError()
    session.send_output_to(args, once=True)
    return ""


@command(".read", "\\i", usage="FILE")
def read_file(session: Session, args: str) -> str:
    """Run the statements and meta commands in FILE."""
    if not args:
        raise UsageError()
    with open(args) as script:
        return session.run_script(script.read())


@command(".sources")
def list_sources(session: Session, args: str) -> str:
    """The collector's connectors: state, why one was skipped or failed, events lost."""
    status = session.source.status()
    if status is None:
        return "No collector: this session queries exported files.\n"
    columns = ["connector", "state", "detail", "tables", "events", "events_lost", "decode_errors"]
    return output.format_table(status.select(columns))


@command(".export", usage="DIR [TABLE ...] [--since T] [--until T]")
def export(session: Session, args: str) -> str:
    """Write tables (all of them unless named) to Parquet files in DIR."""
    if session.source.status() is None:
        raise CommandError("no collector: this session reads exported files already")
    try:
        from tracedb.export import export_tables
    except ImportError as e:
        raise CommandError(f"exporting is not available in this installation ({e})") from None
    directory, tables, bounds = _export_arguments(args)
    return f"{export_tables(session.source, directory, tables=tables or None, **bounds)}".rstrip("\n") + "\n"


def _export_arguments(args: str) -> tuple[str, list[str], dict[str, str]]:
    """DIR, the tables named, and {"since": T, "until": T} for the bounds given."""
    words = iter(shlex.split(args))
    positional: list[str] = []
    bounds: dict[str, str] = {}
    for word in words:
        if word not in ("--since", "--until"):
            positional.append(word)
            continue
        value = next(words, None)
        if value is None:
            raise UsageError(f"{word} needs a time")
        bounds[word[2:]] = value
    if not positional:
        raise UsageError()
    return positional[0], positional[1:], bounds


@command(".quit", "\\q", "quit", "exit")
def quit_repl(session: Session, args: str) -> str:
    """Leave the REPL (Ctrl-D does too)."""
    session.finished = True
    return ""
