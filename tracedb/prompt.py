"""The plain SQL prompt on top of a running collector.

One statement per line (a line may hold several, separated by `;`); results
print as aligned tables. Errors print and the prompt comes back while the
collector keeps running. Ctrl-C clears the line, Ctrl-D quits.
"""

from __future__ import annotations

from prompt_toolkit import PromptSession

from tracedb import output
from tracedb.collector import Collector
from tracedb.storage import QueryError

QUIT_WORDS = {"quit", "exit", ".quit", "\\q"}


def handle_line(collector: Collector, line: str) -> str | None:
    """The text to show for one input line; None means quit."""
    text = line.strip()
    if text.rstrip(";").strip().lower() in QUIT_WORDS:
        return None
    if not text:
        return ""
    try:
        result = collector.query(text)
    except QueryError as e:
        return f"Error: {e}\n"
    return output.format_table(result) if result is not None else "OK\n"


def loop(collector: Collector) -> int:
    session: PromptSession = PromptSession("tracedb> ")
    print("SQL over this node's telemetry. Tables: select * from tracedb_tables; quit with Ctrl-D.")
    while True:
        try:
            line = session.prompt()
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        shown = handle_line(collector, line)
        if shown is None:
            return 0
        print(shown, end="")
