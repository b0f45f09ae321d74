"""Users' labelled files (``csv_text``, ``csv_image``): reading, train/val/test splits, and the
``LabelledFiles`` mixin that gives both DataModules their arguments, ``prepare_data`` and ``_load``.

Either one file (``path``) split at random from the seed, or a training file (``train_path``) with
optional ``val_path`` / ``test_path``; a split without its own file is carved at random from the
training file. Each row has an input column (text, or an image path) and a labels column. The label
vocabulary is the sorted set of training labels; labels found only in validation or test are
reported in a warning and left out of the targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sigmoidf1.data.base import split_indices
from sigmoidf1.data.labels import label_vocabulary, multi_hot, parse_labels, report_unknown_labels
from sigmoidf1.data.records import read_records
from sigmoidf1.utils.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


@dataclass
class LabelledRows:
    """One split: input values, label sets, and where each row came from (for messages)."""

    inputs: list[Any] = field(default_factory=list)
    label_sets: list[list[str]] = field(default_factory=list)
    origins: list[tuple[Path, int]] = field(default_factory=list)  # (file, line)

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, indices: np.ndarray) -> LabelledRows:
        return LabelledRows(
            [self.inputs[i] for i in indices],
            [self.label_sets[i] for i in indices],
            [self.origins[i] for i in indices],
        )

    @property
    def sources(self) -> str:
        return ", ".join(sorted({str(path) for path, _ in self.origins})) or "(no rows)"


def check_files_exist(*files: str | None) -> None:
    """Raise ``FileNotFoundError`` naming the first given file that does not exist."""
    for file in files:
        if file and not Path(file).is_file():
            raise FileNotFoundError(f"file not found: {file}")


def read_labelled_file(
    path: str | Path,
    input_column: str,
    labels_column: str,
    separator: str,
    check_input: Callable[[Any, str], Any],
) -> LabelledRows:
    """Read one file; ``check_input(value, where)`` validates/converts each input value."""
    path = Path(path)
    rows, lines, _ = read_records(path, [input_column, labels_column])
    out = LabelledRows()
    for row, line in zip(rows, lines, strict=True):
        where = f"{path} line {line}"
        out.inputs.append(check_input(row[input_column], where))
        out.label_sets.append(parse_labels(row[labels_column], separator, where))
        out.origins.append((path, line))
    return out


def labelled_splits(
    *,
    path: str | None,
    train_path: str | None,
    val_path: str | None,
    test_path: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    read: Callable[[str], LabelledRows],
) -> dict[str, LabelledRows]:
    """Build the three splits (see the module docstring); ``read(file)`` reads one file.

    Raises ``ValueError`` when both or neither of ``path`` / ``train_path`` are given, or when a
    split ends up empty (naming the split and its file).
    """
    if bool(path) == bool(train_path):
        raise ConfigError(
            "give either `path` (one file, split at random) or `train_path` (with optional "
            f"`val_path` and `test_path`), not {'both' if path else 'neither'}"
        )
    if path:
        rows = read(path)
        train, val, test = split_indices(len(rows), val_fraction, test_fraction, seed)
        splits = {"train": rows.take(train), "val": rows.take(val), "test": rows.take(test)}
    else:
        rows = read(train_path)
        given = {
            "val": read(val_path) if val_path else None,
            "test": read(test_path) if test_path else None,
        }
        train, val, test = split_indices(
            len(rows),
            0.0 if given["val"] is not None else val_fraction,
            0.0 if given["test"] is not None else test_fraction,
            seed,
        )
        splits = {
            "train": rows.take(train),
            "val": given["val"] if given["val"] is not None else rows.take(val),
            "test": given["test"] if given["test"] is not None else rows.take(test),
        }
    for name in SPLITS:
        if len(splits[name]) == 0:
            own_file = {"val": val_path, "test": test_path}.get(name)
            carved = name != "train" and not own_file
            hint = f": add rows or raise {name}_fraction" if carved else ""
            raise DataError(
                f"the {name} split is empty (from {own_file or path or train_path}){hint}"
            )
    return splits


def split_targets(
    splits: dict[str, LabelledRows],
) -> tuple[list[str], dict[str, np.ndarray], dict[str, dict[str, int]]]:
    """Label names (sorted, from the training split), ``targets [n, num_labels]`` per split, and the
    labels of val/test that training lacks (``{split: {name: count}}``; each one is warned
    about)."""
    names = label_vocabulary(
        splits["train"].label_sets, f"the training split ({splits['train'].sources})"
    )
    targets, unknown_labels = {}, {}
    for split in SPLITS:
        targets[split], unknown = multi_hot(splits[split].label_sets, names)
        report_unknown_labels(unknown, split, splits[split].sources)
        if unknown:
            unknown_labels[split] = dict(unknown)
    return names, targets, unknown_labels


class LabelledFiles:
    """Mixin of the DataModules that read users' labelled files; put it first among the bases.

    A subclass says only what differs: ``input_column`` (the column of inputs), ``read_input(file)``
    (the function ``(cell, where) -> input`` that checks and converts the cells of ``file``) and the
    data module's ``_build_splits(inputs, targets)`` (``{split: inputs}``, ``{split: [n, L]}``).

    Args:
        path: one file, split at random into train/val/test (``val_fraction``, ``test_fraction``).
        train_path, val_path, test_path: separate files instead (val/test optional: carved from
            the training file when absent).
        labels_column: the column of label names.
        label_separator: separator of label names in CSV/TSV cells.
        Other arguments go to the next base class.
    """

    input_column: str

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
        **kwargs: Any,
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

    def read_input(self, file: str) -> Callable[[Any, str], Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_data(self) -> None:
        check_files_exist(self.path, self.train_path, self.val_path, self.test_path)

    def _read(self, file: str) -> LabelledRows:
        return read_labelled_file(
            file, self.input_column, self.labels_column, self.label_separator, self.read_input(file)
        )

    def _load(self) -> None:
        splits = labelled_splits(
            path=self.path,
            train_path=self.train_path,
            val_path=self.val_path,
            test_path=self.test_path,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            read=self._read,
        )
        self.label_names, targets, self.unknown_labels = split_targets(splits)
        self._build_splits({s: splits[s].inputs for s in SPLITS}, targets)
