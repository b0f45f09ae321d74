"""Yeast (MULAN): 2,417 genes x 103 float features, 14 functional classes (multilabel).

The file ships inside the ``river`` wheel (``river.datasets.Yeast().path``), so no network is used.
Splits are random from ``seed``; features are standardised with the mean and standard deviation of
the training split only, and those statistics travel in the checkpoint (``state_dict``).

Prediction input (``sigmoidf1-predict input=FILE``): a CSV/TSV or JSONL file (gzip allowed) holding
the feature columns by name, ``Att1`` ... ``Att103``, in any order; other columns (an id, the
``Class*`` columns) are ignored. Matching by name, not position, means a reordered or extended file
cannot silently feed the wrong feature to the model.
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

from sigmoidf1.data.base import MultilabelDataModule, TensorInputs, columns_preview, split_indices
from sigmoidf1.data.records import read_records
from sigmoidf1.utils.errors import DataError

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
    Raises ``FileNotFoundError`` naming a missing file and ``DataError`` naming the file and the
    problem (missing columns, with the columns present; non-numeric or non-finite values).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Yeast data file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise DataError(f"{path}: the file is empty")
    header, body = rows[0], rows[1:]
    label_cols = [i for i, name in enumerate(header) if name.startswith("Class")]
    feature_cols = [i for i, name in enumerate(header) if name.startswith("Att")]
    if not label_cols:
        raise DataError(
            f"{path}: no label column (Yeast's are Class1..Class14: names starting with 'Class'); "
            f"columns present: {columns_preview(header)}"
        )
    if not feature_cols:
        raise DataError(
            f"{path}: no feature column (Yeast's are Att1..Att103: names starting with 'Att'); "
            f"columns present: {columns_preview(header)}"
        )
    if not body:
        raise DataError(f"{path}: the file has a header but no data rows")
    try:
        table = np.asarray(body, dtype=np.float64)
    except ValueError as error:
        raise DataError(
            f"{path}: every value must be a number and every row must have "
            f"{len(header)} columns ({error})"
        ) from None
    features = table[:, feature_cols].astype(np.float32)
    targets = table[:, label_cols].astype(np.float32)
    if not np.isfinite(features).all():
        bad = int(np.argwhere(~np.isfinite(features))[0, 0])
        raise DataError(f"{path}: non-finite feature value in data row {bad + 1}")
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
        self.feature_names: list[str] = list(FEATURE_NAMES)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self._frozen = False  # True when the statistics come from a checkpoint (load_state_dict)

    def prepare_data(self) -> None:
        path = Path(self.path) if self.path else river_yeast_path()
        if not path.is_file():
            raise FileNotFoundError(f"Yeast data file not found: {path}")

    def _load(self) -> None:
        path = self.path or river_yeast_path()
        features, targets, self.label_names = read_yeast(path)
        self.check_targets(targets, str(path))
        train, val, test = split_indices(
            len(features), self.val_fraction, self.test_fraction, self.seed
        )
        if self.standardize:
            if not self._frozen:
                self.mean = features[train].mean(axis=0)
                self.std = features[train].std(axis=0) + 1e-6
            features = (features - self.mean) / self.std
        self.backbone_inputs = {"in_features": features.shape[1]}

        def subset(idx: np.ndarray) -> TensorDataset:
            return TensorDataset(torch.from_numpy(features[idx]), torch.from_numpy(targets[idx]))

        self.train_set, self.val_set, self.test_set = subset(train), subset(val), subset(test)

    def state_dict(self) -> dict[str, Any]:
        """Preprocessing needed to apply a trained model to new rows (saved in checkpoints)."""
        state = super().state_dict() | {"feature_names": list(self.feature_names)}
        if self.mean is not None:
            state |= {"mean": self.mean.tolist(), "std": self.std.tolist()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Adopt a checkpoint's statistics; data already loaded is standardised again with them."""
        super().load_state_dict(state)
        self.feature_names = list(state.get("feature_names") or self.feature_names)
        self.backbone_inputs = {"in_features": len(self.feature_names)}
        if state.get("mean") is None:
            return
        mean = np.asarray(state["mean"], dtype=np.float32)
        std = np.asarray(state["std"], dtype=np.float32)
        changed = self.mean is None or not (
            np.array_equal(mean, self.mean) and np.array_equal(std, self.std)
        )
        self.mean, self.std, self._frozen = mean, std, True
        if changed and self.train_set is not None:
            self.train_set = None
            self.setup()

    def predict_dataset(self, path: str) -> Dataset:
        """Rows of ``path`` (CSV/TSV/JSONL, gzip allowed) with columns ``Att1..Att103`` by name,
        standardised with the training statistics: items are ``x [103] float32``."""
        rows, lines, header = read_records(path)
        missing = [name for name in self.feature_names if name not in header]
        if missing:
            raise DataError(
                f"{path}: missing feature column(s) {columns_preview(missing, 5)}; the model needs "
                f"{self.feature_names[0]}..{self.feature_names[-1]} by name; columns present: "
                f"{columns_preview(header)}"
            )
        features = np.empty((len(rows), len(self.feature_names)), dtype=np.float32)
        for i, (row, line) in enumerate(zip(rows, lines, strict=True)):
            try:
                features[i] = [float(row[name]) for name in self.feature_names]
            except (KeyError, TypeError, ValueError) as error:
                raise DataError(
                    f"{path} line {line}: every feature must be a number ({error})"
                ) from None
            if not np.isfinite(features[i]).all():
                column = self.feature_names[int(np.argmin(np.isfinite(features[i])))]
                raise DataError(f"{path} line {line}: non-finite value in column {column}")
        if self.standardize:
            if self.mean is None:
                raise RuntimeError(
                    "predict_dataset needs the training statistics: load_state_dict first"
                )
            features = (features - self.mean) / self.std
        return TensorInputs(torch.from_numpy(features))
