"""Metrics for large label spaces (10^3 to 10^5 labels): states that do not grow with the data.

``MultilabelCounts`` gives every thresholded name of ``METRIC_NAMES`` (all but ``map_macro``) from
one shared state of per-label ``tp``, ``fp``, ``fn`` ``[L]`` and per-example sums: torchmetrics'
multilabel stat scores take 0.25-0.4 s per 256 x 17k batch on a CPU, these about 0.05 s, with the
same values. ``TopKRanking`` gives the ranking metrics of extreme classification
(``precision@k``, ``ndcg@k``, ``psp@k``). ``build_large_label_metrics`` puts them in one collection
(``build_metrics`` switches to it above ``large_labels`` labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from sigmoidf1.metrics.functional import COUNT_OUTPUTS, TOP_K, Counts, safe_ratio

RANKING_KINDS = ("precision", "ndcg", "psp")


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
        self.f1_sum += safe_ratio(2 * hits_per_example, size).sum()
        self.exact_sum += (size == 2 * hits_per_example).sum()
        self.card_error_sum += (predicted_per_example - true_per_example).abs().sum()
        self.examples += preds.shape[0]

    def compute(self) -> Tensor:
        counts = Counts(self.tp, self.fp, self.fn)
        examples = self.examples.double()
        value = {
            "f1_micro": lambda: counts.pooled().f1,
            "f1_macro": lambda: counts.f1.mean(),
            "f1_weighted": lambda: safe_ratio(
                (counts.f1 * counts.support).sum(), counts.support.sum()
            ),
            "f1_samples": lambda: safe_ratio(self.f1_sum, examples),
            "precision_macro": lambda: counts.precision.mean(),
            "recall_macro": lambda: counts.recall.mean(),
            "hamming": lambda: safe_ratio((self.fp + self.fn).sum(), examples * self.num_labels),
            "exact_match": lambda: safe_ratio(self.exact_sum, examples),
            "card_mae": lambda: safe_ratio(self.card_error_sum, examples),
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
            return safe_ratio(self.psp_sum[index], self.psp_best_sum[index]).float()
        total = self.precision_sum if self.kind == "precision" else self.ndcg_sum
        return safe_ratio(total[index], self.examples.double()).float()


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


def build_large_label_metrics(
    num_labels: int,
    prefix: str,
    top_k: Sequence[int] = TOP_K,
    propensities: Tensor | None = None,
) -> MetricCollection:
    """The large-label collection (module docstring): ``COUNT_OUTPUTS`` from one shared state,
    and ``{precision,ndcg,psp}_at_{k}`` for ``k`` in ``top_k`` from another (``psp`` only with
    ``propensities``)."""
    counts = count_metrics(num_labels)
    kinds = RANKING_KINDS if propensities is not None else RANKING_KINDS[:2]
    ranking = {
        f"{kind}_at_{k}": TopKRanking(kind, k, top_k, propensities)
        for kind in kinds
        for k in sorted({int(v) for v in top_k})
    }
    return MetricCollection(
        {**counts, **ranking}, prefix=prefix, compute_groups=[list(counts), list(ranking)]
    )


def count_metrics(num_labels: int) -> dict[str, MultilabelCounts]:
    """One ``MultilabelCounts`` per name of ``COUNT_OUTPUTS`` (put them in one compute group)."""
    return {name: MultilabelCounts(num_labels, name) for name in COUNT_OUTPUTS}
