"""Multilabel metrics: plain tensor functions, and torchmetrics collections correct under DDP.

    from sigmoidf1.metrics import build_metrics, confusion_counts

    metrics = build_metrics(num_labels, prefix="val/")       # a torchmetrics MetricCollection
    metrics.update(torch.sigmoid(logits), targets.int())     # probabilities, not logits
    metrics.compute()                                        # {"val/f1_macro": ..., ...}
    confusion_counts(probabilities >= 0.5, targets).f1       # per-label F1 [L], plain torch

- ``functional``: counts, the zero-division rule, per-label F1 / precision / recall, average
  precision, label propensities (torch only).
- ``collection``: ``build_metrics`` (the ten ``METRIC_NAMES`` of every stage), ``SampleF1``,
  ``CardinalityMAE``, ``ChunkedUpdates`` (torchmetrics).
- ``large``: the collection for 10^3-10^5 labels (constant memory, ranking metrics).

The torchmetrics-based names are imported on first use: ``import torchmetrics`` takes seconds
(it imports torchvision and scipy), and code that only needs the functions should not pay it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sigmoidf1.metrics.functional import (
    COUNT_OUTPUTS,
    METRIC_NAMES,
    PROPENSITY_A,
    PROPENSITY_B,
    TOP_K,
    Counts,
    average_precision_per_label,
    confusion_counts,
    f1_scores,
    label_counts,
    label_propensities,
    safe_ratio,
    shift_to_threshold,
)

if TYPE_CHECKING:
    from sigmoidf1.metrics.collection import (
        LARGE_LABELS,
        CardinalityMAE,
        ChunkedUpdates,
        MacroAveragePrecision,
        SampleF1,
        build_metrics,
        build_train_metrics,
        deterministic_algorithms,
    )
    from sigmoidf1.metrics.large import (
        RANKING_KINDS,
        MultilabelCounts,
        TopKRanking,
        build_large_label_metrics,
    )

_LAZY = {
    **dict.fromkeys(
        (
            "LARGE_LABELS",
            "CardinalityMAE",
            "ChunkedUpdates",
            "MacroAveragePrecision",
            "SampleF1",
            "build_metrics",
            "build_train_metrics",
            "deterministic_algorithms",
        ),
        "collection",
    ),
    **dict.fromkeys(
        ("RANKING_KINDS", "MultilabelCounts", "TopKRanking", "build_large_label_metrics"), "large"
    ),
}

__all__ = [
    "COUNT_OUTPUTS",
    "METRIC_NAMES",
    "PROPENSITY_A",
    "PROPENSITY_B",
    "TOP_K",
    "Counts",
    "average_precision_per_label",
    "confusion_counts",
    "f1_scores",
    "label_counts",
    "label_propensities",
    "safe_ratio",
    "shift_to_threshold",
    # torchmetrics-based, imported on first use
    "LARGE_LABELS",
    "RANKING_KINDS",
    "CardinalityMAE",
    "ChunkedUpdates",
    "MacroAveragePrecision",
    "MultilabelCounts",
    "SampleF1",
    "TopKRanking",
    "build_large_label_metrics",
    "build_metrics",
    "build_train_metrics",
    "deterministic_algorithms",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
