"""The frequent-labels baseline (``sigmoidf1.baseline``): the best constant label set of the
training split, scored by the model's own micro-F1 metric."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import TensorDataset

from sigmoidf1.baseline import (
    constant_prediction_f1,
    frequent_label_set,
    frequent_labels_baseline,
    target_chunks,
)
from sigmoidf1.data.wordnet import SparseTargets
from sigmoidf1.metrics import build_metrics
from sigmoidf1.module import MultilabelClassifier

MLP_CONFIG = {"_target_": "sigmoidf1.backbones.MLP", "_partial_": True, "hidden_sizes": [4]}


def micro_f1(label_set: list[int], targets: torch.Tensor) -> float:
    """Plain micro-F1 of predicting ``label_set`` for every row of ``targets``."""
    predicted = torch.zeros_like(targets, dtype=torch.bool)
    predicted[:, label_set] = True
    truth = targets.bool()
    tp = (predicted & truth).sum().item()
    fp = (predicted & ~truth).sum().item()
    fn = (~predicted & truth).sum().item()
    return 2 * tp / (2 * tp + fp + fn)


def random_targets(rows: int, labels: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frequencies = torch.rand(labels, generator=generator)
    return (torch.rand(rows, labels, generator=generator) < frequencies).float()


@pytest.mark.parametrize("seed", range(5))
def test_the_set_is_the_best_constant_prediction_of_the_training_split(seed):
    targets = random_targets(40, 7, seed)
    chosen = frequent_label_set(targets.sum(0), len(targets)).tolist()
    best = max(
        micro_f1(list(subset), targets)
        for size in range(1, 8)
        for subset in itertools.combinations(range(7), size)
    )
    assert micro_f1(chosen, targets) == pytest.approx(best)
    # at least as strong as the two usual definitions
    counts = targets.sum(0)
    order = torch.argsort(counts, descending=True).tolist()
    majority = [label for label in order if counts[label] >= len(targets) / 2] or order[:1]
    cardinality = order[: max(1, round(float(targets.sum(1).mean())))]
    assert micro_f1(chosen, targets) >= micro_f1(majority, targets) - 1e-12
    assert micro_f1(chosen, targets) >= micro_f1(cardinality, targets) - 1e-12
    assert chosen == order[: len(chosen)]  # the most frequent labels, most frequent first


def test_the_set_refuses_an_unlabelled_split():
    with pytest.raises(ValueError, match="non-empty labelled split"):
        frequent_label_set([0, 0, 0], 10)


@pytest.mark.parametrize("large_labels", [1000, 2])  # torchmetrics' F1, and the count-based one
def test_the_score_is_the_metric_of_test_f1_micro(large_labels):
    targets = random_targets(50, 6, seed=3)
    metric = build_metrics(6, "test/", large_labels=large_labels)["f1_micro"]
    label_set = torch.tensor([4, 1])
    chunks = target_chunks(TensorDataset(torch.zeros(50, 2), targets), rows=16)
    score = constant_prediction_f1(label_set, chunks, metric)
    assert score == pytest.approx(micro_f1([4, 1], targets), abs=1e-6)
    assert metric.update_count == 0  # the caller's metric is left as it was


def test_targets_are_read_without_the_inputs():
    dense = random_targets(11, 5, seed=0)
    rows = [torch.nonzero(row).flatten().tolist() for row in dense]
    for dataset in (
        TensorDataset(torch.zeros(11, 3), dense),
        SimpleTargets(dense),
        SimpleTargets(SparseTargets.from_rows(rows, 5)),
    ):
        chunks = list(target_chunks(dataset, rows=4))
        assert [len(chunk) for chunk in chunks] == [4, 4, 3]
        assert torch.equal(torch.cat(chunks), dense)


class SimpleTargets(torch.utils.data.Dataset):
    """A split whose inputs must not be read (``__getitem__`` raises), with ``targets``."""

    def __init__(self, targets) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        raise AssertionError("the baseline read an input")


def test_baseline_of_a_model_uses_its_stored_training_counts():
    train = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1]]).float()
    test = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]]).float()
    model = MultilabelClassifier(
        backbone=MLP_CONFIG,
        label_names=["a", "b", "c"],
        backbone_inputs={"in_features": 2},
        train_label_counts=train.sum(0).long().tolist(),
        train_size=len(train),
    )
    baseline = frequent_labels_baseline(model, SimpleTargets(test))
    # training split: {a} gives 2*4/(4+7) = 0.727, {a, b} 2*6/(8+7) = 0.8, {a, b, c} 0.737
    assert baseline.indices == [0, 1] and baseline.names == ["a", "b"]
    assert baseline.f1_micro == pytest.approx(micro_f1([0, 1], test))
    unknown = MultilabelClassifier(
        backbone=MLP_CONFIG, label_names=["a", "b"], backbone_inputs={"in_features": 2}
    )
    assert frequent_labels_baseline(unknown, SimpleTargets(test[:, :2])) is None
