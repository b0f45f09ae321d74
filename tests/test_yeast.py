"""The Yeast DataModule on river's real file: shapes, splits, determinism, train-only scaling."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from sigmoidf1.data import YeastDataModule
from sigmoidf1.data.base import split_indices
from sigmoidf1.data.yeast import NUM_FEATURES, NUM_LABELS, read_yeast, river_yeast_path


def make(seed: int = 0, **kwargs) -> YeastDataModule:
    dm = YeastDataModule(seed=seed, batch_size=32, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_real_file_has_the_documented_size():
    features, targets, names = read_yeast(river_yeast_path())
    assert features.shape == (2417, NUM_FEATURES)
    assert targets.shape == (2417, NUM_LABELS)
    assert names == [f"Class{i}" for i in range(1, 15)]
    assert set(np.unique(targets)) == {0.0, 1.0}
    assert targets.sum(1).mean() == pytest.approx(4.24, abs=0.01)


def test_shapes_dtypes_and_split_sizes():
    dm = make()
    assert dm.num_labels == NUM_LABELS and dm.backbone_inputs == {"in_features": NUM_FEATURES}
    sizes = [len(dm.train_set), len(dm.val_set), len(dm.test_set)]
    assert sum(sizes) == 2417
    assert sizes[2] == round(2417 * 0.2) and sizes[1] == round(2417 * 0.15)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, NUM_FEATURES) and y.shape == (32, NUM_LABELS)
    assert x.dtype == torch.float32 and y.dtype == torch.float32


def test_splits_are_disjoint_and_deterministic():
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    assert torch.equal(a.test_set.tensors[0], b.test_set.tensors[0])
    assert not torch.equal(a.test_set.tensors[0], c.test_set.tensors[0])
    train, val, test = split_indices(2417, 0.15, 0.2, seed=1)
    assert len(set(train) | set(val) | set(test)) == 2417
    assert not (set(train) & set(test)) and not (set(val) & set(test))


def test_standardisation_uses_the_training_split_only():
    dm = make()
    train_x = dm.train_set.tensors[0].numpy()
    np.testing.assert_allclose(train_x.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train_x.std(0), 1.0, atol=1e-3)
    assert abs(dm.test_set.tensors[0].numpy().mean(0)).max() > 1e-3  # not re-fitted on test
    state = dm.state_dict()
    assert len(state["mean"]) == NUM_FEATURES and state["label_names"][0] == "Class1"


def test_missing_file_is_named(tmp_path):
    dm = YeastDataModule(path=str(tmp_path / "nope.csv"))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        dm.prepare_data()


def test_non_finite_feature_is_reported(tmp_path):
    header = ",".join([f"Att{i}" for i in range(1, 4)] + ["Class1", "Class2"])
    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(header + "\n0.1,0.2,0.3,1,0\n0.1,nan,0.3,0,1\n")
    with pytest.raises(ValueError, match="non-finite feature value in data row 2"):
        read_yeast(path)


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 1.5, 0.1, 0)
    with pytest.raises(ValueError, match="< 1"):
        split_indices(10, 0.6, 0.5, 0)
