"""Multilabel metrics: one ``MetricCollection`` per stage, plus the two metrics torchmetrics lacks.

All metrics take **probabilities** ``[batch, num_labels]`` in [0, 1] and binary targets of the same
shape. Passing probabilities matters: torchmetrics applies a sigmoid only when some value falls
outside [0, 1], so a batch of logits that happens to lie in [0, 1] would be taken as probabilities.

Per-label thresholds are handled by the caller (``MultilabelClassifier``) by shifting each label's
logit so that its threshold maps to 0.5 (see ``shift_to_threshold``); the metrics then threshold at
0.5. The shift is monotone per label, so per-label rankings (and hence ``map_macro``) are unchanged.

Logged names are ``{stage}/{name}`` with name in ``METRIC_NAMES``. For ``macro`` averages, labels
with no positive and no predicted example count as ``zero_division`` (0), as in torchmetrics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelPrecision,
    MultilabelRecall,
)

METRIC_NAMES = (
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "f1_samples",
    "precision_macro",
    "recall_macro",
    "map_macro",
    "hamming",
    "exact_match",
    "card_mae",
)

# Metrics that are functions of the same per-label confusion counts share one state (one update per
# step). Groups are explicit because automatic grouping has mis-grouped metrics that differ only in
# an argument (torchmetrics #746, #1890).
_STAT_SCORE_GROUP = [
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "hamming",
]


class SampleF1(Metric):
    """Example-based F1 ("samples" average): mean over examples of ``2|P∩Y| / (|P| + |Y|)``.

    ``P`` is the set of predicted labels (probability >= ``threshold``) and ``Y`` the true set of an
    example. An example with ``|P| + |Y| = 0`` scores ``zero_division`` (0, as scikit-learn's
    default).
    States are two sums, so memory is constant and DDP reduction is a sum.

    Shapes: ``preds`` and ``target`` are ``[batch, num_labels]``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, threshold: float = 0.5, zero_division: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.zero_division = zero_division
        self.add_state(
            "f1_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        predicted = (preds >= self.threshold).to(torch.float64)
        target = target.to(torch.float64)
        overlap = (predicted * target).sum(dim=1)
        size = predicted.sum(dim=1) + target.sum(dim=1)
        f1 = torch.where(size > 0, 2 * overlap / size.clamp_min(1), self.zero_division)
        self.f1_sum += f1.sum()
        self.count += f1.numel()

    def compute(self) -> Tensor:
        return (self.f1_sum / self.count.clamp_min(1)).float()


class CardinalityMAE(Metric):
    """Mean absolute error between the predicted and the true number of labels per example.

    ``card_mae = mean_i | #{l : p_il >= threshold} - #{l : y_il = 1} |``. The sigmoidF1 paper argues
    that its loss estimates label counts well; this measures it. Shapes: ``[batch, num_labels]``.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state(
            "error_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        predicted_count = (preds >= self.threshold).sum(dim=1)
        true_count = target.sum(dim=1).round().long()
        self.error_sum += (predicted_count - true_count).abs().sum().to(torch.float64)
        self.count += predicted_count.numel()

    def compute(self) -> Tensor:
        return (self.error_sum / self.count.clamp_min(1)).float()


def build_metrics(
    num_labels: int, prefix: str, ap_thresholds: int | None = None
) -> MetricCollection:
    """Build the collection of ``METRIC_NAMES`` for one stage, with keys ``{prefix}{name}``.

    Args:
        num_labels: number of labels L; every metric expects ``[batch, L]`` inputs.
        prefix: e.g. ``"val/"``.
        ap_thresholds: ``None`` computes average precision exactly (keeps every prediction of the
            epoch in memory); an integer bins scores into that many thresholds (constant memory).
    """
    kw = {"num_labels": num_labels, "threshold": 0.5}
    metrics = {
        "f1_micro": MultilabelF1Score(average="micro", **kw),
        "f1_macro": MultilabelF1Score(average="macro", **kw),
        "f1_weighted": MultilabelF1Score(average="weighted", **kw),
        "f1_samples": SampleF1(threshold=0.5),
        "precision_macro": MultilabelPrecision(average="macro", **kw),
        "recall_macro": MultilabelRecall(average="macro", **kw),
        "map_macro": MultilabelAveragePrecision(
            num_labels=num_labels, average="macro", thresholds=ap_thresholds
        ),
        "hamming": MultilabelHammingDistance(average="micro", **kw),
        "exact_match": MultilabelExactMatch(**kw),
        "card_mae": CardinalityMAE(threshold=0.5),
    }
    assert tuple(metrics) == METRIC_NAMES
    return MetricCollection(metrics, prefix=prefix, compute_groups=[_STAT_SCORE_GROUP])


class ChunkedUpdates:
    """Update a metric collection once per chunk of batches instead of once per batch.

    ``add(preds, target)`` keeps the batch; when the kept batches hold ``max_elements`` values (or
    on
    ``flush()``) the collection is updated once with their concatenation. Every metric built by
    ``build_metrics`` accumulates sums over examples (exact average precision: a concatenation), so
    the result equals per-batch updates, while the Python overhead of an update (tens of
    microseconds per metric on CPU: more than a small model's training step) is paid per chunk.
    Memory: at most ``max_elements`` values of each of ``preds`` and ``target`` (4 MB each by
    default).
    Call ``flush()`` before ``compute()``; ``clear()`` drops what is kept.
    """

    def __init__(self, metrics: MetricCollection, max_elements: int = 2**20) -> None:
        if max_elements < 1:
            raise ValueError(f"max_elements must be >= 1, got {max_elements}")
        self.metrics = metrics
        self.max_elements = max_elements
        self._preds: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._elements = 0

    def add(self, preds: Tensor, target: Tensor) -> None:
        self._preds.append(preds)
        self._targets.append(target)
        self._elements += preds.numel()
        if self._elements >= self.max_elements:
            self.flush()

    def flush(self) -> None:
        if self._preds:
            self.metrics.update(torch.cat(self._preds), torch.cat(self._targets))
            self.clear()

    def clear(self) -> None:
        self._preds, self._targets, self._elements = [], [], 0


def shift_to_threshold(logits: Tensor, thresholds: Tensor) -> Tensor:
    """Probabilities whose 0.5 crossing sits at each label's threshold.

    ``sigmoid(logits - logit(thresholds))``: thresholding the result at 0.5 equals thresholding
    ``sigmoid(logits)`` at ``thresholds`` (shape ``[num_labels]``), and the map is monotone per
    label. With all thresholds at 0.5 it is plain ``sigmoid(logits)``.
    """
    return torch.sigmoid(logits.float() - torch.logit(thresholds.float()))
