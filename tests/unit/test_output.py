import csv
import io
import json

import pyarrow as pa
import pytest

from tracedb import output

TABLE = pa.table(
    {
        "name": ["a", None, "c,d"],
        "n": [1, 22, None],
        "t": pa.array([0, 1_000_000, 2_000_000], pa.timestamp("us", tz="UTC")),
    }
)


def test_table_format_aligns_and_right_aligns_numbers():
    text = output.format_table(TABLE)
    lines = text.splitlines()
    assert lines[1].startswith("| name ")
    assert "|    1 |" in text and "|   22 |" in text
    assert "NULL" in text
    assert lines[-1] == "(3 rows)"
    assert len({len(line) for line in lines[:-1]}) == 1, "every row has the same width"


def test_csv_round_trips():
    rows = list(csv.reader(io.StringIO(output.format_csv(TABLE))))
    assert rows[0] == ["name", "n", "t"]
    assert rows[3][0] == "c,d" and rows[2][0] == ""
    assert rows[1][2].startswith("1970-01-01 00:00:00")


def test_json_and_jsonl_keep_types():
    parsed = json.loads(output.format_json(TABLE))
    assert parsed[1] == {"name": None, "n": 22, "t": "1970-01-01T00:00:01+00:00"}
    lines = output.format_jsonl(TABLE).splitlines()
    assert [json.loads(x)["n"] for x in lines] == [1, 22, None]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown format"):
        output.render(TABLE, "xml")


def test_stream_printer_labels_rows_with_their_table():
    out = io.StringIO()
    printer = output.StreamPrinter(out, "csv")
    batch = TABLE.to_batches()[0]
    printer.print_batch("t1", batch)
    printer.print_batch("t1", batch)
    lines = out.getvalue().splitlines()
    assert lines[0] == "table,name,n,t" and len(lines) == 7
    out = io.StringIO()
    output.StreamPrinter(out, "jsonl").print_batch("t2", batch)
    assert json.loads(out.getvalue().splitlines()[0])["table"] == "t2"
