"""Yeast (MULAN): 2,417 genes x 103 float features, 14 functional classes (multilabel).

The file ships inside the ``river`` wheel (``river.datasets.Yeast().path``), so no network is used.
Splits are random from ``seed``; features are standardised with the mean and standard deviation of
the training split only, and those statistics travel in the checkpoint (``state_dict``).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from sigmoidf1.data.base import MultilabelDataModule, split_indices

NUM_FEATURES = 103
NUM_LABELS = 14


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

    def state_dict(self) -> dict:
        """Preprocessing needed to apply a trained model to new rows (saved in checkpoints)."""
        state = {"label_names": list(self.label_names)}
        if self.mean is not None:
            state |= {"mean": self.mean.tolist(), "std": self.std.tolist()}
        return state
