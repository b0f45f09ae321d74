"""Read users' tabular files: CSV/TSV or JSON Lines, optionally gzip-compressed.

The format follows the file name: ``.csv`` / ``.tsv`` or ``.jsonl`` / ``.ndjson`` / ``.json`` (one
JSON object per line), each optionally followed by ``.gz``. Errors name the file and the line.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from sigmoidf1.utils.errors import DataError

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}


def file_format(path: str | Path) -> str:
    """``"csv"``, ``"tsv"`` or ``"jsonl"`` from the file name (a trailing ``.gz`` is ignored)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in CSV_SUFFIXES:
        return suffix[1:]
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise DataError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; expected .csv, .tsv, "
                    ".jsonl, .ndjson or .json (JSON Lines), optionally followed by .gz")


def open_text(path: str | Path) -> IO[str]:
    """Open ``path`` for reading text, decompressing ``.gz``; a missing file names its path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_records(path: str | Path, columns: Sequence[str] | None = None
                 ) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """Every row of a CSV/TSV/JSONL(.gz) file: ``(rows, lines, header)``.

    ``rows`` are dicts (CSV values are strings, JSON values keep their type), ``lines`` the line
    where each row starts, ``header`` the column names (the CSV header, or the keys of the first JSON
    object). ``columns`` must be present in every row. Raises ``FileNotFoundError`` or
    ``DataError`` naming the file (and the line, or the missing column with the columns present).
    """
    kind = file_format(path)
    with open_text(path) as handle:
        try:
            if kind == "jsonl":
                rows, lines, header = _read_jsonl(handle, path)
            else:
                rows, lines, header = _read_csv(handle, path, CSV_SUFFIXES[f".{kind}"])
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: not a UTF-8 text file ({error.reason})") from None
    for column in columns or ():
        if kind != "jsonl" and column not in header:
            raise _missing_column(path, column, header)
        for row, line in zip(rows, lines, strict=True) if kind == "jsonl" else ():
            if column not in row:
                raise _missing_column(path, column, list(row), f" line {line}")
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows, lines, header


def _missing_column(path: str | Path, column: str, present: Sequence[str], where: str = "") -> DataError:
    return DataError(f"{path}{where}: no column {column!r}; columns present: "
                     f"{', '.join(map(str, present)) or '(none)'}")


def _read_csv(handle: IO[str], path: str | Path, delimiter: str
              ) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty file (no header line)") from None
    rows, lines = [], []
    start = reader.line_num + 1
    for fields in reader:
        if fields and any(field.strip() for field in fields):
            if len(fields) != len(header):
                raise DataError(f"{path} line {start}: {len(fields)} fields where the header has "
                                f"{len(header)}")
            rows.append(dict(zip(header, fields, strict=True)))
            lines.append(start)
        start = reader.line_num + 1
    return rows, lines, header


def _read_jsonl(handle: IO[str], path: str | Path
                ) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    rows, lines, header = [], [], []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        header = header or list(row)
        rows.append(row)
        lines.append(number)
    return rows, lines, header
