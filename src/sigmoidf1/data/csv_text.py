"""Your own text data: ``data=csv_text data.path=FILE``.

``FILE`` is CSV, TSV or JSON Lines, optionally gzip-compressed (``.csv.gz`` ...), with a text column
and a labels column: ``|``-separated names in CSV/TSV (``"sports|politics"``; an empty cell = no
label), a list of names in JSON Lines (``{"text": "...", "labels": ["sports", "politics"]}``).
Column names and the separator are configurable. Splits and the label vocabulary: see
``sigmoidf1.data.user_files``; batches: see ``sigmoidf1.data.text_base``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sigmoidf1.data.text_base import TextDataModule, check_text
from sigmoidf1.data.user_files import LabelledFiles


class CsvTextDataModule(LabelledFiles, TextDataModule):
    """Text + labels from CSV/TSV/JSONL(.gz) files.

    Args: the file arguments of ``LabelledFiles`` (``path`` or ``train_path`` ..., columns,
    separator, fractions); ``text_column`` and the tokenizer settings of ``TextDataModule``; the
    loader settings of ``MultilabelDataModule``.
    """

    cache_name = "csv_text"

    @property
    def input_column(self) -> str:
        return self.text_column

    def read_input(self, file: str) -> Callable[[Any, str], str]:
        return check_text
