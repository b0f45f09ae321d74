"""Multilabel metrics as plain tensor functions (torch only): counts, ratios, per-label scores.

Every other place that needs precision, recall or F1 from counts (the metric classes, the
threshold search, the per-label test report) calls these, so the zero-division rule lives here
once: **a ratio whose denominator is 0 is 0** (torchmetrics' and scikit-learn's default
``zero_division=0``). In particular a label with no positive and no predicted example has F1 0.

Shapes: decisions, scores and targets are ``[N, L]`` (examples x labels); per-label results ``[L]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

# The names of the thresholded and ranking metrics every stage logs (DESIGN.md).
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
# every name but average precision, which needs every score of the epoch (large label spaces)
COUNT_OUTPUTS = tuple(name for name in METRIC_NAMES if name != "map_macro")
TOP_K = (1, 3, 5)
# Jain et al. 2016's propensity model p_l = 1 / (1 + C (N_l + B)^-A), C = (ln N - 1) (B + 1)^A,
# with the A and B they fitted on Wikipedia-LSHTC (Amazon: 0.6, 2.6)
PROPENSITY_A, PROPENSITY_B = 0.55, 1.5


def safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` elementwise, 0 where the denominator is 0 (zero division)."""
    return torch.where(
        denominator != 0, numerator / torch.where(denominator != 0, denominator, 1), 0
    )


class Counts(NamedTuple):
    """Per-label confusion counts ``[L]`` (float64) of thresholded predictions, and the scores
    built from them, each 0 where its denominator is 0."""

    tp: Tensor
    fp: Tensor
    fn: Tensor

    @property
    def support(self) -> Tensor:
        """True examples of each label, ``tp + fn``."""
        return self.tp + self.fn

    @property
    def predicted(self) -> Tensor:
        """Predicted examples of each label, ``tp + fp``."""
        return self.tp + self.fp

    @property
    def precision(self) -> Tensor:
        """``tp / (tp + fp)``."""
        return safe_ratio(self.tp, self.predicted)

    @property
    def recall(self) -> Tensor:
        """``tp / (tp + fn)``."""
        return safe_ratio(self.tp, self.support)

    @property
    def f1(self) -> Tensor:
        """``2 tp / (2 tp + fp + fn)``."""
        return safe_ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def pooled(self) -> Counts:
        """The counts summed over labels (micro averaging): 0-d tensors."""
        return Counts(self.tp.sum(), self.fp.sum(), self.fn.sum())


def confusion_counts(decisions: Tensor, targets: Tensor) -> Counts:
    """``Counts`` of boolean (or 0/1) ``decisions`` against binary ``targets``, both ``[N, L]``."""
    predicted = decisions.to(torch.float64)
    truth = targets.to(torch.float64)
    tp = (predicted * truth).sum(0)
    return Counts(tp, predicted.sum(0) - tp, truth.sum(0) - tp)


def f1_scores(decisions: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(micro F1, macro F1)`` of boolean decisions ``[N, L]`` (0-d float64 tensors)."""
    counts = confusion_counts(decisions, targets)
    return counts.pooled().f1, counts.f1.mean()


def average_precision_per_label(scores: Tensor, targets: Tensor, chunk_labels: int = 256) -> Tensor:
    """Exact average precision of every column, float64 ``[L]``; 0 for a column without positives.

    ``AP = sum_n (R_n - R_(n-1)) P_n`` over the distinct scores ``n`` taken as thresholds, from
    the highest (scikit-learn's ``average_precision_score``). Sorting a column once gives it: a
    positive adds ``1 / positives`` of recall at the precision of the last example tied with its
    score. Vectorised over ``chunk_labels`` columns at a time (extra memory about
    ``40 * N * chunk_labels`` bytes), instead of one curve per label.
    """
    parts = []
    for start in range(0, scores.shape[1], chunk_labels):
        block = scores[:, start : start + chunk_labels]
        sorted_scores, order = torch.sort(block, dim=0, descending=True)
        hits = targets[:, start : start + chunk_labels].gather(0, order).double()
        del order
        rows = torch.arange(1, block.shape[0] + 1, dtype=torch.float64).unsqueeze(1)
        precision = hits.cumsum(0) / rows
        # the last row of each run of equal scores, for every row (a reversed running minimum)
        last_of_tie = torch.full(block.shape, block.shape[0] - 1, dtype=torch.long)
        ends = torch.ones(block.shape, dtype=torch.bool)
        ends[:-1] = sorted_scores[:-1] != sorted_scores[1:]
        last_of_tie = torch.where(ends, rows.long() - 1, last_of_tie)
        last_of_tie = last_of_tie.flip(0).cummin(0).values.flip(0)
        positives = hits.sum(0)
        parts.append(safe_ratio((hits * precision.gather(0, last_of_tie)).sum(0), positives))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def shift_to_threshold(logits: Tensor, thresholds: Tensor) -> Tensor:
    """Probabilities whose 0.5 crossing sits at each label's threshold.

    ``sigmoid(logits - logit(thresholds))``: thresholding the result at 0.5 equals thresholding
    ``sigmoid(logits)`` at ``thresholds`` (shape ``[num_labels]``), and the map is monotone per
    label. With all thresholds at 0.5 it is plain ``sigmoid(logits)``.
    """
    return torch.sigmoid(logits.float() - torch.logit(thresholds.float()))


def label_propensities(
    label_counts: Tensor | Sequence[int],
    num_examples: int,
    a: float = PROPENSITY_A,
    b: float = PROPENSITY_B,
) -> Tensor:
    """Jain et al. (2016)'s propensity of each label from its training frequency, float64 ``[L]``.

    ``p_l = 1 / (1 + C (N_l + B)^(-A))`` with ``C = (ln N - 1) (B + 1)^A``, ``N_l`` the training
    examples carrying label ``l`` and ``N`` all training examples: the chance that a relevant label
    is observed; rare labels get small propensities, hence large weights ``1 / p_l`` in ``psp@k``.
    """
    counts = torch.as_tensor(label_counts, dtype=torch.float64)
    if num_examples < 1 or bool((counts < 0).any()):
        raise ValueError("label counts must be >= 0 and num_examples >= 1")
    c = (math.log(num_examples) - 1.0) * (b + 1.0) ** a
    return 1.0 / (1.0 + c * (counts + b) ** (-a))


def label_counts(dataset: Any) -> tuple[Tensor, int]:
    """``(examples carrying each label [L] int64, number of examples)`` of a labelled dataset.

    Reads the targets without densifying them where the dataset exposes them (``targets`` with a
    ``label_counts()`` method, a ``targets`` tensor, a ``TensorDataset``'s last tensor); otherwise
    sums the items' target rows.
    """
    targets = getattr(dataset, "targets", None)
    if targets is None and hasattr(dataset, "tensors"):
        targets = dataset.tensors[-1]
    if hasattr(targets, "label_counts"):
        return targets.label_counts().long(), len(dataset)
    if isinstance(targets, Tensor):
        return (targets > 0).sum(0).long(), len(dataset)
    total = None
    for index in range(len(dataset)):
        row = torch.as_tensor(dataset[index][1]) > 0
        total = row.long() if total is None else total + row
    if total is None:
        raise ValueError("cannot count the labels of an empty dataset")
    return total, len(dataset)
