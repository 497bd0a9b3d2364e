"""The REPL's state and what one input does to it, without a terminal.

`Session.handle_line(text)` takes what the user entered (one line, or the
whole multi-line buffer of the prompt) and returns the text to show. SQL is
buffered until a `;` outside quotes and comments ends it; a line starting a
statement with `.` or `\\` (or `quit`/`exit`) is a meta command (commands.py)
and runs at once. An error comes back as text and the session goes on.

The state: the output mode, the timer, the row limit, where results go
(`.output`/`.once`), the catalog completion reads, and the query source (a
live Collector or exported files: see source.py). Statements that query must
all come from one thread: the store's engine keeps one DuckDB cursor per
thread, holding the user's temporary tables (app.py runs them in a worker).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pyarrow as pa

from tracedb import output
from tracedb.repl import commands
from tracedb.repl.catalog import Catalog, load_catalog
from tracedb.repl.source import QuerySource
from tracedb.repl.sqltext import first_keyword, split_statements, table_references
from tracedb.storage import QueryError

DEFAULT_MAX_ROWS = 1000
# Statements after which the catalog (for completion, .tables) is read again;
# what DuckDB returns for them is no result worth a table.
CATALOG_CHANGES = {"create", "drop", "alter", "attach", "detach", "use", "import"}
WIDE_NOTE = "(wider than the terminal: one record per block; `.mode table` or `.mode line` to choose)\n"


class Session:
    def __init__(self, source: QuerySource, terminal_width: Callable[[], int | None] = lambda: None):
        self.source = source
        self.mode = "table"
        self.timer = False
        self.max_rows = DEFAULT_MAX_ROWS  # 0: no limit
        self.catalog = Catalog()
        self.finished = False  # .quit was given
        self.errors = 0  # statements and commands that failed, for a batch's exit status
        self._terminal_width = terminal_width
        self._unfinished = ""  # SQL typed so far without its ending `;`
        self._output: TextIO | None = None  # .output FILE
        self._once: TextIO | None = None  # .once FILE
        self._cancelled = False

    # -- input -----------------------------------------------------------------

    def is_complete(self, text: str) -> bool:
        """Whether the prompt should run `text` on Enter (rather than start a new line)."""
        return not text.strip() or commands.is_command(text) or not split_statements(text)[1]

    def handle_line(self, text: str) -> str:
        """Run what the user entered; the text to show."""
        self._cancelled = False
        return self._handle(text)

    def run_script(self, text: str) -> str:
        """Run a file's or a pipe's lines; a last statement without `;` runs too."""
        shown = [self._handle(line) for line in text.splitlines()]
        unfinished, self._unfinished = self._unfinished, ""
        if unfinished and not self._cancelled:
            shown.append(self._run_sql(unfinished))
        return "".join(shown)

    def cancel(self) -> None:
        """Interrupt the running statement and skip the rest of this input (Ctrl-C)."""
        self._cancelled = True
        self.source.interrupt()

    def _handle(self, text: str) -> str:
        if self._cancelled:
            return ""
        if not self._unfinished and commands.is_command(text):
            return commands.run(self, text)
        statements, self._unfinished = split_statements(self._unfinished + text + "\n")
        shown = []
        for sql in statements:
            if self._cancelled:
                break
            shown.append(self._run_sql(sql))
        return "".join(shown)

    # -- statements --------------------------------------------------------------

    def _run_sql(self, sql: str) -> str:
        started = time.perf_counter()
        try:
            result = self.source.query(sql)
        except QueryError as e:
            return "Cancelled.\n" if self._cancelled else self.error(str(e))
        elapsed = time.perf_counter() - started
        changes_catalog = first_keyword(sql) in CATALOG_CHANGES
        if changes_catalog:
            self.refresh_catalog()
        shown = "OK\n" if result is None or changes_catalog else self._emit(self._show(result, sql))
        return shown + (f"Time: {elapsed:.3f} s\n" if self.timer else "")

    def error(self, message: str) -> str:
        self.errors += 1
        return f"Error: {message}\n"

    def _show(self, result: pa.Table, sql: str) -> str:
        queried = set(table_references(sql).values())
        schemas = [s for name, s in self.source.table_schemas().items() if name in queried]
        units = output.display_units(result.column_names, schemas)
        on_screen = self._target() is None
        max_rows = self.max_rows if on_screen and self.max_rows else None
        text = output.render(result, self.mode, units, max_rows)
        if on_screen and self.mode == "table" and self._too_wide(text):
            return output.render(result, "line", units, max_rows) + WIDE_NOTE
        return text

    def _too_wide(self, table_text: str) -> bool:
        width = self._terminal_width()
        return width is not None and len(table_text.partition("\n")[0]) > width

    def refresh_catalog(self) -> None:
        self.catalog = load_catalog(self.source)

    # -- where results go --------------------------------------------------------

    def send_output_to(self, path: str | None, once: bool = False) -> None:
        """Results to the file at `path` (from now on, or for the next result only); None: the screen."""
        # Not a `with`: the file stays open across inputs until .output changes it.
        target = open(Path(path).expanduser(), "w") if path else None
        if once:
            self._close(self._once)
            self._once = target
        else:
            self._close(self._output)
            self._output = target

    def _target(self) -> TextIO | None:
        return self._once or self._output

    def _emit(self, text: str) -> str:
        """Results for the screen are returned; those for a file are written there."""
        target = self._target()
        if target is None:
            return text
        target.write(text)
        target.flush()
        if target is self._once:
            self._close(target)
            self._once = None
        return ""

    @staticmethod
    def _close(target: TextIO | None) -> None:
        if target is not None:
            target.close()

    def close(self) -> None:
        self.send_output_to(None)
        self.send_output_to(None, once=True)
