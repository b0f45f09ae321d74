"""Read users' tabular files: CSV or JSON Lines, optionally gzip-compressed.

The format follows the file name: ``.csv`` / ``.tsv`` (tab-separated) or ``.jsonl`` / ``.ndjson`` /
``.json`` (one JSON object per line), each optionally followed by ``.gz``. Every error names the
file, and the line or the column at fault.
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
    raise DataError(
        f"{path}: unknown file type {suffix or '(no suffix)'!r}; expected .csv, .tsv, .jsonl, "
        ".ndjson or .json (JSON Lines), optionally followed by .gz"
    )


def open_text(path: str | Path) -> IO[str]:
    """Open ``path`` for reading text; gzip when the name ends in ``.gz``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_records(
    path: str | Path, columns: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """Read every row of a CSV/TSV/JSONL(.gz) file.

    Args:
        path: the file.
        columns: columns that every row must have (``None``: no requirement).

    Returns:
        ``(rows, lines, header)``: one dict per row (CSV values are strings, JSON values keep their
        type), the line number in the file where each row starts (for error messages), and the
        column names (CSV header, or the keys of the first JSON object).

    Raises:
        FileNotFoundError: naming the path. ``ValueError``: a missing column (listing those
        present), a line that is not a JSON object, a CSV row with the wrong number of fields, or no
        rows.
    """
    kind = file_format(path)
    with open_text(path) as handle:
        if kind == "jsonl":
            rows, lines, header = _read_jsonl(handle, path, columns or ())
        else:
            rows, lines, header = _read_csv(handle, path, CSV_SUFFIXES[f".{kind}"], columns or ())
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows, lines, header


def _missing_column(
    path: str | Path, column: str, present: Sequence[str], where: str = ""
) -> DataError:
    return DataError(
        f"{path}{where}: no column {column!r}; columns present: "
        f"{', '.join(map(str, present)) or '(none)'}"
    )


def _read_csv(
    handle: IO[str], path: str | Path, delimiter: str, columns: Sequence[str]
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty file (no header line)") from None
    for column in columns:
        if column not in header:
            raise _missing_column(path, column, header)
    rows, lines = [], []
    start = reader.line_num + 1
    for fields in reader:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            start = reader.line_num + 1
            continue  # blank line
        if len(fields) != len(header):
            raise DataError(
                f"{path} line {start}: {len(fields)} fields where the header has {len(header)}"
            )
        rows.append(dict(zip(header, fields, strict=True)))
        lines.append(start)
        start = reader.line_num + 1
    return rows, lines, header


def _read_jsonl(
    handle: IO[str], path: str | Path, columns: Sequence[str]
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    rows, lines = [], []
    header: list[str] = []
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path} line {number}: expected a JSON object, got {type(row).__name__}"
            )
        if not header:
            header = list(row)
        for column in columns:
            if column not in row:
                raise _missing_column(path, column, list(row), f" line {number}")
        rows.append(row)
        lines.append(number)
    return rows, lines, header
