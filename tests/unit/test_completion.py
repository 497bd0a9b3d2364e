"""Completion as a pure function: text around the cursor + a Catalog -> suggestions."""

import pytest

from tracedb.repl.catalog import Catalog
from tracedb.repl.completion import complete

CATALOG = Catalog(
    tables={
        "process_stats": ("time_", "upid", "pid", "comm", "cpu_utime_ns", "rss_bytes"),
        "processes": ("time_", "upid", "pid", "comm", "cmdline"),
        "Weird Table": ("Mixed Col", "x"),
    },
    functions=("coalesce", "count", "range", "read_parquet", "sum"),
    keywords=("AS", "BY", "CASE", "FROM", "GROUP", "JOIN", "ORDER", "SELECT", "WHERE", "WITH"),
)


def texts(before, after=""):
    return complete(before, CATALOG, after).texts


def kinds(before, after=""):
    return [s.kind for s in complete(before, CATALOG, after).suggestions]


@pytest.mark.parametrize(
    "before",
    ["select * from proc", "select * from process_stats s join proc", "select * from processes, proc", "SELECT * FROM PROC"],
)
def test_tables_after_from_join_and_comma(before):
    assert texts(before) == ["process_stats", "processes"]


def test_after_from_tables_come_before_table_functions():
    assert kinds("select * from ")[:3] == ["table"] * 3
    assert "range" in texts("select * from r")


def test_select_offers_the_columns_of_the_statements_tables_first():
    # The FROM is typed after the cursor: it still counts.
    found = complete("select c", CATALOG, " from processes")
    assert found.texts[:2] == ["comm", "cmdline"]
    assert [s.kind for s in found.suggestions] == ["column", "column", "function", "function", "keyword"]
    assert found.word == "c"


@pytest.mark.parametrize(
    "before, expected",
    [
        ("select * from process_stats where rss", ["rss_bytes"]),
        ("select comm, count(*) from processes group by cm", ["cmdline"]),
        ("select * from process_stats order by cpu", ["cpu_utime_ns"]),
        ("select * from processes p join process_stats s on p.upid = s.up", ["upid"]),
    ],
)
def test_columns_in_where_group_by_order_by_on(before, expected):
    assert texts(before) == expected


def test_columns_of_all_joined_tables_once_each():
    assert texts("select ", " from processes join process_stats using (upid)")[:8] == [
        "time_", "upid", "pid", "comm", "cmdline", "cpu_utime_ns", "rss_bytes", "coalesce",
    ]


def test_without_a_table_in_the_statement_no_columns():
    assert "column" not in kinds("select ")


def test_alias_and_table_qualifiers_offer_only_that_tables_columns():
    after = " from processes p join process_stats s using (upid)"
    assert texts("select p.c", after) == ["comm", "cmdline"]
    assert texts("select s.", after) == ["time_", "upid", "pid", "comm", "cpu_utime_ns", "rss_bytes"]
    assert texts("select processes.cm", after) == ["cmdline"]


def test_keywords_and_functions_elsewhere_in_the_case_typed():
    assert texts("sel") == ["select"]
    assert texts("SEL") == ["SELECT"]
    assert kinds("")[0] == "keyword" and "count" in texts("")
    assert texts("select * from processes wh") == ["where"], "after a table: keywords, not tables"


def test_names_that_need_quotes_come_quoted():
    assert texts("select * from We") == ['"Weird Table"']
    assert texts('select * from "We') == ['"Weird Table"']
    assert texts('select "Mi', ' from "Weird Table"') == ['"Mixed Col"']
    found = complete('select * from "we', CATALOG)
    assert found.word == '"we', "the opening quote is part of the word replaced"


def test_only_the_statement_under_the_cursor_counts():
    assert texts("select * from processes; select * from process_stats where c") == ["comm", "cpu_utime_ns", "coalesce", "count", "case"]
    assert texts("select 1; sel") == ["select"]
    assert texts("select 'a;b' from processes where cm") == ["cmdline"], "a ; inside a string ends nothing"


@pytest.mark.parametrize("before", ["select * from processes where comm = 'pro", "-- select * from pro", "select /* from pro"])
def test_nothing_inside_strings_and_comments(before):
    assert texts(before) == []
