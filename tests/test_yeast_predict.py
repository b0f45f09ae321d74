"""Yeast prediction inputs: feature rows from a user file, standardised with stored statistics."""

from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sigmoidf1.data import YeastDataModule
from sigmoidf1.data.yeast import FEATURE_NAMES


@pytest.fixture(scope="module")
def trained() -> YeastDataModule:
    dm = YeastDataModule(seed=0)
    dm.setup("fit")
    return dm


def restored_from(dm: YeastDataModule, tmp_path) -> YeastDataModule:
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    fresh = YeastDataModule()
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    return fresh


def raw_test_rows(dm: YeastDataModule) -> np.ndarray:
    """The test split's features before standardisation."""
    return dm.test_set.tensors[0].numpy() * np.asarray(dm.std) + np.asarray(dm.mean)


def test_named_columns_in_any_order_reproduce_the_training_inputs(trained, tmp_path):
    rows = raw_test_rows(trained)[:5]
    order = list(reversed(FEATURE_NAMES))
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["gene", *order])
        for i, row in enumerate(rows):
            values = dict(zip(FEATURE_NAMES, row, strict=True))
            writer.writerow([f"g{i}", *(repr(float(values[name])) for name in order)])
    dataset = restored_from(trained, tmp_path).predict_dataset(str(path))
    batch = next(iter(DataLoader(dataset, batch_size=5)))
    assert batch.shape == (5, 103) and batch.dtype == torch.float32
    assert torch.allclose(batch, trained.test_set.tensors[0][:5], atol=1e-4)


def test_jsonl_gz_by_name_with_extra_fields(trained, tmp_path):
    rows = raw_test_rows(trained)[:3]
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for i, row in enumerate(rows):
            record = {"id": f"gene-{i}"} | {
                name: float(v) for name, v in zip(FEATURE_NAMES, row, strict=True)
            }
            handle.write(json.dumps(record | {"note": "x"}) + "\n")
    items = list(restored_from(trained, tmp_path).predict_dataset(str(path)))
    assert len(items) == 3 and torch.allclose(
        torch.stack(items), trained.test_set.tensors[0][:3], atol=1e-4
    )


def test_bad_feature_files_are_reported(trained, tmp_path):
    header = ",".join(FEATURE_NAMES)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        header + "\n" + ",".join(["0.1"] * 103) + "\n" + ",".join(["0.1"] * 102 + ["inf"]) + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.csv line 3: non-finite value in column Att103"):
        trained.predict_dataset(str(bad))
    unnamed = tmp_path / "unnamed.csv"  # columns are matched by name, never by position
    unnamed.write_text(
        ",".join(f"f{i}" for i in range(103)) + "\n" + ",".join(["0.1"] * 103) + "\n"
    )
    with pytest.raises(ValueError, match=r"unnamed.csv: missing feature column"):
        trained.predict_dataset(str(unnamed))
