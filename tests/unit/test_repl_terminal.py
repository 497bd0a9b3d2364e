"""The REPL driven for real in a terminal: keys typed into tmux, the screen read back.

One `tracedb repl --sources procfs` (procfs needs no root) runs in a tmux
server of this module's own (its socket in a temporary directory), which the
module kills at the end with whatever runs in it. The tests share that REPL and run in file order; the last one
quits it with Ctrl-D.
"""

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require

WAIT_S = 20  # for any one thing to show up on the screen


class Terminal:
    """A tmux pane on a private server: type into it, read what it shows."""

    def __init__(self, socket: Path):
        self.socket = socket

    def tmux(self, *args: str) -> str:
        command = ["tmux", "-S", str(self.socket), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=10).stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-x", "160", "-y", "50", "-s", "repl", command)

    def type(self, text: str) -> None:
        # As hex bytes: tmux would take a trailing `;` in a plain argument for its own command separator.
        self.tmux("send-keys", "-t", "repl", "-H", *(f"{b:02x}" for b in text.encode()))

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "repl", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", "repl")

    def wait_for(self, text: str, after: int = 0) -> int:
        """Wait until `text` shows at or past screen offset `after`; where it ends."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = self.screen().find(text, after)
            if found >= 0:
                return found + len(text)
            time.sleep(0.1)
        pytest.fail(f"{text!r} did not show up within {WAIT_S} s; the screen:\n{self.screen()}")

    def run(self, *lines: str, expect: str) -> str:
        """Type each line and Enter; the screen from the input on, once `expect` shows."""
        start = len(self.screen().rstrip())
        for line in lines:
            self.type(line)
            self.press("Enter")
        self.wait_for(expect, start)
        return self.screen()[start:]


@pytest.fixture(scope="module")
def repl(tmp_path_factory):
    require(shutil.which("tmux") is not None, "tmux is needed to drive the REPL in a terminal")
    home = tmp_path_factory.mktemp("home")
    terminal = Terminal(home / "tmux.socket")
    repl_command = shlex.join(["env", f"XDG_DATA_HOME={home}", sys.executable, "-m", "tracedb", "repl", "--sources", "procfs"])
    # The shell stays after the REPL so that its exit status can be read on the screen.
    terminal.start(f"{repl_command}; echo \"exit status $?\"; sleep 60")
    try:
        terminal.wait_for("Ctrl-D quits.")
        terminal.wait_for("tracedb>")
        yield terminal
    finally:
        subprocess.run(["tmux", "-S", str(terminal.socket), "kill-server"], capture_output=True, timeout=10)


def test_tab_completes_a_column_name(repl):
    start = len(repl.screen().rstrip())
    repl.type("select count(*) > 0 as has_cmdline from processes where cmdl")
    repl.wait_for("column", start)  # the menu, as typed: the catalog is loaded
    repl.press("Tab")
    repl.wait_for("where cmdline", start)
    repl.type(" is not null;")
    repl.press("Enter")
    repl.wait_for("| true        |", start)


def test_a_statement_over_several_lines_runs_at_its_semicolon(repl):
    shown = repl.run("select 'multi' || 'line' as joined", "from processes", "limit 1;", expect="(1 row)")
    assert "...> from processes" in shown and "| multiline |" in shown


def test_a_bad_query_shows_an_error_and_the_next_one_runs(repl):
    shown = repl.run("select * from no_such_table;", expect="Error:")
    assert "no_such_table" in shown
    repl.run("select 'still' || ' here' as after_error;", expect="| still here ")


def test_mode_csv_changes_the_output(repl):
    shown = repl.run(".mode csv", "select 'x' as letter, 7 as n;", expect="x,7")
    assert "letter,n\nx,7" in shown
    repl.run(".mode table", "select 'back' as mode;", expect="| back |")


def test_ctrl_c_interrupts_a_long_query_and_the_prompt_returns(repl):
    start = len(repl.screen().rstrip())
    repl.type("select count(*) from range(100000000000) t(i) where hash(i) % 7 = 0;")
    repl.press("Enter")
    time.sleep(1.5)
    assert "Cancelled" not in repl.screen()[start:], "the query is still running"
    repl.press("C-c")
    repl.wait_for("Cancelled.", start)
    repl.run("select 'alive' as after_cancel;", expect="| alive ")


def test_ctrl_c_at_the_prompt_clears_the_line(repl):
    start = len(repl.screen().rstrip())
    repl.type("select 'never run'")
    repl.press("C-c")
    repl.run("select 'fresh' as line;", expect="| fresh |")
    assert "never run |" not in repl.screen()[start:]


def test_ctrl_d_quits_with_status_0(repl):
    repl.press("C-d")
    repl.wait_for("exit status 0")
