"""Reading SQL text without a database: tokens, statement ends, table references.

The REPL needs three facts about text the user is typing: where statements end
(a `;` outside quotes and comments), which statement the cursor is in, and
which tables that statement reads and under which aliases. A small tokenizer
answers all three; it is not a SQL parser and does not try to be one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<ident>"(?:[^"]|"")*(?:"|\Z))
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<number>\d+(?:\.\d*)?)
    | (?P<punct>.)
    """,
    re.DOTALL | re.VERBOSE,
)
_QUOTES = {"string": "'", "ident": '"'}
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Token:
    kind: str  # space, comment, string, ident, word, number, punct
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def significant(self) -> bool:
        return self.kind not in ("space", "comment")

    @property
    def unterminated(self) -> bool:
        """A string, quoted name or block comment still open at the end of the text."""
        if self.kind == "comment":
            return self.text.startswith("/*") and (len(self.text) < 4 or not self.text.endswith("*/"))
        if self.kind in _QUOTES:
            body = self.text[1:]
            # An even run of quotes at the end is escaped quotes, not a closing one.
            trailing = len(body) - len(body.rstrip(_QUOTES[self.kind]))
            return trailing % 2 == 0
        return False

    @property
    def name(self) -> str:
        """The identifier a word or quoted name stands for (words fold to lower case)."""
        if self.kind == "ident":
            return self.text[1:-1].replace('""', '"') if not self.unterminated else self.text[1:]
        return self.text.lower()

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


def tokenize(text: str) -> list[Token]:
    return [Token(m.lastgroup, m.group(), m.start()) for m in _TOKEN.finditer(text)]


def split_statements(text: str) -> tuple[list[str], str]:
    """Complete statements (each ending with its `;`) and the unfinished rest.

    Statements holding nothing but comments are dropped; the rest is "" when
    what follows the last `;` is only blanks and comments.
    """
    statements: list[str] = []
    start = 0
    significant = False
    for token in tokenize(text):
        if token.kind == "punct" and token.text == ";":
            if significant:
                statements.append(text[start : token.end].strip())
            start, significant = token.end, False
        elif token.significant:
            significant = True
    return statements, text[start:] if significant else ""


def current_statement(text: str) -> str:
    """The text after the last `;` that ends a statement: the one the cursor is in."""
    ends = [t.end for t in tokenize(text) if t.kind == "punct" and t.text == ";"]
    return text[ends[-1] :] if ends else text


def first_keyword(statement: str) -> str:
    """The statement's first word in lower case ('' if it has none)."""
    word = next((t for t in tokenize(statement) if t.significant), None)
    return word.text.lower() if word is not None and word.kind == "word" else ""


# Words that end a table reference list in FROM, so they are never aliases.
_CLAUSE_WORDS = {
    "where", "group", "order", "having", "limit", "offset", "qualify", "window", "union",
    "intersect", "except", "on", "using", "join", "inner", "left", "right", "full", "outer",
    "cross", "natural", "positional", "asof", "anti", "semi", "lateral", "select", "from",
    "set", "values", "returning", "as", "sample", "tablesample", "pivot", "unpivot",
}


def table_references(statement: str) -> dict[str, str]:
    """Names a statement's tables go by, lower-cased, mapped to the table's name.

    `from process_stats s join processes p using (upid)` gives
    {"process_stats": "process_stats", "s": "process_stats",
     "processes": "processes", "p": "processes"}. Table functions and
    subqueries in FROM are skipped; schema-qualified names keep their last part.
    """
    tokens = [t for t in tokenize(statement) if t.significant]
    references: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        if tokens[i].is_word("from", "join", "update", "into"):
            i = _read_reference_list(tokens, i + 1, references)
        else:
            i += 1
    return references


def _read_reference_list(tokens: list[Token], i: int, references: dict[str, str]) -> int:
    """Read `name [AS] [alias] [, ...]` starting at tokens[i]; the index after it."""
    while i < len(tokens) and tokens[i].kind in ("word", "ident") and not _is_clause(tokens[i]):
        i, table = _read_dotted_name(tokens, i)
        references[table.lower()] = table
        if i < len(tokens) and tokens[i].text == "(":  # a table function or a column list
            return i
        if i < len(tokens) and tokens[i].is_word("as"):
            i += 1
        if i < len(tokens) and tokens[i].kind in ("word", "ident") and not _is_clause(tokens[i]):
            references[tokens[i].name.lower()] = table
            i += 1
        if i < len(tokens) and tokens[i].text == ",":
            i += 1
            continue
        break
    return i


def _read_dotted_name(tokens: list[Token], i: int) -> tuple[int, str]:
    name = tokens[i].name
    i += 1
    while i + 1 < len(tokens) and tokens[i].text == "." and tokens[i + 1].kind in ("word", "ident"):
        name = tokens[i + 1].name
        i += 2
    return i, name


def _is_clause(token: Token) -> bool:
    return token.kind == "word" and token.text.lower() in _CLAUSE_WORDS


def quote_name(name: str) -> str:
    """`name` as SQL writes it: bare when it is a plain lower-case name, else in double quotes."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
