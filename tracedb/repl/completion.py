"""Completion as a pure function: the text around the cursor and a Catalog in,
suggestions out. No terminal and no database, so it is tested on strings.

What the cursor expects comes from the statement it is in (the text after the
last `;`) and the word just before it:

- after FROM, JOIN, INTO, UPDATE, TABLE, DESCRIBE, or a comma in a FROM list:
  a table (then table functions such as `range` or `read_parquet`);
- after `name.`: a column of the table `name` stands for (a table or an alias);
- inside SELECT, WHERE, GROUP BY, ORDER BY, HAVING, ON, USING, SET ...: the
  columns of the statement's tables first, then functions and keywords;
- anywhere else: keywords, then functions.

Only names starting with the word under the cursor are offered, case ignored.
Names that SQL must quote are offered quoted; inside a string or a comment
nothing is offered.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracedb.repl.catalog import Catalog
from tracedb.repl.sqltext import Token, current_statement, quote_name, split_statements, table_references, tokenize

TABLE_WORDS = {"from", "join", "into", "update", "table", "describe", "summarize"}
# The clause keywords that decide what a word further on is; "by" stands for
# GROUP BY, ORDER BY and PARTITION BY.
COLUMN_CLAUSES = {"select", "where", "by", "having", "on", "using", "set", "qualify", "when", "then", "else"}
OTHER_CLAUSES = {"from", "join", "limit", "offset", "values", "into", "update", "table"}


@dataclass(frozen=True)
class Suggestion:
    text: str  # replaces the word under the cursor
    kind: str  # table, column, function or keyword


@dataclass(frozen=True)
class Completions:
    word: str  # the text just before the cursor that a suggestion replaces
    suggestions: tuple[Suggestion, ...]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.suggestions]


def complete(before_cursor: str, catalog: Catalog, after_cursor: str = "") -> Completions:
    """What may go at the cursor; `after_cursor` lets a FROM typed later count."""
    statement = current_statement(before_cursor)
    tokens = tokenize(statement)
    if tokens and _inside_literal_or_comment(tokens[-1]):
        return Completions("", ())
    word = tokens[-1] if tokens and tokens[-1].kind in ("word", "ident") else None
    preceding = [t for t in (tokens[:-1] if word else tokens) if t.significant]
    # Without the word under the cursor: an unclosed quote in it would swallow what follows.
    before_word = statement[: word.start] if word else statement
    references = table_references(before_word + " " + _rest_of_statement(after_cursor))
    kinds = _expected(preceding, references, catalog)
    typed = word.text if word else ""
    return Completions(typed, tuple(_matching(kinds, typed)))


def _inside_literal_or_comment(last: Token) -> bool:
    if last.kind == "comment":
        return last.text.startswith("--") or last.unterminated
    return last.kind == "string" and last.unterminated


def _rest_of_statement(after_cursor: str) -> str:
    statements, unfinished = split_statements(after_cursor)
    return statements[0] if statements else unfinished


def _expected(preceding: list[Token], references: dict[str, str], catalog: Catalog) -> list[tuple[str, list[str]]]:
    """The kinds of names expected at the cursor, most likely first, with their candidates."""
    previous = preceding[-1] if preceding else None
    if previous is not None and previous.text == "." and len(preceding) >= 2:
        qualifier = preceding[-2].name
        return [("column", list(catalog.columns(references.get(qualifier.lower(), qualifier))))]
    clause = _last_clause(preceding)
    functions = ("function", list(catalog.functions))
    keywords = ("keyword", list(catalog.keywords))
    if previous is not None and (previous.is_word(*TABLE_WORDS) or (previous.text == "," and clause == "from")):
        return [("table", list(catalog.tables)), functions]
    if clause in COLUMN_CLAUSES:
        return [("column", _statement_columns(references, catalog)), functions, keywords]
    return [keywords, functions]


def _last_clause(preceding: list[Token]) -> str | None:
    for token in reversed(preceding):
        if token.is_word(*COLUMN_CLAUSES, *OTHER_CLAUSES):
            return token.text.lower()
    return None


def _statement_columns(references: dict[str, str], catalog: Catalog) -> list[str]:
    tables = dict.fromkeys(t for name in references.values() if (t := catalog.find_table(name)) is not None)
    return list(dict.fromkeys(c for t in tables for c in catalog.tables[t]))


def _matching(kinds: list[tuple[str, list[str]]], typed: str):
    quoted = typed.startswith('"')
    prefix = typed.lstrip('"').lower()
    seen: set[str] = set()
    for kind, names in kinds:
        for name in names:
            if not name.lower().startswith(prefix) or name.lower() in seen:
                continue
            seen.add(name.lower())
            yield Suggestion(_spelled(name, kind, typed, quoted), kind)


def _spelled(name: str, kind: str, typed: str, quoted: bool) -> str:
    if kind == "keyword":
        return name.lower() if typed and typed.islower() else name.upper()
    if kind == "function":
        return name
    return '"' + name.replace('"', '""') + '"' if quoted else quote_name(name)
