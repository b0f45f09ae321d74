"""Your own image data: ``data=csv_image data.path=FILE``.

``FILE`` is CSV, TSV or JSON Lines (gzip allowed) with an image-path column (``image``; relative paths
are relative to the file's folder, or to ``image_root``) and a labels column (``labels``:
``|``-separated names in CSV/TSV, a list in JSON Lines). Splits, the label vocabulary (from the
training split; labels only in val/test are reported) and errors work as in ``csv_text``; batches as
in ``sigmoidf1.data.images``.
"""

from __future__ import annotations

from pathlib import Path

from sigmoidf1.data.images import ImageDataModule, resolve_image_path
from sigmoidf1.data.user_files import (
    SPLITS,
    LabelledRows,
    check_files_exist,
    labelled_splits,
    read_labelled_file,
    split_targets,
)


class CsvImageDataModule(ImageDataModule):
    """Image paths + labels from CSV/TSV/JSONL(.gz) files.

    Args:
        path / train_path, val_path, test_path: as in ``CsvTextDataModule``.
        image_root: folder that relative image paths start from; ``None`` = each file's folder.
        image_column, labels_column, label_separator: column names and the label separator.
        Other arguments: see ``ImageDataModule`` and ``MultilabelDataModule``.
    """

    def __init__(
        self,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        image_root: str | None = None,
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
        self.image_root = image_root
        self.labels_column = labels_column
        self.label_separator = label_separator
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.unknown_labels: dict[str, dict[str, int]] = {}

    def _read(self, file: str) -> LabelledRows:
        base = Path(self.image_root) if self.image_root else Path(file).parent
        return read_labelled_file(
            file, self.image_column, self.labels_column, self.label_separator,
            lambda value, where: resolve_image_path(value, base, where),
        )

    def prepare_data(self) -> None:
        check_files_exist(self.path, self.train_path, self.val_path, self.test_path)

    def _load(self) -> None:
        splits = labelled_splits(
            path=self.path, train_path=self.train_path, val_path=self.val_path,
            test_path=self.test_path, val_fraction=self.val_fraction,
            test_fraction=self.test_fraction, seed=self.seed, read=self._read,
        )
        self.label_names, targets, self.unknown_labels = split_targets(splits)
        self._file_splits({s: splits[s].inputs for s in SPLITS}, targets)
