"""The metric collection: names of the design, values against plain reference formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sigmoidf1.metrics import (
    METRIC_NAMES,
    build_metrics,
    deterministic_algorithms,
    shift_to_threshold,
)
from tests.conftest import DESIGN_NAMES


def reference(probs: np.ndarray, target: np.ndarray) -> dict[str, float]:
    pred = probs >= 0.5
    tp = (pred & target).sum(0)
    fp = (pred & ~target).sum(0)
    fn = (~pred & target).sum(0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0)
    support = target.sum(0)
    inter = (pred & target).sum(1)
    size = pred.sum(1) + target.sum(1)
    return {
        "f1_micro": 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()),
        "f1_macro": f1.mean(),
        "f1_weighted": (f1 * support).sum() / support.sum(),
        "f1_samples": np.where(size > 0, 2 * inter / np.maximum(size, 1), 0).mean(),
        "precision_macro": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0).mean(),
        "recall_macro": np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0).mean(),
        "hamming": (pred != target).mean(),
        "exact_match": (pred == target).all(1).mean(),
        "card_mae": np.abs(pred.sum(1) - target.sum(1)).mean(),
    }


def test_names_match_the_design():
    assert set(METRIC_NAMES) == DESIGN_NAMES
    collection = build_metrics(5, "val/")
    assert set(collection.keys()) == {f"val/{n}" for n in DESIGN_NAMES}


@pytest.mark.parametrize("seed", [0, 1])
def test_values_match_reference_over_several_updates(seed: int):
    rng = np.random.default_rng(seed)
    probs = rng.random((300, 7)).astype(np.float32)
    target = rng.random((300, 7)) < 0.3
    target[:, 6] = False  # a label without support
    collection = build_metrics(7, "test/")
    for chunk in np.array_split(np.arange(300), 4):
        collection.update(torch.from_numpy(probs[chunk]), torch.from_numpy(target[chunk]).int())
    values = {k.removeprefix("test/"): float(v) for k, v in collection.compute().items()}
    for name, expected in reference(probs, target).items():
        assert values[name] == pytest.approx(expected, abs=1e-5), name
    assert 0.0 <= values["map_macro"] <= 1.0


def test_threshold_shift_moves_the_decision_and_keeps_rankings():
    logits = torch.linspace(-3, 3, 13).repeat(2, 1).T  # [13, 2]
    thresholds = torch.tensor([0.5, 0.8])
    shifted = shift_to_threshold(logits, thresholds)
    plain = torch.sigmoid(logits)
    assert torch.equal(shifted >= 0.5, plain >= thresholds)
    assert torch.allclose(shifted[:, 0], plain[:, 0])
    assert torch.equal(shifted[:, 1].argsort(), plain[:, 1].argsort())


def test_binned_average_precision_in_deterministic_mode_counts_like_bincount():
    # torchmetrics would compare every score with every bin here: [4000 * 500, 4 * 500 * 20]
    # int64, 640 GB; our update counts with bincount and gives the same value as without
    # deterministic mode, and leaves the mode as it found it
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(4000, 500, generator=generator) < 0.05).int()
    preds = (torch.rand(4000, 500, generator=generator) + 0.3 * target).clamp(max=1.0)
    reference = build_metrics(500, "val/", ap_thresholds=20)["val/map_macro"]
    reference.update(preds, target)
    binned = build_metrics(500, "val/", ap_thresholds=20)["val/map_macro"]

    def mode():
        return (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )

    before = mode()
    with deterministic_algorithms(True, warn_only=True):
        binned.update(preds, target)
        assert mode() == (True, True)
    assert mode() == before
    assert binned.compute() == reference.compute()
    exact = build_metrics(500, "val/")["val/map_macro"]
    exact.update(preds, target)
    assert binned.compute() == pytest.approx(exact.compute().item(), abs=0.02)
