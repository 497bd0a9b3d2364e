import pyarrow as pa
import pytest

from tracedb.schema import TIME_TYPE, SchemaError, builtin_schemas, load_schema_dir, parse_schema

GOOD = """
name = "t"
description = "a table"
[[columns]]
name = "time_"
type = "time"
description = "when"
[[columns]]
name = "n"
type = "int64"
unit = "bytes"
description = "size"
"""


def test_good_schema_parses_to_arrow():
    schema = parse_schema(GOOD)
    assert schema.column_names == ["time_", "n"]
    arrow = schema.arrow_schema
    assert arrow.field("time_").type == TIME_TYPE
    assert arrow.field("n").type == pa.int64()
    assert arrow.field("n").metadata[b"description"] == b"size"
    assert schema.column("n").kind == "bytes"


@pytest.mark.parametrize(
    "change, message",
    [
        (('description = "size"', 'description = ""'), "description"),
        (('name = "n"', 'name = "time_"'), "declared twice"),
        (('type = "int64"', 'type = "int65"'), "unknown type"),
        (('unit = "bytes"', 'unit = "furlongs"'), "unknown unit"),
        (('unit = "bytes"\n', ""), "needs a `unit` or a `semantic`"),
        (('type = "time"', 'type = "int64"\nunit = "ns"'), "first column must be `time_`"),
        (('description = "a table"', ""), "description"),
        (("[[columns]]", "[[columns"), "not valid TOML"),
        (('unit = "bytes"', 'unit = "bytes"\ncolour = "red"'), "unknown keys"),
    ],
)
def test_bad_schemas_are_refused_with_reason(change, message):
    old, new = change
    with pytest.raises(SchemaError, match=message):
        parse_schema(GOOD.replace(old, new, 1), "t.toml")


def test_file_name_must_match_table(tmp_path):
    (tmp_path / "other.toml").write_text(GOOD)
    with pytest.raises(SchemaError, match="must be named t.toml"):
        load_schema_dir(tmp_path)


def test_builtin_schemas_load_and_describe_every_column():
    schemas = builtin_schemas()
    for name in ["process_stats", "processes", "proc_exit_events", "exec_events", "tracedb_tables", "tracedb_connectors"]:
        assert name in schemas
    for schema in schemas.values():
        assert schema.columns[0].name == "time_"
        assert all(c.description for c in schema.columns)


def test_process_scoped_tables_carry_upid_and_pid():
    for name in ["process_stats", "processes", "proc_exit_events", "exec_events"]:
        columns = builtin_schemas()[name].column_names
        assert columns[1:3] == ["upid", "pid"], name
