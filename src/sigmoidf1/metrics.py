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
import math
from collections.abc import Iterator, Sequence
from typing import Any

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

TOP_K = (1, 3, 5)
# Jain et al. 2016's propensity model p_l = 1 / (1 + C (N_l + B)^-A), C = (ln N - 1) (B + 1)^A,
# with the A and B they fitted on Wikipedia-LSHTC (Amazon: 0.6, 2.6)
PROPENSITY_A, PROPENSITY_B = 0.55, 1.5
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


# --- large label spaces -------------------------------------------------------------------------
# every name of the contract but average precision, which needs every score of the epoch
COUNT_OUTPUTS = tuple(name for name in METRIC_NAMES if name != "map_macro")
RANKING_KINDS = ("precision", "ndcg", "psp")


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 0 where the denominator is 0 (``zero_division``)."""
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0)


def _positions(target: Tensor) -> tuple[Tensor, Tensor]:
    """``(rows, columns)`` of the ones of ``target`` ``[B, L]``: a multilabel target matrix is
    sparse, and every count below is a ``bincount`` over these positions."""
    return target.nonzero(as_tuple=True)


class MultilabelCounts(Metric):
    """The thresholded metrics of ``METRIC_NAMES`` (all but ``map_macro``) from sum states.

    One update thresholds ``preds >= threshold`` into decisions ``D`` and, with targets ``Y``
    (both ``[batch, L]``), adds per label ``tp = sum_i D*Y``, ``fp = sum_i D*(1-Y)``,
    ``fn = sum_i (1-D)*Y`` (``[L]``) and per example ``|P∩Y|``, ``|P|``, ``|Y|`` folded into three
    sums. ``output`` picks what ``compute`` returns; every output reads the same states, so the
    nine variants share one state and one update in a ``MetricCollection`` compute group:

    - ``f1_micro = 2 sum tp / sum (2 tp + fp + fn)``; ``f1_macro`` the mean of the per-label
      ``2 tp / (2 tp + fp + fn)``; ``f1_weighted`` that mean weighted by the support ``tp + fn``;
    - ``precision_macro``, ``recall_macro``: means of ``tp / (tp + fp)`` and ``tp / (tp + fn)``;
    - ``hamming = sum (fp + fn) / (N L)``;
    - ``f1_samples``, ``exact_match``, ``card_mae``: means over examples of
      ``2 |P∩Y| / (|P| + |Y|)``, ``[|P| + |Y| = 2 |P∩Y|]`` and ``| |P| - |Y| |``.

    A ratio with a zero denominator is 0 (torchmetrics' ``zero_division``), so the values equal
    those of the torchmetrics metrics of ``build_metrics``. Memory: ``3 L + 4`` numbers, whatever
    the number of examples; DDP reduction is a sum.
    """

    full_state_update = False

    def __init__(self, num_labels: int, output: str, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if output not in COUNT_OUTPUTS:
            raise ValueError(f"output must be one of {COUNT_OUTPUTS}, got {output!r}")
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels, self.output, self.threshold = num_labels, output, threshold
        for name in ("tp", "fp", "fn"):
            zeros = torch.zeros(num_labels, dtype=torch.float64)
            self.add_state(name, default=zeros, dist_reduce_fx="sum")
        for name in ("f1_sum", "exact_sum", "card_error_sum"):
            zero = torch.tensor(0.0, dtype=torch.float64)
            self.add_state(name, default=zero, dist_reduce_fx="sum")
        self.add_state("examples", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        batch, num_labels = preds.shape
        decided = (preds >= self.threshold).to(torch.float32)  # dense: early models predict a lot
        predicted_per_label = decided.sum(0).double()
        predicted_per_example = decided.sum(1).double()
        rows, columns = _positions(target)
        hit = decided[rows, columns].double()
        true_per_label = torch.bincount(columns, minlength=num_labels).double()
        true_per_example = torch.bincount(rows, minlength=batch).double()
        hits_per_label = torch.bincount(columns, hit, minlength=num_labels)
        hits_per_example = torch.bincount(rows, hit, minlength=batch)
        self.tp += hits_per_label
        self.fp += predicted_per_label - hits_per_label
        self.fn += true_per_label - hits_per_label
        size = predicted_per_example + true_per_example
        self.f1_sum += _ratio(2 * hits_per_example, size).sum()
        self.exact_sum += (size == 2 * hits_per_example).sum()
        self.card_error_sum += (predicted_per_example - true_per_example).abs().sum()
        self.examples += preds.shape[0]

    def compute(self) -> Tensor:
        tp, fp, fn = self.tp, self.fp, self.fn
        examples = self.examples.double()
        per_label_f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        support = tp + fn
        value = {
            "f1_micro": lambda: _ratio(2 * tp.sum(), (2 * tp + fp + fn).sum()),
            "f1_macro": per_label_f1.mean,
            "f1_weighted": lambda: _ratio((per_label_f1 * support).sum(), support.sum()),
            "f1_samples": lambda: _ratio(self.f1_sum, examples),
            "precision_macro": lambda: _ratio(tp, tp + fp).mean(),
            "recall_macro": lambda: _ratio(tp, tp + fn).mean(),
            "hamming": lambda: _ratio((fp + fn).sum(), examples * self.num_labels),
            "exact_match": lambda: _ratio(self.exact_sum, examples),
            "card_mae": lambda: _ratio(self.card_error_sum, examples),
        }[self.output]()
        return value.float()


class TopKRanking(Metric):
    """Ranking metrics of extreme classification, from the ``k`` highest scores of each example.

    With ``r_i(1), r_i(2), ...`` the labels of example ``i`` by decreasing score (ties in
    ``torch.topk``'s order), ``y`` its targets, ``|y_i|`` its number of positives and
    ``d(j) = 1 / log2(j + 1)``:

    - ``precision@k = mean_i (1/k) sum_{j<=k} y_i,r(j)``;
    - ``ndcg@k = mean_i DCG_i@k / IDCG_i@k`` with ``DCG@k = sum_{j<=k} y_r(j) d(j)`` and
      ``IDCG@k = sum_{j<=min(k, |y_i|)} d(j)``; an example without positives scores 0 (as
      scikit-learn's ``ndcg_score``);
    - ``psp@k`` (propensity-scored precision, Jain et al. 2016, normalised as the Extreme
      Classification Repository reports it): ``sum_i sum_{j<=k} y_r(j) / p_r(j)`` divided by
      its best possible value, ``sum_i`` of the ``k`` largest ``y_il / p_l``; rare labels weigh
      more (``label_propensities`` gives ``p``).

    ``kind`` (``precision``, ``ndcg``, ``psp``) and ``k`` pick what ``compute`` returns; every
    variant with the same ``top_k`` reads the same states (one compute group, one ``topk`` per
    update). States: ``4 len(top_k) + 1`` sums, whatever the numbers of examples and labels.

    Args:
        kind, k: the output; ``k`` must be in ``top_k``.
        top_k: every ``k`` the states cover.
        propensities: ``[L]`` in (0, 1]; needed for ``kind="psp"``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        kind: str,
        k: int,
        top_k: Sequence[int] = TOP_K,
        propensities: Tensor | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if kind not in RANKING_KINDS:
            raise ValueError(f"kind must be one of {RANKING_KINDS}, got {kind!r}")
        self.top_k = tuple(sorted({int(v) for v in top_k}))
        if not self.top_k or self.top_k[0] < 1:
            raise ValueError(f"top_k must hold integers >= 1, got {list(top_k)}")
        if k not in self.top_k:
            raise ValueError(f"k must be one of top_k {self.top_k}, got {k}")
        if kind == "psp" and propensities is None:
            raise ValueError("psp@k needs the label propensities (label_propensities)")
        self.kind, self.k = kind, k
        self.inverse_propensity: Tensor | None
        if propensities is None:
            self.inverse_propensity = None
        else:
            propensities = torch.as_tensor(propensities, dtype=torch.float64)
            if not bool(((propensities > 0) & (propensities <= 1)).all()):
                raise ValueError("propensities must lie in (0, 1]")
            self.register_buffer("inverse_propensity", (1 / propensities).float(), persistent=False)
        zeros = torch.zeros(len(self.top_k), dtype=torch.float64)
        for name in ("precision_sum", "ndcg_sum", "psp_sum", "psp_best_sum"):
            self.add_state(name, default=zeros.clone(), dist_reduce_fx="sum")
        self.add_state("examples", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        batch, num_labels = preds.shape
        depth = min(self.top_k[-1], num_labels)
        order = torch.topk(preds, depth, dim=1).indices  # [B, depth]
        relevant = target.gather(1, order).double()
        positions = torch.arange(depth, device=preds.device, dtype=torch.float64)
        discount = 1.0 / torch.log2(positions + 2.0)
        hits = relevant.cumsum(1)  # [B, depth]: positives among the top 1, 2, ...
        dcg = (relevant * discount).cumsum(1)
        best_dcg = discount.cumsum(0)  # IDCG for 1, 2, ... positives
        rows, columns = _positions(target)
        positives = torch.bincount(rows, minlength=batch).double()
        if self.inverse_propensity is not None:
            weight = self.inverse_propensity.double()
            gains = (relevant * weight[order]).cumsum(1)
            best_gains = _largest_per_row(rows, weight[columns], positives, depth).cumsum(1)
        for index, k in enumerate(self.top_k):
            last = min(k, depth) - 1
            self.precision_sum[index] += hits[:, last].sum() / k
            ideal = best_dcg[(positives.clamp(max=k) - 1).clamp(min=0).long()]
            self.ndcg_sum[index] += torch.where(positives > 0, dcg[:, last] / ideal, 0.0).sum()
            if self.inverse_propensity is not None:
                self.psp_sum[index] += gains[:, last].sum() / k
                self.psp_best_sum[index] += best_gains[:, last].sum() / k
        self.examples += preds.shape[0]

    def compute(self) -> Tensor:
        index = self.top_k.index(self.k)
        if self.kind == "psp":
            return _ratio(self.psp_sum[index], self.psp_best_sum[index]).float()
        total = self.precision_sum if self.kind == "precision" else self.ndcg_sum
        return _ratio(total[index], self.examples.double()).float()


def _largest_per_row(rows: Tensor, values: Tensor, counts: Tensor, depth: int) -> Tensor:
    """``[B, depth]``: each row's ``depth`` largest ``values`` in decreasing order, 0-padded.

    ``values[j]`` belongs to row ``rows[j]`` (rows non-decreasing, as ``nonzero`` gives them);
    ``counts [B]`` holds how many each row has. Two stable sorts group the values by row, largest
    first; the rank inside its row places each value.
    """
    out = values.new_zeros((len(counts), depth))
    if values.numel() == 0:
        return out
    by_value = torch.argsort(values, descending=True, stable=True)
    order = by_value[torch.argsort(rows[by_value], stable=True)]
    rows, values = rows[order], values[order]
    starts = counts.cumsum(0) - counts
    rank = torch.arange(len(rows), device=rows.device) - starts[rows].long()
    keep = rank < depth
    out[rows[keep], rank[keep]] = values[keep]
    return out


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


def build_large_label_metrics(
    num_labels: int,
    prefix: str,
    top_k: Sequence[int] = TOP_K,
    propensities: Tensor | None = None,
) -> MetricCollection:
    """The large-label collection (module docstring): ``COUNT_OUTPUTS`` from one shared state,
    and ``{precision,ndcg,psp}_at_{k}`` for ``k`` in ``top_k`` from another (``psp`` only with
    ``propensities``)."""
    counts = _count_metrics(num_labels)
    kinds = RANKING_KINDS if propensities is not None else RANKING_KINDS[:2]
    ranking = {
        f"{kind}_at_{k}": TopKRanking(kind, k, top_k, propensities)
        for kind in kinds
        for k in sorted({int(v) for v in top_k})
    }
    return MetricCollection(
        {**counts, **ranking}, prefix=prefix, compute_groups=[list(counts), list(ranking)]
    )


def build_train_metrics(num_labels: int, prefix: str = "train/") -> MetricCollection:
    """The training collection: ``COUNT_OUTPUTS`` (every name of ``METRIC_NAMES`` but
    ``map_macro``) from one shared ``MultilabelCounts`` state, at any number of labels.

    No average precision on the training batches: exact AP keeps every training score of the epoch
    (``[N, L]``: 400 MB for 100k examples and 1,000 labels) and sorts it at each epoch end, for a
    figure of ranking quality on data the model is fitted to. The rest costs one update per chunk
    of batches and ``3 L + 4`` numbers of state.
    """
    return MetricCollection(
        _count_metrics(num_labels), prefix=prefix, compute_groups=[list(COUNT_OUTPUTS)]
    )


def _count_metrics(num_labels: int) -> dict[str, MultilabelCounts]:
    return {name: MultilabelCounts(num_labels, name) for name in COUNT_OUTPUTS}


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
