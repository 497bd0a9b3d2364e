"""Differential results: which rows a run added and removed since the last one.

Pure functions, no state. Rows compare as whole tuples of their values, as a
multiset: a row present twice before and three times now is one row added,
present twice before and once now is one removed. Which of equal rows is
reported does not matter, they are equal. A query's first run, having no
previous result, adds all its rows.

Values that Python cannot hash (DuckDB lists, structs, maps) compare by
content; NaN compares equal to NaN, so a row holding NaN is not reported as
removed and added again at every run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import pyarrow as pa

_NAN = ("NaN",)  # stands for every NaN in a row key


def row_keys(table: pa.Table) -> list[tuple]:
    """One hashable key per row, equal for rows with equal values."""
    return [tuple(_hashable(v) for v in row.values()) for row in table.to_pylist()]


def _hashable(value) -> Hashable:
    if isinstance(value, float) and math.isnan(value):
        return _NAN
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def diff(previous: Sequence[Hashable], current: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """Indexes of the rows of `current` that are added and of `previous` that are removed."""
    unmatched = Counter(previous)
    added = []
    for index, key in enumerate(current):
        if unmatched[key] > 0:
            unmatched[key] -= 1
        else:
            added.append(index)
    removed = []
    for index, key in enumerate(previous):
        if unmatched[key] > 0:
            unmatched[key] -= 1
            removed.append(index)
    return added, removed


def changes(previous: pa.Table | None, current: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows added, rows removed) between two results of the same query."""
    if previous is None:
        return current, current.slice(0, 0)
    added, removed = diff(row_keys(previous), row_keys(current))
    return current.take(pa.array(added, pa.int64())), previous.take(pa.array(removed, pa.int64()))
