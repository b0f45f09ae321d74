"""Read CSV or JSON Lines files (optionally gzipped) as rows of ``{column: value}``.

The format is chosen by the suffix before an optional ``.gz``: ``.jsonl``/``.json``/``.ndjson`` are
JSON Lines (one object per line), anything else is CSV with a header line. Errors name the file
and, for JSONL, the line.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sigmoidf1.utils.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


def is_jsonl(path: str | Path) -> bool:
    suffixes = Path(path).suffixes
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1].lower() in JSONL_SUFFIXES


def open_text(path: str | Path) -> IO[str]:
    """Open ``path`` for reading text, decompressing ``.gz``; a missing file names its path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a CSV (header line first) or JSONL file as dicts."""
    with open_text(path) as handle:
        if is_jsonl(path):
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}, line {number}: expected a JSON object per line")
                yield record
        else:
            try:
                yield from csv.DictReader(handle)
            except (csv.Error, UnicodeDecodeError) as error:
                raise DataError(f"{path}: not a readable CSV file ({error})") from None


def columns_preview(columns: list[str], limit: int = 12) -> str:
    """``a, b, c, ... (N columns)``: a short listing of the columns a file has."""
    shown = ", ".join(map(str, columns[:limit]))
    more = f", ... ({len(columns)} columns)" if len(columns) > limit else ""
    return (shown + more) if columns else "(none)"
