"""Multilabel metrics: one ``MetricCollection`` per stage, plus the two metrics torchmetrics lacks.

All metrics take **probabilities** ``[batch, num_labels]`` in [0, 1] and binary targets of the same
shape. Passing probabilities matters: torchmetrics applies a sigmoid only when some value falls
outside [0, 1], so a batch of logits that happens to lie in [0, 1] would be taken as probabilities.

Per-label thresholds are handled by the caller (``MultilabelClassifier``) by shifting each label's
logit so that its threshold maps to 0.5 (see ``shift_to_threshold``); the metrics then threshold at
0.5. The shift is monotone per label, so per-label rankings (and hence ``map_macro``) are unchanged.

Logged names are ``{stage}/{name}`` with name in ``METRIC_NAMES``. For ``macro`` averages, labels
with no positive and no predicted example count as ``zero_division`` (0), as in torchmetrics.

**Large label spaces** (more than ``large_labels`` labels, 1,000 by default; ``build_metrics``):
no metric keeps a state that grows with the number of examples, and one update of a
``[batch, labels]`` chunk costs a few passes over it. The collection is then

- ``map_macro`` dropped: exact average precision keeps every score of the epoch (``[N, L]``) and
  binned AP materialises ``[rows, L, thresholds]`` per chunk (about 1 s per 2^20 scores at 17k
  labels on a CPU). Per-label average precision stays in the test report (``per_label.csv``),
  computed once on the gathered test scores;
- the other nine ``METRIC_NAMES`` from one shared state (``MultilabelCounts``: per-label
  ``tp``, ``fp``, ``fn`` ``[L]`` and per-example sums; torchmetrics' multilabel stat scores take
  0.25-0.4 s per 256 x 17k batch on a CPU, these about 0.05 s), with the same values;
- the ranking metrics of extreme classification (``TopKRanking``), for ``k`` in ``top_k``
  (1, 3, 5): ``precision_at_k``, ``ndcg_at_k`` and, given the training label counts,
  ``psp_at_k`` (propensity-scored precision, Jain et al. 2016).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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

from sigmoidf1.metrics.functional import (
    COUNT_OUTPUTS,
    METRIC_NAMES,
    PROPENSITY_A,
    PROPENSITY_B,
    TOP_K,
    label_propensities,
)
from sigmoidf1.metrics.large import build_large_label_metrics, count_metrics

LARGE_LABELS = 1000  # above this many labels, build_metrics builds the large-label collection

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


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, warn_only: bool = False) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled, warn_only=warn_only)`` inside the block;
    the mode and its ``warn_only`` flag as they were after."""
    saved = torch.are_deterministic_algorithms_enabled()
    saved_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved, warn_only=saved_warn_only)


class MacroAveragePrecision(MultilabelAveragePrecision):
    """torchmetrics' multilabel average precision (macro), exact or binned (``thresholds``).

    Binned, torchmetrics counts ``[N, L]`` scores into ``4 * L * T`` bins with ``torch.bincount``,
    except when deterministic algorithms are on (``trainer.deterministic=true``, the default):
    then it compares every score with every bin, an ``[N * L, 4 * L * T]`` tensor, 4.5 TB for
    8,219 x 962 validation scores and 10 thresholds. An unweighted ``bincount`` adds integers, so
    its result does not depend on the order of the additions (PyTorch flags ``bincount`` as
    nondeterministic only with weights on CUDA): the update runs it with deterministic mode off
    (exact AP only stores the scores then, and counts nothing).
    """

    def update(self, preds: Tensor, target: Tensor) -> None:
        with deterministic_algorithms(False):
            super().update(preds, target)


def build_metrics(
    num_labels: int,
    prefix: str,
    ap_thresholds: int | None = None,
    large_labels: int | None = LARGE_LABELS,
    top_k: Sequence[int] = TOP_K,
    train_label_counts: Tensor | Sequence[int] | None = None,
    train_size: int | None = None,
    propensity_a: float = PROPENSITY_A,
    propensity_b: float = PROPENSITY_B,
) -> MetricCollection:
    """Build the collection of ``METRIC_NAMES`` for one stage, with keys ``{prefix}{name}``.

    Args:
        num_labels: number of labels L; every metric expects ``[batch, L]`` inputs.
        prefix: e.g. ``"val/"``.
        ap_thresholds: ``None`` computes average precision exactly (keeps every prediction of the
            epoch in memory); an integer bins scores into that many thresholds (constant memory).
        large_labels: above this many labels, the large-label collection (module docstring:
            ``map_macro`` dropped, ranking metrics added, states independent of the number of
            examples); ``None`` never switches.
        top_k: the ``k`` of the ranking metrics (large-label collection only).
        train_label_counts, train_size: training examples per label ``[L]`` and in all, for the
            propensities of ``psp_at_k`` (``label_propensities`` with ``propensity_a``,
            ``propensity_b``); without them the collection has no ``psp_at_k``.
    """
    if large_labels is not None and num_labels > large_labels:
        propensities = None
        if train_label_counts is not None and train_size:
            propensities = label_propensities(
                train_label_counts, train_size, propensity_a, propensity_b
            )
        return build_large_label_metrics(num_labels, prefix, top_k, propensities)
    kw = {"num_labels": num_labels, "threshold": 0.5}
    metrics = {
        "f1_micro": MultilabelF1Score(average="micro", **kw),
        "f1_macro": MultilabelF1Score(average="macro", **kw),
        "f1_weighted": MultilabelF1Score(average="weighted", **kw),
        "f1_samples": SampleF1(threshold=0.5),
        "precision_macro": MultilabelPrecision(average="macro", **kw),
        "recall_macro": MultilabelRecall(average="macro", **kw),
        "map_macro": MacroAveragePrecision(
            num_labels=num_labels, average="macro", thresholds=ap_thresholds
        ),
        "hamming": MultilabelHammingDistance(average="micro", **kw),
        "exact_match": MultilabelExactMatch(**kw),
        "card_mae": CardinalityMAE(threshold=0.5),
    }
    assert tuple(metrics) == METRIC_NAMES
    return MetricCollection(metrics, prefix=prefix, compute_groups=[_STAT_SCORE_GROUP])


def build_train_metrics(num_labels: int, prefix: str = "train/") -> MetricCollection:
    """The training collection: ``COUNT_OUTPUTS`` (every name of ``METRIC_NAMES`` but
    ``map_macro``) from one shared ``MultilabelCounts`` state, at any number of labels.

    No average precision on the training batches: exact AP keeps every training score of the epoch
    (``[N, L]``: 400 MB for 100k examples and 1,000 labels) and sorts it at each epoch end, for a
    figure of ranking quality on data the model is fitted to. The rest costs one update per chunk
    of batches and ``3 L + 4`` numbers of state.
    """
    return MetricCollection(
        count_metrics(num_labels), prefix=prefix, compute_groups=[list(COUNT_OUTPUTS)]
    )


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
