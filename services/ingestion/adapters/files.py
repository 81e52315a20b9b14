"""Uploaded CSV and Parquet files, read in chunks of rows without loading them whole.

The HTTP layer spools an upload to a temporary file; these readers take that (seekable,
binary) file. `count_rows` reads it through once so that a file broken half-way is refused
before anything of it is published; `chunks` then yields lists of row dicts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from services.ingestion.domain.errors import UnreadableFile

_READ_ERRORS = (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError, pa.ArrowException)


class CsvFile:
    """A CSV file with a header row; every cell is read as text (NA spellings as NaN)."""

    typed = False

    def __init__(self, file: IO[bytes], chunk_rows: int) -> None:
        self._file = file
        self._chunk_rows = chunk_rows

    def _header(self) -> list[str]:
        self._file.seek(0)
        text = io.TextIOWrapper(self._file, encoding="utf-8", newline="")
        try:
            return next(csv.reader(text), [])
        finally:
            text.detach()

    def _frames(self) -> Iterator[pd.DataFrame]:
        self._file.seek(0)
        frames = pd.read_csv(self._file, dtype=str, chunksize=self._chunk_rows, encoding="utf-8")
        for frame in frames:
            # pandas reads rows with one field more than the header as "the first column is
            # the index" and silently shifts the values: a ragged file, refused as such.
            if not isinstance(frame.index, pd.RangeIndex):
                raise UnreadableFile(
                    "rows have more fields than the header names (the first data row has "
                    f"{len(frame.columns) + 1}, the header {len(frame.columns)})"
                )
            yield frame

    def count_rows(self) -> int:
        try:
            header = self._header()
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise UnreadableFile(f"the CSV header names columns more than once: {repeated}")
            return sum(len(frame) for frame in self._frames())
        except pd.errors.EmptyDataError:
            raise UnreadableFile("the CSV file is empty: it has not even a header row") from None
        except _READ_ERRORS as error:
            raise UnreadableFile(
                f"not a readable CSV file (UTF-8, header row): {str(error).strip()}"
            ) from None

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        try:
            for frame in self._frames():
                columns = [str(c) for c in frame.columns]
                yield [
                    dict(zip(columns, values, strict=True))
                    for values in frame.itertuples(index=False, name=None)
                ]
        except _READ_ERRORS as error:
            raise UnreadableFile(f"the CSV file became unreadable: {error}") from None


def _scalar_type(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _scalar_type(kind.value_type)
    return (
        any(
            check(kind)
            for check in (
                pa.types.is_null,
                pa.types.is_boolean,
                pa.types.is_integer,
                pa.types.is_floating,
                pa.types.is_decimal,
                pa.types.is_string,
                pa.types.is_large_string,
                pa.types.is_timestamp,
                pa.types.is_date,
                pa.types.is_time,
            )
        )
        or str(kind) == "string_view"
    )


class ParquetFile:
    """A Parquet file, read by record batches; only scalar columns are accepted."""

    typed = True

    def __init__(self, file: IO[bytes], chunk_rows: int) -> None:
        self._chunk_rows = chunk_rows
        try:
            self._parquet = pq.ParquetFile(file)
        except _READ_ERRORS as error:
            raise UnreadableFile(f"not a readable Parquet file: {error}") from None
        schema = self._parquet.schema_arrow
        nested = [
            f"{field.name} ({field.type})" for field in schema if not _scalar_type(field.type)
        ]
        if nested:
            raise UnreadableFile(
                "only columns of scalars (numbers, booleans, text, timestamps) can be ingested; "
                f"these are not: {', '.join(nested)}"
            )
        names = [field.name for field in schema]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UnreadableFile(f"the Parquet schema names columns more than once: {repeated}")

    def count_rows(self) -> int:
        try:
            return sum(batch.num_rows for batch in self._parquet.iter_batches(self._chunk_rows))
        except _READ_ERRORS as error:
            raise UnreadableFile(f"the Parquet file cannot be read through: {error}") from None

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        try:
            for batch in self._parquet.iter_batches(self._chunk_rows):
                yield batch.to_pylist()
        except _READ_ERRORS as error:
            raise UnreadableFile(f"the Parquet file became unreadable: {error}") from None


def open_table(file: IO[bytes], file_format: str, chunk_rows: int) -> CsvFile | ParquetFile:
    if file_format == "parquet":
        return ParquetFile(file, chunk_rows)
    return CsvFile(file, chunk_rows)
