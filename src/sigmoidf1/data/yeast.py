"""Yeast (MULAN): 2,417 genes x 103 float features, 14 functional classes (multilabel).

The file ships inside the ``river`` wheel (``river.datasets.Yeast().path``), so no network is used.
Splits are random from ``seed``; features are standardised with the mean and standard deviation of
the training split only, and those statistics travel in the checkpoint (``state_dict``).

Prediction (``predict_dataset``) reads a CSV/TSV/JSONL(.gz) file of feature rows: the columns
``Att1`` .. ``Att103`` when all are present, otherwise the first 103 columns whose every value is a
number (in file order; other columns, e.g. an id, are ignored).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from sigmoidf1.data.base import MultilabelDataModule, TensorInputs, split_indices
from sigmoidf1.data.records import read_records

NUM_FEATURES = 103
NUM_LABELS = 14
FEATURE_NAMES = [f"Att{i}" for i in range(1, NUM_FEATURES + 1)]


def river_yeast_path() -> Path:
    """Locate ``yeast.csv.gz`` inside the installed ``river`` package without importing it."""
    spec = importlib.util.find_spec("river")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Yeast dataset comes with the 'river' package: pip install river==0.26.1"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "yeast.csv.gz"


def read_yeast(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read the MULAN Yeast CSV: columns ``Att1..Att103`` then ``Class1..Class14`` (0/1).

    Returns ``features [n, 103] float32``, ``targets [n, 14] float32`` and the label names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Yeast data file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    label_cols = [i for i, name in enumerate(header) if name.startswith("Class")]
    feature_cols = [i for i, name in enumerate(header) if name.startswith("Att")]
    if not label_cols or not feature_cols:
        raise ValueError(f"{path}: expected Att* and Class* columns, found {header[:5]}...")
    table = np.asarray(body, dtype=np.float64)
    features = table[:, feature_cols].astype(np.float32)
    targets = table[:, label_cols].astype(np.float32)
    if not np.isfinite(features).all():
        bad = int(np.argwhere(~np.isfinite(features))[0, 0])
        raise ValueError(f"{path}: non-finite feature value in data row {bad + 1}")
    return features, targets, [header[i] for i in label_cols]


class YeastDataModule(MultilabelDataModule):
    """The Yeast DataModule. Batches: ``(x [batch, 103] float32, y [batch, 14] float32)``."""

    def __init__(
        self,
        path: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        standardize: bool = True,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.path = path
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.standardize = standardize
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def prepare_data(self) -> None:
        path = Path(self.path) if self.path else river_yeast_path()
        if not path.is_file():
            raise FileNotFoundError(f"Yeast data file not found: {path}")

    def _load(self) -> None:
        features, targets, self.label_names = read_yeast(self.path or river_yeast_path())
        train, val, test = split_indices(
            len(features), self.val_fraction, self.test_fraction, self.seed
        )
        if self.standardize:
            self.mean = features[train].mean(axis=0)
            self.std = features[train].std(axis=0) + 1e-6
            features = (features - self.mean) / self.std
        self.backbone_inputs = {"in_features": features.shape[1]}

        def subset(idx: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.from_numpy(features[idx]), torch.from_numpy(targets[idx]))

        self.train_set, self.val_set, self.test_set = subset(train), subset(val), subset(test)

    def state_dict(self) -> dict[str, Any]:
        """Preprocessing needed to apply a trained model to new rows (saved in checkpoints)."""
        state = super().state_dict()
        if self.mean is not None:
            state |= {"mean": self.mean.tolist(), "std": self.std.tolist()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "mean" in state:
            self.mean = np.asarray(state["mean"], dtype=np.float32)
            self.std = np.asarray(state["std"], dtype=np.float32)
        self.backbone_inputs = {"in_features": NUM_FEATURES}

    def predict_dataset(self, path: str) -> Dataset:
        """Feature rows of a user file (see the module docstring), standardised like training.

        Items: ``float32 [103]``.
        """
        features = read_feature_rows(path, FEATURE_NAMES)
        if self.standardize:
            if self.mean is None:
                raise RuntimeError("YeastDataModule: call setup() or load_state_dict() first")
            features = (features - self.mean) / self.std
        return TensorInputs(torch.from_numpy(features.astype(np.float32)))


def read_feature_rows(path: str | Path, names: list[str]) -> np.ndarray:
    """``float32 [rows, len(names)]`` from the columns ``names``, or else from the first
    ``len(names)`` all-numeric columns. Raises ``ValueError`` naming the file, line and column of a
    non-numeric or non-finite value, or when too few numeric columns exist."""
    rows, lines, header = read_records(path)
    if all(name in header for name in names):
        columns = names
    else:
        columns = [c for c in header if all(_is_number(row.get(c)) for row in rows)][: len(names)]
        if len(columns) < len(names):
            raise ValueError(
                f"{path}: needs the columns {names[0]}..{names[-1]} or {len(names)} numeric columns; "
                f"found {len(columns)} numeric column(s) among {', '.join(header)}"
            )
    features = np.empty((len(rows), len(columns)), dtype=np.float64)
    for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
        for j, column in enumerate(columns):
            value = row.get(column)
            if not _is_number(value) or not np.isfinite(float(value)):
                raise ValueError(f"{path} line {line}: column {column!r} is not a finite number: {value!r}")
            features[i, j] = float(value)
    return features.astype(np.float32)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
