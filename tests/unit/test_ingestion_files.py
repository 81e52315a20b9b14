"""Uploaded files: CSV or Parquet, read in chunks, cells turned into the JSON scalars a client
would send (typed by the spec for CSV's text), NaN into null; unreadable files refused."""

import io
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.ingestion.adapters.files import CsvFile, ParquetFile, open_table
from services.ingestion.domain.errors import UnreadableFile, UnsupportedFormat
from services.ingestion.domain.files import (
    column_types,
    convert_text_row,
    detect_format,
    text_cell,
    typed_cell,
)
from shared.datasets.spec import FeatureType, shipped_specs

INT, N, B, C = (
    FeatureType.INTEGER,
    FeatureType.NUMERIC,
    FeatureType.BOOLEAN,
    FeatureType.CATEGORICAL,
)


@pytest.mark.parametrize(
    ("requested", "filename", "content_type", "head", "expected"),
    [
        ("CSV", "x.parquet", "application/vnd.apache.parquet", b"PAR1", "csv"),
        (None, "upload.parquet", "text/csv", b"", "parquet"),
        (None, "upload.pq", None, b"", "parquet"),
        (None, "upload.CSV", "application/octet-stream", b"", "csv"),
        (None, None, "text/csv; charset=utf-8", b"", "csv"),
        (None, None, "application/vnd.apache.parquet", b"", "parquet"),
        (None, "blob", "application/octet-stream", b"PAR1\x15\x04", "parquet"),
    ],
)
def test_the_format_comes_from_query_then_name_then_type_then_magic(
    requested: str | None,
    filename: str | None,
    content_type: str | None,
    head: bytes,
    expected: str,
) -> None:
    found = detect_format(
        requested=requested, filename=filename, content_type=content_type, head=head
    )
    assert found == expected


def test_an_unknown_format_is_refused_saying_how_to_name_it() -> None:
    with pytest.raises(UnsupportedFormat, match=r"\?format=csv\|parquet") as refused:
        detect_format(requested=None, filename="x.bin", content_type=None, head=b"abc")
    assert refused.value.status == 415
    with pytest.raises(UnsupportedFormat, match="not 'xlsx'"):
        detect_format(requested="xlsx", filename=None, content_type=None, head=b"")


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        ("42", INT, 42),
        ("-7", INT, -7),
        ("5.0", INT, 5),
        ("5.5", INT, "5.5"),
        ("abc", INT, "abc"),
        ("1_000", INT, "1_000"),
        ("2.5", N, 2.5),
        ("1e3", N, 1000.0),
        ("12", N, 12),
        ("inf", N, "inf"),
        (" 3 ", N, 3),
        ("true", B, True),
        ("FALSE", B, False),
        ("yes", B, "yes"),
        ("07", C, "07"),
        ("42", None, "42"),
        (float("nan"), INT, None),
        (None, C, None),
    ],
)
def test_csv_text_is_typed_only_when_the_spec_declares_it_and_it_is_exact(
    text: object, declared: FeatureType | None, expected: object
) -> None:
    converted = text_cell(text, declared)
    assert converted == expected and type(converted) is type(expected)


@pytest.mark.parametrize(
    ("value", "declared", "expected"),
    [
        (float("nan"), N, None),
        (3.0, INT, 3),
        (3.0, N, 3.0),
        (float("inf"), N, "inf"),
        (float("-inf"), N, "-inf"),
        (Decimal("2.50"), N, 2.5),
        (Decimal("2"), N, 2),
        (datetime(2024, 1, 1, tzinfo=UTC), None, "2024-01-01T00:00:00+00:00"),
        (date(2024, 1, 1), None, "2024-01-01"),
        (True, INT, True),
        ("x", C, "x"),
    ],
)
def test_parquet_cells_keep_their_types_as_json_scalars(
    value: object, declared: FeatureType | None, expected: object
) -> None:
    converted = typed_cell(value, declared)
    assert converted == expected and type(converted) is type(expected)


def test_the_typed_columns_are_the_features_and_the_label() -> None:
    loans = next(s for s in shipped_specs() if s.name == "loans")
    types = column_types(loans)
    assert types["age"] == INT and types["elevel"] == C and types["approved"] == INT
    assert "applicant_id" not in types
    row = convert_text_row({"applicant_id": "7", "age": "30", "elevel": "1", "x": ""}, types)
    assert row == {"applicant_id": "7", "age": 30, "elevel": "1", "x": ""}


def csv_file(text: str, chunk_rows: int = 2) -> CsvFile:
    return CsvFile(io.BytesIO(text.encode()), chunk_rows)


def test_a_csv_file_is_read_in_chunks_of_text_with_nulls() -> None:
    table = csv_file("a,b,c\n1,x,\n2,NA,z\n3,,null\n")
    assert table.count_rows() == 3
    chunks = list(table.chunks())
    assert [len(c) for c in chunks] == [2, 1]
    first = chunks[0][0]
    assert first["a"] == "1" and first["b"] == "x" and math.isnan(first["c"])
    assert math.isnan(chunks[1][0]["b"]) and math.isnan(chunks[1][0]["c"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("a,b\n1,2\n1,2,3\n", "Expected 2 fields in line 3, saw 3"),
        ("a,a\n1,2\n", r"more than once: \['a'\]"),
        ("a,b\n1,2,3\n4,5,6\n", "more fields than the header"),
    ],
)
def test_an_unreadable_csv_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(UnreadableFile, match=message):
        csv_file(text).count_rows()


def test_a_csv_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(UnreadableFile, match="utf-8"):
        CsvFile(io.BytesIO(b"a,b\n\xff\xfe,1\n"), 10).count_rows()


def parquet_bytes(table: pa.Table, row_group_size: int = 2) -> io.BytesIO:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    buffer.seek(0)
    return buffer


def test_a_parquet_file_is_read_in_chunks_of_typed_values() -> None:
    frame = pd.DataFrame(
        {
            "i": pd.array([1, None, 3], dtype="Int64"),
            "f": [1.5, float("nan"), 2.0],
            "s": ["a", None, "c"],
            "t": pd.to_datetime(["2024-01-01T00:00:00Z", None, "2024-01-02T00:00:00Z"]),
            "c": pd.Categorical(["x", "y", "x"]),
        }
    )
    table = open_table(parquet_bytes(pa.Table.from_pandas(frame)), "parquet", 2)
    assert isinstance(table, ParquetFile) and table.typed
    assert table.count_rows() == 3
    chunks = list(table.chunks())
    assert [len(c) for c in chunks] == [2, 1]
    assert chunks[0][0]["i"] == 1 and chunks[0][1]["i"] is None
    assert chunks[0][0]["c"] == "x"


def test_a_parquet_file_with_nested_columns_is_refused_before_reading() -> None:
    table = pa.table({"ok": [1], "tags": [["a", "b"]]})
    with pytest.raises(UnreadableFile, match=r"tags \(list<"):
        ParquetFile(parquet_bytes(table), 10)


def test_a_file_that_is_not_parquet_is_refused() -> None:
    with pytest.raises(UnreadableFile, match="not a readable Parquet file"):
        ParquetFile(io.BytesIO(b"a,b\n1,2\n"), 10)
