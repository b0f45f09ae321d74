"""Your own text data: ``data=csv_text data.path=FILE``.

``FILE`` is CSV, TSV or JSON Lines, optionally gzip-compressed (``.csv.gz`` ...), with a text column
and a labels column: ``|``-separated names in CSV/TSV (``"sports|politics"``; an empty cell = no
label), a list of names in JSON Lines (``{"text": "...", "labels": ["sports", "politics"]}``). Column
names and the separator are configurable. Splits: one file split at random from the seed, or
``train_path`` plus optional ``val_path`` / ``test_path`` (see ``sigmoidf1.data.user_files``).

The label vocabulary is the sorted set of training labels; labels found only in validation or test are
reported in a warning and left out of the targets. Batches: see ``sigmoidf1.data.text_base``.
"""

from __future__ import annotations

from sigmoidf1.data.text_base import TextDataModule, check_text
from sigmoidf1.data.user_files import (
    SPLITS,
    LabelledRows,
    check_files_exist,
    labelled_splits,
    read_labelled_file,
    split_targets,
)


class CsvTextDataModule(TextDataModule):
    """Text + labels from CSV/TSV/JSONL(.gz) files.

    Args:
        path: one file, split at random into train/val/test (``val_fraction``, ``test_fraction``).
        train_path, val_path, test_path: separate files instead (val/test optional: carved from
            the training file when absent).
        text_column, labels_column: column names (``text_column`` is also read by prediction).
        label_separator: separator of label names in CSV/TSV cells.
        Other arguments: see ``TextDataModule`` and ``MultilabelDataModule``.
    """

    cache_name = "csv_text"

    def __init__(
        self,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        labels_column: str = "labels",
        label_separator: str = "|",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.train_path = train_path
        self.val_path = val_path
        self.test_path = test_path
        self.labels_column = labels_column
        self.label_separator = label_separator
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.unknown_labels: dict[str, dict[str, int]] = {}

    def _read(self, file: str) -> LabelledRows:
        return read_labelled_file(file, self.text_column, self.labels_column, self.label_separator,
                                  check_text)

    def prepare_data(self) -> None:
        check_files_exist(self.path, self.train_path, self.val_path, self.test_path)

    def _load(self) -> None:
        splits = labelled_splits(
            path=self.path, train_path=self.train_path, val_path=self.val_path,
            test_path=self.test_path, val_fraction=self.val_fraction,
            test_fraction=self.test_fraction, seed=self.seed, read=self._read,
        )
        self.label_names, targets, self.unknown_labels = split_targets(splits)
        self._build_splits({s: splits[s].inputs for s in SPLITS}, targets)
