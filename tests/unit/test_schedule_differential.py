"""Differential results: rows added and removed between two results, as multisets."""

import pyarrow as pa

from tracedb.schedule.differential import changes, diff, row_keys


def test_first_result_adds_everything():
    current = pa.table({"comm": ["a", "b"]})
    added, removed = changes(None, current)
    assert added.to_pylist() == current.to_pylist() and removed.num_rows == 0
    assert removed.schema == current.schema


def test_added_and_removed_rows_between_results():
    before = pa.table({"comm": ["a", "b", "c"], "port": [80, 443, 22]})
    after = pa.table({"comm": ["b", "c", "d"], "port": [443, 2222, 53]})
    added, removed = changes(before, after)
    assert added.to_pylist() == [{"comm": "c", "port": 2222}, {"comm": "d", "port": 53}]
    assert removed.to_pylist() == [{"comm": "a", "port": 80}, {"comm": "c", "port": 22}]


def test_duplicates_count():
    assert diff(["x", "x", "y"], ["x", "x", "x", "y"]) == ([2], [])
    assert diff(["x", "x", "y"], ["y", "x"]) == ([], [0]), "one x of two is gone"
    assert diff(["x", "x"], ["x", "x"]) == ([], [])


def test_unchanged_result_emits_nothing():
    table = pa.table({"a": [1, 2, 2], "b": [None, "x", "x"]})
    added, removed = changes(table, table)
    assert added.num_rows == removed.num_rows == 0


def test_rows_compare_whole_including_nested_values_and_nan():
    table = pa.table({"tags": [[1, 2], [3]], "info": [{"k": "v"}, {"k": "w"}], "ratio": [float("nan"), 0.5]})
    assert row_keys(table) == row_keys(pa.table(table.to_pydict()))
    added, removed = changes(table, table)
    assert added.num_rows == removed.num_rows == 0
    later = pa.table({"tags": [[1, 2]], "info": [{"k": "v"}], "ratio": [float("nan")]})
    added, removed = changes(table, later)
    assert added.num_rows == 0 and removed.to_pylist() == [{"tags": [3], "info": {"k": "w"}, "ratio": 0.5}]
