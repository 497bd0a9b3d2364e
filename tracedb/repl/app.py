"""The terminal around a Session: prompt_toolkit, highlighting, keys, history.

Everything an input does is `Session.handle_line`; this module adds SQL
highlighting (pygments), completion (completion.complete over the session's
catalog), a multi-line buffer that Enter runs once it ends with `;` or holds a
meta command, history in a file with Ctrl-R search, and the keys: Ctrl-C
clears the buffer at the prompt and interrupts a running statement (DuckDB's
interrupt) otherwise; Ctrl-D quits. Without a terminal on stdin (a pipe) the
lines are run as a script and the exit status says whether all went well.

Statements run in one long-lived worker thread, so that the main thread is
free to take Ctrl-C; one thread and not one per statement, because the query
engine keeps a DuckDB cursor per thread, with the user's temporary tables.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.lexers import PygmentsLexer
from pygments.lexers.sql import SqlLexer

from tracedb.repl.completion import complete
from tracedb.repl.session import Session
from tracedb.repl.source import QuerySource

Result = TypeVar("Result")

PROMPT = "tracedb> "
BANNER = "tracedb: statements end with `;`; .help lists the commands, .tables the tables; Ctrl-D quits."


def run(source: QuerySource) -> int:
    """The REPL over `source` until .quit or Ctrl-D; the exit status."""
    session = Session(source, terminal_width=_terminal_width)
    worker = QueryThread(session)
    try:
        worker.run(session.refresh_catalog)
        if not sys.stdin.isatty():
            sys.stdout.write(worker.run(session.run_script, sys.stdin.read()))
            return 1 if session.errors else 0
        _interact(session, worker)
        return 0
    finally:
        worker.close()
        session.close()


def _terminal_width() -> int | None:
    """Columns of the terminal results go to; None when they go to a pipe or a file."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _interact(session: Session, worker: QueryThread) -> None:
    prompt = _prompt_session(session)
    print(BANNER)
    while not session.finished:
        try:
            text = prompt.prompt(PROMPT)
        except KeyboardInterrupt:  # the buffer is dropped; a fresh prompt
            continue
        except EOFError:
            return
        try:
            shown = worker.run(session.handle_line, text)
        except Exception as e:  # a bug in showing one result must not end the prompt, nor the collection
            shown = f"Internal error: {type(e).__name__}: {e}\n"
        print(shown, end="", flush=True)


class QueryThread:
    """Runs a session's calls in one worker thread; Ctrl-C while one runs cancels it."""

    def __init__(self, session: Session):
        self._session = session
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracedb-query")

    def run(self, function: Callable[..., Result], *args) -> Result:
        future = self._executor.submit(function, *args)
        while True:
            try:
                return future.result()
            except KeyboardInterrupt:
                self._session.cancel()

    def close(self) -> None:
        self._executor.shutdown()


class SqlCompleter(Completer):
    def __init__(self, session: Session):
        self._session = session

    def get_completions(self, document, complete_event):
        found = complete(document.text_before_cursor, self._session.catalog, document.text_after_cursor)
        if not found.word and not complete_event.completion_requested:
            return  # no menu popping up after a space or a new line; Tab still asks for one
        for suggestion in found.suggestions:
            yield Completion(suggestion.text, start_position=-len(found.word), display_meta=suggestion.kind)


def _prompt_session(session: Session) -> PromptSession:
    return PromptSession(
        lexer=PygmentsLexer(SqlLexer),
        completer=SqlCompleter(session),
        complete_while_typing=True,
        history=_history(),
        multiline=True,
        key_bindings=_enter_runs_complete_input(session),
        prompt_continuation=lambda width, line_number, soft_wrap: "...> ".rjust(width),
    )


def _enter_runs_complete_input(session: Session) -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("enter", filter=has_focus(DEFAULT_BUFFER))
    def _(event) -> None:
        buffer = event.current_buffer
        chosen = buffer.complete_state.current_completion if buffer.complete_state else None
        if chosen is not None:  # Enter in the menu takes the completion
            buffer.apply_completion(chosen)
        elif session.is_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return bindings


def history_path() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "tracedb" / "history"


def _history() -> History:
    """The history file, or history for this session only when it cannot be written."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("a").close()
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))
